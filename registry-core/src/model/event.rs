//! Change notifications emitted by the single writer (`consistency::apply`) and read by the
//! push engine and listeners. They travel up the layers over a channel, so they live here.
//!
//! Keys are behind `Arc`: the broadcast channel preallocates one slot per event of its
//! capacity, so the event's size is paid that many times at startup, idle or not.

use std::sync::Arc;

use super::config::ConfigKey;
use super::key::ServiceKey;

/// Something readers may need to react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeEvent {
    /// The instance list or metadata of a service changed; `revision` is its new revision.
    ServiceChanged {
        /// Which service.
        key: Arc<ServiceKey>,
        /// Revision after the change.
        revision: u64,
    },
    /// A config (formal content or a gray variant) changed or was removed.
    ConfigChanged {
        /// Which config.
        key: Arc<ConfigKey>,
    },
}
