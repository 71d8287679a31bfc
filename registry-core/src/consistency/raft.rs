//! Raft for persistent data: openraft over a redb log, with the [`Applier`] as state machine.
//!
//! ```text
//!  RaftNode::write(cmd) ──► batch: concurrent writes ──► openraft ──► log_store: writer task,
//!                           share one entry                           queued appends share one
//!                                                                     durable redb commit
//!                                                                            │ committed
//!  answer ◄── CommandResult ◄── state_machine: Applier::apply(each cmd) ◄────┘
//!                               every N logs: snapshot → redb, log purged up to it
//!
//!  restart: snapshot (redb) → Applier::restore → re-apply log up to saved committed → ready
//! ```
//!
//! A durable write costs one fsync, so writes share them at two levels: `batch.rs` puts the
//! writes that arrive while an entry is in flight into the next entry (openraft 0.9 flushes its
//! entries one append at a time), and the log store's writer commits every append queued
//! behind a busy disk together (followers receive many entries per append anyway).
//!
//! A standalone node is a single-voter cluster; members (`--members`, peer DNS) replicate over
//! the cluster port (`network.rs`, `service.rs`), and only the lowest id bootstraps, once, on an
//! empty store. Every acknowledged write is on disk before it is applied, so nothing needs
//! flushing at shutdown. A leader without a quorum refuses writes (`lease.rs`), and a member
//! back on an empty store counts toward no quorum until re-added (`identity.rs`).

mod batch;
pub(crate) mod identity;
mod lease;
mod log_store;
mod member;
pub(crate) mod network;
mod service;
mod state_machine;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, Fatal, InitializeError};
use openraft::{RaftMetrics, SnapshotPolicy};

use super::apply::Applier;
use super::command::{Command, CommandResult};
use crate::cluster::{Cluster, ClusterConfig};
use crate::storage::{Db, StorageError};
pub use batch::CommandBatch;
pub use batch::ProposeError;
use batch::{BatchStats, Batcher};
use identity::Identity;
use lease::Lease;
use log_store::{LogStats, LogStore};
pub use member::Member;
use network::{GrpcNetwork, cluster_client};
pub use service::ClusterService;
pub use state_machine::SnapshotError;
use state_machine::StateMachine;

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

/// Heartbeat period, ms. Short: a standalone node has nobody to bother.
const HEARTBEAT_INTERVAL_MS: u64 = 100;
/// Election timeout range, ms. A restarted single voter becomes leader within this.
const ELECTION_TIMEOUT_MIN_MS: u64 = 300;
pub(crate) const ELECTION_TIMEOUT_MAX_MS: u64 = 600;
/// Default leader lease, ms (above `ELECTION_TIMEOUT_MAX_MS`, so followers elect first).
pub const DEFAULT_LEADER_LEASE_MS: u64 = 1_500;
/// Default write timeout, ms. Nacos (JRaft) fails such writes after its 5 s request timeout.
pub const DEFAULT_WRITE_TIMEOUT_MS: u64 = 5_000;
/// How long `shutdown` waits for openraft's background tasks to release the database.
const DB_RELEASE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the leader's read index.
const READ_INDEX_TIMEOUT: Duration = Duration::from_secs(2);

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

/// After a restart, keeps telling the leader this member's addresses until the membership has
/// them (a pod that comes back with a new IP rejoins as itself; a membership written before HTTP
/// addresses were recorded learns this member's). Bounded: gives up after ten minutes.
fn spawn_rejoin(raft: openraft::Raft<TypeConfig>, identity: Arc<Identity>, cluster: Arc<Cluster>) {
    let (me, address, http_address) = (cluster.me(), cluster.own().cluster.clone(), cluster.own().http.clone());
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let m = raft.metrics().borrow().clone();
            if m.running_state.is_err() {
                return;
            }
            let membership = m.membership_config.membership();
            let mine = membership.nodes().find(|(n, _)| **n == me).map(|(_, n)| (n.addr.clone(), n.http.clone()));
            if mine.is_some_and(|(a, h)| a == address && h == http_address) {
                return;
            }
            // The leader cannot reach us at our old address, so we may not know who leads: ask
            // everyone; only the leader accepts.
            let targets: Vec<(NodeId, String)> = match m.current_leader.filter(|l| *l != me) {
                Some(l) => {
                    membership.nodes().filter(|(n, _)| **n == l).map(|(n, node)| (*n, node.addr.clone())).collect()
                }
                None => {
                    membership.nodes().filter(|(n, _)| **n != me).map(|(n, node)| (*n, node.addr.clone())).collect()
                }
            };
            for (id, target) in targets {
                let Ok(channel) = cluster.channel(id, &target) else { continue };
                let mut req = identity.stamped(registry_proto::cluster::RejoinRequest {
                    address: address.clone(),
                    http_address: http_address.clone(),
                });
                req.set_timeout(Duration::from_secs(5));
                match cluster_client(channel).rejoin(req).await {
                    Ok(_) => tracing::info!(node = me, %address, leader = %target, "announced this member's address"),
                    Err(status) => tracing::debug!(node = me, %status, "rejoin announcement not accepted"),
                }
            }
        }
    });
}

/// One member as this node sees it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Node id.
    pub id: NodeId,
    /// Cluster address.
    pub address: String,
    /// HTTP address.
    pub http_address: String,
    /// `leader`, `follower` or `learner`.
    pub role: &'static str,
    /// The store the membership binds it to (empty until its first answer to a leader).
    pub store: String,
}

/// This node's view of the cluster.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RaftStatus {
    /// This node's id.
    pub node_id: NodeId,
    /// Current leader, if known.
    pub leader: Option<NodeId>,
    /// Current term.
    pub term: u64,
    /// Last applied log index.
    pub last_applied: u64,
    /// Last log index.
    pub last_log: u64,
    /// Members of the current membership.
    pub members: Vec<MemberStatus>,
    /// Whether this node is ready (see `is_ready`).
    pub ready: bool,
    /// This member's store id (created with its data directory).
    pub store_id: String,
    /// The cluster id, once created or adopted.
    pub cluster_id: Option<String>,
    /// Whether the membership binds this node id to another store (a lost data directory):
    /// such a member neither votes nor campaigns until it is re-added.
    pub displaced: bool,
    /// Whether this node leads but no quorum acknowledged it within the lease (it then
    /// reports no leader and refuses writes).
    pub lease_lapsed: bool,
    /// Snapshots this node received from a leader and installed since it started.
    pub snapshot_installs: u64,
}

/// Counters of the member-identity checks since start, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityCounters {
    /// Answers not counted because a voter answered from a store other than its bound one.
    pub refused_answers: u64,
    /// Requests refused because they came from another cluster.
    pub refused_requests: u64,
}

/// Counters of the Raft write path since this node started, for `/metrics`: how well
/// concurrent writes share fsyncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteCounters {
    /// Entries proposed by the batcher.
    pub proposals: u64,
    /// Commands those entries carried.
    pub proposed_commands: u64,
    /// Durable commits of the Raft log (one fsync each).
    pub log_flushes: u64,
    /// Log entries those commits carried.
    pub log_entries: u64,
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
    /// Opens the store under data_dir, starts openraft, and on first start (no vote and no log)
    /// initializes a single-voter cluster of this node; never re-initializes over existing data.
    pub async fn start(config: RaftConfig, data_dir: &Path, applier: Arc<Applier>) -> Result<Self, RaftError> {
        let raft_config = Arc::new(config.openraft_config()?);
        let db = Arc::new(Db::open(data_dir)?);
        let identity = Identity::open(config.node_id, &db)?;
        let log_store = LogStore::new(db.clone()).map_err(RaftError::LogWriter)?;
        let log_stats = log_store.stats();
        let state_machine = StateMachine::open(db.clone(), applier)?;
        let snapshot_installs = state_machine.installs();
        let pristine = log_store.is_pristine()? && state_machine.last_applied().is_none();
        // Ready once applied this far again. A standalone node commits every entry of its own
        // log (they are all its own), so it waits for the last one; a member waits for the
        // committed index it saved (its log's tail may be truncated by a new leader).
        let ready_floor = if config.standalone {
            log_store.last_log_index()?.max(log_store.committed()?.map(|c| c.index))
        } else {
            log_store.committed()?.map(|c| c.index)
        };
        let db_path = db.path().to_path_buf();
        let db_closed = db.closed();
        drop(db);

        let cluster = Arc::clone(&config.cluster);
        let network = GrpcNetwork { identity: identity.clone(), cluster: Arc::clone(&cluster) };
        let raft = openraft::Raft::new(config.node_id, raft_config, network, log_store, state_machine)
            .await
            .map_err(|e| RaftError::Fatal(Box::new(e)))?;
        cluster.observe(raft.metrics());
        let configured = cluster.configured();
        let bootstraps = configured.keys().next().is_none_or(|lowest| *lowest == config.node_id);
        if pristine && bootstraps {
            let mut members: BTreeMap<NodeId, Member> = if configured.is_empty() {
                BTreeMap::from([(config.node_id, Member::at(cluster.own()))])
            } else {
                configured.iter().map(|(id, addr)| (*id, Member::at(addr))).collect()
            };
            // The others' stores are bound by the first leader as they answer (`identity.rs`).
            if let Some(own) = members.get_mut(&config.node_id) {
                own.store = identity.store().to_owned();
            }
            identity.create_cluster()?;
            tracing::info!(
                node_id = config.node_id,
                members = members.len(),
                path = %db_path.display(),
                "initialising a new raft cluster"
            );
            raft.initialize(members).await.map_err(|e| RaftError::Init(Box::new(e)))?;
        } else if pristine {
            tracing::info!(
                node_id = config.node_id,
                "empty store: waiting for the lowest member to bootstrap the cluster"
            );
        } else {
            tracing::info!(
                node_id = config.node_id,
                path = %db_path.display(),
                ?ready_floor,
                "raft restarted on existing data"
            );
        }
        let initial = Arc::new(configured.keys().copied().collect());
        if !configured.is_empty() && !pristine {
            spawn_rejoin(raft.clone(), identity.clone(), Arc::clone(&cluster));
        }
        identity::spawn_binder(raft.clone(), identity.clone());
        let lease = Lease::new(raft.metrics(), config.node_id, config.leader_lease);
        Ok(Self {
            ready_floor,
            db_closed,
            me: config.node_id,
            initial,
            cluster,
            batcher: Batcher::spawn(raft.clone(), lease.clone()),
            log_stats,
            identity,
            lease,
            write_timeout: config.write_timeout,
            quorum_failures: Arc::default(),
            snapshot_installs,
            raft,
        })
    }

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

    /// Snapshots received from a leader and installed since start.
    pub fn snapshot_installs(&self) -> u64 {
        self.snapshot_installs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Writes failed since start for want of a quorum (refused by a leader whose lease lapsed,
    /// lost in flight, or not committed in time).
    pub fn quorum_failures(&self) -> u64 {
        self.quorum_failures.load(std::sync::atomic::Ordering::Relaxed)
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

    /// True when this node knows a leader and has replayed what its own store had committed:
    /// the cheap, local check (gRPC server checks, startup). The readiness endpoint asks
    /// [`Self::caught_up`], which also compares with the leader.
    pub fn is_ready(&self) -> bool {
        let metrics = self.raft.metrics();
        self.ready_in(&metrics.borrow())
    }

    /// The leader's read index: its commit index at the time of asking, after it confirmed its
    /// leadership with a quorum. Asked of the leader over the cluster port when this member is
    /// not the leader.
    pub async fn read_index(&self) -> Result<u64, RaftError> {
        let m = self.raft.metrics().borrow().clone();
        let Some(leader) = m.current_leader else {
            return Err(RaftError::ReadIndex("no leader known".into()));
        };
        if leader == self.me {
            if self.lease.lapsed_in(&m) {
                return Err(RaftError::ReadIndex("this member leads without a quorum".into()));
            }
            let (read_log_id, _) =
                self.raft.get_read_log_id().await.map_err(|e| RaftError::ReadIndex(e.to_string()))?;
            return Ok(read_log_id.map_or(0, |l| l.index));
        }
        let addr = m
            .membership_config
            .membership()
            .nodes()
            .find(|(n, _)| **n == leader)
            .map(|(_, node)| node.addr.clone())
            .ok_or_else(|| RaftError::ReadIndex(format!("leader {leader} has no address")))?;
        let channel = self.cluster.channel(leader, &addr).map_err(|e| RaftError::ReadIndex(e.to_string()))?;
        let mut request = self.identity.stamped(registry_proto::cluster::ReadIndexRequest {});
        request.set_timeout(READ_INDEX_TIMEOUT);
        let reply = cluster_client(channel)
            .read_index(request)
            .await
            .map_err(|s| RaftError::ReadIndex(format!("leader {leader}: {}", s.message())))?
            .into_inner();
        if !reply.is_leader {
            return Err(RaftError::ReadIndex(format!("node {leader} is no longer the leader")));
        }
        Ok(reply.read_index)
    }

    /// A linearizable read barrier: returns once this member has applied everything committed
    /// before the call (ReadIndex, then a bounded wait for the local state machine), so a read
    /// of local state after it sees every write acknowledged before the call.
    pub async fn linearizable_barrier(&self, timeout: Duration) -> Result<(), RaftError> {
        let index = self.read_index().await?;
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map(|_| ())
            .map_err(|e| RaftError::ReadIndex(format!("not applied up to {index}: {e}")))
    }

    /// Readiness that tells the truth: this member knows a leader, has replayed its own store,
    /// and has applied up to the leader's commit index as of now (a member that was stopped or
    /// partitioned is not ready until it really caught up).
    pub async fn caught_up(&self) -> bool {
        if !self.is_ready() {
            return false;
        }
        match self.read_index().await {
            Ok(index) => self.raft.metrics().borrow().last_applied.map_or(0, |l| l.index) >= index,
            Err(e) => {
                tracing::debug!(error = %e, "readiness: no read index from the leader");
                false
            }
        }
    }

    /// Waits (bounded by `timeout`) until `is_ready()`; returns whether it became ready.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut metrics = self.raft.metrics();
        let wait = async {
            loop {
                let (ready, stopped) = {
                    let m = metrics.borrow_and_update();
                    (self.ready_in(&m), m.running_state.is_err())
                };
                if ready {
                    return true;
                }
                if stopped || metrics.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }

    /// Shuts openraft down (flushes nothing extra: every acknowledged write is already durable).
    ///
    /// Returns once the database file is released (bounded), so the same data directory can be
    /// opened again right away.
    pub async fn shutdown(&self) -> Result<(), RaftError> {
        self.raft.shutdown().await.map_err(RaftError::Shutdown)?;
        // openraft stops its state-machine task (and any snapshot build) just after the core;
        // they hold the store until then, and the log writer commits what is queued first.
        let mut closed = self.db_closed.clone();
        if tokio::time::timeout(DB_RELEASE_TIMEOUT, closed.changed()).await.is_err() {
            tracing::warn!("raft stopped but its store is still open; reopening it will fail until released");
        }
        Ok(())
    }

    /// Counters of the write path.
    pub fn write_counters(&self) -> WriteCounters {
        let batches: &BatchStats = self.batcher.stats();
        WriteCounters {
            proposals: batches.proposals(),
            proposed_commands: batches.commands(),
            log_flushes: self.log_stats.durable_commits(),
            log_entries: self.log_stats.entries(),
        }
    }

    /// The underlying openraft handle, for metrics and later cluster work.
    pub fn raft(&self) -> &openraft::Raft<TypeConfig> {
        &self.raft
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

    /// What this node knows of the cluster, for the admin endpoints.
    pub fn status(&self) -> RaftStatus {
        let m = self.raft.metrics().borrow().clone();
        let leader = self.effective_leader(&m);
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| MemberStatus {
                id: *id,
                address: node.addr.clone(),
                http_address: self.cluster.addr_of(*id, node).http,
                store: node.store.clone(),
                role: if Some(*id) == leader {
                    "leader"
                } else if voters.contains(id) {
                    "follower"
                } else {
                    "learner"
                },
            })
            .collect();
        RaftStatus {
            node_id: self.me,
            leader,
            term: m.current_term,
            last_applied: m.last_applied.map_or(0, |l| l.index),
            last_log: m.last_log_index.unwrap_or(0),
            members,
            ready: self.ready_in(&m),
            store_id: self.identity.store().to_owned(),
            cluster_id: self.identity.cluster(),
            displaced: self.identity.displaced(),
            lease_lapsed: self.lease.lapsed_in(&m),
            snapshot_installs: self.snapshot_installs(),
        }
    }

    /// Adds a member at these addresses as a learner (it receives the log but does not vote);
    /// returns once the membership change is committed. Only on the leader.
    pub async fn add_learner(&self, id: NodeId, addr: &crate::cluster::MemberAddr) -> Result<(), RaftError> {
        self.ensure_leader()?;
        if self.status().members.iter().any(|m| m.id == id) {
            return Err(RaftError::Refused(format!("node {id} is already a member")));
        }
        let learner = Member::at(addr);
        self.settled_change(|| self.raft.add_learner(id, learner.clone(), false)).await?;
        Ok(())
    }

    /// Promotes a learner to voter, refused while it lags more than `max_lag` entries behind the
    /// leader's log. Only on the leader.
    pub async fn promote(&self, id: NodeId, max_lag: u64) -> Result<(), RaftError> {
        self.ensure_leader()?;
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        if membership.voter_ids().any(|v| v == id) {
            return Err(RaftError::Refused(format!("node {id} is already a voter")));
        }
        if !membership.learner_ids().any(|l| l == id) {
            return Err(RaftError::Refused(format!("node {id} is not a learner; add it first")));
        }
        let last = m.last_log_index.unwrap_or(0);
        let matched = m.replication.as_ref().and_then(|r| r.get(&id).cloned().flatten()).map_or(0, |l| l.index);
        if last.saturating_sub(matched) > max_lag {
            return Err(RaftError::Refused(format!(
                "node {id} is {} entries behind (at most {max_lag} allowed); promote it once it caught up",
                last.saturating_sub(matched)
            )));
        }
        self.settled_change(|| {
            self.raft.change_membership(openraft::ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
        })
        .await?;
        Ok(())
    }

    /// Removes a member (voter or learner). Refused when the voters that would remain do not
    /// include a reachable quorum (each is asked over the cluster port, bounded). Only on the
    /// leader.
    pub async fn remove_member(&self, id: NodeId) -> Result<(), RaftError> {
        self.ensure_leader()?;
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if !membership.nodes().any(|(n, _)| *n == id) {
            return Err(RaftError::Refused(format!("node {id} is not a member")));
        }
        if !voters.contains(&id) {
            self.settled_change(|| {
                self.raft.change_membership(openraft::ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
            })
            .await?;
            return Ok(());
        }
        let remaining: Vec<(NodeId, String)> = membership
            .nodes()
            .filter(|(n, _)| voters.contains(n) && **n != id)
            .map(|(n, node)| (*n, node.addr.clone()))
            .collect();
        if remaining.is_empty() {
            return Err(RaftError::Refused("cannot remove the last voter".into()));
        }
        let mut reachable = 0;
        for (n, addr) in &remaining {
            if *n == self.me || self.probe(*n, addr).await {
                reachable += 1;
            }
        }
        let quorum = remaining.len() / 2 + 1;
        if reachable < quorum {
            return Err(RaftError::Refused(format!(
                "removing node {id} would leave {reachable} reachable of {} voters, fewer than a quorum of {quorum}",
                remaining.len()
            )));
        }
        self.settled_change(|| {
            self.raft.change_membership(openraft::ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
        })
        .await?;
        Ok(())
    }

    /// Whether a member answers on its cluster port within a second.
    async fn probe(&self, id: NodeId, addr: &str) -> bool {
        let Ok(channel) = self.cluster.channel(id, addr) else { return false };
        let mut req = self.identity.stamped(registry_proto::cluster::ReadIndexRequest {});
        req.set_timeout(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(2), cluster_client(channel).read_index(req))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn ensure_leader(&self) -> Result<(), RaftError> {
        let m = self.raft.metrics().borrow().clone();
        if self.effective_leader(&m) == Some(self.me) {
            return Ok(());
        }
        let leader_addr = m.current_leader.and_then(|l| {
            m.membership_config.membership().nodes().find(|(n, _)| **n == l).map(|(_, node)| node.addr.clone())
        });
        Err(RaftError::NotLeader { leader_id: m.current_leader, leader_addr })
    }

    /// Runs a membership change, waiting (bounded) while another one is in flight: the binder
    /// task's store bindings (`identity.rs`) are membership changes too, and must not make an
    /// operator's add, promote or remove fail.
    async fn settled_change<F, Fut>(&self, change: F) -> Result<(), RaftError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<
                Output = Result<
                    openraft::raft::ClientWriteResponse<TypeConfig>,
                    openraft::error::RaftError<NodeId, ClientWriteError<NodeId, Member>>,
                >,
            >,
    {
        let deadline = tokio::time::Instant::now() + self.write_timeout;
        loop {
            match change().await {
                Ok(_) => return Ok(()),
                Err(openraft::error::RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::InProgress(_),
                ))) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(Self::membership_error(e)),
            }
        }
    }

    fn membership_error(e: openraft::error::RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> RaftError {
        match e {
            openraft::error::RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                RaftError::NotLeader { leader_id: f.leader_id, leader_addr: f.leader_node.map(|n| n.addr) }
            }
            openraft::error::RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                RaftError::Membership(e)
            }
            openraft::error::RaftError::Fatal(f) => RaftError::Fatal(Box::new(f)),
        }
    }

    /// The member table, peer transport and peer health (shared with Distro and the API).
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.me
    }

    /// The other members of the current membership (voters and learners) with their cluster
    /// addresses. Known from the last applied membership, so also without a leader.
    pub fn peers(&self) -> Vec<(NodeId, String)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != self.me)
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect()
    }

    /// Whether `id` is a member of the current membership (or an initial member).
    pub fn is_member(&self, id: NodeId) -> bool {
        self.initial.contains(&id)
            || self.raft.metrics().borrow().membership_config.membership().nodes().any(|(n, _)| *n == id)
    }

    /// Whether this node has replayed what its own store committed (no leader needed): the
    /// readiness of what does not depend on Raft, like the gRPC SDK channel, which must keep
    /// serving ephemeral data while Raft has no quorum.
    pub fn replayed(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        m.running_state.is_ok() && m.last_applied.is_some() && m.last_applied.map(|l| l.index) >= self.ready_floor
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

    /// Counters of the identity checks.
    pub fn identity_counters(&self) -> IdentityCounters {
        IdentityCounters {
            refused_answers: self.identity.refused_answers(),
            refused_requests: self.identity.refused_requests(),
        }
    }

    /// The leader as clients should see it: none while this node leads without its lease.
    fn effective_leader(&self, m: &RaftMetrics<NodeId, Member>) -> Option<NodeId> {
        m.current_leader.filter(|_| !self.lease.lapsed_in(m))
    }

    fn ready_in(&self, m: &RaftMetrics<NodeId, Member>) -> bool {
        m.running_state.is_ok()
            && !self.identity.displaced()
            && self.effective_leader(m).is_some()
            && m.last_applied.map(|l| l.index) >= self.ready_floor
            // A fresh node is ready once its initial membership is applied.
            && m.last_applied.is_some()
    }
}
