//! The persistent part of the state as one serializable value: what a Raft snapshot holds.
//! Ephemeral publications are not in it; they belong to their clients and die with them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::accounts::Accounts;
use super::config_index::ConfigData;
use super::namespaces::Namespace;
use super::naming_index::NamingData;
use crate::model::{
    ClientId, ConfigItem, ConfigKey, HistoryEntry, Instance, InstanceKey, InstanceOverride, ServiceKey, ServiceMetadata,
};

/// Snapshot format version; bumped when a snapshot holds data an older binary would lose.
/// 2 added namespaces and accounts; version 1 snapshots decode with both empty.
pub const SNAPSHOT_VERSION: u32 = 2;

/// Everything Raft owns, in a stable order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateSnapshot {
    /// Format version ([`SNAPSHOT_VERSION`]).
    pub version: u32,
    /// Persistent naming data, by service.
    pub services: Vec<PersistentService>,
    /// Configs, by key.
    #[serde(default)]
    pub configs: Vec<(ConfigKey, ConfigItem)>,
    /// Config history, by id.
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
    /// Last history id handed out.
    #[serde(default)]
    pub last_history_id: u64,
    /// Last config id handed out.
    #[serde(default)]
    pub last_config_id: u64,
    /// Created namespaces, by id (since version 2).
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
    /// Users, roles and permissions (since version 2).
    #[serde(default)]
    pub accounts: Accounts,
}

/// The Raft-owned part of one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersistentService {
    /// Which service.
    pub key: ServiceKey,
    /// Its metadata, if any.
    pub metadata: Option<ServiceMetadata>,
    /// Persistent instances by owning client.
    pub instances: BTreeMap<ClientId, Instance>,
    /// Update-API overrides.
    pub overrides: BTreeMap<InstanceKey, InstanceOverride>,
}

impl StateSnapshot {
    /// Captures the persistent part of the naming data and all config data; namespaces and
    /// accounts are added by the caller.
    pub fn capture(naming: &NamingData, configs: &ConfigData) -> Self {
        let mut services: Vec<PersistentService> = naming
            .records()
            .filter(|(_, r)| r.has_persistent_part())
            .map(|(k, r)| PersistentService {
                key: k.clone(),
                metadata: r.metadata.clone(),
                instances: r.persistent.iter().map(|(c, i)| (c.clone(), Instance::clone(i))).collect(),
                overrides: BTreeMap::clone(&r.overrides),
            })
            .collect();
        services.sort_by(|a, b| a.key.cmp(&b.key));
        let mut config_items: Vec<(ConfigKey, ConfigItem)> =
            configs.items.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        config_items.sort_by(|a, b| a.0.cmp(&b.0));
        Self {
            version: SNAPSHOT_VERSION,
            services,
            configs: config_items,
            history: configs.history.values().cloned().collect(),
            last_history_id: configs.last_history_id,
            last_config_id: configs.last_config_id,
            namespaces: Vec::new(),
            accounts: Accounts::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_snapshot_decodes_with_no_namespaces_and_no_accounts() {
        let v1 = r#"{"version":1,"services":[],"configs":[],"history":[],"last_history_id":3,"last_config_id":2}"#;
        let s: StateSnapshot = serde_json::from_str(v1).unwrap();
        assert_eq!((s.version, s.last_history_id), (1, 3));
        assert!(s.namespaces.is_empty() && s.accounts == Accounts::default());
        assert!(!s.accounts.bootstrapped, "a v1 cluster bootstraps its administrator once on upgrade");
    }
}
