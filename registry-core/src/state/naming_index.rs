//! The naming index: namespace → group → service → cluster → instances.
//!
//! Two halves with different owners:
//! - [`NamingData`], the mutable truth, behind one `Mutex` that only the single writer
//!   (`consistency::apply`) takes. Every write finishes by republishing the views it touched.
//! - The views: one immutable [`ServiceView`] per service behind an `Arc`, in a sharded map.
//!   A reader clones the `Arc` (a shard read lock held for a few instructions) and then works on
//!   a value that never changes under it; a writer swaps the whole view, with a new revision.
//!
//! Publications are persistent maps (`imbl::OrdMap`, structurally shared B-trees): a view takes
//! them in O(1) and the writer's next change copies only the O(log n) path it touches. The
//! sorted instance list a query answers with is built lazily, once per view, by the first reader
//! that needs it. Writes therefore cost O(log n) however large the service is; before this, every
//! write rebuilt and re-sorted its service's whole list, which made registration O(n) and was
//! most of the CPU of a registration benchmark even at a few hundred instances per service.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use imbl::OrdMap;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::{FastDashMap, FastMap};
use crate::model::{ChangeEvent, ClientId, Instance, InstanceKey, InstanceOverride, ServiceKey, ServiceMetadata};

/// Overrides of one service by `ip:port:cluster`. Shared with the views; rare writes copy it.
pub type Overrides = Arc<BTreeMap<InstanceKey, InstanceOverride>>;

/// Everything known about one service, as the writer sees it.
#[derive(Debug, Clone)]
pub struct ServiceRecord {
    /// Service metadata, if the service was created or updated through the API (persistent).
    pub metadata: Option<ServiceMetadata>,
    /// Ephemeral publications: each client publishes a list of instances (AP, not persisted).
    /// Never holds an empty publication (withdrawing removes the entry).
    pub ephemeral: OrdMap<ClientId, Publication>,
    /// Persistent publications: one instance per `ip:port#false` client (persisted through Raft).
    pub persistent: OrdMap<ClientId, Arc<Instance>>,
    /// Update-API overrides by `ip:port:cluster` (persisted through Raft). Change it with
    /// `Arc::make_mut`.
    pub overrides: Overrides,
    /// Revision of the last change (node-local, increasing over the whole index).
    pub revision: u64,
    /// When the last change happened; drives the empty-service cleaner.
    pub last_changed: Instant,
}

impl ServiceRecord {
    fn new(revision: u64) -> Self {
        Self {
            metadata: None,
            ephemeral: OrdMap::new(),
            persistent: OrdMap::new(),
            overrides: Overrides::default(),
            revision,
            last_changed: Instant::now(),
        }
    }

    /// True when no client publishes any instance.
    pub fn has_no_instances(&self) -> bool {
        self.ephemeral.values().all(|p| p.is_empty()) && self.persistent.is_empty()
    }

    /// True when the record holds data that Raft owns.
    pub fn has_persistent_part(&self) -> bool {
        self.metadata.is_some() || !self.persistent.is_empty() || !self.overrides.is_empty()
    }

    /// Whether the service is ephemeral: fixed by its metadata when it has some, else by what is
    /// published (persistent publications make it persistent), else ephemeral.
    pub fn is_ephemeral(&self) -> bool {
        match &self.metadata {
            Some(m) => m.ephemeral,
            None => self.persistent.is_empty(),
        }
    }
}

/// One client's instances in one service. Nearly always exactly one (every v1 registration,
/// most gRPC ones), held inline: a one-element `Vec` would cost a heap block per instance.
/// Derefs to a slice, so readers need not care which form it is.
#[derive(Debug, Clone)]
pub enum Publication {
    /// A single instance.
    One(Arc<Instance>),
    /// Any other number of instances.
    Many(Vec<Arc<Instance>>),
}

impl From<Vec<Arc<Instance>>> for Publication {
    fn from(mut instances: Vec<Arc<Instance>>) -> Self {
        if instances.len() == 1
            && let Some(only) = instances.pop()
        {
            return Self::One(only);
        }
        Self::Many(instances)
    }
}

impl std::ops::Deref for Publication {
    type Target = [Arc<Instance>];

    fn deref(&self) -> &Self::Target {
        match self {
            Self::One(i) => std::slice::from_ref(i),
            Self::Many(list) => list,
        }
    }
}

impl std::ops::DerefMut for Publication {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            Self::One(i) => std::slice::from_mut(i),
            Self::Many(list) => list,
        }
    }
}

/// The mutable naming truth. Only the single writer holds it (see [`NamingStore::write`]).
#[derive(Debug, Default)]
pub struct NamingData {
    /// Records by service. The key is shared (`Arc`) with `client_services`, so indexing a
    /// client's service costs a pointer rather than a copy of three names.
    services: FastMap<Arc<ServiceKey>, ServiceRecord>,
    /// The services each ephemeral client publishes into: replication sends a client's whole
    /// publication, and removing a client must not scan every service.
    client_services: FastMap<ClientId, ClientServices>,
    /// Last revision handed out; revisions never repeat, even across service re-creation.
    last_revision: u64,
}

/// The services one ephemeral client publishes into, in key order. Almost every client (each
/// v1 `ip:port#true` heartbeat client) publishes into exactly one service; that case holds
/// one shared key and allocates nothing, where a one-element `BTreeSet` costs a whole B-tree
/// leaf (~800 bytes), which made this index the largest per-instance cost. The set is boxed
/// so that an entry is two words: the index has one entry per client.
#[derive(Debug)]
enum ClientServices {
    /// Exactly one service.
    One(Arc<ServiceKey>),
    /// Two or more services.
    #[expect(clippy::box_collection, reason = "keeps the enum, so every index entry, two words wide")]
    Many(Box<BTreeSet<Arc<ServiceKey>>>),
}

impl ClientServices {
    fn iter(&self) -> impl Iterator<Item = &ServiceKey> {
        let (one, many) = match self {
            Self::One(k) => (Some(&**k), None),
            Self::Many(set) => (None, Some(set.iter().map(|k| &**k))),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    fn insert(&mut self, key: &Arc<ServiceKey>) {
        match self {
            Self::One(k) if k == key => {}
            Self::One(k) => *self = Self::Many(Box::new(BTreeSet::from([Arc::clone(k), Arc::clone(key)]))),
            Self::Many(set) => {
                set.insert(Arc::clone(key));
            }
        }
    }

    /// Removes `key`; true when no service is left (the caller drops the entry).
    fn remove(&mut self, key: &ServiceKey) -> bool {
        match self {
            Self::One(k) => **k == *key,
            Self::Many(set) => {
                set.remove(key);
                if set.len() == 1
                    && let Some(last) = set.pop_first()
                {
                    *self = Self::One(last);
                    return false;
                }
                set.is_empty()
            }
        }
    }
}

impl NamingData {
    /// The record of a service, if it exists.
    pub fn get(&self, key: &ServiceKey) -> Option<&ServiceRecord> {
        self.services.get(key)
    }

    /// The record of a service for mutation, created empty if absent. Marks it changed.
    pub fn touch(&mut self, key: &ServiceKey) -> &mut ServiceRecord {
        self.last_revision += 1;
        let revision = self.last_revision;
        if !self.services.contains_key(key) {
            self.services.insert(Arc::new(key.clone()), ServiceRecord::new(revision));
        }
        let Some(record) = self.services.get_mut(key) else { unreachable!("inserted just above") };
        record.revision = revision;
        record.last_changed = Instant::now();
        record
    }

    /// Removes a service entirely.
    pub fn remove(&mut self, key: &ServiceKey) -> Option<ServiceRecord> {
        self.services.remove(key)
    }

    /// Every service key.
    pub fn keys(&self) -> impl Iterator<Item = &ServiceKey> {
        self.services.keys().map(|k| &**k)
    }

    /// Every record.
    pub fn records(&self) -> impl Iterator<Item = (&ServiceKey, &ServiceRecord)> {
        self.services.iter().map(|(k, r)| (&**k, r))
    }

    /// Keys of the services an ephemeral client publishes into.
    pub fn services_of_client(&self, client: &ClientId) -> Vec<ServiceKey> {
        self.client_services.get(client).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }

    /// Every ephemeral client with at least one publication.
    pub fn ephemeral_clients(&self) -> impl Iterator<Item = &ClientId> {
        self.client_services.keys()
    }

    /// A client's whole ephemeral publication, by service.
    pub fn publication_of(&self, client: &ClientId) -> Vec<(ServiceKey, Vec<Instance>)> {
        let Some(services) = self.client_services.get(client) else { return Vec::new() };
        services
            .iter()
            .filter_map(|s| {
                let list = self.services.get(s)?.ephemeral.get(client)?;
                Some((s.clone(), list.iter().map(|i| (**i).clone()).collect()))
            })
            .collect()
    }

    /// Sets a client's instances in a service (an empty list withdraws them). Marks the service
    /// changed.
    pub fn set_ephemeral(&mut self, service: &ServiceKey, client: &ClientId, instances: Vec<Arc<Instance>>) {
        if instances.is_empty() {
            self.remove_ephemeral(service, client);
            return;
        }
        self.touch(service).ephemeral.insert(client.clone(), instances.into());
        let Some((key, _)) = self.services.get_key_value(service) else { unreachable!("touched just above") };
        match self.client_services.get_mut(client) {
            Some(services) => services.insert(key),
            None => {
                self.client_services.insert(client.clone(), ClientServices::One(Arc::clone(key)));
            }
        }
    }

    /// Withdraws a client's instances from a service. Marks the service changed.
    pub fn remove_ephemeral(&mut self, service: &ServiceKey, client: &ClientId) {
        self.touch(service).ephemeral.remove(client);
        if let Some(services) = self.client_services.get_mut(client)
            && services.remove(service)
        {
            self.client_services.remove(client);
        }
    }
}

/// What readers see of one service: immutable, replaced as a whole on every change.
#[derive(Debug, Clone)]
pub struct ServiceView {
    /// Which service (shared with the writer's index and the change events).
    pub key: Arc<ServiceKey>,
    /// Revision of this view.
    pub revision: u64,
    /// Whether the service is ephemeral (see [`ServiceRecord::is_ephemeral`]).
    pub ephemeral: bool,
    /// Whether Raft owns part of this service (metadata, persistent instances, overrides).
    pub has_persistent_part: bool,
    /// Service metadata, if the service has any.
    pub metadata: Option<ServiceMetadata>,
    /// When the service last changed.
    pub last_changed: Instant,
    /// The publications this view was taken from (shared with the writer's record).
    ephemeral_publications: OrdMap<ClientId, Publication>,
    persistent_publications: OrdMap<ClientId, Arc<Instance>>,
    overrides: Overrides,
    /// The effective instances in client order, built by the first reader that asks.
    sorted: OnceLock<Vec<Arc<Instance>>>,
}

impl ServiceView {
    fn of(key: &Arc<ServiceKey>, record: &ServiceRecord) -> Self {
        Self {
            key: Arc::clone(key),
            revision: record.revision,
            ephemeral: record.is_ephemeral(),
            has_persistent_part: record.has_persistent_part(),
            metadata: record.metadata.clone(),
            last_changed: record.last_changed,
            ephemeral_publications: record.ephemeral.clone(),
            persistent_publications: record.persistent.clone(),
            overrides: Arc::clone(&record.overrides),
            sorted: OnceLock::new(),
        }
    }

    /// The instances clients see: every publication with its override applied, sorted by
    /// (cluster, ip, port) so that every member renders the same list. Built on first use.
    pub fn instances(&self) -> &[Arc<Instance>] {
        self.sorted.get_or_init(|| {
            // Sized exactly: a view lives until the next change, and a collected `Flatten`
            // would grow by doubling (up to twice the pointers needed, for every service).
            let mut out: Vec<Arc<Instance>> = Vec::with_capacity(self.instance_count());
            out.extend(self.published().map(|i| self.effective(i)));
            out.sort_by(|a, b| (&a.cluster, &a.ip, a.port).cmp(&(&b.cluster, &b.ip, b.port)));
            out
        })
    }

    /// Every published instance as published (before overrides), in client order.
    fn published(&self) -> impl Iterator<Item = &Arc<Instance>> {
        self.ephemeral_publications.values().flat_map(|p| p.iter()).chain(self.persistent_publications.values())
    }

    /// How many instances the service has, without building the sorted list.
    pub fn instance_count(&self) -> usize {
        match self.sorted.get() {
            Some(list) => list.len(),
            None => {
                self.ephemeral_publications.values().map(|p| p.len()).sum::<usize>()
                    + self.persistent_publications.len()
            }
        }
    }

    /// True when no instance is published.
    pub fn is_empty(&self) -> bool {
        self.persistent_publications.is_empty() && self.ephemeral_publications.values().all(|p| p.is_empty())
    }

    /// An instance as clients see it (override applied). Looks at the HTTP clients of the
    /// address first (O(log n)), then at every publication (gRPC connection ids are not
    /// derivable from the address).
    pub fn find(&self, ip: &str, port: u16, cluster: &str) -> Option<Arc<Instance>> {
        let matches = |i: &&Arc<Instance>| i.ip == ip && i.port == port && i.cluster == cluster;
        let by_address = self
            .published_by(&ClientId::ip_port(ip, port, true))
            .and_then(|p| p.iter().find(matches))
            .or_else(|| self.persistent_publications.get(&ClientId::ip_port(ip, port, false)).filter(matches));
        by_address.or_else(|| self.published().find(matches)).map(|i| self.effective(i))
    }

    /// What one client publishes in this service, as published (overrides not applied).
    pub fn published_by(&self, client: &ClientId) -> Option<&Publication> {
        self.ephemeral_publications.get(client)
    }

    /// The instance with its override applied (the same `Arc` when it has none).
    fn effective(&self, i: &Arc<Instance>) -> Arc<Instance> {
        if self.overrides.is_empty() {
            return Arc::clone(i);
        }
        match self.overrides.get(&i.key()) {
            Some(o) => {
                let mut copy = Instance::clone(i);
                o.apply_to(&mut copy);
                Arc::new(copy)
            }
            None => Arc::clone(i),
        }
    }
}

/// The naming index: the writer's data plus the readers' views.
#[derive(Debug, Default)]
pub struct NamingStore {
    /// The truth. A plain (non-async) mutex: it is only held by the writer for the duration of
    /// one command's mutation, never across an `.await`.
    data: Mutex<NamingData>,
    /// Published views by service; readers only.
    views: FastDashMap<Arc<ServiceKey>, Arc<ServiceView>>,
    /// Instances in all published views, kept with them (the index's size, for its budget).
    instances: AtomicUsize,
}

impl NamingStore {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs one write. `f` mutates the data and returns the keys it touched plus its result; the
    /// views of those keys are republished before the lock is released, so a reader never sees
    /// a view older than a write that has returned. Only `consistency::apply` calls this.
    pub fn write<R>(&self, f: impl FnOnce(&mut NamingData) -> (Vec<ServiceKey>, R)) -> (Vec<ChangeEvent>, R) {
        let mut data = self.data.lock();
        let (mut touched, result) = f(&mut data);
        touched.sort();
        touched.dedup();
        let mut events = Vec::with_capacity(touched.len());
        for key in touched {
            let (key, revision) = match data.services.get_key_value(&key) {
                Some((shared, record)) => {
                    let view = Arc::new(ServiceView::of(shared, record));
                    let revision = view.revision;
                    let added = view.instance_count();
                    let removed = self.views.insert(Arc::clone(shared), view).map_or(0, |old| old.instance_count());
                    self.adjust_instances(added, removed);
                    (Arc::clone(shared), revision)
                }
                None => {
                    let Some((shared, old)) = self.views.remove(&key) else { continue };
                    self.adjust_instances(0, old.instance_count());
                    data.last_revision += 1;
                    (shared, data.last_revision)
                }
            };
            events.push(ChangeEvent::ServiceChanged { key, revision });
        }
        (events, result)
    }

    /// Called under the writer lock, so the two steps cannot interleave with another write.
    fn adjust_instances(&self, added: usize, removed: usize) {
        self.instances.fetch_add(added, Ordering::Relaxed);
        self.instances.fetch_sub(removed, Ordering::Relaxed);
    }

    /// Instances in the index now (every service, every namespace); O(1).
    pub fn instance_total(&self) -> usize {
        self.instances.load(Ordering::Relaxed)
    }

    /// Reads the writer's data (for snapshots and sweeps). Holds the writer lock while `f` runs.
    pub fn read_data<R>(&self, f: impl FnOnce(&NamingData) -> R) -> R {
        f(&self.data.lock())
    }

    /// The current view of a service.
    pub fn view(&self, key: &ServiceKey) -> Option<Arc<ServiceView>> {
        self.views.get(key).map(|v| Arc::clone(v.value()))
    }

    /// Views of every service in a namespace (and group, when given), sorted by group then name.
    pub fn views_in(&self, namespace: &str, group: Option<&str>) -> Vec<Arc<ServiceView>> {
        let mut out: Vec<Arc<ServiceView>> = self
            .views
            .iter()
            .filter(|e| e.key().namespace == namespace && group.is_none_or(|g| e.key().group == g))
            .map(|e| Arc::clone(e.value()))
            .collect();
        out.sort_by(|a, b| (&a.key.group, &a.key.service).cmp(&(&b.key.group, &b.key.service)));
        out
    }

    /// Every view (for metrics and sweeps).
    pub fn all_views(&self) -> Vec<Arc<ServiceView>> {
        self.views.iter().map(|e| Arc::clone(e.value())).collect()
    }

    /// Number of services.
    pub fn service_count(&self) -> usize {
        self.views.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str) -> ServiceKey {
        ServiceKey::new("public", "DEFAULT_GROUP", name).unwrap()
    }

    fn one(ip: &str) -> Vec<Arc<Instance>> {
        vec![Arc::new(Instance::new(ip, 80, "DEFAULT", true))]
    }

    #[test]
    fn client_index_follows_publications_into_one_and_many_services() {
        let mut d = NamingData::default();
        let c = ClientId("conn-1".into());
        d.set_ephemeral(&svc("b"), &c, one("10.0.0.1"));
        assert_eq!(d.services_of_client(&c), vec![svc("b")]);
        d.set_ephemeral(&svc("a"), &c, one("10.0.0.1"));
        d.set_ephemeral(&svc("b"), &c, one("10.0.0.2"));
        assert_eq!(d.services_of_client(&c), vec![svc("a"), svc("b")]);
        assert_eq!(d.publication_of(&c).len(), 2);
        d.remove_ephemeral(&svc("a"), &c);
        assert_eq!(d.services_of_client(&c), vec![svc("b")]);
        // Withdrawing from a service the client is not in leaves its index alone.
        d.remove_ephemeral(&svc("z"), &c);
        assert_eq!(d.services_of_client(&c), vec![svc("b")]);
        d.set_ephemeral(&svc("b"), &c, Vec::new());
        assert!(d.services_of_client(&c).is_empty());
        assert_eq!(d.ephemeral_clients().count(), 0);
    }

    #[test]
    fn a_single_instance_publication_is_held_inline() {
        let p = Publication::from(one("10.0.0.1"));
        assert!(matches!(p, Publication::One(_)));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].ip, "10.0.0.1");
        let two: Vec<Arc<Instance>> = one("10.0.0.1").into_iter().chain(one("10.0.0.2")).collect();
        let p = Publication::from(two);
        assert_eq!(p.iter().map(|i| i.ip.as_str()).collect::<Vec<_>>(), ["10.0.0.1", "10.0.0.2"]);
        // Same size as the `Vec` it replaces: the one-instance case costs no extra bytes inline.
        assert_eq!(std::mem::size_of::<Publication>(), std::mem::size_of::<Vec<Arc<Instance>>>());
    }

    #[test]
    fn a_view_is_a_snapshot_sorted_on_first_read_with_overrides_applied() {
        let store = NamingStore::new();
        let conn = ClientId::from("conn-1");
        let http = ClientId::ip_port("10.0.0.9", 80, true);
        store.write(|d| {
            d.set_ephemeral(&svc("s"), &conn, one("10.0.0.5"));
            d.set_ephemeral(&svc("s"), &http, one("10.0.0.9"));
            (vec![svc("s")], ())
        });
        let before = store.view(&svc("s")).unwrap();
        store.write(|d| {
            d.set_ephemeral(&svc("s"), &ClientId::from("conn-2"), one("10.0.0.1"));
            let patch = InstanceOverride { enabled: Some(false), ..Default::default() };
            let key = InstanceKey { ip: "10.0.0.5".into(), port: 80, cluster: "DEFAULT".into() };
            Arc::make_mut(&mut d.touch(&svc("s")).overrides).insert(key, patch);
            (vec![svc("s")], ())
        });
        // The older view still shows what it was taken from.
        assert_eq!(before.instance_count(), 2);
        assert_eq!(before.instances().iter().map(|i| i.ip.as_str()).collect::<Vec<_>>(), ["10.0.0.5", "10.0.0.9"]);
        assert!(before.instances().iter().all(|i| i.enabled));

        let after = store.view(&svc("s")).unwrap();
        assert!(after.revision > before.revision);
        assert_eq!(after.instance_count(), 3);
        let ips: Vec<(&str, bool)> = after.instances().iter().map(|i| (i.ip.as_str(), i.enabled)).collect();
        assert_eq!(ips, [("10.0.0.1", true), ("10.0.0.5", false), ("10.0.0.9", true)]);
        // Found by its HTTP client id, and by a scan for connection-published ones; overrides apply.
        assert!(after.find("10.0.0.9", 80, "DEFAULT").is_some_and(|i| i.enabled));
        assert!(after.find("10.0.0.5", 80, "DEFAULT").is_some_and(|i| !i.enabled));
        assert!(after.find("10.0.0.5", 81, "DEFAULT").is_none());
        assert!(after.find("10.0.0.5", 80, "other").is_none());
        assert_eq!(after.published_by(&http).map(|p| p.len()), Some(1));
        assert!(after.published_by(&ClientId::from("conn-9")).is_none());
    }

    #[test]
    fn withdrawing_the_last_publication_empties_the_view_and_removing_the_service_drops_it() {
        let store = NamingStore::new();
        let c = ClientId::from("conn-1");
        store.write(|d| {
            d.set_ephemeral(&svc("s"), &c, one("10.0.0.1"));
            (vec![svc("s")], ())
        });
        let (events, ()) = store.write(|d| {
            d.remove_ephemeral(&svc("s"), &c);
            (vec![svc("s")], ())
        });
        assert_eq!(events.len(), 1);
        assert!(store.view(&svc("s")).is_some_and(|v| v.is_empty() && v.instances().is_empty()));
        let (events, ()) = store.write(|d| {
            d.remove(&svc("s"));
            (vec![svc("s")], ())
        });
        assert!(matches!(&events[..], [ChangeEvent::ServiceChanged { key, .. }] if **key == svc("s")));
        assert!(store.view(&svc("s")).is_none());
        assert_eq!(store.service_count(), 0);
    }
}
