//! The admin port: `/live`, `/ready`, `/metrics` and the preStop hook's `/drain`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use registry_proto::contract::sidecar::DRAIN_PATH;
use registry_proto::server::Connections;

use crate::cache::Cache;
use crate::declare::Declaration;
use crate::local::Local;
use crate::metrics::{Live, Stats};

/// What the admin handlers read.
#[derive(Clone)]
pub struct Admin {
    /// The local API (upstream state).
    pub local: Arc<Local>,
    /// Local SDK connections.
    pub connections: Arc<Connections>,
    /// The failover cache.
    pub cache: Arc<Cache>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// The declared instance, if any.
    pub declaration: Option<Arc<Declaration>>,
}

impl Admin {
    fn live_gauges(&self) -> Live {
        let (upstream_sessions, upstream_connects) = self.local.upstream().sessions();
        Live {
            upstream_connected: self.local.upstream().connected(),
            upstream_sessions,
            upstream_connects,
            local_connections: self.connections.len(),
            cached: self.cache.counts(),
        }
    }
}

/// The routes.
pub fn router(admin: Admin) -> Router {
    Router::new()
        .route("/live", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route(DRAIN_PATH, get(drain))
        .with_state(admin)
}

/// Ready when local reads can be answered: a connected upstream, or a cache to answer from.
async fn ready(State(admin): State<Admin>) -> impl IntoResponse {
    let live = admin.live_gauges();
    if live.upstream_connected > 0 || live.cached != (0, 0) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no registry reachable and nothing cached")
    }
}

async fn metrics(State(admin): State<Admin>) -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], admin.stats.render(admin.live_gauges()))
}

/// Answers once the declared instance is withdrawn (after the drain window).
async fn drain(State(admin): State<Admin>) -> impl IntoResponse {
    if let Some(declaration) = &admin.declaration {
        declaration.drain().await;
    }
    "drained"
}
