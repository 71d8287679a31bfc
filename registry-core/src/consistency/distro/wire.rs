//! Distro messages: JSON inside `DistroMessage.json` (`cluster.proto`). Internal to this server,
//! so plain serde types; every field is checked by the receiver before use.

use serde::{Deserialize, Serialize};

use crate::consistency::raft::NodeId;
use crate::model::{ClientId, Instance, ServiceKey};

/// One client as its owner has it now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientData {
    /// The client.
    pub client: ClientId,
    /// The member that owns it (runs its liveness, replicates it).
    pub owner: NodeId,
    /// The owner's revision of it: time-based, increasing across the owner's restarts, so a
    /// receiver can drop anything older than what it has.
    pub revision: u64,
    /// Its whole publication, or `None` once the client is gone (a tombstone).
    pub publication: Option<Vec<(ServiceKey, Vec<Instance>)>>,
    /// How long the sender has held this copy without its owner confirming it (ms): 0 from the
    /// owner itself. A snapshot carries it so that a starting member's copies of a silent owner
    /// (a dead member, or this member's own previous run) expire and count as unconfirmed when
    /// the other members' do, not a whole grace period after the start. Absent (0) from
    /// members that predate it.
    #[serde(default)]
    pub unconfirmed_ms: u64,
}

/// `Sync` and `Snapshot` payload: a batch of clients.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientBatch {
    /// The clients.
    pub clients: Vec<ClientData>,
}

/// `Verify` payload: the sender's owned clients and their revisions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Digest {
    /// The owner (must be the sender).
    pub owner: NodeId,
    /// The owner's clock when the digest was taken: a receiver's copy that is absent from the
    /// digest is dropped only if it is not newer than this.
    pub as_of: u64,
    /// When the owner's current run started, on its revision clock: a copy absent from the
    /// digest is dropped only if it is not older than this (see `Ledger::compare`). Absent
    /// (0) from members that predate it, which makes every absent copy droppable, as before.
    #[serde(default)]
    pub since: u64,
    /// Every client the owner owns, with its revision.
    pub clients: Vec<(ClientId, u64)>,
}

/// `Verify` answer: the clients the receiver wants in full.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Want {
    /// Missing or stale on the receiver.
    pub clients: Vec<ClientId>,
}

/// `Inspect` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InspectRequest {
    /// The service.
    pub service: ServiceKey,
}

/// `Inspect` answer: what a member serves for a service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDigest {
    /// Member id.
    pub node_id: NodeId,
    /// Digest of `instances`.
    pub digest: String,
    /// `ip:port:cluster` of every ephemeral instance, sorted.
    pub instances: Vec<String>,
}
