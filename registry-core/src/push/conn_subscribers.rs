//! gRPC subscribers: service → connection → (clusters, sink). A connection holds at most one
//! subscription per service (spec §10). The sink is the connection's bounded outbound queue,
//! owned by the gRPC transport; this module only knows the trait.

use std::sync::Arc;

pub use registry_proto::server::{PushSink, SinkError};

use super::table::SubscriberTable;
use crate::model::ServiceKey;

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
