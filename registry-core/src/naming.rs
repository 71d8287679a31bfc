//! The service-registry domain: registration rules, queries, heartbeats, service metadata.
//!
//! ```text
//!  api/ ──► NamingService ──► checks against the current views (state/)
//!                 │ Command
//!                 ▼
//!            consistency::submit ──► Raft (persistent) | local apply (ephemeral)
//!  health.rs: beat tracker + sweeper ──► SetEphemeralHealth / UnpublishEphemeral
//!  cleaner.rs: empty services ──► RemoveEmptyService
//! ```
//!
//! Checks that depend on ephemeral data (a service's kind, whether it exists) happen here,
//! before submitting, because Raft commands must be decided by replicated data alone.

pub mod cleaner;
pub mod health;
pub mod selector;
pub mod service_info;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;

use crate::consistency::{ApplyError, Command, Consistency, NamingCommand, SubmitError};
use crate::model::instance::InstanceError;
use crate::model::{ClientId, ClusterMetadata, Instance, InstanceKey, InstanceOverride, NameError, ServiceKey};
use crate::model::{ServiceMetadata, service::default_selector};
use crate::state::{NamingStore, ServiceView};
pub use health::BeatTracker;
pub use selector::{Selection, parse_clusters, select};
pub use service_info::{InstanceInfo, NameForm, ServiceInfo};

/// Tunables of the naming domain.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NamingConfig {
    /// How often beat liveness is checked (ms). Nacos: 5 000.
    pub beat_check_interval_ms: u64,
    /// Beat interval told to v1 clients when the instance does not set one (ms). Nacos: 5 000.
    pub client_beat_interval_ms: u64,
    /// Whether v1 clients may send beats without a body after the first. Nacos: true.
    pub light_beat_enabled: bool,
    /// How often empty services are looked for (ms). Nacos: 60 000.
    pub empty_service_clean_interval_ms: u64,
    /// How long a service must stay empty before removal (ms). Nacos: 60 000.
    pub empty_service_expire_ms: u64,
}

impl Default for NamingConfig {
    fn default() -> Self {
        Self {
            beat_check_interval_ms: 5_000,
            client_beat_interval_ms: 5_000,
            light_beat_enabled: true,
            empty_service_clean_interval_ms: 60_000,
            empty_service_expire_ms: 60_000,
        }
    }
}

/// Why a naming operation failed. The API layer maps each variant to a status and code.
#[derive(Debug, thiserror::Error)]
pub enum NamingError {
    /// A name broke its rule.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The instance is invalid.
    #[error(transparent)]
    Instance(#[from] InstanceError),
    /// A parameter value is invalid.
    #[error("{0}")]
    InvalidParam(String),
    /// The service does not exist.
    #[error("service not found, namespace: {namespace}, serviceName: {service}")]
    ServiceNotFound {
        /// Namespace.
        namespace: String,
        /// Grouped service name.
        service: String,
    },
    /// The service already exists.
    #[error("specified service {0} already exists!")]
    ServiceAlreadyExists(String),
    /// The service still has instances.
    #[error("Service {0} is not empty, can't be delete. Please unregister instance first")]
    ServiceNotEmpty(String),
    /// No instance matches.
    #[error("no matched ip found!")]
    InstanceNotFound,
    /// An ephemeral instance into a persistent service, or the reverse.
    #[error("Current service {service} is {kind} service, can't register {other} instance.")]
    KindConflict {
        /// Grouped service name.
        service: String,
        /// The service's kind.
        kind: &'static str,
        /// The instance's kind.
        other: &'static str,
    },
    /// Manual health change while an active health check owns the instance.
    #[error("health check is still working, service: {0}")]
    HealthCheckRunning(String),
    /// The write could not be made durable (Raft unavailable).
    #[error("{0}")]
    Unavailable(String),
}

impl From<SubmitError> for NamingError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Rejected(ApplyError::ServiceAlreadyExists(s)) => Self::ServiceAlreadyExists(s),
            SubmitError::Rejected(ApplyError::ServiceNotEmpty(s)) => Self::ServiceNotEmpty(s),
            // Config refusals never come from naming commands.
            SubmitError::Rejected(other) => Self::InvalidParam(other.to_string()),
            SubmitError::Raft(e) => Self::Unavailable(e.to_string()),
        }
    }
}

/// The v1 beat body (`RsInfo`); unknown fields are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BeatInfo {
    /// Address of the beating instance.
    pub ip: Option<String>,
    /// Port of the beating instance.
    pub port: Option<u16>,
    /// Cluster (overrides `clusterName` when non-blank).
    pub cluster: Option<String>,
    /// Weight, for auto-registration.
    pub weight: Option<f64>,
    /// Metadata, for auto-registration.
    pub metadata: Option<BTreeMap<String, String>>,
    /// Service name as the client sent it (informational).
    pub service_name: Option<String>,
}

/// Outcome of a beat (spec §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeatReply {
    /// 10200 (ok) or 20404 (unknown instance; the client re-registers).
    pub code: u32,
    /// Interval the client should beat at (ms).
    pub client_beat_interval_ms: u64,
    /// Whether the client may omit the body from now on.
    pub light_beat_enabled: bool,
}

/// A beat's result code: the instance is known.
pub const BEAT_OK: u32 = 10200;
/// A beat's result code: the instance is unknown and the beat carried no body.
pub const BEAT_NOT_FOUND: u32 = 20404;

/// New service settings from an update (`None` = keep). The HTTP APIs send every field, as
/// Nacos rebuilds the settings from the request and keeps only the kind and the clusters.
#[derive(Debug, Clone, Default)]
pub struct ServicePatch {
    /// Protect threshold.
    pub protect_threshold: Option<f64>,
    /// Service metadata map.
    pub metadata: Option<BTreeMap<String, String>>,
    /// Selector JSON.
    pub selector: Option<serde_json::Value>,
}

/// Counts for `/operator/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NamingCounts {
    /// Services.
    pub services: usize,
    /// Instances.
    pub instances: usize,
    /// v1 heartbeat clients tracked by this node.
    pub beat_clients: usize,
}

/// Clients as Nacos' `/operator/metrics` counts them: every client this member holds (its own,
/// Distro copies of other members' and the Raft-replicated persistent ones), by kind, and those
/// this member is responsible for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCounts {
    /// gRPC connections: this member's own (publishing or not) and the copies it holds.
    pub connection_based: usize,
    /// v1 `ip:port#true` clients.
    pub ephemeral_ip_port: usize,
    /// v1 `ip:port#false` clients (one per persistent instance address).
    pub persistent_ip_port: usize,
    /// Ephemeral clients this member owns (Distro), plus its own connections.
    pub responsible_clients: usize,
    /// Instances those clients publish.
    pub responsible_instances: usize,
}

/// Encoded query answers by (service, clusters, healthy-only, bare name, with `dom`), each valid
/// for one revision of its service: a hot service is encoded once per change, not per query.
type QueryCache = dashmap::DashMap<(ServiceKey, String, bool, bool, bool), (u64, bytes::Bytes)>;

/// Most cached answers kept; past it the cache starts over (bounded memory).
const QUERY_CACHE_LIMIT: usize = 100_000;

/// The naming domain service. Cheap to clone.
#[derive(Clone)]
pub struct NamingService {
    store: Arc<NamingStore>,
    consistency: Consistency,
    beats: Arc<BeatTracker>,
    config: Arc<NamingConfig>,
    cache: Arc<QueryCache>,
}

impl NamingService {
    /// A service over the index and the write router.
    pub fn new(store: Arc<NamingStore>, consistency: Consistency, config: NamingConfig) -> Self {
        Self {
            store,
            consistency,
            beats: Arc::new(BeatTracker::default()),
            config: Arc::new(config),
            cache: Arc::new(QueryCache::default()),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &NamingConfig {
        &self.config
    }

    /// The heartbeat tracker (for the sweeper).
    pub fn beats(&self) -> &Arc<BeatTracker> {
        &self.beats
    }

    /// The current view of a service.
    pub fn view(&self, key: &ServiceKey) -> Option<Arc<ServiceView>> {
        self.store.view(key)
    }

    async fn submit(&self, cmd: NamingCommand) -> Result<(), NamingError> {
        Ok(self.consistency.submit(Command::Naming(cmd)).await?)
    }

    /// Whether this member owns an ephemeral client (runs its liveness). Ownership moves to
    /// the member where the client last wrote, so a v1 client that re-registers elsewhere is
    /// watched there and no longer here.
    pub fn owns_client(&self, client: &ClientId) -> bool {
        self.consistency.owns(client)
    }

    fn not_found(key: &ServiceKey) -> NamingError {
        NamingError::ServiceNotFound { namespace: key.namespace.clone(), service: key.grouped_name() }
    }

    /// The instance a v1 heartbeat client publishes into a service (one per registration),
    /// read from the service view when its health must change rather than kept in every beat
    /// entry.
    fn beat_instance(&self, key: &ServiceKey, client: &ClientId) -> Option<InstanceKey> {
        self.store.view(key)?.published_by(client)?.first().map(|i| i.key())
    }

    /// Registers an instance: ephemeral ones under the `ip:port#true` heartbeat client,
    /// persistent ones through Raft under `ip:port#false`.
    pub async fn register_instance(&self, key: &ServiceKey, instance: Instance) -> Result<(), NamingError> {
        instance.validate()?;
        if let Some(view) = self.store.view(key) {
            check_kind(&view, instance.ephemeral)?;
        }
        let client = ClientId::ip_port(&instance.ip, instance.port, instance.ephemeral);
        if instance.ephemeral {
            self.beats.track(key, &client, &instance);
            let tracked = client.clone();
            if let Err(e) = self
                .submit(NamingCommand::PublishEphemeral { service: key.clone(), client, instances: vec![instance] })
                .await
            {
                self.beats.untrack(key, &tracked);
                return Err(e);
            }
            Ok(())
        } else {
            self.submit(NamingCommand::PublishPersistent { service: key.clone(), client, instance }).await
        }
    }

    /// Deregisters what the `ip:port` client published into the service. Unknown service or
    /// client: success, as in Nacos.
    pub async fn deregister_instance(
        &self,
        key: &ServiceKey,
        ip: &str,
        port: u16,
        ephemeral: bool,
    ) -> Result<(), NamingError> {
        let client = ClientId::ip_port(ip, port, ephemeral);
        if ephemeral {
            self.beats.untrack(key, &client);
            self.submit(NamingCommand::UnpublishEphemeral { service: key.clone(), client }).await
        } else {
            self.submit(NamingCommand::UnpublishPersistent { service: key.clone(), client }).await
        }
    }

    /// Replaces what a connection publishes into a service (gRPC `InstanceRequest` register and
    /// `BatchInstanceRequest`): one publication per (connection, service), spec §2.4.
    pub async fn publish_for_connection(
        &self,
        key: &ServiceKey,
        connection: &str,
        instances: Vec<Instance>,
    ) -> Result<(), NamingError> {
        for i in &instances {
            i.validate()?;
        }
        if let Some(view) = self.store.view(key) {
            check_kind(&view, true)?;
        }
        let instances = instances.into_iter().map(|i| Instance { ephemeral: true, ..i }).collect();
        self.submit(NamingCommand::PublishEphemeral {
            service: key.clone(),
            client: ClientId::from(connection),
            instances,
        })
        .await
    }

    /// Withdraws a connection's publication from a service (gRPC deregister ignores the body).
    pub async fn unpublish_for_connection(&self, key: &ServiceKey, connection: &str) -> Result<(), NamingError> {
        self.submit(NamingCommand::UnpublishEphemeral { service: key.clone(), client: ClientId::from(connection) })
            .await
    }

    /// A connection is gone: everything it published disappears at once (spec §13.2).
    pub async fn connection_closed(&self, connection: &str) -> Result<(), NamingError> {
        self.submit(NamingCommand::RemoveClient { client: ClientId::from(connection) }).await
    }

    /// Sets update-API overrides for an instance (v1/v2 `PUT` and `PATCH /instance`). The
    /// service must exist; the instance need not (Nacos keeps the override for it).
    pub async fn update_instance(
        &self,
        key: &ServiceKey,
        instance: InstanceKey,
        patch: InstanceOverride,
    ) -> Result<(), NamingError> {
        if self.store.view(key).is_none() {
            return Err(Self::not_found(key));
        }
        if let Some(w) = patch.weight
            && (!crate::model::instance::WEIGHT_RANGE.contains(&w) || w.is_nan())
        {
            return Err(InstanceError::Weight(w).into());
        }
        crate::model::key::validate_cluster(&instance.cluster)?;
        self.submit(NamingCommand::UpdateInstanceOverride { service: key.clone(), instance, patch }).await
    }

    /// One instance, as shown to clients (overrides applied, disabled included).
    /// An unknown service is "no matched ip" (404) too, as in Nacos.
    pub fn get_instance(&self, key: &ServiceKey, ip: &str, port: u16, cluster: &str) -> Result<Instance, NamingError> {
        let view = self.store.view(key).ok_or(NamingError::InstanceNotFound)?;
        view.find(ip, port, cluster).map(|i| Instance::clone(&i)).ok_or(NamingError::InstanceNotFound)
    }

    /// Selects instances for a query (spec §2.5). A missing service yields an empty selection.
    pub fn query(&self, key: &ServiceKey, clusters: &[String], healthy_only: bool) -> Selection {
        select(self.store.view(key).as_deref(), clusters, healthy_only)
    }

    /// The JSON ServiceInfo of a query, encoded once per revision of the service and shared.
    /// With `with_dom`, the 1.x `dom` field (the grouped name) is added, as v1 list answers have it.
    pub fn query_json(
        &self,
        key: &ServiceKey,
        clusters: &str,
        healthy_only: bool,
        form: NameForm,
        with_dom: bool,
    ) -> bytes::Bytes {
        #[derive(serde::Serialize)]
        struct WithDom<'a> {
            #[serde(flatten)]
            info: &'a ServiceInfo,
            dom: String,
        }
        let view = self.store.view(key);
        let slot = (key.clone(), clusters.to_owned(), healthy_only, form == NameForm::Bare, with_dom);
        if let Some(rev) = view.as_ref().map(|v| v.revision)
            && let Some(hit) = self.cache.get(&slot)
            && hit.0 == rev
        {
            return hit.1.clone();
        }
        let selection = select(view.as_deref(), &parse_clusters(clusters), healthy_only);
        let info = ServiceInfo::build(key, clusters, &selection, form);
        let encoded = if with_dom {
            serde_json::to_vec(&WithDom { info: &info, dom: key.grouped_name() })
        } else {
            serde_json::to_vec(&info)
        };
        // Serializing plain data cannot fail; an empty body would be a bug worth seeing.
        let bytes = bytes::Bytes::from(encoded.unwrap_or_default());
        if let Some(view) = view {
            if self.cache.len() >= QUERY_CACHE_LIMIT {
                self.cache.clear();
            }
            self.cache.insert(slot, (view.revision, bytes.clone()));
        }
        bytes
    }

    /// Handles a v1 heartbeat (spec §4.2).
    pub async fn beat(
        &self,
        key: &ServiceKey,
        ip: &str,
        port: u16,
        cluster: &str,
        beat: Option<BeatInfo>,
    ) -> Result<BeatReply, NamingError> {
        let (ip, port, cluster) = match &beat {
            Some(b) => (
                b.ip.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| ip.to_owned()),
                b.port.filter(|p| *p > 0).unwrap_or(port),
                b.cluster.clone().filter(|c| !c.trim().is_empty()).unwrap_or_else(|| cluster.to_owned()),
            ),
            None => (ip.to_owned(), port, cluster.to_owned()),
        };
        let client = ClientId::ip_port(&ip, port, true);
        let reply = |interval: Option<u64>| BeatReply {
            code: BEAT_OK,
            client_beat_interval_ms: interval.unwrap_or(self.config.client_beat_interval_ms),
            light_beat_enabled: self.config.light_beat_enabled,
        };
        let mut outcome = self.beats.beat(key, &client);
        let present = self
            .store
            .view(key)
            .is_some_and(|v| v.published_by(&client).is_some_and(|p| p.iter().any(|i| i.ip == ip && i.port == port)));
        if outcome != health::BeatOutcome::Unknown && !present {
            // Removed behind the tracker's back (deregistered through another path).
            self.beats.untrack(key, &client);
            outcome = health::BeatOutcome::Unknown;
        }
        match outcome {
            health::BeatOutcome::Alive => Ok(reply(self.preserved_interval(key, &ip, port, &cluster))),
            health::BeatOutcome::Recovered => {
                let Some(instance) = self.beat_instance(key, &client) else {
                    return Ok(reply(self.preserved_interval(key, &ip, port, &cluster)));
                };
                self.submit(NamingCommand::SetEphemeralHealth {
                    service: key.clone(),
                    client,
                    instance,
                    healthy: true,
                })
                .await?;
                Ok(reply(self.preserved_interval(key, &ip, port, &cluster)))
            }
            health::BeatOutcome::Unknown => {
                let Some(b) = beat else {
                    return Ok(BeatReply { code: BEAT_NOT_FOUND, ..reply(None) });
                };
                let mut instance = Instance::new(ip, port, cluster, true);
                if let Some(w) = b.weight {
                    instance.weight = w;
                }
                instance.metadata = b.metadata.unwrap_or_default();
                let interval = instance.metadata.get(crate::model::instance::HEART_BEAT_INTERVAL).cloned();
                self.register_instance(key, instance).await?;
                Ok(reply(interval.and_then(|v| v.parse().ok())))
            }
        }
    }

    fn preserved_interval(&self, key: &ServiceKey, ip: &str, port: u16, cluster: &str) -> Option<u64> {
        let i = self.store.view(key)?.find(ip, port, cluster)?;
        i.metadata.get(crate::model::instance::HEART_BEAT_INTERVAL).and_then(|v| v.parse().ok())
    }

    /// Creates a service with metadata (persistent data). Refused if it already exists.
    pub async fn create_service(&self, key: &ServiceKey, metadata: ServiceMetadata) -> Result<(), NamingError> {
        if self.store.view(key).is_some() {
            return Err(NamingError::ServiceAlreadyExists(key.grouped_name()));
        }
        validate_threshold(metadata.protect_threshold)?;
        self.submit(NamingCommand::CreateService { service: key.clone(), metadata }).await
    }

    /// Updates a service's metadata. Refused if the service does not exist.
    pub async fn update_service(&self, key: &ServiceKey, patch: ServicePatch) -> Result<(), NamingError> {
        let view = self.store.view(key).ok_or_else(|| Self::not_found(key))?;
        if let Some(t) = patch.protect_threshold {
            validate_threshold(t)?;
        }
        self.submit(NamingCommand::UpdateService {
            service: key.clone(),
            ephemeral: view.ephemeral,
            protect_threshold: patch.protect_threshold,
            metadata: patch.metadata,
            selector: patch.selector,
        })
        .await
    }

    /// Deletes a service. Refused if it does not exist or still has instances.
    pub async fn delete_service(&self, key: &ServiceKey) -> Result<(), NamingError> {
        let view = self.store.view(key).ok_or_else(|| Self::not_found(key))?;
        if !view.is_empty() {
            return Err(NamingError::ServiceNotEmpty(key.grouped_name()));
        }
        if view.has_persistent_part {
            self.submit(NamingCommand::DeleteService { service: key.clone() }).await
        } else {
            self.submit(NamingCommand::RemoveEmptyService { service: key.clone() }).await
        }
    }

    /// Sets the metadata of one cluster of an existing service.
    pub async fn update_cluster(
        &self,
        key: &ServiceKey,
        cluster: &str,
        metadata: ClusterMetadata,
    ) -> Result<(), NamingError> {
        crate::model::key::validate_cluster(cluster)?;
        let view = self.store.view(key).ok_or_else(|| Self::not_found(key))?;
        self.submit(NamingCommand::UpdateCluster {
            service: key.clone(),
            ephemeral: view.ephemeral,
            cluster: cluster.to_owned(),
            metadata,
        })
        .await
    }

    /// Sets the health of a persistent instance by hand; only allowed when its cluster's
    /// health checker is `NONE` (otherwise the active check owns the health).
    pub async fn update_health(
        &self,
        key: &ServiceKey,
        instance: InstanceKey,
        healthy: bool,
    ) -> Result<(), NamingError> {
        let view = self.store.view(key).ok_or_else(|| Self::not_found(key))?;
        let found = view.find(&instance.ip, instance.port, &instance.cluster).ok_or(NamingError::InstanceNotFound)?;
        if found.ephemeral {
            return Err(NamingError::InvalidParam(
                "health of ephemeral instances follows their heartbeats or connections; only persistent instances accept manual health".into(),
            ));
        }
        let checker = view
            .metadata
            .as_ref()
            .and_then(|m| m.clusters.get(&instance.cluster))
            .map(ClusterMetadata::checker_type)
            .unwrap_or_else(|| ClusterMetadata::default().checker_type());
        if checker != "NONE" {
            return Err(NamingError::HealthCheckRunning(key.grouped_name()));
        }
        self.submit(NamingCommand::SetPersistentHealth { service: key.clone(), instance, healthy }).await
    }

    /// Service views of a namespace, optionally one group, in name order.
    pub fn list_services(&self, namespace: &str, group: Option<&str>) -> Vec<Arc<ServiceView>> {
        self.store.views_in(namespace, group)
    }

    /// Every service view of every namespace.
    pub fn list_all_services(&self) -> Vec<Arc<ServiceView>> {
        let mut views = self.store.all_views();
        views.sort_by(|a, b| a.key.cmp(&b.key));
        views
    }

    /// Counts for metrics.
    pub fn counts(&self) -> NamingCounts {
        let views = self.store.all_views();
        NamingCounts {
            services: views.len(),
            instances: views.iter().map(|v| v.instance_count()).sum(),
            beat_clients: self.beats.len(),
        }
    }

    /// Counts clients for `/operator/metrics`; `connections` are this member's gRPC
    /// connection ids (a connection is a client even before it publishes, as in Nacos).
    ///
    /// Responsibility follows Distro ownership (`Consistency::owns`): the member that runs a
    /// client's liveness. Persistent clients belong to no single member (Raft replicates them
    /// to all), so none is responsible for them, as in Nacos 2.x where only ephemeral clients
    /// have a responsible server.
    pub fn client_counts(&self, connections: &[String]) -> ClientCounts {
        // Gathered under the index lock, judged after it: ownership takes Distro's lock, which
        // must never be taken inside the writer's.
        let (ephemeral, persistent) = self.store.read_data(|d| {
            let mut ephemeral: HashMap<ClientId, usize> = HashMap::new();
            let mut persistent: HashSet<ClientId> = HashSet::new();
            for (_, record) in d.records() {
                for (client, publication) in &record.ephemeral {
                    *ephemeral.entry(client.clone()).or_default() += publication.len();
                }
                persistent.extend(record.persistent.keys().cloned());
            }
            (ephemeral, persistent.len())
        });
        let local: HashSet<&str> = connections.iter().map(String::as_str).collect();
        let mut counts = ClientCounts { persistent_ip_port: persistent, ..ClientCounts::default() };
        for (client, instances) in &ephemeral {
            if client.as_str().ends_with("#true") {
                counts.ephemeral_ip_port += 1;
            } else {
                counts.connection_based += 1;
            }
            if local.contains(client.as_str()) || self.consistency.owns(client) {
                counts.responsible_clients += 1;
                counts.responsible_instances += instances;
            }
        }
        let silent = local.iter().filter(|c| !ephemeral.contains_key(**c)).count();
        counts.connection_based += silent;
        counts.responsible_clients += silent;
        counts
    }

    /// A metadata value for a new service, with defaults.
    pub fn new_service_metadata(
        ephemeral: bool,
        protect_threshold: f64,
        metadata: BTreeMap<String, String>,
        selector: Option<serde_json::Value>,
    ) -> ServiceMetadata {
        ServiceMetadata {
            protect_threshold,
            metadata,
            selector: selector.unwrap_or_else(default_selector),
            ..ServiceMetadata::new(ephemeral)
        }
    }
}

fn validate_threshold(t: f64) -> Result<(), NamingError> {
    if !(0.0..=1.0).contains(&t) {
        return Err(NamingError::InvalidParam(format!("protectThreshold must be between 0 and 1, got {t}")));
    }
    Ok(())
}

/// A service keeps the kind it was created with: metadata decides, else what is published.
fn check_kind(view: &ServiceView, ephemeral: bool) -> Result<(), NamingError> {
    let decided = view.metadata.is_some() || !view.is_empty();
    if decided && view.ephemeral != ephemeral {
        let kind = |e: bool| if e { "ephemeral" } else { "persistent" };
        return Err(NamingError::KindConflict {
            service: view.key.grouped_name(),
            kind: kind(view.ephemeral),
            other: kind(ephemeral),
        });
    }
    Ok(())
}
