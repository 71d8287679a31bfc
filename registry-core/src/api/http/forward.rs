//! v1 ephemeral writes and beats go to the member responsible for their `ip:port` client
//! (spec §14.2, Nacos' `DistroFilter`), so one member runs that client's beat checks and expiry.
//!
//! A request is forwarded at most once (the receiver sees [`FORWARDED_HEADER`] and handles it
//! itself), with the same method, path and parameters; its answer is returned as it is. When
//! the responsible member cannot be reached in time, this member handles the request: the
//! client then has an owner here, and Distro's newest-revision rule keeps a single owner.

use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::ApiState;
use crate::consistency::admin::Responsible;
use registry_proto::contract::auth::{ACCESS_TOKEN, PASSWORD, USERNAME};
use registry_proto::http::Params;

/// Marks a request already forwarded by a member.
pub const FORWARDED_HEADER: &str = "x-registry-forwarded";

/// The `ip:port` tag of a v1 request: the parameters, or the `beat` JSON of a beat.
pub fn client_tag(p: &Params) -> Option<String> {
    let (mut ip, mut port) = (p.opt("ip").map(str::to_owned), p.opt("port").map(str::to_owned));
    if let Some(beat) = p.opt("beat").and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok()) {
        ip = ip.or_else(|| beat["ip"].as_str().map(str::to_owned));
        port = port.or_else(|| beat["port"].as_u64().map(|n| n.to_string()));
    }
    Some(format!("{}:{}", ip.filter(|i| !i.is_empty())?, port?))
}

/// Sends the request to the responsible member if that is another member; `None` when this
/// member must handle it (it is responsible, the request was already forwarded, or the
/// responsible member did not answer).
pub async fn to_responsible(s: &ApiState, p: &Params, method: Method, path: &str) -> Option<Response> {
    if p.headers.contains_key(FORWARDED_HEADER) {
        return None;
    }
    let tag = client_tag(p)?;
    let Responsible { node_id: node, http_addr } = s.admin.responsible_member(&tag)?;
    // Its HTTP address as the member table records it: members may use unrelated ports.
    let url = s.peer_http.url(&http_addr?, path);
    let mut request = s
        .peer_http
        .client()?
        .request(method, &url)
        .header(FORWARDED_HEADER, s.admin.node_id().to_string())
        .header(header::USER_AGENT, p.user_agent.as_str())
        .query(&p.pairs().collect::<Vec<_>>());
    // Credentials sent as headers go along: the responsible member checks them again.
    let identity = s.auth.identity_header().map(str::to_owned);
    for name in
        [header::AUTHORIZATION.as_str(), ACCESS_TOKEN, USERNAME, PASSWORD].into_iter().chain(identity.as_deref())
    {
        if let Some(v) = p.headers.get(name) {
            request = request.header(name, v.as_bytes());
        }
    }
    match request.send().await {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let content_type = answer.headers().get(reqwest::header::CONTENT_TYPE).cloned();
            let body = answer.bytes().await.ok()?;
            let mut response = (status, body).into_response();
            if let Some(ct) = content_type.and_then(|v| header::HeaderValue::from_bytes(v.as_bytes()).ok()) {
                response.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            Some(response)
        }
        Err(e) => {
            tracing::debug!(%tag, node, error = %e, "responsible member unreachable: handling the v1 request here");
            None
        }
    }
}
