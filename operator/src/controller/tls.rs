//! The members' TLS certificates when the operator manages them (`spec.tls` without
//! `secretName`): a CA per cluster, kept in the Secret `<name>-tls-ca` and made once, and the
//! members' certificate in `<name>-tls` (cert-manager's layout: `tls.crt`, `tls.key`,
//! `ca.crt`), which every member mounts.
//!
//! One certificate serves every member, as server (its HTTP, gRPC and cluster ports) and as
//! client (dialling the other members' cluster ports); its SANs name each member's peer DNS
//! name, the client Service and `localhost`. [`plan`] re-issues it when it no longer covers
//! the members (the cluster grew), chains to another CA (the CA Secret was replaced), or
//! expires within [`RENEW_BEFORE`]; otherwise nothing is written, so the Secrets change only
//! when the certificate does. Members see a new certificate through their Secret volume (the
//! kubelet refreshes it within a minute or two) and the registry reloads the files.
//!
//! Not pure: new keys are random, and the clock is an argument. The Secrets' IO is elsewhere
//! (read by `dereference`, written by `apply`).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use snafu::{ResultExt, Snafu};
use time::{Duration, OffsetDateTime};

use super::build::object_meta;
use super::dereference::value;
use super::validate::ValidatedCluster;
use crate::pki::{self, Authority, Usage};

/// Key of the certificate (PEM) in both Secrets; in the CA Secret, the CA's.
pub const CERT_KEY: &str = "tls.crt";
/// Key of the private key (PEM, PKCS#8) in both Secrets.
pub const KEY_KEY: &str = "tls.key";
/// Key of the CA certificate (PEM) in the members' Secret.
pub const CA_KEY: &str = "ca.crt";
/// Type of both Secrets.
const SECRET_TYPE: &str = "kubernetes.io/tls";

/// Validity of a cluster's CA. It is not rotated: deleting `<name>-tls-ca` makes a new one and
/// a new members' certificate.
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// Validity of the members' certificate.
pub const MEMBER_VALIDITY: Duration = Duration::days(90);
/// The members' certificate is re-issued when it would expire within this.
pub const RENEW_BEFORE: Duration = Duration::days(30);

/// Name of the Secret holding the CA of cluster `name`.
pub fn ca_secret_name(name: &str) -> String {
    format!("{name}-tls-ca")
}

/// Name of the members' Secret the operator makes for cluster `name`.
pub fn members_secret_name(name: &str) -> String {
    format!("{name}-tls")
}

/// Why the certificates could not be made.
#[derive(Debug, Snafu)]
pub enum Error {
    /// Key generation or signing failed.
    #[snafu(display("cannot issue the members' certificate"))]
    Issue {
        /// Cause.
        source: pki::Error,
    },
}

/// The managed Secrets as they are now (`None`: absent).
#[derive(Debug, Clone, Default)]
pub struct Existing {
    /// `<name>-tls-ca`.
    pub ca: Option<Secret>,
    /// `<name>-tls`.
    pub members: Option<Secret>,
    /// Members the StatefulSet runs now: more than `spec.replicas` while a scale-down removes
    /// members, whose names a re-issued certificate must keep until they are gone.
    pub running: i32,
}

/// Why the members' certificate is (re-)issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issue {
    /// There was none.
    Missing,
    /// The CA is new or another than the one that signed it.
    NewCa,
    /// Its certificate or key is missing or does not parse.
    Unreadable,
    /// It does not name every member (the cluster grew).
    Uncovered {
        /// The first name it lacks.
        name: String,
    },
    /// It expires within [`RENEW_BEFORE`].
    Expiring,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str("there was none"),
            Self::NewCa => f.write_str("the cluster CA is new"),
            Self::Unreadable => f.write_str("the previous one was incomplete"),
            Self::Uncovered { name } => write!(f, "the previous one did not name {name}"),
            Self::Expiring => write!(f, "the previous one expires within {} days", RENEW_BEFORE.whole_days()),
        }
    }
}

/// What [`plan`] decided.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Secrets to write: the CA's when it was made, the members' when it was issued.
    pub apply: Vec<Secret>,
    /// Why the members' certificate was issued, when it was.
    pub issued: Option<Issue>,
    /// The CA certificate (PEM) members chain to.
    pub ca_pem: Vec<u8>,
}

/// The DNS names the members' certificate carries: the peer DNS name of each of `members`
/// members (with and without the cluster domain; the registry dials
/// `<name>-<n>.<headless Service FQDN>`), `localhost`, and the client Service's names (the last
/// one, its FQDN, is the common name).
pub fn dns_names(cluster: &ValidatedCluster, members: i32) -> Vec<String> {
    let (namespace, domain) = (&cluster.namespace, &cluster.cluster_domain);
    let headless = cluster.headless_service_name();
    let mut names = Vec::new();
    for ordinal in 0..members {
        let member = format!("{}-{ordinal}.{headless}.{namespace}.svc", cluster.name);
        names.push(format!("{member}.{domain}"));
        names.push(member);
    }
    names.push("localhost".to_owned());
    let service = cluster.client_service_name();
    names.extend([
        service.clone(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        cluster.client_service_host(),
    ]);
    names
}

/// Decides which managed Secrets to write at `now`: keeps a readable CA, makes one otherwise,
/// and issues the members' certificate when it is missing, unreadable, signed by another CA,
/// short of a member's name or expiring within [`RENEW_BEFORE`].
pub fn plan(cluster: &ValidatedCluster, existing: &Existing, now: OffsetDateTime) -> Result<Plan, Error> {
    let mut apply = Vec::new();
    let (authority, new_ca) = match existing.ca.as_ref().and_then(read_authority) {
        Some(authority) => (authority, false),
        None => {
            let name = format!("nacos-operator CA ({}/{})", cluster.namespace, cluster.name);
            let authority = Authority::generate(&name, CA_VALIDITY, now).context(IssueSnafu)?;
            apply.push(secret(
                cluster,
                ca_secret_name(&cluster.name),
                [(CERT_KEY, authority.ca_pem().to_owned()), (KEY_KEY, authority.key_pem())],
            ));
            (authority, true)
        }
    };
    let names = dns_names(cluster, cluster.replicas.max(existing.running));
    let issue = match existing.members.as_ref() {
        None => Some(Issue::Missing),
        Some(_) if new_ca => Some(Issue::NewCa),
        Some(members) => check(members, &authority, &names, now),
    };
    if issue.is_some() {
        let cert = authority.issue(&names, Usage::ServerAndClient, MEMBER_VALIDITY, now).context(IssueSnafu)?;
        apply.push(secret(
            cluster,
            members_secret_name(&cluster.name),
            [(CERT_KEY, cert.cert_pem.clone()), (KEY_KEY, cert.key_pem()), (CA_KEY, authority.ca_pem().to_owned())],
        ));
    }
    Ok(Plan { apply, issued: issue, ca_pem: authority.ca_pem().as_bytes().to_vec() })
}

/// Why `members` must be re-issued, or `None` when it serves every name for [`RENEW_BEFORE`]
/// more, chaining to `authority`.
fn check(members: &Secret, authority: &Authority, names: &[String], now: OffsetDateTime) -> Option<Issue> {
    if value(members, CA_KEY) != Some(authority.ca_pem().as_bytes()) {
        return Some(Issue::NewCa);
    }
    let cert = value(members, CERT_KEY).and_then(|pem| CertificateDer::from_pem_slice(pem).ok());
    let (Some(cert), Some(_)) = (cert, value(members, KEY_KEY)) else {
        return Some(Issue::Unreadable);
    };
    let ca = authority.ca_der();
    if let Some(name) = names.iter().find(|name| !pki::trusts(ca, &cert, name, now)) {
        return Some(Issue::Uncovered { name: name.clone() });
    }
    let renew = now + RENEW_BEFORE;
    names.iter().any(|name| !pki::trusts(ca, &cert, name, renew)).then_some(Issue::Expiring)
}

/// The CA stored in `secret`, if it is complete and parses.
fn read_authority(secret: &Secret) -> Option<Authority> {
    let cert = std::str::from_utf8(value(secret, CERT_KEY)?).ok()?;
    let key = std::str::from_utf8(value(secret, KEY_KEY)?).ok()?;
    Authority::from_pem(cert, key).ok()
}

fn secret<const N: usize>(cluster: &ValidatedCluster, name: String, data: [(&str, String); N]) -> Secret {
    Secret {
        metadata: object_meta(cluster, name),
        type_: Some(SECRET_TYPE.to_owned()),
        data: Some(
            data.into_iter().map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes()))).collect::<BTreeMap<_, _>>(),
        ),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests;
