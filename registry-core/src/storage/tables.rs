//! The redb schema: every table and well-known key, in one place. Changing how any of these is
//! encoded means bumping [`SCHEMA_VERSION`].

use redb::TableDefinition;

/// On-disk format version written into [`META`]. A binary refuses files with a newer version.
pub(crate) const SCHEMA_VERSION: u64 = 1;

/// Database-wide facts. Key [`SCHEMA_VERSION_KEY`] holds the format version.
pub(crate) const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

/// Key of the format version in [`META`].
pub(crate) const SCHEMA_VERSION_KEY: &str = "schema_version";

/// The Raft log: log index → JSON-encoded log entry.
pub(crate) const RAFT_LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("raft_log");

/// Raft's own durable pointers, JSON-encoded, under the `*_KEY` keys below.
pub(crate) const RAFT_STATE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("raft_state");

/// Key of the last saved vote in [`RAFT_STATE`].
pub(crate) const VOTE_KEY: &str = "vote";

/// Key of the last saved committed log id in [`RAFT_STATE`].
pub(crate) const COMMITTED_KEY: &str = "committed";

/// Key of the last purged log id in [`RAFT_STATE`].
pub(crate) const LAST_PURGED_KEY: &str = "last_purged";

/// Key of this store's random id in [`RAFT_STATE`], created with the store (JSON string).
pub(crate) const STORE_ID_KEY: &str = "store_id";

/// Key of the cluster id in [`RAFT_STATE`], created at bootstrap or adopted from the leader.
pub(crate) const CLUSTER_ID_KEY: &str = "cluster_id";

/// The current state-machine snapshot: [`SNAPSHOT_META_KEY`] (JSON) and [`SNAPSHOT_DATA_KEY`]
/// (opaque bytes), always written together in one transaction.
pub(crate) const SNAPSHOT: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sm_snapshot");

/// Key of the snapshot metadata in [`SNAPSHOT`].
pub(crate) const SNAPSHOT_META_KEY: &str = "meta";

/// Key of the snapshot bytes in [`SNAPSHOT`].
pub(crate) const SNAPSHOT_DATA_KEY: &str = "data";
