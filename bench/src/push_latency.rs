//! Push latency: `subscribers` connections subscribe to one service; a writer connection changes
//! the service `changes` times (re-registering its instance with a new port each time, so every
//! change is distinguishable); each subscriber records, per push, the time from just before the
//! writer sent the change to the arrival of the push that shows it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::Mutex;

use crate::grpc::{Conn, open, payload};

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
        let mut conn = Conn::connect(cfg.grpc).await?;
        conn.subscribe(&service).await?;
        let sent_at = Arc::clone(&sent_at);
        let hist = Arc::clone(&hist);
        let changes = cfg.changes;
        tasks.push(tokio::spawn(async move {
            let mut seen = vec![false; changes];
            let mut local = Vec::with_capacity(changes);
            while let Ok(Some(p)) = conn.from_server.message().await {
                let arrived = start.elapsed().as_nanos() as u64;
                let (kind, body) = open(&p);
                if kind != "NotifySubscriberRequest" {
                    continue;
                }
                let ack = json!({ "requestId": body["requestId"], "resultCode": 200, "errorCode": 0, "success": true });
                let _ = conn.to_server.send(payload("NotifySubscriberResponse", &ack)).await;
                let Some(port) = body["serviceInfo"]["hosts"][0]["port"].as_u64() else { continue };
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
    let mut writer = Conn::connect(cfg.grpc).await?;
    // Let the initial subscription pushes pass before measuring.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..cfg.changes {
        if start.elapsed() > cfg.deadline {
            break;
        }
        sent_at[i].store((start.elapsed().as_nanos() as u64).max(1), Ordering::Release);
        writer.register(&service, BASE_PORT + i as u64).await?;
        tokio::time::sleep(cfg.interval).await;
    }
    let grace = Duration::from_secs(5);
    for t in tasks {
        let _ = tokio::time::timeout(grace, t).await;
    }
    let histogram = Arc::try_unwrap(hist).map_err(|_| anyhow::anyhow!("histogram still shared"))?.into_inner();
    Ok(PushResult { histogram, expected: (cfg.changes * cfg.subscribers) as u64 })
}
