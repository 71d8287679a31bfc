//! Operator-facing introspection: gRPC connections and Prometheus metrics.

use std::fmt::Write;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value};

use super::error::v2_ok;
use crate::api::ApiState;

/// Admin routes.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/nacos/v2/core/loader/current", get(connections))
        .route("/nacos/v1/ns/operator/connections", get(connections))
        .route("/metrics", get(metrics))
}

/// Every registered gRPC connection with what its client told us (id, IPs, version, labels,
/// app, tenant, creation time), keyed by connection id as Nacos' loader endpoint does.
async fn connections(State(s): State<ApiState>) -> Response {
    let map: Map<String, Value> = s
        .connections
        .list()
        .into_iter()
        .map(|m| (m.connection_id.clone(), serde_json::to_value(m).unwrap_or(Value::Null)))
        .collect();
    v2_ok(map)
}

/// Prometheus text exposition.
async fn metrics(State(s): State<ApiState>) -> Response {
    let mut out = String::with_capacity(2048);
    let c = s.naming.counts();
    for (name, help, v) in [
        ("registry_services", "Services known to this node", c.services),
        ("registry_instances", "Instances known to this node", c.instances),
        ("registry_http_beat_clients", "v1 heartbeat clients tracked by this node", c.beat_clients),
        ("registry_grpc_connections", "Registered gRPC connections", s.connections.len()),
        ("registry_subscribers", "Subscriptions (UDP and gRPC)", s.push.subscriber_count()),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
    s.push.stats_ref().render_prometheus(&mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
