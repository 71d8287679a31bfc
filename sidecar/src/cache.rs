//! The failover cache: the last instance list of every service and the last content of every
//! config local clients asked for, in memory and (with a directory) on disk, so a restarted
//! sidecar still has them. While the cluster is unreachable, local lookups and config reads are
//! answered from here: an outage never turns into an empty list.
//!
//! On disk: one JSON file per entry under `services/` and `configs/`, named by the hex of its
//! key, written to a temporary file and renamed (a crash leaves the old entry, never half of one).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

use registry_proto::model::ServiceKey;
use registry_proto::wire::ServiceInfo;
use serde::{Deserialize, Serialize};

/// A config by `(tenant, group, dataId)`.
pub type ConfigId = (String, String, String);

/// A cached config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedConfig {
    /// Content.
    pub content: String,
    /// Its MD5 as the server reported it.
    pub md5: String,
}

#[derive(Serialize, Deserialize)]
struct ServiceEntry {
    key: ServiceKey,
    info: ServiceInfo,
}

#[derive(Serialize, Deserialize)]
struct ConfigEntry {
    tenant: String,
    group: String,
    data_id: String,
    config: CachedConfig,
}

/// A cached instance list and the revision it was stored at (the DNS resolver builds its
/// records once per revision).
#[derive(Debug)]
struct CachedService {
    revision: u64,
    info: ServiceInfo,
}

/// The cache.
#[derive(Debug, Default)]
pub struct Cache {
    dir: Option<PathBuf>,
    services: RwLock<HashMap<ServiceKey, CachedService>>,
    configs: RwLock<HashMap<ConfigId, CachedConfig>>,
    /// Last revision handed out (every stored instance list gets the next one).
    revision: AtomicU64,
    /// Bumped when a service key is cached for the first time.
    keys_generation: AtomicU64,
}

const SERVICES: &str = "services";
const CONFIGS: &str = "configs";

impl Cache {
    /// A cache kept under `dir` (created if needed), loaded from what an earlier run left there;
    /// in memory only without one. Unreadable entries are skipped.
    pub fn open(dir: Option<PathBuf>) -> std::io::Result<Self> {
        let cache = Self { dir, ..Self::default() };
        if let Some(dir) = &cache.dir {
            fs::create_dir_all(dir.join(SERVICES))?;
            fs::create_dir_all(dir.join(CONFIGS))?;
            let mut services = cache.services.write().unwrap_or_else(PoisonError::into_inner);
            for entry in load::<ServiceEntry>(&dir.join(SERVICES)) {
                let revision = cache.revision.fetch_add(1, Ordering::Relaxed) + 1;
                services.insert(entry.key, CachedService { revision, info: entry.info });
            }
            let mut configs = cache.configs.write().unwrap_or_else(PoisonError::into_inner);
            for entry in load::<ConfigEntry>(&dir.join(CONFIGS)) {
                configs.insert((entry.tenant, entry.group, entry.data_id), entry.config);
            }
        }
        Ok(cache)
    }

    /// The last known instance list of `key`.
    pub fn service(&self, key: &ServiceKey) -> Option<ServiceInfo> {
        self.services.read().unwrap_or_else(PoisonError::into_inner).get(key).map(|c| c.info.clone())
    }

    /// The revision of the cached instance list of `key` (changes whenever it is stored).
    pub fn service_revision(&self, key: &ServiceKey) -> Option<u64> {
        self.services.read().unwrap_or_else(PoisonError::into_inner).get(key).map(|c| c.revision)
    }

    /// The cached instance list of `key` with its revision.
    pub fn service_at(&self, key: &ServiceKey) -> Option<(u64, ServiceInfo)> {
        self.services.read().unwrap_or_else(PoisonError::into_inner).get(key).map(|c| (c.revision, c.info.clone()))
    }

    /// Every cached service key.
    pub fn service_keys(&self) -> Vec<ServiceKey> {
        self.services.read().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect()
    }

    /// Changes whenever a service key is cached for the first time (an index over the keys
    /// is rebuilt only then).
    pub fn keys_generation(&self) -> u64 {
        self.keys_generation.load(Ordering::Acquire)
    }

    /// Records the current instance list of `key`.
    pub fn put_service(&self, key: &ServiceKey, info: &ServiceInfo) {
        let revision = self.revision.fetch_add(1, Ordering::Relaxed) + 1;
        let entry = CachedService { revision, info: info.clone() };
        let new_key =
            self.services.write().unwrap_or_else(PoisonError::into_inner).insert(key.clone(), entry).is_none();
        if new_key {
            self.keys_generation.fetch_add(1, Ordering::Release);
        }
        if let Some(dir) = &self.dir {
            store(&dir.join(SERVICES), &key.to_string(), &ServiceEntry { key: key.clone(), info: info.clone() });
        }
    }

    /// Forgets a service nothing follows any more.
    pub fn remove_service(&self, key: &ServiceKey) {
        if self.services.write().unwrap_or_else(PoisonError::into_inner).remove(key).is_some()
            && let Some(dir) = &self.dir
        {
            let _ = fs::remove_file(dir.join(SERVICES).join(file_name(&key.to_string())));
        }
    }

    /// The last known content of a config.
    pub fn config(&self, id: &ConfigId) -> Option<CachedConfig> {
        self.configs.read().unwrap_or_else(PoisonError::into_inner).get(id).cloned()
    }

    /// Records the current content of a config.
    pub fn put_config(&self, id: &ConfigId, config: &CachedConfig) {
        self.configs.write().unwrap_or_else(PoisonError::into_inner).insert(id.clone(), config.clone());
        if let Some(dir) = &self.dir {
            let (tenant, group, data_id) = id.clone();
            store(
                &dir.join(CONFIGS),
                &config_name(id),
                &ConfigEntry { tenant, group, data_id, config: config.clone() },
            );
        }
    }

    /// Forgets a config the server says does not exist (any more).
    pub fn remove_config(&self, id: &ConfigId) {
        if self.configs.write().unwrap_or_else(PoisonError::into_inner).remove(id).is_some()
            && let Some(dir) = &self.dir
        {
            let _ = fs::remove_file(dir.join(CONFIGS).join(file_name(&config_name(id))));
        }
    }

    /// How many services and configs are cached.
    pub fn counts(&self) -> (usize, usize) {
        let services = self.services.read().unwrap_or_else(PoisonError::into_inner).len();
        (services, self.configs.read().unwrap_or_else(PoisonError::into_inner).len())
    }
}

fn config_name((tenant, group, data_id): &ConfigId) -> String {
    format!("{tenant}\u{1}{group}\u{1}{data_id}")
}

/// Hex of the key: any key is a valid, unique file name.
fn file_name(key: &str) -> String {
    let mut out = String::with_capacity(key.len() * 2 + 5);
    for b in key.bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out.push_str(".json");
    out
}

fn store(dir: &Path, key: &str, entry: &impl Serialize) {
    let path = dir.join(file_name(key));
    let tmp = path.with_extension("tmp");
    let written = serde_json::to_vec(entry)
        .map_err(std::io::Error::other)
        .and_then(|bytes| fs::write(&tmp, bytes))
        .and_then(|()| fs::rename(&tmp, &path));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "could not write a failover cache entry");
    }
}

fn load<T: for<'de> Deserialize<'de>>(dir: &Path) -> Vec<T> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        match fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(value) => out.push(value),
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "skipping an unreadable failover cache entry"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use registry_proto::select::Selection;
    use registry_proto::wire::NameForm;

    use super::*;

    #[test]
    fn entries_survive_a_reopen_and_removed_configs_stay_removed() {
        let dir = tempfile::tempdir().unwrap();
        let key = ServiceKey::new("dev", "G", "orders").unwrap();
        let info = ServiceInfo::build(&key, "", &Selection::default(), NameForm::Bare);
        let (kept, gone) =
            (("dev".to_owned(), "G".to_owned(), "a".to_owned()), ("".to_owned(), "G".to_owned(), "b/c".to_owned()));
        {
            let cache = Cache::open(Some(dir.path().to_owned())).unwrap();
            cache.put_service(&key, &info);
            cache.put_config(&kept, &CachedConfig { content: "x=1".into(), md5: "m".into() });
            cache.put_config(&gone, &CachedConfig { content: "y".into(), md5: "n".into() });
            cache.remove_config(&gone);
        }
        let cache = Cache::open(Some(dir.path().to_owned())).unwrap();
        assert_eq!(cache.service(&key), Some(info));
        assert_eq!(cache.config(&kept).map(|c| c.content), Some("x=1".to_owned()));
        assert_eq!(cache.config(&gone), None);
        assert_eq!(cache.counts(), (1, 1));
    }
}
