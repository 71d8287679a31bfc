//! The config index: configs by key with their gray variants, plus the change history.
//!
//! Same shape as the naming index: [`ConfigData`] is the writer's truth behind one mutex that
//! only `consistency::apply` takes; readers get an `Arc` of an immutable [`ConfigItem`] from a
//! sharded map. History is read under the writer lock: it is an operator path, not a hot one.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{FastDashMap, FastMap};
use parking_lot::Mutex;

use crate::model::{ChangeEvent, ConfigItem, ConfigKey, HistoryEntry};

/// The writer's config data.
#[derive(Debug, Default)]
pub struct ConfigData {
    /// Configs by key.
    pub items: FastMap<ConfigKey, ConfigItem>,
    /// History by id (increasing with time).
    pub history: BTreeMap<u64, HistoryEntry>,
    /// Last history id handed out.
    pub last_history_id: u64,
    /// Last config id handed out.
    pub last_config_id: u64,
}

impl ConfigData {
    /// Appends a history entry, assigning its id.
    pub fn record(&mut self, mut entry: HistoryEntry) {
        self.last_history_id += 1;
        entry.id = self.last_history_id;
        self.history.insert(entry.id, entry);
    }
}

/// The config index.
#[derive(Debug, Default)]
pub struct ConfigStore {
    /// The truth; held only for one command's mutation (or one history read), never across
    /// an `.await`.
    data: Mutex<ConfigData>,
    /// Published items for readers.
    views: FastDashMap<ConfigKey, Arc<ConfigItem>>,
}

impl ConfigStore {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs one write; republishes the touched keys and returns one event per changed key.
    /// `f` returns (keys whose readers must be told, keys to republish, result).
    pub fn write<R>(
        &self,
        f: impl FnOnce(&mut ConfigData) -> (Vec<ConfigKey>, Vec<ConfigKey>, R),
    ) -> (Vec<ChangeEvent>, R) {
        let mut data = self.data.lock();
        let (notify, touched, result) = f(&mut data);
        for key in touched.iter().chain(notify.iter()) {
            match data.items.get(key) {
                Some(item) => {
                    self.views.insert(key.clone(), Arc::new(item.clone()));
                }
                None => {
                    self.views.remove(key);
                }
            }
        }
        let mut notify = notify;
        notify.sort();
        notify.dedup();
        (notify.into_iter().map(|key| ChangeEvent::ConfigChanged { key: Arc::new(key) }).collect(), result)
    }

    /// Reads the writer's data (history, snapshots).
    pub fn read_data<R>(&self, f: impl FnOnce(&ConfigData) -> R) -> R {
        f(&self.data.lock())
    }

    /// One config.
    pub fn get(&self, key: &ConfigKey) -> Option<Arc<ConfigItem>> {
        self.views.get(key).map(|v| Arc::clone(v.value()))
    }

    /// Every config (searches, exports), sorted by key.
    pub fn all(&self) -> Vec<(ConfigKey, Arc<ConfigItem>)> {
        let mut out: Vec<(ConfigKey, Arc<ConfigItem>)> =
            self.views.iter().map(|e| (e.key().clone(), Arc::clone(e.value()))).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Number of configs.
    pub fn len(&self) -> usize {
        self.views.len()
    }

    /// Whether there is no config.
    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
    }
}
