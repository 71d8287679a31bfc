//! The Nacos gRPC 2.x SDK channel (tonic), on the HTTP port + 1000.
//!
//! ```text
//!  TCP accept ─► TrackedIo (connection id; drop = transport closed)
//!     ├─ /Request/request ─────────► dispatch::unary ─► naming handlers ─► NamingService
//!     └─ /BiRequestStream/requestBiStream
//!          first message ConnectionSetupRequest ─► Connections::register (+ SetupAck)
//!          later messages: acks of server pushes ─► PushHandle::ack
//!          outbound: bounded queue ◄─ push engine (NotifySubscriberRequest), detection probes
//!  every end of a connection ─► cleanup: RemoveClient (instances) + push subscriptions dropped
//! ```

pub mod config;
pub mod connection;
pub mod dispatch;
pub mod naming;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use registry_proto::nacos::Payload;
use registry_proto::nacos::bi_request_stream_server::{BiRequestStream, BiRequestStreamServer};
use registry_proto::nacos::request_server::{Request, RequestServer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

use super::ReadinessProbe;
use crate::configs::ConfigService;
use crate::configs::notify::ConfigNotifyHandle;
use crate::naming::NamingService;
use crate::push::PushHandle;
use connection::{ConnectionMeta, Connections, TrackedIo, TransportInfo};
use registry_proto::wire::codes::ERR_UNREGISTERED;
use registry_proto::wire::frame::{error_response, open, payload};
use registry_proto::wire::naming::{Common, ConnectionSetup};

/// Tunables of the gRPC channel.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    /// Largest accepted message (bytes). Nacos: 10 MiB.
    pub max_message_bytes: usize,
    /// Server→client messages queued per connection; a full queue means the client is not
    /// reading, and its connection is closed (its client redoes on reconnect).
    pub outbound_queue: usize,
    /// A connection silent this long (no request, no stream message) gets a
    /// `ClientDetectionRequest` on its stream (ms). With `detect_timeout_ms` this sets how long a
    /// client that froze with its connection open (SIGSTOP, a hung VM, a silent network drop)
    /// stays listed: `idle_detect_after_ms + detect_timeout_ms` after its last message, 20 s by
    /// default, which is what Nacos clients expect (Nacos probes after 20 s idle). Live SDKs
    /// never get here: they send a health check after 5 s without traffic.
    pub idle_detect_after_ms: u64,
    /// How long the probe may go unanswered before the connection ends and its instances are
    /// removed (ms). Nacos waits 5 s and scans every 3 s, which made removal take up to 28 s;
    /// here the deadline is met within milliseconds, so 2 s is a comfortable margin for a live
    /// client's answer (a round trip plus a pause of its runtime).
    pub detect_timeout_ms: u64,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 10 * 1024 * 1024,
            outbound_queue: 1024,
            idle_detect_after_ms: 18_000,
            detect_timeout_ms: 2_000,
        }
    }
}

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
}

/// Abilities this server announces in `SetupAckRequest` (spec §9.4).
fn server_abilities() -> serde_json::Value {
    serde_json::json!({ "supportPersistentInstanceByGrpc": true })
}

/// Builds the connection registry and the task that cleans up after every ended connection.
pub fn connections(
    naming: NamingService,
    push: PushHandle,
    config_notify: ConfigNotifyHandle,
    shutdown: CancellationToken,
) -> Arc<Connections> {
    let (closed_tx, mut closed_rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        loop {
            let id = tokio::select! {
                () = shutdown.cancelled() => return,
                id = closed_rx.recv() => match id { Some(id) => id, None => return },
            };
            push.connection_closed(&id);
            config_notify.connection_closed(&id);
            if let Err(e) = naming.connection_closed(&id).await {
                tracing::warn!(%id, error = %e, "could not remove a closed connection's instances");
            }
        }
    });
    Connections::new(closed_tx)
}

#[tonic::async_trait]
impl Request for GrpcState {
    async fn request(&self, request: tonic::Request<Payload>) -> Result<tonic::Response<Payload>, Status> {
        let transport = request
            .extensions()
            .get::<TransportInfo>()
            .cloned()
            .ok_or_else(|| Status::internal("no transport info"))?;
        let response = dispatch::unary(self, &transport, request.get_ref()).await;
        Ok(tonic::Response::new(response))
    }
}

type OutStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Payload, Status>> + Send>>;

#[tonic::async_trait]
impl BiRequestStream for GrpcState {
    type requestBiStreamStream = OutStream;

    async fn request_bi_stream(
        &self,
        request: tonic::Request<Streaming<Payload>>,
    ) -> Result<tonic::Response<OutStream>, Status> {
        let transport = request
            .extensions()
            .get::<TransportInfo>()
            .cloned()
            .ok_or_else(|| Status::internal("no transport info"))?;
        let mut inbound = request.into_inner();
        // The first message must be the setup; anything else gets an error and an empty stream.
        let first = match inbound.message().await {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(tonic::Response::new(Box::pin(futures_util::stream::empty()))),
            Err(status) => return Err(status),
        };
        let setup = match open(&first) {
            Some(("ConnectionSetupRequest", body)) => serde_json::from_slice::<ConnectionSetup>(body).ok(),
            _ => None,
        };
        let Some(setup) = setup else {
            let err =
                error_response(ERR_UNREGISTERED, "the first message on the stream must be ConnectionSetupRequest");
            return Ok(tonic::Response::new(Box::pin(futures_util::stream::iter([Ok(err)]))));
        };
        let client_ip = first
            .metadata
            .as_ref()
            .map(|m| m.client_ip.clone())
            .filter(|ip| !ip.is_empty())
            .unwrap_or_else(|| transport.remote.ip().to_string());
        let meta = ConnectionMeta {
            connection_id: transport.id.to_string(),
            client_ip,
            remote_ip: transport.remote.ip().to_string(),
            remote_port: transport.remote.port(),
            version: setup.client_version.clone().unwrap_or_default(),
            app_name: setup.labels.get("AppName").cloned().unwrap_or_else(|| "-".to_owned()),
            labels: setup.labels.clone(),
            tenant: setup.tenant.clone().unwrap_or_default(),
            create_time: registry_proto::clock::now_millis(),
        };
        let (conn, rx) = self.connections.register(meta, self.config.outbound_queue);
        if setup.ability_table.is_some() {
            // Clients that negotiate abilities wait for this before they consider themselves
            // connected (spec §9.4 (c)); it must always be sent to them.
            let ack = serde_json::json!({ "headers": {}, "abilityTable": server_abilities(), "module": "internal" });
            let _ = conn.send(payload("SetupAckRequest", &ack));
        }

        let state = self.clone();
        let reader_conn = Arc::clone(&conn);
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    () = reader_conn.closed.cancelled() => break,
                    next = inbound.message() => next,
                };
                match next {
                    Ok(Some(p)) => {
                        reader_conn.touch(state.connections.now_ms());
                        on_stream_message(&state, &reader_conn.meta.connection_id, &p);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            state.connections.unregister_if_same(&reader_conn, "stream ended");
        });

        let closed = conn.closed.clone();
        let out = ReceiverStream::new(rx).map(|p| Ok(*p)).take_until(async move { closed.cancelled_owned().await });
        Ok(tonic::Response::new(Box::pin(out)))
    }
}

/// Messages clients send on the stream: responses to server requests.
fn on_stream_message(state: &GrpcState, conn_id: &str, p: &Payload) {
    let Some((kind, body)) = open(p) else { return };
    if kind == "NotifySubscriberResponse" || kind == "ConfigChangeNotifyResponse" {
        let common: Common = serde_json::from_slice(body).unwrap_or_default();
        if let Some(id) = common.request_id {
            if kind == "NotifySubscriberResponse" {
                state.push.ack(conn_id, &id);
            } else {
                state.config_notify.ack(conn_id, &id);
            }
        }
    }
    // ClientDetectionResponse and ConnectResetResponse only prove liveness (already recorded).
}

/// Serves the SDK channel on `listener` until `shutdown`; also runs idle-connection detection.
pub async fn serve(
    listener: TcpListener,
    state: GrpcState,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let detect = tokio::spawn(connection::run_detection(
        Arc::clone(&state.connections),
        state.config.idle_detect_after_ms,
        state.config.detect_timeout_ms,
        shutdown.clone(),
    ));
    let conns = Arc::clone(&state.connections);
    let incoming = TcpListenerStream::new(listener).filter_map(move |accepted| {
        let conns = Arc::clone(&conns);
        async move {
            match accepted.and_then(|io| TrackedIo::new(io, conns)) {
                Ok(io) => Some(Ok::<_, std::io::Error>(io)),
                Err(e) => {
                    tracing::debug!(error = %e, "grpc accept failed");
                    None
                }
            }
        }
    });
    let max = state.config.max_message_bytes;
    let conns_for_reset = Arc::clone(&state.connections);
    let result = tonic::transport::Server::builder()
        // Java clients ping every 6 min; accept that and probe idle peers ourselves.
        .http2_keepalive_interval(None)
        .add_service(RequestServer::new(state.clone()).max_decoding_message_size(max).max_encoding_message_size(max))
        .add_service(BiRequestStreamServer::new(state).max_decoding_message_size(max).max_encoding_message_size(max))
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.cancelled().await;
            let reset = conns_for_reset.reset_all();
            tracing::info!(connections = reset, "asked gRPC clients to reconnect elsewhere");
            // Give the resets a moment to be written before the streams end.
            tokio::time::sleep(Duration::from_millis(100)).await;
        })
        .await;
    detect.abort();
    result
}
