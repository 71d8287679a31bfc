//! An application pod asks for the sidecar: the real API server calls the operator's webhook
//! (served in-process on the network lab's gateway address, behind a selector-less Service and
//! Endpoints, over the TLS the operator set up and the caBundle it wrote), stores the pod with
//! the `nacos-sidecar` container, and the test, acting as the kubelet, runs that container's
//! real `nacos-sidecar` binary with the environment it was given, in a network namespace of
//! its own (the pod's IP) next to the app. The sidecar registers the pod with a real registry,
//! and the service projection turns the registration into the Service's endpoints; the app
//! going away and the pod's deletion (SIGTERM: the sidecar deregisters) leave them.
//!
//! What the test does as the kubelet: resolves the downward-API variables from the stored pod,
//! writes the labels file, and points `NACOS_SERVER_ADDR` (the client Service's DNS name) at the
//! registry's address (no cluster DNS runs here).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Container, Endpoints, Pod, Service};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use nacos_operator::controller::OperatorEnvironment;
use nacos_operator::webhook::{self, WebhookConfig};
use registry_proto::contract::sidecar::env;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cluster::create_cluster;
use crate::harness::{ControlPlane, eventually, workspace_binary};
use crate::operator::Operator;
use crate::projection::await_endpoints_within;
use crate::registry::Registry;

const WEBHOOK_SERVICE: &str = "nacos-operator-webhook";
const WEBHOOK_CONFIGURATION: &str = "nacos-operator-inject-test";
const APP_PORT: u16 = 8080;
/// How long a change the sidecar's probe must see may take: three probe results in a row on
/// Nacos' schedule (a few seconds each), then a push and an apply.
const PROBED: Duration = Duration::from_secs(30);

/// A process the test started; killed by its PID when dropped.
struct Process(Child);

impl Process {
    /// SIGTERM, then whether it exited successfully within `within` (× patience).
    async fn terminate(&mut self, within: Duration) -> bool {
        let pid = self.0.id().to_string();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().is_ok_and(|s| s.success());
        let child = std::sync::Mutex::new(&mut self.0);
        let exited = eventually(within, || {
            let status = child.lock().ok().and_then(|mut c| c.try_wait().ok().flatten());
            async move { status }
        })
        .await;
        sent && exited.is_some_and(|s| s.success())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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

/// The environment of `container` as the kubelet would give it, from the stored `pod`.
fn container_env(pod: &Pod, container: &Container) -> BTreeMap<String, String> {
    let field = |path: &str| -> String {
        match path {
            "metadata.name" => pod.metadata.name.clone().unwrap_or_default(),
            "metadata.namespace" => pod.metadata.namespace.clone().unwrap_or_default(),
            "status.podIP" => pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
            "spec.nodeName" => pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
            other => panic!("the sidecar asks for a field this kubelet does not know: {other}"),
        }
    };
    let mut out = BTreeMap::new();
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => field(&from.field_ref.as_ref().expect("only fieldRefs here").field_path),
            (None, None) => String::new(),
        };
        out.insert(var.name.clone(), value);
    }
    out
}

#[tokio::test]
async fn an_injected_sidecar_registers_its_pod_and_the_projection_follows() {
    let Some(plane) = ControlPlane::start() else { return };
    let Some(mut lab) = netlab::start_or_skip("apiserver-tier injection", "APISERVER_TIER_REQUIRED") else { return };
    let client = plane.client().await;
    let operator_namespace = plane.namespace(&client, "operator").await;
    let namespace = plane.namespace(&client, "apps").await;
    let gateway = lab.gateway();
    let registry = Registry::start(gateway).await;
    let grpc = registry.grpc.to_string();
    let _operator = Operator::start_with(client.clone(), Some(Arc::new(move |_| vec![grpc.clone()]))).await;
    let listen = std::net::TcpListener::bind((gateway, 0)).and_then(|l| l.local_addr()).expect("webhook port");
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    serve_webhook(&client, &operator_namespace, listen, shutdown).await;
    let spec = json!({ "sidecarInjection": { "enabled": true }, "serviceProjection": { "enabled": true } });
    create_cluster(&client, &namespace, spec).await;

    // Refused while the operator's webhook does not yet see the cluster as valid; then stored
    // with the sidecar.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let created =
        eventually(Duration::from_secs(30), || async { pods.create(&PostParams::default(), &app_pod()).await.ok() })
            .await
            .expect("the API server admitted the pod through the webhook");
    let sidecar = created.spec.as_ref().and_then(|s| s.containers.iter().find(|c| c.name == "nacos-sidecar")).cloned();
    let sidecar = sidecar.expect("the API server stored the pod with the injected container");

    // The kubelet's part: an IP for the pod (a lab node), its status, the app, the sidecar.
    let node = lab.add_node("demo-0").expect("pod network namespace");
    let pod_ip = lab.addr(node);
    let status = json!({ "status": { "podIP": pod_ip.to_string(), "podIPs": [{ "ip": pod_ip.to_string() }] } });
    let pod = pods.patch_status("demo-0", &PatchParams::default(), &Patch::Merge(&status)).await.expect("pod status");
    let mut app = Process(
        lab.command(node, "python3")
            .args(["-m", "http.server", &APP_PORT.to_string(), "--bind", "0.0.0.0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("app"),
    );
    let mut environment = container_env(&pod, &sidecar);
    assert_eq!(environment.get(env::POD_IP), Some(&pod_ip.to_string()), "POD_IP from the downward API");
    assert_eq!(environment.get(env::SERVICE).map(String::as_str), Some("demo"));
    assert_eq!(environment.get(env::PORT), Some(&APP_PORT.to_string()), "the named port resolved by the webhook");
    let state = tempfile::tempdir().expect("pod volumes");
    let labels = state.path().join("labels");
    std::fs::write(&labels, "app=\"demo\"\ninject-test=\"yes\"\n").expect("labels file");
    environment.insert(env::LABELS_FILE.into(), labels.display().to_string());
    environment.insert(env::SERVER_ADDR.into(), registry.http.to_string());
    environment.insert(env::CACHE_DIR.into(), state.path().join("cache").display().to_string());
    let sidecar_log = state.path().join("sidecar.log");
    let log = std::fs::File::create(&sidecar_log).expect("sidecar log");
    let mut sidecar_process = Process(
        lab.command(node, workspace_binary("nacos-sidecar", "nacos-sidecar"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&environment)
            .stdout(log.try_clone().expect("sidecar log"))
            .stderr(log)
            .spawn()
            .expect("sidecar"),
    );

    let ip = pod_ip.to_string();
    await_endpoints_within(PROBED, &client, &namespace, "demo", &[ip.as_str()]).await;
    // The app stops answering: the sidecar's probe marks the instance unhealthy.
    app.0.kill().expect("stop the app");
    let _ = app.0.wait();
    await_endpoints_within(PROBED, &client, &namespace, "demo", &[]).await;
    let app = Process(
        lab.command(node, "python3")
            .args(["-m", "http.server", &APP_PORT.to_string(), "--bind", "0.0.0.0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("app again"),
    );
    await_endpoints_within(PROBED, &client, &namespace, "demo", &[ip.as_str()]).await;
    // The pod is deleted: SIGTERM, the sidecar deregisters before it exits.
    let exited = sidecar_process.terminate(Duration::from_secs(20)).await;
    assert!(
        exited,
        "the sidecar exits cleanly on SIGTERM:\n{}",
        std::fs::read_to_string(&sidecar_log).unwrap_or_default()
    );
    let gone = eventually(Duration::from_secs(10), || async {
        let url = registry.url("/nacos/v1/ns/instance/list?serviceName=demo");
        let body: serde_json::Value = reqwest::get(url).await.ok()?.json().await.ok()?;
        body["hosts"].as_array()?.is_empty().then_some(())
    })
    .await;
    assert!(gone.is_some(), "the sidecar deregistered the pod");
    await_endpoints_within(PROBED, &client, &namespace, "demo", &[]).await;
    drop(app);
    lab.remove_node(node).expect("remove the pod's namespace");
}
