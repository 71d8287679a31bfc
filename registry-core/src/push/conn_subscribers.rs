//! gRPC subscribers: service → connection → (clusters, sink). A connection holds at most one
//! subscription per service (spec §10). The sink is the connection's bounded outbound queue,
//! owned by the gRPC transport; this module only knows the trait.

use std::sync::Arc;

use super::table::SubscriberTable;
use crate::model::ServiceKey;

/// Why a push could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The connection's queue is full: it is not reading.
    #[error("outbound queue full")]
    Full,
    /// The connection is gone.
    #[error("connection closed")]
    Closed,
}

/// Where pushes for one connection go (implemented by the gRPC transport).
pub trait PushSink: Send + Sync {
    /// The connection id.
    fn id(&self) -> &str;
    /// Queues a server→client message of type `kind` whose JSON body is `body`.
    fn try_send(&self, kind: &str, body: Vec<u8>) -> Result<(), SinkError>;
    /// Closes the connection so that its client reconnects and redoes its subscriptions.
    fn close(&self, reason: &str);
}

/// One gRPC subscription.
#[derive(Clone)]
pub struct ConnSubscription {
    /// Requested clusters.
    pub clusters: String,
    /// Where to push.
    pub sink: Arc<dyn PushSink>,
}

/// The gRPC subscriber table, keyed by connection id.
pub type ConnSubscribers = SubscriberTable<ServiceKey, String, ConnSubscription>;
