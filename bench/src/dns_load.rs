//! Closed-loop DNS over UDP: `concurrency` sockets, each with one query in flight, asking one
//! name until `count` answers came back. Works against any DNS server (the registry's, or a
//! reference authoritative server on the same zone). Queries are built by hand: a header and
//! one question, nothing to depend on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use crate::report::{LoadResult, latency_histogram};

/// How long one query waits for its answer before it counts as an error.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// Query types the scenario can ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QType {
    /// IPv4 addresses.
    A,
    /// Service locations.
    Srv,
}

impl QType {
    fn code(self) -> u16 {
        match self {
            Self::A => 1,
            Self::Srv => 33,
        }
    }
}

/// The EDNS buffer size announced: answers with glue (SRV) fit without truncation.
const EDNS_PAYLOAD: u16 = 4096;

/// A query for `name` (dotted, trailing dot optional) with id `id`, recursion not desired, with
/// an EDNS OPT record announcing [`EDNS_PAYLOAD`].
pub fn query(id: u16, name: &str, qtype: QType) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(name.len() + 29);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
    for label in name.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len()).ok().filter(|l| (1..=63).contains(l)).ok_or("bad label")?;
        q.push(len);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.code().to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    // OPT: root owner, type 41, class = payload size, TTL 0 (no flags), no options.
    q.extend_from_slice(&[0, 0, 41]);
    q.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    Ok(q)
}

/// True for a NOERROR answer to query `id` with at least one answer record.
fn answered(reply: &[u8], id: u16) -> bool {
    reply.len() >= 12
        && reply[..2] == id.to_be_bytes()
        && reply[2] & 0x80 != 0
        && reply[3] & 0x0F == 0
        && u16::from_be_bytes([reply[6], reply[7]]) > 0
}

/// Runs the load; returns latencies of answered queries.
pub async fn run(
    server: SocketAddr,
    name: &str,
    qtype: QType,
    concurrency: usize,
    count: u64,
    deadline: Duration,
) -> anyhow::Result<LoadResult> {
    query(0, name, qtype).map_err(anyhow::Error::msg)?;
    let issued = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let cpu_before = crate::process_cpu();
    let start = Instant::now();
    let stop_at = start + deadline;
    let mut workers = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let (issued, errors, name) = (Arc::clone(&issued), Arc::clone(&errors), name.to_owned());
        workers.push(tokio::spawn(async move {
            let mut histogram = latency_histogram();
            let socket = UdpSocket::bind("127.0.0.1:0").await?;
            socket.connect(server).await?;
            let mut buf = vec![0u8; 4096];
            let mut id = (w as u16).wrapping_mul(7919);
            while issued.fetch_add(1, Ordering::Relaxed) < count && Instant::now() < stop_at {
                id = id.wrapping_add(1);
                let packet = query(id, &name, qtype).map_err(anyhow::Error::msg)?;
                let sent = Instant::now();
                socket.send(&packet).await?;
                let ok = loop {
                    match tokio::time::timeout(ANSWER_TIMEOUT, socket.recv(&mut buf)).await {
                        // A late answer to an earlier, timed-out query: keep waiting for ours.
                        Ok(Ok(n)) if n >= 2 && buf[..2] != id.to_be_bytes() => {}
                        Ok(Ok(n)) => break answered(&buf[..n], id),
                        _ => break false,
                    }
                };
                if ok {
                    let us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
                    histogram.record(us)?;
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            anyhow::Ok(histogram)
        }));
    }
    let mut histogram = latency_histogram();
    for w in workers {
        histogram.add(w.await??)?;
    }
    Ok(LoadResult {
        histogram,
        errors: errors.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        cpu: crate::process_cpu().saturating_sub(cpu_before),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_one_question_in_wire_format() {
        let q = query(0x1234, "a.bc.", QType::Srv).unwrap();
        assert_eq!(q[..22], [0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, b'a', 2, b'b', b'c', 0, 0, 33, 0, 1]);
        assert_eq!(q[22..], [0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
        assert!(query(1, "a..b", QType::A).is_err());
        let mut reply = q.clone();
        reply[2] = 0x84;
        reply[7] = 1;
        assert!(answered(&reply, 0x1234));
        assert!(!answered(&reply, 0x1235));
        reply[3] = 3;
        assert!(!answered(&reply, 0x1234), "NXDOMAIN is not an answer");
    }
}
