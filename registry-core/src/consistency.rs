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
//! through Raft; ephemeral data is applied locally at once (the Distro replication of a later
//! issue hooks in here) and never waits on Raft.

pub mod apply;
pub mod command;
pub mod raft;

use std::sync::Arc;

pub use apply::Applier;
pub use command::{ApplyError, Command, CommandResult, ConfigCommand, NamingCommand};
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
}

impl Consistency {
    /// Wires the router over an applier and a running Raft node.
    pub fn new(applier: Arc<Applier>, raft: RaftNode) -> Self {
        Self { applier, raft }
    }

    /// Routes a command: persistent ones through Raft, ephemeral ones straight to the writer.
    pub async fn submit(&self, cmd: Command) -> Result<(), SubmitError> {
        if cmd.is_persistent() {
            self.raft.write(cmd).await??;
        } else {
            self.applier.apply(&cmd)?;
        }
        Ok(())
    }

    /// The Raft node (readiness, metrics, shutdown).
    pub fn raft(&self) -> &RaftNode {
        &self.raft
    }
}
