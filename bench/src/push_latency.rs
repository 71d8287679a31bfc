//! Push latency: `subscribers` connections subscribe to one service; a writer connection changes
//! the service `changes` times (re-registering its instance with a new port each time, so every
//! change is distinguishable); each subscriber records, per push, the time from just before the
//! writer sent the change to the arrival of the push that shows it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Mutex;

use crate::grpc::{self, raw_payload};

/// Parameters of one run.
#[derive(Debug, Clone)]
pub struct PushLatency {
    /// gRPC address of the server.
    pub grpc: SocketAddr,
    /// Number of subscriber connections.
    pub subscribers: usize,
    /// Number of changes.
    pub changes: usize,
    /// Pause between changes.
    pub interval: Duration,
    /// Longest the whole run may take.
    pub deadline: Duration,
}

/// What a run measured.
#[derive(Debug)]
pub struct PushResult {
    /// Latency histogram in microseconds.
    pub histogram: Histogram<u64>,
    /// Pushes expected (changes × subscribers).
    pub expected: u64,
}

const BASE_PORT: u64 = 20_000;

/// Runs the scenario.
pub async fn run(cfg: &PushLatency) -> anyhow::Result<PushResult> {
    let service = format!("bench-push-{}", std::process::id());
    let start = Instant::now();
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..cfg.changes).map(|_| AtomicU64::new(0)).collect());
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
    let mut tasks = Vec::with_capacity(cfg.subscribers);
    for _ in 0..cfg.subscribers {
        let mut conn = grpc::connect(cfg.grpc).await?;
        grpc::subscribe(&conn, &service).await?;
        let sent_at = Arc::clone(&sent_at);
        let hist = Arc::clone(&hist);
        let changes = cfg.changes;
        tasks.push(tokio::spawn(async move {
            let mut seen = vec![false; changes];
            let mut local = Vec::with_capacity(changes);
            while let Ok(Some(p)) = conn.from_server.message().await {
                let arrived = start.elapsed().as_nanos() as u64;
                // Up to 100 subscribers share this one core: a full JSON parse per push would
                // delay the subscribers polled after this one and count as push latency. Only
                // the two fields needed are scanned for, and the ack is formatted directly.
                if p.metadata.as_ref().is_none_or(|m| m.r#type != "NotifySubscriberRequest") {
                    continue;
                }
                let body = p.body.as_ref().map(|b| b.value.as_slice()).unwrap_or_default();
                if let Some(id) = string_field(body, "requestId") {
                    let ack = format!(r#"{{"requestId":"{id}","resultCode":200,"errorCode":0,"success":true}}"#);
                    let _ = conn.to_server.try_send(raw_payload("NotifySubscriberResponse", ack.into_bytes()));
                }
                let Some(port) = first_host_port(body) else { continue };
                let Some(i) = port.checked_sub(BASE_PORT).map(|i| i as usize).filter(|i| *i < changes) else {
                    continue;
                };
                let t0 = sent_at[i].load(Ordering::Acquire);
                if t0 != 0 && !seen[i] {
                    seen[i] = true;
                    local.push((arrived.saturating_sub(t0) / 1_000).max(1));
                    if seen.iter().all(|s| *s) {
                        break;
                    }
                }
            }
            let mut h = hist.lock().await;
            for v in local {
                let _ = h.record(v);
            }
        }));
    }
    let writer = grpc::connect(cfg.grpc).await?;
    // Let the initial subscription pushes pass before measuring.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..cfg.changes {
        if start.elapsed() > cfg.deadline {
            break;
        }
        sent_at[i].store((start.elapsed().as_nanos() as u64).max(1), Ordering::Release);
        grpc::register(&writer, &service, BASE_PORT + i as u64).await?;
        tokio::time::sleep(cfg.interval).await;
    }
    let grace = Duration::from_secs(5);
    for t in tasks {
        let _ = tokio::time::timeout(grace, t).await;
    }
    let histogram = Arc::try_unwrap(hist).map_err(|_| anyhow::anyhow!("histogram still shared"))?.into_inner();
    Ok(PushResult { histogram, expected: (cfg.changes * cfg.subscribers) as u64 })
}

/// The value of the first `"name":"…"` string field in a JSON body (no escapes expected: ids).
pub(crate) fn string_field<'a>(body: &'a [u8], name: &str) -> Option<&'a str> {
    let rest = after_key(body, name)?;
    let rest = rest.strip_prefix(b"\"")?;
    let end = rest.iter().position(|b| *b == b'"')?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// The `port` of the first host in a `ServiceInfo` body.
fn first_host_port(body: &[u8]) -> Option<u64> {
    let hosts = after_key(body, "hosts")?;
    let rest = after_key(hosts, "port")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// What follows `"name":` (and any spaces) in `body`.
fn after_key<'a>(body: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let key = format!("\"{name}\"");
    let at = body.windows(key.len()).position(|w| w == key.as_bytes())?;
    let rest = body[at + key.len()..].trim_ascii_start().strip_prefix(b":")?;
    Some(rest.trim_ascii_start())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_in_compact_and_spaced_json() {
        let compact = br#"{"requestId":"17","serviceInfo":{"name":"s","hosts":[{"ip":"127.0.0.1","port":20003}]}}"#;
        assert_eq!(string_field(compact, "requestId"), Some("17"));
        assert_eq!(first_host_port(compact), Some(20_003));
        let spaced = br#"{ "port": 1, "requestId" : "a-1", "hosts" : [ { "port" : 42 } ] }"#;
        assert_eq!(string_field(spaced, "requestId"), Some("a-1"));
        // The port of the first host, not a port field before the hosts.
        assert_eq!(first_host_port(spaced), Some(42));
        assert_eq!(first_host_port(br#"{"hosts":[]}"#), None);
        assert_eq!(string_field(br#"{"requestId":17}"#, "requestId"), None);
    }
}
