//! Disconnect → removal: a client connection registers an instance; a subscriber sees it; the
//! client's TCP connection is then closed abruptly (as when its process is killed) and the
//! subscriber measures the time until the push without the instance arrives.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;

use crate::grpc::{self, open, payload};

/// Parameters of one run.
#[derive(Debug, Clone)]
pub struct Disconnect {
    /// gRPC address of the server.
    pub grpc: SocketAddr,
    /// How many clients are registered and then disconnected, one after the other.
    pub rounds: usize,
    /// Longest wait for one push.
    pub push_timeout: Duration,
}

/// Waits for a push whose host count is `want`, acking every push; `None` on timeout.
async fn wait_hosts(
    sub: &mut registry_proto::client::Connection,
    want: usize,
    timeout: Duration,
) -> anyhow::Result<Option<Instant>> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, sub.from_server.message()).await;
        let Ok(msg) = next else { return Ok(None) };
        let Some(p) = msg? else { anyhow::bail!("subscriber stream ended") };
        let arrived = Instant::now();
        let (kind, body) = open(&p);
        if kind != "NotifySubscriberRequest" {
            continue;
        }
        let ack = json!({ "requestId": body["requestId"], "resultCode": 200, "errorCode": 0, "success": true });
        sub.to_server.send(payload("NotifySubscriberResponse", &ack)).await?;
        if body["serviceInfo"]["hosts"].as_array().map(Vec::len) == Some(want) {
            return Ok(Some(arrived));
        }
    }
}

/// Runs the scenario; the histogram is in microseconds.
pub async fn run(cfg: &Disconnect) -> anyhow::Result<Histogram<u64>> {
    let service = format!("bench-disconnect-{}", std::process::id());
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut sub = grpc::connect(cfg.grpc).await?;
    grpc::subscribe(&sub, &service).await?;
    for round in 0..cfg.rounds {
        let client = grpc::connect(cfg.grpc).await?;
        grpc::register(&client, &service, 30_000 + round as u64).await?;
        anyhow::ensure!(wait_hosts(&mut sub, 1, cfg.push_timeout).await?.is_some(), "registration never pushed");
        let t0 = Instant::now();
        drop(client);
        match wait_hosts(&mut sub, 0, cfg.push_timeout).await? {
            Some(arrived) => {
                let _ = hist.record((arrived.duration_since(t0).as_micros() as u64).max(1));
            }
            None => anyhow::bail!("removal never pushed within {:?}", cfg.push_timeout),
        }
    }
    Ok(hist)
}
