//! Persistent data survives `kill -9` and restarts; ephemeral data does not (spec §2.4).

use serde_json::Value;

use crate::harness::{Server, call, client, json};

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
    assert!(server.output().contains("stopped"));
    server.restart();
    assert_eq!(list(&server, "calm").await.len(), 1);
}
