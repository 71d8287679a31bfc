//! Contracts between the registry, the operator and (later) the sidecar: values one side writes
//! and the other reads. Each is defined once, here, so the writer and the reader cannot drift.
//!
//! This module needs no feature: the operator depends on this crate with default features off
//! and gets only these constants, without tonic or the generated protocol code.

/// Port layout of a member when only its HTTP port is given: Nacos SDKs dial the gRPC port as
/// HTTP + 1000, and `--members host:port` derives each member's cluster port as HTTP + 1001.
/// Members may also be given explicit, unrelated ports; then nothing derives them.
pub mod ports {
    /// Default HTTP port (Open API v1/v2), Nacos' 8848.
    pub const DEFAULT_HTTP: u16 = 8848;
    /// gRPC (SDK channel) port = HTTP port + this (Nacos' rule, which SDKs apply).
    pub const GRPC_OFFSET: u16 = 1000;
    /// Cluster (member-to-member) port = HTTP port + this.
    pub const CLUSTER_OFFSET: u16 = 1001;
    /// Largest HTTP port whose derived ports both exist.
    pub const MAX_HTTP: u16 = u16::MAX - CLUSTER_OFFSET;

    /// The gRPC port derived from an HTTP port; 0 (ephemeral) stays 0, `None` past 65535.
    pub const fn grpc(http: u16) -> Option<u16> {
        derived(http, GRPC_OFFSET)
    }

    /// The cluster port derived from an HTTP port; 0 (ephemeral) stays 0, `None` past 65535.
    pub const fn cluster(http: u16) -> Option<u16> {
        derived(http, CLUSTER_OFFSET)
    }

    const fn derived(http: u16, offset: u16) -> Option<u16> {
        if http == 0 { Some(0) } else { http.checked_add(offset) }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn derived_ports_follow_nacos_and_keep_ephemeral_ports_ephemeral() {
            assert_eq!((grpc(DEFAULT_HTTP), cluster(DEFAULT_HTTP)), (Some(9848), Some(9849)));
            assert_eq!((grpc(0), cluster(0)), (Some(0), Some(0)));
            assert_eq!(cluster(MAX_HTTP), Some(u16::MAX));
            assert_eq!(cluster(MAX_HTTP + 1), None);
        }
    }
}
