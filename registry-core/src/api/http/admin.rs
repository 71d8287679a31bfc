//! Operator-facing introspection and cluster administration: gRPC connections, Raft status and membership, Distro digests. Raft and Distro are reached only through
//! [`crate::consistency::Admin`]; this file only encodes.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::on;
use serde_json::{Map, Value};

use super::error::v2_ok;
use super::openapi::Ty::{Int, Str};
use super::openapi::{Guard, NAMESPACE, Param, Route, Table};
use crate::api::ApiState;
use crate::consistency::admin::MembershipError;
use registry_proto::http::Params;

/// Admin routes.
pub const TABLE: Table = Table {
    tag: "cluster admin",
    guard: Guard::ClusterAdmin,
    routes: &[
        Route::get("/nacos/v2/core/loader/current", "gRPC connections of this member", |m| on(m, connections)),
        Route::get("/nacos/v1/ns/operator/connections", "gRPC connections of this member", |m| on(m, connections)),
        Route::get("/nacos/v2/core/cluster/raft", "Raft status of this member", |m| on(m, raft_status)),
        Route::get("/nacos/v1/core/cluster/nodes", "Cluster members", |m| on(m, cluster_nodes)),
        Route::get("/nacos/v2/core/cluster/node/list", "Cluster members", |m| on(m, cluster_nodes)),
        Route::get("/nacos/v1/core/cluster/self", "This member", |m| on(m, cluster_self)),
        Route::post("/nacos/v2/core/cluster/members", "Add a member as a Raft learner", |m| on(m, add_member)).params(
            &[&[Param::req("nodeId", Int, "Raft node id"), Param::req("address", Str, "The member's `host:httpPort`")]],
        ),
        Route::delete("/nacos/v2/core/cluster/members", "Remove a member", |m| on(m, remove_member)).params(&[NODE_ID]),
        Route::post("/nacos/v2/core/cluster/members/promote", "Promote a caught-up learner to voter", |m| {
            on(m, promote_member)
        })
        .params(&[NODE_ID]),
        Route::get("/nacos/v2/core/distro/digest", "Distro digest of this member, or of one service", |m| {
            on(m, distro_digest)
        })
        .params(&[&[
            Param::opt("serviceName", Str, "Only this service, bare or `group@@name`"),
            Param::opt("groupName", Str, "Group (default `DEFAULT_GROUP`)"),
            Param::opt("namespaceId", NAMESPACE, "Namespace (default `public`)"),
        ]]),
        Route::get("/nacos/v2/core/distro/diff", "A service's instances on every member", |m| on(m, distro_diff))
            .params(&[&[
                Param::req("serviceName", Str, "Service, bare or `group@@name`"),
                Param::opt("groupName", Str, "Group (default `DEFAULT_GROUP`)"),
                Param::opt("namespaceId", NAMESPACE, "Namespace (default `public`)"),
            ]]),
    ],
};

const NODE_ID: &[Param] = &[Param::req("nodeId", Int, "Raft node id")];

/// The service named by `serviceName` (`group@@name` or with `groupName`) and `namespaceId`.
fn service_param(p: &Params) -> Result<crate::model::ServiceKey, super::error::ApiError> {
    let name = p.required("serviceName")?;
    let (group, name) = match name.split_once("@@") {
        Some((g, n)) => (g, n),
        None => (p.opt("groupName").unwrap_or("DEFAULT_GROUP"), name),
    };
    let namespace = p.opt("namespaceId").filter(|n| !n.is_empty()).unwrap_or("public");
    crate::model::ServiceKey::new(namespace, group, name)
        .map_err(|e| super::error::ApiError::bad_request(e.to_string()))
}

/// This member's digest of its ephemeral data: equal on members whose views agree. With
/// `serviceName`: the digest and instances of that service as this member serves it.
async fn distro_digest(State(s): State<ApiState>, p: Params) -> Result<Response, super::error::V2> {
    if p.opt("serviceName").is_some() {
        let service = service_param(&p)?;
        return Ok(v2_ok(s.admin.distro_service(&service)));
    }
    let d = s.admin.distro_summary();
    Ok(v2_ok(serde_json::json!({
        "nodeId": s.admin.node_id(),
        "digest": d.digest,
        "clients": d.clients,
        "owned": d.owned,
        "copies": d.copies,
        "disagreementSeconds": d.disagreement_seconds,
    })))
}

/// What every member would return for a service, and what differs: `agree`, each member's
/// digest, and per member the instances it lacks or has beyond the others' union.
async fn distro_diff(State(s): State<ApiState>, p: Params) -> Result<Response, super::error::V2> {
    let service = service_param(&p)?;
    let views = s.admin.distro_service_everywhere(&service).await;
    let union: std::collections::BTreeSet<&String> =
        views.iter().filter_map(|v| v.as_ref().ok()).flat_map(|v| v.instances.iter()).collect();
    let digests: std::collections::BTreeSet<&str> =
        views.iter().filter_map(|v| v.as_ref().ok()).map(|v| v.digest.as_str()).collect();
    let members: Vec<Value> = views
        .iter()
        .map(|v| match v {
            Ok(v) => {
                let missing: Vec<&&String> = union.iter().filter(|i| !v.instances.contains(i)).collect();
                serde_json::json!({ "nodeId": v.node_id, "digest": v.digest,
                    "instances": v.instances.len(), "missing": missing })
            }
            Err((node, error)) => serde_json::json!({ "nodeId": node, "error": error }),
        })
        .collect();
    let all_answered = views.iter().all(Result::is_ok);
    Ok(v2_ok(serde_json::json!({
        "service": service.to_string(),
        "agree": all_answered && digests.len() <= 1,
        "members": members,
    })))
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

/// This node's Raft view: id, leader, term, applied/last log index, members with roles.
async fn raft_status(State(s): State<ApiState>) -> Response {
    v2_ok(s.admin.raft_status())
}

/// Nacos' member list shape: `{code, message, data: [{ip, port, state, address, extendInfo}]}`.
/// Addresses are the members' cluster addresses; `state` and `failAccessCnt` are what this
/// member's own calls to each found (`cluster.rs`): `UP`, `SUSPICIOUS` or `DOWN`.
async fn cluster_nodes(State(s): State<ApiState>) -> Response {
    let status = s.admin.raft_status();
    let leader = status.members.iter().find(|m| m.role == "leader").map(|m| m.address.clone()).unwrap_or_default();
    let nodes: Vec<Value> = status
        .members
        .iter()
        .map(|m| {
            let (ip, port) = m.address.rsplit_once(':').unwrap_or((m.address.as_str(), "0"));
            let health = s.admin.peer_health(m.id);
            serde_json::json!({
                "ip": ip,
                "port": port.parse::<u16>().unwrap_or(0),
                "address": m.address,
                "state": health.state,
                "failAccessCnt": health.failures_in_a_row,
                "abilities": {},
                "extendInfo": {
                    "nodeId": m.id,
                    "httpAddress": m.http_address,
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
    let status = s.admin.raft_status();
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

fn membership_answer(result: Result<(), MembershipError>) -> Response {
    match result {
        Ok(()) => v2_ok("ok"),
        Err(e) => super::error::membership_refusal(e),
    }
}

fn node_id(p: &Params) -> Result<u64, super::error::ApiError> {
    Ok(p.required_num("nodeId")?)
}

/// Adds a learner: `nodeId` and `address` as in `--members`: `host:httpPort` (cluster port
/// derived) or `host:httpPort:clusterPort`.
async fn add_member(State(s): State<ApiState>, p: Params) -> Result<Response, super::error::V2> {
    let id = node_id(&p)?;
    let address = p.required("address")?;
    let addr = crate::cluster::MemberAddr::parse(address).map_err(super::error::ApiError::bad_request)?;
    Ok(membership_answer(s.admin.add_learner(id, &addr).await))
}

/// Promotes a learner that has caught up.
async fn promote_member(State(s): State<ApiState>, p: Params) -> Result<Response, super::error::V2> {
    let id = node_id(&p)?;
    Ok(membership_answer(s.admin.promote(id).await))
}

/// Removes a member, refused when it would leave no reachable quorum.
async fn remove_member(State(s): State<ApiState>, p: Params) -> Result<Response, super::error::V2> {
    let id = node_id(&p)?;
    Ok(membership_answer(s.admin.remove_member(id).await))
}
