//! The operator's registry client against real `registry` processes:
//! - with auth on, the cluster admin API refuses a caller without credentials and accepts the
//!   member identity the operator reads from the auth Secret;
//! - with TLS from the certificate the operator issues (`controller::tls`), three members form a
//!   cluster over mutual TLS and the client reads their Raft view over HTTPS trusting the
//!   cluster CA, while a plain or wrongly trusting client gets nothing.

mod real_registry;

use std::path::Path;
use std::time::Duration;

use nacos_operator::controller::registry::{Caller, Error, HttpRegistry, MemberIdentity, RaftView, RegistryAdmin};
use nacos_operator::controller::tls::{CA_KEY, CERT_KEY, KEY_KEY};
use registry_proto::contract::auth::env;
use registry_proto::contract::ports::{CLUSTER_OFFSET, GRPC_OFFSET};
use registry_proto::contract::tls::env as tls_env;

use self::real_registry::{Registry, eventually, free_member_ports, free_port, issued_certificate, spawn_registry};

const IDENTITY_KEY: &str = "serverIdentity";
const IDENTITY_VALUE: &str = "member-secret";
/// How long the registry may take to become ready, times `IT_PATIENCE`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

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

/// The members' certificate the operator issues for a 3-member cluster with client-facing TLS,
/// written to `dir`; the CA's PEM.
fn three_member_certificate(dir: &Path) -> Vec<u8> {
    let cluster = real_registry::validated(serde_json::json!({ "replicas": 3, "tls": { "clientFacing": true } }));
    issued_certificate(&cluster, dir)
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
    let ca = three_member_certificate(dir.path());
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
    let other_ca = three_member_certificate(other_dir.path());
    let distrusting = client.raft_view(Caller { identity: None, tls_ca: Some(&other_ca) }, &members[0].http).await;
    assert!(matches!(distrusting, Err(Error::Unreachable { .. })), "{distrusting:?}");
}
