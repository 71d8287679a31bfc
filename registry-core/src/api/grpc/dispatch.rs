//! Routes a unary payload on `metadata.type` (spec §9.4 step 6): ServerCheck at any time; then
//! a handler must exist (else 302), the connection must be registered (else 301). A request is
//! never answered with a transport error: clients get a typed response or an `ErrorResponse`.

use registry_proto::nacos::Payload;
use serde_json::json;

use super::GrpcState;
use super::connection::TransportInfo;
use registry_proto::wire::codes::{ERR_NO_HANDLER, ERR_STARTING, ERR_UNREGISTERED};
use registry_proto::wire::frame::{error_response, ok_response, open};

/// Request types this server handles (besides ServerCheck).
const HANDLED: &[&str] = &[
    "HealthCheckRequest",
    "InstanceRequest",
    "PersistentInstanceRequest",
    "BatchInstanceRequest",
    "ServiceQueryRequest",
    "SubscribeServiceRequest",
    "ServiceListRequest",
    "ConfigQueryRequest",
    "ConfigPublishRequest",
    "ConfigRemoveRequest",
    "ConfigBatchListenRequest",
];

/// Answers one unary request.
pub async fn unary(state: &GrpcState, transport: &TransportInfo, request: &Payload) -> Payload {
    let Some((kind, body)) = open(request) else {
        return error_response(ERR_NO_HANDLER, "RequestHandler Not Found: the payload has no metadata type");
    };
    if kind == "ServerCheckRequest" {
        return ok_response(
            "ServerCheckResponse",
            json!({ "connectionId": &*transport.id, "supportAbilityNegotiation": true }),
            None,
        );
    }
    if !HANDLED.contains(&kind) {
        return error_response(ERR_NO_HANDLER, &format!("RequestHandler Not Found: {kind}"));
    }
    if !(state.ready)() {
        return error_response(ERR_STARTING, "Server is starting,please try later.");
    }
    let Some(conn) = state.connections.get(&transport.id) else {
        return error_response(ERR_UNREGISTERED, "Connection is unregistered.");
    };
    conn.touch(state.connections.now_ms());
    if kind == "HealthCheckRequest" {
        return ok_response("HealthCheckResponse", json!({}), None);
    }
    if let Some(response) = super::naming::handle(state, &conn, kind, body).await {
        return response;
    }
    match super::config::handle(state, &conn, kind, body).await {
        Some(response) => response,
        None => error_response(ERR_NO_HANDLER, &format!("RequestHandler Not Found: {kind}")),
    }
}
