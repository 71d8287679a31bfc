//! Liveness and readiness, at the paths Nacos uses (`/nacos/v1/console/health/*`), which the
//! operator's probes and Kubernetes users already know.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::api::ApiState;

/// Console health routes.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/nacos/v1/console/health/liveness", get(liveness))
        .route("/nacos/v1/console/health/readiness", get(readiness))
}

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
