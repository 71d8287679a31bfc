//! The shared data model (`registry_proto::model`: names, instances, metadata, config items) and
//! the change events the single writer emits, which only the server has.

pub mod event;

pub use event::ChangeEvent;
pub use registry_proto::model::{
    ClientId, ClusterMetadata, ConfigItem, ConfigKey, ConfigMeta, GrayKind, GrayRule, HistoryEntry, HistoryOp,
    Instance, InstanceKey, InstanceOverride, NameError, ServiceKey, ServiceMetadata, Source, config, instance, key,
    service,
};
