//! The config center driven by a real third-party client, `nacos-sdk` 0.8.3 `ConfigService`
//! over gRPC (spec §11, §13.6): publish/get/remove, listeners fed by server pushes, namespaces,
//! compare-and-swap, not-found, and gray release by client IP (beta) and by connection labels.
//!
//! Client behaviour this file relies on (read in nacos-sdk 0.8.3 `src/config/{worker,cache}.rs`;
//! see also `shared/testing/clients.md`):
//! - `add_listener` reads the config once (no callback for that first read) and sends its
//!   `ConfigBatchListenRequest` from a spawned task, so when it returns the server may not know
//!   about the listener yet.
//! - A callback fires when a pushed change makes the client's cached MD5 differ from the one last
//!   given to that listener; that MD5 starts empty, so the first notification after
//!   `add_listener` calls the listener even when the content it reads is unchanged (e.g. a gray
//!   variant published for other clients).
//! - On a delete the client is notified, queries, gets "not found" (errorCode 300), logs an error
//!   and fires **no** callback; its cache keeps the deleted content, and `get_config` answers from
//!   that cache while a listener exists. The server's truth is read through a second
//!   `ConfigService` without listeners.
//!
//! The first two are handled by "priming": after adding listeners a test publishes fresh
//! contents until every listener has reported one; from then on the server knows the listeners
//! and every callback means a real change.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nacos_sdk::api::config::{ConfigChangeListener, ConfigResponse, ConfigService, ConfigServiceBuilder};
use nacos_sdk::api::error::Error as SdkError;
use nacos_sdk::api::props::ClientProps;
use serde_json::Value;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::harness::{Server, call, client, eventually, json, md5_hex, metric, patience};

/// Bound for one SDK call (the SDK has its own timeouts; this keeps a hang from stalling the run).
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound for a change to reach a listener (server notify + SDK query + dispatch; normally ~100 ms).
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait to be reasonably sure that no callback is coming.
const QUIET: Duration = Duration::from_millis(1_500);
/// How long one priming round waits for its content to reach every listener.
const PRIME_ROUND: Duration = Duration::from_secs(2);
const GROUP: &str = "DEFAULT_GROUP";

// ---- SDK client -------------------------------------------------------------------------------

/// A `nacos-sdk` config client with its own on-disk cache directory.
pub(crate) struct Sdk {
    config: ConfigService,
    _cache: tempfile::TempDir,
}

impl std::ops::Deref for Sdk {
    type Target = ConfigService;

    fn deref(&self) -> &ConfigService {
        &self.config
    }
}

/// Client settings for ephemeral ports (the SDK would dial HTTP port + 1000 for gRPC);
/// `env_first(false)` keeps `NACOS_CLIENT_*` variables out of the test.
pub(crate) fn props(http_port: u16, grpc_port: u16, cache: &std::path::Path) -> ClientProps {
    ClientProps::new()
        .server_addr(format!("127.0.0.1:{http_port}"))
        .remote_grpc_port(grpc_port)
        .env_first(false)
        .app_name("registry-it")
        .cache_dir(cache)
        .config_load_cache_at_start(false)
}

async fn sdk_with(server: &Server, tweak: impl FnOnce(ClientProps) -> ClientProps) -> Sdk {
    sdk_at(server.http.port(), server.grpc.port(), tweak).await
}

/// A client of whatever serves the Nacos API on these ports (a registry or a sidecar).
pub(crate) async fn sdk_at(http_port: u16, grpc_port: u16, tweak: impl FnOnce(ClientProps) -> ClientProps) -> Sdk {
    let cache = tempfile::tempdir().expect("sdk cache dir");
    let props = tweak(props(http_port, grpc_port, cache.path()));
    let config = bounded("ConfigServiceBuilder::build", ConfigServiceBuilder::new(props).build())
        .await
        .expect("nacos-sdk config client connects");
    Sdk { config, _cache: cache }
}

/// A client in the default namespace.
async fn sdk(server: &Server) -> Sdk {
    sdk_with(server, |p| p).await
}

/// A client in namespace `ns`.
async fn sdk_ns(server: &Server, ns: &str) -> Sdk {
    let ns = ns.to_owned();
    sdk_with(server, move |p| p.namespace(ns)).await
}

/// Awaits an SDK call at most `CALL_TIMEOUT` × patience.
async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(CALL_TIMEOUT * patience(), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not return in time"))
}

async fn sdk_publish(sdk: &ConfigService, data_id: &str, content: &str) {
    let ok = bounded("publish_config", sdk.publish_config(data_id.into(), GROUP.into(), content.into(), None))
        .await
        .unwrap_or_else(|e| panic!("publish_config({data_id}) failed: {e}"));
    assert!(ok);
}

/// `get_config` through the SDK.
async fn sdk_get(sdk: &ConfigService, data_id: &str) -> Result<ConfigResponse, SdkError> {
    bounded("get_config", sdk.get_config(data_id.into(), GROUP.into())).await
}

/// Asserts `get_config` returns `content` (and its MD5).
pub(crate) async fn expect_sdk_content(sdk: &ConfigService, data_id: &str, content: &str) {
    let resp = sdk_get(sdk, data_id).await.unwrap_or_else(|e| panic!("get_config({data_id}) failed: {e}"));
    assert_eq!(resp.content(), content, "{resp}");
    assert_eq!(resp.md5(), &md5_hex(content), "{resp}");
}

/// Asserts `get_config` fails with the SDK's not-found error (server errorCode 300).
async fn expect_sdk_not_found(sdk: &ConfigService, data_id: &str) {
    match sdk_get(sdk, data_id).await {
        Err(SdkError::ConfigNotFound(_)) => {}
        other => panic!("get_config({data_id}) should be ConfigNotFound, got {other:?}"),
    }
}

// ---- HTTP view --------------------------------------------------------------------------------

pub(crate) async fn http_publish(server: &Server, data_id: &str, tenant: &str, content: &str) {
    let (status, body) = call(client().post(server.url("/nacos/v1/cs/configs")).form(&[
        ("dataId", data_id),
        ("group", GROUP),
        ("tenant", tenant),
        ("content", content),
    ]))
    .await;
    assert_eq!((status, body.as_str()), (200, "true"), "HTTP publish {data_id}");
}

async fn http_get(server: &Server, data_id: &str, tenant: &str) -> (u16, String) {
    call(client().get(server.url("/nacos/v1/cs/configs")).query(&[
        ("dataId", data_id),
        ("group", GROUP),
        ("tenant", tenant),
    ]))
    .await
}

async fn http_history_len(server: &Server, data_id: &str) -> usize {
    let (status, body) = call(client().get(server.url("/nacos/v1/cs/history")).query(&[
        ("search", "accurate"),
        ("dataId", data_id),
        ("group", GROUP),
    ]))
    .await;
    assert_eq!(status, 200, "{body}");
    json(&body)["pageItems"].as_array().map_or(0, Vec::len)
}

/// The `clientIp` the SDK's config connections reported at setup (what beta rules match).
async fn sdk_client_ip(server: &Server) -> String {
    let (status, body) = call(client().get(server.url("/nacos/v2/core/loader/current"))).await;
    assert_eq!(status, 200, "{body}");
    let conns = json(&body)["data"].as_object().cloned().unwrap_or_default();
    conns
        .values()
        .find(|c| c["labels"]["module"] == "config")
        .and_then(|c| c["clientIp"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no config connection in {body}"))
}

// ---- listener ---------------------------------------------------------------------------------

/// Forwards every callback into a channel.
struct Collect(UnboundedSender<ConfigResponse>);

impl ConfigChangeListener for Collect {
    fn notify(&self, config_resp: ConfigResponse) {
        let _ = self.0.send(config_resp);
    }
}

/// Adds a collecting listener (call [`prime`] before relying on it).
pub(crate) async fn listen(sdk: &ConfigService, data_id: &str) -> UnboundedReceiver<ConfigResponse> {
    let (tx, rx) = unbounded_channel();
    bounded("add_listener", sdk.add_listener(data_id.into(), GROUP.into(), Arc::new(Collect(tx))))
        .await
        .unwrap_or_else(|e| panic!("add_listener({data_id}) failed: {e}"));
    rx
}

/// Publishes fresh contents over HTTP until every listener in `rxs` has reported the latest one
/// (see the module notes); returns that content, now the config's formal content.
async fn prime(
    server: &Server,
    data_id: &str,
    tenant: &str,
    rxs: &mut [&mut UnboundedReceiver<ConfigResponse>],
) -> String {
    // No head start: a round whose content reaches a listener proves its listen arrived; one
    // that does not is simply followed by the next.
    let rounds = 10 * patience();
    for round in 0..rounds {
        let content = format!("prime-{round}");
        http_publish(server, data_id, tenant, &content).await;
        let deadline = tokio::time::Instant::now() + PRIME_ROUND;
        let mut all = true;
        for rx in rxs.iter_mut() {
            all &= saw_content(rx, &content, deadline).await;
        }
        if all {
            return content;
        }
    }
    panic!("listeners of {data_id} (tenant {tenant:?}) never reported a change in {rounds} rounds")
}

/// Consumes callbacks until one carries `content` (true) or `deadline` passes (false).
async fn saw_content(
    rx: &mut UnboundedReceiver<ConfigResponse>,
    content: &str,
    deadline: tokio::time::Instant,
) -> bool {
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(resp)) if resp.content() == content => return true,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return false,
        }
    }
}

/// The next callback (bounded); panics when none comes.
async fn next_change(rx: &mut UnboundedReceiver<ConfigResponse>, context: &str) -> ConfigResponse {
    match tokio::time::timeout(PUSH_TIMEOUT * patience(), rx.recv()).await {
        Ok(Some(resp)) => resp,
        Ok(None) => panic!("{context}: listener channel closed"),
        Err(_) => panic!("{context}: no callback within {PUSH_TIMEOUT:?}"),
    }
}

/// Asserts the next callback carries `content` (with its MD5).
pub(crate) async fn expect_change(
    rx: &mut UnboundedReceiver<ConfigResponse>,
    content: &str,
    context: &str,
) -> ConfigResponse {
    let resp = next_change(rx, context).await;
    assert_eq!(resp.content(), content, "{context}: {resp}");
    assert_eq!(resp.md5(), &md5_hex(content), "{context}: {resp}");
    resp
}

/// The server notifier's counts: config changes handled, notifications sent.
async fn notifier_counts(server: &Server) -> (u64, u64) {
    let changes = metric(server, "registry_config_changes_notified_total").await;
    (changes, metric(server, "registry_config_notifications_total").await)
}

/// Waits until the server handled a config change after `before` (its own count), then asserts
/// it sent exactly `sent` notifications for it: who was not notified is read from the server,
/// not guessed from a listener that stayed quiet for a while.
async fn expect_notified(server: &Server, before: (u64, u64), sent: u64, context: &str) {
    let after = eventually(PUSH_TIMEOUT, || async {
        let now = notifier_counts(server).await;
        (now.0 > before.0).then_some(now)
    })
    .await
    .unwrap_or_else(|| panic!("{context}: the server never handled the change"));
    assert_eq!(after.1 - before.1, sent, "{context}: notifications sent for the change");
}

/// Asserts no callback arrives for `QUIET`: for what only the client decides (the server
/// notifies every listener of a changed key; the client compares MD5s and ignores deletes), so
/// no server count can show it.
async fn expect_quiet(rx: &mut UnboundedReceiver<ConfigResponse>, context: &str) {
    if let Ok(Some(resp)) = tokio::time::timeout(QUIET, rx.recv()).await {
        panic!("{context}: unexpected callback {resp}");
    }
}

// ---- tests ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn sdk_publish_get_remove_agree_with_http() {
    let server = Server::start();
    let sdk = sdk(&server).await;

    let ok = bounded(
        "publish_config",
        sdk.publish_config("sdk.yaml".into(), GROUP.into(), "a: 1\nname: 订单".into(), Some("yaml".into())),
    )
    .await
    .expect("publish_config");
    assert!(ok);
    let resp = sdk_get(&sdk, "sdk.yaml").await.expect("get_config");
    assert_eq!(resp.content(), "a: 1\nname: 订单");
    assert_eq!(resp.md5(), &md5_hex("a: 1\nname: 订单"));
    assert_eq!(resp.content_type(), "yaml");
    assert_eq!((resp.data_id().as_str(), resp.group().as_str()), ("sdk.yaml", GROUP));

    // The same config over HTTP v1.
    let r = client()
        .get(server.url("/nacos/v1/cs/configs"))
        .query(&[("dataId", "sdk.yaml"), ("group", GROUP)])
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers().get("Config-Type").and_then(|v| v.to_str().ok()), Some("yaml"));
    assert_eq!(r.text().await.expect("body"), "a: 1\nname: 订单");

    // A change over HTTP is what the SDK reads next (no listener, so no client cache).
    http_publish(&server, "sdk.yaml", "", "a: 2").await;
    expect_sdk_content(&sdk, "sdk.yaml", "a: 2").await;

    // Remove through the SDK: gone for HTTP and for the SDK.
    let ok = bounded("remove_config", sdk.remove_config("sdk.yaml".into(), GROUP.into())).await.expect("remove");
    assert!(ok);
    assert_eq!(http_get(&server, "sdk.yaml", "").await, (404, "config data not exist\n".to_owned()));
    expect_sdk_not_found(&sdk, "sdk.yaml").await;
    assert_eq!(http_history_len(&server, "sdk.yaml").await, 3, "I, U, D");
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_get_of_a_missing_config_is_not_found() {
    let server = Server::start();
    let sdk = sdk(&server).await;
    expect_sdk_not_found(&sdk, "never.yaml").await;
    // An HTTP-only config in another namespace is not visible from the default one.
    http_publish(&server, "never.yaml", "dev", "x").await;
    expect_sdk_not_found(&sdk, "never.yaml").await;
    let dev = sdk_ns(&server, "dev").await;
    expect_sdk_content(&dev, "never.yaml", "x").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_listener_hears_publishes_from_another_client_and_http_but_not_deletes() {
    let server = Server::start();
    http_publish(&server, "watched.yaml", "", "v1").await;
    let listener = sdk(&server).await;
    let publisher = sdk(&server).await;
    let truth = sdk(&server).await;
    let mut rx = listen(&listener, "watched.yaml").await;
    prime(&server, "watched.yaml", "", &mut [&mut rx]).await;

    // From a second ConfigService.
    let started = Instant::now();
    sdk_publish(&publisher, "watched.yaml", "v2").await;
    let resp = expect_change(&mut rx, "v2", "publish from a second client").await;
    assert_eq!((resp.data_id().as_str(), resp.group().as_str()), ("watched.yaml", GROUP));
    let latency = started.elapsed();
    assert!(latency < Duration::from_secs(3) * patience(), "change reached the listener after {latency:?}");

    // From HTTP.
    http_publish(&server, "watched.yaml", "", "v3").await;
    expect_change(&mut rx, "v3", "publish over HTTP").await;

    // Same content again: no change, so no notification. A publish of another key (nobody
    // listens to it) follows as a fence: once the server handled that change, it had handled
    // any the republish made, and it sent no notification.
    let before = notifier_counts(&server).await;
    http_publish(&server, "watched.yaml", "", "v3").await;
    http_publish(&server, "fence.yaml", "", "fence").await;
    expect_notified(&server, before, 0, "identical republish, then a fence").await;

    // Delete: nacos-sdk 0.8.3 fires no callback (its query gets "not found" and it only logs),
    // keeps the old content in its listener cache, while a client without listeners sees the
    // server's truth.
    let ok = bounded("remove_config", publisher.remove_config("watched.yaml".into(), GROUP.into()))
        .await
        .expect("remove_config");
    assert!(ok);
    expect_quiet(&mut rx, "delete (nacos-sdk does not call listeners on delete)").await;
    expect_sdk_not_found(&truth, "watched.yaml").await;
    expect_sdk_content(&listener, "watched.yaml", "v3").await;

    // The listener still works after the delete: a new content is delivered.
    http_publish(&server, "watched.yaml", "", "v4").await;
    expect_change(&mut rx, "v4", "republish after delete").await;
    expect_sdk_content(&truth, "watched.yaml", "v4").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_listeners_are_isolated_by_namespace() {
    let server = Server::start();
    http_publish(&server, "iso.yaml", "", "pub-1").await;
    http_publish(&server, "iso.yaml", "dev", "dev-1").await;
    let dev = sdk_ns(&server, "dev").await;
    let public = sdk(&server).await;
    let mut dev_rx = listen(&dev, "iso.yaml").await;
    let mut pub_rx = listen(&public, "iso.yaml").await;
    prime(&server, "iso.yaml", "dev", &mut [&mut dev_rx]).await;
    prime(&server, "iso.yaml", "", &mut [&mut pub_rx]).await;

    // A publish in public reaches the public listener only: one notification, none to dev.
    let before = notifier_counts(&server).await;
    http_publish(&server, "iso.yaml", "", "pub-2").await;
    expect_change(&mut pub_rx, "pub-2", "public listener, public publish").await;
    expect_notified(&server, before, 1, "public publish").await;

    // A publish in dev (through a dev SDK client) reaches the dev listener only.
    let dev_publisher = sdk_ns(&server, "dev").await;
    let before = notifier_counts(&server).await;
    sdk_publish(&dev_publisher, "iso.yaml", "dev-2").await;
    let resp = expect_change(&mut dev_rx, "dev-2", "dev listener, dev publish").await;
    assert_eq!(resp.namespace(), "dev", "{resp}");
    expect_notified(&server, before, 1, "dev publish").await;

    // The server's truth per namespace.
    assert_eq!(http_get(&server, "iso.yaml", "dev").await, (200, "dev-2".to_owned()));
    assert_eq!(http_get(&server, "iso.yaml", "public").await, (200, "pub-2".to_owned()));
    let dev_reader = sdk_ns(&server, "dev").await;
    expect_sdk_content(&dev_reader, "iso.yaml", "dev-2").await;

    // Delete in dev (the dev listener alone is notified; its SDK fires no callback for a
    // delete), then recreate: the dev listener hears the new content.
    let before = notifier_counts(&server).await;
    let ok = bounded("remove_config", dev_publisher.remove_config("iso.yaml".into(), GROUP.into()))
        .await
        .expect("remove_config");
    assert!(ok);
    expect_notified(&server, before, 1, "dev delete").await;
    expect_sdk_not_found(&dev_reader, "iso.yaml").await;
    assert_eq!(http_get(&server, "iso.yaml", "").await, (200, "pub-2".to_owned()));
    let before = notifier_counts(&server).await;
    http_publish(&server, "iso.yaml", "dev", "dev-3").await;
    expect_change(&mut dev_rx, "dev-3", "dev listener after delete and recreate").await;
    expect_notified(&server, before, 1, "dev recreate").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_cas_conflict_is_an_error_and_keeps_the_old_content() {
    let server = Server::start();
    let sdk = sdk(&server).await;
    sdk_publish(&sdk, "cas.yaml", "v1").await;
    let md5_v1 = sdk_get(&sdk, "cas.yaml").await.expect("get").md5().clone();
    assert_eq!(md5_v1, md5_hex("v1"));

    let ok = bounded(
        "publish_config_cas",
        sdk.publish_config_cas("cas.yaml".into(), GROUP.into(), "v2".into(), None, md5_v1.clone()),
    )
    .await
    .expect("CAS with the current md5 succeeds");
    assert!(ok);
    expect_sdk_content(&sdk, "cas.yaml", "v2").await;

    let stale = bounded(
        "publish_config_cas",
        sdk.publish_config_cas("cas.yaml".into(), GROUP.into(), "v3".into(), None, md5_v1),
    )
    .await;
    assert!(stale.is_err(), "CAS with a stale md5 must fail, got {stale:?}");
    expect_sdk_content(&sdk, "cas.yaml", "v2").await;
    assert_eq!(http_get(&server, "cas.yaml", "").await, (200, "v2".to_owned()));
    assert_eq!(http_history_len(&server, "cas.yaml").await, 2, "a failed CAS adds no history");
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_beta_by_client_ip_is_served_and_pushed_to_listed_clients() {
    let server = Server::start();
    http_publish(&server, "beta.yaml", "", "formal-0").await;
    let publisher = sdk(&server).await;
    let reader = sdk(&server).await;
    let listener = sdk(&server).await;
    let mut rx = listen(&listener, "beta.yaml").await;
    let ip = sdk_client_ip(&server).await;
    let formal = prime(&server, "beta.yaml", "", &mut [&mut rx]).await;

    // A beta for another IP: SDK clients keep the formal content; no callback.
    let ok = bounded(
        "publish_config_beta",
        publisher.publish_config_beta("beta.yaml".into(), GROUP.into(), "beta-other".into(), None, "10.9.9.9".into()),
    )
    .await
    .expect("publish_config_beta");
    assert!(ok);
    expect_sdk_content(&reader, "beta.yaml", &formal).await;
    expect_quiet(&mut rx, "beta for another IP").await;
    let (status, body) = call(client().get(server.url("/nacos/v1/cs/configs")).query(&[
        ("dataId", "beta.yaml"),
        ("group", GROUP),
        ("beta", "true"),
    ]))
    .await;
    assert_eq!(status, 200, "{body}");
    let beta: Value = json(&body);
    assert_eq!(beta["data"]["betaIps"], "10.9.9.9", "{body}");
    assert_eq!(beta["data"]["content"], "beta-other", "{body}");

    // A beta for the SDK's reported IP: served to it and pushed to its listener.
    let ok = bounded(
        "publish_config_beta",
        publisher.publish_config_beta("beta.yaml".into(), GROUP.into(), "beta-sdk".into(), None, ip.clone()),
    )
    .await
    .expect("publish_config_beta");
    assert!(ok);
    expect_change(&mut rx, "beta-sdk", "beta for the client's IP").await;
    expect_sdk_content(&reader, "beta.yaml", "beta-sdk").await;
    // HTTP callers from 127.0.0.1 see the beta only if that is the IP the SDK reported.
    let want_http = if ip == "127.0.0.1" { "beta-sdk" } else { formal.as_str() };
    assert_eq!(http_get(&server, "beta.yaml", "").await, (200, want_http.to_owned()), "SDK reported {ip}");

    // Stopping the beta pushes the formal content back.
    let (status, body) = call(client().delete(server.url("/nacos/v1/cs/configs")).query(&[
        ("dataId", "beta.yaml"),
        ("group", GROUP),
        ("beta", "true"),
    ]))
    .await;
    assert_eq!(status, 200, "{body}");
    expect_change(&mut rx, &formal, "beta stopped").await;
    expect_sdk_content(&reader, "beta.yaml", &formal).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_label_gray_follows_connection_labels() {
    let server = Server::start();
    http_publish(&server, "lbl.yaml", "", "formal-0").await;
    let canary_labels = || HashMap::from([("env".to_owned(), "canary".to_owned())]);
    let canary = sdk_with(&server, |p| p.labels(canary_labels())).await;
    let canary_reader = sdk_with(&server, |p| p.labels(canary_labels())).await;
    let plain = sdk(&server).await;
    let plain_reader = sdk(&server).await;
    let mut canary_rx = listen(&canary, "lbl.yaml").await;
    let mut plain_rx = listen(&plain, "lbl.yaml").await;
    let formal = prime(&server, "lbl.yaml", "", &mut [&mut canary_rx, &mut plain_rx]).await;

    // Publish a label gray variant through the SDK's extra parameters (additionMap).
    let ok = bounded(
        "publish_config_param",
        plain.publish_config_param(
            "lbl.yaml".into(),
            GROUP.into(),
            "gray".into(),
            None,
            None,
            HashMap::from([("grayLabels".to_owned(), "env=canary".to_owned())]),
        ),
    )
    .await
    .expect("publish_config_param with grayLabels");
    assert!(ok);
    expect_change(&mut canary_rx, "gray", "canary listener, gray published").await;
    expect_quiet(&mut plain_rx, "plain listener, gray published").await;
    expect_sdk_content(&canary_reader, "lbl.yaml", "gray").await;
    expect_sdk_content(&plain_reader, "lbl.yaml", &formal).await;

    // A formal update reaches the plain client; the canary client stays on gray.
    http_publish(&server, "lbl.yaml", "", "formal-2").await;
    expect_change(&mut plain_rx, "formal-2", "plain listener, formal update").await;
    expect_quiet(&mut canary_rx, "canary listener, formal update").await;
    expect_sdk_content(&canary_reader, "lbl.yaml", "gray").await;

    // Stopping the label rule (v2) pushes the formal content to the canary client.
    let (status, body) = call(client().delete(server.url("/nacos/v2/cs/config/gray")).query(&[
        ("dataId", "lbl.yaml"),
        ("group", GROUP),
        ("kind", "labels"),
    ]))
    .await;
    assert_eq!(status, 200, "{body}");
    expect_change(&mut canary_rx, "formal-2", "canary listener, gray stopped").await;
    expect_sdk_content(&canary_reader, "lbl.yaml", "formal-2").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_namespace_spelled_public_is_the_default_namespace() {
    let server = Server::start();
    http_publish(&server, "pub.yaml", "", "v1").await;
    let public = sdk_ns(&server, "public").await;
    expect_sdk_content(&public, "pub.yaml", "v1").await;

    // A change published with tenant "" reaches a listener that spelled the namespace `public`
    // (the server echoes the spelling the client listened with, so the SDK finds its cache entry).
    let mut rx = listen(&public, "pub.yaml").await;
    prime(&server, "pub.yaml", "", &mut [&mut rx]).await;
    http_publish(&server, "pub.yaml", "", "v2").await;
    let resp = expect_change(&mut rx, "v2", "`public` listener, publish with tenant \"\"").await;
    assert_eq!(resp.namespace(), "public", "{resp}");

    // And the other way round: an SDK publish in `public` is the default namespace's config.
    sdk_publish(&public, "pub2.yaml", "p").await;
    assert_eq!(http_get(&server, "pub2.yaml", "").await, (200, "p".to_owned()));
    let default_ns = sdk(&server).await;
    expect_sdk_content(&default_ns, "pub2.yaml", "p").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_refused_publishes_are_errors_and_store_nothing() {
    let server = Server::start_with_config(Some("[configs]\nmax_content_bytes = 1024\n"));
    let sdk = sdk(&server).await;
    let big = "x".repeat(2048);
    let too_big = bounded("publish_config", sdk.publish_config("big".into(), GROUP.into(), big, None)).await;
    assert!(too_big.is_err(), "2 KiB over a 1 KiB limit must fail, got {too_big:?}");
    assert_eq!(http_get(&server, "big", "").await.0, 404);
    let bad_id = bounded("publish_config", sdk.publish_config("a/b".into(), GROUP.into(), "x".into(), None)).await;
    assert!(bad_id.is_err(), "dataId a/b must be refused, got {bad_id:?}");
    let blank = bounded("publish_config", sdk.publish_config("blank".into(), GROUP.into(), " \n ".into(), None)).await;
    assert!(blank.is_err(), "blank content must be refused, got {blank:?}");
    assert_eq!(http_get(&server, "blank", "").await.0, 404);
    // The connection is still usable.
    sdk_publish(&sdk, "fine", &"y".repeat(1024)).await;
    expect_sdk_content(&sdk, "fine", &"y".repeat(1024)).await;
}
