//! The Helm chart and the documentation's examples against the real API server: what
//! `helm install` and `kubectl apply --dry-run=server` do for a user.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::harness::{ControlPlane, have_tool, workspace_file};

/// The namespace label that opts a namespace out of sidecar injection (chart and docs).
const OPT_OUT_LABEL: &str = "nacos.rs/sidecar-injection";

#[tokio::test]
async fn helm_installs_the_chart() {
    let Some(plane) = ControlPlane::shared() else { return };
    if !have_tool("helm") {
        return;
    }
    let client = plane.client().await;
    let namespace = plane.namespace(&client, "helm").await;
    let chart = workspace_file("charts/nacos-operator");
    let chart = chart.to_str().expect("utf-8 path");
    let (ok, output) = plane.helm(&["install", "nacos-operator", chart, "--namespace", &namespace]);
    assert!(ok, "helm install failed:\n{output}");

    let deployment = Api::<Deployment>::namespaced(client.clone(), &namespace).get("nacos-operator").await;
    assert!(deployment.is_ok(), "no operator Deployment: {deployment:?}");
    let webhook =
        Api::<MutatingWebhookConfiguration>::all(client.clone()).get("nacos-operator").await.expect("webhook");
    let selector = webhook.webhooks.iter().flatten().find_map(|w| w.namespace_selector.clone()).expect("selector");
    let keys: Vec<_> = selector.match_expressions.iter().flatten().map(|e| e.key.as_str()).collect();
    assert!(keys.contains(&OPT_OUT_LABEL), "pre-1.21 servers need the opt-out label: {keys:?}");

    let (ok, output) = plane.helm(&["uninstall", "nacos-operator", "--namespace", &namespace]);
    assert!(ok, "helm uninstall failed:\n{output}");
}

/// Creates `name` unless it exists.
async fn ensure_namespace(client: &Client, name: &str) {
    let namespace =
        Namespace { metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() }, ..Namespace::default() };
    match Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => panic!("namespace {name}: {error}"),
    }
}

#[tokio::test]
async fn every_example_passes_a_server_side_dry_run() {
    let Some(plane) = ControlPlane::shared() else { return };
    if !have_tool("kubectl") {
        return;
    }
    let client = plane.client().await;
    let mut examples: Vec<_> = std::fs::read_dir(workspace_file("docs/examples"))
        .expect("docs/examples")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 2, "{examples:?}");
    for example in &examples {
        let text = std::fs::read_to_string(example).expect("example");
        // The examples name their namespaces (their comments say to create them first).
        for line in text.lines() {
            if let Some(namespace) = line.trim().strip_prefix("namespace:") {
                ensure_namespace(&client, namespace.trim()).await;
            }
        }
        let path = example.to_str().expect("utf-8 path");
        let (ok, output) = plane.kubectl(&["apply", "--dry-run=server", "-f", path]);
        assert!(ok, "{}: {output}", example.display());
    }

    // The dry run validates for real: a wrong type is refused.
    let broken = plane.dir().join("broken.yaml");
    let text = std::fs::read_to_string(workspace_file("docs/examples/nacoscluster.yaml")).expect("example");
    let text = text.replacen("replicas: 3", "replicas: three", 1);
    std::fs::write(&broken, text).expect("write");
    let (ok, output) = plane.kubectl(&["apply", "--dry-run=server", "-f", broken.to_str().expect("utf-8 path")]);
    assert!(!ok && output.contains("replicas"), "a string replica count passed: {output}");
}
