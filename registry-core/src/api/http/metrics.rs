//! Metric sections rendered outside `admin.rs`: appended to the `/metrics` exposition by a
//! middleware, so a subsystem adds its series here without touching the admin routes. Today:
//! the health checks of persistent instances (`naming::checker`).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::ApiState;

/// Largest exposition read back for appending (admin's is a few KiB).
const MAX_EXPOSITION_BYTES: usize = 16 * 1024 * 1024;

/// Appends the extra sections to a successful `GET /metrics`; passes everything else through.
pub(super) async fn append(State(s): State<ApiState>, request: Request, next: Next) -> Response {
    let wanted = request.method() == Method::GET && request.uri().path() == "/metrics";
    let response = next.run(request).await;
    if !wanted || !response.status().is_success() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_EXPOSITION_BYTES).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    s.naming.health_checks().render_prometheus(&mut text);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(text))
}
