//! A `NacosCluster` whose members are real `registry` processes: the StatefulSet controller of
//! the real control plane makes the pods, the process kubelet runs them (a network namespace
//! each, the operator's volumes and command, cluster DNS for `--peer-dns`), and the in-process
//! operator drives Raft membership through the members' admin API. Writers keep publishing
//! configs through the members while the cluster scales or loses a pod; every acknowledged
//! write must be on every member at the end.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use nacos_operator::crd::{ConditionStatus, ConditionType, MemberRole, NacosCluster};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::cluster::{NAME, create_cluster};
use crate::cluster_dns::{self, resolver};
use crate::harness::{ControlPlane, eventually, workspace_binary};
use crate::kubelet::{Images, Kubelet};
use crate::operator::Operator;

/// The members' HTTP port (the CRD's default).
pub(crate) const HTTP_PORT: u16 = 8848;
/// Concurrent writers while the cluster changes.
const WRITERS: usize = 3;
/// How long members may take to form or change (process starts, DNS, elections, catch-up).
const SETTLE: Duration = Duration::from_secs(120);

/// The control plane, the lab with the kubelet, the operator: everything a test here needs.
struct Setup {
    client: Client,
    namespace: String,
    kubelet: Kubelet,
    _operator: Operator,
    _plane: ControlPlane,
}

async fn setup(test: &str) -> Option<Setup> {
    let plane = ControlPlane::start()?;
    let lab = netlab::start_or_skip("apiserver-tier members", "APISERVER_TIER_REQUIRED")?;
    let client = plane.client().await;
    let namespace = plane.namespace(&client, test).await;
    let registry = workspace_binary("registry-core", "registry");
    let bin = registry.parent().expect("binary dir");
    let kubelet = Kubelet::start(client.clone(), &namespace, lab, bin, Images::new()).await;
    let dns = cluster_dns::Resolver(resolver(SocketAddr::from((kubelet.gateway(), 53))));
    let operator = Operator::start_in_cluster(client.clone(), dns, None).await;
    Some(Setup { client, namespace, kubelet, _operator: operator, _plane: plane })
}

impl Setup {
    fn clusters(&self) -> Api<NacosCluster> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn await_voters(&self, voters: u64) -> NacosCluster {
        await_voters(&self.client, &self.namespace, &self.kubelet, voters).await
    }

    async fn scale(&self, replicas: i32) {
        let patch = json!({ "spec": { "replicas": replicas } });
        self.clusters().patch(NAME, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("scale");
    }

    /// The HTTP address of member pod `ordinal`, while the kubelet runs it.
    fn member(&self, ordinal: u32) -> Option<SocketAddr> {
        self.kubelet.pod_ip(&format!("{NAME}-{ordinal}")).map(|ip| SocketAddr::from((ip, HTTP_PORT)))
    }
}

/// Waits until the status of the cluster `nacos` in `namespace` shows `voters` voters (members
/// 1..=voters, no learner), as many ready pods, a leader and `Available=True`; panics with the
/// status and the members' logs otherwise.
pub(crate) async fn await_voters(client: &Client, namespace: &str, kubelet: &Kubelet, voters: u64) -> NacosCluster {
    let want: BTreeSet<u64> = (1..=voters).collect();
    let api: Api<NacosCluster> = Api::namespaced(client.clone(), namespace);
    let settled = eventually(SETTLE, || async {
        let cluster = api.get(NAME).await.ok()?;
        let status = cluster.status.as_ref()?;
        let ids: BTreeSet<u64> = status.members.iter().map(|m| m.node_id).collect();
        let all_voters = status.members.iter().all(|m| m.role != MemberRole::Learner);
        let available =
            status.conditions.iter().any(|c| c.type_ == ConditionType::Available && c.status == ConditionStatus::True);
        let ready = i64::from(status.ready_replicas) == i64::try_from(voters).unwrap_or(i64::MAX);
        (ids == want && all_voters && available && ready && status.leader.is_some()).then_some(cluster)
    })
    .await;
    match settled {
        Some(cluster) => cluster,
        None => panic!("{voters} voters: last status {:#?}\n{}", api.get(NAME).await.map(|c| c.status), kubelet.logs()),
    }
}

/// The CA (PEM) of the operator-managed members' certificate of cluster `nacos`.
pub(crate) async fn member_ca(client: &Client, namespace: &str) -> Vec<u8> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets.get(&format!("{NAME}-tls")).await.expect("members' Secret");
    secret.data.as_ref().and_then(|d| d.get("ca.crt")).map(|c| c.0.clone()).expect("ca.crt")
}

/// An HTTPS client trusting only `ca`, reaching `host` at `address`.
pub(crate) fn trusting(ca: &[u8], host: &str, address: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca).expect("CA"))
        .resolve(host, address)
        .build()
        .expect("https client")
}

pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).no_proxy().build().expect("http client")
}

/// Writers publishing distinct configs through members 0..3 in turn until stopped.
struct Writers {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<Tally>>,
}

/// What the writers saw.
#[derive(Debug, Default)]
struct Tally {
    /// Data ids whose publish was acknowledged.
    acknowledged: Vec<String>,
    /// Publishes refused or failed (a member away, no leader for a moment).
    failed: u64,
    /// The slowest answer.
    slowest: Duration,
}

impl Writers {
    fn start(members: Vec<IpAddr>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..WRITERS)
            .map(|writer| {
                let (stop, members) = (stop.clone(), members.clone());
                tokio::spawn(async move {
                    let client = http();
                    let mut tally = Tally::default();
                    let mut n = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let data_id = format!("w{writer}-{n}");
                        let member = members[(writer + n) % members.len()];
                        let url = format!("http://{member}:{HTTP_PORT}/nacos/v1/cs/configs");
                        let form = [("dataId", data_id.as_str()), ("group", "scale"), ("content", "v")];
                        let sent = Instant::now();
                        let answer = client.post(url).form(&form).send().await;
                        let acknowledged = match answer {
                            Ok(response) if response.status().is_success() => {
                                response.text().await.is_ok_and(|t| t == "true")
                            }
                            _ => false,
                        };
                        tally.slowest = tally.slowest.max(sent.elapsed());
                        if acknowledged {
                            tally.acknowledged.push(data_id);
                        } else {
                            tally.failed += 1;
                        }
                        n += 1;
                        // Pacing, not a wait for a condition: a few writes a second per writer.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    tally
                })
            })
            .collect();
        Self { stop, tasks }
    }

    async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Tally::default();
        for task in self.tasks {
            let tally = task.await.expect("writer");
            all.acknowledged.extend(tally.acknowledged);
            all.failed += tally.failed;
            all.slowest = all.slowest.max(tally.slowest);
        }
        all
    }
}

/// Waits until every one of `data_ids` reads back from the member at `addr` (default reads are
/// the member's own copy, so a lagging member shows).
async fn assert_holds(addr: SocketAddr, data_ids: &[String], what: &str) {
    let client = http();
    let missing = |client: reqwest::Client| async move {
        let mut missing = Vec::new();
        for data_id in data_ids {
            let url = format!("http://{addr}/nacos/v1/cs/configs?dataId={data_id}&group=scale");
            let found = client.get(url).send().await.ok().filter(|r| r.status().is_success());
            if found.is_none() {
                missing.push(data_id.clone());
            }
        }
        missing
    };
    let held = eventually(Duration::from_secs(30), || {
        let client = client.clone();
        async move { missing(client).await.is_empty().then_some(()) }
    })
    .await;
    if held.is_none() {
        panic!("{what} ({addr}) lacks acknowledged writes: {:?}", missing(client).await);
    }
}

async fn member_ips(setup: &Setup, ordinals: std::ops::Range<u32>) -> Vec<IpAddr> {
    ordinals.map(|o| setup.member(o).map(|a| a.ip()).expect("member pod runs")).collect()
}

#[tokio::test]
async fn real_members_scale_3_to_5_to_3_with_writes_in_flight_and_lose_nothing() {
    let Some(setup) = setup("scale").await else { return };
    create_cluster(&setup.client, &setup.namespace, json!({ "replicas": 3 })).await;
    setup.await_voters(3).await;
    let writers = Writers::start(member_ips(&setup, 0..3).await);

    setup.scale(5).await;
    let five = setup.await_voters(5).await;
    assert_eq!(five.status.as_ref().map(|s| s.ready_replicas), Some(5), "five ready pods");
    setup.scale(3).await;
    setup.await_voters(3).await;
    let statefulsets: Api<StatefulSet> = Api::namespaced(setup.client.clone(), &setup.namespace);
    let shrunk = eventually(SETTLE, || async {
        let replicas = statefulsets.get(NAME).await.ok()?.spec?.replicas;
        let gone = setup.member(3).is_none() && setup.member(4).is_none();
        (replicas == Some(3) && gone).then_some(())
    })
    .await;
    assert!(shrunk.is_some(), "the StatefulSet shrank to 3 and pods 3 and 4 stopped");

    let tally = writers.finish().await;
    assert!(!tally.acknowledged.is_empty(), "writes ran during the scaling");
    println!(
        "scale 3 -> 5 -> 3: {} writes acknowledged, {} failed, slowest {:?}",
        tally.acknowledged.len(),
        tally.failed,
        tally.slowest
    );
    let acknowledged = tally.acknowledged;
    for ordinal in 0..3 {
        let addr = setup.member(ordinal).expect("member pod runs");
        assert_holds(addr, &acknowledged, &format!("member pod {ordinal}")).await;
    }
}

#[tokio::test]
async fn a_deleted_member_pod_comes_back_as_the_same_member_with_its_data() {
    let Some(setup) = setup("pod-deletion").await else { return };
    create_cluster(&setup.client, &setup.namespace, json!({ "replicas": 3 })).await;
    setup.await_voters(3).await;
    let writers = Writers::start(member_ips(&setup, 0..3).await);
    let victim = format!("{NAME}-1");
    let old_uid = setup.kubelet.pod_uid(&victim).expect("pod 1 runs");

    let pods: Api<Pod> = Api::namespaced(setup.client.clone(), &setup.namespace);
    pods.delete(&victim, &DeleteParams::default()).await.expect("delete pod 1");
    let back = eventually(SETTLE, || async {
        setup.kubelet.pod_uid(&victim).filter(|uid| *uid != old_uid).and(setup.member(1))
    })
    .await
    .expect("the StatefulSet made pod 1 again and the kubelet runs it");
    let cluster = setup.await_voters(3).await;
    let member = cluster.status.as_ref().and_then(|s| s.members.iter().find(|m| m.node_id == 2).cloned());
    assert_eq!(member.and_then(|m| m.pod), Some(victim.clone()), "node 2 is pod 1 again");
    // Ready means caught up with the committed log on the store it had: a member back on an
    // empty store would be displaced and never ready.
    let url = format!("http://{back}/nacos/v1/console/health/readiness");
    let ready =
        eventually(SETTLE, || async { http().get(&url).send().await.ok()?.status().is_success().then_some(()) });
    assert!(ready.await.is_some(), "the member that came back is ready");

    let tally = writers.finish().await;
    assert!(!tally.acknowledged.is_empty(), "writes ran across the deletion");
    println!(
        "pod deletion: {} writes acknowledged, {} failed, slowest {:?}",
        tally.acknowledged.len(),
        tally.failed,
        tally.slowest
    );
    let acknowledged = tally.acknowledged;
    assert_holds(back, &acknowledged, "the member that came back").await;
    for ordinal in [0, 2] {
        let addr = setup.member(ordinal).expect("member pod runs");
        assert_holds(addr, &acknowledged, &format!("member pod {ordinal}")).await;
    }
}

#[tokio::test]
async fn real_members_with_operator_managed_tls_form_over_mutual_tls_and_serve_only_tls() {
    let Some(setup) = setup("tls-members").await else { return };
    create_cluster(&setup.client, &setup.namespace, json!({ "replicas": 3, "tls": { "clientFacing": true } })).await;
    // Available with three voters: the members reached each other over mutual TLS with the
    // operator's certificate, and the operator read their Raft view over HTTPS.
    setup.await_voters(3).await;

    let ca = member_ca(&setup.client, &setup.namespace).await;
    let member = setup.member(0).expect("member pod runs");
    let host = format!("{NAME}-0.{NAME}-headless.{}.svc.cluster.local", setup.namespace);
    let trusting = trusting(&ca, &host, member);
    let readiness = format!("https://{host}:{HTTP_PORT}/nacos/v1/console/health/readiness");
    let answer = trusting.get(&readiness).send().await.map(|r| r.status().as_u16());
    assert_eq!(answer.ok(), Some(200), "a client trusting the cluster CA reaches the member by its name");
    let plain = http().get(format!("http://{member}/nacos/v1/console/health/readiness")).send().await;
    assert!(plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()), "plain HTTP is not served");
}
