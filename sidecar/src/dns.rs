//! The pod's DNS resolver (docs/sidecar.md, "DNS"): the registry's zone answered on 127.0.0.1
//! from the failover cache, every other name relayed to the pod's original resolver.
//!
//! ```text
//!  query ─► registry_proto::dns::handle (the registry's own answer rules) over [`Names`]
//!     in the zone, cached         ─► answered from the pushed instance lists
//!     in the zone, never asked    ─► Local::resolve_subscribe (upstream, once) ─► answered again
//!     outside the zone (REFUSED)  ─► forward::Forwarder ─► the resolv.conf nameserver, or SERVFAIL
//! ```
//! A name once resolved stays subscribed, so pushes keep its answers current and a cluster
//! outage leaves them as last pushed.

pub mod forward;
pub mod server;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use registry_proto::dns::{LabelIndex, Rcode, ServiceName, ServiceRecords, Source, Transport, Zone, answerable, label};
use registry_proto::model::key::{DEFAULT_GROUP, DEFAULT_NAMESPACE};
use registry_proto::model::{Instance, ServiceKey};
use registry_proto::wire::ServiceInfo;

use crate::cache::Cache;
use crate::local::Local;
use crate::metrics::Stats;
use forward::Forwarder;

/// Services the resolver subscribes to at most (names asked at random must not make the
/// sidecar follow the whole registry).
const MAX_RESOLVED: usize = 1024;
/// Longest wait for the first subscription of a name before answering.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Names whose subscription found nothing (or failed) remembered at most; beyond, forgotten.
const MAX_MISSES: usize = 4096;

/// The zone's [`Source`] over the failover cache: a label index of the cached services and
/// their records, built once per cached revision.
pub struct Names {
    zone: Zone,
    cache: Arc<Cache>,
    /// The index and the cache's key generation it was built at.
    index: RwLock<(u64, LabelIndex)>,
    records: Mutex<HashMap<(ServiceKey, String), Arc<ServiceRecords>>>,
}

impl Names {
    /// The zone over `cache`.
    pub fn new(zone: Zone, cache: Arc<Cache>) -> Self {
        Self { zone, cache, index: RwLock::new((u64::MAX, LabelIndex::default())), records: Mutex::default() }
    }

    /// The key a query names, if the service is cached.
    fn key(&self, name: &ServiceName<'_>) -> Option<ServiceKey> {
        let generation = self.cache.keys_generation();
        {
            let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
            if index.0 == generation {
                return index.1.get(name).map(|k| (**k).clone());
            }
        }
        let mut fresh = LabelIndex::default();
        for key in self.cache.service_keys() {
            fresh.insert(Arc::new(key));
        }
        let found = fresh.get(name).map(|k| (**k).clone());
        *self.index.write().unwrap_or_else(PoisonError::into_inner) = (generation, fresh);
        found
    }

    fn records_of(&self, key: &ServiceKey, cluster: &str) -> Option<Arc<ServiceRecords>> {
        let revision = self.cache.service_revision(key)?;
        let entry = (key.clone(), cluster.to_owned());
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(hit) = records.get(&entry)
            && hit.revision == revision
        {
            return Some(Arc::clone(hit));
        }
        let (revision, info) = self.cache.service_at(key)?;
        // The sidecar sees instance lists, not services: one without any instance (or without
        // the cluster asked) is no name, and never an entry.
        let instances = instances(&info);
        if instances.is_empty() || !(cluster.is_empty() || instances.iter().any(|i| label(&i.cluster) == cluster)) {
            records.remove(&entry);
            return None;
        }
        // The pushed list already carries the protect threshold's verdict.
        let hosts = answerable(&instances, None, Some(cluster).filter(|c| !c.is_empty()));
        let built = Arc::new(ServiceRecords::build(&self.zone, revision, &hosts));
        records.insert(entry, Arc::clone(&built));
        Some(built)
    }
}

/// The instances of a pushed list, as the record builder reads them.
fn instances(info: &ServiceInfo) -> Vec<Arc<Instance>> {
    info.hosts
        .iter()
        .map(|h| {
            let mut i = Instance::new(h.ip.as_str(), h.port, h.cluster_name.as_str(), h.ephemeral);
            (i.weight, i.healthy, i.enabled, i.metadata) = (h.weight, h.healthy, h.enabled, h.metadata.clone());
            Arc::new(i)
        })
        .collect()
}

/// The service a name designates when it is not cached yet: only names whose labels are the
/// Nacos names themselves (mapped labels cannot be reversed; the default group's is known).
fn candidate(name: &ServiceName<'_>) -> Option<ServiceKey> {
    let plain = |l: &str| label(l) == l;
    let group = match name.group {
        None => DEFAULT_GROUP,
        Some(g) if g == label(DEFAULT_GROUP) => DEFAULT_GROUP,
        Some(g) if plain(g) => g,
        Some(_) => return None,
    };
    let namespace = match name.namespace {
        None => DEFAULT_NAMESPACE,
        Some(n) if plain(n) => n,
        Some(_) => return None,
    };
    if !plain(name.service) {
        return None;
    }
    ServiceKey::new(namespace, group, name.service).ok()
}

/// One query's view of [`Names`]: remembers which service it asked for.
struct Lookup<'a> {
    names: &'a Names,
    /// The cached service answered, or the uncached one that would have been.
    asked: RefCell<Option<(ServiceKey, bool)>>,
}

impl Source for Lookup<'_> {
    fn records(&self, name: &ServiceName<'_>) -> Option<Arc<ServiceRecords>> {
        let Some(key) = self.names.key(name) else {
            *self.asked.borrow_mut() = candidate(name).map(|k| (k, false));
            return None;
        };
        let records = self.names.records_of(&key, name.cluster.unwrap_or_default());
        *self.asked.borrow_mut() = Some((key, true));
        records
    }
}

/// The resolver: local answers, first subscriptions, forwarding.
pub struct Resolver {
    names: Names,
    local: Arc<Local>,
    forwarder: Forwarder,
    stats: Arc<Stats>,
    /// Names whose first subscription found nothing: not asked upstream again for a TTL.
    misses: Mutex<HashMap<ServiceKey, Instant>>,
}

impl Resolver {
    /// A resolver answering `zone` from `cache`, subscribing through `local`.
    pub fn new(zone: Zone, cache: Arc<Cache>, local: Arc<Local>, forwarder: Forwarder, stats: Arc<Stats>) -> Self {
        Self { names: Names::new(zone, cache), local, forwarder, stats, misses: Mutex::default() }
    }

    /// The reply to one query; `None` when nothing is to be sent.
    pub async fn answer(self: &Arc<Self>, request: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let (reply, asked) = self.local_answer(request, transport)?;
        match (reply.rcode, asked) {
            (Rcode::Refused, _) if self.forwarder.outside(request, self.names.zone.origin()) => {
                return self.forward(request, transport).await;
            }
            (Rcode::NxDomain, Some((key, false))) if self.may_subscribe(&key) => {
                let followed =
                    tokio::time::timeout(SUBSCRIBE_TIMEOUT, self.local.resolve_subscribe(&key, MAX_RESOLVED));
                match followed.await {
                    Ok(Ok(true)) => {
                        self.stats.dns_subscribed.fetch_add(1, Ordering::Relaxed);
                        if let Some((again, _)) = self.local_answer(request, transport) {
                            self.stats.dns_local.fetch_add(1, Ordering::Relaxed);
                            return Some(again.bytes);
                        }
                    }
                    Ok(Ok(false)) => self.missed(key),
                    // The cluster is away and nothing is cached: not knowing is no NXDOMAIN.
                    Ok(Err(_)) | Err(_) => {
                        self.missed(key);
                        self.stats.dns_servfail.fetch_add(1, Ordering::Relaxed);
                        return forward::servfail(request);
                    }
                }
            }
            // A name cached by an earlier run (the disk cache) but not followed yet.
            (_, Some((key, true))) if !self.local.follows(&key) => {
                let resolver = Arc::clone(self);
                tokio::spawn(async move {
                    let _ = resolver.local.resolve_subscribe(&key, MAX_RESOLVED).await;
                });
            }
            _ => {}
        }
        self.stats.dns_local.fetch_add(1, Ordering::Relaxed);
        Some(reply.bytes)
    }

    fn local_answer(
        &self,
        request: &[u8],
        transport: Transport,
    ) -> Option<(registry_proto::dns::Reply, Option<(ServiceKey, bool)>)> {
        let lookup = Lookup { names: &self.names, asked: RefCell::new(None) };
        let reply = registry_proto::dns::handle(request, transport, &self.names.zone, &lookup)?;
        Some((reply, lookup.asked.into_inner()))
    }

    async fn forward(&self, request: &[u8], transport: Transport) -> Option<Vec<u8>> {
        self.stats.dns_forwarded.fetch_add(1, Ordering::Relaxed);
        match self.forwarder.relay(request, transport).await {
            Ok(reply) => Some(reply),
            Err(e) => {
                tracing::debug!(error = %e, "dns: upstream resolver did not answer");
                self.stats.dns_servfail.fetch_add(1, Ordering::Relaxed);
                forward::servfail(request)
            }
        }
    }

    /// False while an earlier first subscription of `key` found nothing, for a TTL.
    fn may_subscribe(&self, key: &ServiceKey) -> bool {
        let ttl = Duration::from_secs(u64::from(self.names.zone.ttl()));
        let misses = self.misses.lock().unwrap_or_else(PoisonError::into_inner);
        misses.get(key).is_none_or(|at| at.elapsed() >= ttl)
    }

    fn missed(&self, key: ServiceKey) {
        let mut misses = self.misses.lock().unwrap_or_else(PoisonError::into_inner);
        if misses.len() >= MAX_MISSES {
            misses.clear();
        }
        misses.insert(key, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name<'a>(service: &'a str, group: Option<&'a str>, namespace: Option<&'a str>) -> ServiceName<'a> {
        ServiceName { service, group, namespace, cluster: None }
    }

    #[test]
    fn only_names_that_are_their_own_labels_can_be_subscribed_before_they_are_cached() {
        let key = |ns, g, s| ServiceKey::new(ns, g, s).ok();
        assert_eq!(candidate(&name("orders", None, None)), key("public", "DEFAULT_GROUP", "orders"));
        let default_group = label(DEFAULT_GROUP);
        assert_eq!(
            candidate(&name("orders", Some(&default_group), Some("dev"))),
            key("dev", "DEFAULT_GROUP", "orders")
        );
        assert_eq!(candidate(&name("orders", Some("pay"), None)), key("public", "pay", "orders"));
        let mapped = label("Orders");
        assert_eq!(candidate(&name(&mapped, None, None)), None, "a mapped label cannot be reversed");
    }

    #[test]
    fn records_follow_the_cached_revision_and_an_empty_list_is_no_name() {
        use registry_proto::select::Selection;
        use registry_proto::wire::NameForm;
        let cache = Arc::new(Cache::default());
        let names = Names::new(Zone::new("nacos.local", 5, 1).unwrap(), Arc::clone(&cache));
        let key = ServiceKey::new("public", DEFAULT_GROUP, "orders").unwrap();
        let orders = name("orders", None, None);
        assert_eq!(names.key(&orders), None);
        let one =
            Selection { hosts: vec![Arc::new(Instance::new("10.0.0.1", 80, "DEFAULT", true))], ..Default::default() };
        cache.put_service(&key, &ServiceInfo::build(&key, "", &one, NameForm::Bare));
        assert_eq!(names.key(&orders), Some(key.clone()), "the index follows new keys");
        let first = names.records_of(&key, "").unwrap();
        assert!(Arc::ptr_eq(&first, &names.records_of(&key, "").unwrap()), "built once per revision");
        assert!(names.records_of(&key, "made-up").is_none());
        cache.put_service(&key, &ServiceInfo::build(&key, "", &Selection::default(), NameForm::Bare));
        assert!(names.records_of(&key, "").is_none(), "no instance left: no name");
    }
}
