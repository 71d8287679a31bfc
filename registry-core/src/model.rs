//! Plain data shared by every layer: validated names, instances, service metadata and the
//! change events the single writer emits. No IO, no tokio, no locks: everything here is a value.

pub mod event;
pub mod instance;
pub mod key;
pub mod service;

pub use event::ChangeEvent;
pub use instance::{ClientId, Instance, InstanceKey, InstanceOverride};
pub use key::{NameError, ServiceKey};
pub use service::{ClusterMetadata, ServiceMetadata};
