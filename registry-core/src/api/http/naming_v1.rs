//! Naming HTTP Open API v1 (`/nacos/v1/ns/...`, spec §4). Writes answer plain `ok`; queries
//! answer JSON in the exact shapes 1.x and 2.x clients read.

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::{Value, json};

use super::error::{ApiError, V1};
use super::naming::{
    beat_reply, cluster_metadata, forward_ephemeral, healthy_param, instance_from_params, instance_key, metrics_body,
    override_patch, page, service_clusters, service_create_params, service_patch, switches_body,
};
use crate::api::ApiState;
use crate::consistency::admin::Responsible;
use crate::model::InstanceOverride;
use crate::model::key::DEFAULT_GROUP;
use crate::naming::NameForm;
use crate::push::is_push_capable;
use registry_proto::http::Params;

type V1Result = Result<Response, V1>;

/// v1 naming routes.
pub fn routes() -> Router<ApiState> {
    let ns = Router::new()
        .route(
            "/instance",
            get(get_instance)
                .post(register_instance)
                .delete(deregister_instance)
                .put(update_instance)
                .patch(patch_instance),
        )
        .route("/instance/list", get(list_instances))
        .route("/instance/beat", put(beat))
        .route("/service", get(get_service).post(create_service).put(update_service).delete(delete_service))
        .route("/service/list", get(list_services))
        .route("/service/names", get(service_names).post(service_names))
        .route("/service/subscribers", get(service_subscribers))
        .route("/catalog/services", get(catalog_services))
        .route("/catalog/instances", get(catalog_instances))
        .route("/cluster", put(update_cluster))
        .route("/health", put(update_health))
        .route("/health/instance", put(update_health))
        .route("/health/server", get(health_server))
        .route("/health/checkers", get(health_checkers))
        .route("/operator/metrics", get(metrics))
        .route("/ops/metrics", get(metrics))
        .route("/operator/switches", get(switches).put(update_switch))
        .route("/operator/push/state", get(push_state))
        .route("/operator/distro/client", get(distro_client));
    Router::new().nest("/nacos/v1/ns", ns)
}

fn ok() -> Response {
    "ok".into_response()
}

async fn register_instance(State(s): State<ApiState>, p: Params) -> V1Result {
    if let Some(answer) = forward_ephemeral(&s, &p, Method::POST, "/nacos/v1/ns/instance").await {
        return Ok(answer);
    }
    let key = p.service_key()?;
    let instance = instance_from_params(&p, true)?;
    s.naming.register_instance(&key, instance).await?;
    Ok(ok())
}

async fn deregister_instance(State(s): State<ApiState>, p: Params) -> V1Result {
    if let Some(answer) = forward_ephemeral(&s, &p, Method::DELETE, "/nacos/v1/ns/instance").await {
        return Ok(answer);
    }
    let key = p.service_key()?;
    let ip = p.required("ip")?;
    let port: u16 = p.required_num("port")?;
    s.naming.deregister_instance(&key, ip, port, p.bool_or(&["ephemeral"], true)?).await?;
    Ok(ok())
}

/// `PUT /instance`: the full override (weight, enabled, metadata) as Java clients send it.
async fn update_instance(State(s): State<ApiState>, p: Params) -> V1Result {
    let key = p.service_key()?;
    let instance = instance_from_params(&p, true)?;
    let patch = InstanceOverride {
        weight: Some(instance.weight),
        enabled: Some(instance.enabled),
        metadata: Some(instance.metadata.clone()),
    };
    s.naming.update_instance(&key, instance.key(), patch).await?;
    Ok(ok())
}

/// `PATCH /instance`: only the fields given.
async fn patch_instance(State(s): State<ApiState>, p: Params) -> V1Result {
    let key = p.service_key()?;
    let patch = override_patch(&p)?;
    s.naming.update_instance(&key, instance_key(&p)?, patch).await?;
    Ok(ok())
}

async fn get_instance(State(s): State<ApiState>, p: Params) -> V1Result {
    let key = p.service_key()?;
    let ip = p.required("ip")?;
    let port: u16 = p.required_num("port")?;
    let i = s.naming.get_instance(&key, ip, port, &p.cluster())?;
    Ok(Json(json!({
        "service": key.grouped_name(),
        "ip": i.ip,
        "port": i.port,
        "clusterName": i.cluster,
        "weight": i.weight,
        "healthy": i.healthy,
        "instanceId": i.display_id(&key),
        "metadata": i.metadata,
    }))
    .into_response())
}

async fn list_instances(State(s): State<ApiState>, p: Params) -> V1Result {
    let key = p.service_key()?;
    let clusters = p.opt("clusters").unwrap_or_default().to_owned();
    let healthy_only = p.bool_or(&["healthyOnly"], false)?;
    let udp_port: u16 = p.num("udpPort")?.unwrap_or(0);
    if udp_port > 0 && is_push_capable(&p.user_agent) {
        let ip = match p.opt("clientIP").map(str::parse::<IpAddr>) {
            Some(Ok(ip)) => Some(ip),
            Some(Err(_)) => return Err(ApiError::bad_request("clientIP is not an IP address").into()),
            None => p.remote.map(|r| r.ip()),
        };
        if let Some(ip) = ip {
            s.push.subscribe_udp(&key, SocketAddr::new(ip, udp_port), &clusters, &p.user_agent, p.opt("app"));
        }
    }
    // 1.x servers also sent `dom`; harmless for newer clients.
    let body = s.naming.query_json(&key, &clusters, healthy_only, NameForm::Grouped, true);
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn beat(State(s): State<ApiState>, p: Params) -> V1Result {
    if let Some(answer) = super::forward::to_responsible(&s, &p, Method::PUT, "/nacos/v1/ns/instance/beat").await {
        return Ok(answer);
    }
    Ok(beat_reply(&s, &p).await?)
}

/// v1 `POST /service` creates a persistent service (spec §2.4).
async fn create_service(State(s): State<ApiState>, p: Params) -> V1Result {
    let key = p.service_key()?;
    s.naming.create_service(&key, service_create_params(&p, false)?).await?;
    Ok(ok())
}

async fn update_service(State(s): State<ApiState>, p: Params) -> V1Result {
    let key = p.service_key()?;
    p.required("protectThreshold")?;
    s.naming.update_service(&key, service_patch(&p)?).await?;
    Ok(ok())
}

async fn delete_service(State(s): State<ApiState>, p: Params) -> V1Result {
    let key = p.service_key()?;
    s.naming.delete_service(&key).await?;
    Ok(ok())
}

async fn get_service(State(s): State<ApiState>, p: Params) -> V1Result {
    let key = p.service_key()?;
    let view = s.naming.view(&key).ok_or_else(|| crate::naming::NamingError::ServiceNotFound {
        namespace: key.namespace.clone(),
        service: key.grouped_name(),
    })?;
    let metadata = view.metadata.clone().unwrap_or_else(|| crate::model::ServiceMetadata::new(view.ephemeral));
    let clusters: Vec<Value> = service_clusters(&view)
        .into_iter()
        .map(|(name, c)| json!({ "name": name, "healthChecker": c.health_checker, "metadata": c.metadata }))
        .collect();
    Ok(Json(json!({
        "namespaceId": key.namespace,
        "groupName": key.group,
        "name": key.service,
        "protectThreshold": metadata.protect_threshold,
        "metadata": metadata.metadata,
        "selector": metadata.selector,
        "clusters": clusters,
    }))
    .into_response())
}

async fn list_services(State(s): State<ApiState>, p: Params) -> V1Result {
    let page_no: usize = p.required_num("pageNo")?;
    let page_size: usize = p.required_num("pageSize")?;
    let group = p.opt("groupName").unwrap_or(DEFAULT_GROUP);
    let names: Vec<String> =
        s.naming.list_services(p.namespace(), Some(group)).iter().map(|v| v.key.service.clone()).collect();
    Ok(Json(json!({ "count": names.len(), "doms": page(&names, page_no, page_size) })).into_response())
}

/// Grouped service names by namespace; without `namespaceId`, every namespace (as Nacos).
async fn service_names(State(s): State<ApiState>, p: Params) -> V1Result {
    let expr = p.opt("expr").unwrap_or_default();
    let views = match p.opt("namespaceId") {
        Some(ns) => s.naming.list_services(ns, None),
        None => s.naming.list_all_services(),
    };
    let mut by_ns: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
    for v in views.iter().filter(|v| expr.is_empty() || v.key.grouped_name().contains(expr)) {
        by_ns.entry(v.key.namespace.clone()).or_default().push(v.key.grouped_name());
    }
    let count: usize = by_ns.values().map(Vec::len).sum();
    // Nacos 2.2.3–2.4.3 emit this odd key; `services` is what older servers and docs use.
    Ok(Json(json!({ "META-INF/services": by_ns.clone(), "services": by_ns, "count": count })).into_response())
}

async fn service_subscribers(State(s): State<ApiState>, p: Params) -> V1Result {
    let key = p.service_key()?;
    let page_no: usize = p.num("pageNo")?.unwrap_or(1);
    let page_size: usize = p.num("pageSize")?.unwrap_or(1000);
    let subs: Vec<Value> = s
        .push
        .subscribers_of(&key)
        .into_iter()
        .map(|sub| {
            json!({
                "addrStr": sub.addr.to_string(),
                "agent": sub.agent,
                "app": sub.app,
                "ip": sub.addr.ip().to_string(),
                "port": sub.addr.port(),
                "namespaceId": key.namespace,
                "serviceName": key.grouped_name(),
                "cluster": sub.clusters,
            })
        })
        .collect();
    Ok(Json(json!({ "subscribers": page(&subs, page_no, page_size), "count": subs.len() })).into_response())
}

async fn catalog_services(State(s): State<ApiState>, p: Params) -> V1Result {
    let page_no: usize = p.num("pageNo")?.unwrap_or(1);
    let page_size: usize = p.num("pageSize")?.unwrap_or(10);
    let group = p.opt("groupNameParam");
    let name = p.opt("serviceNameParam").unwrap_or_default();
    // Filter, then encode only the page: the console lists 10 000 services through this.
    let matching: Vec<_> =
        s.naming.list_services(p.namespace(), group).into_iter().filter(|v| v.key.service.contains(name)).collect();
    let items: Vec<Value> = page(&matching, page_no, page_size)
        .iter()
        .map(|v| {
            json!({
                "name": v.key.service,
                "groupName": v.key.group,
                "clusterCount": service_clusters(v).len(),
                "ipCount": v.instance_count(),
                "healthyInstanceCount": v.instances().iter().filter(|i| i.healthy).count(),
                "triggerFlag": "false",
            })
        })
        .collect();
    Ok(Json(json!({ "count": matching.len(), "serviceList": items })).into_response())
}

async fn catalog_instances(State(s): State<ApiState>, p: Params) -> V1Result {
    let key = p.service_key()?;
    let page_no: usize = p.num("pageNo")?.unwrap_or(1);
    let page_size: usize = p.num("pageSize")?.unwrap_or(100);
    let cluster = p.opt("clusterName");
    let view = s.naming.view(&key);
    let items: Vec<crate::naming::InstanceInfo> = view
        .iter()
        .flat_map(|v| v.instances().iter())
        .filter(|i| cluster.is_none_or(|c| i.cluster == c))
        .map(|i| crate::naming::InstanceInfo::of(&key, i))
        .collect();
    Ok(Json(json!({ "count": items.len(), "list": page(&items, page_no, page_size) })).into_response())
}

async fn update_cluster(State(s): State<ApiState>, p: Params) -> V1Result {
    let key = p.service_key()?;
    let cluster = p.required("clusterName")?.to_owned();
    p.required("useInstancePort4Check")?;
    s.naming.update_cluster(&key, &cluster, cluster_metadata(&p)?).await?;
    Ok(ok())
}

async fn update_health(State(s): State<ApiState>, p: Params) -> V1Result {
    let key = p.service_key()?;
    let healthy = healthy_param(&p)?;
    s.naming.update_health(&key, instance_key(&p)?, healthy).await?;
    Ok(ok())
}

async fn health_server(State(s): State<ApiState>) -> V1Result {
    let msg = format!(
        "Hello! I am Nacos-Naming and healthy! total services: {}, local port:{}",
        s.naming.counts().services,
        s.http_addr.port()
    );
    Ok(Json(json!({ "msg": msg })).into_response())
}

pub(crate) fn default_checkers() -> Value {
    json!({
        "TCP": { "type": "TCP" },
        "HTTP": { "type": "HTTP", "path": "", "headers": "", "expectedResponseCode": 200 },
        "MYSQL": { "type": "MYSQL", "user": "", "pwd": "", "cmd": "" },
        "NONE": { "type": "NONE" },
    })
}

async fn health_checkers() -> V1Result {
    Ok(Json(default_checkers()).into_response())
}

async fn metrics(State(s): State<ApiState>, p: Params) -> V1Result {
    Ok(Json(metrics_body(&s, p.bool_or(&["onlyStatus"], true)?)).into_response())
}

async fn switches(State(s): State<ApiState>) -> V1Result {
    Ok(Json(switches_body(&s)).into_response())
}

/// Switches are configuration here (flags, env, file), not runtime state; say so clearly.
async fn update_switch(p: Params) -> V1Result {
    let entry = p.required("entry")?;
    Err(ApiError::bad_request(format!(
        "switch '{entry}' cannot be changed at runtime on this server; set it in the server configuration"
    ))
    .into())
}

async fn push_state(State(s): State<ApiState>) -> V1Result {
    let stats = s.push.stats();
    let total = stats.sent;
    let ratio = if total == 0 { 1.0 } else { stats.acked as f64 / total as f64 };
    Ok(Json(json!({
        "succeed": stats.acked,
        "failed": stats.failed,
        "total": total,
        "ratio": ratio,
    }))
    .into_response())
}

/// The member responsible for the v1 client `ip:port` (Nacos' Distro hash over the healthy
/// members, see `Admin::responsible_member`), by its HTTP address: the one that takes that
/// client's writes and beats. This node when it is responsible, or standalone.
async fn distro_client(State(s): State<ApiState>, p: Params) -> V1Result {
    let ip = p.required("ip")?;
    let port: u16 = p.required_num("port")?;
    let server = match s.admin.responsible_member(&format!("{ip}:{port}")) {
        Some(Responsible { node_id, http_addr }) => {
            http_addr.ok_or_else(|| ApiError::Internal(format!("member {node_id} has no known HTTP address")))?
        }
        None => s.http_addr.to_string(),
    };
    Ok(Json(json!({ "responsibleServer": server })).into_response())
}
