//! Notification of subscribers when a service changes (ARCHITECTURE "Pushes").
//!
//! ```text
//!  apply.rs ── ChangeEvent (broadcast) ──► engine (one task)
//!                                           │ debounce per service (a few ms)
//!                                           │ render ServiceInfo once per (service, clusters, form)
//!                                           ├──► gRPC subscribers: NotifySubscriberRequest on the
//!                                           │    connection's bounded queue; full queue = slow
//!                                           │    subscriber → connection closed (client redoes)
//!                                           └──► v1 UDP subscribers: datagram
//!  acks (stream responses, UDP push-ack) ──► pending tables; resend with backoff, then give up
//! ```
//! Transports register subscribers through [`PushHandle`]; they never see the engine.
//!
//! Shared with config change notification (`configs/notify.rs`): [`table`] (the subscriber
//! table), `pending` (the pending-ack table and retry policy) and `delivery` (acknowledged
//! requests over gRPC connections, with the slow-consumer rule).

pub mod conn_subscribers;
pub(crate) mod delivery;
pub mod engine;
pub(crate) mod pending;
pub mod stats;
pub mod subscribers;
pub mod table;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::time::Instant;

use crate::model::ServiceKey;
use conn_subscribers::{ConnSubscribers, ConnSubscription};
pub use conn_subscribers::{PushSink, SinkError};
use delivery::ControlQueue;
pub use registry_proto::wire::udp::is_push_capable;
pub use stats::{PushStats, PushStatsSnapshot};
pub use subscribers::SubscriberInfo;
use subscribers::{UdpSubscriber, UdpSubscribers};

/// Tunables of the push engine.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// How long changes to one service are gathered into one push (ms).
    pub debounce_ms: u64,
    /// How long a gRPC push waits for its ack before it is resent (ms). Nacos: 5 000.
    pub grpc_ack_timeout_ms: u64,
    /// Resends of an unacknowledged gRPC push (with doubling delay) before the connection is
    /// closed so that its client reconnects and resubscribes.
    pub grpc_max_retries: u32,
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
            grpc_ack_timeout_ms: 5_000,
            grpc_max_retries: 5,
            udp_ack_timeout_ms: 10_000,
            udp_max_retries: 1,
            udp_subscriber_ttl_ms: 30_000,
            max_pending_acks: 100_000,
        }
    }
}

/// Messages from transports to the engine.
#[derive(Debug)]
pub(crate) enum Control {
    /// A UDP subscriber appeared: push the current state to it.
    NewUdp(ServiceKey, SocketAddr),
    /// A connection subscribed: push the current state to it.
    NewConn(ServiceKey, String),
    /// A connection acknowledged the push with this request id.
    Ack(String, String),
}

/// What transports use to register subscribers. Cheap to clone.
#[derive(Clone)]
pub struct PushHandle {
    udp: Arc<UdpSubscribers>,
    conns: Arc<ConnSubscribers>,
    stats: Arc<PushStats>,
    control: Arc<ControlQueue<Control>>,
}

impl PushHandle {
    /// Records (or refreshes) a v1 UDP subscriber of `key`. The first registration of an
    /// address triggers a push of the current state to it.
    pub fn subscribe_udp(&self, key: &ServiceKey, addr: SocketAddr, clusters: &str, agent: &str, app: Option<&str>) {
        let info = SubscriberInfo {
            addr,
            clusters: clusters.to_owned(),
            agent: agent.to_owned(),
            app: app.unwrap_or("unknown").to_owned(),
        };
        if self.udp.insert(key, addr, UdpSubscriber { info, refreshed: Instant::now() }) {
            // The engine ends only at shutdown; a lost wake-up then is harmless.
            self.control.send(Control::NewUdp(key.clone(), addr));
        }
    }

    /// Subscribes a connection to `key` (one subscription per service per connection; a new
    /// one replaces the old clusters filter). The current state is pushed to it shortly after.
    pub fn subscribe_conn(&self, key: &ServiceKey, clusters: &str, sink: Arc<dyn PushSink>) {
        let id = sink.id().to_owned();
        self.conns.insert(key, id.clone(), ConnSubscription { clusters: clusters.to_owned(), sink });
        self.control.send(Control::NewConn(key.clone(), id));
    }

    /// Removes a connection's subscription to `key`.
    pub fn unsubscribe_conn(&self, key: &ServiceKey, conn_id: &str) {
        self.conns.remove(key, conn_id);
    }

    /// Drops every subscription of a closed connection.
    pub fn connection_closed(&self, conn_id: &str) {
        self.conns.remove_subscriber(conn_id);
    }

    /// A connection acknowledged a push.
    pub fn ack(&self, conn_id: &str, request_id: &str) {
        self.control.send(Control::Ack(conn_id.to_owned(), request_id.to_owned()));
    }

    /// UDP subscribers of one service.
    pub fn subscribers_of(&self, key: &ServiceKey) -> Vec<SubscriberInfo> {
        self.udp.of(key).into_iter().map(|s| s.info).collect()
    }

    /// Connections subscribed to one service: connection id and clusters filter.
    pub fn conn_subscribers_of(&self, key: &ServiceKey) -> Vec<(String, String)> {
        self.conns.of(key).into_iter().map(|s| (s.sink.id().to_owned(), s.clusters)).collect()
    }

    /// Number of (service, subscriber) pairs, UDP and gRPC.
    pub fn subscriber_count(&self) -> usize {
        self.udp.len() + self.conns.len()
    }

    /// Push counters.
    pub fn stats(&self) -> PushStatsSnapshot {
        self.stats.snapshot()
    }

    /// The live counters (metrics rendering).
    pub fn stats_ref(&self) -> &PushStats {
        &self.stats
    }

    /// New-subscription notes and acks dropped because the engine's queue was full.
    pub fn control_dropped(&self) -> u64 {
        self.control.dropped()
    }

    /// Most subscriptions and acks that wait for the engine at once.
    pub fn control_capacity(&self) -> usize {
        self.control.capacity()
    }
}
