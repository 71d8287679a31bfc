//! Closed-loop gRPC registration throughput: `connections` SDK connections, each sending
//! `InstanceRequest` (registerInstance) back to back until `count` requests are done or the
//! deadline passes.
//!
//! A connection owns at most one instance per service, so re-registering in the same service
//! only replaces it; every request therefore names a service of its own
//! (`bench-grpc-reg-<pid>-<i>`) and is a real new registration, as an HTTP `register` is.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::grpc;
use crate::report::LoadResult;

/// Time a connection waits for one answer beyond the run's deadline before giving up.
const ANSWER_GRACE: Duration = Duration::from_secs(10);

/// Parameters of one run.
#[derive(Debug, Clone)]
pub struct GrpcRegister {
    /// gRPC address of the server.
    pub grpc: SocketAddr,
    /// Concurrent SDK connections.
    pub connections: usize,
    /// Registrations in all.
    pub count: usize,
    /// No request starts after this much time (connecting not included).
    pub deadline: Duration,
}

/// Connects (not timed), then runs the load.
pub async fn run(cfg: &GrpcRegister) -> anyhow::Result<LoadResult> {
    let mut connecting = JoinSet::new();
    for _ in 0..cfg.connections.max(1) {
        let addr = cfg.grpc;
        connecting.spawn(async move { grpc::connect(addr).await });
    }
    let mut conns = Vec::with_capacity(cfg.connections.max(1));
    while let Some(c) = connecting.join_next().await {
        conns.push(c??);
    }
    let run = std::process::id();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let give_up = tokio::time::Instant::from_std(start + cfg.deadline + ANSWER_GRACE);
    let cpu0 = crate::process_cpu();
    let mut workers = JoinSet::new();
    for conn in conns {
        let (next, count, deadline) = (Arc::clone(&next), cfg.count, cfg.deadline);
        workers.spawn(async move {
            let mut h = crate::report::latency_histogram();
            let mut errors = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || start.elapsed() > deadline {
                    break;
                }
                let service = format!("bench-grpc-reg-{run}-{i}");
                let t0 = Instant::now();
                match tokio::time::timeout_at(give_up, grpc::register(&conn, &service, 8080)).await {
                    Ok(Ok(())) => {
                        let _ = h.record((t0.elapsed().as_micros() as u64).max(1));
                    }
                    Ok(Err(_)) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (h, errors)
        });
    }
    let mut histogram = crate::report::latency_histogram();
    let mut errors = 0;
    while let Some(w) = workers.join_next().await {
        let (h, e) = w?;
        histogram.add(h)?;
        errors += e;
    }
    let elapsed = start.elapsed();
    Ok(LoadResult { histogram, errors, elapsed, cpu: crate::process_cpu().saturating_sub(cpu0) })
}
