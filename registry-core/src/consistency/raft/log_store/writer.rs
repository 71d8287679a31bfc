//! The log writer: one task owns every write to the Raft tables and commits whatever queued up
//! while it was busy in one redb transaction, so queued appends share one fsync (group commit).
//!
//! ```text
//!  append ─────────┐ encode, remember in `pending` (readable at once), enqueue, return
//!  truncate/purge ─┤ cut `pending`, enqueue; the caller awaits the completion
//!  save_vote ──────┤ enqueue; the caller awaits the completion
//!  save_committed ─┘ remember, enqueue; nobody waits (a hint)
//!         │ FIFO queue
//!         ▼
//!  writer task: recv one ─► blocking pool: begin_write ─► drain the queue ─► apply every op in
//!  order ─► commit (immediate durability if any op needs it) ─► forget the committed `pending`
//!  entries ─► report every op's outcome in queue order
//! ```
//!
//! Why off the caller: a redb commit blocks for an fsync, and openraft calls the log store from
//! its core task; a synchronous commit there also stalls one of the runtime's worker threads
//! (two on our machines), which then serves no HTTP or gRPC request until the disk answers.
//! Why a task whose commits run on the blocking pool rather than a thread of its own: the task
//! ends with the store and needs no join, and tokio's paused test clock does not jump ahead
//! while a blocking task runs, so tests with paused time still see the disk as instantaneous.
//!
//! Ordering: `pending` is changed under the same lock that enqueues, so the in-memory view
//! changes in queue order, and the writer applies ops in queue order. An entry leaves
//! `pending` only after the commit that wrote it, so a reader that looks at `pending` before
//! the disk never misses an entry.
//!
//! Failure: a failed commit reports its error to every op it carried, and every later op is
//! refused (writing it would leave a hole in the durable log); openraft stops on the first
//! error it is told about. Success is only ever reported after the commit returned.
//!
//! Shutdown: dropping the last handle closes the queue; the task commits what is still queued,
//! reports it, and ends, releasing the database.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::{Entry, LogId, Vote};
use parking_lot::Mutex;
use tokio::runtime::TryCurrentError;
use tokio::sync::{mpsc, oneshot};

use super::super::{NodeId, TypeConfig};
use crate::storage::tables::{COMMITTED_KEY, LAST_PURGED_KEY, RAFT_LOG, RAFT_STATE, VOTE_KEY};
use crate::storage::{Db, StorageError, encode};

/// Told the outcome of a queued write, once, by the writer task, after the commit that carried
/// it returned (or failed). Must not block: the next commit waits for it.
pub(crate) type Done = Box<dyn FnOnce(Result<(), LogIoError>) + Send>;

/// Why a write to the Raft log or its pointers did not become durable.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum LogIoError {
    /// An entry or pointer could not be encoded; nothing was queued.
    #[error("cannot encode a raft log write")]
    Encode(#[source] Arc<StorageError>),
    /// The redb commit that carried this write failed.
    #[error("committing the raft log failed")]
    Commit(#[source] Arc<StorageError>),
    /// An earlier commit failed, so this write was refused: on top of a lost write it would
    /// leave a hole in the durable log.
    #[error("raft log write refused: an earlier commit failed")]
    AfterFailure(#[source] Arc<StorageError>),
    /// The writer task is gone (its runtime is shutting down, or a commit panicked).
    #[error("the raft log writer has stopped")]
    Stopped,
}

/// What one queued op changes.
enum Change {
    /// Inserts encoded entries (index, bytes). `seq` tells this append's entries in `pending`
    /// apart from a later append of the same index (after a truncation).
    Entries { seq: u64, rows: Vec<(u64, Vec<u8>)> },
    /// Deletes the entries from `since` on.
    Truncate { since: u64 },
    /// Deletes the entries up to `upto` and records the last purged log id (`pointer`),
    /// together, so the log never shows a hole.
    Purge { upto: u64, pointer: Vec<u8> },
    /// Sets a key of the Raft state table.
    State { key: &'static str, value: Vec<u8> },
}

/// A queued write.
struct Op {
    change: Change,
    /// Whether the commit that carries it must reach the disk before anyone is told.
    durable: bool,
    done: Option<Done>,
}

/// What openraft may read but is not (known to be) on disk yet.
#[derive(Default)]
struct Pending {
    /// Appended entries not yet committed, by index, with the `seq` of their append. Always a
    /// contiguous tail of the log: appends extend it, commits remove its head, truncation cuts it.
    entries: BTreeMap<u64, (u64, Entry<TypeConfig>)>,
    /// Sequence number of the last append.
    last_seq: u64,
    /// The last committed log id saved through this writer (`None`: none yet; the disk knows).
    committed: Option<Option<LogId<NodeId>>>,
}

/// Group-commit counters since the store was opened.
#[derive(Debug, Default)]
pub(crate) struct LogStats {
    durable_commits: AtomicU64,
    entries: AtomicU64,
}

impl LogStats {
    /// Durable commits (one fsync each) of the log writer.
    pub(crate) fn durable_commits(&self) -> u64 {
        self.durable_commits.load(Ordering::Relaxed)
    }

    /// Log entries those commits carried.
    pub(crate) fn entries(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }
}

/// The outcome of a queued write the caller waits for.
pub(crate) struct Completion(oneshot::Receiver<Result<(), LogIoError>>);

impl Completion {
    /// Waits until the commit that carried the write returned (or failed).
    pub(crate) async fn wait(self) -> Result<(), LogIoError> {
        // No answer at all means the writer ended without reaching the write.
        self.0.await.unwrap_or(Err(LogIoError::Stopped))
    }
}

/// Handle of the writer task; the log store's clones share it. Dropping it closes the queue:
/// the task commits what is queued, then ends.
pub(crate) struct LogWriter {
    pending: Arc<Mutex<Pending>>,
    stats: Arc<LogStats>,
    queue: mpsc::UnboundedSender<Op>,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter").field("stats", &self.stats).finish_non_exhaustive()
    }
}

impl LogWriter {
    /// Starts the writer task over `db` on the current tokio runtime. The queue is unbounded:
    /// openraft bounds what it has in flight itself (0.9 waits for each append's flush before
    /// it appends again).
    pub(crate) fn start(db: Arc<Db>) -> Result<Self, TryCurrentError> {
        let runtime = tokio::runtime::Handle::try_current()?;
        let (queue, receiver) = mpsc::unbounded_channel();
        let pending = Arc::new(Mutex::new(Pending::default()));
        let stats = Arc::new(LogStats::default());
        runtime.spawn(run(db, receiver, pending.clone(), stats.clone()));
        Ok(Self { pending, stats, queue })
    }

    /// Group-commit counters.
    pub(crate) fn stats(&self) -> &Arc<LogStats> {
        &self.stats
    }

    /// Queues `entries` for the next commit. They are readable (see [`Self::pending_range`])
    /// when this returns; `done` is told once they are on disk.
    pub(crate) fn append(
        &self,
        entries: impl IntoIterator<Item = Entry<TypeConfig>>,
        done: Done,
    ) -> Result<(), LogIoError> {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let rows = entries
            .iter()
            .map(|entry| {
                let index = entry.log_id.index;
                encode(|| format!("raft log entry {index}"), entry).map(|bytes| (index, bytes))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| LogIoError::Encode(Arc::new(e)))?;
        self.enqueue(|pending| {
            pending.last_seq += 1;
            let seq = pending.last_seq;
            for entry in entries {
                pending.entries.insert(entry.log_id.index, (seq, entry));
            }
            Op { change: Change::Entries { seq, rows }, durable: true, done: Some(done) }
        })
    }

    /// Queues the deletion of the entries from `since` on; pending ones are gone at once.
    pub(crate) fn truncate(&self, since: u64) -> Result<Completion, LogIoError> {
        let (done, completion) = completion();
        self.enqueue(|pending| {
            pending.entries.split_off(&since);
            Op { change: Change::Truncate { since }, durable: true, done: Some(done) }
        })?;
        Ok(completion)
    }

    /// Queues the deletion of the entries up to `upto`, recorded as the last purged log id.
    pub(crate) fn purge(&self, upto: LogId<NodeId>) -> Result<Completion, LogIoError> {
        let pointer = encode(|| "last purged log id".to_owned(), &upto).map_err(|e| LogIoError::Encode(Arc::new(e)))?;
        let (done, completion) = completion();
        self.enqueue(|pending| {
            // openraft purges applied (so committed) entries only; cut `pending` anyway so
            // reads never show a purged entry.
            pending.entries = pending.entries.split_off(&(upto.index.saturating_add(1)));
            Op { change: Change::Purge { upto: upto.index, pointer }, durable: true, done: Some(done) }
        })?;
        Ok(completion)
    }

    /// Queues the vote.
    pub(crate) fn save_vote(&self, vote: &Vote<NodeId>) -> Result<Completion, LogIoError> {
        let value = encode(|| "raft vote".to_owned(), vote).map_err(|e| LogIoError::Encode(Arc::new(e)))?;
        let (done, completion) = completion();
        self.enqueue(|_| Op { change: Change::State { key: VOTE_KEY, value }, durable: true, done: Some(done) })?;
        Ok(completion)
    }

    /// Queues the committed log id without asking for an fsync of its own: it is a hint
    /// (openraft re-derives it from a quorum), made durable by the next durable commit. Nobody
    /// waits for it, so openraft's core does not wait behind a flush in progress.
    pub(crate) fn save_committed(&self, committed: Option<LogId<NodeId>>) -> Result<(), LogIoError> {
        let value =
            encode(|| "raft committed log id".to_owned(), &committed).map_err(|e| LogIoError::Encode(Arc::new(e)))?;
        self.enqueue(|pending| {
            pending.committed = Some(committed);
            Op { change: Change::State { key: COMMITTED_KEY, value }, durable: false, done: None }
        })
    }

    /// The last committed log id saved through this writer; `None` if none was (the disk has
    /// the answer then).
    pub(crate) fn committed(&self) -> Option<Option<LogId<NodeId>>> {
        self.pending.lock().committed
    }

    /// The pending entries in `start..end` (`end` `None`: unbounded), and the index where the
    /// pending tail begins (`None`: nothing pending); every entry before it is on disk.
    /// Read this before the disk: an entry leaves `pending` only after its commit.
    pub(crate) fn pending_range(&self, start: u64, end: Option<u64>) -> (Option<u64>, Vec<Entry<TypeConfig>>) {
        let pending = self.pending.lock();
        let head = pending.entries.keys().next().copied();
        let entries = match end {
            Some(end) if end <= start => Vec::new(),
            Some(end) => pending.entries.range(start..end).map(|(_, (_, e))| e.clone()).collect(),
            None => pending.entries.range(start..).map(|(_, (_, e))| e.clone()).collect(),
        };
        (head, entries)
    }

    /// Id of the last pending entry, if any (then it is the last entry of the log).
    pub(crate) fn pending_last(&self) -> Option<LogId<NodeId>> {
        self.pending.lock().entries.last_key_value().map(|(_, (_, e))| e.log_id)
    }

    /// Builds an op under the `pending` lock and queues it under the same lock, so `pending`
    /// changes in queue order.
    fn enqueue(&self, make: impl FnOnce(&mut Pending) -> Op) -> Result<(), LogIoError> {
        let mut pending = self.pending.lock();
        let op = make(&mut pending);
        if self.queue.send(op).is_err() {
            // The task is gone: nothing queued will ever be written; stop showing it.
            pending.entries.clear();
            return Err(LogIoError::Stopped);
        }
        Ok(())
    }
}

/// A `Done` that answers a [`Completion`].
fn completion() -> (Done, Completion) {
    let (tx, rx) = oneshot::channel();
    // The waiter may have given up (its future dropped): nobody to tell then.
    let done: Done = Box::new(move |outcome| {
        let _ = tx.send(outcome);
    });
    (done, Completion(rx))
}

/// The writer task: one commit per round, until the queue is closed and drained.
async fn run(db: Arc<Db>, mut queue: mpsc::UnboundedReceiver<Op>, pending: Arc<Mutex<Pending>>, stats: Arc<LogStats>) {
    let mut failed: Option<Arc<StorageError>> = None;
    // `recv` returns `None` only once every sender is gone and the queue is empty, so whatever
    // was queued before the store was dropped is still committed.
    while let Some(first) = queue.recv().await {
        let mut ops = vec![first];
        let outcome = if let Some(cause) = &failed {
            while let Ok(op) = queue.try_recv() {
                ops.push(op);
            }
            Err(LogIoError::AfterFailure(cause.clone()))
        } else {
            let db = db.clone();
            // The queue goes along so the commit can drain it once it holds redb's write lock.
            let round = tokio::task::spawn_blocking(move || {
                let committed = commit(&db, &mut queue, &mut ops);
                (queue, ops, committed)
            })
            .await;
            let committed;
            (queue, ops, committed) = match round {
                Ok(round) => round,
                Err(e) => {
                    // The commit panicked (or the runtime is going away): its ops went with it,
                    // so their waiters are told the writer stopped; later ones find it gone.
                    tracing::error!(error = %e, "the raft log writer stopped");
                    return;
                }
            };
            match committed {
                Ok(flushed) => {
                    if let Some(entries) = flushed {
                        stats.durable_commits.fetch_add(1, Ordering::Relaxed);
                        stats.entries.fetch_add(entries, Ordering::Relaxed);
                    }
                    Ok(())
                }
                Err(e) => {
                    let e = Arc::new(e);
                    tracing::error!(error = %e, ops = ops.len(), "raft log commit failed; refusing later writes");
                    failed = Some(e.clone());
                    Err(LogIoError::Commit(e))
                }
            }
        };
        forget(&pending, &ops);
        for op in ops {
            if let Some(done) = op.done {
                done(outcome.clone());
            }
        }
    }
}

/// Applies `ops`, and every op queued meanwhile, in queue order in one transaction. Returns
/// how many entries a durable commit carried, `None` when nothing needed the disk (no fsync).
fn commit(db: &Db, queue: &mut mpsc::UnboundedReceiver<Op>, ops: &mut Vec<Op>) -> Result<Option<u64>, StorageError> {
    db.write_with(|txn| {
        // Drained once the write lock is ours: ops queued while the state machine stored a
        // snapshot (redb has one writer at a time) join this commit too.
        while let Ok(op) = queue.try_recv() {
            ops.push(op);
        }
        let mut log = txn.open_table(RAFT_LOG)?;
        let mut state = txn.open_table(RAFT_STATE)?;
        let (mut durable, mut entries) = (false, 0u64);
        for op in ops.iter() {
            durable |= op.durable;
            match &op.change {
                Change::Entries { rows, .. } => {
                    for (index, bytes) in rows {
                        log.insert(*index, bytes.as_slice())?;
                    }
                    entries += rows.len() as u64;
                }
                Change::Truncate { since } => {
                    log.retain_in(*since.., |_, _| false)?;
                }
                Change::Purge { upto, pointer } => {
                    state.insert(LAST_PURGED_KEY, pointer.as_slice())?;
                    log.retain_in(..=*upto, |_, _| false)?;
                }
                Change::State { key, value } => {
                    state.insert(*key, value.as_slice())?;
                }
            }
        }
        Ok((durable.then_some(entries), durable))
    })
}

/// Drops the entries of `ops` from `pending`: they are on disk now (or, after a failure, never
/// will be). An index appended again since (after a truncation) belongs to a later op and stays.
fn forget(pending: &Mutex<Pending>, ops: &[Op]) {
    let mut pending = pending.lock();
    for op in ops {
        if let Change::Entries { seq, rows } = &op.change {
            for (index, _) in rows {
                if pending.entries.get(index).is_some_and(|(s, _)| s == seq) {
                    pending.entries.remove(index);
                }
            }
        }
    }
}
