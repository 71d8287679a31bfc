//! Linearizable reads: the leader's read index (its commit index once a quorum confirmed its
//! leadership; a follower asks the leader over the cluster port) and a barrier that waits until
//! this member applied up to it. A leader whose lease lapsed gives no read index.

use std::time::Duration;

use super::network::cluster_client;
use super::{RaftError, RaftNode};

/// Longest wait for the leader's read index.
const READ_INDEX_TIMEOUT: Duration = Duration::from_secs(2);

impl RaftNode {
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
}
