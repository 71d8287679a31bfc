//! Bad input never kills the server: malformed bodies and encodings, oversized bodies, broken
//! JSON, illegal names, raw protocol garbage and a burst of concurrent writes. After each, the
//! liveness probe must still answer 200 and the registry must still work.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Server, call, client, json, metric};

const FORM: &str = "application/x-www-form-urlencoded";

fn v1(server: &Server, path: &str) -> String {
    server.url(&format!("/nacos/v1/ns{path}"))
}

/// The liveness probe answers 200 and a write plus a read still work.
async fn assert_alive(server: &Server) {
    let (status, body) = call(client().get(server.url("/nacos/v1/console/health/liveness"))).await;
    assert_eq!(status, 200, "liveness: {body}");
    let (status, body) = call(client().post(v1(server, "/instance")).form(&[
        ("serviceName", "canary"),
        ("ip", "10.255.0.1"),
        ("port", "80"),
    ]))
    .await;
    assert_eq!((status, body.as_str()), (200, "ok"), "canary registration");
    assert!(!hosts(server, &[("serviceName", "canary")]).await.is_empty());
}

async fn hosts(server: &Server, query: &[(&str, &str)]) -> Vec<Value> {
    let (status, body) = call(client().get(v1(server, "/instance/list")).query(query)).await;
    assert_eq!(status, 200, "{body}");
    json(&body)["hosts"].as_array().cloned().expect("hosts array")
}

/// POST `/instance` with a raw form body.
async fn post_raw(server: &Server, body: impl Into<reqwest::Body>) -> (u16, String) {
    call(client().post(v1(server, "/instance")).header("content-type", FORM).body(body)).await
}

/// Writes raw bytes on a fresh TCP connection, half-closes, and reads whatever comes back
/// (bounded). Write errors are ignored: the server may close early.
async fn raw_tcp(server: &Server, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(server.http).await.expect("connect");
    let _ = stream.write_all(request).await;
    let _ = stream.shutdown().await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Malformed encodings
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_form_bodies_get_a_clean_400() {
    let server = Server::start();
    for body in ["%zz", "a=b&&&=", "=", "&&&", "%", "%%%%", "a=%zz%", "===", "&=&=&"] {
        let (status, text) = post_raw(&server, body).await;
        assert_eq!((status, text.as_str()), (400, "Parameter 'serviceName' is missing"), "body {body:?}");
    }
    assert_alive(&server).await;
}

#[tokio::test]
async fn junk_pairs_next_to_valid_parameters_are_ignored() {
    let server = Server::start();
    let (status, text) = post_raw(&server, "%zz&serviceName=junk&&ip=10.1.0.1&=&port=80&=x&%&a=%zz").await;
    assert_eq!((status, text.as_str()), (200, "ok"));
    let hosts = hosts(&server, &[("serviceName", "junk")]).await;
    assert_eq!(hosts.len(), 1);
    assert_eq!((hosts[0]["ip"].as_str(), hosts[0]["port"].as_u64()), (Some("10.1.0.1"), Some(80)));
    assert_alive(&server).await;
}

#[tokio::test]
async fn malformed_escape_is_kept_literally_in_values() {
    let server = Server::start();
    let (status, text) =
        post_raw(&server, "serviceName=lit&ip=10.1.1.1&port=80&metadata=%7B%22k%22%3A%22100%25zz%22%7D").await;
    assert_eq!((status, text.as_str()), (200, "ok"));
    assert_eq!(hosts(&server, &[("serviceName", "lit")]).await[0]["metadata"], json!({"k": "100%zz"}));
}

#[tokio::test]
async fn invalid_utf8_in_query_is_400() {
    let server = Server::start();
    for query in ["serviceName=%ff%fe", "serviceName=ok&%ff%fe=1", "serviceName=a%c3"] {
        let url = format!("{}?{query}", v1(&server, "/instance/list"));
        let (status, body) = call(client().get(url)).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains("UTF-8"), "{body}");
    }
    let url = format!("{}?serviceName=%ff%fe&ip=10.1.2.1&port=80", v1(&server, "/instance"));
    let (status, _) = call(client().post(url)).await;
    assert_eq!(status, 400);
    assert_alive(&server).await;
}

#[tokio::test]
async fn invalid_utf8_in_form_body_is_400() {
    let server = Server::start();
    let (status, body) = post_raw(&server, "serviceName=%ff%fe&ip=10.1.3.1&port=80").await;
    assert_eq!(status, 400, "{body}");
    // Raw (not percent-encoded) invalid bytes too.
    let raw: Vec<u8> = b"serviceName=\xff\xfe\xfd&ip=10.1.3.1&port=80".to_vec();
    let (status, body) = post_raw(&server, raw).await;
    assert_eq!(status, 400, "{body}");
    assert_alive(&server).await;
}

#[tokio::test]
async fn non_form_content_type_body_is_not_read_as_parameters() {
    let server = Server::start();
    let (status, body) = call(
        client()
            .post(v1(&server, "/instance"))
            .header("content-type", "application/json")
            .body(r#"{"serviceName":"js","ip":"10.1.4.1","port":80}"#),
    )
    .await;
    assert_eq!((status, body.as_str()), (400, "Parameter 'serviceName' is missing"));
    assert!(hosts(&server, &[("serviceName", "js")]).await.is_empty());
    assert_alive(&server).await;
}

// ---------------------------------------------------------------------------------------------
// Body size
// ---------------------------------------------------------------------------------------------

const SMALL_LIMIT: &str = "[http]\nmax_body_bytes = 4096\n";

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let server = Server::start_with_config(Some(SMALL_LIMIT));
    let big = format!("serviceName=big&ip=10.2.0.1&port=80&metadata={}", "a".repeat(64 * 1024));
    let (status, body) = post_raw(&server, big.clone()).await;
    assert_eq!(status, 413, "{body}");
    assert!(hosts(&server, &[("serviceName", "big")]).await.is_empty());

    // v2 answers 413 too, inside its envelope.
    let (status, body) =
        call(client().post(server.url("/nacos/v2/ns/instance")).header("content-type", FORM).body(big)).await;
    assert_eq!(status, 413, "{body}");
    let v = json(&body);
    assert!(v["code"].as_u64().is_some_and(|c| c != 0), "{body}");

    // A body of any content type counts, as does a PUT.
    let (status, _) = call(
        client().put(v1(&server, "/instance/beat")).header("content-type", "text/plain").body(vec![b'x'; 64 * 1024]),
    )
    .await;
    assert_eq!(status, 413);
    assert_alive(&server).await;
}

#[tokio::test]
async fn body_just_under_the_limit_is_accepted() {
    let server = Server::start_with_config(Some(SMALL_LIMIT));
    let value = "v".repeat(3000);
    let (status, body) = call(client().post(v1(&server, "/instance")).form(&[
        ("serviceName", "fits"),
        ("ip", "10.2.1.1"),
        ("port", "80"),
        ("metadata", &format!(r#"{{"k":"{value}"}}"#)),
    ]))
    .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_eq!(hosts(&server, &[("serviceName", "fits")]).await[0]["metadata"]["k"], value);
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_413() {
    let server = Server::start_with_config(Some(SMALL_LIMIT));
    let mut req = format!(
        "POST /nacos/v1/ns/instance HTTP/1.1\r\nHost: {}\r\nContent-Type: {FORM}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        server.http
    )
    .into_bytes();
    let chunk = "a".repeat(8 * 1024);
    let head = "serviceName=chunky&ip=10.2.2.1&port=80&x=";
    req.extend_from_slice(format!("{:x}\r\n{head}\r\n", head.len()).as_bytes());
    for _ in 0..8 {
        req.extend_from_slice(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes());
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_tcp(&server, &req).await;
    // The server may answer before reading the rest and then reset the connection, which can
    // discard the answer on the client side; what matters is that nothing was registered.
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(hosts(&server, &[("serviceName", "chunky")]).await.is_empty());
    assert_alive(&server).await;
}

#[tokio::test]
async fn huge_metadata_within_the_limit_is_accepted_or_refused_cleanly() {
    let server = Server::start();
    // About 1 MiB of metadata: 10 000 keys of ~100 bytes.
    let map: serde_json::Map<String, Value> =
        (0..10_000).map(|i| (format!("key-{i:05}"), Value::String("x".repeat(90)))).collect();
    let metadata = Value::Object(map).to_string();
    let (status, body) = call(client().post(v1(&server, "/instance")).form(&[
        ("serviceName", "huge"),
        ("ip", "10.3.0.1"),
        ("port", "80"),
        ("metadata", &metadata),
    ]))
    .await;
    match status {
        200 => {
            assert_eq!(body, "ok");
            let hosts = hosts(&server, &[("serviceName", "huge")]).await;
            assert_eq!(hosts[0]["metadata"].as_object().map(serde_json::Map::len), Some(10_000));
        }
        400 | 413 => assert!(hosts(&server, &[("serviceName", "huge")]).await.is_empty()),
        other => panic!("unexpected status {other}: {body}"),
    }
    assert_alive(&server).await;
}

#[tokio::test]
async fn many_parameters_are_handled() {
    let server = Server::start();
    let mut body = String::from("serviceName=many&ip=10.3.1.1&port=80");
    for i in 0..20_000 {
        body.push_str(&format!("&p{i}=v{i}"));
    }
    let (status, text) = post_raw(&server, body).await;
    assert_eq!((status, text.as_str()), (200, "ok"));
    assert_alive(&server).await;
}

// ---------------------------------------------------------------------------------------------
// Broken JSON
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn broken_metadata_json_is_400() {
    let server = Server::start();
    for metadata in ["{broken", r#"{"a":1"#, "[1,2]", "novalue", r#"{"a":"1"} trailing"#] {
        let (status, body) = call(client().post(v1(&server, "/instance")).form(&[
            ("serviceName", "bm"),
            ("ip", "10.4.0.1"),
            ("port", "80"),
            ("metadata", metadata),
        ]))
        .await;
        assert_eq!(status, 400, "{metadata}: {body}");
        assert!(body.contains("metadata"), "{body}");
    }
    assert!(hosts(&server, &[("serviceName", "bm")]).await.is_empty());
    // Also on service creation and update.
    let (status, _) =
        call(client().post(v1(&server, "/service")).form(&[("serviceName", "bm"), ("metadata", "{broken")])).await;
    assert_eq!(status, 400);
    assert_alive(&server).await;
}

#[tokio::test]
async fn deeply_nested_json_is_refused_without_crashing() {
    let server = Server::start();
    let nested = format!(r#"{{"a":{}1{}}}"#, "[".repeat(50_000), "]".repeat(50_000));
    let (status, body) = call(client().post(v1(&server, "/instance")).form(&[
        ("serviceName", "deep"),
        ("ip", "10.4.1.1"),
        ("port", "80"),
        ("metadata", &nested),
    ]))
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) =
        call(client().put(v1(&server, "/instance/beat")).form(&[("serviceName", "deep"), ("beat", &nested)])).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(client().put(v1(&server, "/cluster")).form(&[
        ("serviceName", "deep"),
        ("clusterName", "DEFAULT"),
        ("checkPort", "80"),
        ("useInstancePort4Check", "true"),
        ("healthChecker", &nested),
    ]))
    .await;
    assert_eq!(status, 400, "{body}");
    assert_alive(&server).await;
}

#[tokio::test]
async fn broken_beat_json_is_400() {
    let server = Server::start();
    for beat in ["{", "not json", r#"{"ip":"10.5.0.1","port":"eighty"}"#, r#"{"port":70000}"#, "[]"] {
        let (status, body) =
            call(client().put(v1(&server, "/instance/beat")).form(&[("serviceName", "bb"), ("beat", beat)])).await;
        assert_eq!(status, 400, "{beat}: {body}");
        let (status, body) =
            call(client().put(server.url("/nacos/v2/ns/instance/beat")).form(&[("serviceName", "bb"), ("beat", beat)]))
                .await;
        assert_eq!(status, 400, "v2 {beat}: {body}");
        assert_eq!(json(&body)["code"], 20002, "{body}");
    }
    assert!(hosts(&server, &[("serviceName", "bb")]).await.is_empty());
    assert_alive(&server).await;
}

#[tokio::test]
async fn beat_json_with_invalid_instance_data_is_refused() {
    let server = Server::start();
    let (status, body) = call(
        client()
            .put(v1(&server, "/instance/beat"))
            .form(&[("serviceName", "bi"), ("beat", r#"{"ip":"10.5.1.1","port":80,"weight":99999}"#)]),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(
        client()
            .put(v1(&server, "/instance/beat"))
            .form(&[("serviceName", "bi"), ("beat", r#"{"ip":"10.5.1.1","port":80,"cluster":"bad_name"}"#)]),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(hosts(&server, &[("serviceName", "bi")]).await.is_empty());
    assert_alive(&server).await;
}

// ---------------------------------------------------------------------------------------------
// Names and values
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn unknown_namespace_queries_return_empty_hosts() {
    let server = Server::start();
    let (status, body) =
        call(client().post(v1(&server, "/instance")).form(&[("serviceName", "n"), ("ip", "10.6.0.1"), ("port", "80")]))
            .await;
    assert_eq!(status, 200, "{body}");
    for ns in ["does-not-exist", "ns_0", "x"] {
        assert!(hosts(&server, &[("serviceName", "n"), ("namespaceId", ns)]).await.is_empty(), "{ns}");
    }
    let (status, body) = call(
        client().get(server.url("/nacos/v2/ns/instance/list")).query(&[("serviceName", "n"), ("namespaceId", "nope")]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(json(&body)["data"]["hosts"], json!([]));
    assert_alive(&server).await;
}

#[tokio::test]
async fn namespace_with_illegal_characters_is_400() {
    let server = Server::start();
    let too_long = "n".repeat(65);
    for ns in ["bad ns", "a/b", "../etc", "ns@@x", "\u{4e2d}", "a;b", too_long.as_str()] {
        let (status, body) =
            call(client().get(v1(&server, "/instance/list")).query(&[("serviceName", "s"), ("namespaceId", ns)])).await;
        assert_eq!(status, 400, "list in {ns:?}: {body}");
        let (status, body) = call(client().post(v1(&server, "/instance")).form(&[
            ("serviceName", "s"),
            ("namespaceId", ns),
            ("ip", "10.7.0.1"),
            ("port", "80"),
        ]))
        .await;
        assert_eq!(status, 400, "register in {ns:?}: {body}");
    }
    assert_alive(&server).await;
}

#[tokio::test]
async fn oversized_names_and_addresses_are_400() {
    let server = Server::start();
    let long_service = "s".repeat(600);
    let long_group = "g".repeat(600);
    let long_ip = "1".repeat(200);
    let long_cluster = "c".repeat(100);
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("serviceName", &long_service), ("ip", "10.8.0.1"), ("port", "80")],
        vec![("serviceName", "s"), ("groupName", &long_group), ("ip", "10.8.0.1"), ("port", "80")],
        vec![("serviceName", "s"), ("ip", &long_ip), ("port", "80")],
        vec![("serviceName", "s"), ("ip", "10.8.0.1"), ("port", "80"), ("clusterName", &long_cluster)],
        vec![("serviceName", "s"), ("ip", "10.8.0.1 10.8.0.2"), ("port", "80")],
    ];
    for form in cases {
        let (status, body) = call(client().post(v1(&server, "/instance")).form(&form)).await;
        assert_eq!(status, 400, "{body}");
    }
    assert!(hosts(&server, &[("serviceName", "s")]).await.is_empty());
    assert_alive(&server).await;
}

#[tokio::test]
async fn non_finite_weights_are_400() {
    let server = Server::start();
    for w in ["NaN", "inf", "-inf", "1e400"] {
        let (status, body) = call(client().post(v1(&server, "/instance")).form(&[
            ("serviceName", "nf"),
            ("ip", "10.9.0.1"),
            ("port", "80"),
            ("weight", w),
        ]))
        .await;
        assert_eq!(status, 400, "weight {w}: {body}");
    }
    assert!(hosts(&server, &[("serviceName", "nf")]).await.is_empty());
    assert_alive(&server).await;
}

#[tokio::test]
async fn python_none_cluster_is_stored_literally() {
    let server = Server::start();
    // Python's urlencode turns None into the string "None"; Nacos just stores cluster `None`.
    let (status, body) = call(client().post(v1(&server, "/instance")).query(&[
        ("serviceName", "pyn"),
        ("ip", "10.9.1.1"),
        ("port", "80"),
        ("clusterName", "None"),
        ("healthy", "True"),
        ("enabled", "True"),
    ]))
    .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_eq!(hosts(&server, &[("serviceName", "pyn")]).await[0]["clusterName"], "None");
}

// ---------------------------------------------------------------------------------------------
// Protocol-level garbage
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn truncated_body_and_dropped_connections_do_not_hurt() {
    let server = Server::start();
    // Promises 1000 bytes, sends 20, closes.
    let req = format!(
        "POST /nacos/v1/ns/instance HTTP/1.1\r\nHost: {}\r\nContent-Type: {FORM}\r\nContent-Length: 1000\r\n\r\nserviceName=trunc&ip",
        server.http
    );
    let _ = raw_tcp(&server, req.as_bytes()).await;
    // Headers only, never finished.
    let _ = raw_tcp(&server, b"GET /nacos/v1/ns/instance/list?serviceName=x HTTP/1.1\r\nHost: a\r\n").await;
    // Connect and hang up at once.
    drop(tokio::net::TcpStream::connect(server.http).await.expect("connect"));
    assert!(hosts(&server, &[("serviceName", "trunc")]).await.is_empty());
    assert_alive(&server).await;
}

#[tokio::test]
async fn garbage_request_lines_are_refused() {
    let server = Server::start();
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"\x00\x01\x02\x03\xff\xfe\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST /nacos/v1/ns/instance HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /nacos/v1/ns/instance HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef",
    ] {
        let answer = raw_tcp(&server, garbage).await;
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 4") || answer.starts_with("HTTP/1.0 4"), "{answer}");
    }
    assert_alive(&server).await;
}

#[tokio::test]
async fn unknown_paths_and_methods_get_404_and_405() {
    let server = Server::start();
    let (status, _) = call(client().get(server.url("/nacos/v1/ns/nope"))).await;
    assert_eq!(status, 404);
    let (status, _) = call(client().get(server.url("/totally/elsewhere"))).await;
    assert_eq!(status, 404);
    let (status, _) = call(client().get(v1(&server, "/instance/beat"))).await;
    assert_eq!(status, 405);
    let (status, _) = call(client().delete(v1(&server, "/instance/list"))).await;
    assert_eq!(status, 405);
    assert_alive(&server).await;
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_registrations_are_all_visible() {
    let server = Server::start();
    let http = client();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        let req = http.post(v1(&server, "/instance")).form(&[
            ("serviceName", "burst".to_owned()),
            ("ip", format!("10.10.{}.{}", i / 250, i % 250 + 1)),
            ("port", (9000 + i).to_string()),
            ("metadata", format!(r#"{{"i":"{i}"}}"#)),
        ]);
        tasks.spawn(call(req));
    }
    while let Some(joined) = tasks.join_next().await {
        let (status, body) = joined.expect("task");
        assert_eq!((status, body.as_str()), (200, "ok"));
    }
    let hosts = hosts(&server, &[("serviceName", "burst")]).await;
    assert_eq!(hosts.len(), 200);
    let mut ports: Vec<u64> = hosts.iter().map(|h| h["port"].as_u64().unwrap()).collect();
    ports.sort_unstable();
    assert_eq!(ports, (9000..9200).collect::<Vec<u64>>());
    for h in &hosts {
        assert_eq!(h["metadata"]["i"].as_str().unwrap(), (h["port"].as_u64().unwrap() - 9000).to_string());
    }
    let (_, body) = call(client().get(v1(&server, "/operator/metrics")).query(&[("onlyStatus", "false")])).await;
    assert_eq!(json(&body)["instanceCount"], 200);
    assert_alive(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_across_services_with_reads_in_between() {
    let server = Server::start();
    let http = client();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100u32 {
        let svc = format!("svc-{}", i % 10);
        let register = http.post(v1(&server, "/instance")).form(&[
            ("serviceName", svc.clone()),
            ("ip", format!("10.11.0.{}", i + 1)),
            ("port", "80".to_owned()),
        ]);
        tasks.spawn(async move { (call(register).await, true) });
        let read = http.get(v1(&server, "/instance/list")).query(&[("serviceName", svc)]);
        tasks.spawn(async move { (call(read).await, false) });
    }
    while let Some(joined) = tasks.join_next().await {
        let ((status, body), is_write) = joined.expect("task");
        assert_eq!(status, 200, "{body}");
        if is_write {
            assert_eq!(body, "ok");
        } else {
            assert!(json(&body)["hosts"].is_array(), "{body}");
        }
    }
    for s in 0..10 {
        let svc = format!("svc-{s}");
        assert_eq!(hosts(&server, &[("serviceName", &svc)]).await.len(), 10, "{svc}");
    }
    assert_alive(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicate_service_creation_has_exactly_one_winner() {
    let server = Server::start();
    let http = client();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let req = http.post(v1(&server, "/service")).form(&[("serviceName", "race"), ("protectThreshold", "0.5")]);
        tasks.spawn(call(req));
    }
    let mut ok = 0;
    while let Some(joined) = tasks.join_next().await {
        let (status, body) = joined.expect("task");
        match status {
            200 => ok += 1,
            400 => assert!(body.contains("already exists"), "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok, 1, "exactly one creation succeeds");
    assert_alive(&server).await;
}

/// `[naming] max_instances` bounds the index: a registration that would add an instance
/// beyond it gets a 503 naming the limit, while updates of held instances, queries and other
/// work go on; a removal makes room again. Registrations race from several clients.
#[tokio::test(flavor = "multi_thread")]
async fn the_instance_budget_refuses_additions_clearly_and_the_rest_keeps_working() {
    let server = Server::start_with_config(Some("[naming]\nmax_instances = 8\n"));
    let register = |ip: String, weight: &'static str| {
        let req = client().post(v1(&server, "/instance")).form(&[
            ("serviceName", "budget".to_owned()),
            ("ip", ip),
            ("port", "80".to_owned()),
            ("ephemeral", "false".to_owned()),
            ("weight", weight.to_owned()),
        ]);
        call(req)
    };
    // The budget is checked as a write arrives: concurrent writes below it all pass (it may
    // be overshot by the writes in flight, see docs/configuration.md), those after it do not.
    let filling: Vec<_> = (0..8).map(|i| register(format!("10.77.0.{i}"), "1")).collect();
    let answers = futures_util::future::join_all(filling).await;
    assert!(answers.iter().all(|(s, b)| *s == 200 && b == "ok"), "{answers:?}");
    let beyond: Vec<_> = (8..12).map(|i| register(format!("10.77.0.{i}"), "1")).collect();
    let refused = futures_util::future::join_all(beyond).await;
    assert!(refused.iter().all(|(s, b)| *s == 503 && b.contains("max_instances")), "{refused:?}");
    assert_eq!(hosts(&server, &[("serviceName", "budget")]).await.len(), 8);

    let (status, body) = register("10.77.0.0".to_owned(), "2").await;
    assert_eq!((status, body.as_str()), (200, "ok"), "an update of a held instance passes");
    let (status, body) = call(client().get(server.url("/nacos/v1/console/health/liveness"))).await;
    assert_eq!(status, 200, "{body}");
    let held: Vec<String> = hosts(&server, &[("serviceName", "budget")])
        .await
        .iter()
        .map(|h| h["ip"].as_str().unwrap_or("").to_owned())
        .collect();
    let gone = held.first().cloned().expect("a held instance");
    let deregister = client().delete(v1(&server, "/instance")).query(&[
        ("serviceName", "budget"),
        ("ip", gone.as_str()),
        ("port", "80"),
        ("ephemeral", "false"),
    ]);
    assert_eq!(call(deregister).await, (200, "ok".to_owned()));
    let (status, body) = register("10.77.1.1".to_owned(), "1").await;
    assert_eq!((status, body.as_str()), (200, "ok"), "a removal made room");
    let (status, body) = register("10.77.1.2".to_owned(), "1").await;
    assert_eq!(status, 503, "full again: {body}");
}

/// `[limits] namespace_requests_per_second`: a burst in one namespace gets 429 (HTTP) and
/// `OVER_THRESHOLD` (gRPC) once its budget is spent, while another namespace, queried during
/// the burst, is answered every time.
#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_over_its_rate_is_refused_and_other_namespaces_are_served() {
    let server = Server::start_with_config(Some("[limits]\nnamespace_requests_per_second = 20\n"));
    let shown = metric(&server, r#"registry_limit{limit="limits.namespace_requests_per_second"}"#).await;
    assert_eq!(shown, 20, "the limit is shown");
    let list = |namespace: &'static str| {
        call(client().get(v1(&server, "/instance/list")).query(&[("serviceName", "rated"), ("namespaceId", namespace)]))
    };
    let burst: Vec<_> = (0..120).map(|_| list("busy")).collect();
    let calm: Vec<_> = (0..10).map(|_| list("public")).collect();
    let (burst, calm) = tokio::join!(futures_util::future::join_all(burst), futures_util::future::join_all(calm));
    let refused = burst.iter().filter(|(s, b)| *s == 429 && b.contains("Tps Flow restricted")).count();
    assert!(refused > 0 && burst.iter().all(|(s, _)| *s == 200 || *s == 429), "{burst:?}");
    assert!(calm.iter().all(|(s, _)| *s == 200), "the other namespace is served: {calm:?}");
    let counted = crate::harness::metric(&server, "registry_namespace_requests_rate_limited_total").await;
    assert!(counted >= refused as u64, "{counted} < {refused}");

    let conn = registry_proto::client::Connection::connect(
        server.grpc,
        &registry_proto::client::Setup::new("it-limits", "naming"),
    )
    .await
    .expect("grpc connect");
    let body = json!({"namespace": "grpc-busy", "groupName": "DEFAULT_GROUP", "serviceName": "rated"});
    let mut over = 0;
    for _ in 0..60 {
        let (kind, answer) = conn.unary().call("ServiceQueryRequest", &body).await.expect("an answer");
        assert_eq!(kind, "QueryServiceResponse", "{answer}");
        if answer["errorCode"] == json!(-400) {
            over += 1;
        }
    }
    assert!(over > 0, "60 gRPC requests in a burst stayed within 20 per second");
}
