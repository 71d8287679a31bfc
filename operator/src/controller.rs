//! Reconciling a `NacosCluster` is a fixed pipeline; each step is a module with its own error
//! type, and only the ends touch the API server:
//!
//! ```text
//!  NacosCluster ──► dereference ──► validate ──► build ──► apply ──► update_status
//!                   (client:        (pure:       (pure:    (client:  (client: members and
//!                    auth Secret)    spec →       objects)  SSA,      leader from the
//!                                    Validated-             orphans)  registry, conditions)
//!                                    Cluster)
//! ```
//!
//! Built so far: [`validate`] and [`build`], the pure middle. `validate` is the only reader of
//! the spec; `build` reads only the `ValidatedCluster` it produces, so every rule about the spec
//! lives in one place and every built object is a function of validated data.

pub mod build;
pub mod validate;

/// Facts about the operator's environment that are not part of any `NacosCluster`: what the
/// operator was started with, not what users asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorEnvironment {
    /// DNS domain of the Kubernetes cluster (`cluster.local` unless the cluster was set up
    /// otherwise); the peer DNS name of members ends with it.
    pub cluster_domain: String,
    /// Registry image used when a `NacosCluster` names none.
    pub registry_image: String,
    /// Sidecar image injected when a `NacosCluster` names none.
    pub sidecar_image: String,
}

/// Repository of the registry image the operator deploys by default.
pub const REGISTRY_IMAGE_REPOSITORY: &str = "ghcr.io/nacos-rs/registry";
/// Repository of the sidecar image the operator injects by default.
pub const SIDECAR_IMAGE_REPOSITORY: &str = "ghcr.io/nacos-rs/sidecar";

impl Default for OperatorEnvironment {
    /// `cluster.local` and the images released with this operator version.
    fn default() -> Self {
        let version = env!("CARGO_PKG_VERSION");
        Self {
            cluster_domain: "cluster.local".into(),
            registry_image: format!("{REGISTRY_IMAGE_REPOSITORY}:{version}"),
            sidecar_image: format!("{SIDECAR_IMAGE_REPOSITORY}:{version}"),
        }
    }
}
