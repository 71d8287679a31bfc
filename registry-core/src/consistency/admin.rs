//! The one door from the API into Raft and Distro: cluster status, membership changes, Distro
//! introspection, the v1 responsible member and the counters `/metrics` shows.
//!
//! ```text
//!  api/http (admin, console, naming v1 forwarding) ──► Admin ──► RaftNode (status, membership)
//!                                                           └──► Distro (digests, ownership)
//! ```
//!
//! It answers in plain data; encoding (Nacos shapes, Prometheus text) stays in the API. Writes
//! do not pass here: they go through [`super::Consistency::submit`].

use std::sync::Arc;

use super::distro::Distro;
use super::distro::wire::ServiceDigest;
use super::raft::{IdentityCounters, NodeId, RaftError, RaftNode, RaftStatus, WriteCounters};
use crate::cluster::{MemberAddr, PeerHealth};
use crate::model::ServiceKey;

/// Largest lag (log entries) at which a learner may be promoted.
const PROMOTE_MAX_LAG: u64 = 100;

/// Why a membership change was not made.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// This member does not lead; the caller may ask the leader, if known.
    #[error("this node is not the raft leader (leader: {leader_id:?} at {leader_addr:?})")]
    NotLeader {
        /// Leader id, if known.
        leader_id: Option<NodeId>,
        /// Leader cluster address, if known.
        leader_addr: Option<String>,
    },
    /// A safety rule or openraft refused the change (why).
    #[error("{0}")]
    Refused(String),
    /// Raft could not make the change now (stopped, timed out; why).
    #[error("{0}")]
    Unavailable(String),
}

impl From<RaftError> for MembershipError {
    fn from(e: RaftError) -> Self {
        match e {
            RaftError::NotLeader { leader_id, leader_addr } => Self::NotLeader { leader_id, leader_addr },
            e @ (RaftError::Refused(_) | RaftError::Membership(_)) => Self::Refused(e.to_string()),
            e => Self::Unavailable(e.to_string()),
        }
    }
}

/// Another member responsible for a v1 client (runs its beat checks, takes its writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Responsible {
    /// Its node id.
    pub node_id: NodeId,
    /// Its HTTP address, if the member table has one.
    pub http_addr: Option<String>,
}

/// This member's summary of its ephemeral data (equal digests: the views agree).
#[derive(Debug, Clone)]
pub struct DistroSummary {
    /// Digest over every ephemeral client's data.
    pub digest: String,
    /// Ephemeral clients it holds.
    pub clients: usize,
    /// Clients it owns.
    pub owned: usize,
    /// Copies of clients other members own.
    pub copies: usize,
    /// How long some member's view has differed from this one's (0: all agree).
    pub disagreement_seconds: f64,
}

/// Counters and gauges of Raft and Distro since start, for `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct ClusterCounters {
    /// The Raft write path (batching, fsyncs).
    pub writes: WriteCounters,
    /// The member-identity checks.
    pub identity: IdentityCounters,
    /// Persistent writes failed for want of a quorum.
    pub quorum_failures: u64,
    /// Snapshots installed from a leader.
    pub snapshot_installs: u64,
    /// How long some member's ephemeral view has differed from this one's (0: all agree).
    pub distro_disagreement_seconds: f64,
    /// Whether a peer's Distro snapshot was applied at start.
    pub distro_snapshot_loaded: bool,
    /// Copies of gRPC clients expired because their owner stopped confirming them.
    pub distro_copies_expired_grpc: u64,
    /// Copies of v1 clients expired likewise.
    pub distro_copies_expired_v1: u64,
    /// Distro batches to peers that failed (and were resent).
    pub distro_sync_failures: u64,
}

/// What the API may ask of Raft and Distro. Cheap to clone.
#[derive(Clone)]
pub struct Admin {
    raft: RaftNode,
    distro: Arc<Distro>,
}

impl Admin {
    /// The façade over this member's Raft node and Distro.
    pub fn new(raft: RaftNode, distro: Arc<Distro>) -> Self {
        Self { raft, distro }
    }

    /// This member's node id.
    pub fn node_id(&self) -> NodeId {
        self.raft.node_id()
    }

    /// This member's Raft view: leader, term, log indexes, members with roles.
    pub fn raft_status(&self) -> RaftStatus {
        self.raft.status()
    }

    /// Member `id`'s health as this member's own calls found it.
    pub fn peer_health(&self, id: NodeId) -> PeerHealth {
        self.raft.cluster().peer_health(id)
    }

    /// Readiness that tells the truth: the Distro snapshot is loaded and this member applied up
    /// to the leader's commit index as of now.
    pub async fn caught_up(&self) -> bool {
        self.distro.loaded() && self.raft.caught_up().await
    }

    /// Adds a member as a learner (leader only).
    pub async fn add_learner(&self, id: NodeId, addr: &MemberAddr) -> Result<(), MembershipError> {
        Ok(self.raft.add_learner(id, addr).await?)
    }

    /// Promotes a learner that caught up to voter (leader only).
    pub async fn promote(&self, id: NodeId) -> Result<(), MembershipError> {
        Ok(self.raft.promote(id, PROMOTE_MAX_LAG).await?)
    }

    /// Removes a member, refused when it would leave no reachable quorum (leader only).
    pub async fn remove_member(&self, id: NodeId) -> Result<(), MembershipError> {
        Ok(self.raft.remove_member(id).await?)
    }

    /// Whether this node runs alone (no Distro replication).
    pub fn is_standalone(&self) -> bool {
        self.distro.is_standalone()
    }

    /// The other member responsible for the v1 client `ip:port` (Nacos' Distro hash over the
    /// healthy members); `None` when this member is (or runs alone).
    pub fn responsible_member(&self, client: &str) -> Option<Responsible> {
        let (node_id, _) = self.distro.responsible_peer(client)?;
        Some(Responsible { node_id, http_addr: self.raft.cluster().http_addr(node_id) })
    }

    /// This member's summary of its ephemeral data.
    pub fn distro_summary(&self) -> DistroSummary {
        let (digest, clients) = self.distro.digest_all();
        let (owned, copies) = self.distro.counts();
        DistroSummary { digest, clients, owned, copies, disagreement_seconds: self.distro.disagreement_seconds() }
    }

    /// A service's ephemeral instances as this member serves them, with their digest.
    pub fn distro_service(&self, service: &ServiceKey) -> ServiceDigest {
        self.distro.inspect(service)
    }

    /// [`Self::distro_service`] from every member (this one first); a member that did not
    /// answer gives its id and why.
    pub async fn distro_service_everywhere(
        &self,
        service: &ServiceKey,
    ) -> Vec<Result<ServiceDigest, (NodeId, String)>> {
        self.distro.inspect_all(service).await
    }

    /// The counters `/metrics` shows.
    pub fn counters(&self) -> ClusterCounters {
        let (grpc, v1) = self.distro.copies_expired();
        ClusterCounters {
            writes: self.raft.write_counters(),
            identity: self.raft.identity_counters(),
            quorum_failures: self.raft.quorum_failures(),
            snapshot_installs: self.raft.snapshot_installs(),
            distro_disagreement_seconds: self.distro.disagreement_seconds(),
            distro_snapshot_loaded: self.distro.snapshot_loaded_from_peer(),
            distro_copies_expired_grpc: grpc,
            distro_copies_expired_v1: v1,
            distro_sync_failures: self.distro.sync_failures(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn membership_errors_keep_the_texts_the_admin_api_answered_with() {
        let refused = MembershipError::from(RaftError::Refused("node 4 is not a member".into()));
        assert!(matches!(&refused, MembershipError::Refused(why) if why == "node 4 is not a member"));
        let timeout = RaftError::Timeout(Duration::from_secs(5));
        let expected = timeout.to_string();
        assert!(matches!(MembershipError::from(timeout), MembershipError::Unavailable(why) if why == expected));
        let not_leader = RaftError::NotLeader { leader_id: Some(2), leader_addr: Some("a:9849".into()) };
        assert!(matches!(
            MembershipError::from(not_leader),
            MembershipError::NotLeader { leader_id: Some(2), leader_addr: Some(addr) } if addr == "a:9849"
        ));
    }
}
