//! Connection scale: opens `count` idle SDK connections (each: TCP + HTTP/2, bi-stream opened
//! with `ConnectionSetupRequest`, then a passing `HealthCheckRequest`) in batches, holds them for
//! a while and reports how many were established and how many the server still kept at the end.
//!
//! "Idle" as an SDK is idle: nothing is sent, but requests the server makes on the bi-stream
//! (`ClientDetectionRequest` after a quiet spell, as both Nacos and r-nacos do) are answered, so
//! a server that probes idle connections keeps them. The server's memory is read by the calling
//! script while the connections are held: the tool prints [`HOLDING`] between [`open_all`] and
//! [`Opened::hold`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::JoinSet;

use crate::grpc::{self, open, payload};

/// Start of the line the tool prints once every connection is open and held.
pub const HOLDING: &str = "holding";

/// File descriptors left to the tool itself (runtime, stdio) when capping by the limit.
const SPARE_FDS: u64 = 64;

/// Longest one connection may take to connect and pass its health check.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Parameters of one run.
#[derive(Debug, Clone)]
pub struct Connections {
    /// gRPC address of the server.
    pub grpc: SocketAddr,
    /// Connections to open.
    pub count: usize,
    /// Connections opened concurrently.
    pub batch: usize,
    /// How long the connections are held once open.
    pub hold: Duration,
    /// No new batch is started after this much time.
    pub connect_deadline: Duration,
}

/// What a run saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionsResult {
    /// Connections established (set up and health-checked).
    pub established: usize,
    /// Connection attempts that failed or timed out.
    pub failed: usize,
    /// Of the established ones, those whose bi-stream was still open after the hold.
    pub open_after_hold: usize,
    /// Time to open them all.
    pub connect_time: Duration,
}

/// Connections opened and kept open by their tasks.
pub struct Opened {
    /// One task per established connection; dropping the set closes them all.
    keepers: JoinSet<()>,
    /// Connections whose bi-stream is still open.
    open_now: Arc<AtomicUsize>,
    established: usize,
    failed: usize,
    connect_time: Duration,
}

impl Opened {
    /// Connections established.
    pub fn established(&self) -> usize {
        self.established
    }

    /// Holds the connections for `hold`, then closes them and reports.
    pub async fn hold(mut self, hold: Duration) -> ConnectionsResult {
        tokio::time::sleep(hold).await;
        let open_after_hold = self.open_now.load(Ordering::Relaxed);
        self.keepers.abort_all();
        while self.keepers.join_next().await.is_some() {}
        ConnectionsResult {
            established: self.established,
            failed: self.failed,
            open_after_hold,
            connect_time: self.connect_time,
        }
    }
}

/// Opens the connections, batch after batch, until `count` were attempted, the deadline
/// passed, or a whole batch failed.
pub async fn open_all(cfg: &Connections) -> Opened {
    let start = Instant::now();
    let open_now = Arc::new(AtomicUsize::new(0));
    let mut keepers = JoinSet::new();
    let (mut established, mut failed) = (0, 0);
    while established + failed < cfg.count && start.elapsed() < cfg.connect_deadline {
        let n = cfg.batch.max(1).min(cfg.count - established - failed);
        let mut batch = JoinSet::new();
        for _ in 0..n {
            let addr = cfg.grpc;
            batch.spawn(async move { tokio::time::timeout(CONNECT_TIMEOUT, grpc::connect(addr)).await });
        }
        let mut batch_ok = 0;
        while let Some(done) = batch.join_next().await {
            match done {
                Ok(Ok(Ok(conn))) => {
                    batch_ok += 1;
                    open_now.fetch_add(1, Ordering::Relaxed);
                    keepers.spawn(keep(conn, Arc::clone(&open_now)));
                }
                _ => failed += 1,
            }
        }
        established += batch_ok;
        // A batch of nothing but failures means the server (or a limit) refuses more.
        if batch_ok == 0 {
            break;
        }
    }
    Opened { keepers, open_now, established, failed, connect_time: start.elapsed() }
}

/// Connections that fit in `nofile` file descriptors next to the tool's own (runtime, stdio).
pub fn allowed_by_nofile(requested: usize, nofile: u64) -> usize {
    let spare = nofile.saturating_sub(SPARE_FDS);
    requested.min(usize::try_from(spare).unwrap_or(usize::MAX))
}

/// Keeps one connection open, answering the server's stream requests, until the server ends
/// the stream or the task is aborted.
async fn keep(mut conn: registry_proto::client::Connection, open_now: Arc<AtomicUsize>) {
    while let Ok(Some(p)) = conn.from_server.message().await {
        let (kind, body) = open(&p);
        // Every server request (ClientDetectionRequest, ConnectResetRequest, pushes) expects
        // the matching response type carrying its requestId.
        let Some(name) = kind.strip_suffix("Request") else { continue };
        let ack = json!({ "requestId": body["requestId"], "resultCode": 200, "errorCode": 0, "success": true });
        if conn.to_server.send(payload(&format!("{name}Response"), &ack)).await.is_err() {
            break;
        }
    }
    open_now.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_descriptor_limit_caps_the_connections() {
        assert_eq!(allowed_by_nofile(10_000, 20_000), 10_000);
        assert_eq!(allowed_by_nofile(10_000, 1_024), 960);
        assert_eq!(allowed_by_nofile(10_000, 10), 0);
    }

    #[tokio::test]
    async fn a_refusing_server_stops_the_run_after_one_batch() {
        let addr = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let cfg = Connections {
            grpc: addr,
            count: 100,
            batch: 10,
            hold: Duration::ZERO,
            connect_deadline: Duration::from_secs(30),
        };
        let opened = open_all(&cfg).await;
        assert_eq!(opened.established(), 0);
        let r = opened.hold(Duration::ZERO).await;
        assert_eq!((r.established, r.failed, r.open_after_hold), (0, 10, 0));
    }
}
