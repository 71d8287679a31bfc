//! Step 1 of the pipeline: reads what the `NacosCluster` refers to or depends on, before
//! anything is decided: the auth Secret (when auth is on: the token key must be there, and the
//! member identity pair, which the operator itself sends to the registry's admin API), the TLS
//! Secrets (the operator's own, or the named one with its certificate, key and CA) and the
//! StatefulSet as it is now (its replicas guard scale down, its readiness the quorum checks).
//!
//! A missing Secret is not an error of this step: it is a fact ([`AuthSecret::Missing`]) the
//! reconciler turns into a `Degraded` condition and an event, because retrying fast would not
//! make the Secret appear. Only API failures are errors.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};
use snafu::{ResultExt, Snafu};

use super::registry::{Identity, MemberIdentity};
use super::tls::{CA_KEY, CERT_KEY, Existing, KEY_KEY, ca_secret_name, members_secret_name};
use crate::crd::{AuthSecretKeys, NacosCluster};

/// What was read.
#[derive(Debug, Clone, Default)]
pub struct Dereferenced {
    /// The auth Secret's state.
    pub auth_secret: AuthSecret,
    /// The TLS Secrets' state.
    pub tls: TlsSecrets,
    /// The cluster's StatefulSet, if it exists.
    pub stateful_set: Option<StatefulSet>,
}

/// State of the auth Secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AuthSecret {
    /// Auth is off, or no Secret is named (validation reports the latter).
    #[default]
    NotReferenced,
    /// The Secret exists and holds the token key and the identity pair.
    Present {
        /// The identity the operator authenticates with (its `Debug` hides the value).
        identity: MemberIdentity,
    },
    /// The Secret does not exist.
    Missing {
        /// Its name.
        name: String,
    },
    /// The Secret exists without a required key.
    MissingKey {
        /// Its name.
        name: String,
        /// The absent key.
        key: String,
        /// The `spec.auth.secretKeys` field naming it.
        field: &'static str,
    },
    /// The identity pair cannot be sent as an HTTP header.
    InvalidIdentity {
        /// Its name.
        name: String,
    },
}

/// State of the members' TLS Secrets.
#[derive(Debug, Clone, Default)]
pub enum TlsSecrets {
    /// TLS is off.
    #[default]
    Off,
    /// The operator manages them; this is what exists now (boxed: two Secrets are large).
    Managed(Box<Existing>),
    /// A named Secret (cert-manager's layout) with every key.
    Given {
        /// The CA certificate (PEM) members chain to.
        ca_pem: Vec<u8>,
    },
    /// The named Secret does not exist (cert-manager may not have issued it yet).
    Missing {
        /// Its name.
        name: String,
    },
    /// The named Secret lacks a key.
    MissingKey {
        /// Its name.
        name: String,
        /// The absent key.
        key: &'static str,
    },
}

impl AuthSecret {
    /// The identity to send to the registry: `None` unless the Secret is [`AuthSecret::Present`].
    pub fn identity(&self) -> Identity<'_> {
        match self {
            Self::Present { identity } => Some(identity),
            _ => None,
        }
    }
}

/// Why the referenced objects could not be read.
#[derive(Debug, Snafu)]
pub enum Error {
    /// Reading the auth Secret failed (other than not found).
    #[snafu(display("cannot read Secret {namespace}/{name}"))]
    GetSecret {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Cause.
        source: kube::Error,
    },
    /// Reading the StatefulSet failed (other than not found).
    #[snafu(display("cannot read StatefulSet {namespace}/{name}"))]
    GetStatefulSet {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Cause.
        source: kube::Error,
    },
}

/// Reads the auth Secret and the StatefulSet of `cluster`.
pub async fn dereference(client: &Client, cluster: &NacosCluster) -> Result<Dereferenced, Error> {
    let namespace = cluster.namespace().unwrap_or_default();
    let name = cluster.name_any();
    let auth = &cluster.spec.auth;
    let auth_secret = match auth.secret_name.as_deref().filter(|n| auth.enabled && !n.is_empty()) {
        None => AuthSecret::NotReferenced,
        Some(secret_name) => {
            let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
            let secret = secrets
                .get_opt(secret_name)
                .await
                .context(GetSecretSnafu { namespace: namespace.clone(), name: secret_name })?;
            match secret {
                None => AuthSecret::Missing { name: secret_name.to_owned() },
                Some(secret) => read_secret(&secret, secret_name, &auth.secret_keys),
            }
        }
    };
    let mut tls = match &cluster.spec.tls {
        None => TlsSecrets::Off,
        Some(spec) => {
            let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
            let get = |secret_name: String| {
                let secrets = secrets.clone();
                let namespace = namespace.clone();
                async move { secrets.get_opt(&secret_name).await.context(GetSecretSnafu { namespace, name: secret_name }) }
            };
            match spec.secret_name.clone() {
                None => TlsSecrets::Managed(Box::new(Existing {
                    ca: get(ca_secret_name(&name)).await?,
                    members: get(members_secret_name(&name)).await?,
                    running: 0, // from the StatefulSet, below
                })),
                Some(secret_name) => match get(secret_name.clone()).await? {
                    None => TlsSecrets::Missing { name: secret_name },
                    Some(secret) => read_tls_secret(&secret, secret_name),
                },
            }
        }
    };
    let stateful_sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    let stateful_set =
        stateful_sets.get_opt(&name).await.context(GetStatefulSetSnafu { namespace: namespace.clone(), name })?;
    if let TlsSecrets::Managed(existing) = &mut tls {
        existing.running = stateful_set.as_ref().and_then(|s| s.spec.as_ref()).and_then(|s| s.replicas).unwrap_or(0);
    }
    Ok(Dereferenced { auth_secret, tls, stateful_set })
}

/// Checks the Secret named `name` for the token key (its value is left to the members) and reads
/// the identity pair.
fn read_secret(secret: &Secret, name: &str, keys: &AuthSecretKeys) -> AuthSecret {
    let missing = |key: &String, field| AuthSecret::MissingKey { name: name.to_owned(), key: key.clone(), field };
    if value(secret, &keys.token).is_none() {
        return missing(&keys.token, "token");
    }
    let Some(identity_key) = value(secret, &keys.identity_key) else {
        return missing(&keys.identity_key, "identityKey");
    };
    let Some(identity_value) = value(secret, &keys.identity_value) else {
        return missing(&keys.identity_value, "identityValue");
    };
    match MemberIdentity::new(identity_key, identity_value) {
        Some(identity) => AuthSecret::Present { identity },
        None => AuthSecret::InvalidIdentity { name: name.to_owned() },
    }
}

/// Checks a named TLS Secret for the certificate, key and CA and reads the CA.
fn read_tls_secret(secret: &Secret, name: String) -> TlsSecrets {
    for key in [CERT_KEY, KEY_KEY, CA_KEY] {
        if value(secret, key).is_none() {
            return TlsSecrets::MissingKey { name, key };
        }
    }
    TlsSecrets::Given { ca_pem: value(secret, CA_KEY).unwrap_or_default().to_vec() }
}

/// The value of `key`: `data` (already base64-decoded by the client) or `stringData`.
pub(super) fn value<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    let data = secret.data.as_ref().and_then(|d| d.get(key)).map(|v| v.0.as_slice());
    data.or_else(|| secret.string_data.as_ref().and_then(|d| d.get(key)).map(String::as_bytes))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;

    fn secret(data: &[(&str, &str)], string_data: &[(&str, &str)]) -> Secret {
        let data = data.iter().map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec()))).collect();
        let string_data = string_data.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Secret { data: Some(data), string_data: Some::<BTreeMap<_, _>>(string_data), ..Secret::default() }
    }

    #[test]
    fn the_identity_pair_is_read_from_data_or_string_data() {
        let keys = AuthSecretKeys::default();
        let read = read_secret(
            &secret(&[("token", "t"), ("identity-key", "serverIdentity")], &[("identity-value", "s3cret")]),
            "nacos-auth",
            &keys,
        );
        assert!(read.identity().is_some_and(|i| i.is("serverIdentity", "s3cret")), "{read:?}");
        assert!(!format!("{read:?}").contains("s3cret"));
    }

    #[test]
    fn a_missing_identity_key_or_value_is_named_like_a_missing_token() {
        let keys = AuthSecretKeys::default();
        let cases = [
            (secret(&[("identity-key", "k"), ("identity-value", "v")], &[]), "token", "token"),
            (secret(&[("token", "t"), ("identity-value", "v")], &[]), "identity-key", "identityKey"),
            (secret(&[("token", "t"), ("identity-key", "k")], &[]), "identity-value", "identityValue"),
        ];
        for (secret, key, field) in cases {
            let read = read_secret(&secret, "nacos-auth", &keys);
            let expected = AuthSecret::MissingKey { name: "nacos-auth".into(), key: key.into(), field };
            assert_eq!(read, expected);
            assert_eq!(read.identity(), None);
        }
    }

    #[test]
    fn an_identity_that_cannot_be_a_header_is_invalid() {
        let read = read_secret(
            &secret(&[("token", "t"), ("identity-key", "k"), ("identity-value", "v\n")], &[]),
            "nacos-auth",
            &AuthSecretKeys::default(),
        );
        assert_eq!(read, AuthSecret::InvalidIdentity { name: "nacos-auth".into() });
    }
}
