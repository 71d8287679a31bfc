//! `nacos-bench`: drives any Nacos-compatible server over its public protocols (gRPC 2.x SDK
//! channel today) and reports latencies. It refuses non-loopback targets, and every run is
//! bounded in count and time.

pub mod disconnect;
pub mod grpc;
pub mod push_latency;
pub mod report;

use std::net::SocketAddr;

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
