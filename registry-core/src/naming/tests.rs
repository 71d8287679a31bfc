//! NamingService over a real single-node Raft store in a temp dir; time is paused so the
//! heartbeat and cleanup rules are checked at their exact thresholds.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::consistency::{Applier, RaftConfig, RaftNode};
use crate::state::NamingStore;

async fn naming() -> (NamingService, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(NamingStore::new());
    let applier = Arc::new(Applier::new(Arc::clone(&store)));
    let raft = RaftNode::start(RaftConfig::default(), dir.path(), Arc::clone(&applier)).await.unwrap();
    assert!(raft.wait_ready(Duration::from_secs(30)).await);
    let consistency = Consistency::new(applier, raft);
    (NamingService::new(store, consistency, NamingConfig::default()), dir)
}

fn key(name: &str) -> ServiceKey {
    ServiceKey::new("public", "DEFAULT_GROUP", name).unwrap()
}

fn healthy_of(n: &NamingService, service: &str) -> Option<bool> {
    n.view(&key(service)).and_then(|v| v.instances().first().map(|i| i.healthy))
}

#[tokio::test(start_paused = true)]
async fn silent_http_instance_turns_unhealthy_after_15s_and_is_removed_after_30s() {
    let (n, _dir) = naming().await;
    n.register_instance(&key("s"), Instance::new("10.0.0.1", 80, "DEFAULT", true)).await.unwrap();

    tokio::time::advance(Duration::from_millis(14_900)).await;
    health::sweep(&n).await;
    assert_eq!(healthy_of(&n, "s"), Some(true));

    tokio::time::advance(Duration::from_millis(200)).await;
    health::sweep(&n).await;
    assert_eq!(healthy_of(&n, "s"), Some(false));

    tokio::time::advance(Duration::from_millis(14_800)).await;
    health::sweep(&n).await;
    assert_eq!(healthy_of(&n, "s"), Some(false), "not removed before 30 s");

    tokio::time::advance(Duration::from_millis(200)).await;
    health::sweep(&n).await;
    assert!(n.view(&key("s")).is_some_and(|v| v.is_empty()));
    assert!(n.beats().is_empty());
}

#[tokio::test(start_paused = true)]
async fn beats_keep_an_instance_and_revive_it() {
    let (n, _dir) = naming().await;
    n.register_instance(&key("s"), Instance::new("10.0.0.1", 80, "DEFAULT", true)).await.unwrap();
    for _ in 0..10 {
        tokio::time::advance(Duration::from_secs(5)).await;
        let r = n.beat(&key("s"), "10.0.0.1", 80, "DEFAULT", None).await.unwrap();
        assert_eq!(r.code, BEAT_OK);
        health::sweep(&n).await;
    }
    assert_eq!(healthy_of(&n, "s"), Some(true));

    tokio::time::advance(Duration::from_secs(16)).await;
    health::sweep(&n).await;
    assert_eq!(healthy_of(&n, "s"), Some(false));
    n.beat(&key("s"), "10.0.0.1", 80, "DEFAULT", None).await.unwrap();
    assert_eq!(healthy_of(&n, "s"), Some(true));
}

#[tokio::test(start_paused = true)]
async fn the_sweeper_loop_expires_instances_on_its_own() {
    let (n, _dir) = naming().await;
    let mut i = Instance::new("10.0.0.2", 80, "DEFAULT", true);
    i.metadata.insert(crate::model::instance::HEART_BEAT_TIMEOUT.into(), "6000".into());
    i.metadata.insert(crate::model::instance::IP_DELETE_TIMEOUT.into(), "14000".into());
    n.register_instance(&key("loop"), i).await.unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(health::run_sweeper(n.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(11_000)).await;
    assert_eq!(healthy_of(&n, "loop"), Some(false));
    tokio::time::sleep(Duration::from_millis(5_000)).await;
    assert!(n.view(&key("loop")).is_some_and(|v| v.is_empty()));
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn beat_without_body_for_unknown_instance_is_20404_and_with_body_registers() {
    let (n, _dir) = naming().await;
    let r = n.beat(&key("b"), "10.0.0.3", 81, "DEFAULT", None).await.unwrap();
    assert_eq!(r.code, BEAT_NOT_FOUND);
    let body = BeatInfo { ip: Some("10.0.0.3".into()), port: Some(81), ..BeatInfo::default() };
    let r = n.beat(&key("b"), "", 0, "DEFAULT", Some(body)).await.unwrap();
    assert_eq!((r.code, r.client_beat_interval_ms, r.light_beat_enabled), (BEAT_OK, 5_000, true));
    assert_eq!(n.query(&key("b"), &[], false).hosts.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_service_keeps_its_kind() {
    let (n, _dir) = naming().await;
    n.register_instance(&key("p"), Instance::new("10.0.0.4", 80, "DEFAULT", false)).await.unwrap();
    let err = n.register_instance(&key("p"), Instance::new("10.0.0.5", 80, "DEFAULT", true)).await.unwrap_err();
    assert!(matches!(err, NamingError::KindConflict { kind: "persistent", .. }), "{err}");

    n.create_service(&key("api"), NamingService::new_service_metadata(false, 0.0, Default::default(), None))
        .await
        .unwrap();
    assert!(n.register_instance(&key("api"), Instance::new("10.0.0.6", 80, "DEFAULT", true)).await.is_err());
    assert!(matches!(
        n.create_service(&key("api"), ServiceMetadata::new(false)).await,
        Err(NamingError::ServiceAlreadyExists(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn implicit_empty_services_are_cleaned_but_created_ones_stay() {
    let (n, _dir) = naming().await;
    n.register_instance(&key("tmp"), Instance::new("10.0.0.7", 80, "DEFAULT", true)).await.unwrap();
    n.deregister_instance(&key("tmp"), "10.0.0.7", 80, true).await.unwrap();
    n.create_service(&key("kept"), ServiceMetadata::new(true)).await.unwrap();

    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(cleaner::clean_once(&n, Duration::from_secs(60)).await, 0);
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(cleaner::clean_once(&n, Duration::from_secs(60)).await, 1);
    assert!(n.view(&key("tmp")).is_none());
    assert!(n.view(&key("kept")).is_some());
}
