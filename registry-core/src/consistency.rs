//! How a write becomes agreed and durable.
//!
//! ```text
//!  naming/ (validated Command)
//!     │ submit
//!     ▼
//!  Consistency ── persistent? ──► raft: openraft log in redb ── committed ──┐
//!     │                                                                    ▼
//!     └────────── ephemeral ───────────────────────────────────────► apply.rs (single writer)
//!                                                                          │ mutates state/
//!                                                                          ▼
//!                                                         ChangeEvent broadcast → push/, listeners
//! ```
//!
//! Persistent data (persistent instances, service and cluster metadata, instance overrides) goes
//! through Raft; ephemeral data is applied locally at once, then replicated to the other members
//! by `distro` (AP), and never waits on Raft. The API reaches Raft and Distro only through
//! [`Admin`] (status, membership, introspection), never their internals.

pub mod admin;
pub mod apply;
pub mod command;
pub mod distro;
mod plant;
pub mod raft;

use std::sync::Arc;

pub use admin::Admin;
pub use apply::Applier;
pub use command::{ApplyError, AuthCommand, Command, CommandResult, ConfigCommand, NamespaceCommand, NamingCommand};
pub use plant::Plant;
pub use raft::{RaftConfig, RaftNode};

/// Why a submitted command did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The command was applied and refused by the state (e.g. service already exists).
    #[error(transparent)]
    Rejected(#[from] ApplyError),
    /// Raft could not commit the command (no leader, shutting down, storage failure).
    #[error("persistent write failed: {0}")]
    Raft(#[from] raft::RaftError),
}

/// The write entry point every domain service uses.
#[derive(Clone)]
pub struct Consistency {
    applier: Arc<Applier>,
    raft: RaftNode,
    distro: Option<Arc<distro::Distro>>,
    /// TEST ONLY: a planted bug (`--chaos-plant`), `None` everywhere else.
    plant: Option<Plant>,
}

impl Consistency {
    /// Wires the router over an applier and a running Raft node.
    pub fn new(applier: Arc<Applier>, raft: RaftNode) -> Self {
        Self { applier, raft, distro: None, plant: None }
    }

    /// Replicates ephemeral writes through `distro`.
    pub fn with_distro(mut self, distro: Arc<distro::Distro>) -> Self {
        self.distro = Some(distro);
        self
    }

    /// TEST ONLY: plants `plant` (the chaos suite's proof that its checker catches bugs).
    pub fn with_plant(mut self, plant: Option<Plant>) -> Self {
        self.plant = plant;
        self
    }

    /// Routes a command: persistent ones through Raft, ephemeral ones straight to the writer.
    pub async fn submit(&self, cmd: Command) -> Result<(), SubmitError> {
        if cmd.is_persistent() && self.plant == Some(Plant::AckBeforeCommit) {
            plant::ack_before_commit(&self.raft, cmd);
            return Ok(());
        }
        if cmd.is_persistent() {
            self.raft.write(cmd).await??;
        } else {
            self.applier.apply(&cmd)?;
            if let Some(distro) = &self.distro {
                distro.local_change(&cmd);
            }
        }
        Ok(())
    }

    /// Whether this member owns an ephemeral client (always, without Distro).
    pub fn owns(&self, client: &crate::model::ClientId) -> bool {
        self.distro.as_ref().is_none_or(|d| d.owns(client))
    }

    /// Whether this member is responsible for the v1 client tag `ip:port` (Nacos' Distro hash
    /// over the healthy members, see `Distro::responsible_peer`); always without Distro.
    pub fn responsible_for(&self, tag: &str) -> bool {
        self.distro.as_ref().is_none_or(|d| d.responsible_peer(tag).is_none())
    }

    /// Change events of everything applied from now on (the single writer's broadcast).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<crate::model::ChangeEvent> {
        self.applier.subscribe()
    }

    /// Change events waiting for the slowest reader (`/metrics`).
    pub fn events_queued(&self) -> usize {
        self.applier.events_queued()
    }

    /// The Raft node (readiness, metrics, shutdown).
    pub fn raft(&self) -> &RaftNode {
        &self.raft
    }
}
