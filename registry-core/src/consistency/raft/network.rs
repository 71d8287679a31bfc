//! The Raft network of a standalone node: there are no peers, so there is nothing to call.
//!
//! A single-voter cluster never sends an RPC (it elects itself and commits alone); this exists
//! only because openraft requires a network. Should openraft ever try to reach another node,
//! every RPC fails as `Unreachable`. A later issue replaces this with a tonic client on the
//! cluster port.

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};

use super::{NodeId, TypeConfig};

/// Why every RPC of a standalone node fails.
#[derive(Debug, thiserror::Error)]
#[error("standalone node has no peers: cannot reach node {target}")]
struct NoPeers {
    target: NodeId,
}

/// Builds [`NoPeer`] clients.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StandaloneNetwork;

impl RaftNetworkFactory<TypeConfig> for StandaloneNetwork {
    type Network = NoPeer;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Self::Network {
        NoPeer { target }
    }
}

/// A "client" for a peer that cannot exist in standalone mode.
#[derive(Debug)]
pub(crate) struct NoPeer {
    target: NodeId,
}

impl NoPeer {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Unreachable(Unreachable::new(&NoPeers { target: self.target }))
    }
}

impl RaftNetwork<TypeConfig> for NoPeer {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(self.unreachable())
    }
}
