//! `nacos-bench`: a load tool for Nacos-compatible servers on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};
use std::sync::Arc;

use nacos_bench::http_load::{self, MakeRequest};
use nacos_bench::{check_loopback, config_notify, disconnect, distro, push_latency, report};

#[derive(Parser)]
#[command(name = "nacos-bench", about = "Load tool for Nacos-compatible servers (loopback only)")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Change → subscriber push latency over gRPC.
    PushLatency {
        /// gRPC address of the server (HTTP port + 1000 for Nacos).
        #[arg(long)]
        grpc: SocketAddr,
        /// Subscriber connections.
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
        /// Changes to make.
        #[arg(long, default_value_t = 200)]
        changes: usize,
        /// Pause between changes (ms).
        #[arg(long, default_value_t = 20)]
        interval_ms: u64,
        /// Longest the run may take (s).
        #[arg(long, default_value_t = 120)]
        deadline_s: u64,
    },
    /// Closed-loop HTTP throughput of one operation.
    Http {
        /// HTTP address of the server.
        #[arg(long)]
        http: SocketAddr,
        /// Operation.
        #[arg(long, value_enum)]
        op: HttpOp,
        /// Concurrent keep-alive connections.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Requests in all.
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        /// Longest the run may take (s).
        #[arg(long, default_value_t = 60)]
        deadline_s: u64,
    },
    /// Config publish → listener notified latency.
    ConfigNotify {
        /// HTTP address of the server.
        #[arg(long)]
        http: SocketAddr,
        /// gRPC address of the server.
        #[arg(long)]
        grpc: SocketAddr,
        /// Listener mode.
        #[arg(long, value_enum)]
        mode: config_notify::Mode,
        /// Listening clients.
        #[arg(long, default_value_t = 100)]
        listeners: usize,
        /// Publishes.
        #[arg(long, default_value_t = 100)]
        changes: usize,
        /// Pause between publishes (ms).
        #[arg(long, default_value_t = 30)]
        interval_ms: u64,
    },
    /// Time until the first successful durable write (after a leader was killed).
    FirstWrite {
        /// HTTP address of a surviving member.
        #[arg(long)]
        http: SocketAddr,
        /// Longest wait (s).
        #[arg(long, default_value_t = 30)]
        timeout_s: u64,
    },
    /// Client connection closed → subscriber sees its instance removed.
    Disconnect {
        /// gRPC address of the server.
        #[arg(long)]
        grpc: SocketAddr,
        /// Clients registered then disconnected, one after the other.
        #[arg(long, default_value_t = 20)]
        rounds: usize,
    },
    /// Replication lag: register on one member, time until another member lists it.
    DistroLag {
        /// HTTP address of the member that takes the registrations.
        #[arg(long)]
        source: SocketAddr,
        /// HTTP address of the member that is polled.
        #[arg(long)]
        target: SocketAddr,
        /// Registrations, one after the other.
        #[arg(long, default_value_t = 200)]
        rounds: usize,
    },
    /// Time until every member reports the same ephemeral-data digest.
    Converge {
        /// HTTP addresses of the members (comma-separated).
        #[arg(long, value_delimiter = ',')]
        members: Vec<SocketAddr>,
        /// Longest wait (s).
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
    },
}

/// HTTP operations for throughput runs.
#[derive(Clone, Copy, clap::ValueEnum)]
enum HttpOp {
    /// `POST /nacos/v1/ns/instance` (ephemeral; distinct instances).
    Register,
    /// `GET /nacos/v1/ns/instance/list` of a service with 10 instances.
    List,
    /// `PUT /nacos/v1/ns/instance/beat` (light beats of registered instances).
    Beat,
    /// `POST /nacos/v1/cs/configs` (distinct configs; durable on our server).
    ConfigPublish,
    /// `GET /nacos/v1/cs/configs` of one config.
    ConfigGet,
}

/// Creates what a read scenario reads; returns the request maker.
async fn prepare(http: SocketAddr, op: HttpOp) -> anyhow::Result<MakeRequest> {
    let base = format!("http://{http}");
    let c = reqwest::Client::new();
    let run = std::process::id();
    Ok(match op {
        HttpOp::Register => Arc::new(move |c: &reqwest::Client, i: usize| {
            let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
            c.post(format!("{base}/nacos/v1/ns/instance")).form(&[
                ("serviceName", format!("bench-reg-{run}-{}", i % 100)),
                ("ip", ip),
                ("port", "8080".into()),
            ])
        }),
        HttpOp::List => {
            for i in 0..10 {
                c.post(format!("{base}/nacos/v1/ns/instance"))
                    .form(&[
                        ("serviceName", format!("bench-list-{run}")),
                        ("ip", format!("10.0.0.{i}")),
                        ("port", "80".into()),
                    ])
                    .send()
                    .await?
                    .error_for_status()?;
            }
            Arc::new(move |c: &reqwest::Client, _| {
                c.get(format!("{base}/nacos/v1/ns/instance/list"))
                    .query(&[("serviceName", format!("bench-list-{run}"))])
            })
        }
        HttpOp::Beat => {
            for i in 0..1000 {
                c.post(format!("{base}/nacos/v1/ns/instance"))
                    .form(&[
                        ("serviceName", format!("bench-beat-{run}")),
                        ("ip", format!("10.1.{}.{}", i / 250, i % 250)),
                        ("port", "80".into()),
                    ])
                    .send()
                    .await?
                    .error_for_status()?;
            }
            Arc::new(move |c: &reqwest::Client, i: usize| {
                let i = i % 1000;
                c.put(format!("{base}/nacos/v1/ns/instance/beat")).query(&[
                    ("serviceName", format!("bench-beat-{run}")),
                    ("ip", format!("10.1.{}.{}", i / 250, i % 250)),
                    ("port", "80".into()),
                ])
            })
        }
        HttpOp::ConfigPublish => Arc::new(move |c: &reqwest::Client, i: usize| {
            c.post(format!("{base}/nacos/v1/cs/configs")).form(&[
                ("dataId", format!("bench-pub-{run}-{i}")),
                ("group", "DEFAULT_GROUP".into()),
                ("content", format!("key: value-{i}\nother: 1234567890")),
            ])
        }),
        HttpOp::ConfigGet => {
            c.post(format!("{base}/nacos/v1/cs/configs"))
                .form(&[
                    ("dataId", format!("bench-get-{run}")),
                    ("group", "DEFAULT_GROUP".into()),
                    ("content", "k: v".repeat(64)),
                ])
                .send()
                .await?
                .error_for_status()?;
            Arc::new(move |c: &reqwest::Client, _| {
                c.get(format!("{base}/nacos/v1/cs/configs"))
                    .query(&[("dataId", format!("bench-get-{run}")), ("group", "DEFAULT_GROUP".into())])
            })
        }
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().scenario {
        Scenario::PushLatency { grpc, subscribers, changes, interval_ms, deadline_s } => {
            check_loopback(&grpc).map_err(anyhow::Error::msg)?;
            let cfg = push_latency::PushLatency {
                grpc,
                subscribers,
                changes,
                interval: Duration::from_millis(interval_ms),
                deadline: Duration::from_secs(deadline_s),
            };
            let r = tokio::time::timeout(cfg.deadline + Duration::from_secs(30), push_latency::run(&cfg)).await??;
            println!("{}", report::latency_row(&subscribers.to_string(), &r.histogram, r.expected));
        }
        Scenario::Http { http, op, concurrency, count, deadline_s } => {
            check_loopback(&http).map_err(anyhow::Error::msg)?;
            let make = prepare(http, op).await?;
            let r = http_load::run(concurrency, count, Duration::from_secs(deadline_s), make).await?;
            println!(
                "{} | {:.0} | {} | {} | {} | {:.0}% |",
                report::latency_row(&format!("{concurrency} conns"), &r.histogram, count as u64).trim_end_matches(" |"),
                r.ops_per_sec(),
                r.errors,
                r.elapsed.as_millis(),
                r.cpu.as_millis(),
                100.0 * r.cpu.as_secs_f64() / r.elapsed.as_secs_f64().max(1e-9),
            );
        }
        Scenario::ConfigNotify { http, grpc, mode, listeners, changes, interval_ms } => {
            check_loopback(&http).map_err(anyhow::Error::msg)?;
            check_loopback(&grpc).map_err(anyhow::Error::msg)?;
            let cfg = config_notify::ConfigNotify {
                http,
                grpc,
                listeners,
                changes,
                interval: Duration::from_millis(interval_ms),
                mode,
            };
            let (h, expected) = tokio::time::timeout(Duration::from_secs(300), config_notify::run(&cfg)).await??;
            println!("{}", report::latency_row(&listeners.to_string(), &h, expected));
        }
        Scenario::FirstWrite { http, timeout_s } => {
            check_loopback(&http).map_err(anyhow::Error::msg)?;
            let c = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
            let start = std::time::Instant::now();
            let url = format!("http://{http}/nacos/v1/cs/configs");
            let mut attempts = 0u32;
            loop {
                attempts += 1;
                let r = c
                    .post(&url)
                    .form(&[("dataId", "bench-failover"), ("group", "DEFAULT_GROUP"), ("content", "x")])
                    .send()
                    .await;
                if matches!(r, Ok(ref r) if r.status().is_success()) {
                    println!("{} {attempts}", start.elapsed().as_millis());
                    break;
                }
                anyhow::ensure!(
                    start.elapsed() < Duration::from_secs(timeout_s),
                    "no successful write within {timeout_s} s"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Scenario::DistroLag { source, target, rounds } => {
            check_loopback(&source).map_err(anyhow::Error::msg)?;
            check_loopback(&target).map_err(anyhow::Error::msg)?;
            let cfg = distro::Lag { source, target, rounds, timeout: Duration::from_secs(10) };
            let h = tokio::time::timeout(Duration::from_secs(600), distro::lag(&cfg)).await??;
            println!("{}", report::latency_row(&rounds.to_string(), &h, rounds as u64));
        }
        Scenario::Converge { members, timeout_s } => {
            for m in &members {
                check_loopback(m).map_err(anyhow::Error::msg)?;
            }
            match distro::converge(&members, Duration::from_secs(timeout_s)).await? {
                Some(took) => println!("{}", took.as_millis()),
                None => anyhow::bail!("members still disagree after {timeout_s} s"),
            }
        }
        Scenario::Disconnect { grpc, rounds } => {
            check_loopback(&grpc).map_err(anyhow::Error::msg)?;
            let cfg = disconnect::Disconnect { grpc, rounds, push_timeout: Duration::from_secs(60) };
            let h = tokio::time::timeout(Duration::from_secs(600), disconnect::run(&cfg)).await??;
            println!("{}", report::latency_row(&rounds.to_string(), &h, rounds as u64));
        }
    }
    Ok(())
}
