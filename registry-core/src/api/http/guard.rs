//! The HTTP side of the one auth check (`crate::auth`): reads credentials the way Nacos does
//! (headers, then query/form parameters, parameters win; `Authorization: Bearer` too), names
//! the resource a request touches, and renders refusals as Nacos does: 403 with the message
//! (plain text on v1 paths, the `{code, message, data}` envelope on v2 paths).
//!
//! ```text
//!  client_api (layer on naming/config v1+v2)  ── [limits] namespace rate, then ──┐
//!                                                 only with [auth] enabled ───────┤
//!  cluster_admin (layer on admin routes)       ── only with [auth] enabled ───────┼─► Auth::check
//!  require() (console handlers: namespaces, users, roles, permissions) ──────────┘   always
//! ```

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use registry_proto::contract::auth::{ACCESS_TOKEN, PASSWORD, USERNAME};
use registry_proto::http::{Params, v1_error, v2_error};

use crate::api::ApiState;
use crate::auth::{Action, Auth, AuthError, Credentials, Identity, Resource};

/// Credentials of a request.
pub fn credentials(auth: &Auth, p: &Params) -> Credentials {
    let header = |name: &str| p.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let pick = |name: &str| p.opt(name).map(str::to_owned).or_else(|| header(name));
    let bearer = header("authorization").and_then(|v| v.strip_prefix("Bearer ").map(|t| t.trim().to_owned()));
    Credentials {
        access_token: pick(ACCESS_TOKEN).or(bearer),
        username: pick(USERNAME),
        password: p.values_raw(PASSWORD).map(str::to_owned).or_else(|| header(PASSWORD)),
        server_identity: auth.identity_header().and_then(header),
        ip: p.remote.map(|r| r.ip()),
    }
}

/// The refusal of a request to `path`, in its version's shape.
pub fn refusal(path: &str, e: &AuthError) -> Response {
    let status = match e {
        AuthError::Rejected(_) => StatusCode::BAD_REQUEST,
        AuthError::NoSecret | AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::FORBIDDEN,
    };
    if path.starts_with("/nacos/v2/") {
        v2_error(status, u32::from(status.as_u16()), status.canonical_reason().unwrap_or_default(), e.to_string())
    } else {
        v1_error(status, e.to_string())
    }
}

/// The answer to a request over its namespace's rate: 429 in its version's shape.
fn over_rate(path: &str, per_second: u32) -> Response {
    let status = StatusCode::TOO_MANY_REQUESTS;
    let message = format!("Tps Flow restricted: namespace over {per_second} requests per second");
    if path.starts_with("/nacos/v2/") {
        v2_error(status, u32::from(status.as_u16()), status.canonical_reason().unwrap_or_default(), message)
    } else {
        v1_error(status, message)
    }
}

/// Console handlers' check: `Err` is the answer to send.
pub async fn require(
    s: &ApiState,
    p: &Params,
    path: &str,
    resource: &Resource,
    action: Action,
) -> Result<Identity, Response> {
    s.auth.check(&credentials(&s.auth, p), resource, action).await.map_err(|e| refusal(path, &e))
}

/// Layer of the naming and config APIs: with client auth on, the caller needs the permission
/// for the resource the parameters name.
pub async fn client_api(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    admit(s, req, next, true, classify).await
}

/// Layer of the cluster administration routes: with client auth on, administrators and
/// members only. (Metrics are not among them: Prometheus scrapes without credentials.)
pub async fn cluster_admin(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    admit(s, req, next, false, |method, _, _| {
        (Resource::Admin, if method == Method::GET { Action::Read } else { Action::Write })
    })
    .await
}

/// What both layers do: with client auth on, read the parameters, ask `decide` which permission
/// the request needs, and run it only when the caller has it. Client-API requests (`rated`)
/// also count against their namespace's rate (`[limits]`) first.
async fn admit(
    s: ApiState,
    req: Request,
    next: Next,
    rated: bool,
    decide: impl FnOnce(&Method, &str, &Params) -> (Resource, Action),
) -> Response {
    let rated = rated && s.namespace_rates.enabled();
    if !s.auth.client_auth_enabled() && !rated {
        return next.run(req).await;
    }
    let (req, p) = match buffered(req).await {
        Ok(v) => v,
        Err(answer) => return answer,
    };
    let path = req.uri().path().to_owned();
    if rated {
        let namespace = ["namespaceId", "tenant", "namespace"].iter().find_map(|k| p.opt(k)).unwrap_or_default();
        if !s.namespace_rates.admit(namespace) {
            return over_rate(&path, s.namespace_rates.per_second());
        }
    }
    if !s.auth.client_auth_enabled() {
        return next.run(req).await;
    }
    let (resource, action) = decide(req.method(), &path, &p);
    match s.auth.check(&credentials(&s.auth, &p), &resource, action).await {
        Ok(_) => next.run(req).await,
        Err(e) => refusal(&path, &e),
    }
}

/// Reads the parameters and puts the body back for the handler.
async fn buffered(req: Request) -> Result<(Request, Params), Response> {
    let (parts, body) = req.into_parts();
    // Honours the router's body limit (`DefaultBodyLimit`), carried in the extensions.
    let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), &())
        .await
        .map_err(IntoResponse::into_response)?;
    let p = Params::from_request(Request::from_parts(parts.clone(), Body::from(bytes.clone())), &())
        .await
        .map_err(IntoResponse::into_response)?;
    Ok((Request::from_parts(parts, Body::from(bytes)), p))
}

/// The resource and action of a naming or config request (Nacos' `@Secured` on each
/// controller: reads are GETs and the config listener, everything else writes).
fn classify(method: &Method, path: &str, p: &Params) -> (Resource, Action) {
    let read = *method == Method::GET || path.ends_with("/configs/listener");
    let action = if read { Action::Read } else { Action::Write };
    if path.contains("/operator/") || path.contains("/ops/") {
        return (if read { Resource::Console } else { Resource::Admin }, action);
    }
    if path.contains("/cs/") {
        let tenant = p.opt("tenant").or_else(|| p.opt("namespaceId")).unwrap_or_default();
        let resource =
            Resource::config(tenant, p.opt("group").unwrap_or_default(), p.opt("dataId").unwrap_or_default());
        return (resource, action);
    }
    let name = p.opt("serviceName").unwrap_or_default();
    let (group, service) = match name.split_once("@@") {
        Some((g, s)) => (g, s),
        None => (p.opt("groupName").unwrap_or_default(), name),
    };
    (Resource::naming(p.namespace(), group, service), action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_their_resource_and_action() {
        let p = Params::from_pairs([("serviceName", "G@@orders"), ("namespaceId", "dev")]);
        assert_eq!(
            classify(&Method::POST, "/nacos/v1/ns/instance", &p),
            (Resource::Data("dev:G:naming/orders".into()), Action::Write)
        );
        let p = Params::from_pairs([("dataId", "a.yaml"), ("group", "G")]);
        assert_eq!(
            classify(&Method::GET, "/nacos/v1/cs/configs", &p),
            (Resource::Data("public:G:config/a.yaml".into()), Action::Read)
        );
        assert_eq!(
            classify(&Method::POST, "/nacos/v1/cs/configs/listener", &Params::default()),
            (Resource::Data("public:*:config/*".into()), Action::Read)
        );
        assert_eq!(
            classify(&Method::PUT, "/nacos/v1/ns/operator/switches", &Params::default()),
            (Resource::Admin, Action::Write)
        );
    }
}
