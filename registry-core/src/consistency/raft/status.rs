//! What a node reports: its view of the cluster (admin endpoints), its readiness (locally, and
//! against the leader's commit index) and the counters `/metrics` shows. Nothing here changes
//! state.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use openraft::RaftMetrics;

use super::batch::BatchStats;
use super::{Member, NodeId, RaftNode};

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
    /// The highest index known committed here: on the leader, the index a quorum of voters
    /// has matched; elsewhere the applied index (a member applies only committed entries).
    pub commit_index: u64,
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

impl RaftNode {
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
            commit_index: quorum_matched(&m, &voters).unwrap_or(m.last_applied.map_or(0, |l| l.index)),
            members,
            ready: self.ready_in(&m),
            store_id: self.identity.store().to_owned(),
            cluster_id: self.identity.cluster(),
            displaced: self.identity.displaced(),
            lease_lapsed: self.lease.lapsed_in(&m),
            snapshot_installs: self.snapshot_installs(),
        }
    }

    /// True when this node knows a leader and has replayed what its own store had committed:
    /// the cheap, local check (gRPC server checks, startup). The readiness endpoint asks
    /// [`Self::caught_up`], which also compares with the leader.
    pub fn is_ready(&self) -> bool {
        let metrics = self.raft.metrics();
        self.ready_in(&metrics.borrow())
    }

    /// Whether this node has replayed what its own store committed (no leader needed): the
    /// readiness of what does not depend on Raft, like the gRPC SDK channel, which must keep
    /// serving ephemeral data while Raft has no quorum.
    pub fn replayed(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        m.running_state.is_ok() && m.last_applied.is_some() && m.last_applied.map(|l| l.index) >= self.ready_floor
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

    fn ready_in(&self, m: &RaftMetrics<NodeId, Member>) -> bool {
        m.running_state.is_ok()
            && !self.identity.displaced()
            && self.effective_leader(m).is_some()
            && m.last_applied.map(|l| l.index) >= self.ready_floor
            // A fresh node is ready once its initial membership is applied.
            && m.last_applied.is_some()
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

    /// Most writes that wait for the batcher at once (`[queues] raft_writes`).
    pub fn write_queue_capacity(&self) -> usize {
        self.batcher.queue_capacity()
    }

    /// Counters of the identity checks.
    pub fn identity_counters(&self) -> IdentityCounters {
        IdentityCounters {
            refused_answers: self.identity.refused_answers(),
            refused_requests: self.identity.refused_requests(),
        }
    }

    /// Writes failed since start for want of a quorum (refused by a leader whose lease lapsed,
    /// lost in flight, or not committed in time).
    pub fn quorum_failures(&self) -> u64 {
        self.quorum_failures.load(Ordering::Relaxed)
    }

    /// Snapshots received from a leader and installed since start.
    pub fn snapshot_installs(&self) -> u64 {
        self.snapshot_installs.load(Ordering::Relaxed)
    }
}

/// On the leader, the log index a majority of `voters` has matched (itself at its last log
/// index); `None` elsewhere.
fn quorum_matched(m: &RaftMetrics<NodeId, Member>, voters: &BTreeSet<NodeId>) -> Option<u64> {
    let replication = m.replication.as_ref()?;
    let mut matched: Vec<u64> = voters
        .iter()
        .map(|v| {
            if *v == m.id {
                m.last_log_index.unwrap_or(0)
            } else {
                replication.get(v).cloned().flatten().map_or(0, |l| l.index)
            }
        })
        .collect();
    matched.sort_unstable_by(|a, b| b.cmp(a));
    matched.get(voters.len() / 2).copied()
}
