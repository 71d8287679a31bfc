//! Reads of the naming state: one instance, instance selections and their encoded
//! `ServiceInfo` (cached per service revision), service listings and the counts behind
//! `/operator/metrics`. Nothing here writes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{NameForm, NamingError, NamingService, Selection, ServiceInfo, parse_clusters, select};
use crate::model::{ClientId, Instance, ServiceKey};
use crate::state::ServiceView;

/// Counts for `/operator/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NamingCounts {
    /// Services.
    pub services: usize,
    /// Instances.
    pub instances: usize,
    /// v1 heartbeat clients tracked by this node.
    pub beat_clients: usize,
    /// v1 instances this node removed because their beats stopped, since start.
    pub beat_expirations: u64,
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
pub(super) type QueryCache = dashmap::DashMap<(ServiceKey, String, bool, bool, bool), (u64, bytes::Bytes)>;

/// Most cached answers kept; past it the cache starts over (bounded memory).
const QUERY_CACHE_LIMIT: usize = 100_000;

impl NamingService {
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
            beat_expirations: self.beats.expired(),
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
}
