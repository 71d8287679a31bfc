//! Many concurrent writes, one Raft entry.
//!
//! openraft 0.9 turns every `client_write` into a log entry of its own, and its core waits for
//! that append's flush before it takes the next write (`RaftCore::append_to_log` awaits the
//! `LogFlushed` callback). So the log writer's group commit sees one entry at a time from the
//! leader, and N concurrent writes cost N fsyncs in series. Nothing in `openraft::Config`
//! changes that: `max_payload_entries` only sizes replication messages. The batcher merges
//! before openraft instead:
//!
//! ```text
//!  write(cmd) ─┐
//!  write(cmd) ─┼─► queue ─► batcher task: take everything queued (at most MAX_BATCH)
//!  write(cmd) ─┘            ─► client_write(CommandBatch): one entry, one append, one fsync,
//!                              one replication round ─► state machine applies each command
//!                              in order ─► each caller gets its own command's result
//! ```
//!
//! One entry is in flight at a time: the writes that arrive while it is flushed and applied
//! form the next one, so batches grow with the load by themselves and a lone write waits for
//! nothing. Each command keeps its own result: a refused command (a CAS conflict) does not
//! affect the others of its entry, and every replica (and every replay) applies them in the
//! same order.

#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::error::{ClientWriteError, Fatal};
use serde::de::{MapAccess, SeqAccess, Visitor, value::MapAccessDeserializer, value::SeqAccessDeserializer};
use serde::{Deserialize, Deserializer, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::lease::Lease;
use super::member::Member;
use super::{NodeId, TypeConfig};
use crate::consistency::command::{Command, CommandResult};

/// Most commands in one entry. Bounds an entry's size, and so the size of an AppendEntries
/// message (openraft's `max_payload_entries` counts entries, not commands) and of one apply
/// burst; 32 concurrent clients stay far below it.
const MAX_BATCH: usize = 256;

/// What one Raft log entry carries: commands applied in order, each with its own result.
///
/// Encoded as a JSON list. Entries written before batching hold one command (a JSON object)
/// and decode as a batch of one, so existing logs replay unchanged.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct CommandBatch(Vec<Command>);

impl CommandBatch {
    /// The commands, in the order they are applied.
    pub fn commands(&self) -> &[Command] {
        &self.0
    }
}

impl From<Vec<Command>> for CommandBatch {
    fn from(commands: Vec<Command>) -> Self {
        Self(commands)
    }
}

impl<'de> Deserialize<'de> for CommandBatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BatchVisitor;

        impl<'de> Visitor<'de> for BatchVisitor {
            type Value = CommandBatch;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of commands, or one command (an entry written before batching)")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::<Command>::deserialize(SeqAccessDeserializer::new(seq)).map(CommandBatch)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Command::deserialize(MapAccessDeserializer::new(map)).map(|cmd| CommandBatch(vec![cmd]))
            }
        }

        deserializer.deserialize_any(BatchVisitor)
    }
}

/// Why a batch was not committed; every write of the batch gets it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// openraft refused or failed it (boxed: it is large, and every write's result carries it).
    #[error(transparent)]
    Raft(Box<openraft::error::RaftError<NodeId, ClientWriteError<NodeId, Member>>>),
    /// Refused before it was proposed: this node leads but its lease lapsed (`lease.rs`). Not
    /// applied.
    #[error("this member leads but no quorum has acknowledged it for {0:?}: write refused, not applied")]
    NoQuorum(std::time::Duration),
    /// Proposed, then the leader's lease lapsed before it committed. It may still be applied,
    /// if this leader regains its quorum before another one replaces it.
    #[error("the leader lost its quorum before this write committed: it may or may not be applied")]
    QuorumLost,
}

/// A queued write and where its result goes.
type Queued = (Command, oneshot::Sender<Result<CommandResult, ProposeError>>);

/// Batching counters since start.
#[derive(Debug, Default)]
pub(crate) struct BatchStats {
    proposals: AtomicU64,
    commands: AtomicU64,
}

impl BatchStats {
    /// Entries proposed.
    pub(crate) fn proposals(&self) -> u64 {
        self.proposals.load(Ordering::Relaxed)
    }

    /// Commands those entries carried.
    pub(crate) fn commands(&self) -> u64 {
        self.commands.load(Ordering::Relaxed)
    }
}

/// Handle to the batcher task. Cheap to clone; the task ends when the last clone is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Batcher {
    queue: mpsc::Sender<Queued>,
    stats: Arc<BatchStats>,
}

impl Batcher {
    /// Starts the batcher task in front of `raft`: a batch is proposed only while this node's
    /// `lease` holds, and waited for only until it lapses; at most `queue` writes wait for it.
    pub(crate) fn spawn(raft: openraft::Raft<TypeConfig>, lease: Lease, queue: usize) -> Self {
        Self::spawn_with(queue, move |batch| {
            let raft = raft.clone();
            let lease = lease.clone();
            async move {
                if lease.lapsed() {
                    return Err(ProposeError::NoQuorum(lease.length()));
                }
                tokio::select! {
                    written = raft.client_write(batch) => {
                        written.map(|response| response.data).map_err(|e| ProposeError::Raft(Box::new(e)))
                    }
                    () = lease.until_lapsed() => Err(ProposeError::QuorumLost),
                }
            }
        })
    }

    /// Starts the batcher task over any way to commit a batch (tests stand in for openraft).
    fn spawn_with<F, Fut>(queue: usize, propose: F) -> Self
    where
        F: Fn(CommandBatch) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<CommandResult>, ProposeError>> + Send + 'static,
    {
        let (queue, receiver) = mpsc::channel(queue.max(1));
        let stats = Arc::new(BatchStats::default());
        tokio::spawn(run(propose, receiver, stats.clone()));
        Self { queue, stats }
    }

    /// Batching counters.
    pub(crate) fn stats(&self) -> &Arc<BatchStats> {
        &self.stats
    }

    /// Most writes that wait for the batcher at once.
    pub(crate) fn queue_capacity(&self) -> usize {
        self.queue.max_capacity()
    }

    /// Commits `cmd` in the next entry and returns its own result once applied.
    pub(crate) async fn write(&self, cmd: Command) -> Result<CommandResult, ProposeError> {
        let (tx, rx) = oneshot::channel();
        self.queue.send((cmd, tx)).await.map_err(|_| stopped())?;
        // No answer means the task is gone: the runtime is shutting down.
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }
}

/// The error a write gets when the batcher cannot take it any more.
fn stopped() -> ProposeError {
    ProposeError::Raft(Box::new(openraft::error::RaftError::Fatal(Fatal::Stopped)))
}

/// The batcher task: one proposal at a time, each taking everything queued meanwhile.
async fn run<F, Fut>(propose: F, mut queue: mpsc::Receiver<Queued>, stats: Arc<BatchStats>)
where
    F: Fn(CommandBatch) -> Fut,
    Fut: Future<Output = Result<Vec<CommandResult>, ProposeError>>,
{
    let mut taken = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut taken, MAX_BATCH).await > 0 {
        // A caller that gave up (its deadline passed while it queued) was told its write failed:
        // it must not be applied after all.
        let (commands, replies): (Vec<Command>, Vec<_>) = taken.drain(..).filter(|(_, r)| !r.is_closed()).unzip();
        if commands.is_empty() {
            continue;
        }
        stats.proposals.fetch_add(1, Ordering::Relaxed);
        stats.commands.fetch_add(commands.len() as u64, Ordering::Relaxed);
        match propose(CommandBatch(commands)).await {
            Ok(results) => {
                if results.len() != replies.len() {
                    tracing::error!(
                        commands = replies.len(),
                        results = results.len(),
                        "the state machine answered a batch with a different number of results"
                    );
                }
                let mut results = results.into_iter();
                for reply in replies {
                    // A caller that gave up is no reason to stop.
                    let _ = reply.send(results.next().ok_or_else(stopped));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
