//! Generated protobuf types and tonic stubs of the Nacos gRPC channel (`nacos_grpc_service.proto`).
//!
//! The proto has no package, so the generated items live at the crate root of the included
//! file: [`nacos::Payload`], [`nacos::Metadata`], the `request_server` / `bi_request_stream_server`
//! modules for the server and the matching `*_client` modules for tests and tools. All of it is
//! behind the default `grpc` feature; [`contract`] is not.

pub mod contract;
pub mod probe;

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
