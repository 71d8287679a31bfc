//! Protocol adapters: decode → validate → call a domain service → encode. No business rules.
//!
//! ```text
//!  HTTP (axum)  /nacos/v1/ns/*  /nacos/v2/ns/*  /nacos/v1/console/health/*
//!  gRPC (tonic) /Request/request  /BiRequestStream/requestBiStream   (HTTP port + 1000)
//!  UDP push     v1 subscribers registered by /instance/list?udpPort=
//! ```

pub mod grpc;
pub mod http;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::configs::ConfigService;
use crate::naming::NamingService;
use crate::push::PushHandle;

/// Answers "is this node ready to serve?" (Raft caught up, startup done).
pub type ReadinessProbe = Arc<dyn Fn() -> bool + Send + Sync>;

/// What every transport receives (through [`ApiState`]).
pub struct Services {
    /// The naming domain.
    pub naming: NamingService,
    /// The config domain.
    pub configs: ConfigService,
    /// The push engine (v1 UDP subscribers).
    pub push: PushHandle,
    /// Readiness of the node.
    pub ready: ReadinessProbe,
    /// The HTTP address this node serves on (shown by introspection endpoints).
    pub http_addr: SocketAddr,
    /// Cluster status, membership and Distro introspection: the API's only door into Raft and
    /// Distro.
    pub admin: crate::consistency::Admin,
    /// gRPC config listeners (their counts in `/metrics`).
    pub config_notify: crate::configs::notify::ConfigNotifyHandle,
    /// gRPC connections (shown by the admin endpoint).
    pub connections: Arc<registry_proto::server::Connections>,
    /// Authentication and authorization.
    pub auth: Arc<crate::auth::Auth>,
    /// The namespace table.
    pub namespaces: crate::namespaces::NamespaceService,
    /// DNS counters, when the DNS server runs (in `/metrics`).
    pub dns: Option<Arc<crate::dns::DnsStats>>,
    /// HTTP request counts and latencies (`/metrics`).
    pub http_requests: Arc<crate::telemetry::requests::RequestMetrics>,
    /// gRPC request counts and latencies (`/metrics`), recorded by the gRPC handler.
    pub grpc_requests: Arc<crate::telemetry::requests::RequestMetrics>,
    /// Request rates per namespace (HTTP and gRPC client APIs).
    pub namespace_rates: Arc<crate::limits::NamespaceRates>,
    /// Calls to other members' HTTP ports (HTTPS with client-facing TLS).
    pub peer_http: crate::tls::PeerHttp,
    /// TLS handshakes and certificate renewals (`/metrics`).
    pub tls: crate::tls::TlsMetrics,
    /// The bound of each queue between tasks (`/metrics`).
    pub queues: crate::queues::Capacities,
    /// The configured request, size and connection limits (`/metrics`).
    pub limits: Vec<(&'static str, u64)>,
}

/// The shared handle every request gets: one pointer, because axum clones the state for every
/// request and the services inside are a few dozen reference counts.
#[derive(Clone)]
pub struct ApiState(Arc<Services>);

impl ApiState {
    /// Shares `services` with every transport.
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for ApiState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}
