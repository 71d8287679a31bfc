//! The Raft log and Raft's durable pointers (vote, committed, last purged) on redb.
//!
//! Writes go through the log [`writer`] task, which commits whatever queued up while it was
//! busy in one durable redb transaction (group commit): `append` only queues its entries and
//! returns, and openraft's callback is told once they are on disk, so whatever openraft
//! believes is on disk is on disk. Until then the entries are served from the writer's
//! in-memory `pending` tail, because openraft may read them right after `append` returns.
//! `truncate`, `purge` and `save_vote` go through the same queue (so they stay ordered with
//! the appends before them) and return once committed.
//!
//! Reads are short redb read transactions merged with that tail. No lock is held across an
//! `.await`.

mod writer;

#[cfg(test)]
mod tests;

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageIOError, Vote};
use redb::ReadableTable;
use serde::de::DeserializeOwned;

use super::{NodeId, TypeConfig};
use crate::storage::tables::{COMMITTED_KEY, LAST_PURGED_KEY, RAFT_LOG, RAFT_STATE, VOTE_KEY};
use crate::storage::{Db, StorageError, decode, get_json};
pub(crate) use writer::LogStats;
use writer::{Done, LogIoError, LogWriter};

/// openraft's view of a storage failure.
type RaftStorageResult<T> = Result<T, openraft::StorageError<NodeId>>;

/// The log store. Cheap to clone: clones share the database and the writer task (openraft's
/// log reader is a clone); the task commits what is queued and ends when the last clone is
/// dropped.
#[derive(Debug, Clone)]
pub(crate) struct LogStore {
    db: Arc<Db>,
    writer: Arc<LogWriter>,
}

impl LogStore {
    /// A log store over `db`; starts its writer task on the current tokio runtime.
    pub(crate) fn new(db: Arc<Db>) -> Result<Self, tokio::runtime::TryCurrentError> {
        let writer = Arc::new(LogWriter::start(db.clone())?);
        Ok(Self { db, writer })
    }

    /// Group-commit counters of this store's writer.
    pub(crate) fn stats(&self) -> Arc<LogStats> {
        self.writer.stats().clone()
    }

    /// Whether nothing Raft-related was ever written: no vote, no log entry, nothing purged.
    /// Only such a store may be initialised as a new cluster.
    pub(crate) fn is_pristine(&self) -> Result<bool, StorageError> {
        let vote: Option<Vote<NodeId>> = self.read_state(VOTE_KEY)?;
        let state = self.log_state()?;
        Ok(vote.is_none() && state.last_log_id.is_none())
    }

    /// Index of the last entry in the log (or of the last purged one), if any.
    pub(crate) fn last_log_index(&self) -> Result<Option<u64>, StorageError> {
        Ok(self.log_state()?.last_log_id.map(|l| l.index))
    }

    /// The last committed log id saved by openraft, if any.
    pub(crate) fn committed(&self) -> Result<Option<LogId<NodeId>>, StorageError> {
        match self.writer.committed() {
            Some(saved) => Ok(saved),
            None => Ok(self.read_state::<Option<LogId<NodeId>>>(COMMITTED_KEY)?.flatten()),
        }
    }

    fn read_state<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        self.db.read(|txn| get_json(&txn.open_table(RAFT_STATE)?, key))
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, StorageError> {
        // The pending tail first: an entry leaves it only once it is on disk.
        let pending_last = self.writer.pending_last();
        self.db.read(|txn| {
            let last_purged: Option<LogId<NodeId>> = get_json(&txn.open_table(RAFT_STATE)?, LAST_PURGED_KEY)?;
            let last_entry = match pending_last {
                Some(last) => Some(last),
                None => match txn.open_table(RAFT_LOG)?.last()? {
                    Some((index, bytes)) => Some(decode_entry(index.value(), bytes.value())?.log_id),
                    None => None,
                },
            };
            Ok(LogState { last_purged_log_id: last_purged, last_log_id: last_entry.or(last_purged) })
        })
    }

    fn entries(&self, range: &impl RangeBounds<u64>) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let Some((start, end)) = index_bounds(range) else {
            return Ok(Vec::new());
        };
        // The pending tail first: an entry leaves it only once it is on disk, so what is not
        // in this copy of it is in the read transaction opened after. Everything before the
        // tail is read from disk; the disk is not asked for the tail's indexes (a truncation
        // in progress may still have old entries there).
        let (tail_head, tail) = self.writer.pending_range(start, end);
        let disk_end = match (tail_head, end) {
            (Some(head), Some(end)) => Some(head.min(end)),
            (Some(head), None) => Some(head),
            (None, end) => end,
        };
        let mut entries = match disk_end {
            Some(disk_end) if disk_end <= start => Vec::new(),
            _ => self.disk_entries(start, disk_end)?,
        };
        entries.extend(tail);
        Ok(entries)
    }

    fn disk_entries(&self, start: u64, end: Option<u64>) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
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
        wait(self.writer.save_vote(vote)).await.map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> RaftStorageResult<Option<Vote<NodeId>>> {
        self.read_state(VOTE_KEY).map_err(|e| StorageIOError::read_vote(&e).into())
    }

    /// Saved so that a restarted node re-applies the log up to here before serving (the state
    /// machine itself lives in memory and is rebuilt from the snapshot plus the log).
    /// The committed index is a hint (openraft re-derives it from a quorum), so it is queued
    /// without waiting and rides along with the next durable commit.
    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> RaftStorageResult<()> {
        self.writer.save_committed(committed).map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> RaftStorageResult<Option<LogId<NodeId>>> {
        self.committed().map_err(|e| StorageIOError::read(&e).into())
    }

    /// Queues the entries and returns: they are readable at once, and `callback` is told from
    /// the writer task once the commit that carried them returned (or failed).
    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> RaftStorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let done: Done = Box::new(move |outcome| callback.log_io_completed(outcome.map_err(std::io::Error::other)));
        self.writer.append(entries, done).map_err(|e| StorageIOError::write_logs(&e).into())
    }

    /// Pending entries from `log_id` on disappear at once; returns once the deletion (and
    /// every append queued before it) is committed.
    async fn truncate(&mut self, log_id: LogId<NodeId>) -> RaftStorageResult<()> {
        wait(self.writer.truncate(log_id.index)).await.map_err(|e| StorageIOError::write_logs(&e).into())
    }

    /// The last purged pointer and the deletion commit together, so the log never shows a
    /// hole; returns once committed.
    async fn purge(&mut self, log_id: LogId<NodeId>) -> RaftStorageResult<()> {
        wait(self.writer.purge(log_id)).await.map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

/// Waits for a queued write, if it could be queued.
async fn wait(queued: Result<writer::Completion, LogIoError>) -> Result<(), LogIoError> {
    queued?.wait().await
}
