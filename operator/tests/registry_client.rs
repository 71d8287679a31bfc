//! The operator's registry client against real `registry` processes:
//! - with auth on, the cluster admin API refuses a caller without credentials and accepts the
//!   member identity the operator reads from the auth Secret;
//! - with TLS from the certificate the operator issues (`controller::tls`), three members form a
//!   cluster over mutual TLS and the client reads their Raft view over HTTPS trusting the
//!   cluster CA, while a plain or wrongly trusting client gets nothing.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nacos_operator::controller::OperatorEnvironment;
use nacos_operator::controller::registry::{Caller, Error, HttpRegistry, MemberIdentity, RaftView, RegistryAdmin};
use nacos_operator::controller::tls::{self, CA_KEY, CERT_KEY, Existing, KEY_KEY};
use nacos_operator::controller::validate::validate;
use nacos_operator::crd::NacosCluster;
use registry_proto::contract::auth::env;
use registry_proto::contract::ports::{CLUSTER_OFFSET, GRPC_OFFSET};
use registry_proto::contract::tls::env as tls_env;

const IDENTITY_KEY: &str = "serverIdentity";
const IDENTITY_VALUE: &str = "member-secret";
/// How long the registry may take to become ready, times `IT_PATIENCE`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

fn patience() -> u32 {
    std::env::var("IT_PATIENCE").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1)
}

/// The `registry` binary next to this package's, built (a no-op when current): this package's
/// tests do not build another package's binary by themselves.
fn registry_bin() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_nacos-operator")).parent().expect("target dir").to_path_buf();
    let status = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "registry-core", "--bin", "registry"])
        .stdout(Stdio::null())
        .status();
    assert!(status.is_ok_and(|s| s.success()), "building registry failed");
    dir.join("registry")
}

/// A standalone registry with client auth on; killed on drop.
struct Registry {
    child: Child,
    http: String,
    _data: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

/// Spawns a registry on `http_port` (gRPC on 0 unless `args` say otherwise) with `args` and
/// `envs`; killed on drop.
fn spawn_registry(http_port: u16, args: &[String], envs: &[(&str, String)]) -> Registry {
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
async fn eventually<T, F: Future<Output = Option<T>>>(timeout: Duration, mut check: impl FnMut() -> F) -> Option<T> {
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

async fn start_registry() -> Registry {
    let envs = [
        (env::ENABLE, "true".to_owned()),
        (env::TOKEN, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_owned()),
        (env::ADMIN_PASSWORD, "admin-pw".to_owned()),
        (env::IDENTITY_KEY, IDENTITY_KEY.to_owned()),
        (env::IDENTITY_VALUE, IDENTITY_VALUE.to_owned()),
    ];
    let registry = spawn_registry(free_port(), &["--grpc-port".to_owned(), "0".to_owned()], &envs);
    let readiness = format!("http://{}/nacos/v1/console/health/readiness", registry.http);
    let client = reqwest::Client::new();
    let ready = eventually(START_TIMEOUT, || async {
        client.get(&readiness).send().await.is_ok_and(|r| r.status().is_success()).then_some(())
    })
    .await;
    assert!(ready.is_some(), "registry at {} did not become ready", registry.http);
    registry
}

#[tokio::test]
async fn the_raft_view_needs_the_member_identity_when_auth_is_on() {
    let registry = start_registry().await;
    let client = HttpRegistry::new().expect("client");

    let anonymous = client.raft_view(Caller::default(), &registry.http).await;
    assert!(matches!(anonymous, Err(Error::UnexpectedAnswer { status: 403, .. })), "{anonymous:?}");

    let wrong = MemberIdentity::new(IDENTITY_KEY.as_bytes(), b"guess").expect("header");
    let guessed = client.raft_view(Caller { identity: Some(&wrong), tls_ca: None }, &registry.http).await;
    assert!(matches!(guessed, Err(Error::UnexpectedAnswer { status: 403, .. })), "{guessed:?}");

    let identity = MemberIdentity::new(IDENTITY_KEY.as_bytes(), IDENTITY_VALUE.as_bytes()).expect("header");
    let view = client
        .raft_view(Caller { identity: Some(&identity), tls_ca: None }, &registry.http)
        .await
        .expect("the member identity is accepted");
    assert_eq!(view.members.len(), 1, "{view:?}");
}

/// `n` HTTP ports whose gRPC (+1000) and cluster (+1001) ports are free too.
fn free_member_ports(n: usize) -> Vec<u16> {
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

/// The members' Secret the operator issues for a 3-member cluster with client-facing TLS,
/// written to files as the kubelet mounts it.
fn issued_certificate(dir: &Path) -> Vec<u8> {
    let cluster: NacosCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "nacos.rs/v1alpha1", "kind": "NacosCluster",
        "metadata": { "name": "nacos", "namespace": "registry", "uid": "0b5c2a4e-0000-4000-8000-000000000001" },
        "spec": { "replicas": 3, "tls": { "clientFacing": true } },
    }))
    .expect("cluster");
    let validated = validate(&cluster, &OperatorEnvironment::default()).expect("valid");
    let plan = tls::plan(&validated, &Existing::default(), time::OffsetDateTime::now_utc()).expect("issued");
    let members = plan.apply.iter().find(|s| s.metadata.name.as_deref() == Some("nacos-tls")).expect("members Secret");
    let data = members.data.as_ref().expect("data");
    for key in [CERT_KEY, KEY_KEY, CA_KEY] {
        std::fs::write(dir.join(key), &data[key].0).expect("write");
    }
    plan.ca_pem
}

/// A registry member of a TLS cluster reached by `localhost` (a SAN of the issued certificate).
fn tls_member(id: usize, ports: &[u16], dir: &Path) -> Registry {
    let members: Vec<String> = ports.iter().map(|p| format!("localhost:{p}")).collect();
    let http = ports[id - 1];
    let args = [
        "--grpc-port".to_owned(),
        (http + GRPC_OFFSET).to_string(),
        "--cluster-port".to_owned(),
        (http + CLUSTER_OFFSET).to_string(),
        "--node-id".to_owned(),
        id.to_string(),
        "--members".to_owned(),
        members.join(","),
    ];
    let file = |key: &str| dir.join(key).display().to_string();
    let envs = [
        (tls_env::CERT, file(CERT_KEY)),
        (tls_env::KEY, file(KEY_KEY)),
        (tls_env::CA, file(CA_KEY)),
        (tls_env::CLIENT_FACING, "true".to_owned()),
        (tls_env::CLUSTER, "true".to_owned()),
    ];
    let mut member = spawn_registry(http, &args, &envs);
    member.http = format!("localhost:{http}");
    member
}

fn settled(view: RaftView) -> Option<RaftView> {
    (view.leader.is_some() && view.members.len() == 3).then_some(view)
}

#[tokio::test]
async fn members_with_the_issued_certificate_form_a_cluster_over_mutual_tls_and_answer_over_https() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = issued_certificate(dir.path());
    let ports = free_member_ports(3);
    let members: Vec<Registry> = (1..=3).map(|id| tls_member(id, &ports, dir.path())).collect();
    let client = HttpRegistry::new().expect("client");
    let caller = Caller { identity: None, tls_ca: Some(&ca) };

    // Raft elects a leader and holds three voters only if the members reach each other's
    // cluster ports, which require a client certificate from the cluster CA.
    for member in &members {
        let view = eventually(Duration::from_secs(60), || async {
            client.raft_view(caller, &member.http).await.ok().and_then(settled)
        })
        .await;
        assert!(view.is_some(), "member {} reports no 3-member view with a leader over HTTPS", member.http);
    }
    // Plain HTTP to the TLS port, or HTTPS trusting another CA, gets no view.
    let plain = client.raft_view(Caller::default(), &members[0].http).await;
    assert!(matches!(plain, Err(Error::Unreachable { .. } | Error::UnexpectedAnswer { .. })), "{plain:?}");
    let other_dir = tempfile::tempdir().expect("temp dir");
    let other_ca = issued_certificate(other_dir.path());
    let distrusting = client.raft_view(Caller { identity: None, tls_ca: Some(&other_ca) }, &members[0].http).await;
    assert!(matches!(distrusting, Err(Error::Unreachable { .. })), "{distrusting:?}");
}
