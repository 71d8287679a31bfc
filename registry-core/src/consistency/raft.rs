//! TEMP stub until the raft-store branch lands.
use super::{Applier, Command, CommandResult};
use std::sync::Arc;
#[derive(Debug, Clone)]
pub struct RaftConfig {
    pub node_id: u64,
    pub advertise_addr: String,
    pub snapshot_after_logs: u64,
    pub keep_logs_after_snapshot: u64,
}
impl Default for RaftConfig {
    fn default() -> Self {
        Self { node_id: 1, advertise_addr: String::new(), snapshot_after_logs: 10_000, keep_logs_after_snapshot: 1_000 }
    }
}
#[derive(Clone)]
pub struct RaftNode {
    applier: Arc<Applier>,
}
#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    #[error("x")]
    X,
}
impl RaftNode {
    pub async fn start(_c: RaftConfig, _d: &std::path::Path, applier: Arc<Applier>) -> Result<Self, RaftError> {
        Ok(Self { applier })
    }
    pub async fn write(&self, cmd: Command) -> Result<CommandResult, RaftError> {
        Ok(self.applier.apply(&cmd))
    }
    pub fn is_ready(&self) -> bool {
        true
    }
    pub async fn wait_ready(&self, _t: std::time::Duration) -> bool {
        true
    }
    pub async fn shutdown(&self) -> Result<(), RaftError> {
        Ok(())
    }
}
