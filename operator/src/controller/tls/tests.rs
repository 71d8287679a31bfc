//! The managed certificates: made once, kept while they fit, re-issued when the cluster grows,
//! the CA changes or expiry nears; and they work: a member's certificate completes a mutual
//! TLS handshake with another member for every member's DNS name.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::fixtures::{self, NAME, UID};

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn cluster(replicas: i32) -> ValidatedCluster {
    fixtures::validated(&format!("replicas: {replicas}\ntls: {{ clientFacing: true }}"))
}

/// The Secrets a plan wrote, as the next reconcile reads them.
fn existing(plan: &Plan, before: &Existing) -> Existing {
    let mut next = before.clone();
    for secret in &plan.apply {
        match secret.metadata.name.as_deref() {
            Some("nacos-tls-ca") => next.ca = Some(secret.clone()),
            Some("nacos-tls") => next.members = Some(secret.clone()),
            other => panic!("unexpected Secret {other:?}"),
        }
    }
    next
}

fn names_of(plan: &Plan) -> Vec<&str> {
    plan.apply.iter().filter_map(|s| s.metadata.name.as_deref()).collect()
}

fn pem<'a>(secret: &'a Secret, key: &str) -> &'a [u8] {
    value(secret, key).unwrap_or_else(|| panic!("no {key}"))
}

fn cert(secret: &Secret) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem(secret, CERT_KEY)).unwrap()
}

fn ca(secret: &Secret) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem(secret, CA_KEY)).unwrap()
}

#[test]
fn both_secrets_are_made_owned_by_the_cluster_in_cert_managers_layout() {
    let cluster = cluster(3);
    let plan = plan(&cluster, &Existing::default(), now()).unwrap();
    assert_eq!(names_of(&plan), ["nacos-tls-ca", "nacos-tls"]);
    assert_eq!(plan.issued, Some(Issue::Missing));
    for secret in &plan.apply {
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()), ("NacosCluster", NAME, UID));
        assert_eq!(owner.controller, Some(true));
    }
    let members = &plan.apply[1];
    let keys: Vec<&String> = members.data.as_ref().unwrap().keys().collect();
    assert_eq!(keys, ["ca.crt", "tls.crt", "tls.key"]);
    assert_eq!(pem(members, CA_KEY), pem(&plan.apply[0], CERT_KEY));
    assert_eq!(plan.ca_pem, pem(members, CA_KEY));
}

#[test]
fn the_certificate_names_every_member_and_the_client_service() {
    let cluster = cluster(3);
    let plan = plan(&cluster, &Existing::default(), now()).unwrap();
    let members = &plan.apply[1];
    let expected = [
        "nacos-0.nacos-headless.registry.svc.cluster.local",
        "nacos-0.nacos-headless.registry.svc",
        "nacos-2.nacos-headless.registry.svc.cluster.local",
        "localhost",
        "nacos",
        "nacos.registry",
        "nacos.registry.svc",
        "nacos.registry.svc.cluster.local",
    ];
    for name in expected {
        assert!(dns_names(&cluster, 3).iter().any(|n| n == name), "{name} not among {:?}", dns_names(&cluster, 3));
        assert!(pki::trusts(&ca(members), &cert(members), name, now()), "{name}");
    }
    for name in ["nacos-3.nacos-headless.registry.svc.cluster.local", "nacos.other.svc"] {
        assert!(!pki::trusts(&ca(members), &cert(members), name, now()), "{name}");
    }
}

#[test]
fn a_fitting_certificate_is_kept_and_nothing_is_written() {
    let cluster = cluster(3);
    let first = plan(&cluster, &Existing::default(), now()).unwrap();
    let stored = existing(&first, &Existing::default());
    let second = plan(&cluster, &stored, now()).unwrap();
    assert_eq!((names_of(&second), second.issued.clone()), (vec![], None));
    assert_eq!(second.ca_pem, first.ca_pem);
    // Fewer members: the certificate still names them all.
    let smaller = plan(&fixtures::validated("replicas: 1\ntls: {}"), &stored, now()).unwrap();
    assert_eq!(names_of(&smaller), Vec::<&str>::new());
}

#[test]
fn scaling_up_reissues_the_certificate_from_the_same_ca() {
    let first = plan(&cluster(3), &Existing::default(), now()).unwrap();
    let stored = existing(&first, &Existing::default());
    let grown = plan(&cluster(5), &stored, now()).unwrap();
    assert_eq!(names_of(&grown), ["nacos-tls"]);
    let missing = "nacos-3.nacos-headless.registry.svc.cluster.local".to_owned();
    assert_eq!(grown.issued, Some(Issue::Uncovered { name: missing.clone() }));
    let members = &grown.apply[0];
    assert_eq!(pem(members, CA_KEY), first.ca_pem.as_slice());
    for name in [missing.as_str(), "nacos-4.nacos-headless.registry.svc", "nacos-0.nacos-headless.registry.svc"] {
        assert!(pki::trusts(&ca(members), &cert(members), name, now()), "{name}");
    }
    // The next reconcile keeps it.
    let after = plan(&cluster(5), &existing(&grown, &stored), now()).unwrap();
    assert_eq!(after.issued, None);
}

#[test]
fn the_certificate_is_reissued_a_month_before_it_expires() {
    let cluster = cluster(3);
    let start = now();
    let first = plan(&cluster, &Existing::default(), start).unwrap();
    let stored = existing(&first, &Existing::default());
    assert_eq!(plan(&cluster, &stored, start + Duration::days(59)).unwrap().issued, None);
    let late = plan(&cluster, &stored, start + Duration::days(61)).unwrap();
    assert_eq!((names_of(&late), late.issued.clone()), (vec!["nacos-tls"], Some(Issue::Expiring)));
}

#[test]
fn a_replaced_or_broken_ca_makes_both_anew() {
    let cluster = cluster(3);
    let first = plan(&cluster, &Existing::default(), now()).unwrap();
    let stored = existing(&first, &Existing::default());
    // Someone else's CA in the CA Secret: the members' certificate no longer chains to it.
    let other = plan(&cluster, &Existing::default(), now()).unwrap();
    let replaced = Existing { ca: other.apply[0].clone().into(), ..stored.clone() };
    let reissued = plan(&cluster, &replaced, now()).unwrap();
    assert_eq!((names_of(&reissued), reissued.issued.clone()), (vec!["nacos-tls"], Some(Issue::NewCa)));
    // An unreadable CA Secret: a new CA and a new certificate.
    let mut broken = stored.ca.clone().unwrap();
    broken.data.as_mut().unwrap().insert(KEY_KEY.into(), ByteString(b"garbage".to_vec()));
    let anew = plan(&cluster, &Existing { ca: Some(broken), ..stored }, now()).unwrap();
    assert_eq!((names_of(&anew), anew.issued.clone()), (vec!["nacos-tls-ca", "nacos-tls"], Some(Issue::NewCa)));
    assert_ne!(anew.ca_pem, first.ca_pem);
}

/// A member's server configuration from its Secret: its certificate, client certificates
/// required and checked against `ca.crt` (what the registry's cluster port does).
fn member_server(secret: &Secret) -> Arc<ServerConfig> {
    let provider = pki::provider();
    let mut roots = RootCertStore::empty();
    roots.add(ca(secret)).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().unwrap();
    let key = PrivateKeyDer::from_pem_slice(pem(secret, KEY_KEY)).unwrap();
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert(secret)], key)
        .unwrap();
    Arc::new(config)
}

/// A member dialling another: trusts `ca.crt`, presents its certificate.
fn member_client(secret: &Secret) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca(secret)).unwrap();
    let key = PrivateKeyDer::from_pem_slice(pem(secret, KEY_KEY)).unwrap();
    let config = ClientConfig::builder_with_provider(pki::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert(secret)], key)
        .unwrap();
    Arc::new(config)
}

/// Whether a mutual TLS handshake for `name` completes and carries a byte both ways.
async fn handshake(server: Arc<ServerConfig>, client: Arc<ClientConfig>, name: &str) -> Result<(), String> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let serve = tokio::spawn(async move {
        let mut stream = acceptor.accept(server_io).await.map_err(|e| format!("server: {e}"))?;
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.map_err(|e| format!("server read: {e}"))?;
        stream.write_all(&byte).await.map_err(|e| format!("server write: {e}"))?;
        stream.flush().await.map_err(|e| format!("server flush: {e}"))
    });
    let connector = tokio_rustls::TlsConnector::from(client);
    let name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    let mut stream = connector.connect(name, client_io).await.map_err(|e| format!("client: {e}"))?;
    stream.write_all(b"x").await.map_err(|e| format!("client write: {e}"))?;
    let mut byte = [0u8; 1];
    let read = stream.read_exact(&mut byte).await.map_err(|e| format!("client read: {e}"));
    let served = serve.await.map_err(|e| e.to_string())?;
    served.and(read.map(|_| ()))
}

#[tokio::test]
async fn members_complete_mutual_tls_with_the_issued_certificate_for_every_member_name() {
    let cluster = cluster(3);
    let plan = plan(&cluster, &Existing::default(), now()).unwrap();
    let members = &plan.apply[1];
    for name in dns_names(&cluster, 3) {
        handshake(member_server(members), member_client(members), &name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // A client with a certificate from another cluster's CA is refused by the member.
    let other = plan_for_other_cluster();
    let mut roots = RootCertStore::empty();
    roots.add(ca(members)).unwrap();
    let key = PrivateKeyDer::from_pem_slice(pem(&other, KEY_KEY)).unwrap();
    let intruder = ClientConfig::builder_with_provider(pki::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert(&other)], key)
        .unwrap();
    let refused = handshake(member_server(members), Arc::new(intruder), "nacos-1.nacos-headless.registry.svc").await;
    assert!(refused.is_err(), "a certificate from another CA got in");
}

fn plan_for_other_cluster() -> Secret {
    plan(&cluster(3), &Existing::default(), now()).unwrap().apply.remove(1)
}

#[test]
fn a_certificate_reissued_during_a_scale_down_keeps_the_leaving_members_names() {
    let start = now();
    let first = plan(&cluster(5), &Existing::default(), start).unwrap();
    // Spec says 3, the StatefulSet still runs 5 while members 5 and 4 leave Raft.
    let stored = Existing { running: 5, ..existing(&first, &Existing::default()) };
    let late = plan(&cluster(3), &stored, start + Duration::days(61)).unwrap();
    assert_eq!(late.issued, Some(Issue::Expiring));
    let members = &late.apply[0];
    let leaving = "nacos-4.nacos-headless.registry.svc.cluster.local";
    assert!(pki::trusts(&ca(members), &cert(members), leaving, start + Duration::days(61)));
}
