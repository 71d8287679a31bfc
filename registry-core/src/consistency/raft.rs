//! Raft for persistent data: openraft over a redb log, with the [`Applier`] as state machine.
//!
//! ```text
//!  RaftNode::write(cmd) ──► openraft ──► log_store: append to redb (durable) ──► committed
//!                                                                                   │
//!  answer ◄── CommandResult ◄── state_machine: Applier::apply(cmd) ◄────────────────┘
//!                               every N logs: snapshot → redb, log purged up to it
//!
//!  restart: snapshot (redb) → Applier::restore → re-apply log up to saved committed → ready
//! ```
//!
//! Today a node is a standalone single-voter cluster (`network.rs` has no peers); the first
//! start initialises it, later starts reuse what is on disk. Every acknowledged write is on
//! disk before it is applied, so nothing needs flushing at shutdown.

mod log_store;
mod network;
mod state_machine;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, Fatal, InitializeError};
use openraft::{BasicNode, RaftMetrics, SnapshotPolicy};

use super::apply::Applier;
use super::command::{Command, CommandResult};
use crate::storage::{Db, StorageError};
use log_store::LogStore;
use network::StandaloneNetwork;
pub use state_machine::SnapshotError;
use state_machine::StateMachine;

/// Raft node id.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft's type configuration for the registry: commands in, command results out.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Heartbeat period, ms. Short: a standalone node has nobody to bother.
const HEARTBEAT_INTERVAL_MS: u64 = 100;
/// Election timeout range, ms. A restarted single voter becomes leader within this.
const ELECTION_TIMEOUT_MIN_MS: u64 = 300;
const ELECTION_TIMEOUT_MAX_MS: u64 = 600;
/// How long `shutdown` waits for openraft's background tasks to release the database.
const DB_RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Raft settings of this node.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// This node's Raft id; must stay the same across restarts of the same data directory.
    pub node_id: u64,
    /// Address other nodes use to reach this one (the cluster port).
    pub advertise_addr: String,
    /// Build a snapshot after this many applied logs since the last one (0: never automatically).
    pub snapshot_after_logs: u64,
    /// Logs kept after a snapshot, so slightly lagging followers can catch up without one.
    pub keep_logs_after_snapshot: u64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            advertise_addr: "127.0.0.1:9849".to_owned(),
            snapshot_after_logs: 10_000,
            keep_logs_after_snapshot: 1_000,
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
    /// The stored snapshot could not be restored.
    #[error("cannot restore the state-machine snapshot")]
    Snapshot(#[from] SnapshotError),
    /// The Raft settings are inconsistent.
    #[error("invalid raft configuration")]
    Config(#[source] Box<openraft::ConfigError>),
    /// The first start could not initialise the single-voter cluster.
    #[error("cannot initialise the raft cluster")]
    Init(#[source] Box<openraft::error::RaftError<NodeId, InitializeError<NodeId, BasicNode>>>),
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
}

/// A running Raft node. Cheap to clone; clones share the node.
#[derive(Clone)]
pub struct RaftNode {
    raft: openraft::Raft<TypeConfig>,
    /// Committed index found on disk at start: the node is not ready before it has applied at
    /// least this far again (`None` on a fresh store).
    ready_floor: Option<u64>,
    /// The store, held by openraft's tasks; `shutdown` waits until they let go of it.
    db: Weak<Db>,
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
        let log_store = LogStore::new(db.clone());
        let state_machine = StateMachine::open(db.clone(), applier)?;
        let pristine = log_store.is_pristine()? && state_machine.last_applied().is_none();
        let ready_floor = log_store.committed()?.map(|c| c.index);
        let db_path = db.path().to_path_buf();
        let weak_db = Arc::downgrade(&db);
        drop(db);

        let raft = openraft::Raft::new(config.node_id, raft_config, StandaloneNetwork, log_store, state_machine)
            .await
            .map_err(|e| RaftError::Fatal(Box::new(e)))?;
        if pristine {
            tracing::info!(
                node_id = config.node_id,
                path = %db_path.display(),
                "initialising a new single-node raft cluster"
            );
            let members = BTreeMap::from([(config.node_id, BasicNode::new(&config.advertise_addr))]);
            raft.initialize(members).await.map_err(|e| RaftError::Init(Box::new(e)))?;
        } else {
            tracing::info!(
                node_id = config.node_id,
                path = %db_path.display(),
                ?ready_floor,
                "raft restarted on existing data"
            );
        }
        Ok(Self { raft, ready_floor, db: weak_db })
    }

    /// Commits `cmd` through Raft and returns the state machine's answer once applied.
    pub async fn write(&self, cmd: Command) -> Result<CommandResult, RaftError> {
        match self.raft.client_write(cmd).await {
            Ok(response) => Ok(response.data),
            Err(openraft::error::RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(RaftError::NotLeader { leader_id: f.leader_id, leader_addr: f.leader_node.map(|n| n.addr) })
            }
            Err(openraft::error::RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(RaftError::Membership(e))
            }
            Err(openraft::error::RaftError::Fatal(f)) => Err(RaftError::Fatal(Box::new(f))),
        }
    }

    /// True when this node knows a leader and has applied everything committed.
    pub fn is_ready(&self) -> bool {
        let metrics = self.raft.metrics();
        self.ready_in(&metrics.borrow())
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
        // they hold the store until then.
        let deadline = tokio::time::Instant::now() + DB_RELEASE_TIMEOUT;
        while self.db.strong_count() > 0 {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("raft stopped but its store is still open; reopening it will fail until released");
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// The underlying openraft handle, for metrics and later cluster work.
    pub fn raft(&self) -> &openraft::Raft<TypeConfig> {
        &self.raft
    }

    fn ready_in(&self, m: &RaftMetrics<NodeId, BasicNode>) -> bool {
        m.running_state.is_ok()
            && m.current_leader.is_some()
            && m.last_applied.map(|l| l.index) >= self.ready_floor
            // A fresh node is ready once its initial membership is applied.
            && m.last_applied.is_some()
    }
}
