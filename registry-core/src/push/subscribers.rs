//! The v1 UDP subscriber table: service → subscriber address → what it asked for. Refreshed by
//! every `/instance/list` poll; entries not refreshed within the TTL are dropped by the engine.

use std::collections::HashMap;
use std::net::SocketAddr;

use parking_lot::RwLock;
use tokio::time::{Duration, Instant};

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

#[derive(Debug, Clone)]
struct Entry {
    info: SubscriberInfo,
    refreshed: Instant,
}

/// The table. An `RwLock` over a map: polls (writes) are rare next to pushes reading it, and
/// the lock is never held across an `.await`.
#[derive(Debug, Default)]
pub struct UdpSubscribers {
    by_service: RwLock<HashMap<ServiceKey, HashMap<SocketAddr, Entry>>>,
}

impl UdpSubscribers {
    /// Adds or refreshes a subscriber; returns true when it is new.
    pub fn upsert(&self, key: &ServiceKey, addr: SocketAddr, clusters: &str, agent: &str, app: Option<&str>) -> bool {
        let info = SubscriberInfo {
            addr,
            clusters: clusters.to_owned(),
            agent: agent.to_owned(),
            app: app.unwrap_or("unknown").to_owned(),
        };
        let mut map = self.by_service.write();
        let subs = map.entry(key.clone()).or_default();
        subs.insert(addr, Entry { info, refreshed: Instant::now() }).is_none()
    }

    /// Subscribers of a service.
    pub fn of(&self, key: &ServiceKey) -> Vec<SubscriberInfo> {
        self.by_service.read().get(key).map(|m| m.values().map(|e| e.info.clone()).collect()).unwrap_or_default()
    }

    /// One subscriber of a service.
    pub fn get(&self, key: &ServiceKey, addr: SocketAddr) -> Option<SubscriberInfo> {
        self.by_service.read().get(key).and_then(|m| m.get(&addr)).map(|e| e.info.clone())
    }

    /// Services that have subscribers.
    pub fn services(&self) -> Vec<ServiceKey> {
        self.by_service.read().keys().cloned().collect()
    }

    /// Number of (service, subscriber) pairs.
    pub fn len(&self) -> usize {
        self.by_service.read().values().map(HashMap::len).sum()
    }

    /// Whether there is no subscriber.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops subscribers not refreshed within `ttl`; returns how many.
    pub fn expire(&self, ttl: Duration) -> usize {
        let now = Instant::now();
        let mut removed = 0;
        let mut map = self.by_service.write();
        map.retain(|_, subs| {
            let before = subs.len();
            subs.retain(|_, e| now.saturating_duration_since(e.refreshed) <= ttl);
            removed += before - subs.len();
            !subs.is_empty()
        });
        removed
    }
}
