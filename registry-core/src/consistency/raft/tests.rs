use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{StorageIOError, StoredMembership};
use tempfile::TempDir;

use super::log_store::LogStore;
use super::state_machine::StateMachine;
use super::*;
use crate::consistency::apply::Applier;
use crate::consistency::command::{ApplyError, NamingCommand};
use crate::model::{ClientId, Instance, ServiceKey, ServiceMetadata};
use crate::state::NamingStore;
use crate::storage::Db;

const READY: Duration = Duration::from_secs(10);

fn fresh_applier() -> Arc<Applier> {
    Arc::new(Applier::new(Arc::new(NamingStore::new())))
}

fn key(name: &str) -> ServiceKey {
    ServiceKey::new("public", "DEFAULT_GROUP", name).expect("valid service key")
}

fn create(name: &str) -> Command {
    Command::Naming(NamingCommand::CreateService { service: key(name), metadata: ServiceMetadata::new(false) })
}

fn publish(name: &str, ip: &str) -> Command {
    Command::Naming(NamingCommand::PublishPersistent {
        service: key(name),
        client: ClientId::ip_port(ip, 8080, false),
        instance: Instance::new(ip, 8080, "DEFAULT", false),
    })
}

async fn start_ready(config: RaftConfig, dir: &Path, applier: Arc<Applier>) -> RaftNode {
    let node = RaftNode::start(config, dir, applier).await.expect("raft starts");
    assert!(node.wait_ready(READY).await, "node became ready");
    assert!(node.is_ready());
    node
}

async fn write_ok(node: &RaftNode, cmd: Command) {
    node.write(cmd).await.expect("committed").expect("accepted by the state");
}

/// Persistent instances (by service) the applier's naming view holds.
fn instance_count(applier: &Applier, name: &str) -> Option<usize> {
    applier.naming().view(&key(name)).map(|v| v.instance_count())
}

fn has_metadata(applier: &Applier, name: &str) -> bool {
    applier.naming().view(&key(name)).is_some_and(|v| v.metadata.is_some())
}

// === storage conformance ===

/// Fresh redb store in a temp dir per suite case; the `TempDir` guard outlives the stores.
struct RedbStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for RedbStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), openraft::StorageError<NodeId>> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
        let db = Arc::new(Db::open(dir.path()).map_err(|e| StorageIOError::write(&e))?);
        let sm = StateMachine::open(db.clone(), fresh_applier()).map_err(|e| StorageIOError::write(&e))?;
        let log = LogStore::new(db).map_err(|e| StorageIOError::write(&e))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn redb_store_passes_the_openraft_storage_suite() {
    // The suite runs each case on its own runtime, so this is a plain (non-async) test.
    Suite::test_all(RedbStoreBuilder).expect("storage suite");
}

// === durability through RaftNode ===

#[tokio::test]
async fn acknowledged_writes_survive_a_restart_by_log_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_ready(RaftConfig::default(), dir.path(), fresh_applier()).await;
    write_ok(&node, create("orders")).await;
    write_ok(&node, publish("orders", "10.0.0.1")).await;
    write_ok(&node, publish("orders", "10.0.0.2")).await;
    write_ok(&node, publish("billing", "10.0.0.3")).await;
    node.shutdown().await.expect("shutdown");

    let applier = fresh_applier();
    let node = start_ready(RaftConfig::default(), dir.path(), applier.clone()).await;
    assert!(node.raft().metrics().borrow().snapshot.is_none(), "restored from the log alone");
    assert!(has_metadata(&applier, "orders"));
    assert_eq!(instance_count(&applier, "orders"), Some(2));
    assert_eq!(instance_count(&applier, "billing"), Some(1));
    node.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn acknowledged_writes_survive_a_restart_from_snapshot_plus_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = RaftConfig { snapshot_after_logs: 10, keep_logs_after_snapshot: 0, ..RaftConfig::default() };
    let node = start_ready(config.clone(), dir.path(), fresh_applier()).await;
    for i in 0..12 {
        write_ok(&node, publish(&format!("svc-{i}"), "10.0.0.1")).await;
    }
    node.raft()
        .wait(Some(READY))
        .metrics(|m| m.snapshot.is_some() && m.purged.is_some(), "snapshot built and log purged")
        .await
        .expect("snapshot taken");
    // Lands in the log after the snapshot.
    write_ok(&node, create("after-snapshot")).await;
    node.shutdown().await.expect("shutdown");

    // On disk: a snapshot, a purged log head and a tail beyond the snapshot.
    let mut closed = {
        let db = Arc::new(Db::open(dir.path()).expect("reopen store"));
        let mut sm = StateMachine::open(db.clone(), fresh_applier()).expect("open state machine");
        let snapshot = sm.get_current_snapshot().await.expect("read snapshot").expect("a snapshot is stored");
        let log = LogStore::new(db.clone()).expect("log writer").get_log_state().await.expect("log state");
        assert!(log.last_purged_log_id.is_some(), "log head purged");
        assert!(snapshot.meta.last_log_id < log.last_log_id, "log tail beyond the snapshot");
        db.closed()
    };
    // The log store's writer task lets go of the file once it has seen the store dropped.
    tokio::time::timeout(READY, closed.changed()).await.expect("store closed").expect_err("closed, not changed");

    let applier = fresh_applier();
    let node = start_ready(config, dir.path(), applier.clone()).await;
    for i in 0..12 {
        assert_eq!(instance_count(&applier, &format!("svc-{i}")), Some(1), "svc-{i}");
    }
    assert!(has_metadata(&applier, "after-snapshot"));
    node.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn restart_keeps_the_cluster_and_accepts_new_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_ready(RaftConfig::default(), dir.path(), fresh_applier()).await;
    write_ok(&node, create("orders")).await;
    let first = node.raft().metrics().borrow().clone();
    node.shutdown().await.expect("shutdown");

    let applier = fresh_applier();
    let node = start_ready(RaftConfig::default(), dir.path(), applier.clone()).await;
    let again = node.raft().metrics().borrow().clone();
    // Not re-initialised: the same initial membership entry, no earlier term, nothing lost.
    // (openraft 0.9 resumes a sole voter's committed vote, so the term may stay the same.)
    assert_eq!(again.membership_config.log_id(), first.membership_config.log_id());
    assert!(again.current_term >= first.current_term);
    assert!(again.last_applied >= first.last_applied);
    assert_eq!(again.current_leader, Some(RaftConfig::default().node_id));

    write_ok(&node, publish("orders", "10.0.0.9")).await;
    assert!(has_metadata(&applier, "orders"));
    assert_eq!(instance_count(&applier, "orders"), Some(1));
    node.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_refused_command_comes_back_as_the_state_machine_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_ready(RaftConfig::default(), dir.path(), fresh_applier()).await;
    write_ok(&node, create("orders")).await;
    let answer = node.write(create("orders")).await.expect("committed");
    assert!(matches!(answer, Err(ApplyError::ServiceAlreadyExists(_))), "{answer:?}");
    node.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_write_after_shutdown_fails_as_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_ready(RaftConfig::default(), dir.path(), fresh_applier()).await;
    node.shutdown().await.expect("shutdown");
    assert!(!node.is_ready());
    let err = node.write(create("orders")).await.expect_err("node is stopped");
    assert!(matches!(err, RaftError::Fatal(_)), "{err:?}");
}

#[tokio::test]
async fn a_store_locked_by_a_running_node_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_ready(RaftConfig::default(), dir.path(), fresh_applier()).await;
    let err = RaftNode::start(RaftConfig::default(), dir.path(), fresh_applier()).await.expect_err("locked");
    assert!(matches!(err, RaftError::Storage(StorageError::Open { .. })), "{err:?}");
    node.shutdown().await.expect("shutdown");
}

#[test]
fn zero_snapshot_threshold_disables_automatic_snapshots() {
    let never = RaftConfig { snapshot_after_logs: 0, ..RaftConfig::default() };
    let cfg = never.openraft_config().expect("valid");
    assert_eq!(cfg.snapshot_policy, SnapshotPolicy::Never);
    let cfg = RaftConfig::default().openraft_config().expect("valid");
    assert_eq!(cfg.snapshot_policy, SnapshotPolicy::LogsSinceLast(10_000));
    assert_eq!(cfg.max_in_snapshot_log_to_keep, 1_000);
}

#[tokio::test]
async fn state_machine_restores_the_stored_snapshot_on_open() {
    use openraft::RaftSnapshotBuilder;

    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Db::open(dir.path()).expect("open"));
    let applier = fresh_applier();
    let mut sm = StateMachine::open(db.clone(), applier.clone()).expect("open sm");
    let log_id = openraft::testing::log_id(1, 1, 3);
    sm.apply([openraft::Entry::<TypeConfig> {
        log_id,
        payload: openraft::EntryPayload::Normal(CommandBatch::from(vec![publish("orders", "10.0.0.1")])),
    }])
    .await
    .expect("apply");
    sm.get_snapshot_builder().await.build_snapshot().await.expect("build");
    drop(sm);

    let restored = fresh_applier();
    let mut sm = StateMachine::open(db, restored.clone()).expect("reopen sm");
    let (applied, membership) = sm.applied_state().await.expect("applied state");
    assert_eq!(applied, Some(log_id));
    assert_eq!(membership, StoredMembership::default());
    assert_eq!(instance_count(&restored, "orders"), Some(1));
}

fn unpublish(name: &str, ip: &str) -> Command {
    Command::Naming(NamingCommand::UnpublishPersistent {
        service: key(name),
        client: ClientId::ip_port(ip, 8080, false),
    })
}

/// Evidence that the store stays bounded under churn: with snapshots and log purging, a node
/// that registers and deregisters the same instances over and over reuses its redb pages
/// instead of growing the file with every round.
#[tokio::test]
async fn the_store_file_stays_bounded_under_register_deregister_churn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = RaftConfig { snapshot_after_logs: 100, keep_logs_after_snapshot: 20, ..RaftConfig::default() };
    let node = start_ready(config, dir.path(), fresh_applier()).await;
    let file = dir.path().join(crate::storage::DB_FILE_NAME);
    let (mut sizes, mut written) = (Vec::new(), Vec::new());
    for _round in 0..10 {
        let mut bytes = 0;
        for i in 0..300u32 {
            let (service, ip) = (format!("churn-{}", i % 10), format!("10.9.0.{}", i % 50));
            for cmd in [publish(&service, &ip), unpublish(&service, &ip)] {
                bytes += serde_json::to_vec(&cmd).expect("encodable").len() as u64;
                write_ok(&node, cmd).await;
            }
        }
        // Snapshots and purges run in the background: measure once they caught up with this
        // round's writes, so the bound holds however loaded the machine is.
        node.raft()
            .wait(Some(std::time::Duration::from_secs(60)))
            .metrics(
                |m| m.purged.is_some_and(|p| p.index + 200 >= m.last_applied.map_or(0, |l| l.index)),
                "the log purged behind a snapshot",
            )
            .await
            .expect("snapshotting caught up with the round");
        sizes.push(std::fs::metadata(&file).expect("store file").len());
        written.push(bytes);
    }
    let m = node.raft().metrics().borrow().clone();
    assert!(m.purged.is_some_and(|p| p.index > 3000), "the log was purged behind snapshots: {:?}", m.purged);
    // From round 2 (steady state) on, a store that kept its log would grow by at least the
    // commands' own bytes every round (measured: about 3.6 times them when purging is off); a
    // bounded one plateaus. redb grows and shrinks its file in steps of about 450 KB (a commit
    // that finds no page free of readers grows it), so the bound compares the peak of the
    // steady rounds with the smaller of the first two, against the commands' bytes.
    let peak = sizes[2..].iter().copied().max().unwrap_or_default();
    let growth = peak.saturating_sub(sizes[0].min(sizes[1]));
    let kept_would_add: u64 = written[2..].iter().sum();
    assert!(
        growth < kept_would_add,
        "store grew by {growth} bytes under churn ({kept_would_add} bytes of commands); sizes by round {sizes:?}"
    );
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_each_get_their_own_answer_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_ready(RaftConfig::default(), dir.path(), fresh_applier()).await;
    let before = node.write_counters();
    // 64 instances over 8 services, and the same service created 4 times: batched together or
    // not, exactly one creation wins and the others are refused.
    let mut commands: Vec<Command> =
        (0..64).map(|i| publish(&format!("svc-{}", i % 8), &format!("10.1.0.{i}"))).collect();
    commands.extend((0..4).map(|_| create("dup")));
    let writes: Vec<_> = commands
        .into_iter()
        .map(|cmd| {
            let node = node.clone();
            tokio::spawn(async move { node.write(cmd).await })
        })
        .collect();
    let mut answers = Vec::new();
    for write in writes {
        answers.push(write.await.expect("task").expect("committed"));
    }
    assert!(answers[..64].iter().all(Result::is_ok), "{answers:?}");
    let created = answers[64..].iter().filter(|a| a.is_ok()).count();
    let refused = answers[64..].iter().filter(|a| matches!(a, Err(ApplyError::ServiceAlreadyExists(_)))).count();
    assert_eq!((created, refused), (1, 3));
    let after = node.write_counters();
    assert_eq!(after.proposed_commands - before.proposed_commands, 68);
    assert!(after.log_entries - before.log_entries >= after.proposals - before.proposals, "{after:?}");
    node.shutdown().await.expect("shutdown");

    let applier = fresh_applier();
    let node = start_ready(RaftConfig::default(), dir.path(), applier.clone()).await;
    for s in 0..8 {
        assert_eq!(instance_count(&applier, &format!("svc-{s}")), Some(8), "svc-{s}");
    }
    assert!(has_metadata(&applier, "dup"));
    node.shutdown().await.expect("shutdown");
}
