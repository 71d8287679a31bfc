//! The HTTP Open API (axum): Nacos v1 and v2 naming and config, console health, admin.
//!
//! ```text
//!  router() ─┬─ naming_v1::TABLE     /nacos/v1/ns/...     plain `ok` / JSON, errors as text
//!            ├─ naming_v2::TABLE     /nacos/v2/ns/...     {code,message,data} envelope
//!            ├─ config_v1::TABLE     /nacos/v1/cs/...     configs, long-poll listener, history
//!            ├─ config_v2::TABLE     /nacos/v2/cs/...     configs, gray rules, history
//!            ├─ console::TABLE       /nacos/v1/console/health/*, the console's cluster and listener views
//!            ├─ ui::TABLE            /nacos/ the web console (embedded static files)
//!            ├─ namespaces::TABLE    /nacos/v1/console/namespaces, /nacos/v2/console/namespace
//!            ├─ auth::TABLE          /nacos/v1/auth/{login,users,roles,permissions}
//!            ├─ metrics::TABLE       /metrics, /nacos/actuator/prometheus (open, no credentials)
//!            ├─ admin::TABLE         /nacos/v2/core/loader/current (connections), cluster, Distro
//!            └─ openapi              /nacos/openapi.json, made from the same tables
//! ```
//! Each module declares its routes as one `openapi::Table` (method, path, parameters, access,
//! handler); the router and the OpenAPI document are both made from those tables.
//! Auth (`guard`): naming and config routes and the admin routes carry a layer that checks
//! credentials when client auth is on; namespace and account handlers always check.
//! Every handler reads parameters through `registry_proto::http::Params` (query string + form
//! body, shared with the sidecar).
//! Decoding and answer bodies that v1 and v2 share live in `naming.rs` and `configs.rs`; the
//! `*_v1`/`*_v2` modules hold the routes and thin handlers that add their version's envelope.
//! Failures become answers in [`error`] only.

pub mod admin;
pub mod auth;
pub mod config_v1;
pub mod config_v2;
mod configs;
pub mod console;
pub mod error;
pub mod forward;
pub mod guard;
pub mod metrics;
pub mod namespaces;
mod naming;
pub mod naming_v1;
pub mod naming_v2;
pub mod openapi;
pub mod ui;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;

use super::ApiState;
use openapi::{Guard, Table};

/// Tunables of the HTTP API.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest accepted request body in bytes; larger ones get 413.
    pub max_body_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { max_body_bytes: 12 * 1024 * 1024 }
    }
}

/// Every route table; `router()` serves them and `GET /nacos/openapi.json` describes them.
pub const TABLES: &[Table] = &[
    naming_v1::TABLE,
    naming_v2::TABLE,
    config_v1::TABLE,
    config_v2::TABLE,
    admin::TABLE,
    console::TABLE,
    namespaces::TABLE,
    auth::TABLE,
    ui::TABLE,
    metrics::TABLE,
    openapi::TABLE,
];

/// The whole HTTP API.
pub fn router(state: ApiState, config: &HttpConfig) -> Router {
    let client_api = middleware::from_fn_with_state(state.clone(), guard::client_api);
    let cluster_admin = middleware::from_fn_with_state(state.clone(), guard::cluster_admin);
    TABLES
        .iter()
        .fold(Router::new(), |router, table| {
            let routes = table.router();
            router.merge(match table.guard {
                Guard::None => routes,
                Guard::ClientApi => routes.route_layer(client_api.clone()),
                Guard::ClusterAdmin => routes.route_layer(cluster_admin.clone()),
            })
        })
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(middleware::from_fn_with_state(Arc::clone(&state.http_requests), crate::telemetry::requests::record))
        .with_state(state)
}
