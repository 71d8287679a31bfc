//! The Raft network: tonic clients to the other members' cluster port (`cluster.proto`).
//!
//! Messages are openraft's serde types as JSON. Every request carries this member's node id,
//! cluster id and store id (`identity.rs`); the receiving member checks them against the sender
//! the message claims (see `service.rs`). Every answer carries the answering store's id, and an
//! answer from a voter on a store other than its bound one is reported as unreachable, so it
//! counts toward no quorum. A standalone node never calls it: it is the only voter.

use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use std::sync::Arc;

use openraft::{RaftNetwork, RaftNetworkFactory};
use registry_proto::cluster::RaftRequest;
use registry_proto::cluster::cluster_client::ClusterClient;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;

use super::identity::{ForeignStore, Identity};
use super::member::Member;
use super::{NodeId, TypeConfig};
use crate::cluster::Cluster;
/// Largest cluster message (snapshot chunks are far smaller).
pub(crate) const MAX_CLUSTER_MESSAGE: usize = 64 * 1024 * 1024;

/// Why a peer could not be reached or answered garbage.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    /// The address is not a valid endpoint.
    #[error("invalid peer address {0}")]
    Address(String),
    /// The RPC failed in transport.
    #[error("rpc to node {target} failed: {status}")]
    Rpc {
        /// Peer.
        target: NodeId,
        /// gRPC status.
        status: tonic::Status,
    },
    /// The answer could not be decoded.
    #[error("undecodable answer from node {target}: {source}")]
    Decode {
        /// Peer.
        target: NodeId,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

/// A client to one member's cluster service, stamped with our id.
pub(crate) fn cluster_client(channel: Channel) -> ClusterClient<Channel> {
    ClusterClient::new(channel)
        .max_decoding_message_size(MAX_CLUSTER_MESSAGE)
        .max_encoding_message_size(MAX_CLUSTER_MESSAGE)
}

/// Builds [`Peer`] clients.
#[derive(Debug, Clone)]
pub(crate) struct GrpcNetwork {
    /// This member's ids, sent with every RPC, and everyone's bound store.
    pub(crate) identity: Arc<Identity>,
    /// The peer transport (one channel per member, shared with Distro) and peer health.
    pub(crate) cluster: Arc<Cluster>,
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetwork {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Self::Network {
        let channel = self.cluster.channel(target, &node.addr).map_err(|e| PeerError::Address(e.0));
        Peer { identity: self.identity.clone(), cluster: Arc::clone(&self.cluster), target, channel }
    }
}

/// A client for one peer.
pub(crate) struct Peer {
    identity: Arc<Identity>,
    cluster: Arc<Cluster>,
    target: NodeId,
    channel: Result<Channel, PeerError>,
}

/// Which RPC.
#[derive(Clone, Copy)]
enum Rpc {
    Vote,
    Append,
    Snapshot,
}

impl Peer {
    /// Sends `req` and decodes `Result<Resp, E>`; also returns the answer's metadata (the
    /// answering store, see [`Self::counted`]).
    async fn call<Req, Resp, E>(
        &self,
        rpc: Rpc,
        req: &Req,
        timeout: Duration,
    ) -> Result<(Resp, MetadataMap), RPCError<NodeId, Member, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let channel = match &self.channel {
            Ok(c) => c.clone(),
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(e))),
        };
        let json = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = cluster_client(channel);
        let mut request = self.identity.stamped(RaftRequest { json });
        request.set_timeout(timeout);
        let reply = match rpc {
            Rpc::Vote => client.vote(request).await,
            Rpc::Append => client.append_entries(request).await,
            Rpc::Snapshot => client.install_snapshot(request).await,
        };
        let reply = reply.map_err(|status| {
            self.cluster.failed(self.target);
            let e = PeerError::Rpc { target: self.target, status };
            RPCError::Unreachable(Unreachable::new(&e))
        })?;
        self.cluster.answered(self.target);
        let (metadata, reply, _) = reply.into_parts();
        let decoded: Result<Resp, E> = serde_json::from_slice(&reply.json).map_err(|source| {
            RPCError::Network(NetworkError::new(&PeerError::Decode { target: self.target, source }))
        })?;
        decoded.map(|r| (r, metadata)).map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    /// Passes an answer on, unless it is positive (an entry accepted, a vote granted, a
    /// snapshot installed) and comes from a voter on a store other than its bound one: then the
    /// voter is reported unreachable, so its answer counts toward no quorum. Negative answers
    /// (a log conflict, a refused vote) pass, so a member on an empty store still receives the
    /// log and with it the membership that tells it it is displaced.
    fn counted<Resp>(
        &self,
        (resp, metadata): (Resp, MetadataMap),
        positive: impl FnOnce(&Resp) -> bool,
    ) -> Result<Resp, ForeignStore> {
        if positive(&resp) {
            self.identity.check_answer(self.target, &metadata)?;
        }
        Ok(resp)
    }
}

/// A voter answering from a foreign store is, for Raft, a voter that did not answer.
fn unreachable<E: std::error::Error>(e: ForeignStore) -> RPCError<NodeId, Member, E> {
    RPCError::Unreachable(Unreachable::new(&e))
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        let answer = self.call(Rpc::Append, &rpc, option.hard_ttl()).await?;
        self.counted(answer, |r: &AppendEntriesResponse<NodeId>| {
            matches!(r, AppendEntriesResponse::Success | AppendEntriesResponse::PartialSuccess(_))
        })
        .map_err(unreachable)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>>
    {
        let last_chunk = rpc.done;
        let answer = self.call(Rpc::Snapshot, &rpc, option.hard_ttl()).await?;
        self.counted(answer, |_| last_chunk).map_err(unreachable)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        let answer = self.call(Rpc::Vote, &rpc, option.hard_ttl()).await?;
        self.counted(answer, |r: &VoteResponse<NodeId>| r.vote_granted).map_err(unreachable)
    }
}
