//! The Nacos JSON shapes of instances and of `ServiceInfo` (spec §2.2, §2.3), shared by every
//! transport that returns instance lists (HTTP v1/v2 queries, gRPC, UDP pushes).
//! Every field clients require is always present; strings are never `null` (spec §16.5). Read
//! leniently: a field another server leaves out (r-nacos sends no `valid`) takes its default.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::now_millis;
use crate::model::{Instance, ServiceKey};
use crate::select::Selection;

/// `cacheMillis` sent with every ServiceInfo (Nacos `defaultPushCacheMillis`).
pub const DEFAULT_CACHE_MILLIS: u64 = 10_000;

/// An instance as clients read it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct InstanceInfo {
    /// Client-given id or `ip#port#cluster#group@@service`.
    pub instance_id: String,
    /// Address.
    pub ip: String,
    /// Port.
    pub port: u16,
    /// Weight.
    pub weight: f64,
    /// Health.
    pub healthy: bool,
    /// Enabled flag.
    pub enabled: bool,
    /// Ephemeral flag.
    pub ephemeral: bool,
    /// Cluster name.
    pub cluster_name: String,
    /// Always the grouped name `group@@service`.
    pub service_name: String,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Expected beat interval (ms), derived from metadata.
    pub instance_heart_beat_interval: u64,
    /// Unhealthy threshold (ms), derived from metadata.
    pub instance_heart_beat_time_out: u64,
    /// Removal threshold (ms), derived from metadata.
    pub ip_delete_timeout: u64,
    /// Id generator name.
    pub instance_id_generator: String,
}

impl InstanceInfo {
    /// Renders an instance of `service`.
    pub fn of(service: &ServiceKey, i: &Instance) -> Self {
        Self {
            instance_id: i.display_id(service),
            ip: i.ip.to_string(),
            port: i.port,
            weight: i.weight,
            healthy: i.healthy,
            enabled: i.enabled,
            ephemeral: i.ephemeral,
            cluster_name: i.cluster.to_string(),
            service_name: service.grouped_name(),
            metadata: i.metadata.clone(),
            instance_heart_beat_interval: i.heart_beat_interval_ms(),
            instance_heart_beat_time_out: i.heart_beat_timeout_ms(),
            ip_delete_timeout: i.ip_delete_timeout_ms(),
            instance_id_generator: i.id_generator().to_owned(),
        }
    }
}

/// How the `name` field of a ServiceInfo is written: bare over gRPC, grouped over HTTP and UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameForm {
    /// `service`.
    Bare,
    /// `group@@service`.
    Grouped,
}

/// The query/subscribe/push payload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceInfo {
    /// Service name, bare or grouped (see [`NameForm`]).
    pub name: String,
    /// Group name.
    pub group_name: String,
    /// The requested clusters, comma-joined, echoed back.
    pub clusters: String,
    /// How long clients may cache this answer (ms).
    pub cache_millis: u64,
    /// The selected hosts; `[]` rather than absent when empty.
    pub hosts: Vec<InstanceInfo>,
    /// Build time (ms since the epoch).
    pub last_ref_time: u64,
    /// Always `""` (Nacos 2.x does not compute it).
    pub checksum: String,
    /// Always false.
    #[serde(rename = "allIPs")]
    pub all_ips: bool,
    /// Whether the protect threshold fired.
    pub reach_protection_threshold: bool,
    /// Always true.
    pub valid: bool,
}

impl ServiceInfo {
    /// Builds the payload for `service` from a selection.
    pub fn build(service: &ServiceKey, clusters: &str, selection: &Selection, form: NameForm) -> Self {
        Self {
            name: match form {
                NameForm::Bare => service.service.clone(),
                NameForm::Grouped => service.grouped_name(),
            },
            group_name: service.group.clone(),
            clusters: clusters.to_owned(),
            cache_millis: DEFAULT_CACHE_MILLIS,
            hosts: selection.hosts.iter().map(|i| InstanceInfo::of(service, i)).collect(),
            last_ref_time: now_millis(),
            checksum: String::new(),
            all_ips: false,
            reach_protection_threshold: selection.reach_protection_threshold,
            valid: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_info_has_every_field_clients_require() {
        let key = ServiceKey::new("public", "DEFAULT_GROUP", "orders").unwrap();
        let sel = Selection { hosts: vec![], reach_protection_threshold: false };
        let json = serde_json::to_value(ServiceInfo::build(&key, "", &sel, NameForm::Bare)).unwrap();
        for field in [
            "name",
            "groupName",
            "clusters",
            "cacheMillis",
            "hosts",
            "lastRefTime",
            "checksum",
            "allIPs",
            "reachProtectionThreshold",
            "valid",
        ] {
            assert!(json.get(field).is_some_and(|v| !v.is_null()), "{field} missing or null");
        }
        assert_eq!(json["name"], "orders");
        assert_eq!(json["hosts"], serde_json::json!([]));
    }

    #[test]
    fn fields_another_server_leaves_out_take_their_defaults() {
        let info: ServiceInfo =
            serde_json::from_str(r#"{"name":"s","groupName":"G","hosts":[{"ip":"1.1.1.1","port":80}]}"#).unwrap();
        assert_eq!((info.name.as_str(), info.hosts[0].ip.as_str(), info.valid), ("s", "1.1.1.1", false));
    }
}
