//! Frozen client → instance removed: a child process (this tool, `frozen-child`) registers an
//! instance over gRPC and is then stopped with SIGSTOP, its TCP connection left open, as a hung
//! or paused process leaves it. Nothing closes the connection and the kernel keeps
//! acknowledging whatever the server sends, so only the server's own detection of silent
//! connections can find it out. Measured: from the SIGSTOP (a few milliseconds after the
//! child's last message, its registration) until the server's instance list no longer has the
//! instance. Several children, frozen a little apart, so their deadlines differ.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::grpc::{self, open, payload};

/// The line a child prints once its instance is registered.
pub const REGISTERED: &str = "registered";

/// First port of the children's instances (one port each).
const FIRST_PORT: u64 = 41_000;

/// Parameters of one run.
#[derive(Debug, Clone)]
pub struct Frozen {
    /// gRPC address of the server.
    pub grpc: SocketAddr,
    /// HTTP address of the server (its instance list is polled).
    pub http: SocketAddr,
    /// Children to register and freeze.
    pub clients: usize,
    /// Pause between freezing one child and starting the next.
    pub stagger: Duration,
    /// Longest wait for every instance to disappear.
    pub timeout: Duration,
}

/// The child's side: registers `127.0.0.1:port` in `service`, says so on stdout, then behaves
/// as an idle live SDK (answers the server's probes) until it is stopped and killed.
pub async fn child(grpc: SocketAddr, service: &str, port: u64) -> anyhow::Result<()> {
    let mut conn = grpc::connect(grpc).await?;
    grpc::register(&conn, service, port).await?;
    println!("{REGISTERED}");
    while let Some(p) = conn.from_server.message().await? {
        let (kind, body) = open(&p);
        if kind == "ClientDetectionRequest" {
            let answer = json!({ "requestId": body["requestId"], "resultCode": 200, "errorCode": 0, "success": true });
            conn.to_server.send(payload("ClientDetectionResponse", &answer)).await?;
        }
    }
    Ok(())
}

/// Sends `signal` (e.g. `-STOP`) to a process this tool started.
fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill").args([signal, &pid.to_string()]).status()?;
    anyhow::ensure!(status.success(), "kill {signal} {pid} failed");
    Ok(())
}

/// Starts a child, waits for its registration and freezes it; returns it with its freeze time.
async fn start_frozen(cfg: &Frozen, service: &str, port: u64) -> anyhow::Result<(Child, Instant)> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["frozen-child", "--grpc", &cfg.grpc.to_string(), "--service", service, "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("child without stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await??;
    anyhow::ensure!(line.as_deref() == Some(REGISTERED), "child {port} did not register: {line:?}");
    let pid = child.id().ok_or_else(|| anyhow::anyhow!("child {port} already exited"))?;
    signal(pid, "-STOP")?;
    Ok((child, Instant::now()))
}

/// Ports of the instances the server lists for `service`.
async fn listed(http: &reqwest::Client, url: &str, service: &str) -> anyhow::Result<Vec<u64>> {
    let body: Value = http.get(url).query(&[("serviceName", service)]).send().await?.json().await?;
    Ok(body["hosts"].as_array().into_iter().flatten().filter_map(|h| h["port"].as_u64()).collect())
}

/// Runs the scenario: how long each frozen child's instance stayed listed.
pub async fn run(cfg: &Frozen) -> anyhow::Result<Vec<Duration>> {
    let service = format!("bench-frozen-{}", std::process::id());
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let url = format!("http://{}/nacos/v1/ns/instance/list", cfg.http);
    let mut frozen = Vec::new();
    for k in 0..cfg.clients {
        let port = FIRST_PORT + k as u64;
        let (child, at) = start_frozen(cfg, &service, port).await?;
        frozen.push((port, at, child, None::<Duration>));
        tokio::time::sleep(cfg.stagger).await;
    }
    let deadline = Instant::now() + cfg.timeout;
    while frozen.iter().any(|f| f.3.is_none()) && Instant::now() < deadline {
        let ports = listed(&http, &url, &service).await?;
        let now = Instant::now();
        for (port, at, _, removed) in &mut frozen {
            if removed.is_none() && !ports.contains(port) {
                *removed = Some(now.duration_since(*at));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut out = Vec::new();
    for (port, _, mut child, removed) in frozen {
        // SIGKILL ends a stopped process too.
        child.kill().await?;
        match removed {
            Some(took) => out.push(took),
            None => eprintln!("instance of frozen child {port} still listed after {:?}", cfg.timeout),
        }
    }
    Ok(out)
}

/// `| clients | removed/frozen | min | median | max |` (seconds).
pub fn row(clients: usize, removed: &[Duration]) -> String {
    let mut secs: Vec<f64> = removed.iter().map(Duration::as_secs_f64).collect();
    secs.sort_by(f64::total_cmp);
    let at = |q: f64| {
        secs.get(((secs.len() as f64 - 1.0) * q).round() as usize).map_or("-".to_owned(), |s| format!("{s:.3}"))
    };
    format!("| {clients} | {}/{clients} | {} | {} | {} |", secs.len(), at(0.0), at(0.5), at(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_seconds_from_the_fastest_to_the_slowest() {
        let removed = [20.012, 20.003, 20.031].map(Duration::from_secs_f64);
        assert_eq!(row(4, &removed), "| 4 | 3/4 | 20.003 | 20.012 | 20.031 |");
        assert_eq!(row(2, &[]), "| 2 | 0/2 | - | - | - |");
    }
}
