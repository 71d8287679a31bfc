//! Operator-facing introspection: gRPC connections and Prometheus metrics.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value};

use super::error::v2_ok;
use crate::api::ApiState;

/// Admin routes.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/nacos/v2/core/loader/current", get(connections))
        .route("/nacos/v1/ns/operator/connections", get(connections))
        .route("/metrics", get(metrics))
        .route("/nacos/v2/core/cluster/raft", get(raft_status))
        .route("/nacos/v1/core/cluster/nodes", get(cluster_nodes))
        .route("/nacos/v2/core/cluster/node/list", get(cluster_nodes))
        .route("/nacos/v1/core/cluster/self", get(cluster_self))
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

/// This node's Raft view: id, leader, term, applied/last log index, members with roles.
async fn raft_status(State(s): State<ApiState>) -> Response {
    v2_ok(s.raft.status())
}

/// Nacos' member list shape: `{code, message, data: [{ip, port, state, address, extendInfo}]}`.
/// Addresses are the members' cluster addresses; `state` is `UP` for members of the current
/// membership (health probing of members arrives with member health checks).
async fn cluster_nodes(State(s): State<ApiState>) -> Response {
    let status = s.raft.status();
    let leader = status.members.iter().find(|m| m.role == "leader").map(|m| m.address.clone()).unwrap_or_default();
    let nodes: Vec<Value> = status
        .members
        .iter()
        .map(|m| {
            let (ip, port) = m.address.rsplit_once(':').unwrap_or((m.address.as_str(), "0"));
            serde_json::json!({
                "ip": ip,
                "port": port.parse::<u16>().unwrap_or(0),
                "address": m.address,
                "state": "UP",
                "failAccessCnt": 0,
                "abilities": {},
                "extendInfo": {
                    "nodeId": m.id,
                    "raftRole": m.role,
                    "raftMetaData": { "metaDataMap": { "registry": { "leader": leader, "term": status.term } } },
                },
            })
        })
        .collect();
    Json(serde_json::json!({ "code": 200, "message": Value::Null, "data": nodes })).into_response()
}

/// This member in Nacos' shape.
async fn cluster_self(State(s): State<ApiState>) -> Response {
    let status = s.raft.status();
    let me = status.members.iter().find(|m| m.id == status.node_id);
    Json(serde_json::json!({
        "code": 200,
        "message": Value::Null,
        "data": {
            "address": me.map(|m| m.address.clone()).unwrap_or_default(),
            "state": if status.ready { "UP" } else { "STARTING" },
            "extendInfo": { "nodeId": status.node_id, "raftRole": me.map_or("none", |m| m.role) },
        },
    }))
    .into_response()
}
