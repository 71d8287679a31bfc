//! The console's JSON: liveness and readiness at the paths Nacos uses
//! (`/nacos/v1/console/health/*`), which the operator's probes and Kubernetes users already
//! know, and the views the web console (`ui.rs`) needs beyond the Open API: the whole cluster
//! as every member reports it, and who listens to a config.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::on;
use registry_proto::contract::auth::ACCESS_TOKEN;
use registry_proto::http::{Params, v2_ok};
use serde_json::{Value, json};

use super::configs::{CONFIG_KEY, config_key};
use super::error::V2;
use super::guard::require;
use super::openapi::{Guard, Reply, Route, Table};
use crate::api::ApiState;
use crate::auth::{Action, Resource};

const CLUSTER: &str = "/nacos/v1/console/cluster";
const LISTENERS: &str = "/nacos/v1/console/configs/listeners";
/// Longest wait for one member's answer to the cluster view.
const MEMBER_TIMEOUT: Duration = Duration::from_secs(2);

/// Console routes: health probes, and the cluster and listener views.
pub const TABLE: Table = Table {
    tag: "console",
    guard: Guard::None,
    routes: &[
        Route::get("/nacos/v1/console/health/liveness", "Liveness probe", |m| on(m, liveness)).reply(Reply::Text),
        Route::get("/nacos/v1/console/health/readiness", "Readiness probe: 503 until the store has caught up", |m| {
            on(m, readiness)
        })
        .reply(Reply::Text),
        Route::get(CLUSTER, "Every member's Raft and Distro view", |m| on(m, cluster)).checked(),
        Route::get(LISTENERS, "Connections listening to a config", |m| on(m, listeners))
            .checked()
            .params(&[CONFIG_KEY]),
    ],
};

async fn liveness() -> impl IntoResponse {
    (StatusCode::OK, "OK")
}

/// 200 only once this member has applied up to the leader's commit index as of this request
/// and loaded its Distro snapshot (see `Admin::caught_up`), so a rolling restart waits for real
/// recovery.
async fn readiness(State(state): State<ApiState>) -> impl IntoResponse {
    if state.admin.caught_up().await {
        (StatusCode::OK, "OK")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: the store has not caught up yet")
    }
}

/// Every member as it reports itself: its Raft view (`/nacos/v2/core/cluster/raft`) and Distro
/// digest (`/nacos/v2/core/distro/digest`), asked over HTTP with the caller's token; `lag` is
/// how many entries a member's applied index trails the leader's last log index, and
/// `distroAgree` whether every member that answered has the same digest.
async fn cluster(State(s): State<ApiState>, p: Params) -> Response {
    if let Err(r) = require(&s, &p, CLUSTER, &Resource::Console, Action::Read).await {
        return r;
    }
    let token = p
        .opt(ACCESS_TOKEN)
        .map(str::to_owned)
        .or_else(|| p.headers.get(ACCESS_TOKEN).and_then(|v| v.to_str().ok()).map(str::to_owned));
    let status = s.admin.raft_status();
    let mut members = Vec::with_capacity(status.members.len());
    for m in &status.members {
        let (raft, distro) = if m.id == status.node_id {
            let d = s.admin.distro_summary();
            (
                Ok(serde_json::to_value(s.admin.raft_status()).unwrap_or(Value::Null)),
                Ok(json!({ "digest": d.digest, "clients": d.clients, "disagreementSeconds": d.disagreement_seconds })),
            )
        } else {
            let url = |path: &str| s.peer_http.url(&m.http_address, path);
            let raft = member_get(&s, &url("/nacos/v2/core/cluster/raft"), token.as_deref()).await;
            let distro = member_get(&s, &url("/nacos/v2/core/distro/digest"), token.as_deref()).await;
            (raft, distro)
        };
        members.push((m, raft, distro));
    }
    let leader_last_log = members
        .iter()
        .filter(|(m, _, _)| m.role == "leader")
        .find_map(|(_, r, _)| r.as_ref().ok().and_then(|r| r["lastLog"].as_u64()))
        .unwrap_or(status.last_log);
    let digests: std::collections::BTreeSet<String> = members
        .iter()
        .filter_map(|(_, _, d)| d.as_ref().ok().and_then(|d| d["digest"].as_str().map(str::to_owned)))
        .collect();
    let all_answered = members.iter().all(|(_, r, d)| r.is_ok() && d.is_ok());
    let rows: Vec<Value> = members
        .iter()
        .map(|(m, raft, distro)| {
            let applied = raft.as_ref().ok().and_then(|r| r["lastApplied"].as_u64());
            json!({
                "nodeId": m.id,
                "address": m.address,
                "httpAddress": m.http_address,
                "role": m.role,
                "state": s.admin.peer_health(m.id).state,
                "term": raft.as_ref().ok().map(|r| r["term"].clone()),
                "lastApplied": applied,
                "lastLog": raft.as_ref().ok().map(|r| r["lastLog"].clone()),
                "lag": applied.map(|a| leader_last_log.saturating_sub(a)),
                "ready": raft.as_ref().ok().map(|r| r["ready"].clone()),
                "digest": distro.as_ref().ok().map(|d| d["digest"].clone()),
                "clients": distro.as_ref().ok().map(|d| d["clients"].clone()),
                "error": raft.as_ref().err().or(distro.as_ref().err()),
            })
        })
        .collect();
    v2_ok(json!({
        "nodeId": status.node_id,
        "leader": status.leader,
        "term": status.term,
        "clusterId": status.cluster_id,
        "standalone": s.admin.is_standalone(),
        "distroAgree": all_answered && digests.len() <= 1,
        "members": rows,
    }))
}

/// One member's admin answer's `data`, or why there is none.
async fn member_get(s: &ApiState, url: &str, token: Option<&str>) -> Result<Value, String> {
    let client = s.peer_http.client().ok_or("no HTTP client for members (client-facing TLS without tls.ca)")?;
    let mut request = client.get(url).timeout(MEMBER_TIMEOUT);
    if let Some(t) = token {
        request = request.header(ACCESS_TOKEN, t);
    }
    let answer = request.send().await.map_err(|e| e.to_string())?;
    if !answer.status().is_success() {
        return Err(format!("HTTP {}", answer.status()));
    }
    let body: Value = answer.json().await.map_err(|e| e.to_string())?;
    Ok(body["data"].clone())
}

/// The gRPC connections listening to one config (`dataId`, `group`, `tenant`), with what their
/// clients reported, and how many long-polls this member holds in all.
async fn listeners(State(s): State<ApiState>, p: Params) -> Result<Response, V2> {
    if let Err(r) = require(&s, &p, LISTENERS, &Resource::Console, Action::Read).await {
        return Ok(r);
    }
    let key = config_key(&p)?;
    let conns = s.connections.list();
    let rows: Vec<Value> = s
        .config_notify
        .listeners_of(&key)
        .into_iter()
        .map(|id| {
            let meta = conns.iter().find(|c| c.connection_id == id);
            json!({
                "connectionId": id,
                "clientIp": meta.map(|m| m.client_ip.clone()),
                "appName": meta.map(|m| m.app_name.clone()),
                "version": meta.map(|m| m.version.clone()),
            })
        })
        .collect();
    Ok(v2_ok(json!({ "listeners": rows, "longPollsHeld": s.configs.hub().held() })))
}
