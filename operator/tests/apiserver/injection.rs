//! An application pod asks for the sidecar: the real API server calls the operator's webhook
//! (served in-process on the network lab's gateway address, behind a selector-less Service and
//! Endpoints, over the TLS the operator set up and the caBundle it wrote) and stores the pod with
//! the `nacos-sidecar` container. The process kubelet runs the cluster's member pod (a real
//! `registry`) and the app pod (the real `nacos-sidecar` next to a small HTTP app), each in its
//! own network namespace. The cluster serves its SDK ports over TLS only (`clientFacing`, with
//! the operator's CA): the webhook hands the sidecar that CA, the sidecar finds the registry
//! through the client Service's DNS name, as the webhook wrote it, and registers the pod over
//! TLS once its probe passes, and the service projection (subscribed over TLS too) turns the
//! registration into the Service's endpoints; a hung app and the pod's deletion (SIGTERM: the
//! sidecar drains and deregisters) leave them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use nacos_operator::controller::OperatorEnvironment;
use nacos_operator::projection::Locate;
use nacos_operator::webhook::{self, WebhookConfig};
use registry_proto::contract::ports;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cluster::{NAME, create_cluster};
use crate::cluster_dns::{self, resolver};
use crate::harness::{ControlPlane, eventually, workspace_binary};
use crate::kubelet::{Images, Kubelet};
use crate::members::{HTTP_PORT, await_voters, member_ca, trusting};
use crate::operator::Operator;
use crate::projection::await_endpoints_within;

const WEBHOOK_SERVICE: &str = "nacos-operator-webhook";
const WEBHOOK_CONFIGURATION: &str = "nacos-operator-inject-test";
const APP_PORT: u16 = 8080;
/// How long a change the sidecar's probe must see may take: three probe results in a row on
/// Nacos' schedule (a few seconds each), then a push and an apply.
const PROBED: Duration = Duration::from_secs(30);

async fn apply<K>(api: &Api<K>, name: &str, object: serde_json::Value)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    api.patch(name, &PatchParams::apply("inject-test").force(), &Patch::Apply(object)).await.expect("apply");
}

/// Serves the webhook on `listen` and routes the API server to it: a selector-less Service and
/// Endpoints on the lab's gateway, and a configuration as the chart's (failurePolicy Fail).
async fn serve_webhook(client: &Client, namespace: &str, listen: SocketAddr, shutdown: CancellationToken) {
    let config = WebhookConfig {
        listen,
        service: WEBHOOK_SERVICE.into(),
        namespace: namespace.into(),
        configuration: WEBHOOK_CONFIGURATION.into(),
        default_cluster: None,
        ca_bundle_check_seconds: 1,
    };
    tokio::spawn(webhook::serve(config, OperatorEnvironment::default(), client.clone(), shutdown));
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    apply(&services, WEBHOOK_SERVICE, json!({ "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": WEBHOOK_SERVICE }, "spec": { "ports": [{ "name": "https", "port": 443, "protocol": "TCP" }] } }))
    .await;
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), namespace);
    apply(
        &endpoints,
        WEBHOOK_SERVICE,
        json!({ "apiVersion": "v1", "kind": "Endpoints",
        "metadata": { "name": WEBHOOK_SERVICE },
        "subsets": [{ "addresses": [{ "ip": listen.ip().to_string() }],
                      "ports": [{ "name": "https", "port": listen.port(), "protocol": "TCP" }] }] }),
    )
    .await;
    let configurations: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    apply(&configurations, WEBHOOK_CONFIGURATION, json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": { "name": WEBHOOK_CONFIGURATION },
        "webhooks": [{
            "name": "inject.nacos.rs", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": "Fail", "timeoutSeconds": 5,
            "clientConfig": { "service": { "name": WEBHOOK_SERVICE, "namespace": namespace, "path": "/mutate", "port": 443 } },
            "rules": [{ "operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced" }],
            "objectSelector": { "matchLabels": { "inject-test": "yes" } },
        }],
    }))
    .await;
    let bundle = eventually(Duration::from_secs(30), || async {
        let c = configurations.get(WEBHOOK_CONFIGURATION).await.ok()?;
        let webhooks = c.webhooks.unwrap_or_default();
        webhooks.first()?.client_config.ca_bundle.as_ref().filter(|b| !b.0.is_empty()).map(drop)
    })
    .await;
    assert!(bundle.is_some(), "the operator wrote the caBundle");
}

fn app_pod() -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "demo-0", "labels": { "inject-test": "yes", "app": "demo" },
            "annotations": { "nacos.rs/inject": "true", "nacos.rs/cluster": crate::cluster::NAME,
                             "nacos.rs/service": "demo", "nacos.rs/port": "http" } },
        "spec": { "containers": [{ "name": "app", "image": "busybox:1.36.1",
            "ports": [{ "name": "http", "containerPort": APP_PORT }] }] },
    }))
    .expect("pod")
}

#[tokio::test]
async fn an_injected_sidecar_registers_its_pod_and_the_projection_follows() {
    let Some(plane) = ControlPlane::start() else { return };
    let Some(lab) = netlab::start_or_skip("apiserver-tier injection", "APISERVER_TIER_REQUIRED") else { return };
    let client = plane.client().await;
    let operator_namespace = plane.namespace(&client, "operator").await;
    let namespace = plane.namespace(&client, "apps").await;
    let gateway = lab.gateway();
    let registry = workspace_binary("registry-core", "registry");
    workspace_binary("nacos-sidecar", "nacos-sidecar");
    let app = ["python3", "-m", "http.server", &APP_PORT.to_string(), "--bind", "0.0.0.0"].map(String::from);
    let images = Images::from([
        (OperatorEnvironment::default().sidecar_image, vec!["nacos-sidecar".to_owned()]),
        ("busybox".to_owned(), app.to_vec()),
    ]);
    let bin = registry.parent().expect("binary dir");
    let kubelet = Kubelet::start(client.clone(), &namespace, lab, bin, images).await;
    // The projection subscribes to the member pod (the operator runs outside the pods' network).
    let pods = kubelet.view();
    let grpc = ports::grpc(HTTP_PORT).expect("gRPC port");
    let locate: Locate = Arc::new(move |cluster| {
        pods.ip(&format!("{}-0", cluster.name)).map(|ip| format!("{ip}:{grpc}")).into_iter().collect()
    });
    let dns = cluster_dns::Resolver(resolver(SocketAddr::from((gateway, 53))));
    let _operator = Operator::start_in_cluster(client.clone(), dns, Some(locate)).await;
    let listen = std::net::TcpListener::bind((gateway, 0)).and_then(|l| l.local_addr()).expect("webhook port");
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    serve_webhook(&client, &operator_namespace, listen, shutdown).await;
    let spec = json!({ "replicas": 1, "sidecarInjection": { "enabled": true }, "tls": { "clientFacing": true } });
    create_cluster(&client, &namespace, spec).await;
    let started = std::time::Instant::now();
    await_voters(&client, &namespace, &kubelet, 1).await;
    let formed = started.elapsed();
    let clusters: Api<nacos_operator::crd::NacosCluster> = Api::namespaced(client.clone(), &namespace);
    let projection = json!({ "spec": { "serviceProjection": { "enabled": true } } });
    clusters.patch(NAME, &PatchParams::default(), &Patch::Merge(&projection)).await.expect("projection on");

    // Refused while the operator's webhook does not yet see the cluster as valid; then stored
    // with the sidecar.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let created =
        eventually(Duration::from_secs(30), || async { pods.create(&PostParams::default(), &app_pod()).await.ok() })
            .await
            .expect("the API server admitted the pod through the webhook");
    let containers = created.spec.as_ref().map(|s| s.containers.iter().map(|c| c.name.clone()).collect::<Vec<_>>());
    assert_eq!(containers, Some(vec!["app".to_owned(), "nacos-sidecar".to_owned()]), "stored with the sidecar");
    let ca = member_ca(&client, &namespace).await;
    let given = created.metadata.annotations.as_ref().and_then(|a| a.get("nacos.rs/tls-ca"));
    assert_eq!(given.map(String::as_bytes), Some(ca.as_slice()), "the sidecar is given the cluster CA");

    let pod_ip = eventually(Duration::from_secs(30), || async { kubelet.pod_ip("demo-0") })
        .await
        .expect("the kubelet runs the app pod")
        .to_string();
    let registered = await_endpoints_within(PROBED, &client, &namespace, "demo", &[pod_ip.as_str()]).await;
    // The app hangs: the sidecar's probe times out and marks the instance unhealthy.
    kubelet.freeze("demo-0", "app", true);
    let hung = await_endpoints_within(PROBED, &client, &namespace, "demo", &[]).await;
    kubelet.freeze("demo-0", "app", false);
    let back = await_endpoints_within(PROBED, &client, &namespace, "demo", &[pod_ip.as_str()]).await;

    // The pod is deleted: SIGTERM, the sidecar drains and deregisters before it exits.
    let deleting = std::time::Instant::now();
    pods.delete("demo-0", &DeleteParams::default()).await.expect("delete the app pod");
    let removed = eventually(Duration::from_secs(40), || async {
        pods.get_opt("demo-0").await.ok().flatten().is_none().then_some(())
    })
    .await;
    assert!(removed.is_some(), "the kubelet stopped the pod and removed it:\n{}", kubelet.logs());
    let exit = kubelet.exit_status("demo-0", "nacos-sidecar");
    assert!(exit.is_some_and(|s| s.success()), "the sidecar exits cleanly on SIGTERM within its grace: {exit:?}");
    let member = kubelet.pod_ip(&format!("{NAME}-0")).expect("member pod runs");
    let host = format!("{NAME}-0.{NAME}-headless.{namespace}.svc.cluster.local");
    let trusting = trusting(&ca, &host, SocketAddr::from((member, HTTP_PORT)));
    let url = format!("https://{host}:{HTTP_PORT}/nacos/v1/ns/instance/list?serviceName=demo");
    let gone = eventually(Duration::from_secs(10), || async {
        let body: serde_json::Value = trusting.get(&url).send().await.ok()?.json().await.ok()?;
        body["hosts"].as_array()?.is_empty().then_some(())
    })
    .await;
    assert!(gone.is_some(), "the sidecar deregistered the pod");
    await_endpoints_within(PROBED, &client, &namespace, "demo", &[]).await;
    println!(
        "injection: member ready {formed:?}, app in endpoints {registered:?}, hung app out {hung:?}, back {back:?}, \
         pod deleted and deregistered {:?}",
        deleting.elapsed()
    );
}
