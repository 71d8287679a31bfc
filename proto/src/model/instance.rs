//! An instance of a service and the identities around it (spec §2.2, §2.4).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use super::key::{self, NameError, ServiceKey};

/// Metadata key overriding the expected heartbeat interval (ms).
pub const HEART_BEAT_INTERVAL: &str = "preserved.heart.beat.interval";
/// Metadata key overriding the time without beats after which an instance turns unhealthy (ms).
pub const HEART_BEAT_TIMEOUT: &str = "preserved.heart.beat.timeout";
/// Metadata key overriding the time without beats after which an instance is removed (ms).
pub const IP_DELETE_TIMEOUT: &str = "preserved.ip.delete.timeout";
/// Metadata key selecting the instance id generator.
pub const INSTANCE_ID_GENERATOR: &str = "preserved.instance.id.generator";

/// Default heartbeat interval (ms).
pub const DEFAULT_HEART_BEAT_INTERVAL_MS: u64 = 5_000;
/// Default unhealthy threshold (ms).
pub const DEFAULT_HEART_BEAT_TIMEOUT_MS: u64 = 15_000;
/// Default removal threshold (ms).
pub const DEFAULT_IP_DELETE_TIMEOUT_MS: u64 = 30_000;

/// Weights outside this range are refused (Nacos `MIN/MAX_WEIGHT_VALUE`).
pub const WEIGHT_RANGE: std::ops::RangeInclusive<f64> = 0.0..=10_000.0;

/// Who publishes an instance: a gRPC connection id, or for HTTP `ip:port#true` (ephemeral) /
/// `ip:port#false` (persistent). Liveness and ownership are per client.
///
/// Shared (`Arc<str>`): one client id is a key in several indexes (publications, the client →
/// services index, the beat tracker, Distro's ledger), and copying it into each cost a heap
/// block per index per instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClientId(pub Arc<str>);

impl ClientId {
    /// The HTTP (ip:port based) client id for an address.
    pub fn ip_port(ip: &str, port: u16, ephemeral: bool) -> Self {
        Self(format!("{ip}:{port}#{ephemeral}").into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is an HTTP (`ip:port#ephemeral`) client, whose liveness is its heartbeats,
    /// rather than a gRPC connection (`<millis>_<ip>_<port>`), whose liveness is the connection.
    pub fn is_ip_port(&self) -> bool {
        self.0.ends_with("#true") || self.0.ends_with("#false")
    }
}

impl From<&str> for ClientId {
    fn from(id: &str) -> Self {
        Self(id.into())
    }
}

impl std::borrow::Borrow<str> for ClientId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies an instance within a service: ip, port and cluster. Also the key of instance
/// metadata overrides (`ip:port:cluster`, as Nacos' metadata id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstanceKey {
    /// IP address or host name as registered.
    pub ip: String,
    /// Port as registered.
    pub port: u16,
    /// Cluster name.
    pub cluster: String,
}

impl fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.ip, self.port, self.cluster)
    }
}

/// One instance as stored. `instance_id` is what the client gave; an empty one is generated
/// when the instance is shown (`ip#port#cluster#group@@service`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Client-supplied instance id, or empty.
    pub instance_id: SmolStr,
    /// Address.
    pub ip: SmolStr,
    /// Port.
    pub port: u16,
    /// Load-balancing weight, within [`WEIGHT_RANGE`].
    pub weight: f64,
    /// Health as last decided (by beats, probes, or the client itself).
    pub healthy: bool,
    /// Disabled instances are hidden from queries and pushes.
    pub enabled: bool,
    /// Ephemeral (client-owned, AP) or persistent (CP, health-probed).
    pub ephemeral: bool,
    /// Cluster name.
    pub cluster: SmolStr,
    /// Free-form metadata; some `preserved.*` keys tune liveness.
    pub metadata: BTreeMap<String, String>,
}

impl Instance {
    /// A healthy, enabled instance with weight 1 in the given cluster.
    pub fn new(ip: impl Into<SmolStr>, port: u16, cluster: impl Into<SmolStr>, ephemeral: bool) -> Self {
        Self {
            instance_id: SmolStr::default(),
            ip: ip.into(),
            port,
            weight: 1.0,
            healthy: true,
            enabled: true,
            ephemeral,
            cluster: cluster.into(),
            metadata: BTreeMap::new(),
        }
    }

    /// The instance's identity within its service.
    pub fn key(&self) -> InstanceKey {
        InstanceKey { ip: self.ip.to_string(), port: self.port, cluster: self.cluster.to_string() }
    }

    /// The id shown to clients: the client's own, else `ip#port#cluster#group@@service`.
    pub fn display_id(&self, service: &ServiceKey) -> String {
        if self.instance_id.is_empty() {
            format!("{}#{}#{}#{}", self.ip, self.port, self.cluster, service.grouped_name())
        } else {
            self.instance_id.to_string()
        }
    }

    /// Expected beat interval (ms), from metadata or the default.
    pub fn heart_beat_interval_ms(&self) -> u64 {
        self.metadata_ms(HEART_BEAT_INTERVAL).unwrap_or(DEFAULT_HEART_BEAT_INTERVAL_MS)
    }

    /// Time without beats before the instance turns unhealthy (ms).
    pub fn heart_beat_timeout_ms(&self) -> u64 {
        self.metadata_ms(HEART_BEAT_TIMEOUT).unwrap_or(DEFAULT_HEART_BEAT_TIMEOUT_MS)
    }

    /// Time without beats before the instance is removed (ms).
    pub fn ip_delete_timeout_ms(&self) -> u64 {
        self.metadata_ms(IP_DELETE_TIMEOUT).unwrap_or(DEFAULT_IP_DELETE_TIMEOUT_MS)
    }

    /// Instance id generator name (`simple` unless metadata says otherwise).
    pub fn id_generator(&self) -> &str {
        self.metadata.get(INSTANCE_ID_GENERATOR).map_or("simple", String::as_str)
    }

    fn metadata_ms(&self, key: &str) -> Option<u64> {
        self.metadata.get(key).and_then(|v| v.trim().parse().ok())
    }

    /// Checks what Nacos checks on registration: address, port, weight range, cluster pattern,
    /// and that the beat timeouts are not shorter than the beat interval.
    pub fn validate(&self) -> Result<(), InstanceError> {
        if self.ip.trim().is_empty() {
            return Err(InstanceError::Name(NameError::Blank { field: "ip" }));
        }
        if self.ip.len() > 128 || self.ip.chars().any(char::is_whitespace) {
            return Err(InstanceError::Name(NameError::Illegal {
                field: "ip",
                value: self.ip.to_string(),
                rule: "at most 128 characters and no whitespace",
            }));
        }
        if !WEIGHT_RANGE.contains(&self.weight) || self.weight.is_nan() {
            return Err(InstanceError::Weight(self.weight));
        }
        key::validate_cluster(&self.cluster)?;
        for k in [HEART_BEAT_INTERVAL, HEART_BEAT_TIMEOUT, IP_DELETE_TIMEOUT] {
            if let Some(v) = self.metadata.get(k)
                && v.trim().parse::<u64>().is_err()
            {
                return Err(InstanceError::Metadata(format!("{k} must be a number of milliseconds, got '{v}'")));
            }
        }
        if self.heart_beat_timeout_ms() < self.heart_beat_interval_ms()
            || self.ip_delete_timeout_ms() < self.heart_beat_interval_ms()
        {
            return Err(InstanceError::Metadata(
                "Instance 'heart beat interval' must less than 'heart beat timeout' and 'ip delete timeout'.".into(),
            ));
        }
        Ok(())
    }
}

/// Why an instance was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InstanceError {
    /// A name (ip, cluster) broke its rule.
    #[error(transparent)]
    Name(#[from] NameError),
    /// Weight outside [0, 10000].
    #[error("instance format invalid: The weights range from 0.0 to 10000.0, got {0}")]
    Weight(f64),
    /// Metadata inconsistent with the liveness rules.
    #[error("{0}")]
    Metadata(String),
}

/// Values set through the update APIs (v1 `PUT/PATCH /instance`) that override what the owner
/// published, keyed by [`InstanceKey`]. Persistent (Raft) data, so they survive re-registration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceOverride {
    /// Weight to show instead of the published one.
    pub weight: Option<f64>,
    /// Enabled flag to show instead of the published one.
    pub enabled: Option<bool>,
    /// Metadata entries merged over the published metadata.
    pub metadata: Option<BTreeMap<String, String>>,
}

impl InstanceOverride {
    /// Applies the override to a published instance.
    pub fn apply_to(&self, instance: &mut Instance) {
        if let Some(w) = self.weight {
            instance.weight = w;
        }
        if let Some(e) = self.enabled {
            instance.enabled = e;
        }
        if let Some(m) = &self.metadata {
            for (k, v) in m {
                instance.metadata.insert(k.clone(), v.clone());
            }
        }
    }

    /// Merges `patch` into `self`: fields present in the patch win.
    pub fn merge(&mut self, patch: Self) {
        if patch.weight.is_some() {
            self.weight = patch.weight;
        }
        if patch.enabled.is_some() {
            self.enabled = patch.enabled;
        }
        if patch.metadata.is_some() {
            self.metadata = patch.metadata;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc() -> ServiceKey {
        ServiceKey::new("public", "DEFAULT_GROUP", "orders").unwrap()
    }

    #[test]
    fn generated_id_follows_the_simple_generator() {
        let i = Instance::new("10.0.0.5", 8080, "DEFAULT", true);
        assert_eq!(i.display_id(&svc()), "10.0.0.5#8080#DEFAULT#DEFAULT_GROUP@@orders");
    }

    #[test]
    fn weight_outside_range_is_refused() {
        let mut i = Instance::new("10.0.0.5", 8080, "DEFAULT", true);
        i.weight = 10_000.5;
        assert!(matches!(i.validate(), Err(InstanceError::Weight(_))));
        i.weight = -1.0;
        assert!(matches!(i.validate(), Err(InstanceError::Weight(_))));
        i.weight = 0.0;
        assert!(i.validate().is_ok());
    }

    #[test]
    fn beat_timeouts_shorter_than_interval_are_refused() {
        let mut i = Instance::new("10.0.0.5", 8080, "DEFAULT", true);
        i.metadata.insert(HEART_BEAT_INTERVAL.into(), "1000".into());
        i.metadata.insert(HEART_BEAT_TIMEOUT.into(), "500".into());
        assert!(matches!(i.validate(), Err(InstanceError::Metadata(_))));
        i.metadata.insert(HEART_BEAT_TIMEOUT.into(), "3000".into());
        i.metadata.insert(IP_DELETE_TIMEOUT.into(), "6000".into());
        assert!(i.validate().is_ok());
        assert_eq!((i.heart_beat_timeout_ms(), i.ip_delete_timeout_ms()), (3000, 6000));
    }

    #[test]
    fn override_merges_metadata_and_replaces_scalars() {
        let mut i = Instance::new("10.0.0.5", 8080, "DEFAULT", true);
        i.metadata.insert("a".into(), "1".into());
        let o = InstanceOverride {
            weight: Some(3.0),
            enabled: Some(false),
            metadata: Some([("b".to_owned(), "2".to_owned())].into()),
        };
        o.apply_to(&mut i);
        assert_eq!(i.weight, 3.0);
        assert!(!i.enabled);
        assert_eq!(i.metadata.len(), 2);
    }
}
