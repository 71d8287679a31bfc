//! Step 4 of the pipeline: server-side applies every built object under one field manager
//! ([`MANAGER`]) with `force` (the operator owns these fields; a human's `kubectl edit` is
//! reverted rather than wedging the reconcile in a conflict), then deletes objects labelled as
//! this cluster's that were not built this round.
//!
//! Only the PodDisruptionBudget can become such an orphan: every other kind is always built
//! under a name derived from the cluster's, so applying it replaces what was there.
//!
//! The PodDisruptionBudget is built as `policy/v1`; API servers older than Kubernetes 1.21
//! serve only `policy/v1beta1`, whose spec has the same shape for what we set
//! (`maxUnavailable`, `selector`), so there it is applied under that version
//! ([`PdbVersion`], found once at start by
//! [`ServerCapabilities::discover`](super::server::ServerCapabilities::discover)).
//!
//! Returns [`Applied`], which only this module can make: the status step takes it, so status is
//! always computed from objects the API server has accepted (zookeeper-operator's typestate).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::NamespaceResourceScope;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use snafu::{ResultExt, Snafu};

use super::build::{INSTANCE_LABEL, MANAGED_BY_LABEL, MANAGER, Resources};
use super::server::PdbVersion;
use super::validate::ValidatedCluster;

/// The objects as the API server stored them.
#[derive(Debug, Clone)]
pub struct Applied {
    stateful_set: StatefulSet,
}

impl Applied {
    /// The StatefulSet after apply, with its current status.
    pub fn stateful_set(&self) -> &StatefulSet {
        &self.stateful_set
    }

    /// A stand-in for status computation tests, which have no API server to apply to.
    #[cfg(test)]
    pub(crate) fn for_tests(stateful_set: StatefulSet) -> Self {
        Self { stateful_set }
    }
}

/// Why applying failed.
#[derive(Debug, Snafu)]
pub enum Error {
    /// Server-side apply of one object failed.
    #[snafu(display("cannot apply {kind} {name}"))]
    ApplyObject {
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
        /// Cause.
        source: kube::Error,
    },
    /// The PodDisruptionBudget could not be re-expressed as `policy/v1beta1`.
    #[snafu(display("cannot convert the PodDisruptionBudget to policy/v1beta1"))]
    ConvertPdb {
        /// Cause.
        source: serde_json::Error,
    },
    /// Listing or deleting an orphan failed.
    #[snafu(display("cannot clean up orphaned {kind} objects"))]
    DeleteOrphans {
        /// Kind.
        kind: &'static str,
        /// Cause.
        source: kube::Error,
    },
}

impl Error {
    /// The API server's HTTP status, when it answered.
    pub fn api_status(&self) -> Option<u16> {
        match self {
            Self::ApplyObject { source: kube::Error::Api(status), .. }
            | Self::DeleteOrphans { source: kube::Error::Api(status), .. } => Some(status.code),
            _ => None,
        }
    }
}

/// Applies `resources` of `cluster`, with the StatefulSet's replicas set to `replicas` (the
/// membership plan may hold them above or below the spec while members are added or removed)
/// and the PodDisruptionBudget under `pdb_version`. `secrets` (the managed TLS Secrets that are
/// new or changed, see [`tls::plan`](super::tls::plan)) go first, so pods find what they mount.
pub async fn apply(
    client: &Client,
    cluster: &ValidatedCluster,
    secrets: &[Secret],
    resources: Resources,
    replicas: i32,
    pdb_version: PdbVersion,
) -> Result<Applied, Error> {
    // Destructured without `..`: a new kind in `Resources` does not compile until applied here.
    let Resources { config_map, headless_service, client_service, mut stateful_set, pod_disruption_budget } = resources;
    let namespace = cluster.namespace.as_str();
    for secret in secrets {
        apply_one::<Secret>(client, namespace, "Secret", secret).await?;
    }
    apply_one::<ConfigMap>(client, namespace, "ConfigMap", &config_map).await?;
    apply_one::<Service>(client, namespace, "Service", &headless_service).await?;
    apply_one::<Service>(client, namespace, "Service", &client_service).await?;
    if let Some(spec) = stateful_set.spec.as_mut() {
        spec.replicas = Some(replicas);
    }
    let stateful_set = apply_one::<StatefulSet>(client, namespace, "StatefulSet", &stateful_set).await?;
    let kind = "PodDisruptionBudget";
    match (pod_disruption_budget, pdb_version) {
        (Some(pdb), PdbVersion::V1) => {
            apply_one::<PodDisruptionBudget>(client, namespace, kind, &pdb).await?;
        }
        (Some(pdb), PdbVersion::V1beta1) => {
            let api_resource = pdb_version.api_resource();
            let mut value = serde_json::to_value(&pdb).context(ConvertPdbSnafu)?;
            value["apiVersion"] = serde_json::Value::String(api_resource.api_version.clone());
            let object: DynamicObject = serde_json::from_value(value).context(ConvertPdbSnafu)?;
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &api_resource);
            let name = object.name_any();
            api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&object))
                .await
                .context(ApplyObjectSnafu { kind, name })?;
        }
        (None, PdbVersion::V1) => {
            delete_orphans(Api::<PodDisruptionBudget>::namespaced(client.clone(), namespace), cluster, kind).await?;
        }
        (None, PdbVersion::V1beta1) => {
            let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &pdb_version.api_resource());
            delete_orphans(api, cluster, kind).await?;
        }
    }
    Ok(Applied { stateful_set })
}

async fn apply_one<K>(client: &Client, namespace: &str, kind: &'static str, object: &K) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Serialize,
    K: std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = object.name_any();
    // SSA needs apiVersion and kind in the body; k8s-openapi serializes them for typed objects.
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(object))
        .await
        .context(ApplyObjectSnafu { kind, name })
}

/// Deletes every object of `api` labelled as this cluster's, managed by the operator and owned
/// by this cluster: called for kinds this round did not build.
async fn delete_orphans<K>(api: Api<K>, cluster: &ValidatedCluster, kind: &'static str) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let selector = format!("{INSTANCE_LABEL}={},{MANAGED_BY_LABEL}={MANAGER}", cluster.name);
    let orphans = api.list(&ListParams::default().labels(&selector)).await.context(DeleteOrphansSnafu { kind })?;
    for orphan in orphans.items {
        // Only objects this cluster owns: a same-named cluster recreated since has another uid.
        let owned = orphan.owner_references().iter().any(|o| o.uid == cluster.owner_reference.uid);
        if owned {
            let name = orphan.name_any();
            tracing::info!(cluster = %cluster.name, %kind, %name, "deleting an object no longer built");
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                // Gone already (deleted by someone else meanwhile): what we wanted.
                Err(kube::Error::Api(status)) if status.is_not_found() => {}
                Err(source) => return Err(source).context(DeleteOrphansSnafu { kind }),
            }
        }
    }
    Ok(())
}
