//! The kind end-to-end suite's harness. `e2e/kind/run` creates the cluster, builds and loads
//! the images, installs the chart and then runs `tests/kind.rs` with `E2E=1`; the tests talk to
//! the cluster through the Kubernetes API and through `kubectl exec` into the demo app's pods.
//!
//! Skip contract (STYLE.md Part D): [`KindCluster::from_env`] prints `SKIP e2e-kind: <why>` and
//! returns `None` when the suite was not started by its entry script (or kubectl is missing);
//! with `E2E_REQUIRED=1` it panics instead.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// `E2E_REQUIRED=1` turns a skip into a failure.
const REQUIRED: &str = "E2E_REQUIRED";

/// A file of this repository.
pub fn workspace_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

/// Multiplier for deadlines, from `IT_PATIENCE` (default 1), like every wait of the tests.
pub fn patience() -> u32 {
    std::env::var("IT_PATIENCE").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1)
}

/// Polls `check` every second until it returns `Some`, at most `timeout` × patience.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout * patience();
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn skip<T>(why: &str) -> Option<T> {
    if std::env::var(REQUIRED).is_ok_and(|v| v == "1") {
        panic!("e2e-kind: {why} ({REQUIRED}=1)");
    }
    println!("SKIP e2e-kind: {why}");
    None
}

/// What `e2e/kind/run` hands the tests.
#[derive(Debug, Clone)]
pub struct KindCluster {
    /// kubeconfig context of the kind cluster (`kind-<name>`).
    pub context: String,
    /// Registry image the tests roll the members to.
    pub roll_image: String,
    /// Image of the demo app (a busybox: sh, httpd, wget, nslookup).
    pub app_image: String,
}

impl KindCluster {
    /// The cluster prepared by `e2e/kind/run`; `None` (after the SKIP line) otherwise.
    pub fn from_env() -> Option<Self> {
        if std::env::var("E2E").ok().as_deref() != Some("1") {
            return skip("E2E is not 1: run e2e/kind/run, which prepares the cluster");
        }
        let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is unset (set by e2e/kind/run)"));
        let read = || -> Result<Self, String> {
            Ok(Self {
                context: var("E2E_KUBE_CONTEXT")?,
                roll_image: var("E2E_ROLL_IMAGE")?,
                app_image: var("E2E_APP_IMAGE")?,
            })
        };
        match read() {
            Ok(cluster) if std::process::Command::new("kubectl").arg("version").arg("--client").output().is_ok() => {
                Some(cluster)
            }
            Ok(_) => skip("kubectl not on PATH"),
            Err(why) => skip(&why),
        }
    }

    /// A client of the kind cluster's context.
    pub async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read().expect("kubeconfig");
        let options = KubeConfigOptions { context: Some(self.context.clone()), ..KubeConfigOptions::default() };
        let config = Config::from_custom_kubeconfig(kubeconfig, &options).await.expect("kube config");
        Client::try_from(config).expect("kube client")
    }

    /// Creates namespace `name` afresh (a leftover of an earlier run is deleted first).
    pub async fn namespace(&self, client: &Client, name: &str) -> String {
        let api = Api::<Namespace>::all(client.clone());
        if api.get_opt(name).await.expect("read namespace").is_some() {
            api.delete(name, &DeleteParams::default()).await.expect("delete namespace");
            let gone = eventually(Duration::from_secs(180), || {
                let api = api.clone();
                async move { api.get_opt(name).await.ok().flatten().is_none().then_some(()) }
            })
            .await;
            assert!(gone.is_some(), "namespace {name} of an earlier run was not deleted within 180 s");
        }
        let namespace = Namespace {
            metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
            ..Namespace::default()
        };
        api.create(&PostParams::default(), &namespace).await.expect("create namespace");
        name.into()
    }

    /// `kubectl --context <kind> args…`.
    pub async fn kubectl(&self, args: &[&str]) -> Output {
        tokio::process::Command::new("kubectl")
            .arg("--context")
            .arg(&self.context)
            .args(args)
            .output()
            .await
            .expect("run kubectl")
    }

    /// Runs `command` in container `container` of a pod; its stdout when it exits 0.
    pub async fn exec(&self, namespace: &str, pod: &str, container: &str, command: &[&str]) -> Result<String, String> {
        let mut args = vec!["-n", namespace, "exec", pod, "-c", container, "--"];
        args.extend_from_slice(command);
        let output = self.kubectl(&args).await;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)))
        }
    }
}
