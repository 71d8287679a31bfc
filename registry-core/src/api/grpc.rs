//! The registry behind the Nacos gRPC 2.x SDK channel: the channel itself (connections,
//! handshake, detection, routing) is the shared crate's `registry_proto::server`; this module
//! is its [`Handler`]: naming and config requests, push acks, and the cleanup after every ended
//! connection (its instances, subscriptions and config listeners go).
//!
//! ```text
//!  registry_proto::server ─► GrpcState::handle ─► naming::handle ─► NamingService
//!                                               └► config::handle ─► ConfigService
//!                         ─► admit (auth, with [auth] enabled) ─► admission::admit ─► Auth
//!                         ─► on_response (acks) ─► PushHandle / ConfigNotifyHandle
//!                         ─► closed(id) ─► push + listeners dropped, RemoveClient
//! ```

mod admission;
pub mod config;
pub mod naming;

use std::sync::Arc;

use registry_proto::nacos::Payload;
use registry_proto::server::{Connection, Connections, Handler};
use registry_proto::wire::REQUEST_TYPES;
use registry_proto::wire::codes::ERR_NO_HANDLER;
use registry_proto::wire::frame::error_response;
use tokio_util::sync::CancellationToken;

use super::ReadinessProbe;
use crate::configs::ConfigService;
use crate::configs::notify::ConfigNotifyHandle;
use crate::naming::NamingService;
use crate::push::PushHandle;

/// Tunables of the gRPC channel (TOML section `[grpc]`).
pub use registry_proto::server::ChannelConfig as GrpcConfig;

/// What the gRPC handlers share.
#[derive(Clone)]
pub struct GrpcState {
    /// Naming domain.
    pub naming: NamingService,
    /// Config domain.
    pub configs: ConfigService,
    /// gRPC config listeners.
    pub config_notify: ConfigNotifyHandle,
    /// Push engine.
    pub push: PushHandle,
    /// Registered connections.
    pub connections: Arc<Connections>,
    /// Node readiness.
    pub ready: ReadinessProbe,
    /// Settings.
    pub config: Arc<GrpcConfig>,
    /// Authentication and authorization (requests are admitted by `admission`).
    pub auth: Arc<crate::auth::Auth>,
    /// Request counts and latencies (`/metrics`).
    pub requests: Arc<crate::telemetry::requests::RequestMetrics>,
    /// Request rates per namespace.
    pub namespace_rates: Arc<crate::limits::NamespaceRates>,
}

/// The connection registry; every connection that ends loses its push subscriptions, config
/// listeners and instances.
pub fn connections(
    naming: NamingService,
    push: PushHandle,
    config_notify: ConfigNotifyHandle,
    shutdown: CancellationToken,
) -> Arc<Connections> {
    let on_closed = move |id: String| {
        let (naming, push, config_notify) = (naming.clone(), push.clone(), config_notify.clone());
        async move {
            push.connection_closed(&id);
            config_notify.connection_closed(&id);
            if let Err(e) = naming.connection_closed(&id).await {
                tracing::warn!(%id, error = %e, "could not remove a closed connection's instances");
            }
        }
    };
    registry_proto::server::connections(on_closed, shutdown)
}

/// Serves the SDK channel on `listener` (plain or TLS) until `shutdown`.
pub async fn serve(
    listener: registry_proto::tls::Incoming,
    state: GrpcState,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let (connections, config) = (Arc::clone(&state.connections), Arc::clone(&state.config));
    registry_proto::server::serve(listener, Arc::new(state), connections, config, shutdown).await
}

/// The `resultCode` every response carries (0 when it cannot be read).
fn result_code(response: &Payload) -> i64 {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Code {
        result_code: i64,
    }
    let body = response.body.as_ref().map_or(&[][..], |b| b.value.as_slice());
    serde_json::from_slice::<Code>(body).map_or(0, |c| c.result_code)
}

impl Handler for GrpcState {
    fn handles(&self, kind: &str) -> bool {
        REQUEST_TYPES.contains(&kind)
    }

    fn ready(&self) -> bool {
        (self.ready)()
    }

    async fn handle(&self, conn: &Arc<Connection>, kind: &str, body: &[u8]) -> Payload {
        let started = std::time::Instant::now();
        let response = match naming::handle(self, conn, kind, body).await {
            Some(response) => response,
            None => match config::handle(self, conn, kind, body).await {
                Some(response) => response,
                None => error_response(ERR_NO_HANDLER, &format!("RequestHandler Not Found: {kind}")),
            },
        };
        self.requests.observe_grpc(kind, result_code(&response), started.elapsed().as_secs_f64());
        response
    }

    async fn admit(
        &self,
        conn: &Arc<Connection>,
        kind: &str,
        headers: &std::collections::HashMap<String, String>,
        body: &[u8],
    ) -> Result<(), Payload> {
        if let Some(refusal) = admission::over_rate(&self.namespace_rates, kind, body) {
            return Err(refusal);
        }
        admission::admit(&self.auth, conn, kind, headers, body).await
    }

    fn on_response(&self, conn_id: &str, kind: &str, request_id: &str) {
        match kind {
            "NotifySubscriberResponse" => self.push.ack(conn_id, request_id),
            "ConfigChangeNotifyResponse" => self.config_notify.ack(conn_id, request_id),
            // ClientDetectionResponse and ConnectResetResponse only prove liveness (recorded).
            _ => {}
        }
    }

    fn abilities(&self) -> serde_json::Value {
        serde_json::json!({ "supportPersistentInstanceByGrpc": true })
    }
}
