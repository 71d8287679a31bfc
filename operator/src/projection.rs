//! Projection of registered services into Kubernetes (`spec.serviceProjection`): each selected
//! service becomes a selector-less headless Service in the cluster's namespace, with endpoints
//! holding its instances that may take traffic, so cluster DNS (`<name>.<namespace>.svc`)
//! resolves them for programs with no Nacos client at all.
//!
//! ```text
//!  reconcile ──► Projections::ensure ──► one projector task per Nacos namespace
//!                (start / restart on        │ gRPC session to the client Service: subscribe
//!                 change / stop + delete)   │ to each selected service (push)
//!                                           ▼
//!                                   Service + Endpoints / EndpointSlices (server-side apply)
//! ```
//!
//! Files: `name.rs` the Nacos-name → DNS-label mapping · `select.rs` selectors · `objects.rs`
//! the objects of one service (pure) · `projector.rs` the task.

mod name;
mod objects;
mod projector;
mod select;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, ResourceExt};
use snafu::{ResultExt, Snafu};
use tokio::task::JoinHandle;

pub use self::name::service_name;
pub use self::objects::{
    GROUP_ANNOTATION, NAMESPACE_ANNOTATION, Owner, PROJECTED_BY_LABEL, PROJECTION_MANAGER, SERVICE_ANNOTATION,
};
pub use self::projector::DISCOVERY_INTERVAL;
use crate::controller::registry::MemberIdentity;
use crate::controller::server::EndpointsApi;
use crate::controller::validate::ValidatedCluster;
use crate::crd::ServiceSelector;

/// The registry's gRPC addresses (`host:port`) for a cluster; [`client_service`] in a real
/// deployment.
pub type Locate = std::sync::Arc<dyn Fn(&ValidatedCluster) -> Vec<String> + Send + Sync>;

/// The cluster's client Service by its DNS name, at the gRPC port.
pub fn client_service(cluster: &ValidatedCluster) -> Vec<String> {
    vec![format!("{}:{}", cluster.client_service_host(), cluster.ports.grpc)]
}

/// TLS to a registry whose gRPC port serves it (`spec.tls.clientFacing`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectorTls {
    /// The cluster CA (PEM), the only anchor trusted.
    pub ca_pem: Vec<u8>,
    /// The name the members' certificate must carry, whichever address is dialled: the client
    /// Service's DNS name.
    pub server_name: String,
}

/// Everything a cluster's projectors depend on: a change restarts them.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectorConfig {
    /// Where the objects go and whom they belong to.
    pub owner: Owner,
    /// Which services.
    pub selectors: Vec<ServiceSelector>,
    /// The registry's gRPC addresses.
    pub registry: Vec<String>,
    /// Headers on every registry request (the member identity, when auth is on).
    pub headers: BTreeMap<String, String>,
    /// TLS to the registry, when its gRPC port serves it.
    pub tls: Option<ProjectorTls>,
    /// How endpoints are written.
    pub endpoints: EndpointsApi,
}

/// Why the projection could not be brought in line.
#[derive(Debug, Snafu)]
pub enum Error {
    /// Listing or deleting the projected objects of a disabled projection failed.
    #[snafu(display("cannot remove the projected {kind} of {cluster}"))]
    Cleanup {
        /// Object kind.
        kind: &'static str,
        /// The cluster.
        cluster: String,
        /// Cause.
        source: kube::Error,
    },
}

/// A cluster's projection as this operator process last set it.
enum State {
    Running { config: Box<ProjectorConfig>, tasks: Vec<JoinHandle<()>> },
    Off,
}

/// The projections of every cluster this operator reconciles.
#[derive(Default)]
pub struct Projections {
    states: Mutex<HashMap<String, State>>,
}

impl std::fmt::Debug for Projections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projections").finish_non_exhaustive()
    }
}

impl Drop for Projections {
    fn drop(&mut self) {
        let states = self.states.get_mut().unwrap_or_else(PoisonError::into_inner);
        for state in states.values() {
            if let State::Running { tasks, .. } = state {
                tasks.iter().for_each(JoinHandle::abort);
            }
        }
    }
}

impl Projections {
    /// Brings `cluster`'s projection in line with its spec: starts its projectors, restarts
    /// them when what they depend on changed, or stops them and deletes what they projected.
    /// `tls_ca` (the cluster CA's PEM) is given when the registry's gRPC port serves TLS.
    /// (A projection turned off while no operator ran leaves its objects: they carry the
    /// `nacos.rs/projected-by` label, see docs/kubernetes.md.)
    pub async fn ensure(
        &self,
        client: &Client,
        cluster: &ValidatedCluster,
        locate: &Locate,
        identity: Option<&MemberIdentity>,
        tls_ca: Option<&[u8]>,
        endpoints: EndpointsApi,
    ) -> Result<(), Error> {
        let key = format!("{}/{}", cluster.namespace, cluster.name);
        let owner = Owner {
            cluster: cluster.name.clone(),
            namespace: cluster.namespace.clone(),
            reference: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                controller: None,
                ..cluster.owner_reference.clone()
            },
        };
        let Some(selectors) = &cluster.service_projection else {
            let running = {
                let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
                match states.get(&key) {
                    Some(State::Running { tasks, .. }) => {
                        tasks.iter().for_each(JoinHandle::abort);
                        true
                    }
                    Some(State::Off) => false,
                    None => {
                        states.insert(key.clone(), State::Off);
                        false
                    }
                }
            };
            if running {
                // Marked off only once everything is gone, so a failed cleanup is retried.
                remove_all(client, &owner, endpoints).await?;
                self.states.lock().unwrap_or_else(PoisonError::into_inner).insert(key, State::Off);
            }
            return Ok(());
        };
        let config = ProjectorConfig {
            owner,
            selectors: selectors.clone(),
            registry: locate(cluster),
            headers: identity.and_then(MemberIdentity::as_pair).into_iter().collect(),
            tls: tls_ca.map(|ca| ProjectorTls { ca_pem: ca.to_vec(), server_name: cluster.client_service_host() }),
            endpoints,
        };
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(State::Running { config: running, tasks }) = states.get(&key) {
            if **running == config && !tasks.iter().any(JoinHandle::is_finished) {
                return Ok(());
            }
            tasks.iter().for_each(JoinHandle::abort);
        }
        let namespaces: std::collections::BTreeSet<String> = selectors.iter().map(|s| s.namespace.clone()).collect();
        let tasks = namespaces
            .into_iter()
            .map(|namespace| tokio::spawn(projector::run(client.clone(), endpoints, config.clone(), namespace)))
            .collect();
        tracing::info!(cluster = %key, selectors = ?config.selectors, "service projection started");
        states.insert(key, State::Running { config: Box::new(config), tasks });
        Ok(())
    }
}

/// Deletes every object `owner`'s projection wrote (one by one: Services have no
/// delete-collection).
async fn remove_all(client: &Client, owner: &Owner, endpoints: EndpointsApi) -> Result<(), Error> {
    remove_labelled::<Service>(client, owner, "Services").await?;
    match endpoints {
        EndpointsApi::Endpoints => remove_labelled::<Endpoints>(client, owner, "Endpoints").await,
        EndpointsApi::EndpointSliceV1 => remove_labelled::<EndpointSlice>(client, owner, "EndpointSlices").await,
    }
}

async fn remove_labelled<K>(client: &Client, owner: &Owner, kind: &'static str) -> Result<(), Error>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
    <K as kube::Resource>::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), &owner.namespace);
    let cluster = owner.cluster.clone();
    let list = api
        .list(&ListParams::default().labels(&owner.selector()))
        .await
        .context(CleanupSnafu { kind, cluster: cluster.clone() })?;
    for object in list.items {
        match api.delete(&object.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(source) => return Err(source).context(CleanupSnafu { kind, cluster: cluster.clone() }),
        }
    }
    Ok(())
}
