//! registry-core: a Nacos-compatible service registry and configuration center.
//!
//! ```text
//!  clients: Nacos SDKs (HTTP v1/v2) · v1 UDP subscribers
//!    │                                          ▲ UDP push (ack, retry)
//!    ▼                                          │
//!  api/        http (axum: v1, v2, console + web UI, metrics)   udp push   dns/ (the zone of services)
//!    │ decode → validate → call a domain service → encode
//!    ▼
//!  naming/     NamingService: rules, queries, beats; Commands to write      push/ ◄── ChangeEvents
//!    │ Command                                                                 ▲
//!    ▼                                                                         │
//!  consistency/  persistent → Raft (openraft, redb) · ephemeral → local, then │
//!                distro/ replicates it to the other members (cluster port)   │
//!                apply.rs: THE single writer ──► state/ ──────────────────────┘
//!    │
//!  cluster.rs  member table (cluster + HTTP addresses), one peer transport, peer health:
//!              used by Raft, Distro and the HTTP forwarding
//!  tls.rs      the [tls] section: TLS listeners, mutual TLS to members, HTTPS to members
//!  storage/    redb tables (imported only by consistency/)
//!  model/      plain data, imported by everyone
//! ```
//!
//! `auth/` (who asks, may they: used by api/http, api/grpc, later DNS) and `namespaces.rs`
//! (the console's namespace table) write through `consistency/` like the domains.
//!
//! Layout: one module per layer, imports only point down (or to `model`).

pub mod api;
pub mod app;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod configs;
pub mod consistency;
pub mod dns;
pub mod limits;
pub mod model;
pub mod namespaces;
pub mod naming;
pub mod push;
pub mod queues;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod tls;
