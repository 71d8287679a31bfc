//! The service-registry domain: registration rules, queries, heartbeats, service metadata.
//!
//! ```text
//!  api/ ──► NamingService ──► checks against the current views (state/)
//!                 │ Command
//!                 ▼
//!            consistency::submit ──► Raft (persistent) | local apply (ephemeral)
//!  health.rs: beat tracker + sweeper ──► SetEphemeralHealth / UnpublishEphemeral
//!  cleaner.rs: empty services ──► RemoveEmptyService
//!  checker.rs: probes of persistent instances ──► SetPersistentHealth
//! ```
//!
//! Layout: this file holds the service, its configuration and the writes (instances, services,
//! clusters, manual health); `beat.rs` the v1 heartbeat protocol; `queries.rs` the reads and
//! counts; `error.rs` [`NamingError`]; `checker.rs` the server-side health checks of persistent
//! instances. Selection and the `ServiceInfo` shape are the shared
//! crate's (`registry_proto::select`, `registry_proto::wire`), used by clients too.
//!
//! Checks that depend on ephemeral data (a service's kind, whether it exists) happen here,
//! before submitting, because Raft commands must be decided by replicated data alone.

mod beat;
pub mod checker;
pub mod cleaner;
mod error;
pub mod health;
mod queries;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::consistency::{Command, Consistency, NamingCommand};
use crate::model::instance::InstanceError;
use crate::model::{ClientId, ClusterMetadata, Instance, InstanceKey, InstanceOverride, ServiceKey};
use crate::model::{ServiceMetadata, service::default_selector};
use crate::state::{NamingStore, ServiceView};
pub use beat::{BEAT_NOT_FOUND, BEAT_OK, BeatInfo, BeatReply};
pub use error::NamingError;
pub use health::BeatTracker;
pub use queries::{ClientCounts, NamingCounts};
pub use registry_proto::select::{Selection, parse_clusters};
pub use registry_proto::wire::{InstanceInfo, NameForm, ServiceInfo};

/// The hosts of a service view for a caller (see [`registry_proto::select::select`]); an absent
/// service selects nothing.
pub fn select(view: Option<&ServiceView>, clusters: &[String], healthy_only: bool) -> Selection {
    view.map_or_else(Selection::default, |v| {
        registry_proto::select::select(
            v.instances(),
            v.metadata.as_ref().map(|m| m.protect_threshold),
            clusters,
            healthy_only,
        )
    })
}

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
    /// Server-side health checks of persistent instances (`[naming.health_check]`).
    pub health_check: checker::CheckerConfig,
    /// Most instances the index holds (every namespace): the memory budget of the index
    /// (about 1 KiB each). A registration that would add one beyond it is refused; updates of
    /// instances already held and removals always pass. 0: no limit.
    pub max_instances: usize,
}

impl Default for NamingConfig {
    fn default() -> Self {
        Self {
            beat_check_interval_ms: 5_000,
            client_beat_interval_ms: 5_000,
            light_beat_enabled: true,
            empty_service_clean_interval_ms: 60_000,
            empty_service_expire_ms: 60_000,
            health_check: checker::CheckerConfig::default(),
            max_instances: 1_000_000,
        }
    }
}

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

/// The naming domain service. Cheap to clone.
#[derive(Clone)]
pub struct NamingService {
    store: Arc<NamingStore>,
    consistency: Consistency,
    beats: Arc<BeatTracker>,
    config: Arc<NamingConfig>,
    cache: Arc<queries::QueryCache>,
    /// Counters of the health checks this member runs (`checker.rs`).
    checks: Arc<checker::CheckStats>,
}

impl NamingService {
    /// A service over the index and the write router.
    pub fn new(store: Arc<NamingStore>, consistency: Consistency, config: NamingConfig) -> Self {
        Self {
            store,
            consistency,
            beats: Arc::new(BeatTracker::default()),
            config: Arc::new(config),
            cache: Arc::new(queries::QueryCache::default()),
            checks: Arc::new(checker::CheckStats::default()),
        }
    }

    /// Change events waiting for their slowest reader (push engine, config notifier, DNS
    /// cache, health checker), for `/metrics`.
    pub fn change_events_queued(&self) -> usize {
        self.consistency.events_queued()
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

    /// Refuses a write that would add instances to a full index ([`NamingConfig::max_instances`]):
    /// `adding` are the `ip:port`s written into `key`; those the service already holds are
    /// updates, not additions.
    fn within_budget<'a>(
        &self,
        key: &ServiceKey,
        adding: impl IntoIterator<Item = (&'a str, u16)>,
    ) -> Result<(), NamingError> {
        let max = self.config.max_instances;
        let held = self.store.instance_total();
        if max == 0 || held < max {
            return Ok(());
        }
        let view = self.store.view(key);
        let is_new = |(ip, port): (&str, u16)| {
            view.as_ref().is_none_or(|v| !v.instances().iter().any(|i| i.ip == ip && i.port == port))
        };
        if adding.into_iter().any(is_new) {
            return Err(NamingError::OverBudget { max });
        }
        Ok(())
    }

    /// Registers an instance: ephemeral ones under the `ip:port#true` heartbeat client,
    /// persistent ones through Raft under `ip:port#false`.
    pub async fn register_instance(&self, key: &ServiceKey, instance: Instance) -> Result<(), NamingError> {
        instance.validate()?;
        self.within_budget(key, [(instance.ip.as_str(), instance.port)])?;
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
        self.within_budget(key, instances.iter().map(|i| (i.ip.as_str(), i.port)))?;
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
