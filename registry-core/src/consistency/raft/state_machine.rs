//! The Raft state machine: committed entries go to the [`Applier`] (the single writer), and
//! snapshots of its persistent state are kept in redb.
//!
//! The state itself lives in memory. Durability comes from the log plus the last snapshot: on
//! open, the stored snapshot (if any) is restored into the applier, and openraft then re-applies
//! the log from the snapshot up to the saved committed index. So `apply` never touches disk,
//! while every snapshot is persisted before openraft is told about it (it may purge the log up
//! to a snapshot right after).

use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::member::Member;
use super::{NodeId, TypeConfig};
use crate::consistency::apply::Applier;
use crate::consistency::command::CommandResult;
use crate::state::StateSnapshot;
use crate::state::snapshot::SNAPSHOT_VERSION;
use crate::storage::tables::{SNAPSHOT, SNAPSHOT_DATA_KEY, SNAPSHOT_META_KEY};
use crate::storage::{Db, StorageError, decode, encode, get_json};

/// openraft's view of a storage failure.
type RaftStorageResult<T> = Result<T, openraft::StorageError<NodeId>>;

/// Snapshot metadata as openraft defines it for our types.
type Meta = SnapshotMeta<NodeId, Member>;

/// Why a snapshot could not be read, written or restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The store failed or holds undecodable data.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The snapshot's state was written by a newer version of this program.
    #[error("snapshot state has format version {found}, this binary supports up to {supported}")]
    NewerStateFormat {
        /// Version found in the snapshot.
        found: u32,
        /// Highest version this binary understands.
        supported: u32,
    },
    /// Metadata is stored without its data (or the reverse): the snapshot table is damaged.
    #[error("the stored snapshot is incomplete (metadata and data must exist together)")]
    Incomplete,
}

/// What a snapshot's bytes hold: the applier's persistent state plus the Raft position it
/// reflects (redundant with the metadata, kept so the bytes are self-describing).
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotPayload {
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, Member>,
    state: StateSnapshot,
}

impl SnapshotPayload {
    fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let payload: Self = decode(|| "state-machine snapshot data".to_owned(), bytes)?;
        if payload.state.version > SNAPSHOT_VERSION {
            return Err(SnapshotError::NewerStateFormat { found: payload.state.version, supported: SNAPSHOT_VERSION });
        }
        Ok(payload)
    }
}

/// The state machine over the applier. Owned by openraft's state-machine task.
#[derive(Debug)]
pub(crate) struct StateMachine {
    applier: Arc<Applier>,
    db: Arc<Db>,
    /// Last log id applied to the applier (or restored from a snapshot).
    last_applied: Option<LogId<NodeId>>,
    /// Last membership applied (or restored from a snapshot).
    last_membership: StoredMembership<NodeId, Member>,
    /// Makes snapshot ids unique within this process.
    snapshot_seq: u64,
    /// Snapshots received from a leader and installed since start (shared with the node, for
    /// `/metrics` and the Raft status): the one observable proof that a member caught up by
    /// snapshot rather than by log.
    installs: Arc<AtomicU64>,
}

impl StateMachine {
    /// Opens the state machine: restores the stored snapshot, if any, into `applier`.
    pub(crate) fn open(db: Arc<Db>, applier: Arc<Applier>) -> Result<Self, SnapshotError> {
        let mut sm = Self {
            applier,
            db,
            last_applied: None,
            last_membership: StoredMembership::default(),
            snapshot_seq: 0,
            installs: Arc::default(),
        };
        if let Some((meta, data)) = load(&sm.db)? {
            let payload = SnapshotPayload::decode(&data)?;
            sm.applier.restore(payload.state);
            sm.last_applied = meta.last_log_id;
            sm.last_membership = meta.last_membership;
        }
        Ok(sm)
    }

    /// The count of installed snapshots, shared.
    pub(crate) fn installs(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.installs)
    }

    /// Last applied log id (restored snapshots count).
    pub(crate) fn last_applied(&self) -> Option<LogId<NodeId>> {
        self.last_applied
    }
}

/// Reads the stored snapshot: metadata and data.
fn load(db: &Db) -> Result<Option<(Meta, Vec<u8>)>, SnapshotError> {
    let (meta, data) = db.read(|txn| {
        let table = txn.open_table(SNAPSHOT)?;
        let meta: Option<Meta> = get_json(&table, SNAPSHOT_META_KEY)?;
        let data = table.get(SNAPSHOT_DATA_KEY)?.map(|v| v.value().to_vec());
        Ok((meta, data))
    })?;
    match (meta, data) {
        (Some(meta), Some(data)) => Ok(Some((meta, data))),
        (None, None) => Ok(None),
        _ => Err(SnapshotError::Incomplete),
    }
}

/// Stores a snapshot, replacing the current one. With `keep_newer`, a stored snapshot that
/// covers more of the log is kept instead (a build racing an install). Returns whether it
/// was written.
fn store(db: &Db, meta: &Meta, data: &[u8], keep_newer: bool) -> Result<bool, SnapshotError> {
    let meta_bytes = encode(|| "snapshot metadata".to_owned(), meta)?;
    let written = db.write(|txn| {
        let mut table = txn.open_table(SNAPSHOT)?;
        if keep_newer {
            let current: Option<Meta> = get_json(&table, SNAPSHOT_META_KEY)?;
            if current.is_some_and(|c| c.last_log_id > meta.last_log_id) {
                return Ok(false);
            }
        }
        table.insert(SNAPSHOT_META_KEY, meta_bytes.as_slice())?;
        table.insert(SNAPSHOT_DATA_KEY, data)?;
        Ok(true)
    })?;
    Ok(written)
}

// === impl RaftStateMachine ===

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> RaftStorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>)> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> RaftStorageResult<Vec<Vec<CommandResult>>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries = entries.into_iter();
        let mut results = Vec::with_capacity(entries.size_hint().0);
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                // A refusal (e.g. service already exists) is the command's answer, not a failure
                // of the state machine: it is deterministic on every replica.
                EntryPayload::Normal(batch) => batch.commands().iter().map(|cmd| self.applier.apply(cmd)).collect(),
                EntryPayload::Membership(membership) => {
                    self.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    Vec::new()
                }
            };
            results.push(result);
        }
        Ok(results)
    }

    /// Captures the state now, in the state-machine task, so the builder (which openraft runs
    /// concurrently with later `apply` calls) works on a consistent copy.
    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        SnapshotBuilder {
            db: self.db.clone(),
            seq: self.snapshot_seq,
            payload: SnapshotPayload {
                last_applied: self.last_applied,
                last_membership: self.last_membership.clone(),
                state: self.applier.snapshot(),
            },
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> RaftStorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<Cursor<Vec<u8>>>) -> RaftStorageResult<()> {
        let data = snapshot.into_inner();
        let to_raft = |e: SnapshotError| StorageIOError::write_snapshot(Some(meta.signature()), &e);
        // Decode and persist before touching the state: a bad snapshot changes nothing.
        let payload = SnapshotPayload::decode(&data).map_err(to_raft)?;
        store(&self.db, meta, &data, false).map_err(to_raft)?;
        self.applier.restore(payload.state);
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        self.installs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> RaftStorageResult<Option<Snapshot<TypeConfig>>> {
        let stored = load(&self.db).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(stored.map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

/// Serialises and stores a snapshot captured by [`StateMachine::get_snapshot_builder`].
#[derive(Debug)]
pub(crate) struct SnapshotBuilder {
    db: Arc<Db>,
    seq: u64,
    payload: SnapshotPayload,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> RaftStorageResult<Snapshot<TypeConfig>> {
        let last = self.payload.last_applied;
        let snapshot_id = match last {
            Some(l) => format!("{l}-{}", self.seq),
            None => format!("none-{}", self.seq),
        };
        let meta = Meta { last_log_id: last, last_membership: self.payload.last_membership.clone(), snapshot_id };
        let to_raft = |e: SnapshotError| StorageIOError::write_snapshot(Some(meta.signature()), &e);
        let data = encode(|| "state-machine snapshot data".to_owned(), &self.payload)
            .map_err(SnapshotError::from)
            .map_err(to_raft)?;
        store(&self.db, &meta, &data, true).map_err(to_raft)?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}
