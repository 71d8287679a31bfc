//! The cluster service: receives Raft messages and forwarded writes from other members.
//!
//! Every request must name its sender (`x-registry-node`) and the sender must be a member of
//! the current Raft membership (or of the configured initial members, or anyone while this
//! member has no membership at all: it is waiting to be added); Raft messages must come
//! from the member they claim (the candidate of a vote, the leader of an append or snapshot).
//! Anything else is refused and logged; the node keeps running.

use std::collections::BTreeSet;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use registry_proto::cluster::cluster_server::Cluster;
use registry_proto::cluster::{
    ForwardReply, ForwardRequest, RaftReply, RaftRequest, ReadIndexReply, ReadIndexRequest, RejoinReply, RejoinRequest,
};
use tonic::{Request, Response, Status};

use std::sync::Arc;

use super::batch::Batcher;
use super::identity::{Identity, NODE_HEADER};
use super::{NodeId, RaftError, TypeConfig};
use crate::consistency::command::Command;

/// The tonic service over a Raft handle.
#[derive(Clone)]
pub struct ClusterService {
    raft: openraft::Raft<TypeConfig>,
    /// Forwarded writes join the leader's own in its next entry.
    batcher: Batcher,
    /// This member's ids: requests from another cluster are refused, answers carry its store.
    identity: Arc<Identity>,
    me: NodeId,
    /// Members configured at start (`--members`); accepted before the membership is known.
    initial: BTreeSet<NodeId>,
}

impl ClusterService {
    /// A service for `raft` (writes through `batcher`), accepting the initial members as
    /// senders too.
    pub(crate) fn new(
        raft: openraft::Raft<TypeConfig>,
        batcher: Batcher,
        identity: Arc<Identity>,
        initial: BTreeSet<NodeId>,
    ) -> Self {
        let me = identity.me();
        Self { raft, batcher, identity, me, initial }
    }

    /// The sender id from the header, if it is a known member.
    fn sender<T>(&self, req: &Request<T>) -> Result<NodeId, Status> {
        let id: NodeId =
            req.metadata().get(NODE_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).ok_or_else(
                || {
                    tracing::warn!(peer = ?req.remote_addr(), "cluster request without a valid sender id refused");
                    Status::unauthenticated("missing or invalid x-registry-node header")
                },
            )?;
        // A member that has no membership yet (an empty store waiting to be added as a learner)
        // cannot know its leader in advance: it accepts whoever adds it; openraft's term and
        // vote checks still apply, and once the membership arrives only its members are heard.
        let known = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            let membership = m.membership_config.membership();
            self.initial.contains(&id)
                || membership.nodes().any(|(n, _)| *n == id)
                || membership.nodes().next().is_none()
        };
        if !known || id == self.me {
            tracing::warn!(peer = ?req.remote_addr(), sender = id, "cluster request from an unknown member refused");
            return Err(Status::permission_denied(format!("node {id} is not a member of this cluster")));
        }
        self.identity.check_cluster(id, req.metadata())?;
        Ok(id)
    }

    fn decode<T: serde::de::DeserializeOwned>(sender: NodeId, json: &[u8]) -> Result<T, Status> {
        serde_json::from_slice(json).map_err(|e| {
            tracing::warn!(sender, error = %e, "undecodable cluster message refused");
            Status::invalid_argument(format!("undecodable message: {e}"))
        })
    }

    fn claims(sender: NodeId, claimed: Option<NodeId>) -> Result<(), Status> {
        if claimed != Some(sender) {
            tracing::warn!(sender, ?claimed, "cluster message claiming another member refused");
            return Err(Status::permission_denied(format!("node {sender} sent a message on behalf of {claimed:?}")));
        }
        Ok(())
    }

    /// A Raft answer, carrying this member's store id (the leader counts it only if it is the
    /// store the membership binds to this member).
    fn reply<T: serde::Serialize>(&self, result: &T) -> Result<Response<RaftReply>, Status> {
        let json = serde_json::to_vec(result).map_err(|e| Status::internal(e.to_string()))?;
        Ok(self.identity.answer(RaftReply { json }))
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let sender = self.sender(&request)?;
        let rpc: VoteRequest<NodeId> = Self::decode(sender, &request.get_ref().json)?;
        Self::claims(sender, rpc.vote.leader_id().voted_for())?;
        self.reply(&self.raft.vote(rpc).await)
    }

    async fn append_entries(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let sender = self.sender(&request)?;
        let rpc: AppendEntriesRequest<TypeConfig> = Self::decode(sender, &request.get_ref().json)?;
        Self::claims(sender, rpc.vote.leader_id().voted_for())?;
        self.identity.adopt_cluster(request.metadata());
        self.reply(&self.raft.append_entries(rpc).await)
    }

    async fn install_snapshot(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let sender = self.sender(&request)?;
        let rpc: InstallSnapshotRequest<TypeConfig> = Self::decode(sender, &request.get_ref().json)?;
        Self::claims(sender, rpc.vote.leader_id().voted_for())?;
        self.identity.adopt_cluster(request.metadata());
        self.reply(&self.raft.install_snapshot(rpc).await)
    }

    async fn forward(&self, request: Request<ForwardRequest>) -> Result<Response<ForwardReply>, Status> {
        let sender = self.sender(&request)?;
        let cmd: Command = Self::decode(sender, &request.get_ref().command_json)?;
        let result: Result<crate::consistency::CommandResult, String> = match self.batcher.write(cmd).await {
            Ok(r) => Ok(r),
            Err(e) => Err(e.to_string()),
        };
        let result_json = serde_json::to_vec(&result).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ForwardReply { result_json }))
    }

    /// On the leader: records the sender's new cluster and HTTP addresses in the membership (its
    /// id is its identity; only the member itself may move itself). An empty HTTP address (an
    /// older member) keeps the recorded one.
    async fn rejoin(&self, request: Request<RejoinRequest>) -> Result<Response<RejoinReply>, Status> {
        let sender = self.sender(&request)?;
        let address = request.get_ref().address.trim().to_owned();
        let http = Some(request.get_ref().http_address.trim()).filter(|h| !h.is_empty());
        if address.is_empty() {
            return Err(Status::invalid_argument("empty address"));
        }
        match super::membership::record_move(&self.raft, self.me, sender, address, http.map(str::to_owned)).await {
            Ok(updated) => Ok(Response::new(RejoinReply { updated })),
            Err(RaftError::NotLeader { .. }) => Err(Status::failed_precondition("not the leader")),
            Err(RaftError::Refused(why)) => Err(Status::permission_denied(why)),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }

    /// On the leader: confirms leadership with a quorum and answers the commit index at the time
    /// of asking (Raft's ReadIndex). Elsewhere: `is_leader = false` with the local applied index.
    async fn read_index(&self, request: Request<ReadIndexRequest>) -> Result<Response<ReadIndexReply>, Status> {
        self.sender(&request)?;
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader != Some(self.me) {
            return Ok(Response::new(ReadIndexReply {
                read_index: m.last_applied.map_or(0, |l| l.index),
                is_leader: false,
            }));
        }
        match self.raft.get_read_log_id().await {
            Ok((read_log_id, _)) => {
                Ok(Response::new(ReadIndexReply { read_index: read_log_id.map_or(0, |l| l.index), is_leader: true }))
            }
            Err(e) => Err(Status::unavailable(format!("leadership not confirmed: {e}"))),
        }
    }
}
