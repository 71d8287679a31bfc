//! Records per service, built once per revision: the DNS server's [`Source`].
//!
//! A query names labels; the label index (kept by [`follow`] from the change events, the same
//! ones the push engine reads) maps them to a service key. Its records are cached per cluster
//! label with the revision of the view they were built from; a query compares that with the
//! current view (one map read) and rebuilds only when the service changed since. [`follow`]
//! rebuilds the cached entries of a changed service right away, so queries rarely pay for it.

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::auth::{Action, Auth, Identity, Resource};
use crate::model::{ChangeEvent, ServiceKey};
use crate::state::{FastHasher, FastMap, NamingStore, ServiceView};
use registry_proto::dns::{LabelIndex, ServiceName, ServiceRecords, Source, Zone, answerable, label};

/// Records of one service by cluster label (`""`: every cluster).
type ByCluster = FastMap<String, Arc<ServiceRecords>>;

/// The DNS view of the naming store.
pub struct Cache {
    zone: Zone,
    store: Arc<NamingStore>,
    index: RwLock<LabelIndex<FastHasher>>,
    records: Mutex<FastMap<Arc<ServiceKey>, ByCluster>>,
    access: Option<DnsAccess>,
}

/// Who DNS queries act as when client auth is on: the one authorization check decides which
/// names answer (a service the identity may not read is NXDOMAIN, so its existence does not
/// leak).
pub struct DnsAccess {
    auth: Arc<Auth>,
    identity: Option<Identity>,
}

impl DnsAccess {
    /// Queries as `user` (`None`: no service name answers).
    pub fn new(auth: Arc<Auth>, user: Option<&str>) -> Self {
        Self { auth, identity: user.map(|u| Identity::User(u.to_owned())) }
    }

    fn permits(&self, key: &ServiceKey) -> bool {
        self.identity.as_ref().is_some_and(|identity| {
            let resource = Resource::naming(&key.namespace, &key.group, &key.service);
            self.auth.authorize(identity, &resource, Action::Read).is_ok()
        })
    }
}

impl Cache {
    /// A cache over `store` answering for `zone`, its index filled from the current services.
    pub fn new(zone: Zone, store: Arc<NamingStore>) -> Self {
        let cache = Self { zone, store, index: RwLock::default(), records: Mutex::default(), access: None };
        cache.reindex();
        cache
    }

    /// The same cache answering only what `access` may read.
    pub fn with_access(self, access: DnsAccess) -> Self {
        Self { access: Some(access), ..self }
    }

    /// The zone served.
    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// Rebuilds the label index from every service (at start, and after missed events).
    fn reindex(&self) {
        let mut index = LabelIndex::<FastHasher>::default();
        for view in self.store.all_views() {
            index.insert(Arc::clone(&view.key));
        }
        *self.index.write() = index;
    }

    /// Follows one change: the index, and the cached records of the service rebuilt once.
    fn changed(&self, key: &Arc<ServiceKey>) {
        let view = self.store.view(key);
        match &view {
            Some(v) => self.index.write().insert(Arc::clone(&v.key)),
            None => self.index.write().remove(key),
        }
        let mut records = self.records.lock();
        match view {
            None => {
                records.remove(&**key);
            }
            Some(view) => {
                if let Some(by_cluster) = records.get_mut(&**key) {
                    by_cluster.retain(|cluster, _| has_cluster(&view, cluster));
                    for (cluster, entry) in by_cluster.iter_mut() {
                        if entry.revision != view.revision {
                            *entry = Arc::new(self.build(&view, cluster));
                        }
                    }
                }
            }
        }
    }

    fn build(&self, view: &ServiceView, cluster: &str) -> ServiceRecords {
        let threshold = view.metadata.as_ref().map(|m| m.protect_threshold);
        let hosts = answerable(view.instances(), threshold, Some(cluster).filter(|c| !c.is_empty()));
        ServiceRecords::build(&self.zone, view.revision, &hosts)
    }

    /// Number of services with cached records (tests, introspection).
    pub fn cached_services(&self) -> usize {
        self.records.lock().len()
    }
}

impl Source for Cache {
    fn records(&self, name: &ServiceName<'_>) -> Option<Arc<ServiceRecords>> {
        let key = Arc::clone(self.index.read().get(name)?);
        if self.access.as_ref().is_some_and(|a| !a.permits(&key)) {
            return None;
        }
        let view = self.store.view(&key)?;
        let cluster = name.cluster.unwrap_or_default();
        let mut records = self.records.lock();
        if let Some(hit) = records.get(&key).and_then(|c| c.get(cluster))
            && hit.revision == view.revision
        {
            return Some(Arc::clone(hit));
        }
        // A cluster the service does not have is no name (and never an entry: queries for
        // made-up clusters must not grow the cache).
        if !has_cluster(&view, cluster) {
            return None;
        }
        // Built under the lock: a service is built once per revision however many queries
        // miss together, and a build is microseconds for hundreds of hosts.
        let built = Arc::new(self.build(&view, cluster));
        records.entry(key).or_default().insert(cluster.to_owned(), Arc::clone(&built));
        Some(built)
    }
}

/// Whether some instance of `view` is in the cluster labelled `cluster` (`""`: every cluster).
fn has_cluster(view: &ServiceView, cluster: &str) -> bool {
    cluster.is_empty() || view.instances().iter().any(|i| label(&i.cluster) == cluster)
}

/// Keeps `cache` current from the change events until `shutdown`.
pub async fn follow(cache: Arc<Cache>, mut events: broadcast::Receiver<ChangeEvent>, shutdown: CancellationToken) {
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            e = events.recv() => e,
        };
        match event {
            Ok(ChangeEvent::ServiceChanged { key, .. }) => cache.changed(&key),
            Ok(ChangeEvent::ConfigChanged { .. }) => {}
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "dns cache lagged behind changes; reindexing");
                cache.reindex();
                // Queries compare revisions, so stale records are rebuilt on their next use.
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClientId, Instance};

    fn key(name: &str) -> ServiceKey {
        ServiceKey::new("public", "DEFAULT_GROUP", name).unwrap()
    }

    fn publish(store: &NamingStore, name: &str, ips: &[&str]) -> Vec<ChangeEvent> {
        let instances = ips.iter().map(|ip| Arc::new(Instance::new(*ip, 80, "DEFAULT", true))).collect();
        store
            .write(|d| {
                d.set_ephemeral(&key(name), &ClientId::from("conn-1"), instances);
                (vec![key(name)], ())
            })
            .0
    }

    fn orders() -> ServiceName<'static> {
        ServiceName { service: "orders", group: None, namespace: None, cluster: None }
    }

    #[test]
    fn records_are_built_once_per_revision_and_follow_changes() {
        let store = Arc::new(NamingStore::new());
        publish(&store, "orders", &["10.0.0.1"]);
        let cache = Cache::new(Zone::new("nacos.local", 5, 1).unwrap(), Arc::clone(&store));
        let first = cache.records(&orders()).unwrap();
        assert!(Arc::ptr_eq(&first, &cache.records(&orders()).unwrap()), "same revision, same records");
        for event in publish(&store, "orders", &["10.0.0.1", "10.0.0.2"]) {
            let ChangeEvent::ServiceChanged { key, revision } = event else { continue };
            // A query before the change event is followed already sees the new revision...
            let rebuilt = cache.records(&orders()).unwrap();
            assert_eq!(rebuilt.revision, revision);
            assert!(!Arc::ptr_eq(&first, &rebuilt));
            // ...and following the event does not build that revision again.
            cache.changed(&key);
            assert!(Arc::ptr_eq(&rebuilt, &cache.records(&orders()).unwrap()));
        }
        assert!(cache.records(&ServiceName { service: "nope", ..orders() }).is_none());
        // Clusters: the one it has answers; a made-up one is no name and caches nothing.
        let default = label("DEFAULT");
        assert!(cache.records(&ServiceName { cluster: Some(&default), ..orders() }).is_some_and(|r| !r.is_empty()));
        assert!(cache.records(&ServiceName { cluster: Some("made-up"), ..orders() }).is_none());
        assert_eq!(cache.records.lock().get(&key("orders")).map(|c| c.len()), Some(2));
    }

    #[test]
    fn a_new_service_is_found_once_its_change_is_followed() {
        let store = Arc::new(NamingStore::new());
        let cache = Cache::new(Zone::new("nacos.local", 5, 1).unwrap(), Arc::clone(&store));
        assert!(cache.records(&orders()).is_none());
        for event in publish(&store, "orders", &["10.0.0.1"]) {
            let ChangeEvent::ServiceChanged { key, .. } = event else { continue };
            cache.changed(&key);
        }
        assert!(cache.records(&orders()).is_some_and(|r| !r.is_empty()));
        let removed = store.write(|d| {
            d.remove(&key("orders"));
            (vec![key("orders")], ())
        });
        for event in removed.0 {
            let ChangeEvent::ServiceChanged { key, .. } = event else { continue };
            cache.changed(&key);
        }
        assert!(cache.records(&orders()).is_none());
        assert_eq!(cache.cached_services(), 0);
    }
}
