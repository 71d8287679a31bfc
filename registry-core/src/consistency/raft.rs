//! Raft for persistent data: every member runs openraft over its own redb log, with the
//! [`Applier`](super::Applier) as state machine, and replicates to the other members over the cluster port.
//!
//! ```text
//!  RaftNode::write(cmd) ──► batch: concurrent writes ──► openraft ──► log_store: writer task,
//!     │ not the leader?     share one entry                 │         queued appends share one
//!     └► forward to the leader over the cluster port        │         durable redb commit
//!                                              network.rs   ▼
//!                              other members: service.rs → their log_store
//!                                                           │ a quorum has it: committed
//!  answer ◄── CommandResult ◄── state_machine: Applier::apply(each cmd) ◄──┘
//!                               every N logs: snapshot → redb, log purged up to it
//!
//!  restart: snapshot (redb) → Applier::restore → re-apply log up to saved committed → ready
//! ```
//!
//! A durable write costs one fsync, so writes share them at two levels: `batch.rs` puts the
//! writes that arrive while an entry is in flight into the next entry (openraft 0.9 flushes its
//! entries one append at a time), and the log store's writer commits every append queued
//! behind a busy disk together (followers receive many entries per append anyway). Every
//! acknowledged write is on disk before it is applied, so nothing needs flushing at shutdown.
//!
//! Members come from `--members` or peer DNS (`cluster.rs`); a standalone node is a cluster of
//! one voter. On an empty store only the lowest configured member bootstraps, once, and creates
//! the cluster id. openraft 0.9 has no check-quorum and trusts a member to keep its disk and
//! address, which pods do not, so three guards sit beside it:
//! - check-quorum (`lease.rs`): a leader no quorum acknowledged within the lease refuses writes
//!   and reports no leader;
//! - identity (`identity.rs`): requests carry the cluster id, answers the store id, and a voter
//!   back on an empty store counts toward no quorum until it is re-added;
//! - rejoin (`lifecycle.rs`): a member back with a new address announces it to the leader.
//!
//! Files: `lifecycle.rs` start, rejoin, shutdown · `membership.rs` add, promote, remove (admin
//! API) · `read.rs` read index, linearizable barrier · `status.rs` status, readiness, counters ·
//! `batch.rs`, `log_store.rs`, `state_machine.rs` the write path and storage · `network.rs`,
//! `service.rs` the cluster port, client and server · `member.rs` what the membership records.

mod batch;
pub(crate) mod identity;
mod lease;
mod lifecycle;
mod log_store;
mod member;
mod membership;
pub(crate) mod network;
mod read;
mod service;
mod state_machine;
mod status;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, Fatal, InitializeError};
use openraft::{RaftMetrics, SnapshotPolicy};

use super::command::{Command, CommandResult};
use crate::cluster::{Cluster, ClusterConfig};
use crate::storage::StorageError;
use batch::Batcher;
pub use batch::CommandBatch;
pub use batch::ProposeError;
use identity::Identity;
use lease::Lease;
use log_store::LogStats;
pub use member::Member;
use network::cluster_client;
pub use service::ClusterService;
pub use state_machine::SnapshotError;
pub use status::{IdentityCounters, MemberStatus, RaftStatus, WriteCounters};

/// Raft node id.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft's type configuration for the registry: a batch of commands per entry in, one
    /// result per command out.
    pub TypeConfig:
        D = CommandBatch,
        R = Vec<CommandResult>,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Heartbeat period, ms: how often a leader reaches its followers, and so how fresh the lease's
/// "last acknowledged by a quorum" is.
const HEARTBEAT_INTERVAL_MS: u64 = 100;
/// Election timeout range, ms: how soon followers that lost their leader elect another.
const ELECTION_TIMEOUT_MIN_MS: u64 = 300;
pub(crate) const ELECTION_TIMEOUT_MAX_MS: u64 = 600;
/// Default leader lease, ms (above `ELECTION_TIMEOUT_MAX_MS`, so followers elect first).
pub const DEFAULT_LEADER_LEASE_MS: u64 = 1_500;
/// Default write timeout, ms. Nacos (JRaft) fails such writes after its 5 s request timeout.
pub const DEFAULT_WRITE_TIMEOUT_MS: u64 = 5_000;

/// Writes waiting for the batcher before a writer itself waits (backpressure), unless
/// `[queues] raft_writes` says otherwise.
pub const DEFAULT_WRITE_QUEUE: usize = 4096;

/// Raft settings of this node.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// This node's Raft id; must stay the same across restarts of the same data directory.
    /// The same as `cluster.me()`.
    pub node_id: u64,
    /// The member table (this node's own addresses and the initial members) and the peer
    /// transport, shared with Distro.
    pub cluster: Arc<Cluster>,
    /// Build a snapshot after this many applied logs since the last one (0: never automatically).
    /// A log entry carries every write batched with it (up to 256 commands, see `batch.rs`).
    pub snapshot_after_logs: u64,
    /// Logs kept after a snapshot, so slightly lagging followers can catch up without one.
    pub keep_logs_after_snapshot: u64,
    /// A standalone node is its cluster's only voter forever; a member (static list or peer
    /// DNS) may share its log with others, even when it bootstraps alone.
    pub standalone: bool,
    /// A leader that no quorum acknowledged for this long refuses writes and reports no leader
    /// (check-quorum, `lease.rs`). Longer than the election timeout.
    pub leader_lease: Duration,
    /// Longest wait for a write to commit (forwarding included); then it fails with 503, its
    /// outcome unknown if it was proposed.
    pub write_timeout: Duration,
    /// Writes waiting for the batcher before a writer itself waits (`[queues] raft_writes`).
    pub write_queue: usize,
}

impl Default for RaftConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            cluster: Cluster::new(ClusterConfig::standalone(1)),
            snapshot_after_logs: 10_000,
            keep_logs_after_snapshot: 1_000,
            standalone: true,
            leader_lease: Duration::from_millis(DEFAULT_LEADER_LEASE_MS),
            write_timeout: Duration::from_millis(DEFAULT_WRITE_TIMEOUT_MS),
            write_queue: DEFAULT_WRITE_QUEUE,
        }
    }
}

impl RaftConfig {
    /// The openraft configuration for these settings, validated.
    fn openraft_config(&self) -> Result<openraft::Config, RaftError> {
        let snapshot_policy = match self.snapshot_after_logs {
            0 => SnapshotPolicy::Never,
            n => SnapshotPolicy::LogsSinceLast(n),
        };
        openraft::Config {
            cluster_name: "registry".to_owned(),
            heartbeat_interval: HEARTBEAT_INTERVAL_MS,
            election_timeout_min: ELECTION_TIMEOUT_MIN_MS,
            election_timeout_max: ELECTION_TIMEOUT_MAX_MS,
            snapshot_policy,
            max_in_snapshot_log_to_keep: self.keep_logs_after_snapshot,
            ..Default::default()
        }
        .validate()
        .map_err(|e| RaftError::Config(Box::new(e)))
    }
}

/// Why Raft could not start or commit a write.
#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    /// The redb store could not be opened, read or written.
    #[error("raft storage failed")]
    Storage(#[from] StorageError),
    /// The task that writes the Raft log could not be started (no tokio runtime).
    #[error("cannot start the raft log writer")]
    LogWriter(#[source] tokio::runtime::TryCurrentError),
    /// The stored snapshot could not be restored.
    #[error("cannot restore the state-machine snapshot")]
    Snapshot(#[from] SnapshotError),
    /// The Raft settings are inconsistent.
    #[error("invalid raft configuration")]
    Config(#[source] Box<openraft::ConfigError>),
    /// The first start could not initialise the single-voter cluster.
    #[error("cannot initialise the raft cluster")]
    Init(#[source] Box<openraft::error::RaftError<NodeId, InitializeError<NodeId, Member>>>),
    /// This member leads without a quorum, or lost it while the write was in flight.
    #[error(transparent)]
    Quorum(ProposeError),
    /// The write did not commit in time; if it was proposed it may still be applied.
    #[error("the write did not commit within {0:?} (no quorum reachable?); it may or may not be applied")]
    Timeout(Duration),
    /// This node is not the leader; the caller may forward to the leader, if known.
    #[error("this node is not the raft leader (leader: {leader_id:?} at {leader_addr:?})")]
    NotLeader {
        /// Leader id, if known.
        leader_id: Option<NodeId>,
        /// Leader address, if known.
        leader_addr: Option<String>,
    },
    /// A membership change was refused (only membership writes can get this).
    #[error("raft membership change refused")]
    Membership(#[source] ChangeMembershipError<NodeId>),
    /// The Raft node is stopped (shut down, or halted by a storage failure); restart needed.
    #[error("raft node is not running")]
    Fatal(#[source] Box<Fatal<NodeId>>),
    /// openraft's core task failed while shutting down.
    #[error("raft shutdown failed")]
    Shutdown(#[source] tokio::task::JoinError),
    /// A membership change was refused by a safety rule.
    #[error("{0}")]
    Refused(String),
    /// The write could not be forwarded to the leader, or the leader refused it.
    #[error("forwarding the write to the leader failed: {0}")]
    Forward(String),
    /// No read index could be had from a leader (no leader, leadership not confirmed, or it did
    /// not answer), or this member did not apply up to it in time.
    #[error("linearizable read not possible now: {0}")]
    ReadIndex(String),
}

/// A running Raft node. Cheap to clone; clones share the node.
#[derive(Clone)]
pub struct RaftNode {
    raft: openraft::Raft<TypeConfig>,
    /// Committed index found on disk at start: the node is not ready before it has applied at
    /// least this far again (`None` on a fresh store).
    ready_floor: Option<u64>,
    /// Fails `changed()` once the store, held by openraft's tasks and the log writer, is
    /// closed; `shutdown` waits for it.
    db_closed: tokio::sync::watch::Receiver<()>,
    /// This node's id.
    me: NodeId,
    /// The configured initial members (shared: the node handle is cloned into every service).
    initial: Arc<BTreeSet<NodeId>>,
    /// The member table and the peer transport.
    cluster: Arc<Cluster>,
    /// Merges concurrent writes into one entry.
    batcher: Batcher,
    /// The log writer's group-commit counters.
    log_stats: Arc<LogStats>,
    /// Store and cluster ids, and everyone's bound store.
    identity: Arc<Identity>,
    /// Check-quorum.
    lease: Lease,
    /// Longest wait for a write.
    write_timeout: Duration,
    /// Writes failed for want of a quorum (refused, lost in flight, timed out).
    quorum_failures: Arc<std::sync::atomic::AtomicU64>,
    /// Snapshots installed from a leader since start (counted by the state machine).
    snapshot_installs: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode").field("ready_floor", &self.ready_floor).finish_non_exhaustive()
    }
}

impl RaftNode {
    /// Commits `cmd` through Raft (in one entry with the writes queued beside it, see
    /// `batch.rs`) and returns the state machine's answer once applied. On a member that is not
    /// the leader, the command is forwarded to the leader and the answer comes back once the
    /// leader applied it. Fails within the write timeout: at once on a leader without a quorum
    /// (`lease.rs`) or a member without a leader.
    pub async fn write(&self, cmd: Command) -> Result<CommandResult, RaftError> {
        let result = tokio::time::timeout(self.write_timeout, self.write_unbounded(cmd))
            .await
            .unwrap_or(Err(RaftError::Timeout(self.write_timeout)));
        if let Err(RaftError::Quorum(_) | RaftError::Timeout(_)) = &result {
            self.quorum_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }

    async fn write_unbounded(&self, cmd: Command) -> Result<CommandResult, RaftError> {
        let refused = match self.batcher.write(cmd.clone()).await {
            Ok(result) => return Ok(result),
            Err(ProposeError::Raft(e)) => *e,
            Err(e) => return Err(RaftError::Quorum(e)),
        };
        match refused {
            openraft::error::RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                match (f.leader_id, f.leader_node.as_ref().map(|n| n.addr.clone())) {
                    (Some(leader), Some(addr)) if leader != self.me => self.forward(leader, &addr, &cmd).await,
                    _ => Err(RaftError::NotLeader { leader_id: f.leader_id, leader_addr: None }),
                }
            }
            openraft::error::RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                Err(RaftError::Membership(e))
            }
            openraft::error::RaftError::Fatal(f) => Err(RaftError::Fatal(Box::new(f))),
        }
    }

    /// Sends a command to the leader's cluster service.
    async fn forward(&self, leader: NodeId, leader_addr: &str, cmd: &Command) -> Result<CommandResult, RaftError> {
        let unavailable = |why: String| RaftError::Forward(why);
        let channel = self.cluster.channel(leader, leader_addr).map_err(|e| unavailable(e.to_string()))?;
        let command_json = serde_json::to_vec(cmd).map_err(|e| unavailable(e.to_string()))?;
        let mut request = self.identity.stamped(registry_proto::cluster::ForwardRequest { command_json });
        request.set_timeout(self.write_timeout);
        let reply = cluster_client(channel).forward(request).await.map_err(|s| unavailable(s.to_string()))?;
        let result: Result<CommandResult, String> =
            serde_json::from_slice(&reply.into_inner().result_json).map_err(|e| unavailable(e.to_string()))?;
        result.map_err(unavailable)
    }

    /// The underlying openraft handle, for metrics and later cluster work.
    pub fn raft(&self) -> &openraft::Raft<TypeConfig> {
        &self.raft
    }

    /// The member table, peer transport and peer health (shared with Distro and the API).
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.me
    }

    /// The service other members call on this node's cluster port.
    pub fn cluster_service(&self) -> ClusterService {
        ClusterService::new(
            self.raft.clone(),
            self.batcher.clone(),
            self.identity.clone(),
            BTreeSet::clone(&self.initial),
        )
    }

    /// A request to another member, stamped with this member's ids (Distro uses it too).
    pub(crate) fn stamped<T>(&self, body: T) -> tonic::Request<T> {
        self.identity.stamped(body)
    }

    /// Refuses a cluster request from another cluster (Distro uses it too).
    pub(crate) fn check_cluster(&self, sender: NodeId, md: &tonic::metadata::MetadataMap) -> Result<(), tonic::Status> {
        self.identity.check_cluster(sender, md)
    }

    /// The leader as clients should see it: none while this node leads without its lease.
    fn effective_leader(&self, m: &RaftMetrics<NodeId, Member>) -> Option<NodeId> {
        m.current_leader.filter(|_| !self.lease.lapsed_in(m))
    }
}
