//! Step 3 of the pipeline: the Kubernetes objects a [`ValidatedCluster`] needs, one file per
//! kind under `build/`.
//!
//! Pure: a function of the `ValidatedCluster` alone (no client, no clock, no spec), so the same
//! input always yields byte-identical objects and server-side apply sees no change on a
//! no-op reconcile. Every object gets the cluster's namespace, the `app.kubernetes.io/*`
//! labels and a controller owner reference to the `NacosCluster`, so garbage collection
//! removes it with the cluster and the controller is woken when it changes.

mod config_map;
mod pdb;
mod service;
mod statefulset;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use snafu::{ResultExt, Snafu};

pub use self::config_map::{CONFIG_DIR, CONFIG_FILE, DATA_DIR, render_config};
pub use self::statefulset::{
    CONFIG_HASH_ANNOTATION, CONTAINER_NAME, DATA_VOLUME, LIVENESS_PATH, READINESS_PATH, TLS_DIR, TLS_VOLUME,
    start_script,
};
use super::server::ServerCapabilities;
use super::validate::ValidatedCluster;

/// Label naming the application.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Label naming this cluster.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Label naming the part of the application.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// Label naming who manages the object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`NAME_LABEL`].
pub const APP_NAME: &str = "nacos";
/// Value of [`COMPONENT_LABEL`] for registry members.
pub const COMPONENT: &str = "registry";
/// Value of [`MANAGED_BY_LABEL`]; also the server-side-apply field manager.
pub const MANAGER: &str = "nacos-operator";

/// Port names, shared by the container and the Services so Services target ports by name.
pub mod port_name {
    /// HTTP (Open API, health).
    pub const HTTP: &str = "http";
    /// gRPC (SDK channel).
    pub const GRPC: &str = "grpc";
    /// Cluster (member to member).
    pub const CLUSTER: &str = "cluster";
    /// DNS over UDP.
    pub const DNS: &str = "dns";
    /// DNS over TCP (answers too large for UDP, resolvers that retry over TCP).
    pub const DNS_TCP: &str = "dns-tcp";
    /// DNS over TLS (RFC 7858), a TCP port of its own.
    pub const DNS_TLS: &str = "dns-tls";
}

/// Everything built for one cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Resources {
    /// Registry configuration file.
    pub config_map: ConfigMap,
    /// Headless Service for peer DNS.
    pub headless_service: Service,
    /// Service clients connect to.
    pub client_service: Service,
    /// The members.
    pub stateful_set: StatefulSet,
    /// Disruption budget, unless disabled.
    pub pod_disruption_budget: Option<PodDisruptionBudget>,
}

/// Why an object could not be built.
#[derive(Debug, Snafu, strum::IntoStaticStr)]
pub enum Error {
    /// The registry configuration did not render as TOML.
    #[snafu(display("cannot render the registry configuration as TOML"))]
    RenderConfig {
        /// Cause.
        source: toml::ser::Error,
    },
}

/// Builds every object of `cluster` for an API server with `server`'s capabilities (no field it
/// does not know).
pub fn build(cluster: &ValidatedCluster, server: &ServerCapabilities) -> Result<Resources, Error> {
    let config = render_config(cluster).context(RenderConfigSnafu)?;
    Ok(Resources {
        stateful_set: statefulset::build(cluster, &config, server),
        config_map: config_map::build(cluster, config),
        headless_service: service::build_headless(cluster),
        client_service: service::build_client(cluster),
        pod_disruption_budget: pdb::build(cluster),
    })
}

/// Labels that select the cluster's pods. Never change them: a StatefulSet's selector is
/// immutable.
pub fn selector_labels(cluster: &ValidatedCluster) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_owned(), APP_NAME.to_owned()),
        (INSTANCE_LABEL.to_owned(), cluster.name.clone()),
        (COMPONENT_LABEL.to_owned(), COMPONENT.to_owned()),
    ])
}

/// Labels of every object built for the cluster: the selector labels plus `managed-by`.
pub fn labels(cluster: &ValidatedCluster) -> BTreeMap<String, String> {
    let mut labels = selector_labels(cluster);
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGER.to_owned());
    labels
}

/// Metadata of an object named `name`: namespace, labels and the owner reference.
pub(super) fn object_meta(cluster: &ValidatedCluster, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(cluster.namespace.clone()),
        labels: Some(labels(cluster)),
        owner_references: Some(vec![cluster.owner_reference.clone()]),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, AUTH, CUSTOM_STORAGE_SCHEDULING, DEFAULTS, DNS, NAME, NAMESPACE, UID};

    fn metas(resources: &Resources) -> Vec<(&'static str, &ObjectMeta)> {
        let mut metas = vec![
            ("ConfigMap", &resources.config_map.metadata),
            ("headless Service", &resources.headless_service.metadata),
            ("client Service", &resources.client_service.metadata),
            ("StatefulSet", &resources.stateful_set.metadata),
        ];
        if let Some(pdb) = &resources.pod_disruption_budget {
            metas.push(("PodDisruptionBudget", &pdb.metadata));
        }
        metas
    }

    #[test]
    fn every_object_is_owned_labelled_and_namespaced() {
        for spec in [DEFAULTS, CUSTOM_STORAGE_SCHEDULING, AUTH, DNS] {
            let resources = fixtures::built(spec);
            for (kind, meta) in metas(&resources) {
                assert_eq!(meta.namespace.as_deref(), Some(NAMESPACE), "{kind}");
                let owners = meta.owner_references.as_ref().unwrap();
                assert_eq!(owners.len(), 1, "{kind}");
                let owner = &owners[0];
                assert_eq!(
                    (owner.api_version.as_str(), owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
                    ("nacos.rs/v1alpha1", "NacosCluster", NAME, UID),
                    "{kind}"
                );
                assert_eq!(owner.controller, Some(true), "{kind}");
                let labels = meta.labels.as_ref().unwrap();
                for (key, value) in [
                    (NAME_LABEL, APP_NAME),
                    (INSTANCE_LABEL, NAME),
                    (COMPONENT_LABEL, COMPONENT),
                    (MANAGED_BY_LABEL, MANAGER),
                ] {
                    assert_eq!(labels.get(key).map(String::as_str), Some(value), "{kind} label {key}");
                }
            }
        }
    }

    #[test]
    fn object_names_are_stable() {
        let resources = fixtures::built(DEFAULTS);
        let names: Vec<_> = metas(&resources).iter().map(|(_, m)| m.name.clone().unwrap()).collect();
        assert_eq!(names, ["nacos-config", "nacos-headless", "nacos", "nacos", "nacos"]);
    }

    #[test]
    fn building_twice_gives_identical_objects() {
        let cluster = fixtures::validated(CUSTOM_STORAGE_SCHEDULING);
        let server = ServerCapabilities::NEWEST;
        assert_eq!(build(&cluster, &server).unwrap(), build(&cluster, &server).unwrap());
    }

    #[test]
    fn disabled_budget_builds_no_pdb() {
        let resources = fixtures::built("podDisruptionBudget: { enabled: false }");
        assert!(resources.pod_disruption_budget.is_none());
    }
}
