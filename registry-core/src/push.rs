//! Notification of subscribers when a service changes (ARCHITECTURE "Pushes").
//!
//! ```text
//!  apply.rs ── ChangeEvent (broadcast) ──► engine (one task)
//!                                           │ debounce per service (a few ms)
//!                                           │ render ServiceInfo once per (service, clusters)
//!                                           ▼
//!                                     UDP datagrams to v1 subscribers ── ack ──► pending table
//!                                           ▲ retry after the ack timeout, then give up
//! ```
//! Transports register subscribers through [`PushHandle`]; they never see the engine.

pub mod engine;
pub mod subscribers;
pub mod udp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::model::ServiceKey;
pub use subscribers::SubscriberInfo;
use subscribers::UdpSubscribers;
pub use udp::is_push_capable;

/// Tunables of the push engine.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// How long changes to one service are gathered into one push (ms).
    pub debounce_ms: u64,
    /// How long a UDP push waits for its ack before it is resent (ms). Nacos: 10 000.
    pub udp_ack_timeout_ms: u64,
    /// How many times an unacknowledged UDP push is resent. Nacos: 1.
    pub udp_max_retries: u32,
    /// A UDP subscriber that has not polled `/instance/list` for this long is dropped (ms).
    pub udp_subscriber_ttl_ms: u64,
    /// Most unacknowledged pushes kept at once; beyond it new pushes are sent without retry.
    pub max_pending_acks: usize,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            debounce_ms: 5,
            udp_ack_timeout_ms: 10_000,
            udp_max_retries: 1,
            udp_subscriber_ttl_ms: 30_000,
            max_pending_acks: 100_000,
        }
    }
}

/// Push counters, for `/operator/push/state` and metrics.
#[derive(Debug, Default)]
pub struct PushStats {
    sent: AtomicU64,
    acked: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushStatsSnapshot {
    /// Pushes sent (first attempts).
    pub sent: u64,
    /// Pushes acknowledged.
    pub acked: u64,
    /// Resends.
    pub retried: u64,
    /// Pushes given up on.
    pub failed: u64,
}

impl PushStats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads the counters.
    pub fn snapshot(&self) -> PushStatsSnapshot {
        PushStatsSnapshot {
            sent: self.sent.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// What transports use to register subscribers. Cheap to clone.
#[derive(Clone)]
pub struct PushHandle {
    subscribers: Arc<UdpSubscribers>,
    stats: Arc<PushStats>,
    /// New subscribers, so the engine pushes the current state to them.
    new_subscriber: mpsc::UnboundedSender<(ServiceKey, SocketAddr)>,
}

impl PushHandle {
    /// Records (or refreshes) a v1 UDP subscriber of `key`. The first registration of an
    /// address triggers a push of the current state to it.
    pub fn subscribe_udp(&self, key: &ServiceKey, addr: SocketAddr, clusters: &str, agent: &str, app: Option<&str>) {
        if self.subscribers.upsert(key, addr, clusters, agent, app) {
            // The engine ends only at shutdown; a lost wake-up then is harmless.
            let _ = self.new_subscriber.send((key.clone(), addr));
        }
    }

    /// Subscribers of one service.
    pub fn subscribers_of(&self, key: &ServiceKey) -> Vec<SubscriberInfo> {
        self.subscribers.of(key)
    }

    /// Number of (service, subscriber) pairs.
    pub fn subscriber_count(&self) -> usize {
        self.subscribers.len()
    }

    /// Push counters.
    pub fn stats(&self) -> PushStatsSnapshot {
        self.stats.snapshot()
    }
}
