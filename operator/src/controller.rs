//! Reconciling a `NacosCluster` is a fixed pipeline; each step is a module with its own error
//! type, and only the ends touch the API server:
//!
//! ```text
//!  NacosCluster ──► dereference ──► validate ──► build ──► membership ──► apply ──► membership ──► update_status
//!                   (client:        (pure:       (pure:    plan (pure:    (client:  step         (client: status
//!                    auth Secret,    spec →       objects)  replicas and   SSA,      (registry:   subresource,
//!                    StatefulSet)    Validated-             next step)     orphans)  add/promote/ conditions)
//!                                    Cluster)                                        remove)
//! ```
//!
//! [`validate`] is the only reader of the spec; [`build`] reads only the `ValidatedCluster` it
//! produces. [`membership::decide`] plans the StatefulSet's replicas and one Raft membership
//! change from the Raft view the registry reports ([`scale`] does the IO); the StatefulSet is
//! applied first, so on scale up the new pod exists before its member is added, and on scale
//! down the replicas stay until the member has left Raft.
//!
//! Problems with the spec or its references are not errors: an invalid spec or a missing auth
//! Secret becomes a `Degraded` condition and a Warning event, and the controller waits for a
//! change instead of retrying. Errors ([`Error`], one variant per client step) are API or
//! network failures; [`error_policy`] retries them with a per-object exponential backoff.

pub mod apply;
pub mod build;
pub mod dereference;
pub mod membership;
pub mod registry;
pub mod scale;
pub mod server;
pub mod tls;
pub mod triggers;
pub mod update_status;
pub mod validate;

mod reconcile;

pub use self::reconcile::{Context, Error, RunError, error_policy, reconcile, run};

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
