//! The SDK gRPC channel driven message by message with the generated tonic client, independent
//! of any SDK: handshake and connection identity (spec §9.4, §16.2–§16.4), error responses and
//! robustness, naming requests and pushes (§10, §13.5), connection liveness (§9.7, §13.2) and a
//! stalled subscriber's bounded cost.
//!
//! Unary calls and the bi-stream of one simulated client share ONE tonic `Channel`, i.e. one
//! HTTP/2 connection: the server identifies a client by its TCP transport.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use registry_proto::Any;
use registry_proto::nacos::Payload;
use registry_proto::nacos::bi_request_stream_client::BiRequestStreamClient;
use registry_proto::nacos::request_client::RequestClient;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};

pub(crate) use registry_proto::wire::frame::{payload, raw_payload};

use crate::harness::{Server, call, client, eventually, json, metric, patience};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// `secs` seconds, stretched by `IT_PATIENCE`.
pub(crate) fn wait(secs: u64) -> Duration {
    Duration::from_secs(secs) * patience()
}

/// One HTTP/2 connection to the server's gRPC port.
async fn connect(server: &Server) -> Channel {
    connect_with(server, |e| e).await
}

/// One HTTP/2 connection, with endpoint settings adjusted by `tune`.
async fn connect_with(server: &Server, tune: impl FnOnce(Endpoint) -> Endpoint) -> Channel {
    connect_addr_with(server.grpc, tune).await
}

/// One HTTP/2 connection to a gRPC address, with endpoint settings adjusted by `tune`.
pub(crate) async fn connect_addr_with(addr: SocketAddr, tune: impl FnOnce(Endpoint) -> Endpoint) -> Channel {
    let endpoint = Endpoint::from_shared(format!("http://{addr}")).expect("endpoint uri").connect_timeout(wait(10));
    timeout(wait(15), tune(endpoint).connect()).await.expect("connected in time").expect("grpc connect")
}

/// The type and JSON body of a payload.
fn decode(p: &Payload) -> (String, Value) {
    let kind = p.metadata.as_ref().map(|m| m.r#type.clone()).unwrap_or_default();
    let body = p.body.as_ref().map(|b| b.value.as_slice()).unwrap_or_default();
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body)
            .unwrap_or_else(|e| panic!("{kind} body is not JSON ({e}): {}", String::from_utf8_lossy(body)))
    };
    (kind, value)
}

/// A unary `/Request/request` call; the transport status on failure.
pub(crate) async fn try_unary(channel: &Channel, request: Payload) -> Result<(String, Value), Status> {
    let mut client = RequestClient::new(channel.clone());
    let response = timeout(wait(20), client.request(request)).await.expect("unary call answered in time")?;
    Ok(decode(response.get_ref()))
}

/// A unary call that must get a payload back (typed response or `ErrorResponse`).
async fn unary(channel: &Channel, kind: &str, body: Value) -> (String, Value) {
    try_unary(channel, payload(kind, &body))
        .await
        .unwrap_or_else(|s| panic!("{kind} failed with a transport status instead of a payload: {s:?}"))
}

/// Asserts the success triple every response carries (spec §9.3).
fn assert_success(kind: &str, body: &Value) {
    assert_eq!(
        (&body["resultCode"], &body["errorCode"], &body["success"]),
        (&json!(200), &json!(0), &json!(true)),
        "{kind} is not a success: {body}"
    );
}

/// Asserts an `ErrorResponse` with `errorCode` = `code`.
fn assert_error(kind: &str, body: &Value, code: i64) {
    assert_eq!(kind, "ErrorResponse", "expected an ErrorResponse, got {kind}: {body}");
    assert_eq!(body["errorCode"], json!(code), "{body}");
    assert_eq!(body["success"], json!(false), "{body}");
    assert_ne!(body["resultCode"], json!(200), "{body}");
}

/// The setup a naming SDK sends, negotiating abilities.
pub(crate) fn setup_body() -> Value {
    json!({ "clientVersion": "raw-test", "labels": { "source": "sdk", "module": "naming" }, "abilityTable": {} })
}

/// The simulated client's side of `/BiRequestStream/requestBiStream`.
pub(crate) struct RawStream {
    /// Client → server messages (kept open for the stream's life).
    tx: mpsc::Sender<Payload>,
    /// Server → client messages.
    inbound: Streaming<Payload>,
}

/// Opens the bi-stream on `channel` and sends `setup` as its first message.
pub(crate) async fn open_stream(channel: &Channel, setup: Value) -> RawStream {
    open_stream_with(channel, payload("ConnectionSetupRequest", &setup)).await
}

/// Opens the bi-stream on `channel` with `first` as its first message.
async fn open_stream_with(channel: &Channel, first: Payload) -> RawStream {
    let (tx, rx) = mpsc::channel(64);
    tx.send(first).await.expect("queue the first message");
    let mut client = BiRequestStreamClient::new(channel.clone());
    let response = timeout(wait(15), client.request_bi_stream(ReceiverStream::new(rx)))
        .await
        .expect("bi-stream opened in time")
        .expect("bi-stream opened");
    RawStream { tx, inbound: response.into_inner() }
}

/// A channel with a registered connection (stream open, setup sent).
pub(crate) async fn registered(server: &Server) -> (Channel, RawStream) {
    let channel = connect(server).await;
    let stream = open_stream(&channel, setup_body()).await;
    (channel, stream)
}

impl RawStream {
    /// The next message, `None` when nothing arrives within `within`; panics if the stream ends.
    async fn recv(&mut self, within: Duration) -> Option<(String, Value)> {
        match timeout(within, self.inbound.message()).await {
            Err(_) => None,
            Ok(Ok(Some(p))) => Some(decode(&p)),
            Ok(Ok(None)) => panic!("the server ended the stream"),
            Ok(Err(status)) => panic!("the stream failed: {status:?}"),
        }
    }

    /// Sends a client → server message on the stream.
    async fn send(&self, kind: &str, body: &Value) {
        self.tx.send(payload(kind, body)).await.expect("stream still open");
    }

    /// Reads `NotifySubscriberRequest`s, acknowledging each, until one whose `serviceInfo`
    /// satisfies `want`; returns that push.
    async fn push_matching(&mut self, within: Duration, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some((kind, body)) = self.recv(left).await else {
                panic!("no matching push within {within:?}; pushes seen: {seen:#?}")
            };
            if kind != "NotifySubscriberRequest" {
                continue;
            }
            let id = body["requestId"].clone();
            self.send("NotifySubscriberResponse", &json!({ "requestId": id, "resultCode": 200, "errorCode": 0 })).await;
            if want(&body["serviceInfo"]) {
                return body;
            }
            seen.push(body);
        }
    }
}

/// Sorted IPs of a ServiceInfo's `hosts` (which must be present).
fn ips(info: &Value) -> Vec<String> {
    let hosts = info["hosts"].as_array().unwrap_or_else(|| panic!("serviceInfo without a hosts array: {info}"));
    let mut ips: Vec<String> = hosts.iter().map(|h| h["ip"].as_str().unwrap_or_default().to_owned()).collect();
    ips.sort();
    ips
}

/// An `InstanceRequest` body for the default namespace and group.
fn instance_request(service: &str, kind: &str, ip: &str, metadata: Value) -> Value {
    json!({
        "namespace": "public", "serviceName": service, "groupName": "DEFAULT_GROUP", "type": kind,
        "module": "naming", "headers": {},
        "instance": {
            "ip": ip, "port": 80, "weight": 1.0, "healthy": true, "enabled": true, "ephemeral": true,
            "clusterName": "DEFAULT", "metadata": metadata
        }
    })
}

pub(crate) fn register(service: &str, ip: &str) -> Value {
    instance_request(service, "registerInstance", ip, json!({}))
}

pub(crate) fn deregister(service: &str, ip: &str) -> Value {
    instance_request(service, "deregisterInstance", ip, json!({}))
}

/// Registers and asserts the typed success response echoing the operation.
pub(crate) async fn must_instance(channel: &Channel, body: Value) {
    let op = body["type"].clone();
    let (kind, resp) = unary(channel, "InstanceRequest", body).await;
    assert_eq!(kind, "InstanceResponse", "{resp}");
    assert_success(&kind, &resp);
    assert_eq!(resp["type"], op, "InstanceResponse must echo the operation: {resp}");
}

fn naming_base(service: &str) -> Value {
    json!({ "namespace": "public", "serviceName": service, "groupName": "DEFAULT_GROUP", "module": "naming", "headers": {} })
}

/// `ServiceQueryRequest` on `channel`; the typed response.
async fn query(channel: &Channel, service: &str) -> (String, Value) {
    let mut body = naming_base(service);
    body["cluster"] = json!("");
    body["healthyOnly"] = json!(false);
    unary(channel, "ServiceQueryRequest", body).await
}

/// Sorted IPs the HTTP v1 view shows for `service` (default group).
pub(crate) async fn http_ips(server: &Server, service: &str) -> Vec<String> {
    let (status, body) =
        call(client().get(server.url("/nacos/v1/ns/instance/list")).query(&[("serviceName", service)])).await;
    assert_eq!(status, 200, "{body}");
    ips(&json(&body))
}

/// `HealthCheckRequest` on `channel` gets `HealthCheckResponse`.
async fn assert_healthy_connection(channel: &Channel) {
    let (kind, body) = unary(channel, "HealthCheckRequest", json!({ "module": "internal", "headers": {} })).await;
    assert_eq!(kind, "HealthCheckResponse", "{body}");
    assert_success(&kind, &body);
}

async fn assert_liveness(server: &Server) {
    let (status, body) = call(client().get(server.url("/nacos/v1/console/health/liveness"))).await;
    assert_eq!(status, 200, "liveness: {body}");
}

/// The server's resident set size in KiB.
fn rss_kib(server: &Server) -> u64 {
    let pid = server.pid().expect("server running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

// ---------------------------------------------------------------------------------------------
// Handshake
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn server_check_answers_before_setup_with_the_transports_connection_id() {
    let server = Server::start();
    let channel = connect(&server).await;
    let (kind, body) = unary(&channel, "ServerCheckRequest", json!({ "module": "internal", "headers": {} })).await;
    assert_eq!(kind, "ServerCheckResponse", "{body}");
    assert_success(&kind, &body);
    let id = body["connectionId"].as_str().unwrap_or_default().to_owned();
    assert!(!id.is_empty(), "connectionId missing: {body}");
    assert_eq!(body["supportAbilityNegotiation"], json!(true), "{body}");

    // The id belongs to the transport: same channel, same id; another connection, another id.
    let (_, again) = unary(&channel, "ServerCheckRequest", json!({})).await;
    assert_eq!(again["connectionId"], json!(id), "same HTTP/2 connection, same id");
    let other = connect(&server).await;
    let (_, third) = unary(&other, "ServerCheckRequest", json!({})).await;
    assert_ne!(third["connectionId"], json!(id), "a new TCP connection gets a new id: {third}");

    // It still answers after the connection registered.
    let _stream = open_stream(&channel, setup_body()).await;
    let (kind, after) = unary(&channel, "ServerCheckRequest", json!({})).await;
    assert_eq!(kind, "ServerCheckResponse", "{after}");
    assert_eq!(after["connectionId"], json!(id));
}

#[tokio::test(flavor = "multi_thread")]
async fn naming_request_before_setup_is_301_and_after_setup_is_answered() {
    let server = Server::start();
    let channel = connect(&server).await;
    let (kind, body) = query(&channel, "raw-query").await;
    assert_error(&kind, &body, 301);

    let _stream = open_stream(&channel, setup_body()).await;
    let (kind, body) = query(&channel, "raw-query").await;
    assert_eq!(kind, "QueryServiceResponse", "{body}");
    assert_success(&kind, &body);
    let info = &body["serviceInfo"];
    assert_eq!(info["hosts"], json!([]), "hosts must be present and empty: {body}");
    assert_eq!(info["name"], json!("raw-query"), "gRPC ServiceInfo name is bare: {body}");
    assert_eq!(info["groupName"], json!("DEFAULT_GROUP"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn setup_with_ability_table_is_answered_by_setup_ack_on_the_stream() {
    let server = Server::start();
    let channel = connect(&server).await;
    let (_, check) = unary(&channel, "ServerCheckRequest", json!({})).await;
    assert_eq!(check["supportAbilityNegotiation"], json!(true), "{check}");
    let mut stream = open_stream(&channel, setup_body()).await;
    // Java/Python clients abandon the connection if this does not arrive within 5 s (spec §16.3).
    let (kind, body) = stream.recv(Duration::from_secs(5)).await.expect("a message within 5 s of the setup");
    assert_eq!(kind, "SetupAckRequest", "the first server message must be the SetupAck: {body}");
    assert!(body["abilityTable"].is_object(), "SetupAckRequest carries an abilityTable: {body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_not_starting_with_setup_gets_an_error_and_stays_unregistered() {
    let server = Server::start();
    let channel = connect(&server).await;
    // The stream must open with ConnectionSetupRequest; here it opens with something else.
    let first = payload("HealthCheckRequest", &json!({ "module": "internal", "headers": {} }));
    let mut stream = open_stream_with(&channel, first).await;
    let (kind, body) = stream.recv(wait(5)).await.expect("an answer to a stream without setup");
    assert_error(&kind, &body, 301);
    let (kind, body) = query(&channel, "raw-unregistered").await;
    assert_error(&kind, &body, 301);
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_error_responses_and_the_connection_survives() {
    let server = Server::start();
    let channel = connect(&server).await;

    // Handler lookup comes before the registration check (spec §9.4 step 6).
    let (kind, body) = unary(&channel, "NoSuchRequest", json!({})).await;
    assert_error(&kind, &body, 302);

    let _stream = open_stream(&channel, setup_body()).await;
    assert_healthy_connection(&channel).await;

    let (kind, body) = unary(&channel, "NoSuchRequest", json!({})).await;
    assert_error(&kind, &body, 302);
    assert_healthy_connection(&channel).await;

    let malformed = raw_payload("InstanceRequest", b"{\"serviceName\": \"x\", \"instance\": {".to_vec());
    let (kind, body) = try_unary(&channel, malformed).await.expect("malformed body answered with a payload");
    assert_error(&kind, &body, 502);
    assert_healthy_connection(&channel).await;

    let not_utf8 = raw_payload("ServiceQueryRequest", vec![0xff, 0xfe, 0x00, 0x7b]);
    let (kind, body) = try_unary(&channel, not_utf8).await.expect("garbage body answered with a payload");
    assert_error(&kind, &body, 502);
    assert_healthy_connection(&channel).await;

    let no_metadata = Payload { metadata: None, body: Some(Any { type_url: String::new(), value: b"{}".to_vec() }) };
    let (kind, body) = try_unary(&channel, no_metadata).await.expect("metadata-less payload answered with a payload");
    assert_eq!(kind, "ErrorResponse", "{body}");
    assert_eq!(body["success"], json!(false), "{body}");
    assert_ne!(body["errorCode"], json!(0), "{body}");
    assert_healthy_connection(&channel).await;

    let empty = Payload::default();
    let (kind, body) = try_unary(&channel, empty).await.expect("empty payload answered with a payload");
    assert_eq!(kind, "ErrorResponse", "{body}");
    assert_healthy_connection(&channel).await;

    assert_liveness(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_message_is_refused_with_a_status_and_the_server_survives() {
    let server = Server::start();
    let (channel, _stream) = registered(&server).await;
    let pad = "x".repeat(11 * 1024 * 1024);
    let big = instance_request("raw-big", "registerInstance", "10.9.9.9", json!({ "pad": pad }));
    let result = try_unary(&channel, payload("InstanceRequest", &big)).await;
    let status = result.expect_err("an 11 MiB message must be refused (limit 10 MiB)");
    eprintln!("oversized request refused with {:?}: {}", status.code(), status.message());
    assert!(
        matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange),
        "expected ResourceExhausted/OutOfRange, got {status:?}"
    );

    let fresh = connect(&server).await;
    let (kind, body) = unary(&fresh, "ServerCheckRequest", json!({})).await;
    assert_eq!(kind, "ServerCheckResponse", "{body}");
    assert_liveness(&server).await;
    assert!(http_ips(&server, "raw-big").await.is_empty(), "the refused registration must not be applied");
}

// ---------------------------------------------------------------------------------------------
// Naming over raw gRPC
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn register_replaces_per_connection_and_subscribers_get_acked_pushes_until_disconnect() {
    let server = Server::start();
    let (a, a_stream) = registered(&server).await;

    must_instance(&a, register("raw", "10.0.0.1")).await;
    assert_eq!(http_ips(&server, "raw").await, ["10.0.0.1"]);

    // One publication per (connection, service): a second register replaces the first.
    must_instance(&a, register("raw", "10.0.0.2")).await;
    let (kind, body) = query(&a, "raw").await;
    assert_eq!(kind, "QueryServiceResponse", "{body}");
    assert_eq!(ips(&body["serviceInfo"]), ["10.0.0.2"], "{body}");
    assert_eq!(http_ips(&server, "raw").await, ["10.0.0.2"]);

    // A second connection subscribes: it gets the current list, then pushes.
    let (b, mut b_stream) = registered(&server).await;
    let mut sub = naming_base("raw");
    sub["subscribe"] = json!(true);
    sub["clusters"] = json!("");
    let (kind, body) = unary(&b, "SubscribeServiceRequest", sub).await;
    assert_eq!(kind, "SubscribeServiceResponse", "{body}");
    assert_success(&kind, &body);
    assert_eq!(body["serviceInfo"]["name"], json!("raw"), "{body}");
    assert_eq!(body["serviceInfo"]["groupName"], json!("DEFAULT_GROUP"), "{body}");
    assert_eq!(ips(&body["serviceInfo"]), ["10.0.0.2"], "{body}");

    let push = b_stream.push_matching(wait(10), |i| ips(i) == ["10.0.0.2"]).await;
    assert!(push["requestId"].as_str().is_some_and(|s| !s.is_empty()), "push needs a requestId: {push}");
    assert_eq!(push["serviceInfo"]["name"], json!("raw"), "pushed name must be bare: {push}");
    assert_eq!(push["serviceInfo"]["groupName"], json!("DEFAULT_GROUP"), "{push}");

    must_instance(&a, register("raw", "10.0.0.3")).await;
    let push = b_stream.push_matching(wait(10), |i| ips(i) == ["10.0.0.3"]).await;
    assert_eq!(push["serviceInfo"]["name"], json!("raw"), "{push}");

    must_instance(&a, deregister("raw", "10.0.0.3")).await;
    let push = b_stream.push_matching(wait(10), |i| ips(i).is_empty()).await;
    assert_eq!(push["serviceInfo"]["hosts"], json!([]), "an empty push still carries hosts: {push}");

    must_instance(&a, register("raw", "10.0.0.4")).await;
    b_stream.push_matching(wait(10), |i| ips(i) == ["10.0.0.4"]).await;

    // The acks reached the push engine: each of the four pushes above was the newest for the
    // service when acknowledged (an older push superseded in the same flush is not counted).
    let acked = 4;
    let ack_url = server.url("/nacos/v1/ns/operator/push/state");
    let state = eventually(wait(10), || async {
        let (status, body) = call(client().get(&ack_url)).await;
        let v = json(&body);
        (status == 200 && v["succeed"].as_u64().unwrap_or(0) >= acked && v["failed"] == json!(0)).then_some(v)
    })
    .await;
    assert!(state.is_some(), "push/state never counted our {acked} acks: {}", call(client().get(&ack_url)).await.1);

    // Closing the first client's connection removes its instance and pushes the empty list.
    let before = connection_count(&server).await;
    assert_eq!(before, 2, "both clients are connected");
    drop(a_stream);
    drop(a);
    let push = b_stream.push_matching(wait(15), |i| ips(i).is_empty()).await;
    assert_eq!(push["serviceInfo"]["hosts"], json!([]), "{push}");
    assert!(http_ips(&server, "raw").await.is_empty());
    // The server forgot the closed connection (its admin view), and only that one.
    let after =
        eventually(wait(10), || async { Some(connection_count(&server).await).filter(|&n| n == before - 1) }).await;
    assert_eq!(after, Some(before - 1), "the closed connection is still listed");
    assert_healthy_connection(&b).await;
}

/// How many SDK connections the server's admin API lists.
async fn connection_count(server: &Server) -> usize {
    let (status, body) = call(client().get(server.url("/nacos/v2/core/loader/current"))).await;
    assert_eq!(status, 200, "{body}");
    json(&body)["data"].as_object().map_or(0, serde_json::Map::len)
}

// ---------------------------------------------------------------------------------------------
// Liveness
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn client_detection_keeps_answering_connections_and_drops_silent_ones() {
    let server = Server::start_with_config(Some("[grpc]\nidle_detect_after_ms = 500\ndetect_timeout_ms = 500\n"));
    let (alive, alive_stream) = registered(&server).await;
    let (silent, silent_stream) = registered(&server).await;
    must_instance(&alive, register("detect", "10.0.1.1")).await;
    must_instance(&silent, register("detect", "10.0.1.2")).await;

    // The answering client replies to every probe on its stream, echoing the requestId.
    let probes_answered = Arc::new(AtomicUsize::new(0));
    let answered = Arc::clone(&probes_answered);
    let answerer = tokio::spawn(async move {
        let mut s = alive_stream;
        while let Ok(Some(p)) = s.inbound.message().await {
            let (kind, body) = decode(&p);
            if kind == "ClientDetectionRequest" {
                let reply =
                    json!({ "requestId": body["requestId"], "resultCode": 200, "errorCode": 0, "success": true });
                if s.tx.send(payload("ClientDetectionResponse", &reply)).await.is_err() {
                    break;
                }
                answered.fetch_add(1, Ordering::Relaxed);
            }
        }
        s
    });
    // The silent client reads its stream but never sends anything.
    let silent_seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = Arc::clone(&silent_seen);
    let reader = tokio::spawn(async move {
        let mut s = silent_stream;
        while let Ok(Some(p)) = s.inbound.message().await {
            seen.lock().unwrap().push(decode(&p).0);
        }
        s
    });

    let gone =
        eventually(wait(10), || async { (http_ips(&server, "detect").await == ["10.0.1.1"]).then_some(()) }).await;
    assert!(
        gone.is_some(),
        "the silent connection's instance was not removed: {:?}",
        http_ips(&server, "detect").await
    );
    assert!(
        silent_seen.lock().unwrap().iter().any(|k| k == "ClientDetectionRequest"),
        "the silent client should have been probed: {:?}",
        silent_seen.lock().unwrap()
    );

    // The answering client keeps its instance through three more probe rounds: counted by the
    // probes it answered, not by elapsed time, and checked at every poll and after the last.
    let probes_before = probes_answered.load(Ordering::Relaxed);
    let probed = eventually(wait(10), || async {
        assert_eq!(http_ips(&server, "detect").await, ["10.0.1.1"], "the answering client lost its instance");
        (probes_answered.load(Ordering::Relaxed) - probes_before >= 3).then_some(())
    })
    .await;
    assert!(probed.is_some(), "the answering client should have been probed repeatedly");
    assert_eq!(http_ips(&server, "detect").await, ["10.0.1.1"], "the answering client lost its instance");
    assert_healthy_connection(&alive).await;

    // The evicted connection learns it on its next request (spec §9.6: HealthCheck → 301).
    let (kind, body) = unary(&silent, "HealthCheckRequest", json!({})).await;
    assert_error(&kind, &body, 301);

    answerer.abort();
    reader.abort();
}

// ---------------------------------------------------------------------------------------------
// Backpressure
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn stalled_subscriber_is_disconnected_and_server_memory_stays_bounded() {
    let server = Server::start_with_config(Some("[grpc]\noutbound_queue = 16\n\n[push]\ndebounce_ms = 0\n"));
    let service = "flood";

    // The stalled client: a small HTTP/2 window, subscribes, then never polls its stream.
    let stalled = connect_with(&server, |e| e.initial_stream_window_size(65_535)).await;
    let stalled_stream = open_stream(&stalled, setup_body()).await;
    let mut sub = naming_base(service);
    sub["subscribe"] = json!(true);
    let (kind, body) = unary(&stalled, "SubscribeServiceRequest", sub).await;
    assert_eq!(kind, "SubscribeServiceResponse", "{body}");

    let (writer, _writer_stream) = registered(&server).await;
    let baseline = rss_kib(&server);
    let dropped_before = metric(&server, "registry_push_dropped_slow_total").await;

    // ~2 000 changes, each register carrying 64 KiB of metadata: pushes are large
    // enough (~64 MiB in all) that an unbounded per-connection queue would show in the RSS.
    let pad = "p".repeat(64 * 1024);
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut peak = baseline;
    for i in 0..1_000u32 {
        let ip = format!("10.1.{}.{}", i / 250, i % 250 + 1);
        let t = Instant::now();
        must_instance(&writer, instance_request(service, "registerInstance", &ip, json!({ "pad": pad }))).await;
        must_instance(&writer, deregister(service, &ip)).await;
        slowest = slowest.max(t.elapsed());
        if i % 50 == 0 {
            peak = peak.max(rss_kib(&server));
        }
    }
    let flood = started.elapsed();
    eprintln!("flood of 2000 changes took {flood:?}, slowest register+deregister {slowest:?}");
    assert!(slowest < wait(5), "a register+deregister pair took {slowest:?} during the flood");

    // The server noticed the stalled subscriber and closed its connection (its own counter).
    let noticed = eventually(wait(15), || async {
        (metric(&server, "registry_push_dropped_slow_total").await > dropped_before).then_some(())
    })
    .await;
    assert!(noticed.is_some(), "the server never closed the stalled subscriber's connection");
    let (kind, body) = unary(&stalled, "HealthCheckRequest", json!({})).await;
    assert_error(&kind, &body, 301);

    // Still responsive: liveness, new connections, and a new subscriber gets the current state.
    assert_liveness(&server).await;
    assert_healthy_connection(&writer).await;
    must_instance(&writer, register(service, "10.2.0.1")).await;
    let (fresh, mut fresh_stream) = registered(&server).await;
    let mut sub = naming_base(service);
    sub["subscribe"] = json!(true);
    let (kind, body) = unary(&fresh, "SubscribeServiceRequest", sub).await;
    assert_eq!(kind, "SubscribeServiceResponse", "{body}");
    assert_eq!(ips(&body["serviceInfo"]), ["10.2.0.1"], "{body}");
    fresh_stream.push_matching(wait(10), |i| ips(i) == ["10.2.0.1"]).await;

    let after = rss_kib(&server);
    let peak = peak.max(after);
    let grown_mib = peak.saturating_sub(baseline) / 1024;
    eprintln!("server RSS {baseline} KiB, peak {peak} KiB, after {after} KiB (+{grown_mib} MiB at peak)");
    assert!(grown_mib < 50, "server RSS grew by {grown_mib} MiB ({baseline} -> peak {peak} KiB)");
    drop(stalled_stream);
}

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

/// At `[grpc] max_connections` a further setup gets `OVER_THRESHOLD` and stays unregistered,
/// while the registered connections keep being answered; a slot freed is taken again.
#[tokio::test(flavor = "multi_thread")]
async fn a_setup_beyond_the_connection_limit_is_refused_and_the_others_keep_working() {
    let server = Server::start_with_config(Some("[grpc]\nmax_connections = 2\n"));
    assert_eq!(metric(&server, r#"registry_limit{limit="grpc.max_connections"}"#).await, 2, "the limit is shown");
    let refused_before = metric(&server, "registry_grpc_connections_refused_total").await;
    let (first, _first_stream) = registered(&server).await;
    let (second, _second_stream) = registered(&server).await;
    assert_healthy_connection(&first).await;

    let third = connect(&server).await;
    let mut stream = open_stream(&third, setup_body()).await;
    let (kind, body) = stream.recv(wait(5)).await.expect("an answer to the refused setup");
    assert_error(&kind, &body, -400);
    assert!(body["message"].as_str().unwrap_or_default().contains("at most 2"), "{body}");
    let (kind, body) = query(&third, "limit-query").await;
    assert_error(&kind, &body, 301);
    assert_eq!(metric(&server, "registry_grpc_connections_refused_total").await, refused_before + 1);

    for channel in [&first, &second] {
        let (kind, body) = query(channel, "limit-query").await;
        assert_success(&kind, &body);
    }
    drop((first, _first_stream));
    let retried = eventually(wait(10), || async {
        let channel = connect(&server).await;
        let mut stream = open_stream(&channel, setup_body()).await;
        let (kind, _) = stream.recv(wait(5)).await?;
        (kind == "SetupAckRequest").then_some((channel, stream))
    })
    .await;
    assert!(retried.is_some(), "a closed connection's slot is given to a new one");
    // The ended connection's cleanup finished: nothing holds a slot beyond the registered ones.
    assert_eq!(metric(&server, "registry_grpc_connections_closing").await, 0);
}

/// Beyond `[grpc] max_requests_per_second` one connection's requests get `OVER_THRESHOLD`;
/// another connection, sending while it is limited, is answered every time.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_over_its_request_rate_is_refused_and_others_are_served() {
    let server = Server::start_with_config(Some("[grpc]\nmax_requests_per_second = 20\n"));
    let limited_before = metric(&server, "registry_grpc_requests_rate_limited_total").await;
    let (busy, _busy_stream) = registered(&server).await;
    let (calm, _calm_stream) = registered(&server).await;
    let flood = {
        let busy = busy.clone();
        tokio::spawn(async move {
            let mut refused = 0;
            for _ in 0..200 {
                let (kind, body) = query(&busy, "rate-query").await;
                if kind == "ErrorResponse" {
                    assert_error(&kind, &body, -400);
                    refused += 1;
                }
            }
            refused
        })
    };
    for _ in 0..10 {
        let (kind, body) = query(&calm, "rate-query").await;
        assert_success(&kind, &body);
    }
    let refused = flood.await.expect("flood task");
    assert!(refused > 0, "200 requests in a burst stayed within 20 per second");
    assert_eq!(metric(&server, "registry_grpc_requests_rate_limited_total").await, limited_before + refused);
}
