//! Plain data shared by every layer: validated names, instances, service metadata and the
//! change events the single writer emits. No IO, no tokio, no locks: everything here is a value.

pub mod config;
pub mod event;
pub mod instance;
pub mod key;
pub mod service;

pub use config::{ConfigItem, ConfigKey, ConfigMeta, GrayKind, GrayRule, HistoryEntry, HistoryOp, Source};
pub use event::ChangeEvent;
pub use instance::{ClientId, Instance, InstanceKey, InstanceOverride};
pub use key::{NameError, ServiceKey};
pub use service::{ClusterMetadata, ServiceMetadata};
