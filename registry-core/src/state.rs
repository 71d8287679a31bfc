//! In-memory indexes. Written only by `consistency::apply` (the single writer); read by domain
//! services through immutable per-service snapshots, so reads never wait on a global lock.

pub mod config_index;
pub mod naming_index;
pub mod snapshot;

pub use config_index::{ConfigData, ConfigStore};
pub use naming_index::{NamingData, NamingStore, Publication, ServiceRecord, ServiceView};
pub use snapshot::StateSnapshot;
