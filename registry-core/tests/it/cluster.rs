//! Raft clusters of real `registry` processes on 127.0.0.1: replication through every member,
//! leader failover without losing acknowledged writes, a paused follower catching up, snapshot
//! install for a member that fell behind, and refusal of bad peer input.

use std::time::Duration;

use registry_proto::contract::ports;
use serde_json::Value;

use crate::harness::{Server, call, client, eventually, free_member_ports, json};

pub(crate) struct Cluster {
    pub(crate) members: Vec<Server>,
}

impl Cluster {
    /// Starts `n` members; if a port was taken meanwhile (other tests run in parallel), tries
    /// again on other ports.
    pub(crate) fn start(n: usize, config: Option<&str>) -> Self {
        let mut last_error = String::new();
        for _ in 0..5 {
            let ports = free_member_ports(n);
            let started: Result<Vec<Server>, String> =
                (1..=n).map(|id| Server::try_start_member(id, &ports, config)).collect();
            match started {
                Ok(members) => return Self { members },
                Err(output) => last_error = output,
            }
        }
        panic!("could not start a {n}-member cluster; last output:\n{last_error}");
    }

    async fn raft(server: &Server) -> Option<Value> {
        let resp = client().get(server.url("/nacos/v2/core/cluster/raft")).send().await.ok()?;
        let body: Value = resp.json().await.ok()?;
        Some(body["data"].clone())
    }

    /// How member `viewer` finds member `peer` from its own calls (`UP`, `SUSPICIOUS`, `DOWN`:
    /// `DOWN` after three calls in a row got no answer); both are indexes into `members`.
    pub(crate) async fn peer_state(&self, viewer: usize, peer: usize) -> Option<String> {
        let url = self.members[viewer].url("/nacos/v1/core/cluster/nodes");
        let body: Value = client().get(url).send().await.ok()?.json().await.ok()?;
        let node = body["data"].as_array()?.iter().find(|n| n["extendInfo"]["nodeId"] == peer + 1)?;
        node["state"].as_str().map(str::to_owned)
    }

    /// Index of the member that every live member agrees is the leader.
    pub(crate) async fn leader(&self, alive: &[usize]) -> usize {
        eventually(Duration::from_secs(30), || async {
            let mut leaders = Vec::new();
            for &i in alive {
                leaders.push(Self::raft(&self.members[i]).await?["leader"].as_u64()?);
            }
            let first = *leaders.first()?;
            leaders.iter().all(|l| *l == first).then_some(first as usize - 1)
        })
        .await
        .expect("the live members agree on a leader")
    }
}

async fn register(server: &Server, service: &str, ip: &str) -> bool {
    let req = client().post(server.url("/nacos/v1/ns/instance")).timeout(Duration::from_secs(5)).form(&[
        ("serviceName", service),
        ("ip", ip),
        ("port", "80"),
        ("ephemeral", "false"),
    ]);
    matches!(req.send().await, Ok(r) if r.status() == 200)
}

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

async fn all_have(server: &Server, service: &str, want: &[String]) -> bool {
    let have = ips(server, service).await;
    want.iter().all(|w| have.contains(w))
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_through_every_member_reach_every_member() {
    let cluster = Cluster::start(3, None);
    cluster.leader(&[0, 1, 2]).await;
    let mut want = Vec::new();
    for (i, m) in cluster.members.iter().enumerate() {
        let ip = format!("10.0.0.{}", i + 1);
        assert!(register(m, "everywhere", &ip).await, "write through member {} failed:\n{}", i + 1, m.output());
        want.push(ip);
        let (status, body) = call(client().post(m.url("/nacos/v1/cs/configs")).form(&[
            ("dataId", format!("cfg-{i}").as_str()),
            ("group", "DEFAULT_GROUP"),
            ("content", "v"),
        ]))
        .await;
        assert_eq!((status, body.as_str()), (200, "true"));
    }
    want.sort();
    for m in &cluster.members {
        eventually(Duration::from_secs(10), || async { all_have(m, "everywhere", &want).await.then_some(()) })
            .await
            .expect("every member has every write");
        // Default reads are local: a member serves each config once it applied the write.
        for i in 0..3 {
            let served = eventually(Duration::from_secs(10), || async {
                let (status, body) = call(
                    client()
                        .get(m.url("/nacos/v1/cs/configs"))
                        .query(&[("dataId", format!("cfg-{i}").as_str()), ("group", "DEFAULT_GROUP")]),
                )
                .await;
                (status == 200 && body == "v").then_some(())
            })
            .await;
            assert!(served.is_some(), "cfg-{i} never served by a member");
        }
    }
    let (_, nodes) = call(client().get(cluster.members[0].url("/nacos/v1/core/cluster/nodes"))).await;
    let nodes = json(&nodes);
    assert_eq!(nodes["data"].as_array().map(Vec::len), Some(3));
    assert_eq!(nodes["data"].as_array().unwrap().iter().filter(|n| n["extendInfo"]["raftRole"] == "leader").count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_leader_with_writes_in_flight_loses_no_acknowledged_write() {
    use crate::workload::{Outcome, Writers, has_every_acked_write};

    let mut cluster = Cluster::start(3, None);
    let leader = cluster.leader(&[0, 1, 2]).await;
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    // Six clients write through the followers (forwarded to whoever leads) without pause, so
    // writes are in flight when the leader dies; a refused write is not retried (a new key
    // follows), and only acknowledged writes must survive.
    let writers = Writers::start_on(&[&cluster.members[others[0]], &cluster.members[others[1]]], 6, "failover");
    writers.wait_for(0, Outcome::Acked, 30, Duration::from_secs(30)).await;
    writers.next_epoch(); // 1: the kill is under way
    cluster.members[leader].kill9();
    let after_kill = writers.next_epoch(); // 2: the old leader is gone
    writers.wait_for(after_kill, Outcome::Acked, 30, Duration::from_secs(30)).await;
    let history = writers.stop().await;
    // Invoked before the kill began, answered once it was under way: in flight at the kill.
    let straddling = history.iter().filter(|w| w.epoch == 0 && w.answered_epoch >= 1).count();
    assert!(straddling > 0, "no write was in flight across the kill");
    let acked = history.iter().filter(|w| w.outcome == Outcome::Acked).count();

    let new_leader = cluster.leader(&others).await;
    assert_ne!(new_leader, leader);
    for &i in &others {
        let m = &cluster.members[i];
        eventually(Duration::from_secs(15), || async { has_every_acked_write(m, &history).await.then_some(()) })
            .await
            .unwrap_or_else(|| panic!("member {} lost some of the {acked} acknowledged writes", i + 1));
    }
    // The old leader comes back as a follower and catches up.
    cluster.members[leader].restart_same_ports();
    let m = &cluster.members[leader];
    eventually(Duration::from_secs(20), || async { has_every_acked_write(m, &history).await.then_some(()) })
        .await
        .expect("the restarted old leader has every acknowledged write");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_follower_catches_up_after_sigcont() {
    let cluster = Cluster::start(3, None);
    let leader = cluster.leader(&[0, 1, 2]).await;
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let pid = cluster.members[follower].pid().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let mut acked = Vec::new();
    for k in 0..30u32 {
        let ip = format!("10.2.0.{k}");
        assert!(register(&cluster.members[leader], "paused", &ip).await);
        acked.push(ip);
    }
    // The leader's own record, not a guess from a sleep: its appends to the paused follower
    // went unanswered three times in a row, so the follower missed them and their retries.
    eventually(Duration::from_secs(10), || async {
        (cluster.peer_state(leader, follower).await.as_deref() == Some("DOWN")).then_some(())
    })
    .await
    .expect("the leader's calls to the paused follower failed");
    assert!(std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    let m = &cluster.members[follower];
    eventually(Duration::from_secs(20), || async { all_have(m, "paused", &acked).await.then_some(()) })
        .await
        .expect("the resumed follower caught up");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_far_behind_is_caught_up_by_a_snapshot() {
    // Snapshots every 10 entries, 2 kept: a member that misses 100 entries needs a snapshot.
    let config = "[raft]\nsnapshot_after_logs = 10\nkeep_logs_after_snapshot = 2\n";
    let mut cluster = Cluster::start(3, Some(config));
    let leader = cluster.leader(&[0, 1, 2]).await;
    let behind = (0..3).find(|i| *i != leader).unwrap();
    cluster.members[behind].kill9();
    let mut acked = Vec::new();
    for k in 0..100u32 {
        let ip = format!("10.3.0.{k}");
        assert!(register(&cluster.members[leader], "snap", &ip).await);
        acked.push(ip);
    }
    cluster.members[behind].restart_same_ports();
    let m = &cluster.members[behind];
    eventually(Duration::from_secs(30), || async { all_have(m, "snap", &acked).await.then_some(()) })
        .await
        .expect("the member that was down caught up");
    // Its own count, not a log line: it received and installed a snapshot since it restarted.
    let installs = Cluster::raft(m).await.and_then(|r| r["snapshotInstalls"].as_u64());
    assert!(installs.is_some_and(|n| n >= 1), "the member caught up without installing a snapshot: {installs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_peer_input_is_refused_and_the_cluster_stays_up() {
    use registry_proto::cluster::RaftRequest;
    use registry_proto::cluster::cluster_client::ClusterClient;

    let cluster = Cluster::start(3, None);
    let leader = cluster.leader(&[0, 1, 2]).await;
    let target = &cluster.members[(leader + 1) % 3];
    let cluster_addr = target.cluster.to_string();

    // Garbage bytes on the cluster port.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(&cluster_addr).unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\n\r\n\x00\x01\x02garbage");
    }
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{cluster_addr}")).unwrap().connect().await.unwrap();
    let mut c = ClusterClient::new(channel);
    // No sender id.
    let r = c.vote(RaftRequest { json: b"{}".to_vec() }).await;
    assert_eq!(r.unwrap_err().code(), tonic::Code::Unauthenticated);
    // An unknown member.
    let mut req = tonic::Request::new(RaftRequest { json: b"{}".to_vec() });
    req.metadata_mut().insert("x-registry-node", "99".parse().unwrap());
    assert_eq!(c.vote(req).await.unwrap_err().code(), tonic::Code::PermissionDenied);
    // A known member claiming to vote for another one.
    let other = (leader + 2) % 3 + 1;
    let forged = format!(
        r#"{{"vote":{{"leader_id":{{"term":99,"node_id":{}}},"committed":false}},"last_log_id":null}}"#,
        leader + 1
    );
    let mut req = tonic::Request::new(RaftRequest { json: forged.into_bytes() });
    req.metadata_mut().insert("x-registry-node", other.to_string().parse().unwrap());
    assert_eq!(c.vote(req).await.unwrap_err().code(), tonic::Code::PermissionDenied);
    // Undecodable JSON from a known member.
    let mut req = tonic::Request::new(RaftRequest { json: b"not json".to_vec() });
    req.metadata_mut().insert("x-registry-node", other.to_string().parse().unwrap());
    assert_eq!(c.append_entries(req).await.unwrap_err().code(), tonic::Code::InvalidArgument);

    // A known member's id from another cluster (its cluster id differs): refused and counted.
    let mut req = tonic::Request::new(RaftRequest { json: b"{}".to_vec() });
    req.metadata_mut().insert("x-registry-node", other.to_string().parse().unwrap());
    req.metadata_mut().insert("x-registry-cluster", "another-cluster".parse().unwrap());
    assert_eq!(c.append_entries(req).await.unwrap_err().code(), tonic::Code::PermissionDenied);
    let (_, metrics) = call(client().get(target.url("/metrics"))).await;
    assert!(
        metrics.lines().any(|l| l == "registry_cluster_refused_requests_total 1"),
        "the other cluster's request is counted"
    );

    assert_eq!(cluster.leader(&[0, 1, 2]).await, leader, "the cluster kept its leader");
    assert!(register(target, "still-up", "10.4.0.1").await);
}

pub(crate) async fn admin(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    form: &[(&str, String)],
) -> (u16, String) {
    call(client().request(method, server.url(path)).form(form)).await
}

async fn voters(server: &Server) -> usize {
    Cluster::raft(server)
        .await
        .and_then(|r| r["members"].as_array().map(|m| m.iter().filter(|x| x["role"] != "learner").count()))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn grows_to_five_and_shrinks_to_three_through_the_admin_api_without_losing_writes() {
    let ports = free_member_ports(5);
    let mut members: Vec<Server> = (1..=3).map(|id| Server::start_member(id, &ports[..3], None)).collect();
    let mut cluster = Cluster { members: Vec::new() };
    cluster.members.append(&mut members);
    let leader = cluster.leader(&[0, 1, 2]).await;
    let mut acked = Vec::new();
    let write = |k: u32| format!("10.5.0.{k}");
    for k in 0..10 {
        let ip = write(k);
        assert!(register(&cluster.members[leader], "grow", &ip).await);
        acked.push(ip);
    }
    for id in 4..=5usize {
        cluster.members.push(Server::start_member(id, &ports, None));
        let l = &cluster.members[leader];
        let form = [("nodeId", id.to_string()), ("address", format!("127.0.0.1:{}", ports[id - 1]))];
        let (status, body) = admin(l, reqwest::Method::POST, "/nacos/v2/core/cluster/members", &form).await;
        assert_eq!(status, 200, "add learner {id}: {body}");
        let promoted = eventually(Duration::from_secs(20), || async {
            let form = [("nodeId", id.to_string())];
            let (status, _) = admin(l, reqwest::Method::POST, "/nacos/v2/core/cluster/members/promote", &form).await;
            (status == 200).then_some(())
        })
        .await;
        assert!(promoted.is_some(), "node {id} promoted once caught up");
    }
    assert_eq!(voters(&cluster.members[leader]).await, 5);
    for k in 10..20 {
        let ip = write(k);
        assert!(register(&cluster.members[(k as usize) % 5], "grow", &ip).await);
        acked.push(ip);
    }
    for m in &cluster.members {
        eventually(Duration::from_secs(20), || async { all_have(m, "grow", &acked).await.then_some(()) })
            .await
            .expect("all five members have every write");
    }
    for id in [5usize, 4] {
        let (status, body) = admin(
            &cluster.members[leader],
            reqwest::Method::DELETE,
            "/nacos/v2/core/cluster/members",
            &[("nodeId", id.to_string())],
        )
        .await;
        assert_eq!(status, 200, "remove {id}: {body}");
    }
    assert_eq!(voters(&cluster.members[leader]).await, 3);
    for k in 20..30 {
        let ip = write(k);
        assert!(register(&cluster.members[(k as usize) % 3], "grow", &ip).await);
        acked.push(ip);
    }
    for m in &cluster.members[..3] {
        eventually(Duration::from_secs(20), || async { all_have(m, "grow", &acked).await.then_some(()) })
            .await
            .expect("the three remaining members have every write");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_a_member_that_would_leave_no_reachable_quorum_is_refused() {
    let mut cluster = Cluster::start(3, None);
    let leader = cluster.leader(&[0, 1, 2]).await;
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    cluster.members[others[0]].kill9();
    // Removing the healthy follower would leave the leader and a dead member: no quorum.
    let victim = (others[1] + 1).to_string();
    let (status, body) = admin(
        &cluster.members[leader],
        reqwest::Method::DELETE,
        "/nacos/v2/core/cluster/members",
        &[("nodeId", victim)],
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("quorum"), "{body}");
    assert_eq!(voters(&cluster.members[leader]).await, 3);
    // Removing the dead one is safe and allowed.
    let dead = (others[0] + 1).to_string();
    let (status, body) =
        admin(&cluster.members[leader], reqwest::Method::DELETE, "/nacos/v2/core/cluster/members", &[("nodeId", dead)])
            .await;
    assert_eq!(status, 200, "{body}");
    assert!(register(&cluster.members[leader], "after-removal", "10.6.0.1").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn promoting_a_learner_that_never_answered_is_refused_and_writes_go_on() {
    // Found by the schema-driven fuzzer's reasoning: a learner at an address where nobody
    // answers has no replication progress; promoting it made it a voter every write waited for.
    let server = Server::start();
    let nobody = free_member_ports(1)[0];
    let form = [("nodeId", "7".to_owned()), ("address", format!("127.0.0.1:{nobody}"))];
    let (status, body) = admin(&server, reqwest::Method::POST, "/nacos/v2/core/cluster/members", &form).await;
    assert_eq!(status, 200, "add learner: {body}");
    let promote = client()
        .post(server.url("/nacos/v2/core/cluster/members/promote"))
        .timeout(Duration::from_secs(10 * u64::from(crate::harness::patience())))
        .form(&[("nodeId", "7")]);
    let (status, body) = call(promote).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("not acknowledged"), "{body}");
    assert_eq!(voters(&server).await, 1);
    assert!(register(&server, "after-refused-promote", "10.8.0.1").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_restarted_on_a_new_address_rejoins_as_itself_and_catches_up() {
    let ports = free_member_ports(4);
    let mut cluster = Cluster { members: (1..=3).map(|id| Server::start_member(id, &ports[..3], None)).collect() };
    let leader = cluster.leader(&[0, 1, 2]).await;
    let moved = (leader + 1) % 3;
    let mut acked = Vec::new();
    for k in 0..5u32 {
        let ip = format!("10.7.0.{k}");
        assert!(register(&cluster.members[leader], "moved", &ip).await);
        acked.push(ip);
    }
    cluster.members[moved].kill9();
    for k in 5..15u32 {
        let ip = format!("10.7.0.{k}");
        assert!(register(&cluster.members[leader], "moved", &ip).await);
        acked.push(ip);
    }
    // Same node id and data, new ports (as a pod that comes back with a new IP).
    let mut new_ports = ports[..3].to_vec();
    new_ports[moved] = ports[3];
    cluster.members[moved].restart_as_member(moved + 1, &new_ports);
    let m = &cluster.members[moved];
    eventually(Duration::from_secs(30), || async { all_have(m, "moved", &acked).await.then_some(()) })
        .await
        .expect("the moved member caught up under its new address");
    let status = eventually(Duration::from_secs(10), || async {
        let s = Cluster::raft(&cluster.members[leader]).await?;
        let addr =
            s["members"].as_array()?.iter().find(|x| x["id"] == (moved + 1) as u64)?["address"].as_str()?.to_owned();
        (addr == format!("127.0.0.1:{}", ports[3] + registry_proto::contract::ports::CLUSTER_OFFSET)).then_some(s)
    })
    .await;
    assert!(status.is_some(), "the membership records the member's new address under the same id");
    assert_eq!(voters(&cluster.members[leader]).await, 3, "no member was added or lost");
}

/// A member back on a new address that wins the election before anyone learned the address
/// (the others cannot reach it back, so it can only lead) records its move itself: the follower
/// then forwards writes to it and serves linearizable reads again.
#[tokio::test(flavor = "multi_thread")]
async fn a_moved_member_that_leads_records_its_own_new_address() {
    let ports = free_member_ports(4);
    let mut cluster = Cluster { members: (1..=3).map(|id| Server::start_member(id, &ports[..3], None)).collect() };
    let leader = cluster.leader(&[0, 1, 2]).await;
    assert!(register(&cluster.members[leader], "moved-leader", "10.8.0.1").await);
    for m in &mut cluster.members {
        m.kill9();
    }
    // Member 1 comes back on new ports, member 2 on its old ones, member 3 stays down: only
    // member 1 can gather a quorum (member 2 asks for votes at member 1's old address).
    let mut new_ports = ports[..3].to_vec();
    new_ports[0] = ports[3];
    cluster.members[0].restart_as_member(1, &new_ports);
    cluster.members[1].restart_as_member(2, &ports[..3]);
    assert_eq!(cluster.leader(&[0, 1]).await, 0, "the moved member leads");
    let follower = &cluster.members[1];
    let written = eventually(Duration::from_secs(30), || async {
        register(follower, "moved-leader", "10.8.0.2").await.then_some(())
    })
    .await;
    assert!(written.is_some(), "a write through the follower reached the moved leader");
    let read = eventually(Duration::from_secs(10), || async {
        let req = client().get(follower.url("/nacos/v1/cs/configs")).query(&[
            ("dataId", "none"),
            ("group", "DEFAULT_GROUP"),
            ("consistency", "linearizable"),
        ]);
        matches!(req.send().await, Ok(r) if r.status() == 404).then_some(())
    })
    .await;
    assert!(read.is_some(), "the follower serves linearizable reads through the moved leader");
    let recorded = Cluster::raft(follower).await.and_then(|s| {
        let members = s["members"].as_array()?.clone();
        members.iter().find(|x| x["id"] == 1)?["address"].as_str().map(str::to_owned)
    });
    let want = format!("127.0.0.1:{}", ports[3] + registry_proto::contract::ports::CLUSTER_OFFSET);
    assert_eq!(recorded.as_deref(), Some(want.as_str()), "the membership records member 1's new address");
}

/// POSTs an admin request to whichever member accepts it (the leader; the others answer 409),
/// until one does (bounded).
async fn admin_post(members: &[Server], path: &str, query: &[(&str, String)]) {
    let done = eventually(Duration::from_secs(30), || async {
        for m in members {
            let req = client().post(m.url(path)).query(query).timeout(Duration::from_secs(5));
            if matches!(req.send().await, Ok(r) if r.status() == 200) {
                return Some(());
            }
        }
        None
    })
    .await;
    assert!(done.is_some(), "no member accepted POST {path} {query:?}");
}

/// The clients (`ip:port`) each member owns, from its Distro digest view.
async fn owned(server: &Server) -> Option<u64> {
    let (status, body) = call(client().get(server.url("/nacos/v2/core/distro/digest"))).await;
    (status == 200).then(|| json(&body)["data"]["owned"].as_u64()).flatten()
}

/// Members on unrelated ephemeral ports (HTTP, gRPC and cluster all 0): nothing may derive one
/// port from another. Each member lists the members before it by their real ports
/// (`host:http:cluster`) and its own entry with port 0 (it announces what it bound); the first
/// bootstraps alone and the others join through the admin API with both addresses, as the
/// operator adds members. A persistent write and a config publish sent to a follower go to the
/// leader over the cluster port; v1 ephemeral registrations go over HTTP to the member their
/// `ip:port` hashes to (they would all stay on the follower if it derived HTTP ports); all of
/// it reaches every member.
#[tokio::test(flavor = "multi_thread")]
async fn members_on_unrelated_ephemeral_ports_forward_and_replicate() {
    let mut members: Vec<Server> = Vec::new();
    for id in 1..=3u64 {
        let mut list: Vec<String> =
            members.iter().map(|m| format!("127.0.0.1:{}:{}", m.http.port(), m.cluster.port())).collect();
        list.push("127.0.0.1:0:0".to_owned());
        let flags = vec!["--node-id".to_owned(), id.to_string(), "--members".to_owned(), list.join(",")];
        let member = Server::start_with_args(flags);
        let (http, grpc, cluster) = (member.http.port(), member.grpc.port(), member.cluster.port());
        let derived = ports::grpc(http) == Some(grpc) || ports::cluster(http) == Some(cluster);
        assert!(!derived, "ports {http}/{grpc}/{cluster} look derived");
        let address = format!("127.0.0.1:{http}:{cluster}");
        members.push(member);
        if id > 1 {
            let node = ("nodeId", id.to_string());
            admin_post(&members, "/nacos/v2/core/cluster/members", &[node.clone(), ("address", address)]).await;
            admin_post(&members, "/nacos/v2/core/cluster/members/promote", &[node]).await;
        }
    }
    let cluster = Cluster { members };
    let leader = cluster.leader(&[0, 1, 2]).await;
    let raft = Cluster::raft(&cluster.members[leader]).await.expect("raft status");
    let recorded: Vec<(String, String)> = raft["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| (m["address"].as_str().unwrap_or("").to_owned(), m["httpAddress"].as_str().unwrap_or("").to_owned()))
        .collect();
    let mut expected: Vec<(String, String)> =
        cluster.members.iter().map(|m| (m.cluster.to_string(), m.http.to_string())).collect();
    expected.sort();
    let mut recorded_sorted = recorded.clone();
    recorded_sorted.sort();
    assert_eq!(recorded_sorted, expected, "the membership records every member's bound addresses");

    let follower = &cluster.members[(leader + 1) % 3];
    assert!(register(follower, "unrelated-ports", "10.6.0.1").await, "persistent write via a follower");
    let (status, body) = call(client().post(follower.url("/nacos/v1/cs/configs")).form(&[
        ("dataId", "unrelated-ports"),
        ("group", "DEFAULT_GROUP"),
        ("content", "v1"),
    ]))
    .await;
    assert_eq!((status, body.as_str()), (200, "true"), "config publish via a follower");

    // The follower hashes v1 clients over the members it finds healthy: wait until that is all.
    let all_up = eventually(Duration::from_secs(20), || async {
        let (_, body) = call(client().get(follower.url("/nacos/v1/core/cluster/nodes"))).await;
        let nodes = json(&body)["data"].as_array().cloned()?;
        (nodes.len() == 3 && nodes.iter().all(|n| n["state"] == "UP")).then_some(())
    })
    .await;
    assert!(all_up.is_some(), "the follower sees every member UP");
    let ephemeral: Vec<String> = (1..=12).map(|i| format!("10.8.0.{i}")).collect();
    for ip in &ephemeral {
        let (status, body) = call(client().post(follower.url("/nacos/v1/ns/instance")).form(&[
            ("serviceName", "unrelated-ephemeral"),
            ("ip", ip.as_str()),
            ("port", "80"),
        ]))
        .await;
        assert_eq!((status, body.as_str()), (200, "ok"), "v1 ephemeral register of {ip}");
    }

    for m in &cluster.members {
        let replicated = eventually(Duration::from_secs(10), || async {
            (all_have(m, "unrelated-ports", &["10.6.0.1".to_owned()]).await
                && all_have(m, "unrelated-ephemeral", &ephemeral).await)
                .then_some(())
        })
        .await;
        assert!(
            replicated.is_some(),
            "every member has every instance:
{}",
            m.output()
        );
        let (status, body) = call(
            client()
                .get(m.url("/nacos/v1/cs/configs"))
                .query(&[("dataId", "unrelated-ports"), ("group", "DEFAULT_GROUP")]),
        )
        .await;
        assert_eq!((status, body.as_str()), (200, "v1"));
    }
    // Forwarded over HTTP, each v1 client is owned by the member it hashes to: all three own some.
    let mut owners = Vec::new();
    for m in &cluster.members {
        owners.push(owned(m).await.expect("distro digest"));
    }
    assert_eq!(owners.iter().sum::<u64>(), 12, "each v1 client has one owner: {owners:?}");
    assert!(owners.iter().all(|o| *o > 0), "v1 writes were forwarded to every responsible member: {owners:?}");
}

pub(crate) fn signal(server: &Server, signal: &str) {
    let pid = server.pid().expect("the member runs").to_string();
    assert!(std::process::Command::new("kill").args([signal, &pid]).status().unwrap().success());
}

async fn publish(server: &Server, data_id: &str, content: &str) -> bool {
    let req = client().post(server.url("/nacos/v1/cs/configs")).timeout(Duration::from_secs(5)).form(&[
        ("dataId", data_id),
        ("group", "DEFAULT_GROUP"),
        ("content", content),
    ]);
    matches!(req.send().await, Ok(r) if r.status() == 200)
}

/// A v1 config read on `server`, `consistency` as given (`None`: the default, local).
async fn read_config(server: &Server, data_id: &str, consistency: Option<&str>) -> (u16, String) {
    let mut query = vec![("dataId", data_id), ("group", "DEFAULT_GROUP")];
    query.extend(consistency.map(|c| ("consistency", c)));
    call(client().get(server.url("/nacos/v1/cs/configs")).query(&query)).await
}

pub(crate) async fn readiness(server: &Server) -> u16 {
    call(client().get(server.url("/nacos/v1/console/health/readiness"))).await.0
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resumed_follower_is_ready_only_once_it_caught_up_with_the_leader() {
    let cluster = Cluster::start(3, None);
    let leader = cluster.leader(&[0, 1, 2]).await;
    let follower = &cluster.members[(leader + 1) % 3];
    eventually(Duration::from_secs(20), || async { (readiness(follower).await == 200).then_some(()) })
        .await
        .expect("a caught-up follower is ready");
    signal(follower, "-STOP");
    for k in 0..200u32 {
        assert!(publish(&cluster.members[leader], "ready-probe", &format!("v{k}")).await);
    }
    // The leader is frozen before the follower resumes, so the follower is provably behind
    // when it answers: nobody can send it the 200 writes until a new leader is elected (an
    // election timeout away, and it needs the follower's own vote). It must say "not ready"
    // (it cannot confirm with the leader that it caught up), not judge from its own state.
    let leader_server = &cluster.members[leader];
    signal(leader_server, "-STOP");
    signal(follower, "-CONT");
    let first = readiness(follower).await;
    signal(leader_server, "-CONT");
    assert_eq!(first, 503, "a resumed follower that had missed 200 writes answered ready");

    // From then on: whenever it says ready, a plain local read on it already shows the last
    // write acknowledged before the readiness call.
    let mut ready_seen = 0;
    for k in 200..400u32 {
        let content = format!("v{k}");
        // The resumed follower may start an election (its timer ran out while stopped), so the
        // write is retried through any member until one acknowledges it.
        eventually(Duration::from_secs(20), || async {
            for m in &cluster.members {
                if publish(m, "ready-probe", &content).await {
                    return Some(());
                }
            }
            None
        })
        .await
        .expect("the write is acknowledged");
        if readiness(follower).await == 200 {
            ready_seen += 1;
            let (status, body) = read_config(follower, "ready-probe", None).await;
            assert_eq!((status, body.as_str()), (200, content.as_str()), "ready but stale after write {k}");
        }
        if ready_seen >= 20 {
            break;
        }
    }
    assert!(ready_seen >= 20, "the resumed follower became ready ({ready_seen} ready answers)");
}

#[tokio::test(flavor = "multi_thread")]
async fn linearizable_config_reads_on_a_follower_see_every_acknowledged_publish() {
    let mut cluster = Cluster::start(3, None);
    let leader = cluster.leader(&[0, 1, 2]).await;
    let follower = (leader + 1) % 3;
    for k in 0..30u32 {
        let content = format!("v{k}");
        assert!(publish(&cluster.members[leader], "linear", &content).await);
        let (status, body) = read_config(&cluster.members[follower], "linear", Some("linearizable")).await;
        assert_eq!((status, body.as_str()), (200, content.as_str()), "linearizable read after write {k}");
    }
    // A follower that missed writes while paused serves them to a linearizable read at once.
    signal(&cluster.members[follower], "-STOP");
    assert!(publish(&cluster.members[leader], "linear", "while-paused").await);
    signal(&cluster.members[follower], "-CONT");
    let (status, body) = read_config(&cluster.members[follower], "linear", Some("linearizable")).await;
    assert_eq!((status, body.as_str()), (200, "while-paused"));

    let (status, body) = read_config(&cluster.members[follower], "linear", Some("eventual-ish")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("consistency"), "{body}");

    // Without a quorum no read index exists: a linearizable read is refused, a local one served.
    let others: Vec<usize> = (0..3).filter(|i| *i != follower).collect();
    for i in others {
        cluster.members[i].kill9();
    }
    let (status, body) = read_config(&cluster.members[follower], "linear", Some("linearizable")).await;
    assert_eq!(status, 503, "{body}");
    let (status, body) = read_config(&cluster.members[follower], "linear", None).await;
    assert_eq!((status, body.as_str()), (200, "while-paused"));
}
