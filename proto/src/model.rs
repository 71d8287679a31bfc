//! Plain data both sides of the protocol share: validated names, instances, service and cluster
//! metadata, config keys and items, and the MD5 rule. No IO, no tokio, no locks: everything here
//! is a value, so the server, the sidecar and the tools agree on one definition.

pub mod config;
pub mod instance;
pub mod key;
pub mod metadata;
pub mod service;

pub use config::{ConfigItem, ConfigKey, ConfigMeta, GrayKind, GrayRule, HistoryEntry, HistoryOp, Source, md5_hex};
pub use instance::{ClientId, Instance, InstanceKey, InstanceOverride};
pub use key::{NameError, ServiceKey};
pub use service::{ClusterMetadata, ServiceMetadata};
