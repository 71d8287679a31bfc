//! v1 UDP subscribers: service → subscriber address → what it asked for. Refreshed by every
//! `/instance/list` poll; entries not refreshed within the TTL are dropped by the engine.

use std::net::SocketAddr;

use tokio::time::Instant;

use super::table::SubscriberTable;
use crate::model::ServiceKey;

/// One subscriber as shown by introspection endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberInfo {
    /// Where pushes go.
    pub addr: SocketAddr,
    /// Requested clusters (comma list, may be empty).
    pub clusters: String,
    /// The client's User-Agent.
    pub agent: String,
    /// App name, if given.
    pub app: String,
}

/// A UDP subscriber and when it last polled.
#[derive(Debug, Clone)]
pub struct UdpSubscriber {
    /// What it asked for.
    pub info: SubscriberInfo,
    /// Its last `/instance/list` poll; the TTL runs from here.
    pub refreshed: Instant,
}

/// The UDP subscriber table, keyed by subscriber address.
pub type UdpSubscribers = SubscriberTable<ServiceKey, SocketAddr, UdpSubscriber>;
