//! Server-side health checks of persistent instances (spec §13.4) against real targets on
//! loopback: a TCP listener, a small HTTP server, a real MariaDB; `NONE` and sidecar-owned
//! instances are left alone; in a cluster exactly one member (the responsible one) checks.
//!
//! Checks are slow by spec (first one 2–7 s after registration, three results in a row to flip
//! on plain failures), so each test runs for 10–40 s; every wait has a deadline on a condition.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use crate::cluster::Cluster;
use crate::harness::targets::{HttpTarget, Listener, closed_port, http_status_steps};
use crate::harness::{Server, call, client, eventually, json, metric};
use registry_proto::probe::mariadb::MariaDb;

/// Checks on, and a quick resync so responsibility changes are followed within a second.
const CHECKS_ON: &str = "[naming.health_check]\nenabled = true\nresync_interval_ms = 1000\n";
/// Long enough for a first check (≤ 7 s) and the three results a flip needs.
const FLIP: Duration = Duration::from_secs(30);

/// Creates a persistent service.
async fn create_service(server: &Server, service: &str) {
    let (status, body) =
        call(client().post(server.url("/nacos/v1/ns/service")).form(&[("serviceName", service)])).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
}

/// Sets a cluster's checker (`healthChecker` JSON) and its check port.
async fn set_checker(server: &Server, service: &str, cluster: &str, checker: &Value, use_instance_port: bool) {
    let (status, body) = call(client().put(server.url("/nacos/v1/ns/cluster")).form(&[
        ("serviceName", service),
        ("clusterName", cluster),
        ("checkPort", "80"),
        ("useInstancePort4Check", if use_instance_port { "true" } else { "false" }),
        ("healthChecker", checker.to_string().as_str()),
    ]))
    .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
}

/// A service with metadata has a protect threshold (0 by default), and a list whose instances
/// are all unhealthy reaches it and shows them healthy (Nacos' rule, spec §2.5). A second,
/// always healthy instance (cluster `keep`, checker `NONE`, so never probed) keeps the list
/// showing the real health of the one under test.
async fn keep_one_healthy(server: &Server, service: &str) {
    set_checker(server, service, "keep", &serde_json::json!({ "type": "NONE" }), true).await;
    register(server, service, "keep", SocketAddr::from(([127, 0, 0, 1], 1)), "").await;
}

/// Registers a persistent instance.
async fn register(server: &Server, service: &str, cluster: &str, addr: SocketAddr, metadata: &str) {
    let mut form = vec![
        ("serviceName", service.to_owned()),
        ("clusterName", cluster.to_owned()),
        ("ip", addr.ip().to_string()),
        ("port", addr.port().to_string()),
        ("ephemeral", "false".to_owned()),
    ];
    if !metadata.is_empty() {
        form.push(("metadata", metadata.to_owned()));
    }
    let (status, body) = call(client().post(server.url("/nacos/v1/ns/instance")).form(&form)).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
}

/// The instance's health in the v1 instance list; `None` when it is not listed.
async fn health(server: &Server, service: &str, addr: SocketAddr) -> Option<bool> {
    let (status, body) =
        call(client().get(server.url("/nacos/v1/ns/instance/list")).query(&[("serviceName", service)])).await;
    assert_eq!(status, 200, "{body}");
    json(&body)["hosts"].as_array()?.iter().find_map(|h| {
        let here = h["ip"].as_str()? == addr.ip().to_string() && h["port"].as_u64()? == u64::from(addr.port());
        here.then(|| h["healthy"].as_bool()).flatten()
    })
}

/// Waits until the instance is listed with `healthy`; fails (naming `what`) at the deadline.
async fn wait_health(server: &Server, service: &str, addr: SocketAddr, healthy: bool, what: &str) {
    let seen = eventually(FLIP, || async { (health(server, service, addr).await == Some(healthy)).then_some(()) });
    if seen.await.is_none() {
        let now = health(server, service, addr).await;
        panic!("{what}: {addr} not listed with healthy={healthy} within {FLIP:?} (listed: {now:?})");
    }
}

async fn checks(server: &Server, kind: &str, outcome: &str) -> u64 {
    metric(server, &format!("registry_health_checks_total{{type=\"{kind}\",outcome=\"{outcome}\"}}")).await
}

/// Checks of every type and outcome this member ran.
async fn all_checks(server: &Server) -> u64 {
    let mut total = 0;
    for kind in ["TCP", "HTTP", "MYSQL"] {
        for outcome in ["ok", "fail", "fail_now"] {
            total += checks(server, kind, outcome).await;
        }
    }
    total
}

/// Waits until `server` ran at least `n` successful checks of `kind`.
async fn wait_checks(server: &Server, kind: &str, n: u64) {
    eventually(FLIP, || async { (checks(server, kind, "ok").await >= n).then_some(()) })
        .await
        .unwrap_or_else(|| panic!("fewer than {n} successful {kind} checks within {FLIP:?}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_target_that_goes_away_turns_unhealthy_and_back_healthy_without_being_removed() {
    let server = Server::start_with_config(Some(CHECKS_ON));
    let target = Listener::start("127.0.0.1:0").await;
    let addr = target.addr;
    register(&server, "tcp-checked", "DEFAULT", addr, "").await;
    wait_checks(&server, "TCP", 1).await;
    assert_eq!(health(&server, "tcp-checked", addr).await, Some(true));

    target.stop().await;
    // Refused is "fail now": the next check flips it.
    wait_health(&server, "tcp-checked", addr, false, "listener closed").await;
    assert!(checks(&server, "TCP", "fail_now").await >= 1);

    let back = Listener::start(&addr.to_string()).await;
    wait_health(&server, "tcp-checked", addr, true, "listener back").await;
    assert!(checks(&server, "TCP", "ok").await >= 4, "three successes in a row after the first one");
    assert_eq!(metric(&server, "registry_health_check_flips_total{to=\"unhealthy\"}").await, 1);
    assert_eq!(metric(&server, "registry_health_check_flips_total{to=\"healthy\"}").await, 1);
    drop(back);
}

#[tokio::test(flavor = "multi_thread")]
async fn http_checker_follows_nacos_status_rules() {
    let server = Server::start_with_config(Some(CHECKS_ON));
    let target = HttpTarget::start().await;
    let addr = target.addr;
    create_service(&server, "http-checked").await;
    set_checker(&server, "http-checked", "web", &serde_json::json!({ "type": "HTTP", "path": "/health" }), true).await;
    keep_one_healthy(&server, "http-checked").await;
    register(&server, "http-checked", "web", addr, "").await;
    wait_checks(&server, "HTTP", 1).await;
    assert_eq!(health(&server, "http-checked", addr).await, Some(true));

    http_status_steps(target, |healthy, step| wait_health(&server, "http-checked", addr, healthy, step)).await;
    assert!(checks(&server, "HTTP", "fail_now").await >= 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_checker_keeps_only_the_writable_server_healthy_and_bad_credentials_fail_now() {
    let Some(db) = MariaDb::start("probe", "pw") else { return };
    db.sql("SET GLOBAL read_only=OFF");
    let server = Server::start_with_config(Some(CHECKS_ON));
    let master_check = "show global variables where variable_name='read_only'";
    let checker = |pwd: &str| serde_json::json!({ "type": "MYSQL", "user": "probe", "pwd": pwd, "cmd": master_check });
    create_service(&server, "db").await;
    set_checker(&server, "db", "DEFAULT", &checker("pw"), true).await;
    keep_one_healthy(&server, "db").await;
    register(&server, "db", "DEFAULT", db.addr(), "").await;
    wait_checks(&server, "MYSQL", 1).await;
    assert_eq!(health(&server, "db", db.addr()).await, Some(true));

    db.sql("SET GLOBAL read_only=ON");
    wait_health(&server, "db", db.addr(), false, "read_only=ON (a replica)").await;
    assert!(checks(&server, "MYSQL", "fail").await >= 3, "a replica is a plain failure");
    db.sql("SET GLOBAL read_only=OFF");
    wait_health(&server, "db", db.addr(), true, "read_only=OFF again").await;

    let fails = checks(&server, "MYSQL", "fail").await;
    set_checker(&server, "db", "DEFAULT", &checker("wrong"), true).await;
    wait_health(&server, "db", db.addr(), false, "wrong password").await;
    assert!(checks(&server, "MYSQL", "fail_now").await >= 1);
    assert_eq!(checks(&server, "MYSQL", "fail").await, fails, "an SQL error fails now, not three times");
}

/// Registers `skipped` (at a closed port, so any check of it would fail now) and a TCP-checked
/// instance on a listener in the same service, and waits until the latter was checked six times:
/// more than 7 s after both were registered, past the latest first check (`2 + 5` s) `skipped`
/// could have had. Then no check may have failed, and `skipped` must still be healthy.
/// Returns the listener (checked), which must live as long as the test does.
async fn assert_not_checked(
    server: &Server,
    service: &str,
    skipped: SocketAddr,
    cluster: &str,
    metadata: &str,
) -> Listener {
    let probed = Listener::start("127.0.0.1:0").await;
    let before = all_checks(server).await;
    register(server, service, cluster, skipped, metadata).await;
    register(server, service, "probed", probed.addr, "").await;
    wait_checks(server, "TCP", 6).await;
    let failed = checks(server, "TCP", "fail").await + checks(server, "TCP", "fail_now").await;
    assert_eq!(failed, 0, "the instance at the closed port was checked");
    assert!(all_checks(server).await >= before + 6);
    assert_eq!(metric(server, "registry_health_check_tasks").await, 1, "only the listener is checked");
    assert_eq!(health(server, service, skipped).await, Some(true));
    probed
}

#[tokio::test(flavor = "multi_thread")]
async fn none_checker_runs_no_checks_and_leaves_health_to_the_manual_api() {
    let server = Server::start_with_config(Some(CHECKS_ON));
    let manual = closed_port().await;
    create_service(&server, "manual").await;
    set_checker(&server, "manual", "hand", &serde_json::json!({ "type": "NONE" }), true).await;
    let probed = assert_not_checked(&server, "manual", manual, "hand", "").await;

    let set_health = |cluster: &'static str, addr: SocketAddr, healthy: bool| {
        client().put(server.url("/nacos/v1/ns/health/instance")).form(&[
            ("serviceName", "manual".to_owned()),
            ("clusterName", cluster.to_owned()),
            ("ip", addr.ip().to_string()),
            ("port", addr.port().to_string()),
            ("healthy", healthy.to_string()),
        ])
    };
    let (status, body) = call(set_health("hand", manual, false)).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_eq!(health(&server, "manual", manual).await, Some(false));
    let (status, body) = call(set_health("hand", manual, true)).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_eq!(health(&server, "manual", manual).await, Some(true));
    // Where a checker runs, it owns the health.
    let (status, body) = call(set_health("probed", probed.addr, false)).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_whose_health_a_sidecar_reports_are_not_checked() {
    let server = Server::start_with_config(Some(CHECKS_ON));
    let owned = closed_port().await;
    let key = registry_proto::contract::sidecar::HEALTH_REPORTED_METADATA;
    let metadata = serde_json::json!({ key: "sidecar" }).to_string();
    let _probed = assert_not_checked(&server, "sidecar-owned", owned, "DEFAULT", &metadata).await;
}

/// The HTTP address every member in `members` names as responsible for `addr` (once they
/// agree, and it is not `not`).
async fn responsible(cluster: &Cluster, members: &[usize], addr: SocketAddr, not: Option<&str>) -> String {
    eventually(Duration::from_secs(30), || async {
        let mut answers = Vec::new();
        for &i in members {
            let (_, body) = call(
                client()
                    .get(cluster.members[i].url("/nacos/v1/ns/operator/distro/client"))
                    .query(&[("ip", addr.ip().to_string()), ("port", addr.port().to_string())]),
            )
            .await;
            answers.push(json(&body)["responsibleServer"].as_str()?.to_owned());
        }
        let first = answers[0].clone();
        (answers.iter().all(|a| *a == first) && not != Some(first.as_str())).then_some(first)
    })
    .await
    .expect("the members agree on who is responsible")
}

fn member_at(cluster: &Cluster, http: &str) -> usize {
    cluster.members.iter().position(|m| m.http.to_string() == http).expect("a member's address")
}

#[tokio::test(flavor = "multi_thread")]
async fn in_a_cluster_only_the_responsible_member_checks_and_a_survivor_takes_over() {
    let mut cluster = Cluster::start(3, Some(CHECKS_ON));
    cluster.leader(&[0, 1, 2]).await;
    let target = Listener::start("127.0.0.1:0").await;
    let addr = target.addr;
    // Responsibility hashes over the members each one sees healthy: wait until they agree.
    let first = responsible(&cluster, &[0, 1, 2], addr, None).await;
    let prober = member_at(&cluster, &first);
    register(&cluster.members[0], "clustered", "DEFAULT", addr, "").await;
    wait_checks(&cluster.members[prober], "TCP", 3).await;
    let mut total = 0;
    for (i, member) in cluster.members.iter().enumerate() {
        let (ran, tasks) = (all_checks(member).await, metric(member, "registry_health_check_tasks").await);
        total += ran;
        if i == prober {
            assert_eq!(tasks, 1);
        } else {
            assert_eq!((ran, tasks), (0, 0), "member {} checks what member {} is responsible for", i + 1, prober + 1);
        }
    }
    assert!(total >= 3);

    // The prober goes away: once the others no longer count it, one of them takes over.
    cluster.members[prober].kill9();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != prober).collect();
    let next = member_at(&cluster, &responsible(&cluster, &survivors, addr, Some(first.as_str())).await);
    wait_checks(&cluster.members[next], "TCP", 1).await;
    let other = survivors.into_iter().find(|i| *i != next).unwrap();
    assert_eq!(all_checks(&cluster.members[other]).await, 0, "only the new responsible member checks");
    drop(target);
}
