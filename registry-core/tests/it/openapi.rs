//! `GET /nacos/openapi.json` against the server that serves it: every documented operation is
//! routed (the router answers neither its 404 nor 405), every path the rest of this suite calls
//! is documented, and the access the document declares is the access the server enforces.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::auth::auth_config;
use crate::harness::{Server, call, client, json};

/// Every (method, path) of the document, `{file}`-style segments filled in.
fn operations(doc: &Value) -> Vec<(reqwest::Method, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("method");
            out.push((method, path.replace("{file}", "app.js"), op.clone()));
        }
    }
    out
}

/// A value each required parameter of `op` accepts, as a query string (the server reads query
/// and form alike).
fn required_params(op: &Value) -> Vec<(String, String)> {
    let sample = |schema: &Value| match (schema["type"].as_str(), schema["format"].as_str()) {
        (Some("integer" | "number"), _) => "1",
        (Some("boolean"), _) => "true",
        (_, Some("ipv4")) => "10.0.0.1",
        _ => "x1",
    };
    let mut out = Vec::new();
    for p in op["parameters"].as_array().into_iter().flatten() {
        if p["required"] == true && p["in"] == "query" {
            out.push((p["name"].as_str().unwrap_or_default().to_owned(), sample(&p["schema"]).to_owned()));
        }
    }
    let form = &op["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"];
    for name in form["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        out.push((name.to_owned(), sample(&form["properties"][name]).to_owned()));
    }
    out
}

async fn document(server: &Server) -> Value {
    let (status, body) = call(client().get(server.url("/nacos/openapi.json"))).await;
    assert_eq!(status, 200, "{body}");
    json(&body)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_operation_is_routed() {
    let server = Server::start();
    let doc = document(&server).await;
    assert_eq!(doc["openapi"], "3.0.3");
    let ops = operations(&doc);
    assert!(ops.len() > 100, "{} operations", ops.len());
    for (method, path, _) in &ops {
        // A parameterless request: handlers answer 2xx/4xx with a body; only the router's own
        // miss is an empty 404 (unknown path) or a 405 (known path, other method).
        let answer = client().request(method.clone(), server.url(path)).send().await.expect("answer");
        let status = answer.status().as_u16();
        let body = answer.text().await.unwrap_or_default();
        assert_ne!(status, 405, "{method} {path} is documented but not routed");
        assert!(status != 404 || !body.is_empty(), "{method} {path} is documented but not routed");
    }
}

/// Paths the suite calls to see the answer to an unknown path.
const UNROUTED: &[&str] = &["/nacos/v1/ns/nope"];

#[tokio::test(flavor = "multi_thread")]
async fn every_path_the_suite_calls_is_documented() {
    let server = Server::start();
    let doc = document(&server).await;
    let documented: BTreeSet<&str> = doc["paths"].as_object().expect("paths").keys().map(String::as_str).collect();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it");
    let mut called = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("tests/it") {
        let source = std::fs::read_to_string(entry.expect("entry").path()).unwrap_or_default();
        for literal in source.split('"').skip(1).step_by(2) {
            let path = literal.split('?').next().unwrap_or_default();
            if (path.starts_with("/nacos/v") || path == "/metrics") && !path.contains('{') && !path.ends_with('/') {
                called.insert(path.to_owned());
            }
        }
    }
    assert!(called.len() > 30, "{called:?}");
    for unrouted in UNROUTED {
        assert!(called.remove(*unrouted), "{unrouted} is no longer called");
        assert!(!documented.contains(unrouted), "{unrouted} is documented");
    }
    let missing: Vec<&String> = called.iter().filter(|p| !documented.contains(p.as_str())).collect();
    assert!(missing.is_empty(), "called by the suite but not documented: {missing:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn declared_access_is_enforced() {
    let server = Server::start_with_config(Some(&auth_config("")));
    let doc = document(&server).await;
    for (method, path, op) in operations(&doc) {
        let security = op["security"].as_array().expect("security");
        let request = client().request(method.clone(), server.url(&path)).query(&required_params(&op));
        let answer = request.send().await.expect("answer");
        let status = answer.status().as_u16();
        if path.ends_with("/login") {
            continue; // open, and refuses the missing username and password by design
        }
        if security.is_empty() {
            assert_ne!(status, 403, "{method} {path} is documented open but refuses");
        } else {
            assert_eq!(status, 403, "{method} {path} is documented as needing credentials but answers without");
        }
    }
}
