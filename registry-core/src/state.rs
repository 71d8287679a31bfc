//! In-memory indexes. Written only by `consistency::apply` (the single writer); read by domain
//! services through immutable per-service snapshots, so reads never wait on a global lock.

pub mod accounts;
pub mod config_index;
pub mod namespaces;
pub mod naming_index;
pub mod snapshot;

pub use accounts::{AccountStore, Accounts};
pub use config_index::{ConfigData, ConfigStore};
pub use namespaces::{Namespace, NamespaceStore};
pub use naming_index::{NamingData, NamingStore, Publication, ServiceRecord, ServiceView};
pub use snapshot::StateSnapshot;

/// The hasher of the indexes: foldhash rather than std's SipHash, which was ~5 % of the CPU of
/// a registration. Seeded per process, so keys chosen by clients cannot be aimed at one bucket
/// chain in advance.
pub type FastHasher = foldhash::fast::RandomState;

/// A `HashMap` with [`FastHasher`] (build with `FastMap::default()`).
pub type FastMap<K, V> = std::collections::HashMap<K, V, FastHasher>;

/// A sharded concurrent map with [`FastHasher`] (build with `FastDashMap::default()`).
pub type FastDashMap<K, V> = dashmap::DashMap<K, V, FastHasher>;
