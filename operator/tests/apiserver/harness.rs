//! A real Kubernetes control plane for tests: etcd + kube-apiserver + kube-controller-manager
//! 1.20.2 on loopback, started by `e2e/local-apiserver/start` (the same script a person runs),
//! with the `NacosCluster` CRD established before the garbage collector starts.
//!
//! One control plane per test process ([`ControlPlane::shared`]; nextest runs each test in its
//! own process, `cargo test` shares one per binary), one namespace per test
//! ([`ControlPlane::namespace`]). It is stopped by PID when dropped, and by the start script's
//! watchdog when the test process exits (a static is never dropped).
//!
//! Skip contract: without the binaries (`e2e/local-apiserver/build` makes them) the harness
//! prints `SKIP apiserver-tier: <why>` and [`ControlPlane::shared`] returns `None`; with
//! `APISERVER_TIER_REQUIRED=1` (CI) it panics instead.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use tempfile::TempDir;

/// `APISERVER_TIER_REQUIRED=1` turns a skip into a failure (set by `.ci/run`).
const REQUIRED: &str = "APISERVER_TIER_REQUIRED";
/// Exit status of the start script when a binary is missing.
const MISSING_BINARY: i32 = 3;

/// A file of this repository.
pub(crate) fn workspace_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

/// A binary of another workspace package, built first (a no-op when current) so a test never
/// runs a stale one: this package's tests do not build other packages' binaries by themselves.
pub(crate) fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_nacos-operator")).parent().expect("target dir");
    registry_proto::workspace_binary::workspace_binary(env!("CARGO"), package, bin, dir)
}

/// Multiplier for deadlines, from `IT_PATIENCE` (default 1), like every wait of the
/// integration tests.
pub(crate) fn patience() -> u32 {
    std::env::var("IT_PATIENCE").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1)
}

/// Polls `check` every 200 ms until it returns `Some`, at most `timeout` × patience.
pub(crate) async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
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
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Prints the skip line and returns `None`, or panics when the tier is required.
fn skip<T>(why: &str) -> Option<T> {
    if std::env::var(REQUIRED).is_ok_and(|v| v == "1") {
        panic!("apiserver-tier: {why} ({REQUIRED}=1)");
    }
    println!("SKIP apiserver-tier: {why}");
    None
}

/// A running control plane; stopped by PID on drop.
pub(crate) struct ControlPlane {
    dir: TempDir,
    kubeconfig: PathBuf,
}

impl ControlPlane {
    /// The control plane of this test process, started on first use; `None` (after the SKIP
    /// line) when its binaries are missing.
    pub(crate) fn shared() -> Option<&'static Self> {
        static SHARED: OnceLock<Option<ControlPlane>> = OnceLock::new();
        SHARED.get_or_init(Self::start).as_ref()
    }

    /// Starts a control plane of its own (the `NacosCluster` CRD installed and Established).
    pub(crate) fn start() -> Option<Self> {
        let dir = tempfile::Builder::new().prefix("apiserver-tier-").tempdir().expect("temp dir");
        let script = workspace_file("e2e/local-apiserver/start");
        let output = Command::new("bash")
            .arg(&script)
            .arg(dir.path())
            .arg("--crd")
            .arg(workspace_file("crds/nacoscluster.yaml"))
            .arg("--owner-pid")
            .arg(std::process::id().to_string())
            .env("LOCAL_APISERVER_START_SECONDS", (90 * patience()).to_string())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let stderr = String::from_utf8_lossy(&output.stderr);
        match output.status.code() {
            Some(0) => {}
            Some(MISSING_BINARY) => return skip(stderr.trim()),
            _ => panic!("{} failed ({}):\n{stderr}", script.display(), output.status),
        }
        print!("{}", String::from_utf8_lossy(&output.stdout));
        let kubeconfig = dir.path().join("kubeconfig");
        Some(Self { dir, kubeconfig })
    }

    /// The admin kubeconfig (for kubectl and helm: `--kubeconfig`).
    pub(crate) fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Where the control plane keeps its state and logs.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A client of this control plane, for the calling test's runtime (a client's connections
    /// belong to the runtime that made them, so tests do not share one).
    pub(crate) async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
        Client::try_from(config).expect("client")
    }

    /// Creates a fresh namespace named after `test` (unique within this process).
    pub(crate) async fn namespace(&self, client: &Client, test: &str) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let stem: String = test.replace('_', "-").chars().take(50).collect();
        let name = format!("{}-{}", stem.trim_end_matches('-'), NEXT.fetch_add(1, Ordering::Relaxed));
        let namespace = Namespace {
            metadata: ObjectMeta { name: Some(name.clone()), ..ObjectMeta::default() },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await.expect("namespace");
        name
    }

    /// Prints the last lines of each control-plane log (for a failing test).
    fn dump_logs(&self) {
        for name in ["etcd", "kube-apiserver", "kube-controller-manager"] {
            let path = self.dir.path().join(format!("{name}.log"));
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("--- last lines of {}", path.display());
            for line in &lines[lines.len().saturating_sub(20)..] {
                eprintln!("{line}");
            }
        }
    }

    /// `kubectl --kubeconfig <this> args…`: (success, stdout + stderr).
    pub(crate) fn kubectl(&self, args: &[&str]) -> (bool, String) {
        run_tool("kubectl", self, args)
    }

    /// `helm --kubeconfig <this> args…` with helm's state in the control plane's directory.
    pub(crate) fn helm(&self, args: &[&str]) -> (bool, String) {
        run_tool("helm", self, args)
    }
}

fn run_tool(tool: &str, plane: &ControlPlane, args: &[&str]) -> (bool, String) {
    let home = plane.dir().join(tool);
    let output = Command::new(tool)
        .arg("--kubeconfig")
        .arg(plane.kubeconfig())
        .args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// Whether `tool` is on PATH; prints the skip line (or panics when the tier is required) when
/// it is not.
pub(crate) fn have_tool(tool: &str) -> bool {
    let found = Command::new(tool).arg("version").output().is_ok();
    found || skip::<()>(&format!("{tool} not on PATH (scripts/install-chart-tools installs it)")).is_some()
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        let stop = workspace_file("e2e/local-apiserver/stop");
        if let Err(error) = Command::new("bash").arg(&stop).arg(self.dir.path()).status() {
            eprintln!("cannot run {}: {error}", stop.display());
        }
    }
}
