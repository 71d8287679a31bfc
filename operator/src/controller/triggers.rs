//! Which watch events wake a reconcile. Without a filter the operator would wake itself: every
//! server-side apply writes `metadata.managedFields` (on older servers, 1.20 for one, even an
//! apply that changes nothing moves its timestamp and the `resourceVersion`), and every status
//! write changes the `NacosCluster`. Each of those events would run one more reconcile that
//! changes nothing.
//!
//! [`Changes`] hashes what a reconcile can act on, the object without `managedFields` and
//! `resourceVersion` (and, for the `NacosCluster` itself, without `status`, which only the
//! operator writes), and passes an object on only when that hash changed. Deletions of owned
//! objects always pass (the reconcile recreates them); deletions of the `NacosCluster` never do
//! (garbage collection removes its objects).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use futures_util::{Stream, StreamExt, future};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::Serialize;

/// Which side of the ownership the watched objects are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    /// The `NacosCluster`s: status changes and deletions do not trigger.
    Owner,
    /// Objects the clusters own: status changes (a pod turned ready) and deletions trigger.
    Owned,
}

/// Remembers the last content hash per object (by uid).
#[derive(Debug)]
pub struct Changes {
    watched: Watched,
    seen: HashMap<String, u64>,
}

impl Changes {
    /// Nothing seen yet: the first event of every object passes.
    pub fn new(watched: Watched) -> Self {
        Self { watched, seen: HashMap::new() }
    }

    /// The object to reconcile for `event`, if it should trigger one.
    pub fn on_event<K: Resource + Serialize>(&mut self, event: watcher::Event<K>) -> Option<K> {
        match event {
            watcher::Event::Apply(object) | watcher::Event::InitApply(object) => {
                let hash = content_hash(&object, self.watched)?;
                let key = object.uid().unwrap_or_else(|| object.name_any());
                (self.seen.insert(key, hash) != Some(hash)).then_some(object)
            }
            watcher::Event::Delete(object) => {
                self.seen.remove(&object.uid().unwrap_or_else(|| object.name_any()));
                (self.watched == Watched::Owned).then_some(object)
            }
            watcher::Event::Init | watcher::Event::InitDone => None,
        }
    }
}

/// The objects of `events` that should trigger a reconcile (see [`Changes`]); watch errors pass
/// through for the controller's backoff.
pub fn changes<K, S>(events: S, watched: Watched) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource + Serialize + Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let mut changes = Changes::new(watched);
    events.filter_map(move |event| {
        future::ready(match event {
            Ok(event) => changes.on_event(event).map(Ok),
            Err(error) => Some(Err(error)),
        })
    })
}

/// Hash of `object` without the fields its own writes change. `None` when it does not serialize
/// (it then always triggers, as an unfiltered watch would).
fn content_hash<K: Serialize>(object: &K, watched: Watched) -> Option<u64> {
    let mut value = serde_json::to_value(object).ok()?;
    if let Some(metadata) = value.get_mut("metadata").and_then(serde_json::Value::as_object_mut) {
        metadata.remove("managedFields");
        metadata.remove("resourceVersion");
    }
    if watched == Watched::Owner
        && let Some(object) = value.as_object_mut()
    {
        object.remove("status");
    }
    let mut hasher = DefaultHasher::new();
    value.to_string().hash(&mut hasher);
    Some(hasher.finish())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::crd::{ClusterPhase, NacosClusterStatus};
    use crate::fixtures;

    fn statefulset(resource_version: &str, applied_at: i64) -> StatefulSet {
        let mut set = fixtures::built(fixtures::DEFAULTS).stateful_set;
        set.metadata.uid = Some("sts-uid".into());
        set.metadata.resource_version = Some(resource_version.into());
        set.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some("nacos-operator".into()),
            operation: Some("Apply".into()),
            time: Some(Time(Timestamp::from_second(applied_at).unwrap())),
            ..ManagedFieldsEntry::default()
        }]);
        set
    }

    #[test]
    fn a_no_op_apply_of_an_owned_object_does_not_trigger() {
        let mut changes = Changes::new(Watched::Owned);
        assert!(changes.on_event(watcher::Event::InitApply(statefulset("1", 10))).is_some(), "first sight");
        // What a 1.20 API server sends after an apply that changed nothing.
        assert!(changes.on_event(watcher::Event::Apply(statefulset("2", 20))).is_none());
    }

    #[test]
    fn status_changes_and_deletions_of_owned_objects_trigger() {
        let mut changes = Changes::new(Watched::Owned);
        changes.on_event(watcher::Event::Apply(statefulset("1", 10)));
        let mut ready = statefulset("2", 10);
        ready.status = Some(StatefulSetStatus { replicas: 3, ready_replicas: Some(1), ..StatefulSetStatus::default() });
        assert!(changes.on_event(watcher::Event::Apply(ready.clone())).is_some(), "a pod turned ready");
        assert!(changes.on_event(watcher::Event::Delete(ready.clone())).is_some(), "deleted: recreate it");
        assert!(changes.on_event(watcher::Event::Apply(ready)).is_some(), "recreated: seen anew");
    }

    #[test]
    fn the_operators_status_writes_do_not_trigger_but_spec_changes_do() {
        let mut changes = Changes::new(Watched::Owner);
        let mut cluster = fixtures::cluster(fixtures::DEFAULTS);
        assert!(changes.on_event(watcher::Event::Apply(cluster.clone())).is_some());
        cluster.status =
            Some(NacosClusterStatus { phase: Some(ClusterPhase::Creating), ..NacosClusterStatus::default() });
        cluster.metadata.resource_version = Some("7".into());
        assert!(changes.on_event(watcher::Event::Apply(cluster.clone())).is_none(), "own status write");
        cluster.spec.replicas = 5;
        cluster.metadata.generation = Some(2);
        assert!(changes.on_event(watcher::Event::Apply(cluster.clone())).is_some(), "spec change");
        assert!(changes.on_event(watcher::Event::Delete(cluster)).is_none(), "garbage collection does the rest");
    }
}
