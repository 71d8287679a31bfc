//! The JSON bodies of the connection and naming requests (spec §9–§10), in both directions: the
//! server decodes them, clients encode them. Absent fields take Nacos' defaults.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::key::{DEFAULT_CLUSTER, DEFAULT_NAMESPACE};
use crate::model::{Instance, NameError, ServiceKey};

/// Fields every request may carry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Common {
    /// Client-chosen id, echoed on responses to server pushes.
    pub request_id: Option<String>,
}

/// `ConnectionSetupRequest`, the first message on the bi-stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConnectionSetup {
    /// `Nacos-Java-Client:v2.x.y`, ...
    pub client_version: Option<String>,
    /// Namespace the client was configured with.
    pub tenant: Option<String>,
    /// Labels: `source`, `module`, `AppName`, `taskId`, ...
    pub labels: HashMap<String, String>,
    /// Present (even empty) on clients that negotiate abilities and wait for `SetupAckRequest`.
    pub ability_table: Option<Value>,
}

/// Base of naming requests: bare service name with separate group (spec §10, §16.6).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NamingBase {
    /// Namespace (`public` when null/empty).
    pub namespace: Option<String>,
    /// Bare service name.
    pub service_name: Option<String>,
    /// Group name.
    pub group_name: Option<String>,
}

impl NamingBase {
    /// The service these fields name: namespace `public` when null or empty, the group from
    /// `groupName` or a grouped `serviceName` (spec §16.6).
    pub fn service_key(&self) -> Result<ServiceKey, NameError> {
        let namespace = self.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(DEFAULT_NAMESPACE);
        ServiceKey::from_grouped(
            namespace,
            self.service_name.as_deref().unwrap_or_default(),
            self.group_name.as_deref(),
        )
    }
}

/// `InstanceRequest` / `PersistentInstanceRequest`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct InstanceRequest {
    /// Service identity.
    #[serde(flatten)]
    pub base: NamingBase,
    /// `registerInstance` | `deregisterInstance`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The instance.
    pub instance: Option<WireInstance>,
}

/// `BatchInstanceRequest`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BatchInstanceRequest {
    /// Service identity.
    #[serde(flatten)]
    pub base: NamingBase,
    /// `batchRegisterInstance` (a deregister is a batch register of what remains).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The whole publication.
    pub instances: Vec<WireInstance>,
}

/// `ServiceQueryRequest`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceQueryRequest {
    /// Service identity.
    #[serde(flatten)]
    pub base: NamingBase,
    /// Comma-separated clusters (may be null).
    pub cluster: Option<String>,
    /// Only healthy instances.
    pub healthy_only: bool,
}

/// `SubscribeServiceRequest`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SubscribeServiceRequest {
    /// Service identity.
    #[serde(flatten)]
    pub base: NamingBase,
    /// true = subscribe, false = unsubscribe.
    pub subscribe: bool,
    /// Comma-separated clusters (may be null).
    pub clusters: Option<String>,
}

/// `ServiceListRequest`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceListRequest {
    /// Namespace and group (service name unused).
    #[serde(flatten)]
    pub base: NamingBase,
    /// 1-based page.
    pub page_no: usize,
    /// Page size.
    pub page_size: usize,
}

/// An instance as clients send it; absent fields take Nacos' defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WireInstance {
    /// Client-chosen id.
    pub instance_id: Option<String>,
    /// Address.
    pub ip: Option<String>,
    /// Port.
    pub port: i64,
    /// Weight.
    pub weight: f64,
    /// Health.
    pub healthy: bool,
    /// Enabled.
    pub enabled: bool,
    /// Ephemeral.
    pub ephemeral: bool,
    /// Cluster.
    pub cluster_name: Option<String>,
    /// Metadata (values may arrive as non-strings from lenient clients).
    pub metadata: Option<BTreeMap<String, Value>>,
}

impl Default for WireInstance {
    fn default() -> Self {
        Self {
            instance_id: None,
            ip: None,
            port: 0,
            weight: 1.0,
            healthy: true,
            enabled: true,
            ephemeral: true,
            cluster_name: None,
            metadata: None,
        }
    }
}

impl WireInstance {
    /// The model instance, or why not.
    pub fn into_instance(self, ephemeral: bool) -> Result<Instance, String> {
        let ip = self.ip.filter(|s| !s.trim().is_empty()).ok_or("instance ip is required")?;
        let port = u16::try_from(self.port).map_err(|_| format!("instance port {} is out of range", self.port))?;
        let cluster = self.cluster_name.filter(|c| !c.is_empty()).unwrap_or_else(|| DEFAULT_CLUSTER.to_owned());
        let mut i = Instance::new(ip, port, cluster, ephemeral);
        i.weight = self.weight;
        i.healthy = self.healthy;
        i.enabled = self.enabled;
        i.instance_id = self.instance_id.map(Into::into).unwrap_or_default();
        i.metadata = self
            .metadata
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect();
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_defaults_follow_nacos() {
        let w: WireInstance = serde_json::from_str(r#"{"ip":"1.1.1.1","port":80,"metadata":{"n":1}}"#).unwrap();
        let i = w.into_instance(true).unwrap();
        assert_eq!((i.weight, i.healthy, i.enabled, i.cluster.as_str()), (1.0, true, true, "DEFAULT"));
        assert_eq!(i.metadata["n"], "1");
        let bad: WireInstance = serde_json::from_str(r#"{"ip":"1.1.1.1","port":70000}"#).unwrap();
        assert!(bad.into_instance(true).is_err());
    }
}
