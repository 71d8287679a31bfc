//! `nacos-bench`: drives any Nacos-compatible server over its public protocols (gRPC 2.x SDK
//! channel today) and reports latencies. It refuses non-loopback targets, and every run is
//! bounded in count and time.

pub mod config_notify;
pub mod disconnect;
pub mod distro;
pub mod grpc;
pub mod http_load;
pub mod http_ops;
pub mod push_latency;
pub mod report;

use std::net::SocketAddr;
use std::time::Duration;

use md5::{Digest, Md5};

/// Lower-case hex MD5 of the UTF-8 bytes (what Nacos servers compute).
pub fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

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
    fn only_loopback_targets_are_accepted() {
        assert!(check_loopback(&"127.0.0.1:8848".parse().unwrap()).is_ok());
        assert!(check_loopback(&"127.3.4.5:1".parse().unwrap()).is_ok());
        assert!(check_loopback(&"[::1]:9848".parse().unwrap()).is_ok());
        assert!(check_loopback(&"10.0.0.1:8848".parse().unwrap()).is_err());
        assert!(check_loopback(&"0.0.0.0:8848".parse().unwrap()).is_err());
    }
}
