//! The service projection against the real API server and a real `registry` process: instances
//! registered in the registry become a headless Service and Endpoints (1.20 serves no
//! `discovery.k8s.io/v1`) with exactly the instances that may take traffic, updated from
//! registry pushes as they turn unhealthy, disabled or deregistered; a resolver asking the
//! kube-dns stand-in (`cluster_dns`) gets them; turning the projection off removes them.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use nacos_operator::crd::NacosCluster;
use nacos_operator::projection::{PROJECTED_BY_LABEL, SERVICE_ANNOTATION, service_name};
use registry_proto::model::ServiceKey;
use serde_json::json;

use crate::cluster::{NAME, create_cluster};
use crate::cluster_dns::{self, a_records, endpoint_ips, resolver};
use crate::harness::{ControlPlane, eventually};
use crate::operator::Operator;
use crate::registry::Registry;

/// How long a projected change may take to show (a push, then one apply): the real bound is
/// far lower; this is a deadline, not a measurement.
const CHANGE: Duration = Duration::from_secs(10);

fn ips(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Waits until the Endpoints `name` hold exactly `want`; how long it took.
pub(crate) async fn await_endpoints(client: &Client, namespace: &str, name: &str, want: &[&str]) -> Duration {
    await_endpoints_within(CHANGE, client, namespace, name, want).await
}

/// [`await_endpoints`] with a deadline of `within` (× patience), for changes that wait on
/// something slower than a push (a probe's three results in a row).
pub(crate) async fn await_endpoints_within(
    within: Duration,
    client: &Client,
    namespace: &str,
    name: &str,
    want: &[&str],
) -> Duration {
    let started = Instant::now();
    let want = ips(want);
    let seen = eventually(within, || async {
        (endpoint_ips(client, namespace, name).await.as_ref() == Some(&want)).then_some(())
    })
    .await;
    assert!(seen.is_some(), "Endpoints {name}: want {want:?}, have {:?}", endpoint_ips(client, namespace, name).await);
    started.elapsed()
}

pub(crate) async fn projected_services(client: &Client, namespace: &str) -> Vec<Service> {
    let list = ListParams::default().labels(&format!("{PROJECTED_BY_LABEL}={NAME}"));
    Api::<Service>::namespaced(client.clone(), namespace).list(&list).await.map(|l| l.items).unwrap_or_default()
}

#[tokio::test]
async fn registered_instances_become_headless_services_and_endpoints_that_follow_pushes() {
    let Some(plane) = ControlPlane::start() else { return };
    let client = plane.client().await;
    let namespace = plane.namespace(&client, "projection").await;
    let registry = Registry::start(Ipv4Addr::LOCALHOST).await;
    let grpc = registry.grpc.to_string();
    let _operator = Operator::start_with(client.clone(), Some(Arc::new(move |_| vec![grpc.clone()]))).await;

    registry.register("orders", "DEFAULT_GROUP", "10.1.0.1", "8080").await;
    registry.register("orders", "DEFAULT_GROUP", "10.1.0.2", "8080").await;
    registry.register("Payments.v2", "DEFAULT_GROUP", "10.1.0.3", "9090").await;
    registry.register("orders", "other-group", "10.1.0.9", "8080").await;
    let cluster = create_cluster(&client, &namespace, json!({ "serviceProjection": { "enabled": true } })).await;
    let uid = cluster.uid().expect("uid");

    await_endpoints(&client, &namespace, "orders", &["10.1.0.1", "10.1.0.2"]).await;
    let payments = service_name(&ServiceKey::new("public", "DEFAULT_GROUP", "Payments.v2").expect("key"));
    await_endpoints(&client, &namespace, &payments, &["10.1.0.3"]).await;
    let services = projected_services(&client, &namespace).await;
    let names: BTreeSet<String> = services.iter().map(ResourceExt::name_any).collect();
    assert_eq!(names, ips(&["orders", &payments]), "only the selected group's services");
    for service in &services {
        let spec = service.spec.clone().expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"), "headless");
        assert!(spec.selector.is_none(), "selector-less");
        assert!(service.owner_references().iter().any(|o| o.uid == uid), "owned by the NacosCluster");
    }
    let payments_service = services.iter().find(|s| s.name_any() == payments).expect("payments");
    assert_eq!(payments_service.annotations().get(SERVICE_ANNOTATION).map(String::as_str), Some("Payments.v2"));

    let dns = resolver(cluster_dns::serve(client.clone(), SocketAddr::from((Ipv4Addr::LOCALHOST, 0))));
    let name = format!("orders.{namespace}.svc.cluster.local.");
    assert_eq!(a_records(&dns, &name).await, ips(&["10.1.0.1", "10.1.0.2"]), "cluster DNS resolves the instances");

    registry.set_health("orders", "10.1.0.2", "8080", false).await;
    let unhealthy = await_endpoints(&client, &namespace, "orders", &["10.1.0.1"]).await;
    assert_eq!(a_records(&dns, &name).await, ips(&["10.1.0.1"]));
    registry.set_health("orders", "10.1.0.2", "8080", true).await;
    await_endpoints(&client, &namespace, "orders", &["10.1.0.1", "10.1.0.2"]).await;
    registry.disable("orders", "10.1.0.1", "8080").await;
    let disabled = await_endpoints(&client, &namespace, "orders", &["10.1.0.2"]).await;
    registry.deregister("orders", "10.1.0.2", "8080").await;
    let deregistered = await_endpoints(&client, &namespace, "orders", &[]).await;
    assert!(a_records(&dns, &name).await.is_empty(), "no address once no instance may take traffic");
    println!(
        "projection: unhealthy {unhealthy:?}, disabled {disabled:?}, deregistered {deregistered:?} (polled every 200 ms)"
    );

    let clusters = Api::<NacosCluster>::namespaced(client.clone(), &namespace);
    let off = json!({ "spec": { "serviceProjection": { "enabled": false } } });
    clusters.patch(NAME, &PatchParams::default(), &Patch::Merge(&off)).await.expect("turn the projection off");
    let removed = eventually(CHANGE, || async {
        let left = projected_services(&client, &namespace).await.len();
        let endpoints = endpoint_ips(&client, &namespace, "orders").await;
        (left == 0 && endpoints.is_none()).then_some(())
    })
    .await;
    assert!(removed.is_some(), "turning the projection off removes its Services and Endpoints");
}
