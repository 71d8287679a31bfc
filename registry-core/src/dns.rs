//! The registry's DNS server (docs/dns.md): registered services answer as names in one zone.
//!
//! ```text
//!  apply.rs ── ChangeEvent (broadcast) ──► cache::follow (one task): label index, and the
//!                                          cached records of a changed service rebuilt once
//!  UDP / TCP (server.rs) ──► registry_proto::dns::handle ──► Cache (a Source): records of
//!                                                           (service, cluster) at the view's
//!                                                           revision, built on first miss
//! ```
//! Names, records and the packet rules live in `registry_proto::dns`, so that the sidecar
//! answers the same zone from its own cache.

pub mod cache;
pub mod server;
pub mod stats;

use registry_proto::contract::dns::DEFAULT_ZONE;
use registry_proto::dns::DEFAULT_TTL_SECS;

pub use cache::{Cache, DnsAccess};
pub use server::DnsServer;
pub use stats::DnsStats;

/// The `[dns]` section.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// UDP and TCP port (`None`: no DNS server; 0: an ephemeral port, the same for both).
    pub port: Option<u16>,
    /// DNS-over-TLS port (RFC 7858), beside `port` so plain DNS keeps working for stub
    /// domains; with client-facing TLS only (`None`: none; 0: an ephemeral port).
    pub tls_port: Option<u16>,
    /// The zone served.
    pub zone: String,
    /// TTL of every record and of negative answers (seconds).
    pub ttl_secs: u32,
    /// Most TCP connections (plain and TLS together) served at once; more wait in the accept
    /// queue.
    pub max_tcp_connections: usize,
    /// With client auth on, the user DNS queries act as (Consul's default token for DNS): a
    /// name answers only when this user may read the service; without one every service name
    /// is NXDOMAIN. Unused with client auth off.
    pub user: Option<String>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            port: None,
            tls_port: None,
            zone: DEFAULT_ZONE.to_owned(),
            ttl_secs: DEFAULT_TTL_SECS,
            max_tcp_connections: 256,
            user: None,
        }
    }
}
