//! The Raft log and Raft's durable pointers (vote, committed, last purged) on redb.
//!
//! Every method is one short redb transaction; a write returns (or reports to openraft's
//! callback) only after its transaction is committed with immediate durability, so whatever
//! openraft believes is on disk is on disk. No lock is held across an `.await`: redb serialises
//! write transactions itself, and openraft serialises log IO on its side.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageIOError, Vote};
use redb::ReadableTable;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{NodeId, TypeConfig};
use crate::storage::tables::{COMMITTED_KEY, LAST_PURGED_KEY, RAFT_LOG, RAFT_STATE, VOTE_KEY};
use crate::storage::{Db, StorageError, decode, encode, get_json};

/// openraft's view of a storage failure.
type RaftStorageResult<T> = Result<T, openraft::StorageError<NodeId>>;

/// The log store. Cheap to clone: clones share the database (openraft's log reader is a clone).
#[derive(Debug, Clone)]
pub(crate) struct LogStore {
    db: Arc<Db>,
}

impl LogStore {
    /// A log store over `db`.
    pub(crate) fn new(db: Arc<Db>) -> Self {
        Self { db }
    }

    /// Whether nothing Raft-related was ever written: no vote, no log entry, nothing purged.
    /// Only such a store may be initialised as a new cluster.
    pub(crate) fn is_pristine(&self) -> Result<bool, StorageError> {
        let vote: Option<Vote<NodeId>> = self.read_state(VOTE_KEY)?;
        let state = self.log_state()?;
        Ok(vote.is_none() && state.last_log_id.is_none())
    }

    /// The last committed log id saved by openraft, if any.
    /// Index of the last entry in the log (or of the last purged one), if any.
    pub(crate) fn last_log_index(&self) -> Result<Option<u64>, StorageError> {
        Ok(self.log_state()?.last_log_id.map(|l| l.index))
    }

    pub(crate) fn committed(&self) -> Result<Option<LogId<NodeId>>, StorageError> {
        Ok(self.read_state::<Option<LogId<NodeId>>>(COMMITTED_KEY)?.flatten())
    }

    fn read_state<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        self.db.read(|txn| get_json(&txn.open_table(RAFT_STATE)?, key))
    }

    fn write_state<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StorageError> {
        let bytes = encode(|| format!("raft state {key:?}"), value)?;
        self.db.write(|txn| {
            txn.open_table(RAFT_STATE)?.insert(key, bytes.as_slice())?;
            Ok(())
        })
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, StorageError> {
        self.db.read(|txn| {
            let last_purged: Option<LogId<NodeId>> = get_json(&txn.open_table(RAFT_STATE)?, LAST_PURGED_KEY)?;
            let last_entry = match txn.open_table(RAFT_LOG)?.last()? {
                Some((index, bytes)) => Some(decode_entry(index.value(), bytes.value())?.log_id),
                None => None,
            };
            Ok(LogState { last_purged_log_id: last_purged, last_log_id: last_entry.or(last_purged) })
        })
    }

    fn entries(&self, range: &impl RangeBounds<u64>) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let Some((start, end)) = index_bounds(range) else {
            return Ok(Vec::new());
        };
        self.db.read(|txn| {
            let table = txn.open_table(RAFT_LOG)?;
            let rows = match end {
                Some(end) => table.range(start..end)?,
                None => table.range(start..)?,
            };
            rows.map(|row| {
                let (index, bytes) = row?;
                decode_entry(index.value(), bytes.value())
            })
            .collect()
        })
    }
}

/// Turns any range of indexes into `start..end` (`end` exclusive, `None` = unbounded); `None`
/// when the range is empty.
fn index_bounds(range: &impl RangeBounds<u64>) -> Option<(u64, Option<u64>)> {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.checked_add(1),
        Bound::Excluded(e) => Some(*e),
        Bound::Unbounded => None,
    };
    match end {
        Some(end) if end <= start => None,
        _ => Some((start, end)),
    }
}

fn decode_entry(index: u64, bytes: &[u8]) -> Result<Entry<TypeConfig>, StorageError> {
    decode(|| format!("raft log entry {index}"), bytes)
}

// === impl RaftLogReader ===

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> RaftStorageResult<Vec<Entry<TypeConfig>>> {
        self.entries(&range).map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

// === impl RaftLogStorage ===

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> RaftStorageResult<LogState<TypeConfig>> {
        self.log_state().map_err(|e| StorageIOError::read_logs(&e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> RaftStorageResult<()> {
        self.write_state(VOTE_KEY, vote).map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> RaftStorageResult<Option<Vote<NodeId>>> {
        self.read_state(VOTE_KEY).map_err(|e| StorageIOError::read_vote(&e).into())
    }

    /// Saved so that a restarted node re-applies the log up to here before serving (the state
    /// machine itself lives in memory and is rebuilt from the snapshot plus the log).
    /// The committed index is a hint (openraft re-derives it from a quorum), so it is written
    /// without its own fsync: one fsync per append is what a durable write costs.
    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> RaftStorageResult<()> {
        let bytes = encode(|| "raft state committed".to_owned(), &committed).map_err(|e| StorageIOError::write(&e))?;
        self.db
            .write_lazy(|txn| {
                txn.open_table(RAFT_STATE)?.insert(COMMITTED_KEY, bytes.as_slice())?;
                Ok(())
            })
            .map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> RaftStorageResult<Option<LogId<NodeId>>> {
        self.committed().map_err(|e| StorageIOError::read(&e).into())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> RaftStorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.db
            .write(|txn| {
                let mut log = txn.open_table(RAFT_LOG)?;
                for entry in entries {
                    let index = entry.log_id.index;
                    let bytes = encode(|| format!("raft log entry {index}"), &entry)?;
                    log.insert(index, bytes.as_slice())?;
                }
                Ok(())
            })
            .map_err(|e| StorageIOError::write_logs(&e))?;
        // The transaction is committed durably: only now may openraft count these entries.
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> RaftStorageResult<()> {
        self.db
            .write(|txn| {
                txn.open_table(RAFT_LOG)?.retain_in(log_id.index.., |_, _| false)?;
                Ok(())
            })
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> RaftStorageResult<()> {
        let bytes = encode(|| "last purged log id".to_owned(), &log_id).map_err(|e| StorageIOError::write_logs(&e))?;
        // The pointer and the deletion commit together, so the log never shows a hole.
        self.db
            .write(|txn| {
                txn.open_table(RAFT_STATE)?.insert(LAST_PURGED_KEY, bytes.as_slice())?;
                txn.open_table(RAFT_LOG)?.retain_in(..=log_id.index, |_, _| false)?;
                Ok(())
            })
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::index_bounds;

    #[test]
    fn index_bounds_normalise_every_range_kind() {
        assert_eq!(index_bounds(&(..)), Some((0, None)));
        assert_eq!(index_bounds(&(3..7)), Some((3, Some(7))));
        assert_eq!(index_bounds(&(3..=7)), Some((3, Some(8))));
        assert_eq!(index_bounds(&(3..)), Some((3, None)));
        assert_eq!(index_bounds(&(..=u64::MAX)), Some((0, None)));
        assert_eq!(index_bounds(&(5..5)), None);
        #[allow(clippy::reversed_empty_ranges, reason = "openraft may ask for an empty range")]
        let reversed = 7..3;
        assert_eq!(index_bounds(&reversed), None);
    }
}
