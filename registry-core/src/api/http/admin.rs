//! Operator-facing introspection and cluster administration: gRPC connections, Prometheus
//! metrics, Raft status and membership, Distro digests. Raft and Distro are reached only through
//! [`crate::consistency::Admin`]; this file only encodes.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value};

use super::error::v2_ok;
use crate::api::ApiState;
use crate::consistency::admin::MembershipError;
use registry_proto::http::Params;

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
        .route("/nacos/v2/core/cluster/members", axum::routing::post(add_member).delete(remove_member))
        .route("/nacos/v2/core/cluster/members/promote", axum::routing::post(promote_member))
        .route("/nacos/v2/core/distro/digest", get(distro_digest))
        .route("/nacos/v2/core/distro/diff", get(distro_diff))
}

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

/// Prometheus text exposition.
async fn metrics(State(s): State<ApiState>) -> Response {
    let mut out = String::with_capacity(2048);
    let c = s.naming.counts();
    let cluster = s.admin.counters();
    for (name, help, v) in [
        ("registry_services", "Services known to this node", c.services),
        ("registry_instances", "Instances known to this node", c.instances),
        ("registry_http_beat_clients", "v1 heartbeat clients tracked by this node", c.beat_clients),
        ("registry_grpc_connections", "Registered gRPC connections", s.connections.len()),
        ("registry_subscribers", "Subscriptions (UDP and gRPC)", s.push.subscriber_count()),
        ("registry_config_long_polls_held", "Config long-polls held waiting for a change", s.configs.hub().held()),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
    let _ = writeln!(
        out,
        "# HELP registry_beat_expirations_total v1 instances this node removed because their beats stopped\n# TYPE registry_beat_expirations_total counter\nregistry_beat_expirations_total {}",
        c.beat_expirations
    );
    let _ = writeln!(
        out,
        "# HELP registry_distro_disagreement_seconds How long some member's ephemeral view has differed from this one's (0: all agree)\n# TYPE registry_distro_disagreement_seconds gauge\nregistry_distro_disagreement_seconds {}",
        cluster.distro_disagreement_seconds
    );
    let _ = writeln!(
        out,
        "# HELP registry_distro_snapshot_loaded 1 once this member applied a peer's Distro snapshot at start (0: standalone, or no peer answered and it started from local data)\n# TYPE registry_distro_snapshot_loaded gauge\nregistry_distro_snapshot_loaded {}",
        u8::from(cluster.distro_snapshot_loaded)
    );
    let (grpc, v1) = (cluster.distro_copies_expired_grpc, cluster.distro_copies_expired_v1);
    let _ = writeln!(
        out,
        "# HELP registry_distro_copies_expired_total Copies of other members' clients removed because their owner stopped confirming them (gRPC: after distro.expire_after_ms; v1: after the delete timeout)\n# TYPE registry_distro_copies_expired_total counter\nregistry_distro_copies_expired_total{{client=\"grpc\"}} {grpc}\nregistry_distro_copies_expired_total{{client=\"v1\"}} {v1}"
    );
    let _ = writeln!(
        out,
        "# HELP registry_distro_sync_failures_total Distro batches to a peer that failed (kept and resent with back-off)\n# TYPE registry_distro_sync_failures_total counter\nregistry_distro_sync_failures_total {}",
        cluster.distro_sync_failures
    );
    for (name, help, v) in [
        (
            "registry_config_changes_notified_total",
            "Config changes the notifier handled (long-polls woken, gRPC listeners notified)",
            s.config_notify.changes_handled(),
        ),
        (
            "registry_config_notifications_total",
            "Config change notifications sent to gRPC listeners (first attempts)",
            s.config_notify.notifications(),
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
    }
    let w = cluster.writes;
    for (name, help, v) in [
        ("registry_raft_proposals_total", "Raft entries proposed by the write batcher", w.proposals),
        ("registry_raft_proposed_commands_total", "Commands carried by those entries", w.proposed_commands),
        ("registry_raft_log_flushes_total", "Durable commits (fsyncs) of the Raft log", w.log_flushes),
        ("registry_raft_log_flushed_entries_total", "Raft log entries carried by those commits", w.log_entries),
        (
            "registry_raft_refused_answers_total",
            "Raft answers not counted: a voter answered from a store other than the one its membership binds (lost data directory)",
            cluster.identity.refused_answers,
        ),
        (
            "registry_cluster_refused_requests_total",
            "Member-to-member requests refused because they carried another cluster's id",
            cluster.identity.refused_requests,
        ),
        (
            "registry_raft_writes_refused_no_quorum_total",
            "Persistent writes answered with an error because no quorum acknowledged the leader (refused, lost quorum in flight, or timed out)",
            cluster.quorum_failures,
        ),
        (
            "registry_raft_snapshot_installs_total",
            "Snapshots received from a leader and installed (a member too far behind for the log)",
            cluster.snapshot_installs,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
    }
    s.push.stats_ref().render_prometheus(&mut out);
    s.naming.health_checks().render_prometheus(&mut out);
    if let Some(dns) = &s.dns {
        dns.render_prometheus(&mut out);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
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
