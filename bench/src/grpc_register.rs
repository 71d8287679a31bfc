//! Closed-loop gRPC runs: `connections` SDK connections, each sending one kind of request back
//! to back until `count` requests are done or the deadline passes.
//!
//! - registration (`InstanceRequest`): a connection owns at most one instance per service, so
//!   re-registering in the same service only replaces it; every request therefore names a
//!   service of its own (`bench-grpc-reg-<pid>-<i>`) and is a real new registration, as an HTTP
//!   `register` is;
//! - query (`ServiceQueryRequest`): every connection first subscribes to the queried service, as
//!   an SDK that discovers it does, so a sidecar answers from its pushed cache.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use registry_proto::client::Connection;
use serde_json::json;
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

/// Service the query run asks for, with [`QUERY_INSTANCES`] instances.
pub const QUERY_SERVICE: &str = "bench-grpc-query";
/// Instances of [`QUERY_SERVICE`].
const QUERY_INSTANCES: u64 = 10;

/// Connects (not timed), then registers a new service per request.
pub async fn run(cfg: &GrpcRegister) -> anyhow::Result<LoadResult> {
    let conns = connect_all(cfg).await?;
    let run = std::process::id();
    closed_loop(cfg, conns, move |conn, i| async move {
        grpc::register(&conn, &format!("bench-grpc-reg-{run}-{i}"), 8080).await
    })
    .await
}

/// Registers [`QUERY_INSTANCES`] instances of [`QUERY_SERVICE`] (on connections kept open for
/// the run), subscribes every load connection to it (not timed), then queries it.
pub async fn run_query(cfg: &GrpcRegister) -> anyhow::Result<LoadResult> {
    let mut owners = Vec::new();
    for port in 0..QUERY_INSTANCES {
        let owner = grpc::connect(cfg.grpc).await?;
        grpc::register(&owner, QUERY_SERVICE, 20_000 + port).await?;
        owners.push(owner);
    }
    let conns = connect_all(cfg).await?;
    for conn in &conns {
        grpc::subscribe(conn, QUERY_SERVICE).await?;
    }
    let query = json!({ "namespace": "public", "groupName": "DEFAULT_GROUP", "serviceName": QUERY_SERVICE,
                        "cluster": "", "healthyOnly": false });
    let result = closed_loop(cfg, conns, move |conn, _| {
        let query = query.clone();
        async move {
            let answer = conn.unary().request("ServiceQueryRequest", &query, "QueryServiceResponse").await?;
            let hosts = answer["serviceInfo"]["hosts"].as_array().map_or(0, Vec::len);
            anyhow::ensure!(hosts as u64 == QUERY_INSTANCES, "{hosts} hosts answered");
            Ok(())
        }
    })
    .await;
    drop(owners);
    result
}

async fn connect_all(cfg: &GrpcRegister) -> anyhow::Result<Vec<Arc<Connection>>> {
    let mut connecting = JoinSet::new();
    for _ in 0..cfg.connections.max(1) {
        let addr = cfg.grpc;
        connecting.spawn(async move { grpc::connect(addr).await });
    }
    let mut conns = Vec::with_capacity(cfg.connections.max(1));
    while let Some(c) = connecting.join_next().await {
        conns.push(Arc::new(c??));
    }
    Ok(conns)
}

/// Runs `op(connection, request number)` on every connection back to back.
async fn closed_loop<F, Fut>(cfg: &GrpcRegister, conns: Vec<Arc<Connection>>, op: F) -> anyhow::Result<LoadResult>
where
    F: Fn(Arc<Connection>, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let give_up = tokio::time::Instant::from_std(start + cfg.deadline + ANSWER_GRACE);
    let cpu0 = crate::process_cpu();
    let mut workers = JoinSet::new();
    for conn in conns {
        let (next, count, deadline, op) = (Arc::clone(&next), cfg.count, cfg.deadline, op.clone());
        workers.spawn(async move {
            let mut h = crate::report::latency_histogram();
            let mut errors = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || start.elapsed() > deadline {
                    break;
                }
                let t0 = Instant::now();
                match tokio::time::timeout_at(give_up, op(Arc::clone(&conn), i)).await {
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
