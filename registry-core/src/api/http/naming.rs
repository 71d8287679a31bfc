//! Naming request decoding and answer bodies shared by the v1 and v2 routes
//! (`naming_v1.rs`, `naming_v2.rs`): parameters → domain values (Nacos
//! `HttpRequestInstanceBuilder` rules), the raw beat answer, metrics and switches bodies, paging
//! and the forward of ephemeral writes to the responsible member. The routes only wrap these in
//! their envelope (v1 plain, v2 `{code, message, data}`).

use axum::Json;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::ApiError;
use super::openapi::Ty::{Bool, Int, Ip, Num, Port, Str};
use super::openapi::{CLUSTER, NAMESPACE, Param};
use crate::api::ApiState;
use crate::model::{ClusterMetadata, Instance, InstanceKey, InstanceOverride};
use crate::naming::{BeatInfo, NamingService, ServicePatch};
use registry_proto::http::Params;

/// A service: `serviceName` (bare, or `group@@name`), `groupName`, `namespaceId`.
pub(super) const SERVICE: &[Param] = &[
    Param::req("serviceName", Str, "Service name, bare or `group@@name`"),
    Param::opt("groupName", Str, "Group (default `DEFAULT_GROUP`)"),
    Param::opt("namespaceId", NAMESPACE, "Namespace (default `public`)"),
];

/// An instance of a service by address and cluster.
pub(super) const INSTANCE_KEY: &[Param] = &[
    Param::req("ip", Ip, "Instance IP"),
    Param::req("port", Port, "Instance port"),
    Param::opt("clusterName", CLUSTER, "Cluster (default `DEFAULT`)"),
];

/// What an instance registration or override carries besides its key.
pub(super) const INSTANCE_FIELDS: &[Param] = &[
    Param::opt("weight", Num, "Weight, 0 to 10000"),
    Param::opt("enabled", Bool, "Whether the instance takes traffic"),
    Param::opt("healthy", Bool, "Initial health"),
    Param::opt("ephemeral", Bool, "Ephemeral (heartbeat-kept, default) or persistent"),
    Param::opt("metadata", Str, "Metadata as a JSON object or `k1=v1,k2=v2`"),
];

/// `PATCH`: only the fields given change.
pub(super) const OVERRIDE_FIELDS: &[Param] = &[
    Param::opt("weight", Num, "Weight, 0 to 10000"),
    Param::opt("enabled", Bool, "Whether the instance takes traffic"),
    Param::opt("metadata", Str, "Metadata as a JSON object or `k1=v1,k2=v2`"),
];

/// A service's settings.
pub(super) const SERVICE_FIELDS: &[Param] = &[
    Param::opt("protectThreshold", Num, "Protect threshold, 0 to 1"),
    Param::opt("metadata", Str, "Metadata as a JSON object or `k1=v1,k2=v2`"),
    Param::opt("selector", Str, "Selector as JSON, `{\"type\":\"none\"}` or `label`"),
];

/// A heartbeat: the `beat` JSON, or the instance's `ip` and `port`.
pub(super) const BEAT: &[Param] = &[
    Param::opt("beat", Str, "The beat as JSON (1.x clients)"),
    Param::opt("ip", Ip, "Instance IP (without `beat`)"),
    Param::opt("port", Port, "Instance port (without `beat`)"),
    Param::opt("clusterName", CLUSTER, "Cluster (default `DEFAULT`)"),
];

/// Setting an instance's health by hand.
pub(super) const HEALTH: &[Param] = &[Param::req("healthy", Bool, "The health to set")];

/// Nacos' paging, 1-based.
pub(super) const PAGE: &[Param] =
    &[Param::opt("pageNo", Int, "Page, from 1"), Param::opt("pageSize", Int, "Items per page")];

/// Operator metrics: only the status (default), or every count.
pub(super) const ONLY_STATUS: &[Param] = &[Param::opt("onlyStatus", Bool, "Only `status` (default true)")];

/// Builds an instance from v1/v2 parameters (Nacos `HttpRequestInstanceBuilder`).
pub(super) fn instance_from_params(p: &Params, default_ephemeral: bool) -> Result<Instance, ApiError> {
    let ip = p.required("ip")?.to_owned();
    let port: u16 = p.required_num("port")?;
    let mut instance = Instance::new(ip, port, p.cluster(), p.bool_or(&["ephemeral"], default_ephemeral)?);
    if let Some(w) = p.num::<f64>("weight")? {
        instance.weight = w;
    }
    instance.healthy = p.bool_or(&["healthy"], true)?;
    instance.enabled = p.bool_or(&["enabled", "enable"], true)?;
    instance.metadata = p.metadata("metadata")?.unwrap_or_default();
    if let Some(id) = p.opt("instanceId") {
        instance.instance_id = id.into();
    }
    Ok(instance)
}

/// An ephemeral instance write goes to the member responsible for its `ip:port` client.
pub(super) async fn forward_ephemeral(s: &ApiState, p: &Params, method: Method, path: &str) -> Option<Response> {
    if !p.bool_or(&["ephemeral"], true).unwrap_or(false) {
        return None;
    }
    super::forward::to_responsible(s, p, method, path).await
}

/// The instance addressed by `ip`, `port` and `clusterName`/`cluster`.
pub(super) fn instance_key(p: &Params) -> Result<InstanceKey, ApiError> {
    Ok(InstanceKey { ip: p.required("ip")?.to_owned(), port: p.required_num("port")?, cluster: p.cluster() })
}

/// The override fields a `PATCH /instance` gives (`weight`, `enabled`/`enable`, `metadata`); absent ones stay `None`.
pub(super) fn override_patch(p: &Params) -> Result<InstanceOverride, ApiError> {
    let enabled = match p.opt_any(&["enabled", "enable"]) {
        Some(_) => Some(p.bool_or(&["enabled", "enable"], true)?),
        None => None,
    };
    Ok(InstanceOverride { weight: p.num("weight")?, enabled, metadata: p.metadata("metadata")? })
}

/// A beat (v1 and v2 answer the same raw object): `{clientBeatInterval, code, lightBeatEnabled}`.
pub(super) async fn beat_reply(s: &ApiState, p: &Params) -> Result<Response, ApiError> {
    let key = p.service_key()?;
    let beat: Option<BeatInfo> = match p.opt("beat") {
        Some(raw) => {
            Some(serde_json::from_str(raw).map_err(|e| ApiError::bad_request(format!("beat is not valid JSON: {e}")))?)
        }
        None => None,
    };
    let ip = p.opt("ip").unwrap_or_default();
    let port: u16 = p.num("port")?.unwrap_or(0);
    if beat.is_none() && (ip.is_empty() || port == 0) {
        return Err(ApiError::missing("ip"));
    }
    let reply = s.naming.beat(&key, ip, port, &p.cluster(), beat).await?;
    Ok(Json(json!({
        "clientBeatInterval": reply.client_beat_interval_ms,
        "code": reply.code,
        "lightBeatEnabled": reply.light_beat_enabled,
    }))
    .into_response())
}

/// The optional `selector` JSON; only types `none` and `label` are accepted.
fn selector_param(p: &Params) -> Result<Option<Value>, ApiError> {
    match p.opt("selector") {
        None => Ok(None),
        Some(raw) => {
            let v: Value = serde_json::from_str(raw)
                .map_err(|e| ApiError::bad_request(format!("selector is not valid JSON: {e}")))?;
            match v.get("type").and_then(Value::as_str) {
                Some("none" | "label") => Ok(Some(v)),
                _ => Err(ApiError::bad_request("selector type must be 'none' or 'label'")),
            }
        }
    }
}

/// Metadata of a new service from `protectThreshold`, `metadata` and `selector`.
pub(super) fn service_create_params(p: &Params, ephemeral: bool) -> Result<crate::model::ServiceMetadata, ApiError> {
    Ok(NamingService::new_service_metadata(
        ephemeral,
        p.num("protectThreshold")?.unwrap_or(0.0),
        p.metadata("metadata")?.unwrap_or_default(),
        selector_param(p)?,
    ))
}

/// `PUT /service`: Nacos rebuilds the settings from the request, so absent metadata means `{}`
/// and an absent selector means `none`; only the kind and the clusters are kept.
pub(super) fn service_patch(p: &Params) -> Result<ServicePatch, ApiError> {
    Ok(ServicePatch {
        protect_threshold: Some(p.num("protectThreshold")?.unwrap_or(0.0)),
        metadata: Some(p.metadata("metadata")?.unwrap_or_default()),
        selector: Some(selector_param(p)?.unwrap_or_else(crate::model::service::default_selector)),
    })
}

/// Cluster names of a service: those with metadata plus those instances use.
pub(super) fn service_clusters(view: &crate::state::ServiceView) -> Vec<(String, ClusterMetadata)> {
    let mut out: std::collections::BTreeMap<String, ClusterMetadata> =
        view.metadata.as_ref().map(|m| m.clusters.clone()).unwrap_or_default();
    for i in view.instances() {
        out.entry(i.cluster.to_string()).or_default();
    }
    out.into_iter().collect()
}

/// 1-based paging; a page past the end is empty.
pub(super) fn page<T: Clone>(items: &[T], page_no: usize, page_size: usize) -> Vec<T> {
    let start = page_no.saturating_sub(1).saturating_mul(page_size);
    items.iter().skip(start).take(page_size).cloned().collect()
}

/// Cluster settings from `healthChecker` (JSON, type TCP/HTTP/MYSQL/NONE), `checkPort`,
/// `useInstancePort4Check` and `metadata`.
pub(super) fn cluster_metadata(p: &Params) -> Result<ClusterMetadata, ApiError> {
    let checker: Value = serde_json::from_str(p.required("healthChecker")?)
        .map_err(|e| ApiError::bad_request(format!("healthChecker is not valid JSON: {e}")))?;
    match checker.get("type").and_then(Value::as_str).map(str::to_ascii_uppercase).as_deref() {
        Some("TCP" | "HTTP" | "MYSQL" | "NONE") => {}
        _ => return Err(ApiError::bad_request("healthChecker type must be one of TCP, HTTP, MYSQL, NONE")),
    }
    Ok(ClusterMetadata {
        health_check_port: p.required_num("checkPort")?,
        use_instance_port: p.bool_or(&["useInstancePort4Check"], true)?,
        health_checker: checker,
        metadata: p.metadata("metadata")?.unwrap_or_default(),
    })
}

/// The required health flag (`healthy`, or `valid` as older clients send it).
pub(super) fn healthy_param(p: &Params) -> Result<bool, ApiError> {
    if p.opt_any(&["healthy", "valid"]).is_none() {
        return Err(ApiError::missing("healthy"));
    }
    Ok(p.bool_or(&["healthy", "valid"], true)?)
}

/// The `/operator/metrics` body: only the status, or the status with counts and load.
pub(super) fn metrics_body(s: &ApiState, only_status: bool) -> Value {
    let status = if (s.ready)() { "UP" } else { "STARTING" };
    if only_status {
        return json!({ "status": status });
    }
    let c = s.naming.counts();
    let connections: Vec<String> = s.connections.list().into_iter().map(|m| m.connection_id).collect();
    let clients = s.naming.client_counts(&connections);
    let load = crate::telemetry::load::sample();
    json!({
        "status": status,
        "serviceCount": c.services,
        "instanceCount": c.instances,
        "subscribeCount": s.push.subscriber_count(),
        "responsibleInstanceCount": clients.responsible_instances,
        "clientCount": clients.connection_based + clients.ephemeral_ip_port + clients.persistent_ip_port,
        "connectionBasedClientCount": clients.connection_based,
        "ephemeralIpPortClientCount": clients.ephemeral_ip_port,
        "persistentIpPortClientCount": clients.persistent_ip_port,
        "responsibleClientCount": clients.responsible_clients,
        "cpu": load.cpu,
        "load": load.load,
        "mem": load.mem,
    })
}

/// The `/operator/switches` body, from the configuration and the running mode.
pub(super) fn switches_body(s: &ApiState) -> Value {
    let cfg = s.naming.config();
    // The running mode, not constants: a member replicates ephemeral data through Distro; a
    // standalone node (no peers ever configured) does not.
    let standalone = s.admin.is_standalone();
    json!({
        "name": "00-00---000-NACOS_SWITCH_DOMAIN-000---00-00",
        "defaultPushCacheMillis": registry_proto::wire::DEFAULT_CACHE_MILLIS,
        "clientBeatInterval": cfg.client_beat_interval_ms,
        "lightBeatEnabled": cfg.light_beat_enabled,
        "defaultInstanceEphemeral": true,
        "pushEnabled": true,
        "healthCheckEnabled": true,
        "distroEnabled": !standalone,
        "enableStandalone": standalone,
        "checkTimes": 3,
    })
}
