//! The one subscriber-table shape: key → subscriber id → subscriber, plus the reverse index
//! subscriber id → keys. Naming gRPC subscribers (service → connection), v1 UDP subscribers
//! (service → address) and config listeners (config key → connection) are all this table;
//! the reverse index lets a closed connection be dropped without scanning every key.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use parking_lot::RwLock;

/// Subscribers by key, with a reverse index by subscriber. Reads (every push) far outnumber
/// writes (subscribe, unsubscribe, close), hence the `RwLock`; it is never held across an
/// `.await`, and both maps sit under it so they cannot disagree.
pub struct SubscriberTable<K, I, V> {
    inner: RwLock<Inner<K, I, V>>,
}

struct Inner<K, I, V> {
    by_key: HashMap<K, HashMap<I, V>>,
    by_subscriber: HashMap<I, HashSet<K>>,
}

impl<K, I, V> Default for SubscriberTable<K, I, V> {
    fn default() -> Self {
        Self { inner: RwLock::new(Inner { by_key: HashMap::new(), by_subscriber: HashMap::new() }) }
    }
}

impl<K, I, V> SubscriberTable<K, I, V>
where
    K: Eq + Hash + Clone,
    I: Eq + Hash + Clone,
    V: Clone,
{
    /// Adds or replaces `id`'s subscription to `key`; returns true when it is new.
    pub fn insert(&self, key: &K, id: I, value: V) -> bool {
        let mut inner = self.inner.write();
        inner.by_subscriber.entry(id.clone()).or_default().insert(key.clone());
        inner.by_key.entry(key.clone()).or_default().insert(id, value).is_none()
    }

    /// Removes `id`'s subscription to `key`.
    pub fn remove<Q>(&self, key: &K, id: &Q)
    where
        I: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let mut inner = self.inner.write();
        if let Some(subs) = inner.by_key.get_mut(key) {
            subs.remove(id);
            if subs.is_empty() {
                inner.by_key.remove(key);
            }
        }
        if let Some(keys) = inner.by_subscriber.get_mut(id) {
            keys.remove(key);
            if keys.is_empty() {
                inner.by_subscriber.remove(id);
            }
        }
    }

    /// Removes every subscription of `id` (a closed connection); touches only its keys.
    pub fn remove_subscriber<Q>(&self, id: &Q)
    where
        I: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let mut inner = self.inner.write();
        let Some(keys) = inner.by_subscriber.remove(id) else { return };
        for key in keys {
            if let Some(subs) = inner.by_key.get_mut(&key) {
                subs.remove(id);
                if subs.is_empty() {
                    inner.by_key.remove(&key);
                }
            }
        }
    }

    /// Keeps only the subscriptions `keep` accepts; returns how many were dropped.
    pub fn retain(&self, mut keep: impl FnMut(&V) -> bool) -> usize {
        let mut guard = self.inner.write();
        let Inner { by_key, by_subscriber } = &mut *guard;
        let mut removed = 0;
        by_key.retain(|key, subs| {
            subs.retain(|id, v| {
                let kept = keep(v);
                if !kept {
                    removed += 1;
                    if let Some(keys) = by_subscriber.get_mut(id) {
                        keys.remove(key);
                        if keys.is_empty() {
                            by_subscriber.remove(id);
                        }
                    }
                }
                kept
            });
            !subs.is_empty()
        });
        removed
    }

    /// Subscribers of `key`.
    pub fn of(&self, key: &K) -> Vec<V> {
        self.inner.read().by_key.get(key).map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// `id`'s subscription to `key`.
    pub fn get<Q>(&self, key: &K, id: &Q) -> Option<V>
    where
        I: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.inner.read().by_key.get(key).and_then(|m| m.get(id)).cloned()
    }

    /// Keys that have subscribers.
    pub fn keys(&self) -> Vec<K> {
        self.inner.read().by_key.keys().cloned().collect()
    }

    /// Number of (key, subscriber) pairs.
    pub fn len(&self) -> usize {
        self.inner.read().by_key.values().map(HashMap::len).sum()
    }

    /// Whether there is no subscription.
    pub fn is_empty(&self) -> bool {
        self.inner.read().by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> SubscriberTable<&'static str, &'static str, u32> {
        let t = SubscriberTable::default();
        assert!(t.insert(&"a", "c1", 1));
        assert!(t.insert(&"b", "c1", 2));
        assert!(t.insert(&"a", "c2", 3));
        t
    }

    #[test]
    fn insert_reports_new_and_replaces() {
        let t = table();
        assert!(!t.insert(&"a", "c1", 10));
        assert_eq!(t.get(&"a", &"c1"), Some(10));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn removing_a_subscriber_drops_all_its_keys_and_empty_keys() {
        let t = table();
        t.remove_subscriber(&"c1");
        assert_eq!(t.keys(), vec!["a"]);
        assert_eq!(t.of(&"a"), vec![3]);
        t.remove(&"a", &"c2");
        assert!(t.is_empty());
        // The reverse index forgot them too: re-subscribing counts as new.
        assert!(t.insert(&"a", "c1", 1));
    }

    #[test]
    fn retain_keeps_the_reverse_index_in_step() {
        let t = table();
        assert_eq!(t.retain(|v| *v != 2), 1);
        assert_eq!(t.keys(), vec!["a"]);
        t.remove_subscriber(&"c1");
        t.remove_subscriber(&"c2");
        assert!(t.is_empty());
    }
}
