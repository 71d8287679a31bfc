//! gRPC subscribers: service → connection → (clusters, sink). A connection holds at most one
//! subscription per service (spec §10). The sink is the connection's bounded outbound queue,
//! owned by the gRPC transport; this module only knows the trait.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

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

/// The table. Reads (every push) far outnumber writes (subscribe/unsubscribe); the lock is
/// never held across an `.await`.
#[derive(Default)]
pub struct ConnSubscribers {
    by_service: RwLock<HashMap<ServiceKey, HashMap<String, ConnSubscription>>>,
}

impl ConnSubscribers {
    /// Adds or replaces the subscription of `sink`'s connection to `key`.
    pub fn subscribe(&self, key: &ServiceKey, clusters: &str, sink: Arc<dyn PushSink>) {
        let id = sink.id().to_owned();
        self.by_service
            .write()
            .entry(key.clone())
            .or_default()
            .insert(id, ConnSubscription { clusters: clusters.to_owned(), sink });
    }

    /// Removes one subscription.
    pub fn unsubscribe(&self, key: &ServiceKey, conn_id: &str) {
        let mut map = self.by_service.write();
        if let Some(subs) = map.get_mut(key) {
            subs.remove(conn_id);
            if subs.is_empty() {
                map.remove(key);
            }
        }
    }

    /// Removes every subscription of a connection.
    pub fn remove_connection(&self, conn_id: &str) {
        self.by_service.write().retain(|_, subs| {
            subs.remove(conn_id);
            !subs.is_empty()
        });
    }

    /// Subscriptions to a service.
    pub fn of(&self, key: &ServiceKey) -> Vec<ConnSubscription> {
        self.by_service.read().get(key).map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// One connection's subscription to a service.
    pub fn get(&self, key: &ServiceKey, conn_id: &str) -> Option<ConnSubscription> {
        self.by_service.read().get(key).and_then(|m| m.get(conn_id)).cloned()
    }

    /// Services with subscribers.
    pub fn services(&self) -> Vec<ServiceKey> {
        self.by_service.read().keys().cloned().collect()
    }

    /// Number of (service, connection) pairs.
    pub fn len(&self) -> usize {
        self.by_service.read().values().map(HashMap::len).sum()
    }

    /// Whether there is no subscription.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
