//! `nacos-bench`: drives any Nacos-compatible server over its public protocols (the v1 HTTP API
//! and the gRPC 2.x SDK channel, and DNS) and reports latencies, throughput, its own CPU use and how many
//! connections a server keeps. It refuses non-loopback targets, and every run is bounded in
//! count and time.

pub mod config_notify;
pub mod connections;
pub mod disconnect;
pub mod distro;
pub mod dns_load;
pub mod frozen;
pub mod grpc;
pub mod grpc_register;
pub mod http_load;
pub mod http_ops;
pub mod push_latency;
pub mod report;

use std::net::SocketAddr;
use std::time::Duration;

/// CPU time (user + system) this process has used so far, from `/proc/self/stat` (clock
/// ticks of 10 ms, the Linux default `CLK_TCK` of 100); zero where it cannot be read.
pub fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return Duration::ZERO };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return Duration::ZERO };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Raises this process's soft `RLIMIT_NOFILE` to the hard limit and returns the soft limit in
/// force: every connection is a file descriptor, and the usual soft default (1 024) would cap
/// connection-scale runs far below what the machine allows.
pub fn raise_nofile_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX)
        .or_else(|_| rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft))
        .unwrap_or(1024)
}

/// Refuses targets that are not on 127.0.0.0/8 or ::1: load must never leave the machine.
pub fn check_loopback(addr: &SocketAddr) -> Result<(), String> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!("refusing to load {addr}: only loopback targets (127.0.0.0/8, ::1) are allowed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nofile_limit_is_raised_to_the_hard_limit() {
        let soft = raise_nofile_limit();
        let (now, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        assert_eq!(soft, now);
        // An unlimited hard limit cannot be taken by NOFILE; any finite one is.
        assert!(now == hard || hard == rlimit::INFINITY, "soft {now}, hard {hard}");
    }

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert!(check_loopback(&"127.0.0.1:8848".parse().unwrap()).is_ok());
        assert!(check_loopback(&"127.3.4.5:1".parse().unwrap()).is_ok());
        assert!(check_loopback(&"[::1]:9848".parse().unwrap()).is_ok());
        assert!(check_loopback(&"10.0.0.1:8848".parse().unwrap()).is_err());
        assert!(check_loopback(&"0.0.0.0:8848".parse().unwrap()).is_err());
    }
}
