//! The operator's controller loop against the real API server: the CRD, the objects a
//! `NacosCluster` becomes, its status and events, refused applies, reconcile counts and garbage
//! collection.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use nacos_operator::controller::server::{EndpointsApi, KubeVersion, PdbVersion, ServerCapabilities};
use nacos_operator::crd::{ConditionStatus, ConditionType, NacosCluster};
use serde_json::json;

use crate::harness::{ControlPlane, eventually};
use crate::operator::Operator;

pub(crate) const NAME: &str = "nacos";

/// A control plane of its own, a client, a namespace and the operator running.
async fn with_operator(test: &str) -> Option<(ControlPlane, Client, String, Operator)> {
    let plane = ControlPlane::start()?;
    let client = plane.client().await;
    let namespace = plane.namespace(&client, test).await;
    let operator = Operator::start(client.clone()).await;
    Some((plane, client, namespace, operator))
}

/// Creates the `NacosCluster` `nacos` with `spec` in `namespace`.
pub(crate) async fn create_cluster(client: &Client, namespace: &str, spec: serde_json::Value) -> NacosCluster {
    let cluster: NacosCluster = serde_json::from_value(json!({
        "apiVersion": "nacos.rs/v1alpha1", "kind": "NacosCluster",
        "metadata": { "name": NAME, "namespace": namespace }, "spec": spec,
    }))
    .expect("cluster");
    Api::<NacosCluster>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &cluster)
        .await
        .expect("create")
}

fn condition(cluster: &NacosCluster, type_: ConditionType) -> Option<(ConditionStatus, String, String)> {
    let conditions = &cluster.status.as_ref()?.conditions;
    conditions.iter().find(|c| c.type_ == type_).map(|c| (c.status, c.reason.clone(), c.message.clone()))
}

/// Events about the cluster with `reason`.
async fn events(client: &Client, namespace: &str, reason: &str) -> Vec<Event> {
    let events =
        Api::<Event>::namespaced(client.clone(), namespace).list(&ListParams::default()).await.expect("events");
    events.items.into_iter().filter(|e| e.reason.as_deref() == Some(reason)).collect()
}

/// Waits until the cluster satisfies `check`; panics with its last status otherwise.
async fn await_status(
    client: &Client,
    namespace: &str,
    what: &str,
    check: impl Fn(&NacosCluster) -> bool,
) -> NacosCluster {
    let api = Api::<NacosCluster>::namespaced(client.clone(), namespace);
    match eventually(Duration::from_secs(60), || async { api.get(NAME).await.ok().filter(|c| check(c)) }).await {
        Some(cluster) => cluster,
        None => panic!("{what}: last status {:#?}", api.get(NAME).await.map(|c| c.status)),
    }
}

#[tokio::test]
async fn the_crd_is_established_and_its_schema_refuses_bad_specs() {
    let Some(plane) = ControlPlane::shared() else { return };
    let client = plane.client().await;
    let crd = Api::<CustomResourceDefinition>::all(client.clone()).get("nacosclusters.nacos.rs").await.expect("crd");
    let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(conditions.iter().any(|c| c.type_ == "Established" && c.status == "True"), "{conditions:#?}");

    let namespace = plane.namespace(&client, "crd").await;
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("nacos.rs", "v1alpha1", "NacosCluster"),
        "nacosclusters",
    );
    let api = Api::<DynamicObject>::namespaced_with(client, &namespace, &resource);
    let bad = DynamicObject::new("bad", &resource).data(json!({ "spec": { "replicas": "three" } }));
    match api.create(&PostParams::default(), &bad).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(status.message.contains("spec.replicas"), "{status:?}");
        }
        other => panic!("a string replica count was accepted: {other:?}"),
    }
}

#[tokio::test]
async fn a_nacos_cluster_becomes_every_object_owned_by_it_with_a_status_and_an_event() {
    let Some((_plane, client, namespace, operator)) = with_operator("every-object").await else { return };
    assert_eq!(
        operator.capabilities,
        ServerCapabilities {
            version: KubeVersion::OLDEST_SUPPORTED,
            pdb: PdbVersion::V1beta1,
            endpoints: EndpointsApi::Endpoints
        },
        "the tier runs the oldest supported Kubernetes, 1.20, which serves no policy/v1"
    );
    let cluster = create_cluster(&client, &namespace, json!({})).await;
    let uid = cluster.uid().expect("uid");
    let owned_by_cluster = |meta: &kube::api::ObjectMeta| {
        meta.owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == uid && o.controller == Some(true) && o.kind == "NacosCluster")
    };

    let pdbs = Api::<DynamicObject>::namespaced_with(client.clone(), &namespace, &PdbVersion::V1beta1.api_resource());
    let found = eventually(Duration::from_secs(60), || async {
        let config_map = Api::<ConfigMap>::namespaced(client.clone(), &namespace).get("nacos-config").await.ok()?;
        let headless = Api::<Service>::namespaced(client.clone(), &namespace).get("nacos-headless").await.ok()?;
        let service = Api::<Service>::namespaced(client.clone(), &namespace).get(NAME).await.ok()?;
        let stateful_set = Api::<StatefulSet>::namespaced(client.clone(), &namespace).get(NAME).await.ok()?;
        let pdb = pdbs.get(NAME).await.ok()?;
        Some((config_map, headless, service, stateful_set, pdb))
    })
    .await;
    let (config_map, headless, service, stateful_set, pdb) = found.expect("every object is created");
    for (kind, meta) in [
        ("ConfigMap", &config_map.metadata),
        ("headless Service", &headless.metadata),
        ("Service", &service.metadata),
        ("StatefulSet", &stateful_set.metadata),
        ("PodDisruptionBudget", &pdb.metadata),
    ] {
        assert!(owned_by_cluster(meta), "{kind} is not owned by the cluster: {:?}", meta.owner_references);
    }
    assert_eq!(pdb.data["spec"]["maxUnavailable"], 1);
    assert_eq!(stateful_set.spec.as_ref().and_then(|s| s.replicas), Some(3));

    // The real StatefulSet controller makes the pods from the applied template.
    let pods = Api::<Pod>::namespaced(client.clone(), &namespace);
    let made = eventually(Duration::from_secs(60), || async {
        let list = pods.list(&ListParams::default().labels("app.kubernetes.io/instance=nacos")).await.ok()?;
        (list.items.len() == 3).then_some(())
    })
    .await;
    assert!(made.is_some(), "the StatefulSet controller did not create 3 pods");

    let status = await_status(&client, &namespace, "a status for generation 1", |c| {
        c.status.as_ref().and_then(|s| s.observed_generation) == Some(1)
    })
    .await;
    let reason = |type_| condition(&status, type_).map(|(s, r, _)| (s, r));
    assert_eq!(reason(ConditionType::Degraded), Some((ConditionStatus::False, "Healthy".into())));
    assert_eq!(reason(ConditionType::Available).map(|(s, _)| s), Some(ConditionStatus::False), "no registry runs");
    assert_eq!(reason(ConditionType::Progressing).map(|(s, _)| s), Some(ConditionStatus::True));
    assert_eq!(status.status.as_ref().and_then(|s| s.phase), Some(nacos_operator::crd::ClusterPhase::Creating));
    assert_eq!(events(&client, &namespace, "Created").await.len(), 1, "one Created event");
}

#[tokio::test]
async fn an_apply_the_server_refuses_shows_as_degraded_with_a_warning_event() {
    let Some((_plane, client, namespace, operator)) = with_operator("refused-apply").await else { return };
    // `minDomains` (Kubernetes 1.24) passes the CRD's schema, but a 1.20 API server refuses it
    // in the StatefulSet the operator applies.
    let spec = json!({ "scheduling": { "topologySpreadConstraints": [{
        "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
        "minDomains": 2, "labelSelector": { "matchLabels": { "app.kubernetes.io/instance": NAME } },
    }] } });
    create_cluster(&client, &namespace, spec).await;
    let status = await_status(&client, &namespace, "Degraded=True ApplyFailed", |c| {
        condition(c, ConditionType::Degraded).is_some_and(|(s, r, _)| s == ConditionStatus::True && r == "ApplyFailed")
    })
    .await;
    let (_, _, message) = condition(&status, ConditionType::Degraded).expect("degraded");
    assert!(message.contains("StatefulSet") && message.contains("minDomains"), "{message}");
    let warnings = eventually(Duration::from_secs(30), || async {
        let found = events(&client, &namespace, "ApplyFailed").await;
        (!found.is_empty()).then_some(found)
    })
    .await
    .expect("an ApplyFailed event");
    assert_eq!(warnings[0].type_.as_deref(), Some("Warning"));
    assert!(warnings[0].note.as_deref().unwrap_or_default().contains("minDomains"), "{:?}", warnings[0].note);
    assert!(operator.metrics.errors("Apply") >= 1, "the failure also counts as an error");
    let stateful_sets = Api::<StatefulSet>::namespaced(client, &namespace);
    assert!(stateful_sets.get_opt(NAME).await.expect("get").is_none(), "nothing half-applied");
}

#[tokio::test]
async fn the_operators_own_applies_do_not_wake_it_again() {
    let Some((_plane, client, namespace, operator)) = with_operator("no-double-reconcile").await else { return };
    create_cluster(&client, &namespace, json!({})).await;
    // Settled into waiting for the registry (none runs), requeued every 10 s, once the
    // StatefulSet controller has made the pods and reported them (those are real changes).
    await_status(&client, &namespace, "waiting for the registry", |c| {
        condition(c, ConditionType::Progressing).is_some_and(|(_, r, _)| r == "WaitingForRegistry")
    })
    .await;
    // The controller manager's own status writes (StatefulSet, PodDisruptionBudget) are real
    // changes that wake the operator; wait until both reported the three pods.
    let stateful_sets = Api::<StatefulSet>::namespaced(client.clone(), &namespace);
    let pdbs = Api::<DynamicObject>::namespaced_with(client.clone(), &namespace, &PdbVersion::V1beta1.api_resource());
    let settled = eventually(Duration::from_secs(60), || async {
        let status = stateful_sets.get(NAME).await.ok()?.status?;
        let pdb = pdbs.get(NAME).await.ok()?;
        let set_done =
            status.replicas == 3 && status.observed_generation == Some(1) && status.update_revision.is_some();
        let pdb_done = pdb.data["status"]["observedGeneration"] == 1 && pdb.data["status"]["expectedPods"] == 3;
        (set_done && pdb_done).then_some(())
    })
    .await;
    assert!(settled.is_some(), "the controller manager did not report the StatefulSet's and budget's 3 pods");
    // One reconcile per 10 s requeue (3 or 4 in 35 s); woken by its own applies as well, it
    // would be twice that (6 to 8) in every window. A second window tolerates one late status write of
    // the controller manager (a loaded machine).
    let quiet = Duration::from_secs(35);
    let mut counts = Vec::new();
    for _ in 0..2 {
        let before = operator.metrics.reconciles();
        let deadline = Instant::now() + quiet;
        tokio::time::sleep_until(deadline.into()).await;
        let reconciles = operator.metrics.reconciles() - before;
        counts.push(reconciles);
        if (1..=4).contains(&reconciles) {
            return;
        }
    }
    panic!("reconciles in consecutive {quiet:?} windows: {counts:?} (expected 1 to 4)");
}

#[tokio::test]
async fn deleting_the_cluster_garbage_collects_its_objects() {
    let Some((_plane, client, namespace, _operator)) = with_operator("garbage-collection").await else { return };
    create_cluster(&client, &namespace, json!({})).await;
    let stateful_sets = Api::<StatefulSet>::namespaced(client.clone(), &namespace);
    let created =
        eventually(Duration::from_secs(60), || async { stateful_sets.get_opt(NAME).await.ok().flatten() }).await;
    assert!(created.is_some(), "the StatefulSet was not created");

    Api::<NacosCluster>::namespaced(client.clone(), &namespace)
        .delete(NAME, &DeleteParams::background())
        .await
        .expect("delete");
    let pdbs = Api::<DynamicObject>::namespaced_with(client.clone(), &namespace, &PdbVersion::V1beta1.api_resource());
    let gone = eventually(Duration::from_secs(90), || async {
        let left = [
            stateful_sets.get_opt(NAME).await.ok()?.is_some(),
            Api::<Service>::namespaced(client.clone(), &namespace).get_opt(NAME).await.ok()?.is_some(),
            Api::<Service>::namespaced(client.clone(), &namespace).get_opt("nacos-headless").await.ok()?.is_some(),
            Api::<ConfigMap>::namespaced(client.clone(), &namespace).get_opt("nacos-config").await.ok()?.is_some(),
            pdbs.get_opt(NAME).await.ok()?.is_some(),
        ];
        (!left.contains(&true)).then_some(())
    })
    .await;
    assert!(gone.is_some(), "the garbage collector left objects of the deleted cluster");
}
