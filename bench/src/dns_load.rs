//! Closed-loop DNS over UDP: `concurrency` queries in flight on one socket, asking one name
//! until `count` answers came back. Works against any DNS server (the registry's, or a
//! reference authoritative server on the same zone). Queries are built by hand: a header and
//! one question, nothing to depend on.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use registry_proto::dns::batch::{self, BATCH, RecvBatch, SockaddrStorage};

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

/// How often queries in flight are checked for [`ANSWER_TIMEOUT`] (also the receive timeout).
const SWEEP: Duration = Duration::from_millis(100);

/// Runs the load; returns latencies of answered queries. One thread and one connected socket
/// keep `concurrency` queries in flight, told apart by id: each `recvmmsg` takes every answer
/// queued, and one `sendmmsg` replaces them, so the tool spends a few system calls per batch
/// rather than two per query and stays well below the server's cost.
pub async fn run(
    server: SocketAddr,
    name: &str,
    qtype: QType,
    concurrency: usize,
    count: u64,
    deadline: Duration,
) -> anyhow::Result<LoadResult> {
    let template = query(0, name, qtype).map_err(anyhow::Error::msg)?;
    tokio::task::spawn_blocking(move || closed_loop(server, &template, concurrency, count, deadline)).await?
}

/// Queries in flight by id: when each was sent.
struct InFlight {
    sent: Vec<Option<Instant>>,
    len: usize,
    next_id: u16,
}

impl InFlight {
    fn new() -> Self {
        Self { sent: vec![None; usize::from(u16::MAX) + 1], len: 0, next_id: 0 }
    }

    /// A free id, marked as sent at `at`.
    fn issue(&mut self, at: Instant) -> u16 {
        while self.sent[usize::from(self.next_id)].is_some() {
            self.next_id = self.next_id.wrapping_add(1);
        }
        let id = self.next_id;
        self.sent[usize::from(id)] = Some(at);
        self.next_id = self.next_id.wrapping_add(1);
        self.len += 1;
        id
    }

    /// When the query `id` was sent, if it is still in flight (it is no longer after this).
    fn complete(&mut self, id: u16) -> Option<Instant> {
        let sent = self.sent[usize::from(id)].take();
        self.len -= usize::from(sent.is_some());
        sent
    }

    /// Drops queries sent before `cutoff`; returns how many.
    fn expire(&mut self, cutoff: Instant) -> usize {
        let mut expired = 0;
        for slot in &mut self.sent {
            if slot.is_some_and(|at| at < cutoff) {
                *slot = None;
                expired += 1;
            }
        }
        self.len -= expired;
        expired
    }
}

fn closed_loop(
    server: SocketAddr,
    template: &[u8],
    concurrency: usize,
    count: u64,
    deadline: Duration,
) -> anyhow::Result<LoadResult> {
    let socket = std::net::UdpSocket::bind(if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(SWEEP))?;
    let fd = socket.as_raw_fd();
    let mut histogram = latency_histogram();
    let mut in_flight = InFlight::new();
    let mut answers = RecvBatch::default();
    let mut packets: Vec<Vec<u8>> = vec![template.to_vec(); concurrency.max(1)];
    let (mut issued, mut errors) = (0u64, 0u64);
    let cpu_before = crate::process_cpu();
    let start = Instant::now();
    let stop_at = start + deadline;
    let mut next_sweep = start + SWEEP;
    loop {
        // Top up to `concurrency` in flight.
        let now = Instant::now();
        let room = concurrency.saturating_sub(in_flight.len);
        let want = if now < stop_at { room.min(usize::try_from(count - issued).unwrap_or(usize::MAX)) } else { 0 };
        let mut queued = 0;
        while queued < want {
            let n = (want - queued).min(BATCH);
            for packet in &mut packets[..n] {
                packet[..2].copy_from_slice(&in_flight.issue(now).to_be_bytes());
            }
            let datagrams: Vec<(&[u8], Option<SockaddrStorage>)> =
                packets[..n].iter().map(|p| (&p[..], None)).collect();
            let mut sent = 0;
            while sent < n {
                match batch::send(fd, &datagrams[sent..]) {
                    Ok(k) => sent += k.max(1),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
                    // Refused (nothing listening yet): the query times out like a lost one.
                    Err(_) => sent += 1,
                }
            }
            queued += n;
        }
        issued += queued as u64;
        if in_flight.len == 0 {
            break;
        }
        // A receive timeout (WouldBlock) or an ICMP error gets nothing: only the sweep matters.
        if let Ok(n) = answers.recv(fd, true) {
            let at = Instant::now();
            for i in 0..n {
                let Some((reply, _)) = answers.get(i) else { break };
                let Some(id) = reply.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])) else { continue };
                // A late answer to an expired query, or a duplicate: not ours any more.
                let Some(sent) = in_flight.complete(id) else { continue };
                if answered(reply, id) {
                    let us = u64::try_from(at.duration_since(sent).as_micros()).unwrap_or(u64::MAX).max(1);
                    histogram.record(us)?;
                } else {
                    errors += 1;
                }
            }
        }
        let now = Instant::now();
        if now >= next_sweep {
            next_sweep = now + SWEEP;
            errors += in_flight.expire(now.checked_sub(ANSWER_TIMEOUT).unwrap_or(start)) as u64;
        }
    }
    Ok(LoadResult { histogram, errors, elapsed: start.elapsed(), cpu: crate::process_cpu().saturating_sub(cpu_before) })
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
