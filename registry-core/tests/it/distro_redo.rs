//! A gRPC client whose member dies reconnects to a survivor at once but redoes its registration
//! only on its own schedule: nacos-sdk-python 2.x every 30 s. Until then the survivors' Distro
//! copies are all that keeps its instance listed, so they must outlive the redo; the redo then
//! supersedes them. Raw gRPC clients (not an SDK), so the redo delay is exactly the one under
//! test; 3 real `registry` processes.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cluster::{Cluster, readiness};
use crate::grpc_raw::{
    connect_addr_with, deregister, http_ips, must_instance, open_stream, payload, register, setup_body, try_unary, wait,
};
use crate::harness::{Server, client, eventually, metric, patience};

/// How long the simulated clients wait after reconnecting before they redo (nacos-sdk-python
/// 2.x). Fixed: it is the behaviour under test, not a deadline to stretch on slow machines.
const REDO_AFTER: Duration = Duration::from_secs(30);

/// The registry's default verify interval, which renews copies and decides when a copy counts
/// as unconfirmed (three of them).
const VERIFY_INTERVAL: Duration = Duration::from_secs(2);

const SERVICE: &str = "redo";

/// Clients registered on the member that is killed.
const CLIENTS: usize = 4;

fn ip(k: usize) -> String {
    format!("10.8.0.{}", k + 1)
}

/// What a simulated client tells the test.
#[derive(Debug)]
enum Event {
    Registered(usize),
    Reconnected(usize),
    Redone(usize),
    Deregistered(usize),
}

/// A unary call on `channel` that the server answered with success.
async fn succeeds(channel: &tonic::transport::Channel, kind: &str, body: &serde_json::Value) -> bool {
    matches!(try_unary(channel, payload(kind, body)).await, Ok((_, answer)) if answer["resultCode"] == json!(200))
}

/// A client as nacos-sdk-python 2.x behaves when its member dies: registered through `home`,
/// busy (requests every 50 ms, so some are in flight at the kill; client 0 re-registers, the
/// others health-check); when a request fails it connects to `fallback` at once, keeps that
/// connection alive with health checks, and redoes its registration only [`REDO_AFTER`] later.
/// It deregisters when asked to, and runs until the test ends.
async fn slow_redo_client(
    k: usize,
    home: SocketAddr,
    fallback: SocketAddr,
    events: mpsc::UnboundedSender<Event>,
    mut deregister_now: mpsc::UnboundedReceiver<()>,
) {
    let nodelay = |e: tonic::transport::Endpoint| e.tcp_nodelay(true);
    let channel = connect_addr_with(home, nodelay).await;
    let stream = open_stream(&channel, setup_body()).await;
    must_instance(&channel, register(SERVICE, &ip(k))).await;
    let _ = events.send(Event::Registered(k));
    let health = json!({ "module": "internal", "headers": {} });
    loop {
        let alive = if k == 0 {
            succeeds(&channel, "InstanceRequest", &register(SERVICE, &ip(k))).await
        } else {
            succeeds(&channel, "HealthCheckRequest", &health).await
        };
        if !alive {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stream);
    let channel = connect_addr_with(fallback, nodelay).await;
    let _stream = open_stream(&channel, setup_body()).await;
    let _ = events.send(Event::Reconnected(k));
    // Alive but not yet redone: health checks as an SDK sends them (the member would end a
    // connection silent for 20 s).
    let redo_at = Instant::now() + REDO_AFTER;
    while Instant::now() < redo_at {
        assert!(succeeds(&channel, "HealthCheckRequest", &health).await, "client {k}: the survivor dropped it");
        let _ = tokio::time::timeout_at(redo_at, tokio::time::sleep(Duration::from_secs(1))).await;
    }
    must_instance(&channel, register(SERVICE, &ip(k))).await;
    let _ = events.send(Event::Redone(k));
    loop {
        tokio::select! {
            asked = deregister_now.recv() => {
                if asked.is_none() {
                    return;
                }
                must_instance(&channel, deregister(SERVICE, &ip(k))).await;
                let _ = events.send(Event::Deregistered(k));
            }
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                let _ = succeeds(&channel, "HealthCheckRequest", &health).await;
            }
        }
    }
}

/// Ephemeral v1 registrations through `member` back to back until `stop`, counted in `done`:
/// replication traffic in flight between the members when one of them is killed.
async fn churn(member: SocketAddr, done: Arc<AtomicUsize>, stop: tokio_util::sync::CancellationToken) {
    let url = format!("http://{member}/nacos/v1/ns/instance");
    let http = client();
    while !stop.is_cancelled() {
        let port = (20_000 + done.load(Ordering::Relaxed) % 10_000).to_string();
        let form = [("serviceName", "redo-churn"), ("ip", "10.8.1.1"), ("port", port.as_str())];
        if http.post(&url).form(&form).send().await.is_ok_and(|r| r.status().is_success()) {
            done.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Copies of dead gRPC connections a member has expired since it started.
const GRPC_COPIES_EXPIRED: &str = "registry_distro_copies_expired_total{client=\"grpc\"}";

/// How often each expected IP appears in `member`'s list of the service.
async fn counts(member: &Server, want: &[String]) -> (Vec<usize>, Vec<String>) {
    let ips = http_ips(member, SERVICE).await;
    (want.iter().map(|w| ips.iter().filter(|i| *i == w).count()).collect(), ips)
}

/// One poll of the survivors: every IP in `want` must be listed; panics otherwise. Returns
/// whether each survivor lists each exactly once and nothing else.
async fn all_listed(survivors: &[&Server], want: &[String], killed_at: Instant) -> bool {
    let mut exactly = true;
    for (n, member) in survivors.iter().enumerate() {
        let (seen, ips) = counts(member, want).await;
        assert!(
            seen.iter().all(|c| *c > 0),
            "{:.1} s after the kill, survivor {n} does not list every instance: wanted {want:?}, lists {ips:?}",
            killed_at.elapsed().as_secs_f64(),
        );
        exactly &= seen.iter().all(|c| *c == 1) && ips.len() == want.len();
    }
    exactly
}

/// Polls the survivors until `done` holds, asserting at every poll that `want` is listed;
/// panics at `deadline`.
async fn listed_until(
    survivors: &[&Server],
    want: &[String],
    killed_at: Instant,
    deadline: Instant,
    what: &str,
    mut done: impl FnMut(bool) -> bool,
) {
    loop {
        let exactly = all_listed(survivors, want, killed_at).await;
        if done(exactly) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not within the deadline");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_redoes_30_s_after_its_member_died_stays_listed_on_the_survivors_throughout() {
    // Copies expire well after the 30 s redo, yet soon enough to watch them expire within the
    // test (the default, 3 min, would make it last minutes): proof that what keeps the
    // instances listed after the redo is the redo, not the dead member's copies.
    let expire_after = REDO_AFTER + Duration::from_secs(20) * patience();
    let config = format!("[distro]\nexpire_after_ms = {}\n", expire_after.as_millis());
    let mut cluster = Cluster::start(3, Some(&config));
    cluster.leader(&[0, 1, 2]).await;
    for m in &cluster.members {
        eventually(Duration::from_secs(30), || async { (readiness(m).await == 200).then_some(()) })
            .await
            .expect("every member ready (Distro snapshot loaded)");
    }
    let (home, b, c) = (cluster.members[0].grpc, cluster.members[1].grpc, cluster.members[2].grpc);
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut deregister = Vec::new();
    let mut clients = Vec::new();
    for k in 0..CLIENTS {
        let (tx, rx) = mpsc::unbounded_channel();
        deregister.push(tx);
        // Half of them fall back to each survivor.
        let fallback = if k % 2 == 0 { b } else { c };
        clients.push(tokio::spawn(slow_redo_client(k, home, fallback, events_tx.clone(), rx)));
    }
    let want: Vec<String> = (0..CLIENTS).map(ip).collect();
    let mut registered = BTreeSet::new();
    while registered.len() < CLIENTS {
        match tokio::time::timeout(wait(20), events.recv()).await {
            Ok(Some(Event::Registered(k))) => {
                registered.insert(k);
            }
            other => panic!("registration on the first member: {other:?}"),
        }
    }
    // The count before the kill: every survivor-to-be lists all of them, once.
    let survivors = [&cluster.members[1], &cluster.members[2]];
    let mut expired_before = Vec::new();
    for m in survivors {
        expired_before.push(metric(m, GRPC_COPIES_EXPIRED).await);
        eventually(Duration::from_secs(10), || async {
            (counts(m, &want).await.0.iter().all(|c| *c == 1)).then_some(())
        })
        .await
        .expect("replicated to the other members before the kill");
    }
    let stop_churn = tokio_util::sync::CancellationToken::new();
    let churned = Arc::new(AtomicUsize::new(0));
    let churn_task = tokio::spawn(churn(cluster.members[1].http, Arc::clone(&churned), stop_churn.clone()));
    eventually(Duration::from_secs(10), || async { (churned.load(Ordering::Relaxed) >= 20).then_some(()) })
        .await
        .expect("churn under way before the kill");

    let mut killed = cluster.members.remove(0);
    killed.kill9();
    let killed_at = Instant::now();
    let survivors = [&cluster.members[0], &cluster.members[1]];

    // Until every client has reconnected; then the dead member comes back (as a crashed pod
    // does) while the clients still wait: its new run must not make the survivors drop the
    // copies of its old connections.
    let mut reconnected = BTreeSet::new();
    let reconnect_deadline = Instant::now() + wait(20);
    while reconnected.len() < CLIENTS {
        all_listed(&survivors, &want, killed_at).await;
        match tokio::time::timeout(Duration::from_millis(100), events.recv()).await {
            Ok(Some(Event::Reconnected(k))) => {
                reconnected.insert(k);
            }
            Ok(other) => panic!("while reconnecting: {other:?}"),
            Err(_) => assert!(Instant::now() < reconnect_deadline, "the clients did not reconnect in time"),
        }
    }
    let mut restart = Some(tokio::task::spawn_blocking(move || {
        killed.restart_same_ports();
        killed
    }));
    let mut restarted = None;
    let mut new_run_client = None;
    // Whether the restarted member was seen listing the old run's instances before any redo.
    let mut copies_of_old_run_listed = false;

    let mut redone = BTreeSet::new();
    let redo_deadline = killed_at + REDO_AFTER + wait(30);
    while redone.len() < CLIENTS {
        all_listed(&survivors, &want, killed_at).await;
        if restart.as_ref().is_some_and(tokio::task::JoinHandle::is_finished) {
            restarted = Some(restart.take().expect("checked").await.expect("the killed member restarted"));
        }
        if let Some(member) = restarted.as_ref().filter(|_| new_run_client.is_none())
            && readiness(member).await == 200
        {
            // Ready means the peer's snapshot is in: it holds the copies of the member's old
            // connections, which every survivor lists until their clients redo. The restarted
            // member must list them too (as copies of a silent owner), or clients connected to
            // it see partial lists for up to `expire_after_ms`.
            if redone.is_empty() {
                let (on_survivor, _) = counts(survivors[0], &want).await;
                let (on_restarted, ips) = counts(member, &want).await;
                assert_eq!(
                    on_restarted, on_survivor,
                    "ready after its restart, the member lists {ips:?}; a survivor lists each of {want:?} {on_survivor:?} times"
                );
                copies_of_old_run_listed = true;
            }
            // A client of the member's new run: its clock moves past the old connections'
            // revisions, so its digests would drop their copies if the survivors did not tell
            // the copies of its earlier run apart.
            let channel = connect_addr_with(member.grpc, |e| e).await;
            let stream = open_stream(&channel, setup_body()).await;
            must_instance(&channel, register("redo-new-run", "10.8.2.1")).await;
            new_run_client = Some((channel, stream));
        }
        match tokio::time::timeout(Duration::from_millis(100), events.recv()).await {
            Ok(Some(Event::Redone(k))) => {
                redone.insert(k);
            }
            Ok(other) => panic!("while waiting for the redo: {other:?}"),
            Err(_) => assert!(Instant::now() < redo_deadline, "the clients did not redo in time"),
        }
    }
    assert!(new_run_client.is_some(), "the killed member was back, with a client, before the clients redid");
    assert!(copies_of_old_run_listed, "the restarted member was ready before any client redid");
    let restarted = restarted.expect("restarted");
    let redone_at = Instant::now();
    assert!(
        redone_at < killed_at + expire_after,
        "the redo must come before the copies expire, or the test shows nothing"
    );

    // The redo superseded the dead connections' copies: listed exactly once, long before the
    // copies would have expired.
    listed_until(&survivors, &want, killed_at, redone_at + wait(10), "superseded copies trimmed", |exactly| exactly)
        .await;
    // A deregistration through the new connection takes effect now, not when the copy expires.
    deregister[0].send(()).expect("client 0 running");
    match tokio::time::timeout(wait(10), events.recv()).await {
        Ok(Some(Event::Deregistered(0))) => {}
        other => panic!("deregistration: {other:?}"),
    }
    let remaining: Vec<String> = want[1..].to_vec();
    listed_until(&survivors, &remaining, killed_at, Instant::now() + wait(10), "deregistered instance gone", |e| e)
        .await;
    // Past the copies' expiry: the redone registrations are what lasts.
    let past_expiry = killed_at + expire_after + 3 * VERIFY_INTERVAL + Duration::from_secs(2);
    listed_until(&survivors, &remaining, killed_at, past_expiry + wait(10), "past expiry", |_| {
        Instant::now() >= past_expiry
    })
    .await;
    assert!(all_listed(&survivors, &remaining, killed_at).await, "listed exactly once after the expiry");
    // Both survivors expired the dead connections' copies meanwhile, and nothing else of the
    // kind (the restarted member's new client was removed by its owner, not expired).
    for (n, member) in survivors.iter().enumerate() {
        let expired = eventually(Duration::from_secs(10), || async {
            let delta = metric(member, GRPC_COPIES_EXPIRED).await - expired_before[n];
            (delta == CLIENTS as u64).then_some(())
        })
        .await;
        assert!(
            expired.is_some(),
            "survivor {n} expired {} copies of gRPC clients, wanted {CLIENTS}",
            metric(member, GRPC_COPIES_EXPIRED).await - expired_before[n]
        );
    }

    // The restarted member serves the redone instances too. Checked while the clients still
    // hold their connections: once they are gone their owners remove the instances everywhere,
    // and this would race that removal.
    let mut remaining_sorted = remaining.clone();
    remaining_sorted.sort();
    let restarted_ips = || async {
        let mut ips = http_ips(&restarted, SERVICE).await;
        ips.sort();
        ips
    };
    let caught_up =
        eventually(Duration::from_secs(10), || async { (restarted_ips().await == remaining_sorted).then_some(()) })
            .await;
    assert!(caught_up.is_some(), "the restarted member lists {:?}", restarted_ips().await);
    assert_eq!(
        metric(&restarted, "registry_distro_snapshot_loaded").await,
        1,
        "the restarted member rejoined Distro with a peer's snapshot"
    );

    stop_churn.cancel();
    churn_task.await.expect("churn task");
    drop(deregister);
    for task in clients {
        task.abort();
    }
    drop(new_run_client);
}
