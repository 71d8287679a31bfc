//! Process-level integration tests: each test starts the real `registry` binary on 127.0.0.1
//! with port 0 and a temporary data directory, and drives it over plain HTTP and UDP.
//! One test binary (hickory's pattern): faster to link than one per file.

// Test support code may panic on broken fixtures; that is a test failure, not a server bug.
#![allow(clippy::unwrap_used)]

mod harness;

mod auth;
mod beat;
mod client;
mod cluster;
mod config_archive;
mod config_http;
mod config_sdk;
mod distro;
mod distro_redo;
mod dns;
mod durability;
mod grpc_raw;
mod grpc_sdk;
mod health_check;
mod metrics;
mod naming_v1;
mod naming_v2;
mod openapi;
mod quorum;
mod robustness;
mod sidecar;
mod tls;
mod udp_push;
mod workload;
