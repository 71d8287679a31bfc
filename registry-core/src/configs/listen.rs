//! Long-poll waiters: a held `/v1/cs/configs/listener` request registers interest in its keys
//! and sleeps until one of them changes or its hold time ends. Registration happens before the
//! MD5 comparison, and `Notify` keeps a permit, so a change between the two is never missed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::Notify;

use crate::model::ConfigKey;
use crate::push::table::SubscriberTable;

/// Interest of held requests, by key.
#[derive(Default)]
pub struct ListenHub {
    /// Key → request id → its wake-up; the reverse index lets a request leave all its keys at once.
    waiters: SubscriberTable<ConfigKey, u64, Arc<Notify>>,
    next_id: AtomicU64,
    /// Requests past their MD5 comparison and waiting (see [`ListenHub::hold`]): `/metrics`
    /// shows it, so a test can know a request is held instead of guessing from a sleep.
    held: AtomicUsize,
}

/// Counts one held request while it lives (see [`ListenHub::hold`]).
pub struct Held<'a>(&'a ListenHub);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One held request's interest; dropping it unregisters.
pub struct Watch {
    hub: Arc<ListenHub>,
    id: u64,
    notify: Arc<Notify>,
}

impl ListenHub {
    /// Registers interest in `keys`.
    pub fn watch(self: &Arc<Self>, keys: Vec<ConfigKey>) -> Watch {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        for k in &keys {
            self.waiters.insert(k, id, Arc::clone(&notify));
        }
        Watch { hub: Arc::clone(self), id, notify }
    }

    /// Wakes every request waiting on `key`.
    pub fn wake(&self, key: &ConfigKey) {
        for n in self.waiters.of(key) {
            n.notify_one();
        }
    }

    /// Wakes every waiting request (after lost events).
    pub fn wake_all(&self) {
        for key in self.waiters.keys() {
            self.wake(&key);
        }
    }

    /// Marks a request as held (nothing it listens to differs) until the guard drops.
    pub fn hold(&self) -> Held<'_> {
        self.held.fetch_add(1, Ordering::Relaxed);
        Held(self)
    }

    /// Requests held right now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Number of (key, request) registrations.
    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Watch {
    /// Resolves when one of the watched keys changed since the last call (or registration).
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.hub.waiters.remove_subscriber(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_before_waiting_is_not_lost_and_drop_unregisters() {
        let hub = Arc::new(ListenHub::default());
        let k = ConfigKey::new("", "g", "d").unwrap();
        let w = hub.watch(vec![k.clone()]);
        hub.wake(&k);
        tokio::time::timeout(std::time::Duration::from_secs(1), w.changed()).await.unwrap();
        assert_eq!(hub.len(), 1);
        drop(w);
        assert!(hub.is_empty());
        let held = hub.hold();
        assert_eq!(hub.held(), 1);
        drop(held);
        assert_eq!(hub.held(), 0);
    }
}
