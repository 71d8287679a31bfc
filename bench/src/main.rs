//! `nacos-bench`: a load tool for Nacos-compatible servers on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};
use nacos_bench::{check_loopback, disconnect, push_latency, report};

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
    /// Client connection closed → subscriber sees its instance removed.
    Disconnect {
        /// gRPC address of the server.
        #[arg(long)]
        grpc: SocketAddr,
        /// Clients registered then disconnected, one after the other.
        #[arg(long, default_value_t = 20)]
        rounds: usize,
    },
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
        Scenario::Disconnect { grpc, rounds } => {
            check_loopback(&grpc).map_err(anyhow::Error::msg)?;
            let cfg = disconnect::Disconnect { grpc, rounds, push_timeout: Duration::from_secs(60) };
            let h = tokio::time::timeout(Duration::from_secs(600), disconnect::run(&cfg)).await??;
            println!("{}", report::latency_row(&rounds.to_string(), &h, rounds as u64));
        }
    }
    Ok(())
}
