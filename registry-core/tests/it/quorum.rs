//! Cluster safety under member loss, with real processes and several clients writing at the
//! moment of each fault: a leader left without a quorum answers every write with an error
//! within the write timeout and takes writes again once the quorum is back, losing nothing
//! acknowledged; a member restarted on an empty store under a voter's id helps commit nothing
//! until it has been re-added through the membership path (learner, then promoted).

use std::time::Duration;

use serde_json::Value;

use crate::cluster::{Cluster, admin, readiness};
use crate::harness::{Server, client, eventually, metric, patience};
use crate::workload::{Outcome, WRITE_BOUND, Writers, has_every_acked_write, publish};

async fn raft_status(server: &Server) -> Option<Value> {
    let resp = client().get(server.url("/nacos/v2/core/cluster/raft")).send().await.ok()?;
    let body: Value = resp.json().await.ok()?;
    Some(body["data"].clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_left_alone_fails_every_write_in_bounded_time_and_takes_writes_again_with_its_quorum() {
    let mut cluster = Cluster::start(3, None);
    let leader = cluster.leader(&[0, 1, 2]).await;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let writers = Writers::start(&cluster.members[leader], 4, "alone");
    writers.wait_for(0, Outcome::Acked, 20, Duration::from_secs(30)).await;
    let refused_before = metric(&cluster.members[leader], "registry_raft_writes_refused_no_quorum_total").await;

    // Both followers die while four clients write through the leader.
    // Writes invoked while the kills are under way may still commit; from the moment both
    // followers are gone, none may.
    writers.next_epoch();
    for &f in &followers {
        cluster.members[f].kill9();
    }
    let alone = writers.next_epoch();
    let lone = &cluster.members[leader];
    writers.wait_for(alone, Outcome::Refused, 20, Duration::from_secs(30)).await;
    assert_eq!(writers.count(alone, Outcome::Acked), 0, "a write invoked after the quorum was gone was acknowledged");
    let status = raft_status(lone).await.expect("status");
    assert_eq!(status["leader"], Value::Null, "a leader without a quorum reports no leader: {status}");
    assert_eq!(status["leaseLapsed"], true, "{status}");
    assert_eq!(readiness(lone).await, 503);
    let refused = metric(lone, "registry_raft_writes_refused_no_quorum_total").await;
    assert!(refused > refused_before, "refusals counted ({refused_before} → {refused})");

    // The quorum comes back: writes through the same member succeed again.
    let healed = writers.next_epoch();
    for &f in &followers {
        cluster.members[f].restart_same_ports();
    }
    writers.wait_for(healed, Outcome::Acked, 20, Duration::from_secs(60)).await;
    let history = writers.stop().await;

    for (i, member) in cluster.members.iter().enumerate() {
        let converged = eventually(Duration::from_secs(30), || async {
            has_every_acked_write(member, &history).await.then_some(())
        })
        .await;
        assert!(converged.is_some(), "member {} lacks an acknowledged write", i + 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_voter_back_on_an_empty_store_helps_commit_nothing_until_it_is_re_added_as_a_learner() {
    let mut cluster = Cluster::start(3, None);
    let ports: Vec<u16> = cluster.members.iter().map(|m| m.http.port()).collect();
    let leader = cluster.leader(&[0, 1, 2]).await;
    let (survivor, lost) = match leader {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    // Every member's store is bound once the leader has heard from each.
    let bound = eventually(Duration::from_secs(20), || async {
        let s = raft_status(&cluster.members[leader]).await?;
        s["members"].as_array()?.iter().all(|m| m["store"].as_str().is_some_and(|s| !s.is_empty())).then_some(())
    })
    .await;
    assert!(bound.is_some(), "stores bound");

    let writers = Writers::start(&cluster.members[leader], 3, "impostor");
    writers.wait_for(0, Outcome::Acked, 15, Duration::from_secs(30)).await;

    // Two members die; a fresh process with an empty store takes one's id and ports.
    // Writes invoked while the kills are under way may still commit; from the moment both
    // are gone, none may.
    writers.next_epoch();
    cluster.members[survivor].kill9();
    cluster.members[lost].kill9();
    let without_quorum = writers.next_epoch();
    cluster.members[lost] = Server::start_member(lost + 1, &ports, None);
    let refused_answers = eventually(Duration::from_secs(30), || async {
        let n = metric(&cluster.members[leader], "registry_raft_refused_answers_total").await;
        (n > 0).then_some(n)
    })
    .await;
    assert!(refused_answers.is_some(), "the impostor's answers are refused");
    let displaced = eventually(Duration::from_secs(30), || async {
        (raft_status(&cluster.members[lost]).await?["displaced"] == true).then_some(())
    })
    .await;
    assert!(displaced.is_some(), "the impostor learns it is displaced");
    assert_eq!(readiness(&cluster.members[lost]).await, 503, "a displaced member is not ready");
    writers.wait_for(without_quorum, Outcome::Refused, 20, Duration::from_secs(30)).await;
    assert_eq!(
        writers.count(without_quorum, Outcome::Acked),
        0,
        "a write was acknowledged with only the leader and an empty store"
    );

    // The real member returns: a real quorum again.
    let healed = writers.next_epoch();
    cluster.members[survivor].restart_same_ports();
    writers.wait_for(healed, Outcome::Acked, 15, Duration::from_secs(60)).await;
    let history = writers.stop().await;

    // The membership path: remove the lost id, add it back as a learner, promote it.
    let now_leader = cluster.leader(&[leader, survivor]).await;
    let l = &cluster.members[now_leader];
    let id = (lost + 1).to_string();
    let removed = eventually(Duration::from_secs(30), || async {
        let (status, _) =
            admin(l, reqwest::Method::DELETE, "/nacos/v2/core/cluster/members", &[("nodeId", id.clone())]).await;
        (status == 200).then_some(())
    })
    .await;
    assert!(removed.is_some(), "the lost member removed");
    let address = format!("127.0.0.1:{}", ports[lost]);
    let form = [("nodeId", id.clone()), ("address", address)];
    let (status, body) = admin(l, reqwest::Method::POST, "/nacos/v2/core/cluster/members", &form).await;
    assert_eq!(status, 200, "added back as a learner: {body}");
    let promoted = eventually(Duration::from_secs(30), || async {
        let (status, _) =
            admin(l, reqwest::Method::POST, "/nacos/v2/core/cluster/members/promote", &[("nodeId", id.clone())]).await;
        (status == 200).then_some(())
    })
    .await;
    assert!(promoted.is_some(), "promoted once caught up");
    let store =
        raft_status(&cluster.members[lost]).await.expect("status")["storeId"].as_str().expect("store id").to_owned();
    let rebound = eventually(Duration::from_secs(20), || async {
        let s = raft_status(l).await?;
        let me = s["members"].as_array()?.iter().find(|m| m["id"] == lost as u64 + 1)?.clone();
        (me["store"] == store.as_str() && me["role"] != "learner").then_some(())
    })
    .await;
    assert!(rebound.is_some(), "the re-added member votes with its new store");
    let ready = eventually(Duration::from_secs(30), || async {
        (readiness(&cluster.members[lost]).await == 200).then_some(())
    })
    .await;
    assert!(ready.is_some(), "the re-added member is ready");

    // Now it counts: with the other original member gone, it and the first leader commit.
    let other = if now_leader == leader { survivor } else { now_leader };
    let keep = if other == leader { survivor } else { leader };
    cluster.members[other].kill9();
    let http = reqwest::Client::builder().timeout(WRITE_BOUND * patience()).build().expect("client");
    let committed = eventually(Duration::from_secs(30), || async {
        (publish(&http, &cluster.members[keep].url(""), "after-readd", "ok").await == Ok(Outcome::Acked)).then_some(())
    })
    .await;
    assert!(committed.is_some(), "a quorum of the remaining original member and the re-added one commits");
    assert!(
        eventually(Duration::from_secs(30), || async {
            has_every_acked_write(&cluster.members[lost], &history).await.then_some(())
        })
        .await
        .is_some(),
        "the re-added member holds every acknowledged write"
    );
}
