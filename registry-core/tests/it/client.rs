//! The shared client (`registry_proto::client::Session`) against real servers: failover to the
//! next server of its list when the connected one dies, and redo of everything it held there
//! (registrations, subscriptions, config listeners) on the new connection, with calls in flight
//! at the moment of the kill.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use registry_proto::client::{Event, Session, SessionConfig, Setup};
use registry_proto::model::ServiceKey;
use registry_proto::wire::naming::WireInstance;
use tokio::sync::mpsc;

use crate::harness::{Server, call, client, eventually, json, patience};

/// Services registered concurrently while the connected server is killed.
const IN_FLIGHT: usize = 4;

fn service(name: &str) -> ServiceKey {
    ServiceKey::new("public", "DEFAULT_GROUP", name).unwrap()
}

fn instance(ip: &str, port: i64) -> WireInstance {
    WireInstance { ip: Some(ip.to_owned()), port, ..WireInstance::default() }
}

/// The IPs `server` lists for `name` (v1 query, healthy or not).
async fn hosts(server: &Server, name: &str) -> Vec<String> {
    let (status, body) =
        call(client().get(server.url("/nacos/v1/ns/instance/list")).query(&[("serviceName", name)])).await;
    assert_eq!(status, 200, "{body}");
    let hosts = json(&body)["hosts"].as_array().cloned().unwrap_or_default();
    hosts.iter().map(|h| format!("{}:{}", h["ip"].as_str().unwrap_or_default(), h["port"])).collect()
}

/// The next event matching `want`, within `secs` × patience; the others are skipped.
async fn next_event(events: &mut mpsc::Receiver<Event>, secs: u64, want: impl Fn(&Event) -> bool) -> Event {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs) * patience();
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) if want(&e) => return e,
            Ok(Some(_)) => {}
            Ok(None) => panic!("session ended"),
            Err(_) => panic!("no matching event within {secs} s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_fails_over_and_redoes_what_it_held_with_calls_in_flight() {
    let mut first = Server::start();
    let second = Server::start();
    let mut config = SessionConfig::new(vec![first.grpc, second.grpc], Setup::new("it-client", "naming"));
    config.backoff_max = Duration::from_millis(500);
    let (session, mut events) = Session::start(config).unwrap();
    let session = Arc::new(session);
    assert_eq!(next_event(&mut events, 10, |e| matches!(e, Event::Connected(_))).await, Event::Connected(first.grpc));

    // What the session holds on the first server.
    session.register(&service("client-own"), instance("10.1.0.1", 8080)).await.unwrap();
    let watched = session.subscribe(&service("client-watched"), "").await.unwrap();
    assert!(watched.hosts.is_empty());
    assert!(!session.listen_config("", "DEFAULT_GROUP", "client-cfg", "").await.unwrap(), "no such config yet");
    assert_eq!(hosts(&first, "client-own").await, ["10.1.0.1:8080"]);
    assert!(hosts(&second, "client-own").await.is_empty());

    // The second server has a watched instance and the listened config, which the redo must
    // report (the session never saw either on the first server).
    let (status, body) = call(client().post(second.url("/nacos/v1/ns/instance")).form(&[
        ("serviceName", "client-watched"),
        ("ip", "10.2.0.9"),
        ("port", "9000"),
        ("ephemeral", "false"),
    ]))
    .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, body) = call(client().post(second.url("/nacos/v1/cs/configs")).form(&[
        ("dataId", "client-cfg"),
        ("group", "DEFAULT_GROUP"),
        ("content", "v=2"),
    ]))
    .await;
    assert_eq!((status, body.as_str()), (200, "true"));

    // Writers keep registering their own services while the first server dies; each service's
    // latest registration is recorded before it is sent, so it must reach the second server
    // even when its call was the one in flight at the kill.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..IN_FLIGHT {
        let (session, stop) = (Arc::clone(&session), Arc::clone(&stop));
        writers.push(tokio::spawn(async move {
            let mut port = 1;
            let mut acknowledged = 0u32;
            while !stop.load(Ordering::Relaxed) {
                if session.register(&service(&format!("client-busy-{w}")), instance("10.3.0.1", port)).await.is_ok() {
                    acknowledged += 1;
                }
                port += 1;
            }
            (port - 1, acknowledged)
        }));
    }
    let busy = eventually(Duration::from_secs(10), || async {
        let mut all = true;
        for w in 0..IN_FLIGHT {
            all &= !hosts(&first, &format!("client-busy-{w}")).await.is_empty();
        }
        all.then_some(())
    })
    .await;
    assert!(busy.is_some(), "every writer registered on the first server before the kill");
    first.kill9();

    next_event(&mut events, 10, |e| *e == Event::Disconnected(first.grpc)).await;
    next_event(&mut events, 15, |e| *e == Event::Connected(second.grpc)).await;
    let Event::Service(info) = next_event(&mut events, 10, |e| matches!(e, Event::Service(_))).await else {
        unreachable!()
    };
    assert_eq!((info.name.as_str(), info.hosts.len()), ("client-watched", 1), "the redone subscription's answer");
    assert_eq!(info.hosts[0].ip, "10.2.0.9");
    let changed = next_event(&mut events, 10, |e| matches!(e, Event::ConfigChanged { .. })).await;
    assert_eq!(
        changed,
        Event::ConfigChanged { tenant: String::new(), group: "DEFAULT_GROUP".into(), data_id: "client-cfg".into() }
    );

    stop.store(true, Ordering::Relaxed);
    let mut last_ports = Vec::new();
    for w in writers {
        let (last_port, acknowledged) = w.await.unwrap();
        assert!(acknowledged > 0, "writer made progress");
        last_ports.push(last_port);
    }
    let redone = eventually(Duration::from_secs(10), || async {
        let own = hosts(&second, "client-own").await;
        let mut busy = Vec::new();
        for w in 0..IN_FLIGHT {
            busy.push(hosts(&second, &format!("client-busy-{w}")).await);
        }
        let expected: Vec<Vec<String>> = last_ports.iter().map(|p| vec![format!("10.3.0.1:{p}")]).collect();
        (own == ["10.1.0.1:8080"] && busy == expected).then_some(())
    })
    .await;
    assert!(redone.is_some(), "the second server holds exactly each service's latest registration");
    assert_eq!(session.connects(), 2);
    assert_eq!(session.connected_to(), Some(second.grpc));
}
