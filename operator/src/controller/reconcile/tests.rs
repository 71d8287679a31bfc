//! Reconcile against a scripted API server and a fake registry: the exact requests, their order
//! relative to membership calls, the status written and the events published.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::mock::{self, Expect, FakeRegistry, Timeline};
use super::{Context, Error, error_policy, reconcile};
use crate::controller::server::{EndpointsApi, KubeVersion, PdbVersion, ServerCapabilities};
use crate::crd::MemberRole::{self, Follower, Leader};
use crate::crd::{ConditionStatus, ConditionType, NacosCluster, NacosClusterStatus};
use crate::fixtures;
use crate::metrics::Metrics;

mod spec;
mod tls;

const STS: &str = "/apis/apps/v1/namespaces/registry/statefulsets/nacos";
const SECRET: &str = "/api/v1/namespaces/registry/secrets/nacos-auth";
const CONFIG_MAP: &str = "/api/v1/namespaces/registry/configmaps/nacos-config?&force=true&fieldManager=nacos-operator";
const HEADLESS: &str = "/api/v1/namespaces/registry/services/nacos-headless?&force=true&fieldManager=nacos-operator";
const CLIENT: &str = "/api/v1/namespaces/registry/services/nacos?&force=true&fieldManager=nacos-operator";
const STS_APPLY: &str = "/apis/apps/v1/namespaces/registry/statefulsets/nacos?&force=true&fieldManager=nacos-operator";
const PDB: &str =
    "/apis/policy/v1/namespaces/registry/poddisruptionbudgets/nacos?&force=true&fieldManager=nacos-operator";
const PDB_LIST: &str = "/apis/policy/v1/namespaces/registry/poddisruptionbudgets?&labelSelector=app.kubernetes.io%2Finstance%3Dnacos%2Capp.kubernetes.io%2Fmanaged-by%3Dnacos-operator";
const PDB_DELETE: &str = "/apis/policy/v1/namespaces/registry/poddisruptionbudgets/nacos?";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/registry/events?";
const STATUS: &str =
    "/apis/nacos.rs/v1alpha1/namespaces/registry/nacosclusters/nacos/status?&force=true&fieldManager=nacos-operator";

fn timeline() -> Timeline {
    Arc::new(Mutex::new(Vec::new()))
}

fn entries(timeline: &Timeline) -> Vec<String> {
    timeline.lock().unwrap().clone()
}

/// The cluster's StatefulSet as the API server would return it: `replicas` pods, `ready` ready.
fn statefulset(spec: &str, replicas: i32, ready: i32) -> Value {
    let mut sts = serde_json::to_value(fixtures::built(spec).stateful_set).unwrap();
    sts["spec"]["replicas"] = json!(replicas);
    sts["status"] = json!({ "replicas": replicas, "readyReplicas": ready, "updatedReplicas": replicas });
    sts
}

/// The five server-side applies of a reconcile, the StatefulSet answered with `ready` ready pods.
fn applies(ready: i32) -> Vec<Expect> {
    vec![
        Expect::apply(CONFIG_MAP),
        Expect::apply(HEADLESS),
        Expect::apply(CLIENT),
        Expect::apply_statefulset(STS_APPLY, ready),
        Expect::apply(PDB),
    ]
}

/// An event with `reason` and `type_`.
fn event(reason: &'static str, type_: &'static str) -> Expect {
    Expect::event(EVENTS, move |body| {
        assert_eq!((body["reason"].as_str(), body["type"].as_str()), (Some(reason), Some(type_)), "{body:#}");
    })
}

/// A status patch; the written status is stored in `into`.
fn status_into(into: &Arc<Mutex<Option<NacosClusterStatus>>>) -> Expect {
    let into = into.clone();
    Expect::status(STATUS, move |body| {
        assert_eq!(body["apiVersion"], "nacos.rs/v1alpha1");
        *into.lock().unwrap() = Some(serde_json::from_value(body["status"].clone()).unwrap());
    })
}

/// What one reconcile did.
struct Outcome {
    result: Result<Action, Error>,
    /// On error: what the error policy asked for after the 1st, 2nd and 3rd failure in a row.
    retries: Vec<Action>,
    metrics: Arc<Metrics>,
}

/// One reconcile of `cluster` against `script` and `registry`; the API server script must be
/// used up exactly (the verifier task fails otherwise).
async fn run(cluster: &NacosCluster, script: Vec<Expect>, registry: Arc<FakeRegistry>, timeline: &Timeline) -> Outcome {
    run_with(ServerCapabilities::NEWEST, cluster, script, registry, timeline).await
}

/// A Kubernetes 1.20 API server: `policy/v1beta1` budgets, no StatefulSet retention policy.
const KUBE_1_20: ServerCapabilities = ServerCapabilities {
    version: KubeVersion::new(1, 20),
    pdb: PdbVersion::V1beta1,
    endpoints: EndpointsApi::Endpoints,
};

/// [`run`] against an API server with `server`'s capabilities.
async fn run_with(
    server: ServerCapabilities,
    cluster: &NacosCluster,
    script: Vec<Expect>,
    registry: Arc<FakeRegistry>,
    timeline: &Timeline,
) -> Outcome {
    let (client, verifier) = mock::client(script, timeline.clone());
    let metrics = Arc::new(Metrics::default());
    let ctx = Context::new(client, registry, fixtures::env(), metrics.clone(), None).with_server(server);
    let ctx = Arc::new(ctx);
    let cluster = Arc::new(cluster.clone());
    let result = tokio::time::timeout(Duration::from_secs(5), reconcile(cluster.clone(), ctx.clone()))
        .await
        .expect("reconcile hung: it waits for a request the script does not answer");
    let retries = match &result {
        Ok(_) => Vec::new(),
        Err(error) => (0..3).map(|_| error_policy(cluster.clone(), error, ctx.clone())).collect(),
    };
    // Dropping the client ends the verifier's request stream.
    drop(ctx);
    verifier.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    Outcome { result, retries, metrics }
}

fn cluster(spec: &str, status: Option<NacosClusterStatus>) -> NacosCluster {
    let mut cluster = fixtures::cluster(spec);
    cluster.status = status;
    cluster
}

fn condition(status: &NacosClusterStatus, type_: ConditionType) -> (ConditionStatus, String) {
    let c = status.conditions.iter().find(|c| c.type_ == type_).unwrap();
    (c.status, c.reason.clone())
}

/// The status of a cluster that was running (and available) before the test's change.
fn running() -> Option<NacosClusterStatus> {
    let conditions = crate::crd::ConditionBuilder::new()
        .available(ConditionStatus::True, "QuorumReady", "3/3 members ready")
        .build(&[], &Time(Timestamp::from_second(1_000_000).unwrap()));
    Some(NacosClusterStatus {
        phase: Some(crate::crd::ClusterPhase::Running),
        conditions,
        ..NacosClusterStatus::default()
    })
}

fn members(n: u64) -> Vec<(u64, MemberRole)> {
    (1..=n).map(|id| (id, if id == 1 { Leader } else { Follower })).collect()
}

#[tokio::test]
async fn create_applies_every_object_publishes_created_and_reports_creating() {
    let t = timeline();
    let written = Arc::new(Mutex::new(None));
    let mut script = vec![Expect::get(STS, 404, mock::api_error(404))];
    script.extend(applies(0));
    script.push(event("Created", "Normal"));
    script.push(status_into(&written));
    let registry = Arc::new(FakeRegistry::down(t.clone()));
    let Outcome { result, .. } = run(&cluster(fixtures::DEFAULTS, None), script, registry, &t).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(10)));
    assert_eq!(
        entries(&t),
        [
            format!("GET {STS}"),
            format!("PATCH {CONFIG_MAP}"),
            format!("PATCH {HEADLESS}"),
            format!("PATCH {CLIENT}"),
            format!("PATCH {STS_APPLY} replicas=3"),
            format!("PATCH {PDB}"),
            format!("POST {EVENTS}"),
            format!("PATCH {STATUS}"),
        ],
        "no StatefulSet yet, so no registry member is asked"
    );
    let status = written.lock().unwrap().clone().unwrap();
    assert_eq!(status.phase, Some(crate::crd::ClusterPhase::Creating));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(condition(&status, ConditionType::Progressing), (ConditionStatus::True, "WaitingForRegistry".into()));
    assert_eq!(condition(&status, ConditionType::Available).0, ConditionStatus::False);
    assert_eq!(condition(&status, ConditionType::Degraded), (ConditionStatus::False, "Healthy".into()));
}

#[tokio::test]
async fn settled_reconcile_then_no_op_writes_no_status_and_keeps_transition_times() {
    let spec = fixtures::DEFAULTS;
    // First: a settled cluster whose previous status is older.
    let t = timeline();
    let written = Arc::new(Mutex::new(None));
    let mut script = vec![Expect::get(STS, 200, statefulset(spec, 3, 3))];
    script.extend(applies(3));
    script.push(event("Available", "Normal"));
    script.push(status_into(&written));
    let registry = Arc::new(FakeRegistry::new(Some(1), &members(3), t.clone()));
    let Outcome { result, .. } = run(&cluster(spec, None), script, registry.clone(), &t).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(60)));
    let first = written.lock().unwrap().clone().unwrap();
    assert_eq!(first.phase, Some(crate::crd::ClusterPhase::Running));
    assert_eq!((first.replicas, first.ready_replicas, first.leader.as_deref()), (3, 3, Some("nacos-0")));
    assert_eq!(first.members.iter().map(|m| m.node_id).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(condition(&first, ConditionType::Available), (ConditionStatus::True, "QuorumReady".into()));
    assert_eq!(condition(&first, ConditionType::Progressing), (ConditionStatus::False, "Settled".into()));

    // Then the same cluster, now carrying that status: the same applies, no status write.
    let t = timeline();
    let mut script = vec![Expect::get(STS, 200, statefulset(spec, 3, 3))];
    script.extend(applies(3));
    let registry = Arc::new(FakeRegistry::new(Some(1), &members(3), t.clone()));
    let Outcome { result, .. } = run(&cluster(spec, Some(first)), script, registry, &t).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(60)));
    assert_eq!(
        entries(&t),
        [
            format!("GET {STS}"),
            "registry view @nacos-0".to_owned(),
            format!("PATCH {CONFIG_MAP}"),
            format!("PATCH {HEADLESS}"),
            format!("PATCH {CLIENT}"),
            format!("PATCH {STS_APPLY} replicas=3"),
            format!("PATCH {PDB}"),
        ]
    );
}

#[tokio::test]
async fn a_changed_condition_moves_its_transition_time_and_the_others_keep_theirs() {
    let spec = fixtures::DEFAULTS;
    let long_ago = Time(Timestamp::from_second(1_000_000).unwrap());
    let previous = NacosClusterStatus {
        conditions: crate::crd::ConditionBuilder::new()
            .available(ConditionStatus::False, "WaitingForQuorum", "1/3")
            .progressing(ConditionStatus::True, "AddingMember", "member 3")
            .degraded(ConditionStatus::False, "Healthy", "")
            .build(&[], &long_ago),
        observed_generation: Some(1),
        ..NacosClusterStatus::default()
    };
    let t = timeline();
    let written = Arc::new(Mutex::new(None));
    let mut script = vec![Expect::get(STS, 200, statefulset(spec, 3, 3))];
    script.extend(applies(3));
    script.push(event("Available", "Normal"));
    script.push(status_into(&written));
    let registry = Arc::new(FakeRegistry::new(Some(1), &members(3), t.clone()));
    run(&cluster(spec, Some(previous)), script, registry, &t).await.result.unwrap();
    let status = written.lock().unwrap().clone().unwrap();
    let time = |type_| status.conditions.iter().find(|c| c.type_ == type_).unwrap().last_transition_time.clone();
    assert_ne!(time(ConditionType::Available), long_ago, "Available went False -> True");
    assert_ne!(time(ConditionType::Progressing), long_ago, "Progressing went True -> False");
    assert_eq!(time(ConditionType::Degraded), long_ago, "Degraded stayed False");
}

#[tokio::test]
async fn losing_the_quorum_publishes_unavailable_and_turns_degraded() {
    let spec = fixtures::DEFAULTS;
    let t = timeline();
    let mut script = vec![Expect::get(STS, 200, statefulset(spec, 3, 1))];
    script.extend(applies(1));
    script.push(event("Unavailable", "Warning"));
    script.push(Expect::status(STATUS, |body| {
        let status: NacosClusterStatus = serde_json::from_value(body["status"].clone()).unwrap();
        assert_eq!(condition(&status, ConditionType::Available), (ConditionStatus::False, "WaitingForQuorum".into()));
        assert_eq!(condition(&status, ConditionType::Degraded), (ConditionStatus::True, "WaitingForQuorum".into()));
        assert_eq!(status.phase, Some(crate::crd::ClusterPhase::Degraded));
    }));
    let registry = Arc::new(FakeRegistry::new(Some(1), &members(3), t.clone()));
    run(&cluster(spec, running()), script, registry, &t).await.result.unwrap();
}

/// The membership calls and StatefulSet applies in `timeline`, in order.
fn scale_steps(timeline: &Timeline) -> Vec<String> {
    entries(timeline)
        .into_iter()
        .filter_map(|e| match e.strip_prefix(&format!("PATCH {STS_APPLY} ")) {
            Some(replicas) => Some(format!("statefulset {replicas}")),
            None => e.strip_prefix("registry ").filter(|call| !call.starts_with("view")).map(str::to_owned),
        })
        .collect()
}

#[tokio::test]
async fn scale_up_3_to_5_grows_the_statefulset_before_adding_and_promoting_members() {
    let spec = "replicas: 5";
    let t = timeline();
    let registry = Arc::new(FakeRegistry::new(Some(1), &members(3), t.clone()));
    // Reconcile 1: the exact sequence. StatefulSet 3 -> 5, then member 4 is added.
    let mut script = vec![Expect::get(STS, 200, statefulset(spec, 3, 3))];
    script.extend(applies(3));
    script.push(event("ScalingStatefulSet", "Normal"));
    script.push(event("MemberAdded", "Normal"));
    script.push(Expect::status(STATUS, |body| {
        assert_eq!(body["status"]["phase"], "Scaling");
        assert_eq!(body["status"]["conditions"][1]["reason"], "AddingMember");
    }));
    let Outcome { result, .. } = run(&cluster(spec, running()), script, registry.clone(), &t).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(2)));
    assert_eq!(
        entries(&t),
        [
            format!("GET {STS}"),
            "registry view @nacos-0".to_owned(),
            format!("PATCH {CONFIG_MAP}"),
            format!("PATCH {HEADLESS}"),
            format!("PATCH {CLIENT}"),
            format!("PATCH {STS_APPLY} replicas=5"),
            format!("PATCH {PDB}"),
            format!("POST {EVENTS}"),
            "registry add 4 (nacos-3) @nacos-0".to_owned(),
            format!("POST {EVENTS}"),
            format!("PATCH {STATUS}"),
        ]
    );
    // Reconciles 2-4: add 5, promote 4, promote 5, one change each; then settled.
    for reason in ["MemberAdded", "MemberPromoted", "MemberPromoted"] {
        let mut script = vec![Expect::get(STS, 200, statefulset(spec, 5, 5))];
        script.extend(applies(5));
        script.extend([event(reason, "Normal"), Expect::status(STATUS, |_| {})]);
        let Outcome { result, .. } = run(&cluster(spec, running()), script, registry.clone(), &t).await;
        assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(2)));
    }
    let mut script = vec![Expect::get(STS, 200, statefulset(spec, 5, 5))];
    script.extend(applies(5));
    script.push(Expect::status(STATUS, |body| assert_eq!(body["status"]["phase"], "Running")));
    let Outcome { result, .. } = run(&cluster(spec, running()), script, registry, &t).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(60)));
    assert_eq!(
        scale_steps(&t),
        [
            "statefulset replicas=5",
            "add 4 (nacos-3) @nacos-0",
            "statefulset replicas=5",
            "add 5 (nacos-4) @nacos-0",
            "statefulset replicas=5",
            "promote 4 @nacos-0",
            "statefulset replicas=5",
            "promote 5 @nacos-0",
            "statefulset replicas=5",
        ]
    );
}

#[tokio::test]
async fn scale_down_5_to_3_removes_each_member_before_the_statefulset_drops_its_pod() {
    let spec = "replicas: 3";
    let t = timeline();
    let registry = Arc::new(FakeRegistry::new(Some(1), &members(5), t.clone()));
    // (StatefulSet replicas before, replicas applied, member removed)
    for (before, after, removes) in [(5, 5, true), (5, 4, true), (4, 3, false)] {
        let mut script = vec![Expect::get(STS, 200, statefulset(spec, before, before))];
        script.extend(applies(after));
        if before != after {
            script.push(event("ScalingStatefulSet", "Normal"));
        }
        if removes {
            script.push(event("MemberRemoved", "Normal"));
        }
        script.push(Expect::status(STATUS, |_| {}));
        let Outcome { result, .. } = run(&cluster(spec, running()), script, registry.clone(), &t).await;
        let requeue = if removes { 2 } else { 60 };
        assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(requeue)));
    }
    assert_eq!(
        scale_steps(&t),
        [
            "statefulset replicas=5",
            "remove 5 @nacos-0",
            "statefulset replicas=4",
            "remove 4 @nacos-0",
            "statefulset replicas=3",
        ]
    );
}

#[tokio::test]
async fn a_removal_the_registry_refuses_is_degraded_with_an_event_and_the_pods_stay() {
    let spec = "replicas: 3";
    let t = timeline();
    let registry =
        Arc::new(FakeRegistry::new(Some(1), &members(5), t.clone()).refusing_removals("only 2 of 4 voters reachable"));
    let mut script = vec![Expect::get(STS, 200, statefulset(spec, 5, 5))];
    script.extend(applies(5));
    script.push(event("RemovalRefused", "Warning"));
    script.push(Expect::status(STATUS, |body| {
        let status: NacosClusterStatus = serde_json::from_value(body["status"].clone()).unwrap();
        assert_eq!(status.phase, Some(crate::crd::ClusterPhase::Degraded));
        let (state, reason) = condition(&status, ConditionType::Degraded);
        assert_eq!((state, reason.as_str()), (ConditionStatus::True, "RemovalRefused"));
        let message = &status.conditions.iter().find(|c| c.type_ == ConditionType::Degraded).unwrap().message;
        assert!(message.contains("only 2 of 4 voters reachable"), "{message}");
    }));
    let Outcome { result, .. } = run(&cluster(spec, running()), script, registry, &t).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
    assert_eq!(scale_steps(&t), ["statefulset replicas=5", "remove 5 @nacos-0"]);
}

#[tokio::test]
async fn a_scale_down_without_a_ready_quorum_is_refused_before_asking_the_registry() {
    let spec = "replicas: 3";
    let t = timeline();
    let registry = Arc::new(FakeRegistry::new(Some(1), &members(5), t.clone()));
    // 3 of 5 ready: available, but removing a voter could leave only 2 of 4 ready.
    let mut script = vec![Expect::get(STS, 200, statefulset(spec, 5, 3))];
    script.extend(applies(3));
    script.push(event("ScaleDownWouldLoseQuorum", "Warning"));
    script.push(Expect::status(STATUS, |body| {
        assert_eq!(body["status"]["conditions"][0]["status"], "True", "still available");
        assert_eq!(body["status"]["conditions"][1]["reason"], "ScaleDownWouldLoseQuorum");
        assert_eq!(body["status"]["conditions"][2]["reason"], "ScaleDownWouldLoseQuorum");
        assert_eq!(body["status"]["conditions"][2]["status"], "True");
    }));
    let Outcome { result, .. } = run(&cluster(spec, running()), script, registry, &t).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
    assert_eq!(scale_steps(&t), ["statefulset replicas=5"]);
}

#[tokio::test]
async fn api_errors_fail_the_step_and_back_off_exponentially() {
    for code in [404, 409, 500] {
        let t = timeline();
        let script = vec![
            Expect::get(STS, 404, mock::api_error(404)),
            Expect::apply_fails(CONFIG_MAP, code),
            event("ApplyFailed", "Warning"),
            Expect::status(STATUS, |_| {}),
        ];
        let registry = Arc::new(FakeRegistry::down(t.clone()));
        let Outcome { result, retries, metrics } = run(&cluster(fixtures::DEFAULTS, None), script, registry, &t).await;
        match result {
            Err(Error::Apply { source }) => assert_eq!(source.api_status(), Some(code)),
            other => panic!("{code}: expected an apply error, got {other:?}"),
        }
        let delays = [5, 10, 20].map(|s| Action::requeue(Duration::from_secs(s)));
        assert_eq!(retries, delays, "{code}");
        assert_eq!(metrics.errors("Apply"), 3, "{code}");
        assert_eq!(entries(&t).len(), 4, "{code}: nothing after the failed apply but its report");
    }
}

#[tokio::test]
async fn a_failing_read_fails_the_dereference_step() {
    let t = timeline();
    let script = vec![Expect::get(STS, 500, mock::api_error(500))];
    let registry = Arc::new(FakeRegistry::down(t.clone()));
    let Outcome { result, metrics, .. } = run(&cluster(fixtures::DEFAULTS, None), script, registry, &t).await;
    assert!(matches!(result, Err(Error::Dereference { .. })), "{result:?}");
    assert_eq!(metrics.errors("Dereference"), 3);
}

#[test]
fn backoff_doubles_up_to_five_minutes() {
    let delays: Vec<u64> = [1, 2, 3, 4, 6, 7, 30].map(|n| super::backoff(n).as_secs()).to_vec();
    assert_eq!(delays, [5, 10, 20, 40, 160, 300, 300]);
}

#[tokio::test]
async fn a_disabled_budget_deletes_the_one_left_from_before() {
    let spec = "podDisruptionBudget: { enabled: false }";
    let t = timeline();
    let owned = json!({ "apiVersion": "policy/v1", "kind": "PodDisruptionBudgetList", "metadata": {}, "items": [{
        "metadata": { "name": "nacos", "namespace": "registry",
            "ownerReferences": [{ "apiVersion": "nacos.rs/v1alpha1", "kind": "NacosCluster", "name": "nacos",
                "uid": fixtures::UID, "controller": true }] } }] });
    let mut script = vec![Expect::get(STS, 200, statefulset(spec, 3, 3))];
    script.extend(applies(3).into_iter().take(4));
    script.push(Expect::get(PDB_LIST, 200, owned));
    script.push(Expect::new(Method::DELETE, PDB_DELETE, |_| (200, json!({ "kind": "Status", "status": "Success" }))));
    script.push(Expect::status(STATUS, |_| {}));
    let registry = Arc::new(FakeRegistry::new(Some(1), &members(3), t.clone()));
    run(&cluster(spec, running()), script, registry, &t).await.result.unwrap();
}

#[tokio::test]
async fn a_1_20_api_server_gets_a_v1beta1_budget_and_no_retention_policy() {
    let t = timeline();
    let v1beta1 =
        "/apis/policy/v1beta1/namespaces/registry/poddisruptionbudgets/nacos?&force=true&fieldManager=nacos-operator";
    let mut script = vec![Expect::get(STS, 200, statefulset(fixtures::DEFAULTS, 3, 3))];
    script.extend(applies(3).into_iter().take(3));
    script.push(Expect::new(Method::PATCH, STS_APPLY, |mut body| {
        assert!(body["spec"].get("persistentVolumeClaimRetentionPolicy").is_none(), "{body:#}");
        assert_eq!(body["spec"]["podManagementPolicy"], "Parallel");
        body["status"] = json!({ "replicas": 3, "readyReplicas": 3, "updatedReplicas": 3 });
        (200, body)
    }));
    script.push(Expect::new(Method::PATCH, v1beta1, |body| {
        assert_eq!(
            (body["apiVersion"].as_str(), body["kind"].as_str()),
            (Some("policy/v1beta1"), Some("PodDisruptionBudget"))
        );
        assert_eq!(body["spec"]["maxUnavailable"], 1);
        (200, body)
    }));
    script.push(Expect::status(STATUS, |_| {}));
    let registry = Arc::new(FakeRegistry::new(Some(1), &members(3), t.clone()));
    run_with(KUBE_1_20, &cluster(fixtures::DEFAULTS, running()), script, registry, &t).await.result.unwrap();
}

#[tokio::test]
async fn version_budget_and_endpoint_apis_come_from_discovery() {
    let served = json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "policy/v1", "resources": [
        { "name": "poddisruptionbudgets", "singularName": "", "namespaced": true, "kind": "PodDisruptionBudget",
          "verbs": ["get"] }] });
    let version = |minor: &str| {
        json!({ "major": "1", "minor": minor, "gitVersion": format!("v1.{minor}.2"), "gitCommit": "", "gitTreeState": "",
            "buildDate": "", "goVersion": "", "compiler": "", "platform": "" })
    };
    let slices = json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "discovery.k8s.io/v1",
        "resources": [{ "name": "endpointslices", "singularName": "", "namespaced": true, "kind": "EndpointSlice",
          "verbs": ["get"] }] });
    let cases = [
        (version("33"), (200, served), (200, slices.clone()), ServerCapabilities::NEWEST),
        (version("20"), (404, mock::api_error(404)), (404, mock::api_error(404)), KUBE_1_20),
        (
            version("27+"),
            (200, json!({ "kind": "APIResourceList", "groupVersion": "policy/v1", "resources": [] })),
            (200, slices),
            ServerCapabilities {
                version: KubeVersion::new(1, 27),
                pdb: PdbVersion::V1beta1,
                endpoints: EndpointsApi::EndpointSliceV1,
            },
        ),
    ];
    for (info, (status, body), (slice_status, slice_body), expected) in cases {
        let script = vec![
            Expect::get("/version", 200, info),
            Expect::get("/apis/policy/v1", status, body),
            Expect::get("/apis/discovery.k8s.io/v1", slice_status, slice_body),
        ];
        let (client, verifier) = mock::client(script, timeline());
        assert_eq!(ServerCapabilities::discover(&client).await.unwrap(), expected);
        drop(client);
        verifier.await.unwrap();
    }
}

#[tokio::test]
async fn a_refused_apply_is_degraded_with_the_servers_message_and_a_warning() {
    let refusal = ".spec.persistentVolumeClaimRetentionPolicy: field not declared in schema";
    let t = timeline();
    let written = Arc::new(Mutex::new(None));
    let mut script = vec![Expect::get(STS, 404, mock::api_error(404))];
    script.extend(applies(0).into_iter().take(3));
    script.push(Expect::new(Method::PATCH, STS_APPLY, move |_| {
        let message = format!("failed to create typed patch object: {refusal}");
        (500, json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": 500 }))
    }));
    script.push(Expect::event(EVENTS, move |body| {
        assert_eq!((body["reason"].as_str(), body["type"].as_str()), (Some("ApplyFailed"), Some("Warning")));
        assert!(body["note"].as_str().unwrap().contains(refusal), "{body:#}");
    }));
    script.push(status_into(&written));
    let registry = Arc::new(FakeRegistry::down(t.clone()));
    let Outcome { result, retries, metrics } = run(&cluster(fixtures::DEFAULTS, None), script, registry, &t).await;
    assert!(matches!(result, Err(Error::Apply { .. })), "the error policy still retries: {result:?}");
    assert_eq!(retries[0], Action::requeue(Duration::from_secs(5)));
    assert_eq!(metrics.errors("Apply"), 3);
    let status = written.lock().unwrap().clone().unwrap();
    assert_eq!(condition(&status, ConditionType::Degraded), (ConditionStatus::True, "ApplyFailed".into()));
    let degraded = status.conditions.iter().find(|c| c.type_ == ConditionType::Degraded).unwrap();
    assert!(
        degraded.message.contains("cannot apply StatefulSet nacos") && degraded.message.contains(refusal),
        "{degraded:?}"
    );
    assert_eq!(status.observed_generation, Some(1));
}
