//! Membership changes asked for through the admin API, on the leader only: add a learner,
//! promote a learner that caught up, remove a member unless the voters left hold no reachable
//! quorum. A change waits out one already in flight (the identity binder's store bindings are
//! membership changes too). Also the membership queries Distro uses ([`RaftNode::peers`],
//! [`RaftNode::is_member`]).

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError};

use super::network::cluster_client;
use super::{Member, NodeId, RaftError, RaftNode, TypeConfig};

impl RaftNode {
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
        // A learner that never acknowledged an entry is not caught up however short the log:
        // as a voter it would hold every write (this one included) until it answers.
        let Some(matched) = m.replication.as_ref().and_then(|r| r.get(&id).cloned().flatten()).map(|l| l.index) else {
            return Err(RaftError::Refused(format!(
                "node {id} has not acknowledged any entry yet (unreachable or starting); promote it once it caught up"
            )));
        };
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
            // Bounded like every write: a change waiting on a voter that stopped answering
            // (promoted, then gone) must not hold the admin request forever; it may still
            // commit later, as a timed-out write may.
            let Ok(result) = tokio::time::timeout_at(deadline, change()).await else {
                return Err(RaftError::Timeout(self.write_timeout));
            };
            match result {
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

    pub(super) fn membership_error(
        e: openraft::error::RaftError<NodeId, ClientWriteError<NodeId, Member>>,
    ) -> RaftError {
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
}

/// On the leader `me`: records member `id`'s new cluster and HTTP addresses in the membership
/// (a pod back with a new IP). Only the addresses move: the store binding stays the member's. An
/// HTTP address of `None` (an older member) keeps the recorded one. `Ok(false)` when the
/// membership has these addresses already. Used by the rejoin service for other members and by
/// a moved member that leads before anyone learned its new address (then no one else can).
pub(super) async fn record_move(
    raft: &openraft::Raft<TypeConfig>,
    me: NodeId,
    id: NodeId,
    address: String,
    http: Option<String>,
) -> Result<bool, RaftError> {
    let m = raft.metrics().borrow().clone();
    if m.current_leader != Some(me) {
        return Err(RaftError::NotLeader { leader_id: m.current_leader, leader_addr: None });
    }
    let Some(current) = m.membership_config.membership().get_node(&id).cloned() else {
        return Err(RaftError::Refused(format!("node {id} is not in the membership")));
    };
    let http = http.unwrap_or_else(|| current.http.clone());
    if current.addr == address && current.http == http {
        return Ok(false);
    }
    tracing::info!(node = id, from = %current.addr, to = %address, %http, "member moved: updating its addresses");
    let nodes = std::collections::BTreeMap::from([(id, Member { addr: address, http, store: current.store })]);
    raft.change_membership(openraft::ChangeMembers::SetNodes(nodes), true).await.map_err(RaftNode::membership_error)?;
    Ok(true)
}
