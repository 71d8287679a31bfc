//! Naming Open API v2 (`/nacos/v2/ns/...`, spec §6): the same operations as v1 inside the
//! `{code, message, data}` envelope, with v2 detail codes on errors (spec §3).

use serde_json::{Value, json};

use crate::harness::{Server, call, client, json};

fn ns(server: &Server, path: &str) -> String {
    server.url(&format!("/nacos/v2/ns{path}"))
}

/// A request that must succeed with the envelope; returns `data`.
async fn success(req: reqwest::RequestBuilder) -> Value {
    let (status, body) = call(req).await;
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["code"], 0, "{body}");
    assert_eq!(v["message"], "success", "{body}");
    v.get("data").cloned().expect("data present")
}

/// A request that must fail with `status` and detail `code`; returns the envelope.
async fn failure(req: reqwest::RequestBuilder, status: u16, code: u64) -> Value {
    let (got, body) = call(req).await;
    assert_eq!(got, status, "{body}");
    let v = json(&body);
    assert_eq!(v["code"], code, "{body}");
    assert!(v["message"].is_string(), "{body}");
    assert!(v["data"].is_string(), "{body}");
    v
}

async fn register(server: &Server, form: &[(&str, &str)]) {
    assert_eq!(success(client().post(ns(server, "/instance")).form(form)).await, "ok");
}

async fn list(server: &Server, query: &[(&str, &str)]) -> Value {
    success(client().get(ns(server, "/instance/list")).query(query)).await
}

fn ips(info: &Value) -> Vec<String> {
    let mut ips: Vec<String> =
        info["hosts"].as_array().expect("hosts").iter().map(|h| h["ip"].as_str().unwrap().to_owned()).collect();
    ips.sort();
    ips
}

// ---------------------------------------------------------------------------------------------
// Instances
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn register_then_list_in_envelope_with_grouped_name() {
    let server = Server::start();
    let (status, body) = call(client().post(ns(&server, "/instance")).form(&[
        ("serviceName", "orders"),
        ("groupName", "g1"),
        ("ip", "10.0.0.5"),
        ("port", "8080"),
        ("weight", "2"),
        ("metadata", r#"{"v":"1"}"#),
    ]))
    .await;
    assert_eq!(status, 200);
    assert_eq!(json(&body), json!({"code": 0, "message": "success", "data": "ok"}));

    let info = list(&server, &[("serviceName", "orders"), ("groupName", "g1")]).await;
    assert_eq!(info["name"], "g1@@orders");
    assert_eq!(info["groupName"], "g1");
    assert_eq!(info["clusters"], "");
    assert_eq!(info["cacheMillis"], 10000);
    assert_eq!(info["checksum"], "");
    assert_eq!(info["allIPs"], false);
    assert_eq!(info["reachProtectionThreshold"], false);
    assert_eq!(info["valid"], true);
    assert!(info["lastRefTime"].as_u64().unwrap() > 0);
    let h = &info["hosts"][0];
    assert_eq!(h["instanceId"], "10.0.0.5#8080#DEFAULT#g1@@orders");
    assert_eq!(h["serviceName"], "g1@@orders");
    assert_eq!(h["port"], 8080);
    assert_eq!(h["weight"], 2.0);
    assert_eq!(h["healthy"], true);
    assert_eq!(h["enabled"], true);
    assert_eq!(h["ephemeral"], true);
    assert_eq!(h["clusterName"], "DEFAULT");
    assert_eq!(h["metadata"], json!({"v": "1"}));
    assert_eq!(h["instanceHeartBeatInterval"], 5000);

    // The same instance is visible through v1 (one registry, two APIs).
    let (status, body) =
        call(client().get(server.url("/nacos/v1/ns/instance/list")).query(&[("serviceName", "g1@@orders")])).await;
    assert_eq!(status, 200);
    assert_eq!(json(&body)["hosts"][0]["ip"], "10.0.0.5");
}

#[tokio::test]
async fn list_of_unknown_service_is_empty_hosts() {
    let server = Server::start();
    let info = list(&server, &[("serviceName", "nobody")]).await;
    assert_eq!(info["hosts"], json!([]));
    assert_eq!(info["name"], "DEFAULT_GROUP@@nobody");
}

#[tokio::test]
async fn list_filters_by_cluster_name_and_healthy_only() {
    let server = Server::start();
    register(&server, &[("serviceName", "f"), ("ip", "10.1.0.1"), ("port", "80"), ("clusterName", "c1")]).await;
    register(&server, &[("serviceName", "f"), ("ip", "10.1.0.2"), ("port", "80"), ("clusterName", "c2")]).await;
    register(
        &server,
        &[("serviceName", "f"), ("ip", "10.1.0.3"), ("port", "80"), ("clusterName", "c1"), ("healthy", "false")],
    )
    .await;
    register(
        &server,
        &[("serviceName", "f"), ("ip", "10.1.0.4"), ("port", "80"), ("clusterName", "c1"), ("enabled", "false")],
    )
    .await;

    assert_eq!(ips(&list(&server, &[("serviceName", "f")]).await), ["10.1.0.1", "10.1.0.2", "10.1.0.3"]);
    let c1 = list(&server, &[("serviceName", "f"), ("clusterName", "c1")]).await;
    assert_eq!(c1["clusters"], "c1");
    assert_eq!(ips(&c1), ["10.1.0.1", "10.1.0.3"]);
    assert_eq!(
        ips(&list(&server, &[("serviceName", "f"), ("clusterName", "c1"), ("healthyOnly", "true")]).await),
        ["10.1.0.1"]
    );
}

#[tokio::test]
async fn get_instance_in_envelope() {
    let server = Server::start();
    register(
        &server,
        &[
            ("serviceName", "one"),
            ("ip", "10.2.0.1"),
            ("port", "81"),
            ("clusterName", "c1"),
            ("weight", "3"),
            ("metadata", "a=b"),
        ],
    )
    .await;
    let data = success(client().get(ns(&server, "/instance")).query(&[
        ("serviceName", "one"),
        ("ip", "10.2.0.1"),
        ("port", "81"),
        ("clusterName", "c1"),
    ]))
    .await;
    assert_eq!(
        data,
        json!({
            "serviceName": "DEFAULT_GROUP@@one",
            "ip": "10.2.0.1",
            "port": 81,
            "clusterName": "c1",
            "weight": 3.0,
            "healthy": true,
            "instanceId": "10.2.0.1#81#c1#DEFAULT_GROUP@@one",
            "metadata": {"a": "b"},
        })
    );
}

#[tokio::test]
async fn update_instance_overrides_weight_enabled_metadata() {
    let server = Server::start();
    register(&server, &[("serviceName", "u"), ("ip", "10.3.0.1"), ("port", "80")]).await;
    let data = success(client().put(ns(&server, "/instance")).form(&[
        ("serviceName", "u"),
        ("ip", "10.3.0.1"),
        ("port", "80"),
        ("weight", "6"),
        ("metadata", r#"{"m":"1"}"#),
    ]))
    .await;
    assert_eq!(data, "ok");
    let h = list(&server, &[("serviceName", "u")]).await["hosts"][0].clone();
    assert_eq!(h["weight"], 6.0);
    assert_eq!(h["metadata"]["m"], "1");

    success(client().put(ns(&server, "/instance")).form(&[
        ("serviceName", "u"),
        ("ip", "10.3.0.1"),
        ("port", "80"),
        ("enabled", "false"),
    ]))
    .await;
    assert_eq!(list(&server, &[("serviceName", "u")]).await["hosts"], json!([]));
}

#[tokio::test]
async fn patch_instance_answers_plain_ok_and_changes_only_given_fields() {
    let server = Server::start();
    register(
        &server,
        &[("serviceName", "p"), ("ip", "10.4.0.1"), ("port", "80"), ("weight", "2"), ("metadata", "a=1")],
    )
    .await;
    let (status, body) = call(client().patch(ns(&server, "/instance")).form(&[
        ("serviceName", "p"),
        ("ip", "10.4.0.1"),
        ("port", "80"),
        ("weight", "5"),
    ]))
    .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let h = list(&server, &[("serviceName", "p")]).await["hosts"][0].clone();
    assert_eq!(h["weight"], 5.0);
    assert_eq!(h["enabled"], true);
    assert_eq!(h["metadata"], json!({"a": "1"}));
}

#[tokio::test]
async fn deregister_instance_in_envelope() {
    let server = Server::start();
    register(&server, &[("serviceName", "d"), ("ip", "10.5.0.1"), ("port", "80")]).await;
    register(&server, &[("serviceName", "d"), ("ip", "10.5.0.2"), ("port", "80")]).await;
    let data = success(client().delete(ns(&server, "/instance")).form(&[
        ("serviceName", "d"),
        ("ip", "10.5.0.1"),
        ("port", "80"),
    ]))
    .await;
    assert_eq!(data, "ok");
    assert_eq!(ips(&list(&server, &[("serviceName", "d")]).await), ["10.5.0.2"]);
    // Unknown instance: still success.
    success(client().delete(ns(&server, "/instance")).query(&[
        ("serviceName", "d"),
        ("ip", "10.5.0.99"),
        ("port", "80"),
    ]))
    .await;
}

#[tokio::test]
async fn beat_answers_the_raw_object_not_an_envelope() {
    let server = Server::start();
    let beat = r#"{"ip":"10.6.0.1","port":80}"#;
    let (status, body) =
        call(client().put(ns(&server, "/instance/beat")).form(&[("serviceName", "DEFAULT_GROUP@@b"), ("beat", beat)]))
            .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body), json!({"clientBeatInterval": 5000, "code": 10200, "lightBeatEnabled": true}));
    assert_eq!(ips(&list(&server, &[("serviceName", "b")]).await), ["10.6.0.1"]);

    let (_, body) = call(client().put(ns(&server, "/instance/beat")).form(&[
        ("serviceName", "b"),
        ("ip", "10.6.0.2"),
        ("port", "80"),
    ]))
    .await;
    assert_eq!(json(&body)["code"], 20404);
}

// ---------------------------------------------------------------------------------------------
// Services
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn service_post_defaults_to_persistent() {
    let server = Server::start();
    assert_eq!(success(client().post(ns(&server, "/service")).form(&[("serviceName", "ps")])).await, "ok");
    let svc = success(client().get(ns(&server, "/service")).query(&[("serviceName", "ps")])).await;
    assert_eq!(svc["ephemeral"], false);

    // An ephemeral instance cannot join a persistent service.
    let v = failure(
        client().post(ns(&server, "/instance")).form(&[("serviceName", "ps"), ("ip", "10.7.0.1"), ("port", "80")]),
        400,
        21004,
    )
    .await;
    assert!(v["data"].as_str().unwrap().contains("persistent"), "{v}");

    register(&server, &[("serviceName", "ps"), ("ip", "10.7.0.1"), ("port", "80"), ("ephemeral", "false")]).await;
    assert_eq!(list(&server, &[("serviceName", "ps")]).await["hosts"][0]["ephemeral"], false);
}

#[tokio::test]
async fn service_post_with_ephemeral_true_accepts_ephemeral_instances() {
    let server = Server::start();
    success(client().post(ns(&server, "/service")).form(&[("serviceName", "es"), ("ephemeral", "true")])).await;
    let svc = success(client().get(ns(&server, "/service")).query(&[("serviceName", "es")])).await;
    assert_eq!(svc["ephemeral"], true);
    register(&server, &[("serviceName", "es"), ("ip", "10.8.0.1"), ("port", "80")]).await;
    assert_eq!(ips(&list(&server, &[("serviceName", "es")]).await), ["10.8.0.1"]);
}

#[tokio::test]
async fn service_get_has_the_documented_shape() {
    let server = Server::start();
    success(client().post(ns(&server, "/service")).form(&[
        ("serviceName", "shape"),
        ("groupName", "g2"),
        ("namespaceId", "dev"),
        ("protectThreshold", "0.5"),
        ("metadata", r#"{"owner":"a"}"#),
    ]))
    .await;
    register(
        &server,
        &[
            ("serviceName", "shape"),
            ("groupName", "g2"),
            ("namespaceId", "dev"),
            ("ip", "10.9.0.1"),
            ("port", "80"),
            ("ephemeral", "false"),
            ("clusterName", "c1"),
        ],
    )
    .await;
    let svc = success(client().get(ns(&server, "/service")).query(&[
        ("serviceName", "shape"),
        ("groupName", "g2"),
        ("namespaceId", "dev"),
    ]))
    .await;
    assert_eq!(svc["namespace"], "dev");
    assert_eq!(svc["serviceName"], "shape");
    assert_eq!(svc["groupName"], "g2");
    assert_eq!(svc["protectThreshold"], 0.5);
    assert_eq!(svc["metadata"], json!({"owner": "a"}));
    assert_eq!(svc["selector"]["type"], "none");
    assert_eq!(svc["ephemeral"], false);
    let c1 = &svc["clusterMap"]["c1"];
    assert_eq!(c1["clusterName"], "c1");
    assert_eq!(c1["healthChecker"]["type"], "TCP");
    assert!(c1["metadata"].is_object(), "{svc}");
    assert_eq!(svc["clusterMap"].as_object().unwrap().len(), 1);
}

#[tokio::test]
async fn service_put_updates_and_delete_removes() {
    let server = Server::start();
    success(client().post(ns(&server, "/service")).form(&[("serviceName", "sv")])).await;
    assert_eq!(
        success(client().put(ns(&server, "/service")).form(&[
            ("serviceName", "sv"),
            ("protectThreshold", "0.25"),
            ("metadata", "k=v"),
        ]))
        .await,
        "ok"
    );
    let svc = success(client().get(ns(&server, "/service")).query(&[("serviceName", "sv")])).await;
    assert_eq!(svc["protectThreshold"], 0.25);
    assert_eq!(svc["metadata"], json!({"k": "v"}));

    register(&server, &[("serviceName", "sv"), ("ip", "10.10.0.1"), ("port", "80"), ("ephemeral", "false")]).await;
    failure(client().delete(ns(&server, "/service")).query(&[("serviceName", "sv")]), 400, 21009).await;
    success(client().delete(ns(&server, "/instance")).query(&[
        ("serviceName", "sv"),
        ("ip", "10.10.0.1"),
        ("port", "80"),
        ("ephemeral", "false"),
    ]))
    .await;
    assert_eq!(success(client().delete(ns(&server, "/service")).query(&[("serviceName", "sv")])).await, "ok");
    failure(client().get(ns(&server, "/service")).query(&[("serviceName", "sv")]), 400, 21008).await;
}

#[tokio::test]
async fn duplicate_service_post_is_21007() {
    let server = Server::start();
    success(client().post(ns(&server, "/service")).form(&[("serviceName", "dup")])).await;
    let v = failure(client().post(ns(&server, "/service")).form(&[("serviceName", "dup")]), 400, 21007).await;
    assert_eq!(v["message"], "service already exist");
}

#[tokio::test]
async fn service_list_pages_bare_names() {
    let server = Server::start();
    for svc in ["a", "b", "c"] {
        register(&server, &[("serviceName", svc), ("ip", "10.11.0.1"), ("port", "80")]).await;
    }
    register(&server, &[("serviceName", "x"), ("groupName", "other"), ("ip", "10.11.0.1"), ("port", "80")]).await;

    let all = success(client().get(ns(&server, "/service/list"))).await;
    assert_eq!(all["count"], 3);
    let mut names: Vec<&str> = all["services"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["a", "b", "c"]);

    let p1 = success(client().get(ns(&server, "/service/list")).query(&[("pageNo", "1"), ("pageSize", "2")])).await;
    let p2 = success(client().get(ns(&server, "/service/list")).query(&[("pageNo", "2"), ("pageSize", "2")])).await;
    assert_eq!(p1["count"], 3);
    assert_eq!(p1["services"].as_array().unwrap().len(), 2);
    assert_eq!(p2["services"].as_array().unwrap().len(), 1);

    let other = success(client().get(ns(&server, "/service/list")).query(&[("groupName", "other")])).await;
    assert_eq!(other, json!({"count": 1, "services": ["x"]}));
}

#[tokio::test]
async fn manual_health_and_protect_threshold_via_v2() {
    let server = Server::start();
    success(client().post(ns(&server, "/service")).form(&[("serviceName", "h"), ("protectThreshold", "0.5")])).await;
    for ip in ["10.12.0.1", "10.12.0.2"] {
        register(&server, &[("serviceName", "h"), ("ip", ip), ("port", "80"), ("ephemeral", "false")]).await;
    }
    // Default TCP checker: manual health is refused (21011).
    failure(
        client().put(ns(&server, "/health/instance")).form(&[
            ("serviceName", "h"),
            ("ip", "10.12.0.1"),
            ("port", "80"),
            ("healthy", "false"),
        ]),
        400,
        21011,
    )
    .await;
    crate::harness::checks_off(&server, "h").await;
    success(client().put(ns(&server, "/health/instance")).form(&[
        ("serviceName", "h"),
        ("ip", "10.12.0.1"),
        ("port", "80"),
        ("healthy", "false"),
    ]))
    .await;
    let info = list(&server, &[("serviceName", "h")]).await;
    assert_eq!(info["reachProtectionThreshold"], true, "{info}");
    assert!(info["hosts"].as_array().unwrap().iter().all(|h| h["healthy"] == true));
}

#[tokio::test]
async fn operator_metrics_in_envelope() {
    let server = Server::start();
    assert_eq!(success(client().get(ns(&server, "/operator/metrics"))).await, json!({"status": "UP"}));
    register(&server, &[("serviceName", "m"), ("ip", "10.13.0.1"), ("port", "80")]).await;
    let full = success(client().get(ns(&server, "/operator/metrics")).query(&[("onlyStatus", "false")])).await;
    assert_eq!(full["serviceCount"], 1);
    assert_eq!(full["instanceCount"], 1);
}

// ---------------------------------------------------------------------------------------------
// Errors as envelopes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn missing_parameter_is_400_code_10000() {
    let server = Server::start();
    let v = failure(client().post(ns(&server, "/instance")).form(&[("serviceName", "x"), ("port", "80")]), 400, 10000)
        .await;
    assert_eq!(v["message"], "parameter missing");
    assert_eq!(v["data"], "Parameter 'ip' is missing");

    let v = failure(client().get(ns(&server, "/instance/list")), 400, 10000).await;
    assert_eq!(v["data"], "Parameter 'serviceName' is missing");
    failure(client().post(ns(&server, "/instance")).form(&[("serviceName", "x"), ("ip", "10.0.0.1")]), 400, 10000)
        .await;
}

#[tokio::test]
async fn weight_out_of_range_is_400_code_21001() {
    let server = Server::start();
    let v = failure(
        client().post(ns(&server, "/instance")).form(&[
            ("serviceName", "w"),
            ("ip", "10.14.0.1"),
            ("port", "80"),
            ("weight", "10001"),
        ]),
        400,
        21001,
    )
    .await;
    assert_eq!(v["message"], "weight error");
    assert_eq!(list(&server, &[("serviceName", "w")]).await["hosts"], json!([]));
}

#[tokio::test]
async fn unknown_service_get_is_400_code_21008() {
    let server = Server::start();
    let v = failure(client().get(ns(&server, "/service")).query(&[("serviceName", "ghost")]), 400, 21008).await;
    assert_eq!(v["message"], "service not exist");
    assert!(v["data"].as_str().unwrap().contains("DEFAULT_GROUP@@ghost"), "{v}");
    failure(
        client().put(ns(&server, "/service")).form(&[("serviceName", "ghost"), ("protectThreshold", "0.1")]),
        400,
        21008,
    )
    .await;
}

#[tokio::test]
async fn instance_update_on_unknown_service_is_400() {
    let server = Server::start();
    let (status, body) = call(client().put(ns(&server, "/instance")).form(&[
        ("serviceName", "ghost"),
        ("ip", "10.15.0.1"),
        ("port", "80"),
        ("weight", "2"),
    ]))
    .await;
    assert_eq!(status, 400, "{body}");
    let v = json(&body);
    assert!(v["code"].as_u64().is_some_and(|c| c != 0), "{body}");
    assert!(v["data"].as_str().unwrap().contains("DEFAULT_GROUP@@ghost"), "{body}");
}

#[tokio::test]
async fn get_instance_of_unknown_service_is_404() {
    // Nacos 2.x `InstanceControllerV2.detail` → `getInstance0`: empty ServiceInfo → NOT_FOUND.
    let server = Server::start();
    let (status, body) = call(client().get(ns(&server, "/instance")).query(&[
        ("serviceName", "ghost"),
        ("ip", "10.15.0.1"),
        ("port", "80"),
    ]))
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(json(&body)["code"].as_u64().is_some_and(|c| c != 0), "{body}");
}

#[tokio::test]
async fn instance_not_found_is_404_code_21003() {
    let server = Server::start();
    register(&server, &[("serviceName", "nf"), ("ip", "10.16.0.1"), ("port", "80")]).await;
    let v = failure(
        client().get(ns(&server, "/instance")).query(&[("serviceName", "nf"), ("ip", "10.16.0.1"), ("port", "81")]),
        404,
        21003,
    )
    .await;
    assert_eq!(v["message"], "instance not found");
}

#[tokio::test]
async fn illegal_cluster_and_bad_numbers_are_400_code_20002() {
    let server = Server::start();
    failure(
        client().post(ns(&server, "/instance")).form(&[
            ("serviceName", "c"),
            ("ip", "10.17.0.1"),
            ("port", "80"),
            ("clusterName", "bad_name"),
        ]),
        400,
        20002,
    )
    .await;
    failure(
        client().post(ns(&server, "/instance")).form(&[("serviceName", "c"), ("ip", "10.17.0.1"), ("port", "http")]),
        400,
        20002,
    )
    .await;
    // Malformed percent-encoding that is not UTF-8: still an envelope.
    let url = format!("{}?serviceName=%ff%fe", ns(&server, "/instance/list"));
    failure(client().get(url), 400, 20002).await;
}

#[tokio::test]
async fn malformed_service_name_is_400_code_21000() {
    let server = Server::start();
    failure(client().get(ns(&server, "/instance/list")).query(&[("serviceName", "a b")]), 400, 21000).await;
}

#[tokio::test]
async fn service_put_replaces_metadata_and_selector() {
    // Nacos 2.x `ServiceControllerV2.update` builds a fresh ServiceMetadata from the form;
    // `mergeMetadata` keeps only `ephemeral` and `clusters` of the old one.
    let server = Server::start();
    success(client().post(ns(&server, "/service")).form(&[
        ("serviceName", "repl"),
        ("metadata", r#"{"a":"1"}"#),
        ("selector", r#"{"type":"label","expression":"CONSUMER.label.a = PROVIDER.label.a"}"#),
    ]))
    .await;
    success(client().put(ns(&server, "/service")).form(&[("serviceName", "repl"), ("protectThreshold", "0.5")])).await;
    let svc = success(client().get(ns(&server, "/service")).query(&[("serviceName", "repl")])).await;
    assert_eq!(svc["protectThreshold"], 0.5);
    assert_eq!(svc["metadata"], json!({}), "{svc}");
    assert_eq!(svc["selector"]["type"], "none", "{svc}");
    assert_eq!(svc["ephemeral"], false);
}
