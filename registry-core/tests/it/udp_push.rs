//! v1 UDP push (spec §5): a subscriber registered by `/instance/list?udpPort=` receives a
//! datagram on every change of the service, and its ack stops the resends.

use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::net::UdpSocket;

use crate::harness::{Server, call, client, eventually, json, metric, patience};

const JAVA_UA: &str = "Nacos-Java-Client:v1.4.1";

/// A push as the client sees it.
struct Push {
    from: SocketAddr,
    last_ref_time: Value,
    info: Value,
}

/// The next push within `within` (`None`: nothing arrived). A datagram that is not a push
/// fails the test: a broken encoding must never pass for "no push".
async fn recv_push(sock: &UdpSocket, within: Duration) -> Option<Push> {
    let mut buf = vec![0u8; 65_536];
    let (n, from) = tokio::time::timeout(within, sock.recv_from(&mut buf)).await.ok()?.expect("udp receive");
    Some(decode_push(&buf[..n], from))
}

fn decode_push(datagram: &[u8], from: SocketAddr) -> Push {
    let mut raw = datagram.to_vec();
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out).expect("a gzip push inflates");
        raw = out;
    }
    let packet: Value = serde_json::from_slice(&raw)
        .unwrap_or_else(|e| panic!("push is not JSON ({e}): {}", String::from_utf8_lossy(&raw)));
    assert_eq!(packet["type"], "dom", "unexpected packet {packet}");
    let data = packet["data"].as_str().unwrap_or_else(|| panic!("push without string data: {packet}"));
    let info: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("push data is not JSON ({e}): {data}"));
    Push { from, last_ref_time: packet["lastRefTime"].clone(), info }
}

/// A datagram already waiting on the socket, without waiting for one.
fn buffered_push(sock: &UdpSocket) -> Option<Push> {
    let mut buf = vec![0u8; 65_536];
    sock.try_recv_from(&mut buf).ok().map(|(n, from)| decode_push(&buf[..n], from))
}

/// Java sends the stamp back as a quoted string.
async fn ack(sock: &UdpSocket, push: &Push) {
    let stamp = push.last_ref_time.as_u64().expect("numeric lastRefTime").to_string();
    let body = serde_json::json!({ "type": "push-ack", "lastRefTime": stamp, "data": "" });
    sock.send_to(body.to_string().as_bytes(), push.from).await.expect("send ack");
}

async fn subscribe(server: &Server, sock: &UdpSocket, service: &str) {
    let port = sock.local_addr().unwrap().port().to_string();
    let (status, body) =
        call(client().get(server.url("/nacos/v1/ns/instance/list")).header("User-Agent", JAVA_UA).query(&[
            ("serviceName", service),
            ("udpPort", &port),
            ("clientIP", "127.0.0.1"),
        ]))
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Waits for the next push whose host list satisfies `pred`, acking everything it sees.
async fn next_matching(sock: &UdpSocket, pred: impl Fn(&Value) -> bool) -> Push {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15) * patience();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let push = recv_push(sock, left).await.expect("expected a push before the deadline");
        ack(sock, &push).await;
        if pred(&push.info["hosts"]) {
            return push;
        }
    }
}

#[tokio::test]
async fn subscriber_gets_pushes_for_registration_unhealthy_and_expiry() {
    let server = Server::start_with_config(Some("[naming]\nbeat_check_interval_ms = 100\n"));
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    subscribe(&server, &sock, "pushed").await;

    // Instance with shortened liveness: unhealthy after 600 ms, removed after 1.2 s of silence.
    let metadata = r#"{"preserved.heart.beat.interval":"200","preserved.heart.beat.timeout":"600","preserved.ip.delete.timeout":"1200"}"#;
    let (status, body) = call(client().post(server.url("/nacos/v1/ns/instance")).form(&[
        ("serviceName", "pushed"),
        ("ip", "10.1.1.1"),
        ("port", "8080"),
        ("metadata", metadata),
    ]))
    .await;
    assert_eq!((status, body.as_str()), (200, "ok"));

    let registered = next_matching(&sock, |h| h.as_array().is_some_and(|a| a.len() == 1)).await;
    assert_eq!(registered.info["name"], "DEFAULT_GROUP@@pushed");
    assert_eq!(registered.info["hosts"][0]["ip"], "10.1.1.1");
    assert_eq!(registered.from.ip(), server.udp_push.ip());

    let unhealthy = next_matching(&sock, |h| h[0]["healthy"] == false).await;
    assert_eq!(unhealthy.info["hosts"][0]["port"], 8080);

    let expired = next_matching(&sock, |h| h.as_array().is_some_and(Vec::is_empty)).await;
    assert_eq!(expired.info["hosts"], serde_json::json!([]));

    let (_, body) =
        call(client().get(server.url("/nacos/v1/ns/instance/list")).query(&[("serviceName", "pushed")])).await;
    assert_eq!(json(&body)["hosts"], serde_json::json!([]));
}

#[tokio::test]
async fn unacknowledged_push_is_resent_and_an_ack_stops_resends() {
    // The ack window scales with the patience factor: a slow machine must not turn the test's
    // own ack into a late one.
    let ack_ms = 300 * patience();
    let server =
        Server::start_with_config(Some(&format!("[push]\nudp_ack_timeout_ms = {ack_ms}\nudp_max_retries = 5\n")));
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    subscribe(&server, &sock, "acked").await;
    // The subscription itself is pushed once; acknowledge it so it stays quiet.
    let first = recv_push(&sock, Duration::from_secs(10) * patience()).await.expect("initial push");
    ack(&sock, &first).await;

    let (status, _) = call(client().post(server.url("/nacos/v1/ns/instance")).query(&[
        ("serviceName", "acked"),
        ("ip", "10.2.2.2"),
        ("port", "80"),
    ]))
    .await;
    assert_eq!(status, 200);

    // Not acknowledged: the same datagram (same lastRefTime) comes again.
    let push = loop {
        let p = recv_push(&sock, Duration::from_secs(10) * patience()).await.expect("registration push");
        if p.info["hosts"].as_array().is_some_and(|a| a.len() == 1) {
            break p;
        }
        ack(&sock, &p).await;
    };
    let resent = recv_push(&sock, Duration::from_secs(5) * patience()).await.expect("resend after the ack timeout");
    assert_eq!(resent.last_ref_time, push.last_ref_time);
    assert_eq!(resent.info["hosts"], push.info["hosts"]);

    // Acknowledged: nothing more arrives although four resends were still allowed.
    // The server's count of pushes awaiting an ack reaches 0: nothing is left to resend. Any
    // resend it made before taking the ack is on the socket already (loopback delivers at send).
    ack(&sock, &resent).await;
    let settled = eventually(Duration::from_secs(5), || async {
        (metric(&server, "registry_push_pending_acks").await == 0).then_some(())
    })
    .await;
    assert!(settled.is_some(), "the acknowledged push is still pending (would be resent)");
    if let Some(late) = buffered_push(&sock) {
        assert_eq!(late.last_ref_time, push.last_ref_time, "only a resend that crossed the ack may be buffered");
    }

    let (_, body) = call(client().get(server.url("/nacos/v1/ns/operator/push/state"))).await;
    let state = json(&body);
    assert!(state["succeed"].as_u64().unwrap() >= 2, "{state}");
}

#[tokio::test]
async fn clients_that_cannot_take_pushes_are_not_subscribed() {
    let server = Server::start();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = sock.local_addr().unwrap().port().to_string();
    let (status, _) = call(
        client()
            .get(server.url("/nacos/v1/ns/instance/list"))
            .header("User-Agent", "Nacos-Python-Client:v0.1.0")
            .query(&[("serviceName", "polled"), ("udpPort", &port), ("clientIP", "127.0.0.1")]),
    )
    .await;
    assert_eq!(status, 200);
    call(client().post(server.url("/nacos/v1/ns/instance")).query(&[
        ("serviceName", "polled"),
        ("ip", "1.1.1.1"),
        ("port", "1"),
    ]))
    .await;
    // Not subscribed (the server's own list), so no push can be sent, let alone pending.
    let (_, body) =
        call(client().get(server.url("/nacos/v1/ns/service/subscribers")).query(&[("serviceName", "polled")])).await;
    assert_eq!(json(&body)["count"], 0);
    assert_eq!(metric(&server, "registry_push_pending_acks").await, 0);
    assert!(buffered_push(&sock).is_none(), "a client that cannot take pushes got one");
}
