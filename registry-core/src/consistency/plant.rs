//! TEST ONLY: bugs planted on purpose behind the hidden `--chaos-plant` flag, so the chaos
//! suite (`registry-core/tests/chaos`) can show that its history checker fails on a real
//! consistency bug. Nothing else sets it; see `docs/reliability.md`.

use super::Command;
use super::raft::RaftNode;

/// A planted bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Plant {
    /// Persistent writes are acknowledged before Raft commits them (and even when it never
    /// does, or when the state refuses them, e.g. a failed compare-and-swap).
    AckBeforeCommit,
}

/// The planted `AckBeforeCommit`: proposes `cmd` in the background and returns at once.
pub(super) fn ack_before_commit(raft: &RaftNode, cmd: Command) {
    let raft = raft.clone();
    tokio::spawn(async move {
        let _ = raft.write(cmd).await;
    });
}
