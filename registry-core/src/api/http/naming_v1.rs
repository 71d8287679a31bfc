//! Naming HTTP Open API v1 (`/nacos/v1/ns/...`, spec §4). Writes answer plain `ok`; queries
//! answer JSON in the exact shapes 1.x and 2.x clients read.

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::on;
use serde_json::{Value, json};

use super::error::{ApiError, V1};
use super::naming::{
    BEAT, HEALTH, INSTANCE_FIELDS, INSTANCE_KEY, ONLY_STATUS, OVERRIDE_FIELDS, PAGE, SERVICE, SERVICE_FIELDS,
    beat_reply, cluster_metadata, forward_ephemeral, healthy_param, instance_from_params, instance_key, metrics_body,
    override_patch, page, service_clusters, service_create_params, service_patch, switches_body,
};
use super::openapi::Ty::{Bool, Int, Ip, Num, Port, Str};
use super::openapi::{CLUSTER, Guard, NAMESPACE, Param, Reply, Route, Table};
use crate::api::ApiState;
use crate::consistency::admin::Responsible;
use crate::model::InstanceOverride;
use crate::model::key::DEFAULT_GROUP;
use crate::naming::NameForm;
use crate::push::is_push_capable;
use registry_proto::http::Params;

type V1Result = Result<Response, V1>;

/// v1 naming routes.
pub const TABLE: Table = Table {
    tag: "naming v1",
    guard: Guard::ClientApi,
    routes: &[
        Route::get("/nacos/v1/ns/instance", "One instance of a service", |m| on(m, get_instance))
            .params(&[SERVICE, INSTANCE_KEY]),
        Route::post("/nacos/v1/ns/instance", "Register an instance", |m| on(m, register_instance))
            .params(&[SERVICE, INSTANCE_KEY, INSTANCE_FIELDS])
            .reply(Reply::Text),
        Route::delete("/nacos/v1/ns/instance", "Deregister an instance", |m| on(m, deregister_instance))
            .params(&[SERVICE, INSTANCE_KEY, &[Param::opt("ephemeral", Bool, "Ephemeral (default) or persistent")]])
            .reply(Reply::Text),
        Route::put("/nacos/v1/ns/instance", "Override weight, enabled and metadata", |m| on(m, update_instance))
            .params(&[SERVICE, INSTANCE_KEY, INSTANCE_FIELDS])
            .reply(Reply::Text),
        Route::patch("/nacos/v1/ns/instance", "Override only the fields given", |m| on(m, patch_instance))
            .params(&[SERVICE, INSTANCE_KEY, OVERRIDE_FIELDS])
            .reply(Reply::Text),
        Route::get("/nacos/v1/ns/instance/list", "A service's instances (and a UDP push subscription)", |m| {
            on(m, list_instances)
        })
        .params(&[
            SERVICE,
            &[
                Param::opt("clusters", Str, "Comma-separated clusters"),
                Param::opt("healthyOnly", Bool, "Only healthy instances"),
                Param::opt("udpPort", Port, "UDP port to push changes to"),
                Param::opt("clientIP", Ip, "IP to push changes to (default: the caller's)"),
                Param::opt("app", Str, "The subscriber's application"),
            ],
        ]),
        Route::put("/nacos/v1/ns/instance/beat", "Heartbeat of an ephemeral instance", |m| on(m, beat))
            .params(&[SERVICE, BEAT]),
        Route::get("/nacos/v1/ns/service", "One service", |m| on(m, get_service)).params(&[SERVICE]),
        Route::post("/nacos/v1/ns/service", "Create a persistent service", |m| on(m, create_service))
            .params(&[SERVICE, SERVICE_FIELDS])
            .reply(Reply::Text),
        Route::put("/nacos/v1/ns/service", "Update a service", |m| on(m, update_service))
            .params(&[
                SERVICE,
                &[
                    Param::req("protectThreshold", Num, "Protect threshold, 0 to 1"),
                    Param::opt("metadata", Str, "Metadata as a JSON object or `k1=v1,k2=v2`"),
                    Param::opt("selector", Str, "Selector as JSON"),
                ],
            ])
            .reply(Reply::Text),
        Route::delete("/nacos/v1/ns/service", "Delete an empty service", |m| on(m, delete_service))
            .params(&[SERVICE])
            .reply(Reply::Text),
        Route::get("/nacos/v1/ns/service/list", "Service names of a group", |m| on(m, list_services)).params(&[&[
            Param::req("pageNo", Int, "Page, from 1"),
            Param::req("pageSize", Int, "Items per page"),
            Param::opt("groupName", Str, "Group (default `DEFAULT_GROUP`)"),
            Param::opt("namespaceId", NAMESPACE, "Namespace (default `public`)"),
        ]]),
        Route::get("/nacos/v1/ns/service/names", "Grouped service names by namespace", |m| on(m, service_names))
            .params(SERVICE_NAMES),
        Route::post("/nacos/v1/ns/service/names", "Grouped service names by namespace", |m| on(m, service_names))
            .params(SERVICE_NAMES),
        Route::get("/nacos/v1/ns/service/subscribers", "Subscribers of a service (UDP and gRPC)", |m| {
            on(m, service_subscribers)
        })
        .params(&[SERVICE, PAGE]),
        Route::get("/nacos/v1/ns/catalog/services", "The console's service list", |m| on(m, catalog_services)).params(
            &[
                &[
                    Param::opt("namespaceId", NAMESPACE, "Namespace (default `public`)"),
                    Param::opt("groupNameParam", Str, "Only this group"),
                    Param::opt("serviceNameParam", Str, "Only names containing this"),
                ],
                PAGE,
            ],
        ),
        Route::get("/nacos/v1/ns/catalog/instances", "The console's instance list", |m| on(m, catalog_instances))
            .params(&[SERVICE, PAGE, &[Param::opt("clusterName", CLUSTER, "Only this cluster")]]),
        Route::put("/nacos/v1/ns/cluster", "Update a cluster's health check", |m| on(m, update_cluster))
            .params(&[
                SERVICE,
                &[
                    Param::req("clusterName", CLUSTER, "Cluster"),
                    Param::req("checkPort", Int, "Health-check port"),
                    Param::req("useInstancePort4Check", Bool, "Check the instance's own port"),
                    Param::req("healthChecker", Str, "Checker as JSON, `type` one of TCP, HTTP, MYSQL, NONE"),
                    Param::opt("metadata", Str, "Metadata as a JSON object or `k1=v1,k2=v2`"),
                ],
            ])
            .reply(Reply::Text),
        Route::put("/nacos/v1/ns/health", "Set a persistent instance's health", |m| on(m, update_health))
            .params(&[SERVICE, INSTANCE_KEY, HEALTH])
            .reply(Reply::Text),
        Route::put("/nacos/v1/ns/health/instance", "Set a persistent instance's health", |m| on(m, update_health))
            .params(&[SERVICE, INSTANCE_KEY, HEALTH])
            .reply(Reply::Text),
        Route::get("/nacos/v1/ns/health/server", "Naming health", |m| on(m, health_server)),
        Route::get("/nacos/v1/ns/health/checkers", "Health checker types", |m| on(m, health_checkers)),
        Route::get("/nacos/v1/ns/operator/metrics", "Status and counts", |m| on(m, metrics)).params(&[ONLY_STATUS]),
        Route::get("/nacos/v1/ns/ops/metrics", "Status and counts", |m| on(m, metrics)).params(&[ONLY_STATUS]),
        Route::get("/nacos/v1/ns/operator/switches", "Naming switches", |m| on(m, switches)),
        Route::put("/nacos/v1/ns/operator/switches", "Refused: switches are server configuration", |m| {
            on(m, update_switch)
        })
        .params(&[&[Param::req("entry", Str, "Switch name"), Param::opt("value", Str, "New value")]]),
        Route::get("/nacos/v1/ns/operator/push/state", "Push counts", |m| on(m, push_state)),
        Route::get("/nacos/v1/ns/operator/distro/client", "The member responsible for a v1 client", |m| {
            on(m, distro_client)
        })
        .params(&[&[Param::req("ip", Ip, "Client IP"), Param::req("port", Port, "Client port")]]),
    ],
};

const SERVICE_NAMES: &[&[Param]] = &[&[
    Param::opt("namespaceId", NAMESPACE, "Namespace (default: every namespace)"),
    Param::opt("expr", Str, "Only grouped names containing this"),
]];

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

/// UDP subscribers (v1 clients polling with `udpPort`) and gRPC ones (2.x clients), in Nacos'
/// `Subscriber` shape; a gRPC subscriber is named by its connection's client IP, port 0, as
/// Nacos names it.
async fn service_subscribers(State(s): State<ApiState>, p: Params) -> V1Result {
    let key = p.service_key()?;
    let page_no: usize = p.num("pageNo")?.unwrap_or(1);
    let page_size: usize = p.num("pageSize")?.unwrap_or(1000);
    let subscriber = |addr_str: String, agent: &str, app: &str, ip: String, port: u16, clusters: &str| {
        json!({
            "addrStr": addr_str,
            "agent": agent,
            "app": app,
            "ip": ip,
            "port": port,
            "namespaceId": key.namespace,
            "serviceName": key.grouped_name(),
            "cluster": clusters,
        })
    };
    let udp = s.push.subscribers_of(&key).into_iter().map(|sub| {
        subscriber(
            sub.addr.to_string(),
            &sub.agent,
            &sub.app,
            sub.addr.ip().to_string(),
            sub.addr.port(),
            &sub.clusters,
        )
    });
    let grpc = s.push.conn_subscribers_of(&key).into_iter().filter_map(|(id, clusters)| {
        let meta = &s.connections.get(&id)?.meta;
        let ip = if meta.client_ip.is_empty() { &meta.remote_ip } else { &meta.client_ip };
        Some(subscriber(ip.clone(), &meta.version, &meta.app_name, ip.clone(), 0, &clusters))
    });
    let subs: Vec<Value> = udp.chain(grpc).collect();
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
