//! gRPC naming handlers (spec §10): bare service names with a separate group; every failure is
//! an `ErrorResponse` carrying the Nacos code, which clients turn into an exception.

use registry_proto::nacos::Payload;
use serde_json::json;

use super::GrpcState;
use crate::model::ServiceKey;
use crate::model::key::DEFAULT_NAMESPACE;
use crate::naming::{NameForm, NamingError, ServiceInfo, parse_clusters};
use registry_proto::server::Connection;
use registry_proto::wire::codes::{ERR_BAD_GATEWAY, INVALID_PARAM, SERVER_ERROR};
use registry_proto::wire::frame::{error_response, ok_response};
use registry_proto::wire::naming::{
    BatchInstanceRequest, InstanceRequest, NamingBase, ServiceListRequest, ServiceQueryRequest, SubscribeServiceRequest,
};

/// A refused request: becomes an `ErrorResponse` with this code and message.
struct Reject {
    code: i32,
    message: String,
}

impl Reject {
    fn new(code: i32, message: &str) -> Self {
        Self { code, message: message.to_owned() }
    }

    fn into_payload(self) -> Payload {
        error_response(self.code, &self.message)
    }
}

fn key_of(base: &NamingBase) -> Result<ServiceKey, Reject> {
    base.service_key().map_err(|e| Reject::new(INVALID_PARAM, &e.to_string()))
}

fn naming_error(e: &NamingError) -> Reject {
    let code = match e {
        NamingError::Unavailable(_) => SERVER_ERROR,
        NamingError::InstanceNotFound => 404,
        NamingError::OverBudget { .. } => registry_proto::wire::codes::OVER_THRESHOLD,
        _ => INVALID_PARAM,
    };
    Reject::new(code, &e.to_string())
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Reject> {
    serde_json::from_slice(body).map_err(|e| Reject::new(ERR_BAD_GATEWAY, &format!("malformed request body: {e}")))
}

/// Handles a naming request of type `kind`; `None` when the type is not a naming type.
pub async fn handle(state: &GrpcState, conn: &std::sync::Arc<Connection>, kind: &str, body: &[u8]) -> Option<Payload> {
    let r = match kind {
        "InstanceRequest" => instance(state, conn, body, true).await,
        "PersistentInstanceRequest" => instance(state, conn, body, false).await,
        "BatchInstanceRequest" => batch(state, conn, body).await,
        "ServiceQueryRequest" => query(state, body),
        "SubscribeServiceRequest" => subscribe(state, conn, body),
        "ServiceListRequest" => list(state, body),
        _ => return None,
    };
    Some(r.unwrap_or_else(Reject::into_payload))
}

async fn instance(state: &GrpcState, conn: &Connection, body: &[u8], ephemeral: bool) -> Result<Payload, Reject> {
    let req: InstanceRequest = parse(body)?;
    let key = key_of(&req.base)?;
    let kind = req.kind.unwrap_or_default();
    let naming = &state.naming;
    match (kind.as_str(), ephemeral) {
        ("registerInstance", _) => {
            let wire = req.instance.ok_or_else(|| Reject::new(INVALID_PARAM, "instance is required"))?;
            let instance = wire.into_instance(ephemeral).map_err(|e| Reject::new(INVALID_PARAM, &e))?;
            let result = if ephemeral {
                naming.publish_for_connection(&key, &conn.meta.connection_id, vec![instance]).await
            } else {
                naming.register_instance(&key, instance).await
            };
            result.map_err(|e| naming_error(&e))?;
        }
        ("deregisterInstance", true) => {
            naming.unpublish_for_connection(&key, &conn.meta.connection_id).await.map_err(|e| naming_error(&e))?;
        }
        ("deregisterInstance", false) => {
            let wire = req.instance.ok_or_else(|| Reject::new(INVALID_PARAM, "instance is required"))?;
            let i = wire.into_instance(false).map_err(|e| Reject::new(INVALID_PARAM, &e))?;
            naming.deregister_instance(&key, &i.ip, i.port, false).await.map_err(|e| naming_error(&e))?;
        }
        (other, _) => {
            return Err(Reject::new(INVALID_PARAM, &format!("Unsupported request type {other}")));
        }
    }
    Ok(ok_response("InstanceResponse", json!({ "type": kind }), None))
}

async fn batch(state: &GrpcState, conn: &Connection, body: &[u8]) -> Result<Payload, Reject> {
    let req: BatchInstanceRequest = parse(body)?;
    let key = key_of(&req.base)?;
    let kind = req.kind.unwrap_or_default();
    if kind != "batchRegisterInstance" {
        return Err(Reject::new(INVALID_PARAM, &format!("Unsupported request type {kind}")));
    }
    let instances = req
        .instances
        .into_iter()
        .map(|w| w.into_instance(true))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Reject::new(INVALID_PARAM, &e))?;
    state
        .naming
        .publish_for_connection(&key, &conn.meta.connection_id, instances)
        .await
        .map_err(|e| naming_error(&e))?;
    Ok(ok_response("BatchInstanceResponse", json!({ "type": kind }), None))
}

fn service_info(state: &GrpcState, key: &ServiceKey, clusters: &str, healthy_only: bool) -> serde_json::Value {
    let selection = state.naming.query(key, &parse_clusters(clusters), healthy_only);
    serde_json::to_value(ServiceInfo::build(key, clusters, &selection, NameForm::Bare)).unwrap_or_default()
}

fn query(state: &GrpcState, body: &[u8]) -> Result<Payload, Reject> {
    let req: ServiceQueryRequest = parse(body)?;
    let key = key_of(&req.base)?;
    let clusters = req.cluster.unwrap_or_default();
    let info = service_info(state, &key, &clusters, req.healthy_only);
    Ok(ok_response("QueryServiceResponse", json!({ "serviceInfo": info }), None))
}

fn subscribe(state: &GrpcState, conn: &std::sync::Arc<Connection>, body: &[u8]) -> Result<Payload, Reject> {
    let req: SubscribeServiceRequest = parse(body)?;
    let key = key_of(&req.base)?;
    let clusters = req.clusters.unwrap_or_default();
    if req.subscribe {
        let sink: std::sync::Arc<dyn crate::push::PushSink> = conn.clone();
        state.push.subscribe_conn(&key, &clusters, sink);
    } else {
        state.push.unsubscribe_conn(&key, &conn.meta.connection_id);
    }
    let info = service_info(state, &key, &clusters, false);
    Ok(ok_response("SubscribeServiceResponse", json!({ "serviceInfo": info, "message": "success" }), None))
}

fn list(state: &GrpcState, body: &[u8]) -> Result<Payload, Reject> {
    let req: ServiceListRequest = parse(body)?;
    let namespace = req.base.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(DEFAULT_NAMESPACE);
    let group = req.base.group_name.as_deref().filter(|g| !g.is_empty()).unwrap_or(crate::model::key::DEFAULT_GROUP);
    let names: Vec<String> =
        state.naming.list_services(namespace, Some(group)).iter().map(|v| v.key.service.clone()).collect();
    let page_size = if req.page_size == 0 { 10 } else { req.page_size };
    let start = req.page_no.max(1).saturating_sub(1).saturating_mul(page_size);
    let page: Vec<&String> = names.iter().skip(start).take(page_size).collect();
    Ok(ok_response("ServiceListResponse", json!({ "count": names.len(), "serviceNames": page }), None))
}
