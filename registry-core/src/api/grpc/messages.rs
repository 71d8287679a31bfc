//! The JSON bodies of Nacos gRPC messages (spec §9–§10) and the `Payload` framing: the body is
//! the UTF-8 JSON of the message in `Any.value`, `metadata.type` the Java simple class name.
//! Responses always carry `resultCode`, `errorCode` and `success` (spec §9.3, §16.5).

use std::collections::{BTreeMap, HashMap};

use registry_proto::Any;
use registry_proto::nacos::{Metadata, Payload};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::model::Instance;
use crate::model::key::DEFAULT_CLUSTER;

/// `ErrorResponse` code: the server is starting.
pub const ERR_STARTING: i32 = 300;
/// `ErrorResponse` code: the connection is not registered (no ConnectionSetup yet, or evicted).
pub const ERR_UNREGISTERED: i32 = 301;
/// `ErrorResponse` code: no handler for the request type.
pub const ERR_NO_HANDLER: i32 = 302;
/// `ErrorResponse` code: the body could not be parsed.
pub const ERR_BAD_GATEWAY: i32 = 502;

/// Fields every request may carry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Common {
    /// Client-chosen id, echoed on responses to server pushes.
    pub request_id: Option<String>,
}

/// `ConnectionSetupRequest`, the first message on the bi-stream.
#[derive(Debug, Clone, Default, Deserialize)]
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
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NamingBase {
    /// Namespace (`public` when null/empty).
    pub namespace: Option<String>,
    /// Bare service name.
    pub service_name: Option<String>,
    /// Group name.
    pub group_name: Option<String>,
}

/// `InstanceRequest` / `PersistentInstanceRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
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
#[derive(Debug, Clone, Default, Deserialize)]
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
#[derive(Debug, Clone, Default, Deserialize)]
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
#[derive(Debug, Clone, Default, Deserialize)]
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
#[derive(Debug, Clone, Default, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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

/// Frames a message: `type` in metadata, JSON in `Any.value`.
pub fn payload(kind: &str, body: &Value) -> Payload {
    Payload {
        metadata: Some(Metadata { r#type: kind.to_owned(), headers: HashMap::new(), client_ip: String::new() }),
        body: Some(Any { type_url: String::new(), value: serde_json::to_vec(body).unwrap_or_default() }),
    }
}

/// A success response of type `kind` with extra fields.
pub fn ok_response(kind: &str, mut fields: Value, request_id: Option<&str>) -> Payload {
    if !fields.is_object() {
        fields = json!({});
    }
    fields["resultCode"] = json!(200);
    fields["errorCode"] = json!(0);
    fields["success"] = json!(true);
    if let Some(id) = request_id {
        fields["requestId"] = json!(id);
    }
    payload(kind, &fields)
}

/// A typed failure (`resultCode` 500, `errorCode` = `code`) of type `kind`.
pub fn failed_response(kind: &str, code: i32, message: &str, mut fields: Value) -> Payload {
    if !fields.is_object() {
        fields = json!({});
    }
    fields["resultCode"] = json!(500);
    fields["errorCode"] = json!(code);
    fields["success"] = json!(false);
    fields["message"] = json!(message);
    payload(kind, &fields)
}

/// `ErrorResponse`, which sets both codes to `code` (Nacos `ErrorResponse.build`).
pub fn error_response(code: i32, message: &str) -> Payload {
    payload("ErrorResponse", &json!({ "resultCode": code, "errorCode": code, "success": false, "message": message }))
}

/// The type and JSON body of a payload; `None` when the metadata or body is missing.
pub fn open(p: &Payload) -> Option<(&str, &[u8])> {
    let kind = p.metadata.as_ref().map(|m| m.r#type.as_str()).filter(|t| !t.is_empty())?;
    let body = p.body.as_ref().map_or(&b"{}"[..], |b| if b.value.is_empty() { &b"{}"[..] } else { &b.value[..] });
    Some((kind, body))
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

    #[test]
    fn responses_always_carry_codes() {
        let p = ok_response("InstanceResponse", json!({"type":"registerInstance"}), None);
        let v: Value = serde_json::from_slice(&p.body.unwrap().value).unwrap();
        assert_eq!(
            (v["resultCode"].as_i64(), v["errorCode"].as_i64(), v["success"].as_bool()),
            (Some(200), Some(0), Some(true))
        );
        let e = error_response(302, "x");
        let v: Value = serde_json::from_slice(&e.body.unwrap().value).unwrap();
        assert_eq!((v["resultCode"].as_i64(), v["errorCode"].as_i64()), (Some(302), Some(302)));
    }
}
