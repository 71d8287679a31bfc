//! Cluster replication of ephemeral data, seen from outside: how long after a registration on
//! one member another member serves it (lag), and how long after a paused member resumes until
//! every member reports the same digest (convergence). Public HTTP endpoints only.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Replication lag: register on `source`, then poll `target` until it lists the instance.
#[derive(Debug, Clone)]
pub struct Lag {
    /// Member that takes the registrations.
    pub source: SocketAddr,
    /// Member whose instance list is polled.
    pub target: SocketAddr,
    /// Registrations, one after the other.
    pub rounds: usize,
    /// Longest wait for one registration to appear on the target.
    pub timeout: Duration,
}

/// Runs [`Lag`]; returns the lag histogram (µs) and how many registrations appeared in time.
pub async fn lag(cfg: &Lag) -> anyhow::Result<Histogram<u64>> {
    let c = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let run = std::process::id();
    let service = format!("bench-lag-{run}");
    let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    for i in 0..cfg.rounds {
        let ip = format!("10.77.{}.{}", (i >> 8) & 255, i & 255);
        let started = Instant::now();
        c.post(format!("http://{}/nacos/v1/ns/instance", cfg.source))
            .form(&[("serviceName", service.as_str()), ("ip", ip.as_str()), ("port", "80")])
            .send()
            .await?
            .error_for_status()?;
        loop {
            let body = c
                .get(format!("http://{}/nacos/v1/ns/instance/list", cfg.target))
                .query(&[("serviceName", service.as_str())])
                .send()
                .await?
                .text()
                .await?;
            if body.contains(&format!("\"ip\":\"{ip}\"")) {
                h.record(started.elapsed().as_micros().max(1) as u64)?;
                break;
            }
            if started.elapsed() > cfg.timeout {
                break;
            }
        }
    }
    Ok(h)
}

/// Polls every member's `/nacos/v2/core/distro/digest` until all agree; returns the time it
/// took, or `None` if they still differ at `timeout`.
pub async fn converge(members: &[SocketAddr], timeout: Duration) -> anyhow::Result<Option<Duration>> {
    let c = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let started = Instant::now();
    while started.elapsed() < timeout {
        let mut digests = Vec::with_capacity(members.len());
        for m in members {
            let digest = match c.get(format!("http://{m}/nacos/v2/core/distro/digest")).send().await {
                Ok(r) => r
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|v| v["data"]["digest"].as_str().map(str::to_owned)),
                Err(_) => None,
            };
            digests.push(digest);
        }
        if digests.iter().all(Option::is_some) && digests.windows(2).all(|w| w[0] == w[1]) {
            return Ok(Some(started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(None)
}
