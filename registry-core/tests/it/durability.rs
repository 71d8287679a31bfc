//! Persistent data survives `kill -9` and restarts; ephemeral data does not (spec §2.4).

use serde_json::Value;

use crate::harness::{Server, call, client, json, metric};

async fn list(server: &Server, service: &str) -> Vec<Value> {
    let (status, body) =
        call(client().get(server.url("/nacos/v1/ns/instance/list")).query(&[("serviceName", service)])).await;
    assert_eq!(status, 200, "{body}");
    json(&body)["hosts"].as_array().cloned().unwrap_or_default()
}

async fn post(server: &Server, path: &str, form: &[(&str, &str)]) {
    let (status, body) = call(client().post(server.url(path)).form(form)).await;
    assert_eq!((status, body.as_str()), (200, "ok"), "POST {path} {form:?}");
}

#[tokio::test]
async fn persistent_data_survives_kill9_and_ephemeral_does_not() {
    let mut server = Server::start();
    post(
        &server,
        "/nacos/v1/ns/service",
        &[("serviceName", "db"), ("protectThreshold", "0.3"), ("metadata", r#"{"owner":"team-a"}"#)],
    )
    .await;
    post(
        &server,
        "/nacos/v1/ns/instance",
        &[("serviceName", "db"), ("ip", "10.9.0.1"), ("port", "3306"), ("ephemeral", "false")],
    )
    .await;
    let (status, _) = call(client().put(server.url("/nacos/v1/ns/instance")).form(&[
        ("serviceName", "db"),
        ("ip", "10.9.0.1"),
        ("port", "3306"),
        ("ephemeral", "false"),
        ("weight", "3"),
    ]))
    .await;
    assert_eq!(status, 200);
    post(&server, "/nacos/v1/ns/instance", &[("serviceName", "web"), ("ip", "10.9.0.2"), ("port", "80")]).await;
    assert_eq!(list(&server, "web").await.len(), 1);

    server.kill9();
    server.restart();

    let hosts = list(&server, "db").await;
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0]["ip"], "10.9.0.1");
    assert_eq!(hosts[0]["ephemeral"], false);
    assert_eq!(hosts[0]["weight"], 3.0);
    let (status, body) = call(client().get(server.url("/nacos/v1/ns/service")).query(&[("serviceName", "db")])).await;
    assert_eq!(status, 200, "{body}");
    let svc = json(&body);
    assert!((svc["protectThreshold"].as_f64().unwrap() - 0.3).abs() < 1e-6);
    assert_eq!(svc["metadata"]["owner"], "team-a");
    assert!(list(&server, "web").await.is_empty(), "ephemeral instance must not survive a restart");
}

#[tokio::test]
async fn every_acknowledged_write_survives_kill9_across_snapshots() {
    // A tiny snapshot threshold makes the restart go through snapshot + log replay.
    let mut server =
        Server::start_with_config(Some("[raft]\nsnapshot_after_logs = 16\nkeep_logs_after_snapshot = 4\n"));
    for i in 0..120u32 {
        let ip = format!("10.8.{}.{}", i / 250, i % 250);
        post(
            &server,
            "/nacos/v1/ns/instance",
            &[("serviceName", "many"), ("ip", &ip), ("port", "80"), ("ephemeral", "false")],
        )
        .await;
    }
    server.kill9();
    server.restart();
    assert_eq!(list(&server, "many").await.len(), 120);
    // Still writable after recovery.
    post(
        &server,
        "/nacos/v1/ns/instance",
        &[("serviceName", "many"), ("ip", "10.8.9.9"), ("port", "80"), ("ephemeral", "false")],
    )
    .await;
    assert_eq!(list(&server, "many").await.len(), 121);
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly_and_keeps_data() {
    let mut server = Server::start();
    post(
        &server,
        "/nacos/v1/ns/instance",
        &[("serviceName", "calm"), ("ip", "10.7.0.1"), ("port", "80"), ("ephemeral", "false")],
    )
    .await;
    assert!(server.terminate(), "graceful shutdown exits 0:\n{}", server.output());
    server.restart();
    assert_eq!(list(&server, "calm").await.len(), 1);
}

/// Sends `writes` persistent registrations at once, spread over the services `<prefix>-0` ..
/// `<prefix>-<services - 1>` (addresses in `10.<net>.0.0/16`), and requires each acknowledged.
async fn register_at_once(server: &Server, prefix: &str, services: u32, writes: u32, net: u8) {
    let http = client();
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..writes {
        let req = http.post(server.url("/nacos/v1/ns/instance")).form(&[
            ("serviceName", format!("{prefix}-{}", k % services)),
            ("ip", format!("10.{net}.{}.{}", k / 250, k % 250)),
            ("port", "80".to_owned()),
            ("ephemeral", "false".to_owned()),
        ]);
        tasks.spawn(call(req));
    }
    while let Some(answer) = tasks.join_next().await {
        assert_eq!(answer.expect("task"), (200, "ok".to_owned()));
    }
}

/// Instances served across the services `register_at_once` wrote to.
async fn served(server: &Server, prefix: &str, services: u32) -> usize {
    let mut total = 0;
    for s in 0..services {
        total += list(server, &format!("{prefix}-{s}")).await.len();
    }
    total
}

/// A Prometheus counter of `server`.
async fn counter(server: &Server, name: &str) -> u64 {
    let (_, text) = call(client().get(server.url("/metrics"))).await;
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_persistent_writes_share_log_flushes_through_the_real_raft_node() {
    // End to end: HTTP → naming → the real Raft node's batcher → openraft → the redb log
    // writer's group commit. Every write is acknowledged only once durable; under concurrency
    // they must share fsyncs (and entries), or a 2-core machine would do one fsync per write.
    let server = Server::start();
    let before = [
        counter(&server, "registry_raft_proposed_commands_total").await,
        counter(&server, "registry_raft_proposals_total").await,
        counter(&server, "registry_raft_log_flushes_total").await,
    ];
    const WRITES: u32 = 256;
    register_at_once(&server, "batched", 8, WRITES, 9).await;
    let commands = counter(&server, "registry_raft_proposed_commands_total").await - before[0];
    let proposals = counter(&server, "registry_raft_proposals_total").await - before[1];
    let flushes = counter(&server, "registry_raft_log_flushes_total").await - before[2];
    assert_eq!(commands, u64::from(WRITES), "every write went through the batcher once");
    assert!(proposals < commands, "{commands} writes in {proposals} entries: nothing was batched");
    assert!(flushes < commands, "{commands} writes took {flushes} log flushes: no group commit");
    assert_eq!(served(&server, "batched", 8).await, WRITES as usize, "every acknowledged write is served");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_raft_write_queue_of_one_holds_writers_back_without_losing_any() {
    // `[queues] raft_writes = 1`: at most one write waits for the batcher, so the batcher never
    // finds more than one to merge and each entry carries one command; the others wait their
    // turn (backpressure) and every one is still answered and served.
    let server = Server::start_with_config(Some("[queues]\nraft_writes = 1\n"));
    assert_eq!(metric(&server, "registry_queue_capacity{queue=\"queues.raft_writes\"}").await, 1);
    assert_eq!(metric(&server, "registry_queue_capacity{queue=\"queues.change_events\"}").await, 16_384);
    let before = [
        counter(&server, "registry_raft_proposed_commands_total").await,
        counter(&server, "registry_raft_proposals_total").await,
    ];
    const WRITES: u32 = 48;
    register_at_once(&server, "queued", 4, WRITES, 8).await;
    let commands = counter(&server, "registry_raft_proposed_commands_total").await - before[0];
    let proposals = counter(&server, "registry_raft_proposals_total").await - before[1];
    assert_eq!((commands, proposals), (u64::from(WRITES), u64::from(WRITES)), "one write per entry");
    assert_eq!(served(&server, "queued", 4).await, WRITES as usize, "every acknowledged write is served");
}
