//! `/metrics` and `/nacos/actuator/prometheus` of a live server: the same families at both,
//! HTTP requests counted by route and status, gRPC requests by type and result code, the exposition accepted by `promtool check metrics`
//! (Debian's `prometheus` package; skipped without it unless `PROMTOOL_REQUIRED=1`), and the
//! Grafana dashboard in docs/ charting only series the server exposes.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::grpc_raw::{must_instance, register, registered};
use crate::harness::{Server, call, client, json, metric};

/// Sample names of an exposition (`name{...} value` → `name`).
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect()
}

async fn scrape(server: &Server, path: &str) -> String {
    let (status, text) = call(client().get(server.url(path))).await;
    assert_eq!(status, 200, "{path}: {text}");
    text
}

#[tokio::test]
async fn a_live_server_exposes_valid_metrics_that_the_dashboard_charts() {
    let server = Server::start();
    // Traffic to count: a registration, a config, a refusal and a path nobody serves.
    let registration = [("serviceName", "metrics-it"), ("ip", "127.0.0.1"), ("port", "9"), ("ephemeral", "false")];
    let (status, body) = call(client().post(server.url("/nacos/v1/ns/instance")).query(&registration)).await;
    assert_eq!(status, 200, "{body}");
    let config = [("dataId", "m.yaml"), ("group", "G"), ("content", "a: 1")];
    assert_eq!(call(client().post(server.url("/nacos/v1/cs/configs")).form(&config)).await.0, 200);
    assert_eq!(call(client().post(server.url("/nacos/v1/ns/instance"))).await.0, 400);
    assert_eq!(call(client().get(server.url("/no/such/path"))).await.0, 404);
    // And a gRPC registration (its connection stays open: the instance is bound to it).
    let (channel, _stream) = registered(&server).await;
    must_instance(&channel, register("metrics-grpc", "127.0.0.2")).await;

    let text = scrape(&server, "/metrics").await;
    let actuator = scrape(&server, "/nacos/actuator/prometheus").await;
    assert_eq!(sample_names(&text), sample_names(&actuator), "both paths expose the same series");

    let instance_route = r#"registry_http_requests_total{api="/nacos/v1/ns/instance",method="POST""#;
    assert_eq!(metric(&server, &format!(r#"{instance_route},status="200"}}"#)).await, 1);
    assert_eq!(metric(&server, &format!(r#"{instance_route},status="400"}}"#)).await, 1);
    assert_eq!(metric(&server, r#"registry_http_requests_total{api="unmatched",method="GET",status="404"}"#).await, 1);
    assert_eq!(
        metric(&server, r#"registry_http_request_duration_seconds_count{api="/nacos/v1/ns/instance",method="POST"}"#)
            .await,
        2
    );
    assert_eq!(metric(&server, r#"registry_grpc_requests_total{type="InstanceRequest",code="200"}"#).await, 1);
    assert_eq!(metric(&server, r#"registry_grpc_request_duration_seconds_count{type="InstanceRequest"}"#).await, 1);
    assert_eq!(metric(&server, "registry_instances").await, 2);
    assert_eq!(metric(&server, "registry_raft_is_leader").await, 1);
    let applied = metric(&server, "registry_raft_applied_index").await;
    assert!(applied >= 2 && metric(&server, "registry_raft_commit_index").await >= applied);
    assert!(metric(&server, "process_resident_memory_bytes").await > 1_000_000);
    assert_eq!(metric(&server, r#"registry_limit{limit="http.max_body_bytes"}"#).await, 12 * 1024 * 1024);
    assert_eq!(metric(&server, r#"registry_limit{limit="grpc.max_requests_per_second"}"#).await, 0, "0: none");
    let capacity = registry_core::consistency::apply::CHANGE_EVENT_CAPACITY as u64;
    assert!(metric(&server, "registry_change_events_queued").await < capacity, "readers keep up at rest");

    promtool_accepts(&text);
    dashboard_charts_only_exposed_series(&sample_names(&text));
}

/// `promtool check metrics` has nothing to say about `text` (skipped without promtool unless
/// `PROMTOOL_REQUIRED=1`).
pub(crate) fn promtool_accepts(text: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        let message = "promtool not found (apt-get install -y --no-install-recommends prometheus)";
        assert!(std::env::var("PROMTOOL_REQUIRED").as_deref() != Ok("1"), "PROMTOOL_REQUIRED=1 but {message}");
        eprintln!("SKIP: promtool check metrics: {message}");
        return;
    };
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics refused the exposition:\n{said}");
}

/// The dashboard is a Grafana dashboard model, and every series its queries name is exposed.
fn dashboard_charts_only_exposed_series(exposed: &BTreeSet<String>) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grafana-dashboard.json");
    let dashboard = json(&std::fs::read_to_string(path).expect("docs/grafana-dashboard.json"));
    for field in ["title", "uid", "schemaVersion", "panels", "templating", "time"] {
        assert!(!dashboard[field].is_null(), "the dashboard has no {field}");
    }
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    let mut charted = 0;
    for panel in panels {
        assert!(ids.insert(panel["id"].as_u64().expect("panel id")), "duplicate panel id in {panel}");
        let grid = |field: &str| {
            panel["gridPos"][field].as_u64().unwrap_or_else(|| panic!("panel {} lacks gridPos.{field}", panel["title"]))
        };
        let (x, y, w, h) = (grid("x"), grid("y"), grid("w"), grid("h"));
        assert!(x + w <= 24, "panel {} is wider than the 24-column grid", panel["title"]);
        for cell in (x..x + w).flat_map(|cx| (y..y + h).map(move |cy| (cx, cy))) {
            assert!(cells.insert(cell), "panel {} overlaps another at {cell:?}", panel["title"]);
        }
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().filter(|t| !t.is_empty());
        for target in targets.unwrap_or_else(|| panic!("panel {} has no query", panel["title"])) {
            let expr = target["expr"].as_str().expect("expr");
            let names: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("registry_") || w.starts_with("process_"))
                .collect();
            assert!(!names.is_empty(), "panel {} charts no registry series: {expr}", panel["title"]);
            for name in names {
                assert!(
                    exposed.contains(name),
                    "panel {} charts {name}, which /metrics does not expose",
                    panel["title"]
                );
                charted += 1;
            }
        }
    }
    assert!(charted >= 20, "the dashboard charts only {charted} series");
}
