//! The Helm chart and the documentation's examples against the real API server: what
//! `helm install` and `kubectl apply --dry-run=server` do for a user.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec};
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

/// A pod named `name` in `namespace` with `labels`, asking for the sidecar.
fn pod(name: &str, labels: &[(&str, &str)]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()),
            annotations: Some([("nacos.rs/inject".to_owned(), "true".to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container { name: "app".into(), image: Some("app:1".into()), ..Container::default() }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// Creates the pod; `Err` carries the API server's refusal.
async fn create_pod(client: &Client, namespace: &str, pod: &Pod) -> Result<(), String> {
    match Api::<Pod>::namespaced(client.clone(), namespace).create(&PostParams::default(), pod).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) => Err(status.message),
        Err(error) => panic!("creating a pod: {error}"),
    }
}

#[tokio::test]
async fn the_webhook_skips_opted_out_namespaces_and_the_operators_pods_on_1_20() {
    // Its own control plane: a webhook that refuses pods would get in other tests' way.
    let Some(plane) = ControlPlane::start() else { return };
    if !have_tool("helm") {
        return;
    }
    let client = plane.client().await;
    let release_namespace = plane.namespace(&client, "operator").await;
    let chart = workspace_file("charts/nacos-operator");
    // No operator pod runs (this test starts no kubelet), so every call of the webhook fails; with
    // `failurePolicy: Fail` a pod is then refused exactly when the webhook would be called.
    let args = ["install", "nacos-operator", chart.to_str().expect("utf-8 path"), "--namespace", &release_namespace];
    let (ok, output) = plane.helm(&[&args[..], &["--set", "webhook.failurePolicy=Fail"]].concat());
    assert!(ok, "helm install failed:\n{output}");

    let ordinary = plane.namespace(&client, "ordinary").await;
    let refused = create_pod(&client, &ordinary, &pod("app", &[])).await;
    assert!(refused.as_ref().is_err_and(|m| m.contains("inject.nacos.rs")), "the webhook was not called: {refused:?}");

    let opted_out = plane.namespace(&client, "opted-out").await;
    let (ok, output) = plane.kubectl(&["label", "namespace", &opted_out, &format!("{OPT_OUT_LABEL}=disabled")]);
    assert!(ok, "{output}");
    assert_eq!(create_pod(&client, &opted_out, &pod("app", &[])).await, Ok(()), "opted-out namespace");

    let operator_pod = pod("nacos-operator-x", &[("app.kubernetes.io/name", "nacos-operator")]);
    assert_eq!(create_pod(&client, &release_namespace, &operator_pod).await, Ok(()), "the operator's own pod");

    // 1.20 labels no namespace with its name, so the exclusion by name does nothing here; the
    // documented opt-out label does.
    let system = create_pod(&client, "kube-system", &pod("system", &[])).await;
    assert!(system.is_err(), "kube-system was excluded without its name label on 1.20");
    let (ok, output) = plane.kubectl(&["label", "namespace", "kube-system", &format!("{OPT_OUT_LABEL}=disabled")]);
    assert!(ok, "{output}");
    assert_eq!(create_pod(&client, "kube-system", &pod("system", &[])).await, Ok(()), "kube-system, labelled");
}
