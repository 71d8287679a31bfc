//! Naming HTTP Open API v2 (`/nacos/v2/ns/...`, spec §6): the same operations as v1 with the
//! `{code, message, data}` envelope. Service names are bare with a separate `groupName`.

use axum::extract::State;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::on;
use serde_json::{Value, json};

use super::error::{V2, v2_ok};
use super::naming::{
    BEAT, HEALTH, INSTANCE_FIELDS, INSTANCE_KEY, ONLY_STATUS, OVERRIDE_FIELDS, PAGE, SERVICE, SERVICE_FIELDS,
    beat_reply, forward_ephemeral, healthy_param, instance_from_params, instance_key, metrics_body, override_patch,
    page, service_clusters, service_create_params, service_patch, switches_body,
};
use super::openapi::Ty::{Bool, Ip, Port, Str};
use super::openapi::{CLUSTER, Guard, NAMESPACE, Param, Reply, Route, Table};
use crate::api::ApiState;
use crate::model::InstanceOverride;
use crate::model::key::DEFAULT_GROUP;
use crate::naming::{InstanceInfo, NameForm, NamingError, ServiceInfo, parse_clusters};
use registry_proto::http::{ParamError, Params};

type V2Result = Result<Response, V2>;
type P = Result<Params, ParamError>;

/// Largest page of `/service/list`.
const MAX_PAGE_SIZE: usize = 500;

/// v2 naming routes.
pub const TABLE: Table = Table {
    tag: "naming v2",
    guard: Guard::ClientApi,
    routes: &[
        Route::get("/nacos/v2/ns/instance", "One instance of a service", |m| on(m, get_instance))
            .params(&[SERVICE, INSTANCE_KEY]),
        Route::post("/nacos/v2/ns/instance", "Register an instance", |m| on(m, register_instance)).params(&[
            SERVICE,
            INSTANCE_KEY,
            INSTANCE_FIELDS,
        ]),
        Route::delete("/nacos/v2/ns/instance", "Deregister an instance", |m| on(m, deregister_instance)).params(&[
            SERVICE,
            INSTANCE_KEY,
            &[Param::opt("ephemeral", Bool, "Ephemeral (default) or persistent")],
        ]),
        Route::put("/nacos/v2/ns/instance", "Override weight, enabled and metadata", |m| on(m, update_instance))
            .params(&[SERVICE, INSTANCE_KEY, INSTANCE_FIELDS]),
        Route::patch("/nacos/v2/ns/instance", "Override only the fields given", |m| on(m, patch_instance))
            .params(&[SERVICE, INSTANCE_KEY, OVERRIDE_FIELDS])
            .reply(Reply::Text),
        Route::get("/nacos/v2/ns/instance/list", "A service's instances (and a UDP push subscription)", |m| {
            on(m, list_instances)
        })
        .params(&[
            SERVICE,
            &[
                Param::opt("clusterName", Str, "Comma-separated clusters"),
                Param::opt("healthyOnly", Bool, "Only healthy instances"),
                Param::opt("port", Port, "UDP port to push changes to"),
                Param::opt("ip", Ip, "IP to push changes to (default: the caller's)"),
                Param::opt("app", Str, "The subscriber's application"),
            ],
        ]),
        Route::put("/nacos/v2/ns/instance/beat", "Heartbeat of an ephemeral instance", |m| on(m, beat))
            .params(&[SERVICE, BEAT]),
        Route::get("/nacos/v2/ns/service", "One service", |m| on(m, get_service)).params(&[SERVICE]),
        Route::post("/nacos/v2/ns/service", "Create a service", |m| on(m, create_service)).params(&[
            SERVICE,
            SERVICE_FIELDS,
            &[Param::opt("ephemeral", Bool, "Ephemeral service (default false)")],
        ]),
        Route::put("/nacos/v2/ns/service", "Update a service", |m| on(m, update_service))
            .params(&[SERVICE, SERVICE_FIELDS]),
        Route::delete("/nacos/v2/ns/service", "Delete an empty service", |m| on(m, delete_service)).params(&[SERVICE]),
        Route::get("/nacos/v2/ns/service/list", "Service names of a group", |m| on(m, list_services)).params(&[
            &[
                Param::opt("groupName", Str, "Group (default `DEFAULT_GROUP`)"),
                Param::opt("namespaceId", NAMESPACE, "Namespace (default `public`)"),
            ],
            PAGE,
        ]),
        Route::put("/nacos/v2/ns/health/instance", "Set a persistent instance's health", |m| on(m, update_health))
            .params(&[SERVICE, INSTANCE_KEY, HEALTH]),
        Route::get("/nacos/v2/ns/operator/metrics", "Status and counts", |m| on(m, metrics)).params(&[ONLY_STATUS]),
        Route::get("/nacos/v2/ns/ops/metrics", "Status and counts", |m| on(m, metrics)).params(&[ONLY_STATUS]),
        Route::get("/nacos/v2/ns/operator/switches", "Naming switches", |m| on(m, switches)),
        Route::get("/nacos/v2/ns/catalog/instances", "The console's instance list", |m| on(m, catalog_instances))
            .params(&[SERVICE, PAGE, &[Param::opt("clusterName", CLUSTER, "Only this cluster")]]),
    ],
};

async fn register_instance(State(s): State<ApiState>, p: P) -> V2Result {
    let p = p?;
    if let Some(answer) = forward_ephemeral(&s, &p, Method::POST, "/nacos/v2/ns/instance").await {
        return Ok(answer);
    }
    let key = p.service_key()?;
    s.naming.register_instance(&key, instance_from_params(&p, true)?).await?;
    Ok(v2_ok("ok"))
}

async fn deregister_instance(State(s): State<ApiState>, p: P) -> V2Result {
    let p = p?;
    if let Some(answer) = forward_ephemeral(&s, &p, Method::DELETE, "/nacos/v2/ns/instance").await {
        return Ok(answer);
    }
    let key = p.service_key()?;
    let ip = p.required("ip")?;
    let port: u16 = p.required_num("port")?;
    s.naming.deregister_instance(&key, ip, port, p.bool_or(&["ephemeral"], true)?).await?;
    Ok(v2_ok("ok"))
}

async fn update_instance(State(s): State<ApiState>, p: P) -> V2Result {
    let p = p?;
    let key = p.service_key()?;
    let i = instance_from_params(&p, true)?;
    let patch =
        InstanceOverride { weight: Some(i.weight), enabled: Some(i.enabled), metadata: Some(i.metadata.clone()) };
    s.naming.update_instance(&key, i.key(), patch).await?;
    Ok(v2_ok("ok"))
}

async fn patch_instance(State(s): State<ApiState>, p: P) -> V2Result {
    let p = p?;
    let key = p.service_key()?;
    s.naming.update_instance(&key, instance_key(&p)?, override_patch(&p)?).await?;
    Ok("ok".into_response())
}

async fn get_instance(State(s): State<ApiState>, p: P) -> V2Result {
    let p = p?;
    let key = p.service_key()?;
    let ip = p.required("ip")?;
    let port: u16 = p.required_num("port")?;
    let i = s.naming.get_instance(&key, ip, port, &p.cluster())?;
    Ok(v2_ok(json!({
        "serviceName": key.grouped_name(),
        "ip": i.ip,
        "port": i.port,
        "clusterName": i.cluster,
        "weight": i.weight,
        "healthy": i.healthy,
        "instanceId": i.display_id(&key),
        "metadata": i.metadata,
    })))
}

async fn list_instances(State(s): State<ApiState>, p: P) -> V2Result {
    let p = p?;
    let key = p.service_key()?;
    let clusters = p.opt_any(&["clusterName", "clusters"]).unwrap_or_default().to_owned();
    let healthy_only = p.bool_or(&["healthyOnly"], false)?;
    let udp_port: u16 = p.num("port")?.unwrap_or(0);
    if udp_port > 0 && crate::push::is_push_capable(&p.user_agent) {
        let ip = p.opt("ip").and_then(|ip| ip.parse().ok()).or(p.remote.map(|r| r.ip()));
        if let Some(ip) = ip {
            s.push.subscribe_udp(&key, std::net::SocketAddr::new(ip, udp_port), &clusters, &p.user_agent, p.opt("app"));
        }
    }
    let selection = s.naming.query(&key, &parse_clusters(&clusters), healthy_only);
    Ok(v2_ok(ServiceInfo::build(&key, &clusters, &selection, NameForm::Grouped)))
}

/// The beat answer is the raw object, not wrapped (as Nacos does).
async fn beat(State(s): State<ApiState>, p: P) -> V2Result {
    let p = p?;
    if let Some(answer) = super::forward::to_responsible(&s, &p, Method::PUT, "/nacos/v2/ns/instance/beat").await {
        return Ok(answer);
    }
    Ok(beat_reply(&s, &p).await?)
}

/// v2 `POST /service`: `ephemeral` defaults to false.
async fn create_service(State(s): State<ApiState>, p: P) -> V2Result {
    let p = p?;
    let key = p.service_key()?;
    let ephemeral = p.bool_or(&["ephemeral"], false)?;
    s.naming.create_service(&key, service_create_params(&p, ephemeral)?).await?;
    Ok(v2_ok("ok"))
}

async fn update_service(State(s): State<ApiState>, p: P) -> V2Result {
    let p = p?;
    let key = p.service_key()?;
    s.naming.update_service(&key, service_patch(&p)?).await?;
    Ok(v2_ok("ok"))
}

async fn delete_service(State(s): State<ApiState>, p: P) -> V2Result {
    let p = p?;
    let key = p.service_key()?;
    s.naming.delete_service(&key).await?;
    Ok(v2_ok("ok"))
}

async fn get_service(State(s): State<ApiState>, p: P) -> V2Result {
    let p = p?;
    let key = p.service_key()?;
    let view = s.naming.view(&key).ok_or_else(|| NamingError::ServiceNotFound {
        namespace: key.namespace.clone(),
        service: key.grouped_name(),
    })?;
    let metadata = view.metadata.clone().unwrap_or_else(|| crate::model::ServiceMetadata::new(view.ephemeral));
    let cluster_map: serde_json::Map<String, Value> = service_clusters(&view)
        .into_iter()
        .map(|(name, c)| {
            let v = json!({ "clusterName": name, "healthChecker": c.health_checker, "metadata": c.metadata });
            (name, v)
        })
        .collect();
    Ok(v2_ok(json!({
        "namespace": key.namespace,
        "serviceName": key.service,
        "groupName": key.group,
        "clusterMap": cluster_map,
        "metadata": metadata.metadata,
        "protectThreshold": metadata.protect_threshold,
        "selector": metadata.selector,
        "ephemeral": view.ephemeral,
    })))
}

async fn list_services(State(s): State<ApiState>, p: P) -> V2Result {
    let p = p?;
    let page_no: usize = p.num("pageNo")?.unwrap_or(1);
    let page_size: usize = p.num::<usize>("pageSize")?.unwrap_or(20).min(MAX_PAGE_SIZE);
    let group = p.opt("groupName").unwrap_or(DEFAULT_GROUP);
    let names: Vec<String> =
        s.naming.list_services(p.namespace(), Some(group)).iter().map(|v| v.key.service.clone()).collect();
    Ok(v2_ok(json!({ "count": names.len(), "services": page(&names, page_no, page_size) })))
}

async fn update_health(State(s): State<ApiState>, p: P) -> V2Result {
    let p = p?;
    let key = p.service_key()?;
    let healthy = healthy_param(&p)?;
    s.naming.update_health(&key, instance_key(&p)?, healthy).await?;
    Ok(v2_ok("ok"))
}

async fn metrics(State(s): State<ApiState>, p: P) -> V2Result {
    let p = p?;
    Ok(v2_ok(metrics_body(&s, p.bool_or(&["onlyStatus"], true)?)))
}

async fn switches(State(s): State<ApiState>) -> V2Result {
    Ok(v2_ok(switches_body(&s)))
}

async fn catalog_instances(State(s): State<ApiState>, p: P) -> V2Result {
    let p = p?;
    let key = p.service_key()?;
    let page_no: usize = p.num("pageNo")?.unwrap_or(1);
    let page_size: usize = p.num("pageSize")?.unwrap_or(100);
    let cluster = p.opt("clusterName");
    let view = s.naming.view(&key);
    let items: Vec<InstanceInfo> = view
        .iter()
        .flat_map(|v| v.instances().iter())
        .filter(|i| cluster.is_none_or(|c| i.cluster == c))
        .map(|i| InstanceInfo::of(&key, i))
        .collect();
    Ok(v2_ok(json!({ "count": items.len(), "list": page(&items, page_no, page_size) })))
}
