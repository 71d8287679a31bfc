//! Real `registry` processes on loopback for the operator's integration tests: the binary,
//! free ports, a process killed on drop, waiting on a condition, and the members' certificate
//! the operator issues written out as the kubelet mounts it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nacos_operator::controller::OperatorEnvironment;
use nacos_operator::controller::tls::{self, CA_KEY, CERT_KEY, Existing, KEY_KEY};
use nacos_operator::controller::validate::{ValidatedCluster, validate};
use nacos_operator::crd::NacosCluster;
use registry_proto::contract::ports::{CLUSTER_OFFSET, GRPC_OFFSET};
use registry_proto::workspace_binary::workspace_binary;

fn patience() -> u32 {
    std::env::var("IT_PATIENCE").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1)
}

/// The `registry` binary next to this package's, built (a no-op when current).
fn registry_bin() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_nacos-operator")).parent().expect("target dir");
    workspace_binary(env!("CARGO"), "registry-core", "registry", dir)
}

/// A registry process; killed on drop.
pub(crate) struct Registry {
    child: Child,
    /// `host:port` of its HTTP port.
    pub(crate) http: String,
    _data: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port free on loopback right now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

/// `n` HTTP ports whose gRPC (+1000) and cluster (+1001) ports are free too.
pub(crate) fn free_member_ports(n: usize) -> Vec<u16> {
    let mut ports = Vec::new();
    let mut held = Vec::new();
    while ports.len() < n {
        let Ok(http) = TcpListener::bind("127.0.0.1:0") else { continue };
        let Ok(port) = http.local_addr().map(|a| a.port()) else { continue };
        let derived: Option<Vec<TcpListener>> = [GRPC_OFFSET, CLUSTER_OFFSET]
            .iter()
            .map(|offset| port.checked_add(*offset).and_then(|p| TcpListener::bind(("127.0.0.1", p)).ok()))
            .collect();
        if let Some(derived) = derived {
            ports.push(port);
            held.push(http);
            held.extend(derived);
        }
    }
    ports
}

/// Spawns a registry on `http_port` (gRPC on 0 unless `args` say otherwise) with `args` and
/// `envs`; killed on drop.
pub(crate) fn spawn_registry(http_port: u16, args: &[String], envs: &[(&str, String)]) -> Registry {
    let data = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(registry_bin());
    command
        .args(["--bind", "127.0.0.1", "--http-port", &http_port.to_string()])
        .args(args)
        .arg("--data-dir")
        .arg(data.path().join("data"))
        .env_remove("NACOS_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (name, value) in envs {
        command.env(name, value);
    }
    let child = command.spawn().expect("spawn registry");
    Registry { child, http: format!("127.0.0.1:{http_port}"), _data: data }
}

/// Waits until `check` gives a value, for at most `timeout` times `IT_PATIENCE`.
pub(crate) async fn eventually<T, F: Future<Output = Option<T>>>(
    timeout: Duration,
    mut check: impl FnMut() -> F,
) -> Option<T> {
    let deadline = Instant::now() + timeout * patience();
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `spec` (JSON) as the API server hands a `NacosCluster` named `nacos` to the operator,
/// validated.
pub(crate) fn validated(spec: serde_json::Value) -> ValidatedCluster {
    let cluster: NacosCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "nacos.rs/v1alpha1", "kind": "NacosCluster",
        "metadata": { "name": "nacos", "namespace": "registry", "uid": "0b5c2a4e-0000-4000-8000-000000000001" },
        "spec": spec,
    }))
    .expect("cluster");
    validate(&cluster, &OperatorEnvironment::default()).expect("valid")
}

/// The members' Secret the operator issues for `cluster` (with TLS), written to `dir` as the
/// kubelet mounts it; the CA's PEM.
pub(crate) fn issued_certificate(cluster: &ValidatedCluster, dir: &Path) -> Vec<u8> {
    let plan = tls::plan(cluster, &Existing::default(), time::OffsetDateTime::now_utc()).expect("issued");
    let members_secret = cluster.tls_secret_name().expect("TLS on");
    let members =
        plan.apply.iter().find(|s| s.metadata.name.as_ref() == Some(&members_secret)).expect("members Secret");
    let data = members.data.as_ref().expect("data");
    for key in [CERT_KEY, KEY_KEY, CA_KEY] {
        std::fs::write(dir.join(key), &data[key].0).expect("write");
    }
    plan.ca_pem
}
