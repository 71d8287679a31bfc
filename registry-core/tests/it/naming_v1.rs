//! Naming Open API v1 (`/nacos/v1/ns/...`, spec §2–§4, §16) against a real server: parameter
//! sources and aliases, ServiceInfo shapes, instance/service CRUD, beats, protect threshold,
//! operator endpoints and error answers (status + plain text).

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Server, call, client, eventually, json};

fn ns(server: &Server, path: &str) -> String {
    server.url(&format!("/nacos/v1/ns{path}"))
}

/// POST `/instance` with form parameters; returns status and body.
async fn register(server: &Server, form: &[(&str, &str)]) -> (u16, String) {
    call(client().post(ns(server, "/instance")).form(form)).await
}

/// POST `/instance` that must answer `ok`.
async fn register_ok(server: &Server, form: &[(&str, &str)]) {
    let (status, body) = register(server, form).await;
    assert_eq!((status, body.as_str()), (200, "ok"), "register {form:?}");
}

/// GET `/instance/list`, which must answer 200; the ServiceInfo.
async fn list(server: &Server, query: &[(&str, &str)]) -> Value {
    let (status, body) = call(client().get(ns(server, "/instance/list")).query(query)).await;
    assert_eq!(status, 200, "list {query:?}: {body}");
    json(&body)
}

/// The hosts of a list answer.
async fn hosts(server: &Server, query: &[(&str, &str)]) -> Vec<Value> {
    list(server, query).await["hosts"].as_array().cloned().expect("hosts is an array")
}

fn ips(hosts: &[Value]) -> Vec<String> {
    let mut ips: Vec<String> = hosts.iter().map(|h| h["ip"].as_str().expect("ip").to_owned()).collect();
    ips.sort();
    ips
}

/// Sends a request that must answer 200 `ok`.
async fn ok(req: reqwest::RequestBuilder) {
    let (status, body) = call(req).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
}

/// GET returning 200 JSON.
async fn get_json(server: &Server, path: &str, query: &[(&str, &str)]) -> Value {
    let (status, body) = call(client().get(ns(server, path)).query(query)).await;
    assert_eq!(status, 200, "GET {path} {query:?}: {body}");
    json(&body)
}

// ---------------------------------------------------------------------------------------------
// Registration: parameter sources, ServiceInfo shape
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn register_with_form_body_then_list_returns_full_service_info() {
    let server = Server::start();
    register_ok(
        &server,
        &[
            ("serviceName", "orders"),
            ("ip", "10.0.0.5"),
            ("port", "8080"),
            ("weight", "2.5"),
            ("metadata", r#"{"version":"1","zone":"a"}"#),
        ],
    )
    .await;

    let info = list(&server, &[("serviceName", "orders")]).await;
    assert_eq!(info["name"], "DEFAULT_GROUP@@orders");
    assert_eq!(info["groupName"], "DEFAULT_GROUP");
    assert_eq!(info["clusters"], "");
    assert_eq!(info["cacheMillis"], 10000);
    assert_eq!(info["checksum"], "");
    assert_eq!(info["allIPs"], false);
    assert_eq!(info["reachProtectionThreshold"], false);
    assert_eq!(info["valid"], true);
    let last_ref = info["lastRefTime"].as_u64().expect("lastRefTime is a number");
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(last_ref.abs_diff(now_ms) < 60_000, "lastRefTime {last_ref} is wall-clock millis (now {now_ms})");

    let hosts = info["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 1);
    let h = &hosts[0];
    assert_eq!(h["instanceId"], "10.0.0.5#8080#DEFAULT#DEFAULT_GROUP@@orders");
    assert_eq!(h["ip"], "10.0.0.5");
    assert_eq!(h["port"], 8080);
    assert_eq!(h["weight"], 2.5);
    assert_eq!(h["healthy"], true);
    assert_eq!(h["enabled"], true);
    assert_eq!(h["ephemeral"], true);
    assert_eq!(h["clusterName"], "DEFAULT");
    assert_eq!(h["serviceName"], "DEFAULT_GROUP@@orders");
    assert_eq!(h["metadata"], json!({"version": "1", "zone": "a"}));
    assert_eq!(h["instanceHeartBeatInterval"], 5000);
    assert_eq!(h["instanceHeartBeatTimeOut"], 15000);
    assert_eq!(h["ipDeleteTimeout"], 30000);
    assert_eq!(h["instanceIdGenerator"], "simple");
}

#[tokio::test]
async fn register_with_params_in_query_string_only() {
    let server = Server::start();
    // Python 1.x style: everything in the query string of a body-less POST.
    ok(client().post(ns(&server, "/instance")).query(&[
        ("serviceName", "py-svc"),
        ("ip", "10.0.0.6"),
        ("port", "9000"),
        ("weight", "3"),
    ]))
    .await;
    let hosts = hosts(&server, &[("serviceName", "py-svc")]).await;
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0]["ip"], "10.0.0.6");
    assert_eq!(hosts[0]["port"], 9000);
    assert_eq!(hosts[0]["weight"], 3.0);
}

#[tokio::test]
async fn register_with_params_split_between_query_and_body() {
    let server = Server::start();
    ok(client()
        .post(ns(&server, "/instance"))
        .query(&[("serviceName", "mixed"), ("ip", "10.0.0.7")])
        .form(&[("port", "7000"), ("metadata", "k=v")]))
    .await;
    let hosts = hosts(&server, &[("serviceName", "mixed")]).await;
    assert_eq!(hosts.len(), 1);
    assert_eq!((hosts[0]["ip"].as_str(), hosts[0]["port"].as_u64()), (Some("10.0.0.7"), Some(7000)));
    assert_eq!(hosts[0]["metadata"], json!({"k": "v"}));
}

#[tokio::test]
async fn query_string_value_wins_over_body_value_of_the_same_name() {
    let server = Server::start();
    // Spring's getParameter returns the first value: the query string's.
    ok(client()
        .post(ns(&server, "/instance"))
        .query(&[("serviceName", "dup"), ("ip", "10.0.0.8"), ("port", "1111")])
        .form(&[("port", "2222")]))
    .await;
    let hosts = hosts(&server, &[("serviceName", "dup")]).await;
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0]["port"], 1111);
}

#[tokio::test]
async fn list_of_unknown_service_is_empty_hosts_not_an_error() {
    let server = Server::start();
    let info = list(&server, &[("serviceName", "nobody")]).await;
    assert_eq!(info["hosts"], json!([]));
    assert_eq!(info["name"], "DEFAULT_GROUP@@nobody");
    assert_eq!(info["groupName"], "DEFAULT_GROUP");
    assert_eq!(info["reachProtectionThreshold"], false);
    assert_eq!(info["valid"], true);
}

#[tokio::test]
async fn list_of_unknown_service_in_unknown_group_echoes_the_group() {
    let server = Server::start();
    let info = list(&server, &[("serviceName", "nobody"), ("groupName", "g7")]).await;
    assert_eq!(info["hosts"], json!([]));
    assert_eq!(info["name"], "g7@@nobody");
    assert_eq!(info["groupName"], "g7");
}

#[tokio::test]
async fn grouped_service_name_and_group_param_address_the_same_service() {
    let server = Server::start();
    register_ok(&server, &[("serviceName", "g1@@svc"), ("ip", "10.1.0.1"), ("port", "80")]).await;
    register_ok(&server, &[("serviceName", "svc"), ("groupName", "g1"), ("ip", "10.1.0.2"), ("port", "80")]).await;

    for query in [vec![("serviceName", "g1@@svc")], vec![("serviceName", "svc"), ("groupName", "g1")]] {
        let info = list(&server, &query).await;
        assert_eq!(info["name"], "g1@@svc");
        assert_eq!(info["groupName"], "g1");
        let hosts = info["hosts"].as_array().unwrap();
        assert_eq!(ips(hosts), ["10.1.0.1", "10.1.0.2"]);
        for h in hosts {
            assert_eq!(h["serviceName"], "g1@@svc");
            assert!(h["instanceId"].as_str().unwrap().ends_with("#DEFAULT#g1@@svc"), "{h}");
        }
    }
    // The default group is a different service.
    assert!(hosts(&server, &[("serviceName", "svc")]).await.is_empty());
}

#[tokio::test]
async fn namespaces_isolate_services() {
    let server = Server::start();
    register_ok(&server, &[("namespaceId", "dev"), ("serviceName", "iso"), ("ip", "10.2.0.1"), ("port", "80")]).await;
    register_ok(&server, &[("serviceName", "iso"), ("ip", "10.2.0.2"), ("port", "80")]).await;

    assert_eq!(ips(&hosts(&server, &[("namespaceId", "dev"), ("serviceName", "iso")]).await), ["10.2.0.1"]);
    assert_eq!(ips(&hosts(&server, &[("serviceName", "iso")]).await), ["10.2.0.2"]);
    assert_eq!(ips(&hosts(&server, &[("namespaceId", "public"), ("serviceName", "iso")]).await), ["10.2.0.2"]);
    assert!(hosts(&server, &[("namespaceId", "prod"), ("serviceName", "iso")]).await.is_empty());

    // Deregistering in one namespace leaves the other alone.
    ok(client().delete(ns(&server, "/instance")).query(&[
        ("namespaceId", "dev"),
        ("serviceName", "iso"),
        ("ip", "10.2.0.1"),
        ("port", "80"),
    ]))
    .await;
    assert!(hosts(&server, &[("namespaceId", "dev"), ("serviceName", "iso")]).await.is_empty());
    assert_eq!(ips(&hosts(&server, &[("serviceName", "iso")]).await), ["10.2.0.2"]);
}

// ---------------------------------------------------------------------------------------------
// Legacy aliases and loose values
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn legacy_enable_false_hides_the_instance_from_list() {
    let server = Server::start();
    register_ok(&server, &[("serviceName", "en"), ("ip", "10.3.0.1"), ("port", "80"), ("enable", "false")]).await;
    register_ok(&server, &[("serviceName", "en"), ("ip", "10.3.0.2"), ("port", "80"), ("enabled", "true")]).await;
    assert_eq!(ips(&hosts(&server, &[("serviceName", "en")]).await), ["10.3.0.2"]);

    // Still there, just disabled: the single-instance GET shows it.
    let (status, body) = call(client().get(ns(&server, "/instance")).query(&[
        ("serviceName", "en"),
        ("ip", "10.3.0.1"),
        ("port", "80"),
    ]))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["ip"], "10.3.0.1");
}

#[tokio::test]
async fn enabled_takes_precedence_over_legacy_enable() {
    let server = Server::start();
    register_ok(
        &server,
        &[("serviceName", "en2"), ("ip", "10.3.1.1"), ("port", "80"), ("enabled", "false"), ("enable", "true")],
    )
    .await;
    assert!(hosts(&server, &[("serviceName", "en2")]).await.is_empty());
}

#[tokio::test]
async fn legacy_cluster_alias_sets_the_cluster() {
    let server = Server::start();
    register_ok(&server, &[("serviceName", "cl"), ("ip", "10.4.0.1"), ("port", "80"), ("cluster", "zone-a")]).await;
    let hosts = hosts(&server, &[("serviceName", "cl")]).await;
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0]["clusterName"], "zone-a");
    assert_eq!(hosts[0]["instanceId"], "10.4.0.1#80#zone-a#DEFAULT_GROUP@@cl");
}

#[tokio::test]
async fn python_style_booleans_are_accepted() {
    let server = Server::start();
    register_ok(
        &server,
        &[
            ("serviceName", "py"),
            ("ip", "10.5.0.1"),
            ("port", "80"),
            ("healthy", "True"),
            ("enabled", "True"),
            ("ephemeral", "True"),
        ],
    )
    .await;
    register_ok(&server, &[("serviceName", "py"), ("ip", "10.5.0.2"), ("port", "80"), ("healthy", "False")]).await;
    let hosts = hosts(&server, &[("serviceName", "py")]).await;
    assert_eq!(hosts.len(), 2);
    let by_ip = |ip: &str| hosts.iter().find(|h| h["ip"] == ip).cloned().unwrap();
    assert_eq!(by_ip("10.5.0.1")["healthy"], true);
    assert_eq!(by_ip("10.5.0.1")["ephemeral"], true);
    assert_eq!(by_ip("10.5.0.2")["healthy"], false);
    // healthyOnly=True (capitalised) too.
    let healthy = self::hosts(&server, &[("serviceName", "py"), ("healthyOnly", "True")]).await;
    assert_eq!(ips(&healthy), ["10.5.0.1"]);
}

#[tokio::test]
async fn metadata_in_legacy_pairs_form_is_parsed() {
    let server = Server::start();
    register_ok(&server, &[("serviceName", "md"), ("ip", "10.6.0.1"), ("port", "80"), ("metadata", "k=v,k2=v2")]).await;
    let hosts = hosts(&server, &[("serviceName", "md")]).await;
    assert_eq!(hosts[0]["metadata"], json!({"k": "v", "k2": "v2"}));
}

#[tokio::test]
async fn metadata_json_non_string_values_are_stringified() {
    let server = Server::start();
    register_ok(
        &server,
        &[("serviceName", "md2"), ("ip", "10.6.0.2"), ("port", "80"), ("metadata", r#"{"n":2,"b":true,"s":"x"}"#)],
    )
    .await;
    let hosts = hosts(&server, &[("serviceName", "md2")]).await;
    assert_eq!(hosts[0]["metadata"], json!({"n": "2", "b": "true", "s": "x"}));
}

#[tokio::test]
async fn preserved_metadata_keys_drive_the_derived_instance_fields() {
    let server = Server::start();
    register_ok(
        &server,
        &[
            ("serviceName", "pres"),
            ("ip", "10.6.1.1"),
            ("port", "80"),
            (
                "metadata",
                r#"{"preserved.heart.beat.interval":"3000","preserved.heart.beat.timeout":"9000","preserved.ip.delete.timeout":"20000"}"#,
            ),
        ],
    )
    .await;
    let h = &hosts(&server, &[("serviceName", "pres")]).await[0];
    assert_eq!(h["instanceHeartBeatInterval"], 3000);
    assert_eq!(h["instanceHeartBeatTimeOut"], 9000);
    assert_eq!(h["ipDeleteTimeout"], 20000);
}

#[tokio::test]
async fn beat_timeout_shorter_than_interval_is_400() {
    let server = Server::start();
    let (status, body) = register(
        &server,
        &[
            ("serviceName", "pres2"),
            ("ip", "10.6.1.2"),
            ("port", "80"),
            ("metadata", r#"{"preserved.heart.beat.interval":"10000","preserved.heart.beat.timeout":"5000"}"#),
        ],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(hosts(&server, &[("serviceName", "pres2")]).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// List filters
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn clusters_filter_selects_clusters_and_is_echoed() {
    let server = Server::start();
    register_ok(&server, &[("serviceName", "cf"), ("ip", "10.7.0.1"), ("port", "80"), ("clusterName", "c1")]).await;
    register_ok(&server, &[("serviceName", "cf"), ("ip", "10.7.0.2"), ("port", "80"), ("clusterName", "c2")]).await;
    register_ok(&server, &[("serviceName", "cf"), ("ip", "10.7.0.3"), ("port", "80")]).await;

    let info = list(&server, &[("serviceName", "cf"), ("clusters", "c1")]).await;
    assert_eq!(info["clusters"], "c1");
    assert_eq!(ips(info["hosts"].as_array().unwrap()), ["10.7.0.1"]);

    let info = list(&server, &[("serviceName", "cf"), ("clusters", "c1,c2")]).await;
    assert_eq!(info["clusters"], "c1,c2");
    assert_eq!(ips(info["hosts"].as_array().unwrap()), ["10.7.0.1", "10.7.0.2"]);

    let info = list(&server, &[("serviceName", "cf"), ("clusters", "DEFAULT")]).await;
    assert_eq!(ips(info["hosts"].as_array().unwrap()), ["10.7.0.3"]);

    assert!(hosts(&server, &[("serviceName", "cf"), ("clusters", "nope")]).await.is_empty());
    assert_eq!(hosts(&server, &[("serviceName", "cf")]).await.len(), 3);
}

#[tokio::test]
async fn healthy_only_drops_unhealthy_and_disabled_are_always_excluded() {
    let server = Server::start();
    register_ok(&server, &[("serviceName", "ho"), ("ip", "10.8.0.1"), ("port", "80")]).await;
    register_ok(&server, &[("serviceName", "ho"), ("ip", "10.8.0.2"), ("port", "80"), ("healthy", "false")]).await;
    register_ok(&server, &[("serviceName", "ho"), ("ip", "10.8.0.3"), ("port", "80"), ("enabled", "false")]).await;

    let all = hosts(&server, &[("serviceName", "ho")]).await;
    assert_eq!(ips(&all), ["10.8.0.1", "10.8.0.2"]);
    assert_eq!(all.iter().find(|h| h["ip"] == "10.8.0.2").unwrap()["healthy"], false);

    let healthy = hosts(&server, &[("serviceName", "ho"), ("healthyOnly", "true")]).await;
    assert_eq!(ips(&healthy), ["10.8.0.1"]);

    let explicit_false = hosts(&server, &[("serviceName", "ho"), ("healthyOnly", "false")]).await;
    assert_eq!(ips(&explicit_false), ["10.8.0.1", "10.8.0.2"]);
}

// ---------------------------------------------------------------------------------------------
// Single instance GET, PUT, PATCH, DELETE
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn get_single_instance_has_the_documented_fields() {
    let server = Server::start();
    register_ok(
        &server,
        &[
            ("serviceName", "one"),
            ("groupName", "g2"),
            ("ip", "10.9.0.1"),
            ("port", "8081"),
            ("clusterName", "c1"),
            ("weight", "4"),
            ("metadata", r#"{"a":"b"}"#),
        ],
    )
    .await;
    let v = get_json(
        &server,
        "/instance",
        &[("serviceName", "one"), ("groupName", "g2"), ("ip", "10.9.0.1"), ("port", "8081"), ("clusterName", "c1")],
    )
    .await;
    assert_eq!(v["service"], "g2@@one");
    assert_eq!(v["ip"], "10.9.0.1");
    assert_eq!(v["port"], 8081);
    assert_eq!(v["clusterName"], "c1");
    assert_eq!(v["weight"], 4.0);
    assert_eq!(v["healthy"], true);
    assert_eq!(v["instanceId"], "10.9.0.1#8081#c1#g2@@one");
    assert_eq!(v["metadata"], json!({"a": "b"}));
}

#[tokio::test]
async fn get_single_instance_honours_a_client_given_instance_id() {
    let server = Server::start();
    register_ok(&server, &[("serviceName", "iid"), ("ip", "10.9.0.9"), ("port", "80"), ("instanceId", "my-id")]).await;
    let v = get_json(&server, "/instance", &[("serviceName", "iid"), ("ip", "10.9.0.9"), ("port", "80")]).await;
    assert_eq!(v["instanceId"], "my-id");
    assert_eq!(hosts(&server, &[("serviceName", "iid")]).await[0]["instanceId"], "my-id");
}

#[tokio::test]
async fn get_missing_instance_of_existing_service_is_404() {
    let server = Server::start();
    register_ok(&server, &[("serviceName", "one"), ("ip", "10.9.0.1"), ("port", "80")]).await;
    // Other port, and same address in another cluster.
    for query in [
        vec![("serviceName", "one"), ("ip", "10.9.0.1"), ("port", "81")],
        vec![("serviceName", "one"), ("ip", "10.9.0.1"), ("port", "80"), ("clusterName", "other")],
    ] {
        let (status, body) = call(client().get(ns(&server, "/instance")).query(&query)).await;
        assert_eq!(status, 404, "{query:?}: {body}");
        assert_eq!(body, "no matched ip found!");
    }
}

#[tokio::test]
async fn get_instance_of_unknown_service_is_404() {
    // Nacos 2.x `InstanceOperatorClientImpl.getInstance0`: an unknown service has an empty
    // ServiceInfo, so the lookup fails with NOT_FOUND "no ips found for cluster DEFAULT in
    // service DEFAULT_GROUP@@ghost" (spec §4.1: "none → 404-style NacosApiException").
    let server = Server::start();
    let (status, body) = call(client().get(ns(&server, "/instance")).query(&[
        ("serviceName", "ghost"),
        ("ip", "1.1.1.1"),
        ("port", "80"),
    ]))
    .await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn put_instance_overrides_weight_enabled_and_metadata() {
    let server = Server::start();
    register_ok(
        &server,
        &[("serviceName", "upd"), ("ip", "10.10.0.1"), ("port", "80"), ("metadata", r#"{"a":"1","keep":"x"}"#)],
    )
    .await;
    ok(client().put(ns(&server, "/instance")).form(&[
        ("serviceName", "upd"),
        ("ip", "10.10.0.1"),
        ("port", "80"),
        ("weight", "7.5"),
        ("metadata", r#"{"a":"2","b":"3"}"#),
    ]))
    .await;
    let h = &hosts(&server, &[("serviceName", "upd")]).await[0];
    assert_eq!(h["weight"], 7.5);
    assert_eq!(h["enabled"], true);
    assert_eq!(h["metadata"]["a"], "2");
    assert_eq!(h["metadata"]["b"], "3");

    // Disable through PUT: hidden from the list, visible to GET /instance.
    ok(client().put(ns(&server, "/instance")).form(&[
        ("serviceName", "upd"),
        ("ip", "10.10.0.1"),
        ("port", "80"),
        ("enabled", "false"),
    ]))
    .await;
    assert!(hosts(&server, &[("serviceName", "upd")]).await.is_empty());
    let v = get_json(&server, "/instance", &[("serviceName", "upd"), ("ip", "10.10.0.1"), ("port", "80")]).await;
    assert_eq!(v["ip"], "10.10.0.1");

    // Enable again.
    ok(client().put(ns(&server, "/instance")).query(&[
        ("serviceName", "upd"),
        ("ip", "10.10.0.1"),
        ("port", "80"),
        ("enabled", "true"),
        ("weight", "2"),
    ]))
    .await;
    let h = &hosts(&server, &[("serviceName", "upd")]).await[0];
    assert_eq!(h["weight"], 2.0);
}

#[tokio::test]
async fn put_instance_on_unknown_service_is_400() {
    let server = Server::start();
    let (status, body) = call(client().put(ns(&server, "/instance")).form(&[
        ("serviceName", "ghost"),
        ("ip", "10.10.0.9"),
        ("port", "80"),
        ("weight", "2"),
    ]))
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("service not found"), "{body}");
}

#[tokio::test]
async fn put_instance_with_weight_out_of_range_is_400() {
    let server = Server::start();
    register_ok(&server, &[("serviceName", "updw"), ("ip", "10.10.1.1"), ("port", "80")]).await;
    let (status, body) = call(client().put(ns(&server, "/instance")).form(&[
        ("serviceName", "updw"),
        ("ip", "10.10.1.1"),
        ("port", "80"),
        ("weight", "10001"),
    ]))
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(hosts(&server, &[("serviceName", "updw")]).await[0]["weight"], 1.0);
}

#[tokio::test]
async fn patch_instance_changes_only_the_given_fields() {
    let server = Server::start();
    register_ok(
        &server,
        &[("serviceName", "pat"), ("ip", "10.11.0.1"), ("port", "80"), ("weight", "2"), ("metadata", r#"{"a":"1"}"#)],
    )
    .await;

    ok(client().patch(ns(&server, "/instance")).form(&[
        ("serviceName", "pat"),
        ("ip", "10.11.0.1"),
        ("port", "80"),
        ("weight", "3"),
    ]))
    .await;
    let h = &hosts(&server, &[("serviceName", "pat")]).await[0];
    assert_eq!(h["weight"], 3.0);
    assert_eq!(h["enabled"], true);
    assert_eq!(h["metadata"], json!({"a": "1"}));

    ok(client().patch(ns(&server, "/instance")).form(&[
        ("serviceName", "pat"),
        ("ip", "10.11.0.1"),
        ("port", "80"),
        ("metadata", r#"{"b":"2"}"#),
    ]))
    .await;
    let h = &hosts(&server, &[("serviceName", "pat")]).await[0];
    assert_eq!(h["weight"], 3.0, "weight kept by a metadata-only patch");
    assert_eq!(h["metadata"]["b"], "2");

    ok(client().patch(ns(&server, "/instance")).query(&[
        ("serviceName", "pat"),
        ("ip", "10.11.0.1"),
        ("port", "80"),
        ("enable", "false"),
    ]))
    .await;
    assert!(hosts(&server, &[("serviceName", "pat")]).await.is_empty());
    let v = get_json(&server, "/instance", &[("serviceName", "pat"), ("ip", "10.11.0.1"), ("port", "80")]).await;
    assert_eq!(v["weight"], 3.0, "weight kept by an enabled-only patch");
}

#[tokio::test]
async fn delete_instance_removes_it_and_unknown_ones_are_still_ok() {
    let server = Server::start();
    register_ok(&server, &[("serviceName", "del"), ("ip", "10.12.0.1"), ("port", "80")]).await;
    register_ok(&server, &[("serviceName", "del"), ("ip", "10.12.0.2"), ("port", "80")]).await;

    ok(client().delete(ns(&server, "/instance")).query(&[("serviceName", "del"), ("ip", "10.12.0.1"), ("port", "80")]))
        .await;
    assert_eq!(ips(&hosts(&server, &[("serviceName", "del")]).await), ["10.12.0.2"]);

    // Parameters in a form body of a DELETE are read too.
    ok(client().delete(ns(&server, "/instance")).form(&[("serviceName", "del"), ("ip", "10.12.0.2"), ("port", "80")]))
        .await;
    assert!(hosts(&server, &[("serviceName", "del")]).await.is_empty());

    // Again, and for instances and services that never existed: still `ok`.
    for (svc, ip) in [("del", "10.12.0.2"), ("del", "10.12.0.99"), ("never-was", "10.12.0.1")] {
        ok(client().delete(ns(&server, "/instance")).query(&[("serviceName", svc), ("ip", ip), ("port", "80")])).await;
    }
}

#[tokio::test]
async fn reregistering_the_same_address_replaces_the_instance() {
    let server = Server::start();
    register_ok(&server, &[("serviceName", "rr"), ("ip", "10.12.1.1"), ("port", "80"), ("weight", "1")]).await;
    register_ok(&server, &[("serviceName", "rr"), ("ip", "10.12.1.1"), ("port", "80"), ("weight", "9")]).await;
    let hosts = hosts(&server, &[("serviceName", "rr")]).await;
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0]["weight"], 9.0);
}

// ---------------------------------------------------------------------------------------------
// Beats
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn beat_with_body_for_unregistered_instance_registers_it() {
    let server = Server::start();
    let beat = r#"{"ip":"10.13.0.1","port":8080,"cluster":"DEFAULT","weight":2.0,"metadata":{"v":"1"},"serviceName":"DEFAULT_GROUP@@bt"}"#;
    let (status, body) = call(
        client()
            .put(ns(&server, "/instance/beat"))
            .query(&[("serviceName", "DEFAULT_GROUP@@bt"), ("ip", "10.13.0.1"), ("port", "8080")])
            .form(&[("beat", beat)]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body), json!({"clientBeatInterval": 5000, "code": 10200, "lightBeatEnabled": true}));

    let hosts = hosts(&server, &[("serviceName", "bt")]).await;
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0]["ip"], "10.13.0.1");
    assert_eq!(hosts[0]["port"], 8080);
    assert_eq!(hosts[0]["weight"], 2.0);
    assert_eq!(hosts[0]["healthy"], true);
    assert_eq!(hosts[0]["ephemeral"], true);
    assert_eq!(hosts[0]["metadata"], json!({"v": "1"}));
}

#[tokio::test]
async fn beat_body_cluster_overrides_cluster_name_param() {
    let server = Server::start();
    let beat = r#"{"ip":"10.13.0.2","port":8080,"cluster":"zone-b"}"#;
    let (status, body) = call(client().put(ns(&server, "/instance/beat")).form(&[
        ("serviceName", "btc"),
        ("clusterName", "DEFAULT"),
        ("beat", beat),
    ]))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["code"], 10200);
    let hosts = hosts(&server, &[("serviceName", "btc")]).await;
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0]["clusterName"], "zone-b");
}

#[tokio::test]
async fn light_beat_for_unknown_instance_answers_20404() {
    let server = Server::start();
    let (status, body) = call(client().put(ns(&server, "/instance/beat")).query(&[
        ("serviceName", "ghost"),
        ("ip", "10.13.1.1"),
        ("port", "8080"),
    ]))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body), json!({"clientBeatInterval": 5000, "code": 20404, "lightBeatEnabled": true}));
    assert!(hosts(&server, &[("serviceName", "ghost")]).await.is_empty(), "a light beat must not register");
}

#[tokio::test]
async fn light_beat_for_registered_instance_answers_10200() {
    let server = Server::start();
    register_ok(&server, &[("serviceName", "lb"), ("ip", "10.13.2.1"), ("port", "8080")]).await;
    let (status, body) = call(client().put(ns(&server, "/instance/beat")).query(&[
        ("serviceName", "lb"),
        ("ip", "10.13.2.1"),
        ("port", "8080"),
    ]))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body), json!({"clientBeatInterval": 5000, "code": 10200, "lightBeatEnabled": true}));
}

#[tokio::test]
async fn beat_echoes_the_preserved_heart_beat_interval() {
    let server = Server::start();
    register_ok(
        &server,
        &[
            ("serviceName", "pi"),
            ("ip", "10.13.3.1"),
            ("port", "8080"),
            ("metadata", r#"{"preserved.heart.beat.interval":"3000"}"#),
        ],
    )
    .await;
    let (status, body) = call(client().put(ns(&server, "/instance/beat")).query(&[
        ("serviceName", "pi"),
        ("ip", "10.13.3.1"),
        ("port", "8080"),
    ]))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body), json!({"clientBeatInterval": 3000, "code": 10200, "lightBeatEnabled": true}));

    // Auto-registration through a beat body echoes the interval as well.
    let beat = r#"{"ip":"10.13.3.2","port":8080,"metadata":{"preserved.heart.beat.interval":"4000"}}"#;
    let (status, body) =
        call(client().put(ns(&server, "/instance/beat")).form(&[("serviceName", "pi"), ("beat", beat)])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["clientBeatInterval"], 4000);
}

#[tokio::test]
async fn beat_without_address_or_body_is_400() {
    let server = Server::start();
    let (status, body) = call(client().put(ns(&server, "/instance/beat")).form(&[("serviceName", "x")])).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body, "Parameter 'ip' is missing");
}

#[tokio::test]
async fn beat_with_broken_json_is_400_and_registers_nothing() {
    let server = Server::start();
    let (status, body) =
        call(client().put(ns(&server, "/instance/beat")).form(&[("serviceName", "bb"), ("beat", "{\"ip\":")])).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("beat"), "{body}");
    assert!(hosts(&server, &[("serviceName", "bb")]).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Services
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn service_post_creates_a_persistent_service() {
    let server = Server::start();
    ok(client().post(ns(&server, "/service")).form(&[("serviceName", "ps"), ("protectThreshold", "0.5")])).await;

    let (status, body) = register(&server, &[("serviceName", "ps"), ("ip", "10.14.0.1"), ("port", "80")]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("persistent"), "{body}");
    assert!(hosts(&server, &[("serviceName", "ps")]).await.is_empty());

    register_ok(&server, &[("serviceName", "ps"), ("ip", "10.14.0.1"), ("port", "80"), ("ephemeral", "false")]).await;
    let hosts = hosts(&server, &[("serviceName", "ps")]).await;
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0]["ephemeral"], false);
}

#[tokio::test]
async fn ephemeral_service_refuses_persistent_instances() {
    let server = Server::start();
    register_ok(&server, &[("serviceName", "eph"), ("ip", "10.14.1.1"), ("port", "80")]).await;
    let (status, body) =
        register(&server, &[("serviceName", "eph"), ("ip", "10.14.1.2"), ("port", "80"), ("ephemeral", "false")]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("ephemeral"), "{body}");
    assert_eq!(ips(&hosts(&server, &[("serviceName", "eph")]).await), ["10.14.1.1"]);
}

#[tokio::test]
async fn duplicate_service_post_is_400_already_exists() {
    let server = Server::start();
    ok(client().post(ns(&server, "/service")).form(&[("serviceName", "dupsvc")])).await;
    let (status, body) = call(client().post(ns(&server, "/service")).form(&[("serviceName", "dupsvc")])).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("already exists"), "{body}");
    // A service created implicitly by a registration counts as existing too.
    register_ok(&server, &[("serviceName", "implicit"), ("ip", "10.14.2.1"), ("port", "80")]).await;
    let (status, body) = call(client().post(ns(&server, "/service")).form(&[("serviceName", "implicit")])).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("already exists"), "{body}");
}

#[tokio::test]
async fn service_get_has_the_documented_shape() {
    let server = Server::start();
    ok(client().post(ns(&server, "/service")).form(&[
        ("serviceName", "shape"),
        ("groupName", "g3"),
        ("namespaceId", "dev"),
        ("protectThreshold", "0.5"),
        ("metadata", r#"{"owner":"team-a"}"#),
    ]))
    .await;
    let v = get_json(&server, "/service", &[("serviceName", "g3@@shape"), ("namespaceId", "dev")]).await;
    assert_eq!(v["namespaceId"], "dev");
    assert_eq!(v["groupName"], "g3");
    assert_eq!(v["name"], "shape");
    assert_eq!(v["protectThreshold"], 0.5);
    assert_eq!(v["metadata"], json!({"owner": "team-a"}));
    assert_eq!(v["selector"]["type"], "none");
    assert_eq!(v["clusters"], json!([]));

    // The same service through the bare name + groupName.
    let same =
        get_json(&server, "/service", &[("serviceName", "shape"), ("groupName", "g3"), ("namespaceId", "dev")]).await;
    assert_eq!(same["name"], "shape");
    // Other namespaces do not see it.
    let (status, _) = call(client().get(ns(&server, "/service")).query(&[("serviceName", "g3@@shape")])).await;
    assert_eq!(status, 400);

    // Clusters appear once instances use them.
    register_ok(
        &server,
        &[
            ("serviceName", "g3@@shape"),
            ("namespaceId", "dev"),
            ("ip", "10.15.0.1"),
            ("port", "80"),
            ("ephemeral", "false"),
            ("clusterName", "c1"),
        ],
    )
    .await;
    let v = get_json(&server, "/service", &[("serviceName", "g3@@shape"), ("namespaceId", "dev")]).await;
    let clusters = v["clusters"].as_array().expect("clusters array");
    assert_eq!(clusters.len(), 1);
    assert_eq!(clusters[0]["name"], "c1");
    assert_eq!(clusters[0]["healthChecker"]["type"], "TCP");
}

#[tokio::test]
async fn service_protect_threshold_is_returned_as_given() {
    let server = Server::start();
    ok(client().post(ns(&server, "/service")).form(&[("serviceName", "pt3"), ("protectThreshold", "0.3")])).await;
    let (_, body) = call(client().get(ns(&server, "/service")).query(&[("serviceName", "pt3")])).await;
    // Jackson writes a Java float 0.3f as `0.3`; clients reading it into a double must see 0.3.
    assert_eq!(json(&body)["protectThreshold"], 0.3, "{body}");
}

#[tokio::test]
async fn service_post_with_label_selector_is_kept_and_bad_selector_is_400() {
    let server = Server::start();
    ok(client().post(ns(&server, "/service")).form(&[
        ("serviceName", "sel"),
        ("selector", r#"{"type":"label","expression":"CONSUMER.label.a = PROVIDER.label.a"}"#),
    ]))
    .await;
    let v = get_json(&server, "/service", &[("serviceName", "sel")]).await;
    assert_eq!(v["selector"]["type"], "label");
    assert_eq!(v["selector"]["expression"], "CONSUMER.label.a = PROVIDER.label.a");

    let (status, body) =
        call(client().post(ns(&server, "/service")).form(&[("serviceName", "sel2"), ("selector", r#"{"type":"x"}"#)]))
            .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn service_post_with_threshold_outside_0_to_1_is_400() {
    // This server's own rule (Nacos itself does not range-check the threshold).
    let server = Server::start();
    for t in ["1.5", "-0.1", "abc"] {
        let (status, body) =
            call(client().post(ns(&server, "/service")).form(&[("serviceName", "ptbad"), ("protectThreshold", t)]))
                .await;
        assert_eq!(status, 400, "{t}: {body}");
    }
    let (status, _) = call(client().get(ns(&server, "/service")).query(&[("serviceName", "ptbad")])).await;
    assert_eq!(status, 400, "no service was created");
}

#[tokio::test]
async fn service_put_requires_protect_threshold_and_applies_changes() {
    let server = Server::start();
    ok(client().post(ns(&server, "/service")).form(&[("serviceName", "sput"), ("metadata", "a=1")])).await;

    let (status, body) =
        call(client().put(ns(&server, "/service")).form(&[("serviceName", "sput"), ("metadata", "a=2")])).await;
    assert_eq!((status, body.as_str()), (400, "Parameter 'protectThreshold' is missing"));

    ok(client().put(ns(&server, "/service")).form(&[
        ("serviceName", "sput"),
        ("protectThreshold", "0.75"),
        ("metadata", r#"{"a":"2","b":"x"}"#),
    ]))
    .await;
    let v = get_json(&server, "/service", &[("serviceName", "sput")]).await;
    assert_eq!(v["protectThreshold"], 0.75);
    assert_eq!(v["metadata"], json!({"a": "2", "b": "x"}));
}

#[tokio::test]
async fn service_put_on_unknown_service_is_400() {
    let server = Server::start();
    let (status, body) =
        call(client().put(ns(&server, "/service")).form(&[("serviceName", "ghost"), ("protectThreshold", "0.1")]))
            .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("service not found"), "{body}");
}

#[tokio::test]
async fn service_delete_refuses_non_empty_then_deletes_empty() {
    let server = Server::start();
    ok(client().post(ns(&server, "/service")).form(&[("serviceName", "sdel")])).await;
    register_ok(&server, &[("serviceName", "sdel"), ("ip", "10.16.0.1"), ("port", "80"), ("ephemeral", "false")]).await;

    let (status, body) = call(client().delete(ns(&server, "/service")).query(&[("serviceName", "sdel")])).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("is not empty"), "{body}");
    let (status, _) = call(client().get(ns(&server, "/service")).query(&[("serviceName", "sdel")])).await;
    assert_eq!(status, 200, "still there");

    ok(client().delete(ns(&server, "/instance")).query(&[
        ("serviceName", "sdel"),
        ("ip", "10.16.0.1"),
        ("port", "80"),
        ("ephemeral", "false"),
    ]))
    .await;
    assert!(hosts(&server, &[("serviceName", "sdel")]).await.is_empty());

    ok(client().delete(ns(&server, "/service")).query(&[("serviceName", "sdel")])).await;
    let (status, body) = call(client().get(ns(&server, "/service")).query(&[("serviceName", "sdel")])).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("service not found"), "{body}");

    // Deleting it again: not found.
    let (status, _) = call(client().delete(ns(&server, "/service")).query(&[("serviceName", "sdel")])).await;
    assert_eq!(status, 400);

    // A deleted persistent service can be re-created as an ephemeral one by a registration.
    register_ok(&server, &[("serviceName", "sdel"), ("ip", "10.16.0.2"), ("port", "80")]).await;
    assert_eq!(ips(&hosts(&server, &[("serviceName", "sdel")]).await), ["10.16.0.2"]);
}

#[tokio::test]
async fn service_list_requires_paging_and_returns_bare_names() {
    let server = Server::start();
    for svc in ["s-a", "s-b", "s-c"] {
        register_ok(&server, &[("serviceName", svc), ("ip", "10.17.0.1"), ("port", "80")]).await;
    }
    register_ok(&server, &[("serviceName", "other@@s-x"), ("ip", "10.17.0.1"), ("port", "80")]).await;
    register_ok(&server, &[("namespaceId", "dev"), ("serviceName", "s-dev"), ("ip", "10.17.0.1"), ("port", "80")])
        .await;

    let (status, body) = call(client().get(ns(&server, "/service/list")).query(&[("pageSize", "10")])).await;
    assert_eq!((status, body.as_str()), (400, "Parameter 'pageNo' is missing"));
    let (status, body) = call(client().get(ns(&server, "/service/list")).query(&[("pageNo", "1")])).await;
    assert_eq!((status, body.as_str()), (400, "Parameter 'pageSize' is missing"));

    let all = get_json(&server, "/service/list", &[("pageNo", "1"), ("pageSize", "10")]).await;
    assert_eq!(all["count"], 3);
    let mut names: Vec<String> =
        all["doms"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_owned()).collect();
    names.sort();
    assert_eq!(names, ["s-a", "s-b", "s-c"]);

    let p1 = get_json(&server, "/service/list", &[("pageNo", "1"), ("pageSize", "2")]).await;
    let p2 = get_json(&server, "/service/list", &[("pageNo", "2"), ("pageSize", "2")]).await;
    let p3 = get_json(&server, "/service/list", &[("pageNo", "3"), ("pageSize", "2")]).await;
    assert_eq!((p1["count"].as_u64(), p2["count"].as_u64()), (Some(3), Some(3)));
    assert_eq!(p1["doms"].as_array().unwrap().len(), 2);
    assert_eq!(p2["doms"].as_array().unwrap().len(), 1);
    assert_eq!(p3["doms"], json!([]));
    let mut paged: Vec<String> = p1["doms"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p2["doms"].as_array().unwrap())
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    paged.sort();
    assert_eq!(paged, ["s-a", "s-b", "s-c"]);

    let grouped =
        get_json(&server, "/service/list", &[("pageNo", "1"), ("pageSize", "10"), ("groupName", "other")]).await;
    assert_eq!(grouped, json!({"count": 1, "doms": ["s-x"]}));
    let dev = get_json(&server, "/service/list", &[("pageNo", "1"), ("pageSize", "10"), ("namespaceId", "dev")]).await;
    assert_eq!(dev, json!({"count": 1, "doms": ["s-dev"]}));
}

// ---------------------------------------------------------------------------------------------
// Protect threshold, clusters, manual health
// ---------------------------------------------------------------------------------------------

/// A persistent service with two persistent instances whose cluster uses checker NONE.
async fn persistent_pair(server: &Server, service: &str, threshold: &str) {
    ok(client().post(ns(server, "/service")).form(&[("serviceName", service), ("protectThreshold", threshold)])).await;
    for ip in ["10.18.0.1", "10.18.0.2"] {
        register_ok(server, &[("serviceName", service), ("ip", ip), ("port", "80"), ("ephemeral", "false")]).await;
    }
    crate::harness::checks_off(server, service).await;
}

async fn set_health(server: &Server, service: &str, ip: &str, healthy: &str) -> (u16, String) {
    call(client().put(ns(server, "/health")).form(&[
        ("serviceName", service),
        ("ip", ip),
        ("port", "80"),
        ("healthy", healthy),
    ]))
    .await
}

#[tokio::test]
async fn protect_threshold_reached_returns_all_hosts_as_healthy() {
    let server = Server::start();
    persistent_pair(&server, "prot", "0.5").await;
    let (status, body) = set_health(&server, "prot", "10.18.0.1", "false").await;
    assert_eq!((status, body.as_str()), (200, "ok"));

    // 1 healthy of 2 = 0.5 <= 0.5: protection fires.
    let info = list(&server, &[("serviceName", "prot")]).await;
    assert_eq!(info["reachProtectionThreshold"], true, "{info}");
    let hosts = info["hosts"].as_array().unwrap();
    assert_eq!(ips(hosts), ["10.18.0.1", "10.18.0.2"]);
    assert!(hosts.iter().all(|h| h["healthy"] == true), "{info}");

    // The stored health is still false: the single-instance GET shows the truth.
    let v = get_json(&server, "/instance", &[("serviceName", "prot"), ("ip", "10.18.0.1"), ("port", "80")]).await;
    assert_eq!(v["healthy"], false);

    // Back to healthy: no protection.
    let (status, _) = set_health(&server, "prot", "10.18.0.1", "true").await;
    assert_eq!(status, 200);
    let info = list(&server, &[("serviceName", "prot")]).await;
    assert_eq!(info["reachProtectionThreshold"], false);
}

#[tokio::test]
async fn protect_threshold_zero_with_one_unhealthy_is_not_protected() {
    let server = Server::start();
    persistent_pair(&server, "noprot", "0.0").await;
    let (status, body) = set_health(&server, "noprot", "10.18.0.1", "false").await;
    assert_eq!((status, body.as_str()), (200, "ok"));

    let info = list(&server, &[("serviceName", "noprot")]).await;
    assert_eq!(info["reachProtectionThreshold"], false, "{info}");
    let hosts = info["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2);
    assert_eq!(hosts.iter().find(|h| h["ip"] == "10.18.0.1").unwrap()["healthy"], false);
    assert_eq!(hosts.iter().find(|h| h["ip"] == "10.18.0.2").unwrap()["healthy"], true);

    let healthy = self::hosts(&server, &[("serviceName", "noprot"), ("healthyOnly", "true")]).await;
    assert_eq!(ips(&healthy), ["10.18.0.2"]);
}

#[tokio::test]
async fn protect_threshold_zero_with_all_unhealthy_returns_all_as_healthy() {
    let server = Server::start();
    persistent_pair(&server, "allbad", "0").await;
    for ip in ["10.18.0.1", "10.18.0.2"] {
        let (status, _) = set_health(&server, "allbad", ip, "false").await;
        assert_eq!(status, 200);
    }
    let info = list(&server, &[("serviceName", "allbad")]).await;
    assert_eq!(info["reachProtectionThreshold"], true, "{info}");
    assert!(info["hosts"].as_array().unwrap().iter().all(|h| h["healthy"] == true));
}

#[tokio::test]
async fn manual_health_accepts_legacy_valid_and_health_instance_path() {
    let server = Server::start();
    persistent_pair(&server, "valid", "0").await;
    ok(client().put(ns(&server, "/health/instance")).form(&[
        ("serviceName", "valid"),
        ("ip", "10.18.0.2"),
        ("port", "80"),
        ("valid", "false"),
    ]))
    .await;
    let v = get_json(&server, "/instance", &[("serviceName", "valid"), ("ip", "10.18.0.2"), ("port", "80")]).await;
    assert_eq!(v["healthy"], false);

    let (status, body) = call(client().put(ns(&server, "/health")).form(&[
        ("serviceName", "valid"),
        ("ip", "10.18.0.2"),
        ("port", "80"),
    ]))
    .await;
    assert_eq!((status, body.as_str()), (400, "Parameter 'healthy' is missing"));
}

#[tokio::test]
async fn manual_health_with_default_tcp_checker_is_400() {
    let server = Server::start();
    ok(client().post(ns(&server, "/service")).form(&[("serviceName", "tcp")])).await;
    register_ok(&server, &[("serviceName", "tcp"), ("ip", "10.19.0.1"), ("port", "80"), ("ephemeral", "false")]).await;
    let (status, body) = set_health(&server, "tcp", "10.19.0.1", "false").await;
    assert_eq!(status, 400, "{body}");
    let v = get_json(&server, "/instance", &[("serviceName", "tcp"), ("ip", "10.19.0.1"), ("port", "80")]).await;
    assert_eq!(v["healthy"], true, "health unchanged");
}

#[tokio::test]
async fn cluster_put_is_visible_in_service_get_and_validates_its_input() {
    let server = Server::start();
    ok(client().post(ns(&server, "/service")).form(&[("serviceName", "clu")])).await;
    ok(client().put(ns(&server, "/cluster")).form(&[
        ("serviceName", "clu"),
        ("clusterName", "c1"),
        ("checkPort", "8080"),
        ("useInstancePort4Check", "false"),
        ("healthChecker", r#"{"type":"NONE"}"#),
        ("metadata", "k=v"),
    ]))
    .await;
    let v = get_json(&server, "/service", &[("serviceName", "clu")]).await;
    let c = v["clusters"].as_array().unwrap().iter().find(|c| c["name"] == "c1").cloned().expect("cluster c1");
    assert_eq!(c["healthChecker"]["type"], "NONE");
    assert_eq!(c["metadata"], json!({"k": "v"}));

    let base = [("serviceName", "clu"), ("clusterName", "c1"), ("checkPort", "80"), ("useInstancePort4Check", "true")];
    for (extra, what) in [
        (vec![("healthChecker", r#"{"type":"BOGUS"}"#)], "unknown checker type"),
        (vec![("healthChecker", "{not json")], "broken checker JSON"),
        (vec![], "missing healthChecker"),
    ] {
        let mut form: Vec<(&str, &str)> = base.to_vec();
        form.extend(extra);
        let (status, body) = call(client().put(ns(&server, "/cluster")).form(&form)).await;
        assert_eq!(status, 400, "{what}: {body}");
    }
    let (status, body) = call(client().put(ns(&server, "/cluster")).form(&[
        ("serviceName", "ghost"),
        ("clusterName", "c1"),
        ("checkPort", "80"),
        ("useInstancePort4Check", "true"),
        ("healthChecker", r#"{"type":"TCP"}"#),
    ]))
    .await;
    assert_eq!(status, 400, "unknown service: {body}");
}

// ---------------------------------------------------------------------------------------------
// Operator, health, catalog endpoints
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn operator_metrics_reports_status_and_counts() {
    let server = Server::start();
    // The first sample covers the time since the process started (it may round to 0 when the
    // process used less than a 10 ms clock tick); later ones about a second each.
    let first = get_json(&server, "/operator/metrics", &[("onlyStatus", "false")]).await;
    assert!(first["cpu"].as_f64().is_some_and(|c| (0.0..=1.0).contains(&c)), "cpu {first}");
    assert_eq!(get_json(&server, "/operator/metrics", &[]).await, json!({"status": "UP"}));
    assert_eq!(get_json(&server, "/ops/metrics", &[]).await, json!({"status": "UP"}));

    register_ok(&server, &[("serviceName", "m1"), ("ip", "10.20.0.1"), ("port", "80")]).await;
    register_ok(&server, &[("serviceName", "m1"), ("ip", "10.20.0.2"), ("port", "80")]).await;
    register_ok(&server, &[("serviceName", "m2"), ("ip", "10.20.0.1"), ("port", "80")]).await;
    register_ok(&server, &[("serviceName", "m3"), ("ip", "10.20.0.9"), ("port", "81"), ("ephemeral", "false")]).await;
    let full = get_json(&server, "/operator/metrics", &[("onlyStatus", "false")]).await;
    assert_eq!(full["status"], "UP");
    assert_eq!(full["serviceCount"], 3);
    assert_eq!(full["instanceCount"], 4);
    // Clients as Nacos counts them: `10.20.0.1:80#true` (in m1 and m2), `10.20.0.2:80#true`,
    // and the persistent `10.20.0.9:81#false`. Standalone, this node owns every ephemeral one;
    // persistent clients have no responsible member.
    assert_eq!(full["ephemeralIpPortClientCount"], 2, "{full}");
    assert_eq!(full["persistentIpPortClientCount"], 1, "{full}");
    assert_eq!(full["connectionBasedClientCount"], 0, "{full}");
    assert_eq!(full["clientCount"], 3, "{full}");
    assert_eq!(full["responsibleClientCount"], 2, "{full}");
    assert_eq!(full["responsibleInstanceCount"], 3, "{full}");
    assert_eq!(full["subscribeCount"], 0, "{full}");
    // Real process figures: the server has used some CPU and holds some memory (fractions of
    // the machine), and the load average is what /proc says, never negative.
    let (cpu, mem, load) = (full["cpu"].as_f64(), full["mem"].as_f64(), full["load"].as_f64());
    assert!(cpu.is_some_and(|c| (0.0..=1.0).contains(&c)), "cpu {full}");
    assert!(mem.is_some_and(|m| m > 0.0 && m < 1.0), "mem {full}");
    assert!(load.is_some_and(|l| l >= 0.0), "load {full}");
    #[cfg(target_os = "linux")]
    {
        let ours: f64 = std::fs::read_to_string("/proc/loadavg").unwrap().split(' ').next().unwrap().parse().unwrap();
        assert!((load.unwrap() - ours).abs() < 2.0, "load {load:?} is the machine's 1-minute average ({ours})");
    }
    // A server kept busy reports the CPU it uses (never a fixed zero).
    let busy = eventually(Duration::from_secs(10), || async {
        for _ in 0..20 {
            get_json(&server, "/instance/list", &[("serviceName", "m1")]).await;
        }
        let sample = get_json(&server, "/operator/metrics", &[("onlyStatus", "false")]).await;
        sample["cpu"].as_f64().filter(|c| *c > 0.0)
    })
    .await;
    assert!(busy.is_some(), "cpu stayed 0 while the server answered requests");
}

#[tokio::test]
async fn health_server_and_checkers_answer() {
    let server = Server::start();
    register_ok(&server, &[("serviceName", "hs"), ("ip", "10.21.0.1"), ("port", "80")]).await;
    let v = get_json(&server, "/health/server", &[]).await;
    let msg = v["msg"].as_str().expect("msg");
    assert!(msg.starts_with("Hello! I am Nacos-Naming and healthy!"), "{msg}");
    assert!(msg.contains("total services: 1"), "{msg}");
    assert!(msg.contains(&format!("local port:{}", server.http.port())), "{msg}");

    let checkers = get_json(&server, "/health/checkers", &[]).await;
    for t in ["TCP", "HTTP", "MYSQL", "NONE"] {
        assert_eq!(checkers[t]["type"], t, "{checkers}");
    }
}

#[tokio::test]
async fn service_names_lists_grouped_names_per_namespace() {
    let server = Server::start();
    register_ok(&server, &[("serviceName", "n1"), ("ip", "10.22.0.1"), ("port", "80")]).await;
    register_ok(&server, &[("serviceName", "g@@n2"), ("ip", "10.22.0.1"), ("port", "80")]).await;
    let v = get_json(&server, "/service/names", &[]).await;
    assert_eq!(v["count"], 2);
    let mut names: Vec<String> =
        v["META-INF/services"]["public"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_owned()).collect();
    names.sort();
    assert_eq!(names, ["DEFAULT_GROUP@@n1", "g@@n2"]);

    let filtered = get_json(&server, "/service/names", &[("expr", "n2")]).await;
    assert_eq!(filtered["count"], 1);
    let empty = get_json(&server, "/service/names", &[("namespaceId", "dev")]).await;
    assert_eq!(empty["count"], 0);
}

#[tokio::test]
async fn catalog_services_and_instances_answer() {
    let server = Server::start();
    register_ok(&server, &[("serviceName", "cat"), ("ip", "10.23.0.1"), ("port", "80")]).await;
    register_ok(&server, &[("serviceName", "cat"), ("ip", "10.23.0.2"), ("port", "80"), ("healthy", "false")]).await;
    register_ok(&server, &[("serviceName", "dog"), ("ip", "10.23.0.3"), ("port", "80"), ("clusterName", "c1")]).await;

    let v = get_json(&server, "/catalog/services", &[]).await;
    assert_eq!(v["count"], 2);
    let cat = v["serviceList"].as_array().unwrap().iter().find(|s| s["name"] == "cat").cloned().expect("cat");
    assert_eq!(cat["groupName"], "DEFAULT_GROUP");
    assert_eq!(cat["ipCount"], 2);
    assert_eq!(cat["healthyInstanceCount"], 1);
    assert_eq!(cat["clusterCount"], 1);

    let only_dog = get_json(&server, "/catalog/services", &[("serviceNameParam", "do")]).await;
    assert_eq!(only_dog["count"], 1);

    let v = get_json(&server, "/catalog/instances", &[("serviceName", "cat")]).await;
    assert_eq!(v["count"], 2);
    assert_eq!(ips(v["list"].as_array().unwrap()), ["10.23.0.1", "10.23.0.2"]);
    let v = get_json(&server, "/catalog/instances", &[("serviceName", "dog"), ("clusterName", "c1")]).await;
    assert_eq!(v["count"], 1);
    let v = get_json(&server, "/catalog/instances", &[("serviceName", "dog"), ("clusterName", "DEFAULT")]).await;
    assert_eq!(v["count"], 0);
}

#[tokio::test]
async fn operator_switches_answer() {
    let server = Server::start();
    let v = get_json(&server, "/operator/switches", &[]).await;
    assert_eq!(v["name"], "00-00---000-NACOS_SWITCH_DOMAIN-000---00-00");
    assert_eq!(v["clientBeatInterval"], 5000);
    assert_eq!(v["lightBeatEnabled"], true);
    assert_eq!(v["defaultPushCacheMillis"], 10000);
    // The running mode: standalone replicates nothing.
    assert_eq!(v["distroEnabled"], false);
    assert_eq!(v["enableStandalone"], true);
    // Standalone, this node is responsible for every client.
    let owner = get_json(&server, "/operator/distro/client", &[("ip", "10.25.0.1"), ("port", "80")]).await;
    assert_eq!(owner["responsibleServer"], server.http.to_string());
}

#[tokio::test]
async fn console_liveness_and_readiness_are_200() {
    let server = Server::start();
    for path in ["/nacos/v1/console/health/liveness", "/nacos/v1/console/health/readiness"] {
        let (status, body) = call(client().get(server.url(path))).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
}

// ---------------------------------------------------------------------------------------------
// Error answers: status + plain text
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn register_with_weight_out_of_range_is_400() {
    let server = Server::start();
    for w in ["10001", "-1"] {
        let (status, body) =
            register(&server, &[("serviceName", "w"), ("ip", "10.24.0.1"), ("port", "80"), ("weight", w)]).await;
        assert_eq!(status, 400, "weight {w}: {body}");
        assert!(body.contains("weight"), "{body}");
    }
    // The bounds themselves are fine.
    register_ok(&server, &[("serviceName", "w"), ("ip", "10.24.0.1"), ("port", "80"), ("weight", "10000")]).await;
    register_ok(&server, &[("serviceName", "w"), ("ip", "10.24.0.2"), ("port", "80"), ("weight", "0")]).await;
    assert_eq!(hosts(&server, &[("serviceName", "w")]).await.len(), 2);
}

#[tokio::test]
async fn register_with_illegal_cluster_name_is_400() {
    let server = Server::start();
    for cluster in ["bad_name", "bad.name"] {
        let (status, body) =
            register(&server, &[("serviceName", "c"), ("ip", "10.25.0.1"), ("port", "80"), ("clusterName", cluster)])
                .await;
        assert_eq!(status, 400, "{cluster}: {body}");
        assert!(body.contains("0-9a-zA-Z-"), "message names the cluster rule: {body}");
    }
    assert!(hosts(&server, &[("serviceName", "c")]).await.is_empty());
}

#[tokio::test]
async fn register_without_ip_is_400_parameter_missing() {
    let server = Server::start();
    let (status, body) = register(&server, &[("serviceName", "x"), ("port", "80")]).await;
    assert_eq!((status, body.as_str()), (400, "Parameter 'ip' is missing"));
    // A blank value counts as missing.
    let (status, body) = register(&server, &[("serviceName", "x"), ("ip", "  "), ("port", "80")]).await;
    assert_eq!((status, body.as_str()), (400, "Parameter 'ip' is missing"));
}

#[tokio::test]
async fn register_without_port_is_400_parameter_missing() {
    let server = Server::start();
    let (status, body) = register(&server, &[("serviceName", "x"), ("ip", "10.26.0.1")]).await;
    assert_eq!((status, body.as_str()), (400, "Parameter 'port' is missing"));
}

#[tokio::test]
async fn register_without_service_name_is_400() {
    let server = Server::start();
    let (status, body) = register(&server, &[("ip", "10.26.0.1"), ("port", "80")]).await;
    assert_eq!((status, body.as_str()), (400, "Parameter 'serviceName' is missing"));
}

#[tokio::test]
async fn register_with_non_numeric_or_out_of_range_port_is_400() {
    let server = Server::start();
    for port in ["http", "70000", "-1", "8o"] {
        let (status, body) = register(&server, &[("serviceName", "p"), ("ip", "10.26.0.1"), ("port", port)]).await;
        assert_eq!(status, 400, "port {port}: {body}");
        assert!(body.contains("port"), "{body}");
    }
    assert!(hosts(&server, &[("serviceName", "p")]).await.is_empty());
}

#[tokio::test]
async fn register_with_non_numeric_weight_is_400() {
    let server = Server::start();
    let (status, body) =
        register(&server, &[("serviceName", "p"), ("ip", "10.26.0.1"), ("port", "80"), ("weight", "heavy")]).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn malformed_grouped_service_names_are_400() {
    let server = Server::start();
    for name in ["@@svc", "grp@@", "a b"] {
        let (status, body) = register(&server, &[("serviceName", name), ("ip", "10.26.0.1"), ("port", "80")]).await;
        assert_eq!(status, 400, "{name:?}: {body}");
        let (status, body) = call(client().get(ns(&server, "/instance/list")).query(&[("serviceName", name)])).await;
        assert_eq!(status, 400, "list {name:?}: {body}");
    }
}

#[tokio::test]
async fn list_without_service_name_is_400() {
    let server = Server::start();
    let (status, body) = call(client().get(ns(&server, "/instance/list"))).await;
    assert_eq!((status, body.as_str()), (400, "Parameter 'serviceName' is missing"));
}

#[tokio::test]
async fn error_bodies_are_plain_text() {
    let server = Server::start();
    let resp = client().post(ns(&server, "/instance")).form(&[("serviceName", "x")]).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(ct.starts_with("text/plain"), "content-type {ct}");
}

// ---------------------------------------------------------------------------------------------
// Further Nacos semantics
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn blank_namespace_and_group_mean_the_defaults_and_names_are_trimmed() {
    let server = Server::start();
    register_ok(
        &server,
        &[("serviceName", "  padded  "), ("namespaceId", ""), ("groupName", ""), ("ip", "10.30.0.1"), ("port", "80")],
    )
    .await;
    let info = list(&server, &[("serviceName", "padded"), ("namespaceId", "public")]).await;
    assert_eq!(info["name"], "DEFAULT_GROUP@@padded");
    assert_eq!(ips(info["hosts"].as_array().unwrap()), ["10.30.0.1"]);
}

#[tokio::test]
async fn healthy_only_ratio_uses_the_filtered_list_as_denominator() {
    // Spec §2.5: with healthyOnly the denominator is the already-filtered list, so one healthy of
    // two with threshold 0.5 is 1/1 > 0.5: no protection, only the healthy host.
    let server = Server::start();
    persistent_pair(&server, "hop", "0.5").await;
    let (status, _) = set_health(&server, "hop", "10.18.0.1", "false").await;
    assert_eq!(status, 200);
    let info = list(&server, &[("serviceName", "hop"), ("healthyOnly", "true")]).await;
    assert_eq!(info["reachProtectionThreshold"], false, "{info}");
    assert_eq!(ips(info["hosts"].as_array().unwrap()), ["10.18.0.2"]);
}

#[tokio::test]
async fn service_without_instances_left_can_be_deleted() {
    let server = Server::start();
    register_ok(&server, &[("serviceName", "gone"), ("ip", "10.31.0.1"), ("port", "80")]).await;
    ok(client().delete(ns(&server, "/instance")).query(&[
        ("serviceName", "gone"),
        ("ip", "10.31.0.1"),
        ("port", "80"),
    ]))
    .await;
    ok(client().delete(ns(&server, "/service")).query(&[("serviceName", "gone")])).await;
    let (status, _) = call(client().get(ns(&server, "/service")).query(&[("serviceName", "gone")])).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn service_put_replaces_metadata_and_selector_but_keeps_clusters() {
    // Nacos 2.x `ServiceController.update` builds a fresh ServiceMetadata from the request
    // (metadata default "", selector default none) and `ServiceMetadataProcessor.mergeMetadata`
    // keeps only `ephemeral` and `clusters` of the old one.
    let server = Server::start();
    ok(client().post(ns(&server, "/service")).form(&[
        ("serviceName", "repl"),
        ("protectThreshold", "0.5"),
        ("metadata", r#"{"a":"1"}"#),
        ("selector", r#"{"type":"label","expression":"CONSUMER.label.a = PROVIDER.label.a"}"#),
    ]))
    .await;
    ok(client().put(ns(&server, "/cluster")).form(&[
        ("serviceName", "repl"),
        ("clusterName", "c1"),
        ("checkPort", "80"),
        ("useInstancePort4Check", "true"),
        ("healthChecker", r#"{"type":"NONE"}"#),
    ]))
    .await;
    ok(client().put(ns(&server, "/service")).form(&[("serviceName", "repl"), ("protectThreshold", "0.25")])).await;
    let v = get_json(&server, "/service", &[("serviceName", "repl")]).await;
    assert_eq!(v["protectThreshold"], 0.25);
    assert_eq!(v["metadata"], json!({}), "metadata replaced by the (absent = empty) new one: {v}");
    assert_eq!(v["selector"]["type"], "none", "selector replaced: {v}");
    let c1 = v["clusters"].as_array().unwrap().iter().find(|c| c["name"] == "c1").cloned().expect("cluster kept");
    assert_eq!(c1["healthChecker"]["type"], "NONE");
}

#[tokio::test]
async fn service_names_without_namespace_lists_every_namespace() {
    // Nacos `ServiceController.searchService`: namespaceId defaults to "" and a blank one iterates
    // all namespaces, keyed by namespace, with the total count.
    let server = Server::start();
    register_ok(&server, &[("serviceName", "pub"), ("ip", "10.32.0.1"), ("port", "80")]).await;
    register_ok(&server, &[("serviceName", "dv"), ("namespaceId", "dev"), ("ip", "10.32.0.1"), ("port", "80")]).await;
    let v = get_json(&server, "/service/names", &[]).await;
    assert_eq!(v["count"], 2, "{v}");
    assert_eq!(v["META-INF/services"]["public"], json!(["DEFAULT_GROUP@@pub"]));
    assert_eq!(v["META-INF/services"]["dev"], json!(["DEFAULT_GROUP@@dv"]));
}

#[tokio::test]
async fn reregistering_an_address_in_another_cluster_moves_it() {
    // The HTTP client `ip:port#true` publishes one instance per service: the new one replaces it.
    let server = Server::start();
    register_ok(&server, &[("serviceName", "mv"), ("ip", "10.33.0.1"), ("port", "80"), ("clusterName", "c1")]).await;
    register_ok(&server, &[("serviceName", "mv"), ("ip", "10.33.0.1"), ("port", "80"), ("clusterName", "c2")]).await;
    let hosts = hosts(&server, &[("serviceName", "mv")]).await;
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    assert_eq!(hosts[0]["clusterName"], "c2");
}

#[tokio::test]
async fn delete_without_ephemeral_false_leaves_a_persistent_instance() {
    // Deregistration targets the client `ip:port#<ephemeral>`; the default is ephemeral.
    let server = Server::start();
    register_ok(&server, &[("serviceName", "pk"), ("ip", "10.34.0.1"), ("port", "80"), ("ephemeral", "false")]).await;
    ok(client().delete(ns(&server, "/instance")).query(&[("serviceName", "pk"), ("ip", "10.34.0.1"), ("port", "80")]))
        .await;
    assert_eq!(ips(&hosts(&server, &[("serviceName", "pk")]).await), ["10.34.0.1"]);
    ok(client().delete(ns(&server, "/instance")).query(&[
        ("serviceName", "pk"),
        ("ip", "10.34.0.1"),
        ("port", "80"),
        ("ephemeral", "false"),
    ]))
    .await;
    assert!(hosts(&server, &[("serviceName", "pk")]).await.is_empty());
}

#[tokio::test]
async fn instance_override_set_before_registration_applies_when_it_registers() {
    // Nacos keeps InstanceMetadata keyed `ip:port:cluster` whether or not the instance exists yet.
    let server = Server::start();
    register_ok(&server, &[("serviceName", "early"), ("ip", "10.35.0.1"), ("port", "80")]).await;
    ok(client().put(ns(&server, "/instance")).form(&[
        ("serviceName", "early"),
        ("ip", "10.35.0.2"),
        ("port", "80"),
        ("weight", "5"),
        ("metadata", "tag=pre"),
    ]))
    .await;
    register_ok(&server, &[("serviceName", "early"), ("ip", "10.35.0.2"), ("port", "80")]).await;
    let hosts = hosts(&server, &[("serviceName", "early")]).await;
    let h = hosts.iter().find(|h| h["ip"] == "10.35.0.2").expect("registered");
    assert_eq!(h["weight"], 5.0);
    assert_eq!(h["metadata"]["tag"], "pre");
}

#[tokio::test]
async fn instance_override_survives_reregistration() {
    let server = Server::start();
    register_ok(&server, &[("serviceName", "sticky"), ("ip", "10.36.0.1"), ("port", "80")]).await;
    ok(client().put(ns(&server, "/instance")).form(&[
        ("serviceName", "sticky"),
        ("ip", "10.36.0.1"),
        ("port", "80"),
        ("weight", "4"),
    ]))
    .await;
    register_ok(&server, &[("serviceName", "sticky"), ("ip", "10.36.0.1"), ("port", "80"), ("weight", "1")]).await;
    assert_eq!(hosts(&server, &[("serviceName", "sticky")]).await[0]["weight"], 4.0);
}
