//! Step 1 of the pipeline: reads what the `NacosCluster` refers to or depends on, before
//! anything is decided: the auth Secret (when auth is on) and the StatefulSet as it is now
//! (its replicas guard scale down, its readiness the quorum checks).
//!
//! A missing Secret is not an error of this step: it is a fact ([`AuthSecret::Missing`]) the
//! reconciler turns into a `Degraded` condition and an event, because retrying fast would not
//! make the Secret appear. Only API failures are errors.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};
use snafu::{ResultExt, Snafu};

use crate::crd::NacosCluster;

/// What was read.
#[derive(Debug, Clone, Default)]
pub struct Dereferenced {
    /// The auth Secret's state.
    pub auth_secret: AuthSecret,
    /// The cluster's StatefulSet, if it exists.
    pub stateful_set: Option<StatefulSet>,
}

/// State of the auth Secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AuthSecret {
    /// Auth is off, or no Secret is named (validation reports the latter).
    #[default]
    NotReferenced,
    /// The Secret exists and holds the token key.
    Present,
    /// The Secret does not exist.
    Missing {
        /// Its name.
        name: String,
    },
    /// The Secret exists without the required token key.
    MissingKey {
        /// Its name.
        name: String,
        /// The absent key.
        key: String,
    },
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
            let key = &auth.secret_keys.token;
            match secret {
                None => AuthSecret::Missing { name: secret_name.to_owned() },
                Some(secret) if has_key(&secret, key) => AuthSecret::Present,
                Some(_) => AuthSecret::MissingKey { name: secret_name.to_owned(), key: key.clone() },
            }
        }
    };
    let stateful_sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    let stateful_set =
        stateful_sets.get_opt(&name).await.context(GetStatefulSetSnafu { namespace: namespace.clone(), name })?;
    Ok(Dereferenced { auth_secret, stateful_set })
}

fn has_key(secret: &Secret, key: &str) -> bool {
    secret.data.as_ref().is_some_and(|d| d.contains_key(key))
        || secret.string_data.as_ref().is_some_and(|d| d.contains_key(key))
}
