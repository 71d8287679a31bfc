//! The Nacos protocol, both directions, defined once for the registry, the sidecar, the
//! operator and the tools (ARCHITECTURE.md, "Target layout").
//!
//! Always present (no feature): [`contract`] (ports, the sidecar's environment: what the
//! operator writes and the others read), [`model`] (names, instances, metadata, config items,
//! MD5), [`wire`] (bodies, codes, `ServiceInfo`, the UDP packet), [`select`] (what a query
//! returns), [`clock`], and the pure half of [`probe`] (probe-spec grammar, checker JSON,
//! outcomes, health tracker, schedule).
//!
//! Features: `grpc` (default) the generated stubs ([`nacos`], [`cluster`]) and the `Payload`
//! framing, without any transport; `client` the gRPC client (connection, session with failover
//! and redo); `server` the SDK channel's server kit; `http` Open API parameters and answer
//! shapes (axum); `dns` the DNS zone of registered services (names, records, the packet
//! handler; hickory's wire format only); `tls` TLS from PEM files for listeners and channels; `probe` running TCP, HTTP and MySQL health checks. None of it stores anything:
//! no openraft, no redb, and with default features no axum or hyper server.

#[cfg(feature = "client")]
pub mod client;
pub mod clock;
pub mod contract;
#[cfg(feature = "dns")]
pub mod dns;
#[cfg(feature = "http")]
pub mod http;
pub mod model;
pub mod probe;
pub mod select;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "tls")]
pub mod tls;
pub mod wire;
#[cfg(feature = "test-support")]
pub mod workspace_binary;

/// The Nacos SDK channel.
#[cfg(feature = "grpc")]
#[allow(missing_docs, unreachable_pub, non_camel_case_types, clippy::all, clippy::pedantic, clippy::nursery)]
pub mod nacos {
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}

/// Member-to-member RPCs (`cluster.proto`): Raft messages and write forwarding.
#[cfg(feature = "grpc")]
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic, clippy::nursery)]
pub mod cluster {
    include!(concat!(env!("OUT_DIR"), "/registry.cluster.rs"));
}

#[cfg(feature = "grpc")]
pub mod codec;

#[cfg(feature = "grpc")]
pub use prost_types::Any;
