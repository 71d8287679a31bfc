//! The Distro service on the cluster port. Like the Raft service, every request must name a
//! member as its sender; garbage is refused with a status and logged, never applied.

use std::sync::Arc;

use registry_proto::cluster::DistroMessage;
use registry_proto::cluster::distro_server::Distro as DistroRpc;
use tonic::{Request, Response, Status};

use super::Distro;
use super::wire::{ClientBatch, Digest, InspectRequest};
use crate::consistency::raft::NodeId;
use crate::consistency::raft::identity::NODE_HEADER;

/// The tonic service over this member's [`Distro`].
#[derive(Debug, Clone)]
pub struct DistroService {
    distro: Arc<Distro>,
}

impl DistroService {
    /// A service answering for `distro`.
    pub fn new(distro: Arc<Distro>) -> Self {
        Self { distro }
    }

    fn sender(&self, request: &Request<DistroMessage>) -> Result<NodeId, Status> {
        let id: Option<NodeId> =
            request.metadata().get(NODE_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        match id {
            Some(id) if id != self.distro.me && self.distro.raft.is_member(id) => {
                self.distro.raft.check_cluster(id, request.metadata())?;
                Ok(id)
            }
            _ => {
                tracing::warn!(peer = ?request.remote_addr(), sender = ?id, "distro request from a non-member refused");
                Err(Status::permission_denied("sender is not a member of this cluster"))
            }
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(sender: NodeId, request: &Request<DistroMessage>) -> Result<T, Status> {
        serde_json::from_slice(&request.get_ref().json).map_err(|e| {
            tracing::warn!(sender, error = %e, "undecodable distro message refused");
            Status::invalid_argument(format!("undecodable message: {e}"))
        })
    }

    fn reply<T: serde::Serialize>(body: &T) -> Result<Response<DistroMessage>, Status> {
        let json = serde_json::to_vec(body).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(DistroMessage { json }))
    }
}

#[tonic::async_trait]
impl DistroRpc for DistroService {
    async fn sync(&self, request: Request<DistroMessage>) -> Result<Response<DistroMessage>, Status> {
        let sender = self.sender(&request)?;
        let batch: ClientBatch = Self::decode(sender, &request)?;
        let applied = self.distro.receive(sender, batch, false);
        Self::reply(&applied)
    }

    async fn verify(&self, request: Request<DistroMessage>) -> Result<Response<DistroMessage>, Status> {
        let sender = self.sender(&request)?;
        let digest: Digest = Self::decode(sender, &request)?;
        Self::reply(&self.distro.on_digest(sender, &digest))
    }

    async fn snapshot(&self, request: Request<DistroMessage>) -> Result<Response<DistroMessage>, Status> {
        self.sender(&request)?;
        Self::reply(&self.distro.snapshot())
    }

    async fn inspect(&self, request: Request<DistroMessage>) -> Result<Response<DistroMessage>, Status> {
        let sender = self.sender(&request)?;
        let asked: InspectRequest = Self::decode(sender, &request)?;
        Self::reply(&self.distro.inspect(&asked.service))
    }
}
