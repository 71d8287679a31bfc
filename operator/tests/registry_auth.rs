//! The operator's registry client against a real `registry` process with auth on: the cluster
//! admin API refuses a caller without credentials and accepts the member identity the operator
//! reads from the auth Secret.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nacos_operator::controller::registry::{Error, HttpRegistry, MemberIdentity, RegistryAdmin};
use registry_proto::contract::auth::env;

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

async fn start_registry() -> Registry {
    let data = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let child = Command::new(registry_bin())
        .args(["--bind", "127.0.0.1", "--http-port", &port.to_string(), "--grpc-port", "0"])
        .arg("--data-dir")
        .arg(data.path().join("data"))
        .env_remove("NACOS_CONFIG")
        .env(env::ENABLE, "true")
        .env(env::TOKEN, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
        .env(env::ADMIN_PASSWORD, "admin-pw")
        .env(env::IDENTITY_KEY, IDENTITY_KEY)
        .env(env::IDENTITY_VALUE, IDENTITY_VALUE)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn registry");
    let registry = Registry { child, http: format!("127.0.0.1:{port}"), _data: data };
    let readiness = format!("http://{}/nacos/v1/console/health/readiness", registry.http);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + START_TIMEOUT * patience();
    loop {
        let ready = client.get(&readiness).send().await.is_ok_and(|r| r.status().is_success());
        if ready {
            return registry;
        }
        assert!(Instant::now() < deadline, "registry at {} did not become ready", registry.http);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_raft_view_needs_the_member_identity_when_auth_is_on() {
    let registry = start_registry().await;
    let client = HttpRegistry::new().expect("client");

    let anonymous = client.raft_view(None, &registry.http).await;
    assert!(matches!(anonymous, Err(Error::UnexpectedAnswer { status: 403, .. })), "{anonymous:?}");

    let wrong = MemberIdentity::new(IDENTITY_KEY.as_bytes(), b"guess").expect("header");
    let guessed = client.raft_view(Some(&wrong), &registry.http).await;
    assert!(matches!(guessed, Err(Error::UnexpectedAnswer { status: 403, .. })), "{guessed:?}");

    let identity = MemberIdentity::new(IDENTITY_KEY.as_bytes(), IDENTITY_VALUE.as_bytes()).expect("header");
    let view = client.raft_view(Some(&identity), &registry.http).await.expect("the member identity is accepted");
    assert_eq!(view.members.len(), 1, "{view:?}");
}
