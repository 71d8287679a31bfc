//! One projector per `NacosCluster` and Nacos namespace: a gRPC session to the registry that
//! subscribes to every selected service and writes its Service and endpoints when a push says
//! the instances that may take traffic changed (never by periodic rewrites). Every
//! [`DISCOVERY_INTERVAL`] it lists the selected groups' services, subscribes to new ones,
//! deletes the objects of services that left, and stops once its `NacosCluster` is gone.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use registry_proto::client::{Event, Session, SessionConfig, Setup};
use registry_proto::contract::tls::ALPN_H2;
use registry_proto::model::ServiceKey;
use registry_proto::tls::Connector;
use registry_proto::wire::ServiceInfo;
use serde_json::json;
use snafu::{ResultExt, Snafu};

use super::objects::{self, NAMESPACE_ANNOTATION, Owner, PROJECTION_MANAGER, Target};
use super::{ProjectorConfig, name, select};
use crate::controller::server::EndpointsApi;
use crate::crd::NacosCluster;

/// How often the selected groups' service lists are read (new and removed services).
pub const DISCOVERY_INTERVAL: Duration = Duration::from_secs(5);
/// Services asked per `ServiceListRequest` page.
const PAGE_SIZE: usize = 500;
/// Pause after a failed round; doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest pause between rounds.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Why a projection round ended.
#[derive(Debug, Snafu)]
pub(crate) enum Error {
    /// None of the registry's addresses resolved.
    #[snafu(display("cannot resolve the registry's addresses {addresses:?}"))]
    Resolve {
        /// What was looked up.
        addresses: Vec<String>,
    },
    /// The session could not start or a registry call failed.
    #[snafu(display("registry call failed"))]
    Registry {
        /// Cause.
        source: registry_proto::client::ClientError,
    },
    /// The cluster CA cannot be trusted.
    #[snafu(display("cannot trust the cluster's CA"))]
    Trust {
        /// Cause.
        source: registry_proto::tls::TlsError,
    },
    /// The registry answered a service list without names.
    #[snafu(display("malformed service list: {body}"))]
    ServiceList {
        /// What came.
        body: String,
    },
    /// The session closed.
    #[snafu(display("the registry session closed"))]
    SessionClosed,
    /// An API-server call failed.
    #[snafu(display("cannot {action} {name}"))]
    Kube {
        /// What was tried.
        action: &'static str,
        /// Object name.
        name: String,
        /// Cause.
        source: kube::Error,
    },
}

/// What one service looks like in Kubernetes now.
#[derive(Debug, Default)]
struct Projected {
    /// Its Service name.
    name: String,
    /// The targets last written; `None` before the first write.
    written: Option<Vec<Target>>,
}

/// Runs until the `NacosCluster` is gone; failed rounds are retried with a backoff.
pub(super) async fn run(client: Client, endpoints: EndpointsApi, config: ProjectorConfig, namespace: String) {
    let mut retry = FIRST_RETRY;
    loop {
        match round(&client, endpoints, &config, &namespace).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(
                    cluster = %config.owner.cluster, nacos_namespace = %namespace, retry_in = ?retry,
                    error = %snafu::Report::from_error(&error), "service projection round failed"
                );
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
    }
}

/// One session's life: `Ok` when the owner is gone.
async fn round(
    client: &Client,
    endpoints: EndpointsApi,
    config: &ProjectorConfig,
    namespace: &str,
) -> Result<(), Error> {
    let servers = resolve(&config.registry).await?;
    let mut setup = Setup::new(concat!("Nacos-Rust-Operator:v", env!("CARGO_PKG_VERSION")), "naming");
    namespace.clone_into(&mut setup.tenant);
    setup.headers = config.headers.clone();
    if let Some(tls) = &config.tls {
        let trusting = registry_proto::tls::client_config_trusting(&tls.ca_pem, &[ALPN_H2]).context(TrustSnafu)?;
        setup.tls = Some(Connector::new(trusting).with_server_name(&tls.server_name));
    }
    let (session, mut events) = Session::start(SessionConfig::new(servers, setup)).context(RegistrySnafu)?;
    let writer = Writer { client: client.clone(), owner: &config.owner, endpoints };
    let mut projected: BTreeMap<ServiceKey, Projected> = BTreeMap::new();
    let mut tick = tokio::time::interval(DISCOVERY_INTERVAL);
    let mut orphans_swept = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if !writer.owner_exists().await? {
                    return Ok(());
                }
                let wanted = discover(&session, config, namespace).await?;
                let new: Vec<ServiceKey> = wanted.iter().filter(|k| !projected.contains_key(*k)).cloned().collect();
                for key in &new {
                    let entry = projected.entry(key.clone()).or_insert_with(|| Projected { name: name::service_name(key), written: None });
                    // Not connected: the subscription is redone on connect and its answer
                    // arrives as an event.
                    if let Ok(info) = session.subscribe(key, "").await {
                        writer.write(key, entry, &info).await?;
                    }
                }
                let gone: Vec<ServiceKey> = projected.keys().filter(|k| !wanted.contains(*k)).cloned().collect();
                for key in gone {
                    let _ = session.unsubscribe(&key).await;
                    if let Some(p) = projected.remove(&key) {
                        writer.remove(&p.name).await?;
                    }
                }
                if !orphans_swept {
                    let keep: BTreeSet<&str> = projected.values().map(|p| p.name.as_str()).collect();
                    writer.sweep(namespace, &keep).await?;
                    orphans_swept = true;
                }
            }
            event = events.recv() => match event {
                Some(Event::Service(info)) => {
                    let Ok(key) = ServiceKey::from_grouped(namespace, &info.name, Some(&info.group_name)) else { continue };
                    if let Some(entry) = projected.get_mut(&key) {
                        writer.write(&key, entry, &info).await?;
                    }
                }
                Some(_) => {}
                None => return SessionClosedSnafu.fail(),
            },
        }
    }
}

/// The registry's gRPC addresses, resolved now (a Service's address may change between rounds).
async fn resolve(addresses: &[String]) -> Result<Vec<SocketAddr>, Error> {
    let mut servers = Vec::new();
    for address in addresses {
        if let Ok(found) = tokio::net::lookup_host(address.as_str()).await {
            servers.extend(found);
        }
    }
    if servers.is_empty() {
        return ResolveSnafu { addresses: addresses.to_vec() }.fail();
    }
    Ok(servers)
}

/// The selected services of `namespace` as the registry lists them now.
async fn discover(session: &Session, config: &ProjectorConfig, namespace: &str) -> Result<BTreeSet<ServiceKey>, Error> {
    let groups: BTreeSet<&str> =
        config.selectors.iter().filter(|s| s.namespace == namespace).map(|s| s.group.as_str()).collect();
    let mut wanted = BTreeSet::new();
    for group in groups {
        let mut page = 1;
        loop {
            let body = json!({"namespace": namespace, "groupName": group, "pageNo": page, "pageSize": PAGE_SIZE});
            let answer =
                session.request("ServiceListRequest", &body, "ServiceListResponse").await.context(RegistrySnafu)?;
            let names = answer["serviceNames"]
                .as_array()
                .ok_or_else(|| ServiceListSnafu { body: answer.to_string() }.build())?;
            for service in names.iter().filter_map(|n| n.as_str()) {
                if select::selected(&config.selectors, namespace, group, service)
                    && let Ok(key) = ServiceKey::new(namespace, group, service)
                {
                    wanted.insert(key);
                }
            }
            let count = answer["count"].as_u64().unwrap_or(0);
            if names.len() < PAGE_SIZE || (page * PAGE_SIZE) as u64 >= count {
                break;
            }
            page += 1;
        }
    }
    Ok(wanted)
}

/// Writes projected objects under their own field manager.
struct Writer<'a> {
    client: Client,
    owner: &'a Owner,
    endpoints: EndpointsApi,
}

impl Writer<'_> {
    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.owner.namespace)
    }

    /// Whether the `NacosCluster` this projection belongs to still exists (same uid).
    async fn owner_exists(&self) -> Result<bool, Error> {
        let found = self
            .api::<NacosCluster>()
            .get_opt(&self.owner.cluster)
            .await
            .context(KubeSnafu { action: "read", name: self.owner.cluster.clone() })?;
        Ok(found.is_some_and(|c| c.metadata.uid.as_deref() == Some(self.owner.reference.uid.as_str())))
    }

    /// Writes the service's objects when its targets differ from what was written last.
    async fn write(&self, key: &ServiceKey, entry: &mut Projected, info: &ServiceInfo) -> Result<(), Error> {
        let targets = objects::targets(info);
        if entry.written.as_ref() == Some(&targets) {
            return Ok(());
        }
        let name = entry.name.as_str();
        let params = PatchParams::apply(PROJECTION_MANAGER).force();
        let service = objects::service(self.owner, name, key, &targets);
        self.api::<Service>()
            .patch(name, &params, &Patch::Apply(&service))
            .await
            .context(KubeSnafu { action: "apply Service", name })?;
        match self.endpoints {
            EndpointsApi::Endpoints => {
                let endpoints = objects::endpoints(self.owner, name, key, &targets);
                self.api::<Endpoints>()
                    .patch(name, &params, &Patch::Apply(&endpoints))
                    .await
                    .context(KubeSnafu { action: "apply Endpoints", name })?;
            }
            EndpointsApi::EndpointSliceV1 => {
                let slices = objects::endpoint_slices(self.owner, name, key, &targets);
                let api = self.api::<EndpointSlice>();
                for slice in &slices {
                    let slice_name = slice.name_any();
                    api.patch(&slice_name, &params, &Patch::Apply(slice))
                        .await
                        .context(KubeSnafu { action: "apply EndpointSlice", name: slice_name.clone() })?;
                }
                let keep: BTreeSet<String> = slices.iter().map(ResourceExt::name_any).collect();
                self.delete_slices(name, |s| !keep.contains(s)).await?;
            }
        }
        tracing::debug!(cluster = %self.owner.cluster, service = %key, targets = targets.len(), "projected");
        entry.written = Some(targets);
        Ok(())
    }

    /// Deletes a projected Service and its endpoints.
    async fn remove(&self, name: &str) -> Result<(), Error> {
        let params = DeleteParams::default();
        ignore_missing(self.api::<Service>().delete(name, &params).await.map(drop))
            .context(KubeSnafu { action: "delete Service", name })?;
        match self.endpoints {
            EndpointsApi::Endpoints => ignore_missing(self.api::<Endpoints>().delete(name, &params).await.map(drop))
                .context(KubeSnafu { action: "delete Endpoints", name })?,
            EndpointsApi::EndpointSliceV1 => self.delete_slices(name, |_| true).await?,
        }
        Ok(())
    }

    async fn delete_slices(&self, service: &str, doomed: impl Fn(&str) -> bool) -> Result<(), Error> {
        let api = self.api::<EndpointSlice>();
        let selector = format!("{},kubernetes.io/service-name={service}", self.owner.selector());
        let slices = api
            .list(&ListParams::default().labels(&selector))
            .await
            .context(KubeSnafu { action: "list EndpointSlices of", name: service })?;
        for slice in slices.items.iter().map(ResourceExt::name_any).filter(|n| doomed(n)) {
            ignore_missing(api.delete(&slice, &DeleteParams::default()).await.map(drop))
                .context(KubeSnafu { action: "delete EndpointSlice", name: slice.clone() })?;
        }
        Ok(())
    }

    /// Deletes this cluster's projected Services of Nacos namespace `namespace` not in `keep`
    /// (left from before a restart, or by a selector that changed).
    async fn sweep(&self, namespace: &str, keep: &BTreeSet<&str>) -> Result<(), Error> {
        let services = self
            .api::<Service>()
            .list(&ListParams::default().labels(&self.owner.selector()))
            .await
            .context(KubeSnafu { action: "list projected Services of", name: self.owner.cluster.clone() })?;
        for service in services.items {
            let of_namespace = service.annotations().get(NAMESPACE_ANNOTATION).is_some_and(|n| n == namespace);
            let name = service.name_any();
            if of_namespace && !keep.contains(name.as_str()) {
                self.remove(&name).await?;
            }
        }
        Ok(())
    }
}

/// A delete of something already gone is done.
fn ignore_missing(result: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match result {
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        other => other,
    }
}
