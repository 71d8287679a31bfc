//! `nacos-bench`: a load tool for Nacos-compatible servers on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};

use nacos_bench::http_ops::{self, HttpOp};
use nacos_bench::{
    check_loopback, config_notify, connections, disconnect, distro, dns_load, frozen, grpc_register, http_load,
    push_latency, report,
};

/// Most connections the `connections` scenario may open: loopback offers ~28 000 ephemeral
/// ports per source address, and the run must not exhaust them for everything else.
const MAX_IDLE_CONNECTIONS: u64 = 25_000;

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
    /// Closed-loop gRPC registration throughput (`InstanceRequest`, a new service per request),
    /// or with `--query` lookups of a subscribed 10-instance service (`ServiceQueryRequest`).
    GrpcRegister {
        /// Query a subscribed service instead of registering (a sidecar answers from its cache).
        #[arg(long)]
        query: bool,
        /// gRPC address of the server.
        #[arg(long)]
        grpc: SocketAddr,
        /// Concurrent SDK connections.
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1_000))]
        connections: u64,
        /// Registrations in all.
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        count: u64,
        /// Longest the run may take (s).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=600))]
        deadline_s: u64,
    },
    /// Opens idle SDK connections, holds them, reports how many were established and kept.
    Connections {
        /// gRPC address of the server.
        #[arg(long)]
        grpc: SocketAddr,
        /// Connections to open.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=MAX_IDLE_CONNECTIONS))]
        count: u64,
        /// Connections opened concurrently.
        #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..=2_000))]
        batch: u64,
        /// How long to hold them once open (s).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=600))]
        hold_s: u64,
        /// No new batch starts after this long (s).
        #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=600))]
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
    /// Frozen client (SIGSTOP, connection left open) → its instance no longer listed.
    Frozen {
        /// gRPC address of the server.
        #[arg(long)]
        grpc: SocketAddr,
        /// HTTP address of the server.
        #[arg(long)]
        http: SocketAddr,
        /// Client processes to register and freeze.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=50))]
        clients: u64,
        /// Pause between freezing one client and starting the next (ms).
        #[arg(long, default_value_t = 700, value_parser = clap::value_parser!(u64).range(0..=10_000))]
        stagger_ms: u64,
        /// Longest wait for every instance to disappear (s).
        #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..=600))]
        timeout_s: u64,
    },
    /// One client process of `frozen` (started by it; not for direct use).
    #[command(hide = true)]
    FrozenChild {
        /// gRPC address of the server.
        #[arg(long)]
        grpc: SocketAddr,
        /// Service to register in.
        #[arg(long)]
        service: String,
        /// Port of the instance.
        #[arg(long)]
        port: u64,
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
    /// Closed-loop DNS queries over UDP for one name (any DNS server).
    Dns {
        /// DNS server address (UDP).
        #[arg(long)]
        server: SocketAddr,
        /// Name asked.
        #[arg(long)]
        name: String,
        /// Query type.
        #[arg(long, value_enum, default_value_t = dns_load::QType::A)]
        qtype: dns_load::QType,
        /// Queries in flight at once (one socket, told apart by id).
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1_000))]
        concurrency: u64,
        /// Queries in all.
        #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
        count: u64,
        /// Longest the run may take (s).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=600))]
        deadline_s: u64,
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let nofile = nacos_bench::raise_nofile_limit();
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
            let run = std::process::id();
            http_ops::prepare(http, op, run).await?;
            let load = http_load::Load { concurrency, count, deadline: Duration::from_secs(deadline_s) };
            let r = http_load::run(http, load, http_ops::shape(op, run)).await?;
            println!("{}", report::load_row(&format!("{concurrency} conns"), &r, count as u64));
        }
        Scenario::GrpcRegister { grpc, connections, count, deadline_s, query } => {
            check_loopback(&grpc).map_err(anyhow::Error::msg)?;
            let cfg = grpc_register::GrpcRegister {
                grpc,
                connections: connections as usize,
                count: count as usize,
                deadline: Duration::from_secs(deadline_s),
            };
            let r = if query { grpc_register::run_query(&cfg).await? } else { grpc_register::run(&cfg).await? };
            println!("{}", report::load_row(&format!("{connections} conns"), &r, count));
        }
        Scenario::Connections { grpc, count, batch, hold_s, deadline_s } => {
            check_loopback(&grpc).map_err(anyhow::Error::msg)?;
            let allowed = connections::allowed_by_nofile(count as usize, nofile);
            if allowed < count as usize {
                println!("note: RLIMIT_NOFILE {nofile} caps the run at {allowed} of {count} connections");
            }
            let cfg = connections::Connections {
                grpc,
                count: allowed,
                batch: batch as usize,
                hold: Duration::from_secs(hold_s),
                connect_deadline: Duration::from_secs(deadline_s),
            };
            let opened = connections::open_all(&cfg).await;
            println!("{} {} connections for {hold_s} s", connections::HOLDING, opened.established());
            let r = opened.hold(cfg.hold).await;
            // | requested | established | failed | open after hold | connect ms |
            println!(
                "| {count} | {} | {} | {} | {} |",
                r.established,
                r.failed,
                r.open_after_hold,
                r.connect_time.as_millis()
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
        Scenario::Frozen { grpc, http, clients, stagger_ms, timeout_s } => {
            check_loopback(&grpc).map_err(anyhow::Error::msg)?;
            check_loopback(&http).map_err(anyhow::Error::msg)?;
            let cfg = frozen::Frozen {
                grpc,
                http,
                clients: clients as usize,
                stagger: Duration::from_millis(stagger_ms),
                timeout: Duration::from_secs(timeout_s),
            };
            let removed = frozen::run(&cfg).await?;
            println!("{}", frozen::row(cfg.clients, &removed));
        }
        Scenario::FrozenChild { grpc, service, port } => {
            check_loopback(&grpc).map_err(anyhow::Error::msg)?;
            frozen::child(grpc, &service, port).await?;
        }
        Scenario::Dns { server, name, qtype, concurrency, count, deadline_s } => {
            check_loopback(&server).map_err(anyhow::Error::msg)?;
            let deadline = Duration::from_secs(deadline_s);
            let r = dns_load::run(server, &name, qtype, concurrency as usize, count, deadline).await?;
            println!("{}", report::load_row(&format!("{concurrency} in flight"), &r, count));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Scenario, clap::Error> {
        Cli::try_parse_from(std::iter::once("nacos-bench").chain(args.iter().copied())).map(|c| c.scenario)
    }

    #[test]
    fn grpc_register_takes_bounded_counts_and_deadlines() {
        let s = parse(&["grpc-register", "--grpc", "127.0.0.1:9848"]).unwrap();
        assert!(matches!(s, Scenario::GrpcRegister { connections: 32, count: 20_000, deadline_s: 60, .. }));
        let s = parse(&["grpc-register", "--grpc", "127.0.0.1:9848", "--connections", "8", "--count", "100"]).unwrap();
        assert!(matches!(s, Scenario::GrpcRegister { connections: 8, count: 100, .. }));
        for bad in [["--count", "0"], ["--count", "1000001"], ["--connections", "1001"], ["--deadline-s", "601"]] {
            assert!(parse(&["grpc-register", "--grpc", "127.0.0.1:9848", bad[0], bad[1]]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn connections_are_capped_below_the_ephemeral_port_range() {
        let s = parse(&["connections", "--grpc", "127.0.0.1:9848"]).unwrap();
        assert!(matches!(s, Scenario::Connections { count: 10_000, batch: 250, hold_s: 10, deadline_s: 120, .. }));
        let s = parse(&["connections", "--grpc", "127.0.0.1:9848", "--count", "25000", "--hold-s", "0"]).unwrap();
        assert!(matches!(s, Scenario::Connections { count: 25_000, hold_s: 0, .. }));
        for bad in
            [["--count", "25001"], ["--count", "0"], ["--batch", "0"], ["--hold-s", "601"], ["--deadline-s", "0"]]
        {
            assert!(parse(&["connections", "--grpc", "127.0.0.1:9848", bad[0], bad[1]]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn frozen_takes_bounded_client_counts() {
        let s = parse(&["frozen", "--grpc", "127.0.0.1:9848", "--http", "127.0.0.1:8848"]).unwrap();
        assert!(matches!(s, Scenario::Frozen { clients: 5, stagger_ms: 700, timeout_s: 90, .. }));
        for bad in [["--clients", "0"], ["--clients", "51"], ["--timeout-s", "0"]] {
            assert!(
                parse(&["frozen", "--grpc", "127.0.0.1:9848", "--http", "127.0.0.1:8848", bad[0], bad[1]]).is_err()
            );
        }
    }

    #[test]
    fn http_ops_parse_by_name() {
        let s = parse(&["http", "--http", "127.0.0.1:8848", "--op", "config-get"]).unwrap();
        assert!(matches!(
            s,
            Scenario::Http { op: HttpOp::ConfigGet, concurrency: 32, count: 20_000, deadline_s: 60, .. }
        ));
        assert!(parse(&["http", "--http", "127.0.0.1:8848", "--op", "nope"]).is_err());
    }
}
