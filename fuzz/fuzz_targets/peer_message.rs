//! Cluster-port messages from peers: the JSON inside `RaftRequest`, `ForwardRequest` and
//! `DistroMessage` (`cluster.proto`, each a single bytes field), decoded into the types the Raft
//! and Distro services decode; a forwarded `Command` is then applied to a fresh writer, which
//! is what the leader does with it once committed.
//! Input: one byte choosing the message, then the JSON.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use registry_core::consistency::distro::wire::{ClientBatch, Digest, InspectRequest};
use registry_core::consistency::raft::{NodeId, TypeConfig};
use registry_core::consistency::{Applier, Command};
use registry_core::state::NamingStore;

fuzz_target!(|data: &[u8]| {
    let Some((&choice, json)) = data.split_first() else { return };
    match choice % 7 {
        0 => drop(serde_json::from_slice::<VoteRequest<NodeId>>(json)),
        1 => drop(serde_json::from_slice::<AppendEntriesRequest<TypeConfig>>(json)),
        2 => drop(serde_json::from_slice::<InstallSnapshotRequest<TypeConfig>>(json)),
        3 => {
            if let Ok(cmd) = serde_json::from_slice::<Command>(json) {
                let applier = Applier::new(Arc::new(NamingStore::new()));
                let _ = applier.apply(&cmd);
                // A second apply is how a replayed log entry arrives.
                let _ = applier.apply(&cmd);
            }
        }
        4 => drop(serde_json::from_slice::<ClientBatch>(json)),
        5 => drop(serde_json::from_slice::<Digest>(json)),
        _ => drop(serde_json::from_slice::<InspectRequest>(json)),
    }
});
