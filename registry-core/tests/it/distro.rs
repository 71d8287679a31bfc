//! Distro (AP replication of ephemeral data) across 3 real `registry` processes on 127.0.0.1,
//! driven by the `nacos-sdk` crate: registration through one member served and pushed by the
//! others, v1 expiry in exactly one place, no loss when a member dies, convergence after a
//! pause, a new member loading a snapshot before it is ready, ephemeral data without a Raft
//! quorum, and refusal of bad Distro messages.

use std::sync::Arc;
use std::time::Duration;

use nacos_sdk::api::naming::{
    NamingChangeEvent, NamingEventListener, NamingService, NamingServiceBuilder, ServiceInstance,
};
use nacos_sdk::api::props::ClientProps;
use serde_json::Value;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use crate::cluster::{Cluster, admin, readiness, signal};
use crate::harness::{
    Server, call, client, eventually, free_member_ports, json, metric, patience, pushed_since, settled_pushes,
};

/// Short Distro timings so failure cases finish quickly.
const FAST: &str = "[distro]\nverify_interval_ms = 500\nexpire_after_ms = 4000\nsync_retry_max_ms = 500\n";

/// Distro batches a member sent to a peer that failed (each is resent).
const SYNC_FAILURES: &str = "registry_distro_sync_failures_total";

/// A naming SDK client of the given members (it picks one and fails over to the others).
struct Sdk {
    naming: NamingService,
    _cache: tempfile::TempDir,
}

async fn sdk(members: &[&Server]) -> Sdk {
    let cache = tempfile::tempdir().expect("sdk cache dir");
    let addrs: Vec<String> = members.iter().map(|m| format!("127.0.0.1:{}", m.http.port())).collect();
    let props = ClientProps::new()
        .server_addr(addrs.join(","))
        .env_first(false)
        .app_name("registry-it-distro")
        .cache_dir(cache.path());
    let naming = tokio::time::timeout(Duration::from_secs(20) * patience(), NamingServiceBuilder::new(props).build())
        .await
        .expect("SDK build in time")
        .expect("nacos-sdk naming client connects");
    Sdk { naming, _cache: cache }
}

fn instance(ip: &str) -> ServiceInstance {
    ServiceInstance { ip: ip.to_owned(), port: 80, ..Default::default() }
}

struct Collect(UnboundedSender<Arc<NamingChangeEvent>>);

impl NamingEventListener for Collect {
    fn event(&self, event: Arc<NamingChangeEvent>) {
        let _ = self.0.send(event);
    }
}

/// IPs a member serves for `service` (default group, namespace).
async fn ips(server: &Server, service: &str) -> Vec<String> {
    let (_, body) =
        call(client().get(server.url("/nacos/v1/ns/instance/list")).query(&[("serviceName", service)])).await;
    let mut ips: Vec<String> = json(&body)["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["ip"].as_str().map(str::to_owned))
        .collect();
    ips.sort();
    ips
}

async fn serves_exactly(server: &Server, service: &str, want: &[&str]) -> bool {
    ips(server, service).await == want.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()
}

async fn digest(server: &Server) -> Option<String> {
    let resp = client().get(server.url("/nacos/v2/core/distro/digest")).send().await.ok()?;
    let body: Value = resp.json().await.ok()?;
    body["data"]["digest"].as_str().map(str::to_owned)
}

async fn digests_agree(servers: &[&Server]) -> bool {
    let mut seen = Vec::new();
    for s in servers {
        match digest(s).await {
            Some(d) => seen.push(d),
            None => return false,
        }
    }
    seen.windows(2).all(|w| w[0] == w[1])
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_registered_through_one_member_is_served_and_pushed_by_the_others() {
    let cluster = Cluster::start(3, None);
    cluster.leader(&[0, 1, 2]).await;
    let [a, b, c] = [&cluster.members[0], &cluster.members[1], &cluster.members[2]];
    let subscriber = sdk(&[c]).await;
    let (tx, mut events) = unbounded_channel();
    subscriber
        .naming
        .subscribe("orders".to_owned(), None, Vec::new(), Arc::new(Collect(tx)))
        .await
        .expect("subscribe on C");
    // C's count of acknowledged pushes tells its push from the SDK's own poll (1 s after
    // subscribing); so far C pushed once: the current state, to the new subscription.
    let pushes = settled_pushes(c, 1).await;

    let owner = sdk(&[a]).await;
    owner.naming.register_instance("orders".to_owned(), None, instance("10.7.0.1")).await.expect("register on A");
    for m in [b, c] {
        eventually(Duration::from_secs(10), || async {
            serves_exactly(m, "orders", &["10.7.0.1"]).await.then_some(())
        })
        .await
        .expect("B and C serve the instance registered through A");
    }
    let pushed = tokio::time::timeout(Duration::from_secs(10) * patience(), async {
        while let Some(event) = events.recv().await {
            if event.instances.as_ref().is_some_and(|list| list.iter().any(|i| i.ip == "10.7.0.1")) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(pushed, Ok(true), "the subscriber on C got a push with the instance registered on A");
    pushed_since(c, pushes, "the instance registered on A reached C").await;

    // And the deregistration travels the same way.
    owner.naming.deregister_instance("orders".to_owned(), None, instance("10.7.0.1")).await.expect("deregister");
    for m in [b, c] {
        eventually(Duration::from_secs(10), || async { serves_exactly(m, "orders", &[]).await.then_some(()) })
            .await
            .expect("the deregistration reached B and C");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_v1_instance_expires_exactly_once_after_its_beats_stop() {
    let config = format!("{FAST}[naming]\nbeat_check_interval_ms = 300\n");
    let cluster = Cluster::start(3, Some(&config));
    cluster.leader(&[0, 1, 2]).await;
    let b = &cluster.members[1];
    // Short beat timeouts through the preserved metadata keys (1 s unhealthy, 2 s removed).
    let metadata = r#"{"preserved.heart.beat.interval":"300","preserved.heart.beat.timeout":"1000","preserved.ip.delete.timeout":"2000"}"#;
    let (status, body) = call(client().post(b.url("/nacos/v1/ns/instance")).form(&[
        ("serviceName", "beats"),
        ("ip", "10.7.1.1"),
        ("port", "80"),
        ("ephemeral", "true"),
        ("metadata", metadata),
    ]))
    .await;
    assert_eq!(status, 200, "{body}");
    for m in &cluster.members {
        eventually(Duration::from_secs(10), || async { serves_exactly(m, "beats", &["10.7.1.1"]).await.then_some(()) })
            .await
            .expect("every member serves the v1 instance");
    }
    // No beats: it expires on its owner, and the removal replicates everywhere.
    for m in &cluster.members {
        eventually(Duration::from_secs(15), || async { serves_exactly(m, "beats", &[]).await.then_some(()) })
            .await
            .expect("the expired instance is gone from every member");
    }
    // No member tracks the client any more, so none can expire it later: the count is final.
    for m in &cluster.members {
        eventually(Duration::from_secs(10), || async {
            (metric(m, "registry_http_beat_clients").await == 0).then_some(())
        })
        .await
        .expect("every member stopped tracking the silent client");
    }
    let mut removals = 0;
    for m in &cluster.members {
        removals += metric(m, "registry_beat_expirations_total").await;
    }
    assert_eq!(removals, 1, "exactly one member expired the instance");
}

/// Index of the member holding at least one SDK connection.
async fn connected_member(cluster: &Cluster, alive: &[usize]) -> Option<usize> {
    for &i in alive {
        let (_, body) = call(client().get(cluster.members[i].url("/nacos/v2/core/loader/current"))).await;
        if json(&body)["data"].as_object().is_some_and(|c| !c.is_empty()) {
            return Some(i);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_a_member_loses_nothing_its_clients_registered() {
    let mut cluster = Cluster::start(3, Some(FAST));
    cluster.leader(&[0, 1, 2]).await;
    let members: Vec<&Server> = cluster.members.iter().collect();
    let client_sdk = sdk(&members).await;
    let want: Vec<String> = (0..5).map(|k| format!("10.7.2.{k}")).collect();
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    let batch: Vec<ServiceInstance> = want.iter().map(|ip| instance(ip)).collect();
    client_sdk.naming.batch_register_instance("survive".to_owned(), None, batch).await.expect("register");
    for m in &cluster.members {
        eventually(Duration::from_secs(10), || async { serves_exactly(m, "survive", &want).await.then_some(()) })
            .await
            .expect("replicated before the kill");
    }
    let owner = connected_member(&cluster, &[0, 1, 2]).await.expect("the SDK is connected to a member");
    cluster.members[owner].kill9();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != owner).collect();
    // The SDK reconnects to a survivor and redoes its registration there.
    eventually(Duration::from_secs(20), || async { connected_member(&cluster, &survivors).await })
        .await
        .expect("the SDK reconnected to a surviving member");
    // The end state, read from the survivors' own counts rather than after a fixed wait: the
    // dead member's copies expired (each survivor's copies are exactly what the other owns),
    // the client is owned by a survivor (its 5 instances are that member's responsibility,
    // none are the other's), both digests agree, and both serve all 5 instances.
    let (a, b) = (&cluster.members[survivors[0]], &cluster.members[survivors[1]]);
    let settled = eventually(Duration::from_secs(30), || async {
        let (da, db) = (distro_state(a).await?, distro_state(b).await?);
        let copies_are_the_others = da["copies"] == db["owned"] && db["copies"] == da["owned"];
        let responsible = [responsible_instances(a).await?, responsible_instances(b).await?];
        let owned_by_one = responsible.iter().sum::<u64>() == 5 && responsible.contains(&5);
        (copies_are_the_others
            && owned_by_one
            && da["digest"] == db["digest"]
            && serves_exactly(a, "survive", &want).await
            && serves_exactly(b, "survive", &want).await)
            .then_some(())
    })
    .await;
    assert!(
        settled.is_some(),
        "survivors did not settle: {:?} {:?} responsible {:?} {:?}",
        distro_state(a).await,
        distro_state(b).await,
        responsible_instances(a).await,
        responsible_instances(b).await
    );
}

/// A member's `/nacos/v2/core/distro/digest` data: digest, owned and copied client counts.
async fn distro_state(server: &Server) -> Option<Value> {
    let resp = client().get(server.url("/nacos/v2/core/distro/digest")).send().await.ok()?;
    let body: Value = resp.json().await.ok()?;
    Some(body["data"].clone())
}

/// `responsibleInstanceCount` of a member's operator metrics.
async fn responsible_instances(server: &Server) -> Option<u64> {
    let resp = client()
        .get(server.url("/nacos/v1/ns/operator/metrics"))
        .query(&[("onlyStatus", "false")])
        .send()
        .await
        .ok()?;
    let body: Value = resp.json().await.ok()?;
    body["responsibleInstanceCount"].as_u64()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_member_converges_after_sigcont() {
    let cluster = Cluster::start(3, Some(FAST));
    cluster.leader(&[0, 1, 2]).await;
    let [a, b, c] = [&cluster.members[0], &cluster.members[1], &cluster.members[2]];
    let owner = sdk(&[a]).await;
    let failures_before = metric(a, SYNC_FAILURES).await;
    signal(b, "-STOP");
    // One batch per service and client (Nacos 2.x: a client's registration replaces its last).
    for k in 0..20 {
        let service = format!("paused-{}", k % 4);
        let batch: Vec<ServiceInstance> = (0..=k).map(|i| instance(&format!("10.7.3.{i}"))).collect();
        owner.naming.batch_register_instance(service, None, batch).await.unwrap();
    }
    owner.naming.deregister_instance("paused-0".to_owned(), None, instance("10.7.3.16")).await.unwrap();
    // A's own count, not a guess from a sleep: a batch to B and the send after it failed (timed
    // out), so what B has after SIGCONT comes from Distro's resends and verify repair.
    eventually(Duration::from_secs(20), || async {
        (metric(a, SYNC_FAILURES).await >= failures_before + 2).then_some(())
    })
    .await
    .expect("two sends from A to the paused B failed");
    signal(b, "-CONT");
    eventually(Duration::from_secs(20), || async { digests_agree(&[a, b, c]).await.then_some(()) })
        .await
        .expect("B converged: every member reports the same digest");
    assert_eq!(ips(b, "paused-3").await.len(), 20);
    assert_eq!(ips(b, "paused-0").await, Vec::<String>::new());
    let (_, diff) = call(client().get(b.url("/nacos/v2/core/distro/diff")).query(&[("serviceName", "paused-3")])).await;
    assert_eq!(json(&diff)["data"]["agree"], true, "{diff}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_member_loads_a_snapshot_before_it_reports_ready() {
    let ports = free_member_ports(4);
    let mut cluster = Cluster { members: (1..=3).map(|id| Server::start_member(id, &ports[..3], None)).collect() };
    let leader = cluster.leader(&[0, 1, 2]).await;
    let owner = sdk(&[&cluster.members[0]]).await;
    let batch: Vec<ServiceInstance> = (0..10).map(|k| instance(&format!("10.7.4.{k}"))).collect();
    owner.naming.batch_register_instance("snap".to_owned(), None, batch).await.unwrap();
    eventually(Duration::from_secs(10), || async {
        (ips(&cluster.members[2], "snap").await.len() == 10).then_some(())
    })
    .await
    .expect("replicated among the first three");
    cluster.members.push(Server::start_member(4, &ports, None));
    let form = [("nodeId", "4".to_owned()), ("address", format!("127.0.0.1:{}", ports[3]))];
    let (status, body) =
        admin(&cluster.members[leader], reqwest::Method::POST, "/nacos/v2/core/cluster/members", &form).await;
    assert_eq!(status, 200, "{body}");
    let newcomer = &cluster.members[3];
    eventually(Duration::from_secs(30), || async { (readiness(newcomer).await == 200).then_some(()) })
        .await
        .expect("the new member became ready");
    // Checked at once: ready means the snapshot is already in.
    assert_eq!(ips(newcomer, "snap").await.len(), 10, "the new member serves everything once ready");
    assert_eq!(digest(newcomer).await, digest(&cluster.members[0]).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn ephemeral_registration_and_queries_work_without_a_raft_quorum() {
    let mut cluster = Cluster::start(3, None);
    cluster.leader(&[0, 1, 2]).await;
    for m in &cluster.members {
        eventually(Duration::from_secs(30), || async { (readiness(m).await == 200).then_some(()) })
            .await
            .expect("every member ready (Distro snapshot loaded)");
    }
    cluster.members[0].kill9();
    cluster.members[1].kill9();
    let survivor = &cluster.members[2];
    // No quorum: persistent writes cannot commit...
    let (status, _) =
        call(client().post(survivor.url("/nacos/v1/ns/instance")).timeout(Duration::from_secs(15)).form(&[
            ("serviceName", "cp"),
            ("ip", "10.7.5.9"),
            ("port", "80"),
            ("ephemeral", "false"),
        ]))
        .await;
    assert_ne!(status, 200, "a persistent write needs a quorum");
    // ...while ephemeral data keeps working, over gRPC (a new SDK connection) and HTTP.
    let lone = sdk(&[survivor]).await;
    lone.naming.register_instance("ap".to_owned(), None, instance("10.7.5.1")).await.expect("gRPC register");
    let (status, body) = call(client().post(survivor.url("/nacos/v1/ns/instance")).form(&[
        ("serviceName", "ap"),
        ("ip", "10.7.5.2"),
        ("port", "80"),
    ]))
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(serves_exactly(survivor, "ap", &["10.7.5.1", "10.7.5.2"]).await);
    let listed = lone.naming.get_all_instances("ap".to_owned(), None, Vec::new(), false).await.expect("gRPC query");
    assert_eq!(listed.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_and_stale_distro_messages_are_refused_or_ignored() {
    use registry_proto::cluster::DistroMessage;
    use registry_proto::cluster::distro_client::DistroClient;

    let cluster = Cluster::start(3, None);
    cluster.leader(&[0, 1, 2]).await;
    let [a, b] = [&cluster.members[0], &cluster.members[1]];
    let owner = sdk(&[a]).await;
    owner.naming.register_instance("stale".to_owned(), None, instance("10.7.6.1")).await.unwrap();
    eventually(Duration::from_secs(10), || async { serves_exactly(b, "stale", &["10.7.6.1"]).await.then_some(()) })
        .await
        .expect("replicated to B");

    let addr = format!("http://{}", b.cluster);
    let channel = tonic::transport::Endpoint::from_shared(addr).unwrap().connect().await.unwrap();
    let mut c = DistroClient::new(channel);
    let from = |sender: &str, json: &[u8]| {
        let mut req = tonic::Request::new(DistroMessage { json: json.to_vec() });
        if !sender.is_empty() {
            req.metadata_mut().insert("x-registry-node", sender.parse().unwrap());
        }
        req
    };
    assert_eq!(c.sync(from("", b"{}")).await.unwrap_err().code(), tonic::Code::PermissionDenied);
    assert_eq!(c.sync(from("99", b"{}")).await.unwrap_err().code(), tonic::Code::PermissionDenied);
    assert_eq!(c.sync(from("1", b"garbage")).await.unwrap_err().code(), tonic::Code::InvalidArgument);
    // The client as member 1 owns it, at revision 1 (far older than the real one): ignored.
    // Then member 3 speaking for member 1's client: ignored too.
    let connection: String = {
        let (_, body) = call(client().get(a.url("/nacos/v2/core/loader/current"))).await;
        json(&body)["data"].as_object().unwrap().keys().next().unwrap().clone()
    };
    for (sender, owner) in [("1", 1), ("3", 1)] {
        let batch =
            format!(r#"{{"clients":[{{"client":"{connection}","owner":{owner},"revision":1,"publication":null}}]}}"#);
        let answer = c.sync(from(sender, batch.as_bytes())).await.expect("a well-formed batch is answered");
        assert_eq!(answer.into_inner().json, b"0", "nothing applied from sender {sender}");
    }
    assert!(serves_exactly(b, "stale", &["10.7.6.1"]).await, "stale and foreign messages changed nothing");
}

/// The responsible server a member names for `10.7.7.1:<port>` of each port.
async fn responsible_servers(server: &Server, ports: &[String]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for port in ports {
        let resp = client()
            .get(server.url("/nacos/v1/ns/operator/distro/client"))
            .query(&[("ip", "10.7.7.1"), ("port", port.as_str())])
            .send()
            .await
            .ok()?;
        let body: Value = resp.json().await.ok()?;
        out.push(body["responsibleServer"].as_str()?.to_owned());
    }
    Some(out)
}

async fn owned(server: &Server) -> u64 {
    let (_, body) = call(client().get(server.url("/nacos/v2/core/distro/digest"))).await;
    json(&body)["data"]["owned"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn v1_clients_are_owned_by_the_member_their_address_hashes_to() {
    let cluster = Cluster::start(3, Some(FAST));
    cluster.leader(&[0, 1, 2]).await;
    for m in &cluster.members {
        eventually(Duration::from_secs(30), || async { (readiness(m).await == 200).then_some(()) })
            .await
            .expect("every member ready");
    }
    // Every member has heard from every other one once they all name the same responsible
    // member for every address (`/operator/distro/client`), and more than one is named.
    let ports: Vec<String> = (0..30).map(|k| (8000 + k).to_string()).collect();
    let named = eventually(Duration::from_secs(10), || async {
        let mut views = Vec::new();
        for m in &cluster.members {
            views.push(responsible_servers(m, &ports).await?);
        }
        let distinct: std::collections::BTreeSet<&String> = views[0].iter().collect();
        (views.windows(2).all(|w| w[0] == w[1]) && distinct.len() > 1).then(|| views.swap_remove(0))
    })
    .await
    .expect("every member names the same responsible member for each address");
    for port in &ports {
        let (status, body) = call(client().post(cluster.members[0].url("/nacos/v1/ns/instance")).form(&[
            ("serviceName", "hashed"),
            ("ip", "10.7.7.1"),
            ("port", port.as_str()),
        ]))
        .await;
        assert_eq!(status, 200, "{body}");
    }
    for m in &cluster.members {
        eventually(Duration::from_secs(10), || async {
            let (_, body) =
                call(client().get(m.url("/nacos/v1/ns/instance/list")).query(&[("serviceName", "hashed")])).await;
            (json(&body)["hosts"].as_array().map_or(0, Vec::len) == 30).then_some(())
        })
        .await
        .expect("every member serves all 30 instances");
    }
    // Registered through member 1 only, owned where each address hashes to.
    let counts = [owned(&cluster.members[0]).await, owned(&cluster.members[1]).await, owned(&cluster.members[2]).await];
    assert_eq!(counts.iter().sum::<u64>(), 30, "one owner per client: {counts:?}");
    assert!(counts.iter().all(|c| *c > 0), "the clients are spread over the members: {counts:?}");
    // `/operator/distro/client` named the owner: each member owns as many clients as it was
    // named for, and is responsible for as many instances (one each).
    for (i, m) in cluster.members.iter().enumerate() {
        let me = m.http.to_string();
        let named_here = named.iter().filter(|s| **s == me).count() as u64;
        assert_eq!(named_here, counts[i], "member {} owns what distro/client says: {named:?}", i + 1);
        assert_eq!(responsible_instances(m).await, Some(counts[i]), "responsibleInstanceCount of member {}", i + 1);
    }
    let (_, switches) = call(client().get(cluster.members[0].url("/nacos/v1/ns/operator/switches"))).await;
    let switches = json(&switches);
    assert_eq!((&switches["distroEnabled"], &switches["enableStandalone"]), (&Value::Bool(true), &Value::Bool(false)));
    // Light beats sent to member 3 reach each client's owner (a member that does not own a
    // client would answer 20404 and make it re-register).
    for port in &ports {
        let (status, body) = call(client().put(cluster.members[2].url("/nacos/v1/ns/instance/beat")).query(&[
            ("serviceName", "hashed"),
            ("ip", "10.7.7.1"),
            ("port", port.as_str()),
        ]))
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(json(&body)["code"], 10200, "beat for port {port}: {body}");
    }
    let after = [owned(&cluster.members[0]).await, owned(&cluster.members[1]).await, owned(&cluster.members[2]).await];
    assert_eq!(after, counts, "beats moved no client");
}
