//! The server half of the Nacos gRPC 2.x SDK channel (tonic), for anything that serves Nacos
//! SDKs: the registry on its gRPC port, the sidecar on localhost. The kit owns connections,
//! the setup handshake, idle detection, resets on shutdown and routing by `metadata.type`; a
//! [`Handler`] answers the requests and hears of acks; [`connections`] is told of every ended
//! connection.
//!
//! ```text
//!  accept (+ TLS handshake, crate::tls) ─► TrackedIo (connection id; drop = transport closed)
//!     ├─ /Request/request ─► ServerCheck | 302 unknown type | 300 not ready | 301 unregistered
//!     │                      | HealthCheck | Handler::handle
//!     └─ /BiRequestStream/requestBiStream
//!          first message ConnectionSetupRequest ─► Connections::register (+ SetupAck)
//!          later messages: responses to server requests ─► Handler::on_response
//!          outbound: bounded queue ◄─ pushes (PushSink), detection probes, resets
//!  every end of a connection ─► the `on_closed` given to [`connections`]
//! ```

mod connection;
mod rate;
mod sink;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

pub use connection::{
    Connection, ConnectionMeta, Connections, DetectPass, OnClosed, TrackedIo, TransportInfo, run_detection,
};
pub use rate::RateWindow;
pub use sink::{PushSink, SinkError};

use crate::nacos::Payload;
use crate::nacos::bi_request_stream_server::{BiRequestStream, BiRequestStreamServer};
use crate::nacos::request_server::{Request, RequestServer};
use crate::tls::Incoming;
use crate::wire::codes::{ERR_NO_HANDLER, ERR_STARTING, ERR_UNREGISTERED, OVER_THRESHOLD};
use crate::wire::frame::{error_response, ok_response, open, payload};
use crate::wire::naming::{Common, ConnectionSetup};

/// Tunables of the channel.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelConfig {
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
    /// Most registered connections; a setup beyond it is refused with `OVER_THRESHOLD` and the
    /// stream ends (the client reconnects, possibly to another member). 0: no limit.
    pub max_connections: usize,
    /// Requests per second one connection may make; beyond it a request is answered with
    /// `OVER_THRESHOLD` (Nacos' TPS control answer) and other connections are unaffected.
    /// 0 (the default, as in Nacos): no limit.
    pub max_requests_per_second: u32,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 10 * 1024 * 1024,
            outbound_queue: 1024,
            idle_detect_after_ms: 18_000,
            detect_timeout_ms: 2_000,
            max_connections: 20_000,
            max_requests_per_second: 0,
        }
    }
}

/// Headers of a payload without metadata.
static EMPTY_HEADERS: std::sync::LazyLock<std::collections::HashMap<String, String>> =
    std::sync::LazyLock::new(std::collections::HashMap::new);

/// What a server puts behind the channel.
pub trait Handler: Send + Sync + 'static {
    /// Whether it answers requests of this type (others get `ErrorResponse` 302).
    fn handles(&self, kind: &str) -> bool;

    /// Whether requests may be served now (else `ErrorResponse` 300, "starting").
    fn ready(&self) -> bool;

    /// Answers a request of a registered connection; never a transport error: a typed
    /// response or an `ErrorResponse`.
    fn handle(&self, conn: &Arc<Connection>, kind: &str, body: &[u8]) -> impl Future<Output = Payload> + Send;

    /// Admission of a request before [`Self::handle`], from its metadata headers (where Nacos
    /// clients put credentials, e.g. `accessToken`) and body: `Err` is the answer instead.
    /// Admits everything by default.
    fn admit(
        &self,
        conn: &Arc<Connection>,
        kind: &str,
        headers: &std::collections::HashMap<String, String>,
        body: &[u8],
    ) -> impl Future<Output = Result<(), Payload>> + Send {
        let _ = (conn, kind, headers, body);
        std::future::ready(Ok(()))
    }

    /// A client's response on the stream to a server request (`NotifySubscriberResponse`,
    /// `ConfigChangeNotifyResponse`, ...) with its `requestId`: an ack.
    fn on_response(&self, conn_id: &str, kind: &str, request_id: &str);

    /// Abilities announced in `SetupAckRequest` (spec §9.4).
    fn abilities(&self) -> Value {
        json!({})
    }
}

/// The connection registry, with the task that runs `on_closed` for every connection that
/// ends (transport closed, stream ended, detection failed, closed as slow), one at a time.
pub fn connections<F, Fut>(on_closed: F, shutdown: CancellationToken) -> Arc<Connections>
where
    F: Fn(String) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    // Unbounded, yet holding at most the connection limit: ids waiting here count against it
    // (`Connections::occupied`).
    let (closed_tx, mut closed_rx) = mpsc::unbounded_channel::<String>();
    let connections = Connections::new(closed_tx);
    let closing = connections.closing_counter();
    tokio::spawn(async move {
        loop {
            let id = tokio::select! {
                () = shutdown.cancelled() => return,
                id = closed_rx.recv() => match id { Some(id) => id, None => return },
            };
            on_closed(id).await;
            closing.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    connections
}

/// The tonic services of the channel.
struct Channel<H> {
    handler: Arc<H>,
    connections: Arc<Connections>,
    config: Arc<ChannelConfig>,
}

impl<H> Clone for Channel<H> {
    fn clone(&self) -> Self {
        Self {
            handler: Arc::clone(&self.handler),
            connections: Arc::clone(&self.connections),
            config: Arc::clone(&self.config),
        }
    }
}

impl<H: Handler> Channel<H> {
    /// Routes a unary payload on `metadata.type` (spec §9.4 step 6): ServerCheck at any time;
    /// then a handler must exist (else 302), the node be ready (else 300), the connection be
    /// registered (else 301).
    async fn unary(&self, transport: &TransportInfo, request: &Payload) -> Payload {
        let Some((kind, body)) = open(request) else {
            return error_response(ERR_NO_HANDLER, "RequestHandler Not Found: the payload has no metadata type");
        };
        if kind == "ServerCheckRequest" {
            return ok_response(
                "ServerCheckResponse",
                json!({ "connectionId": &*transport.id, "supportAbilityNegotiation": true }),
                None,
            );
        }
        if kind != "HealthCheckRequest" && !self.handler.handles(kind) {
            return error_response(ERR_NO_HANDLER, &format!("RequestHandler Not Found: {kind}"));
        }
        if !self.handler.ready() {
            return error_response(ERR_STARTING, "Server is starting,please try later.");
        }
        let Some(conn) = self.connections.get(&transport.id) else {
            return error_response(ERR_UNREGISTERED, "Connection is unregistered.");
        };
        let now = self.connections.now_ms();
        conn.touch(now);
        if kind == "HealthCheckRequest" {
            return ok_response("HealthCheckResponse", json!({}), None);
        }
        if !conn.admit_rate(now, self.config.max_requests_per_second) {
            self.connections.count_rate_limited();
            let limit = self.config.max_requests_per_second;
            return error_response(OVER_THRESHOLD, &format!("Tps Flow restricted: over {limit} requests per second"));
        }
        let headers = request.metadata.as_ref().map(|m| &m.headers);
        if let Err(refusal) = self.handler.admit(&conn, kind, headers.unwrap_or(&EMPTY_HEADERS), body).await {
            return refusal;
        }
        self.handler.handle(&conn, kind, body).await
    }

    /// A message a client sent on the stream: a response to a server request.
    fn on_stream_message(&self, conn_id: &str, p: &Payload) {
        let Some((kind, body)) = open(p) else { return };
        if let Some(id) = serde_json::from_slice::<Common>(body).ok().and_then(|c| c.request_id) {
            self.handler.on_response(conn_id, kind, &id);
        }
    }
}

fn transport_of<T>(request: &tonic::Request<T>) -> Result<TransportInfo, Status> {
    request.extensions().get::<TransportInfo>().cloned().ok_or_else(|| Status::internal("no transport info"))
}

#[tonic::async_trait]
impl<H: Handler> Request for Channel<H> {
    async fn request(&self, request: tonic::Request<Payload>) -> Result<tonic::Response<Payload>, Status> {
        let transport = transport_of(&request)?;
        Ok(tonic::Response::new(self.unary(&transport, request.get_ref()).await))
    }
}

type OutStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Payload, Status>> + Send>>;

#[tonic::async_trait]
impl<H: Handler> BiRequestStream for Channel<H> {
    type requestBiStreamStream = OutStream;

    async fn request_bi_stream(
        &self,
        request: tonic::Request<Streaming<Payload>>,
    ) -> Result<tonic::Response<OutStream>, Status> {
        let transport = transport_of(&request)?;
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
        let max = self.config.max_connections;
        if max > 0 && self.connections.occupied() >= max && self.connections.get(&transport.id).is_none() {
            self.connections.count_refused_setup();
            let err = error_response(OVER_THRESHOLD, &format!("too many connections: this server holds at most {max}"));
            return Ok(tonic::Response::new(Box::pin(futures_util::stream::iter([Ok(err)]))));
        }
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
            create_time: crate::clock::now_millis(),
        };
        let (conn, rx) = self.connections.register(meta, self.config.outbound_queue);
        if setup.ability_table.is_some() {
            // Clients that negotiate abilities wait for this before they consider themselves
            // connected (spec §9.4 (c)); it must always be sent to them.
            let ack = json!({ "headers": {}, "abilityTable": self.handler.abilities(), "module": "internal" });
            let _ = conn.send(payload("SetupAckRequest", &ack));
        }

        let channel = self.clone();
        let reader_conn = Arc::clone(&conn);
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    () = reader_conn.closed.cancelled() => break,
                    next = inbound.message() => next,
                };
                match next {
                    Ok(Some(p)) => {
                        reader_conn.touch(channel.connections.now_ms());
                        channel.on_stream_message(&reader_conn.meta.connection_id, &p);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            channel.connections.unregister_if_same(&reader_conn, "stream ended");
        });

        let closed = conn.closed.clone();
        let out = ReceiverStream::new(rx).map(|p| Ok(*p)).take_until(async move { closed.cancelled_owned().await });
        Ok(tonic::Response::new(Box::pin(out)))
    }
}

/// Serves the channel on `listener` (plain or TLS, see [`crate::tls::Incoming`]) until
/// `shutdown`, with idle-connection detection; at shutdown every client is asked to reconnect
/// elsewhere (`ConnectResetRequest`).
pub async fn serve<H: Handler>(
    listener: Incoming,
    handler: Arc<H>,
    connections: Arc<Connections>,
    config: Arc<ChannelConfig>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let detect = tokio::spawn(run_detection(
        Arc::clone(&connections),
        config.idle_detect_after_ms,
        config.detect_timeout_ms,
        shutdown.clone(),
    ));
    let conns = Arc::clone(&connections);
    let incoming = futures_util::stream::unfold(listener, move |mut listener| {
        let conns = Arc::clone(&conns);
        async move {
            let (io, remote) = listener.accept().await?;
            Some((Ok::<_, std::io::Error>(TrackedIo::new(io, remote, conns)), listener))
        }
    });
    let max = config.max_message_bytes;
    let conns_for_reset = Arc::clone(&connections);
    let channel = Channel { handler, connections, config };
    let result = tonic::transport::Server::builder()
        // Java clients ping every 6 min; accept that and probe idle peers ourselves.
        .http2_keepalive_interval(None)
        .add_service(RequestServer::new(channel.clone()).max_decoding_message_size(max).max_encoding_message_size(max))
        .add_service(BiRequestStreamServer::new(channel).max_decoding_message_size(max).max_encoding_message_size(max))
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
