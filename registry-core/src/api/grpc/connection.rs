//! Connections of the SDK channel (spec §9.4–§9.7).
//!
//! A connection is one TCP (HTTP/2) transport: its id is assigned at accept time and shared by
//! the unary calls and the bi-stream on it, whatever order clients use. It is *registered* once
//! the client sends `ConnectionSetupRequest` on the bi-stream. It ends when the transport
//! closes, the stream ends, idle detection fails, or pushes cannot be delivered; every end goes
//! through one cleanup path that drops the connection's instances and subscriptions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use dashmap::DashMap;
use registry_proto::nacos::Payload;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use super::messages::payload;
use crate::push::{PushSink, SinkError};

/// Facts about one TCP transport, attached to every request on it.
#[derive(Debug, Clone)]
pub struct TransportInfo {
    /// Connection id: `<millis>_<remote ip>_<remote port>` as Nacos forms it.
    pub id: Arc<str>,
    /// Peer address.
    pub remote: SocketAddr,
}

/// A TCP stream that tells the registry when it is dropped (the transport closed).
pub struct TrackedIo {
    io: TcpStream,
    info: TransportInfo,
    registry: Arc<Connections>,
}

impl TrackedIo {
    /// Wraps an accepted stream, assigning its connection id.
    pub fn new(io: TcpStream, registry: Arc<Connections>) -> std::io::Result<Self> {
        let remote = io.peer_addr()?;
        // Lower latency for small request/response pairs (clients do the same or suffer Nagle).
        io.set_nodelay(true)?;
        let id = format!("{}_{}_{}", crate::naming::service_info::now_millis(), remote.ip(), remote.port());
        Ok(Self { io, info: TransportInfo { id: id.into(), remote }, registry })
    }
}

impl Drop for TrackedIo {
    fn drop(&mut self) {
        self.registry.unregister(&self.info.id, "transport closed");
    }
}

impl Connected for TrackedIo {
    type ConnectInfo = TransportInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for TrackedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// What a client told us about itself at setup; shown on the admin endpoint.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionMeta {
    /// Connection id.
    pub connection_id: String,
    /// The IP the client reported (used for subscriber IPs).
    pub client_ip: String,
    /// Peer IP as seen by the server.
    pub remote_ip: String,
    /// Peer port.
    pub remote_port: u16,
    /// `clientVersion` of the setup request.
    pub version: String,
    /// Labels (`module`, `source`, `AppName`, ...).
    pub labels: HashMap<String, String>,
    /// App name (label `AppName`, else `-`).
    pub app_name: String,
    /// Namespace the client was configured with.
    pub tenant: String,
    /// When the connection was registered (ms since the epoch).
    pub create_time: u64,
}

/// A registered connection.
pub struct Connection {
    /// Setup facts.
    pub meta: ConnectionMeta,
    /// Boxed: a channel allocates its first block of 32 slots up front, and a slot of
    /// `Result<Payload, Status>` is ~180 bytes (5.8 KiB for every idle connection).
    outbound: mpsc::Sender<Box<Payload>>,
    /// Ends the response stream when cancelled.
    pub(crate) closed: CancellationToken,
    last_active_ms: AtomicU64,
    /// When a detection probe was sent (ms on the registry clock), 0 when none is pending.
    probe_sent_ms: AtomicU64,
    registry: std::sync::Weak<Connections>,
}

impl Connection {
    /// Marks the connection active (any request or stream message).
    pub fn touch(&self, now_ms: u64) {
        self.last_active_ms.store(now_ms, Ordering::Relaxed);
        self.probe_sent_ms.store(0, Ordering::Relaxed);
    }

    /// Queues a server→client message.
    pub fn send(&self, message: Payload) -> Result<(), SinkError> {
        self.outbound.try_send(Box::new(message)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SinkError::Full,
            mpsc::error::TrySendError::Closed(_) => SinkError::Closed,
        })
    }
}

impl PushSink for Connection {
    fn id(&self) -> &str {
        &self.meta.connection_id
    }

    fn try_send(&self, kind: &str, body: Vec<u8>) -> Result<(), SinkError> {
        let mut p = payload(kind, &serde_json::Value::Null);
        if let Some(b) = p.body.as_mut() {
            b.value = body;
        }
        self.send(p)
    }

    fn close(&self, reason: &str) {
        if let Some(r) = self.registry.upgrade() {
            r.unregister(&self.meta.connection_id, reason);
        }
    }
}

/// Called with the id of every connection that ends (after it left the registry).
pub type OnClosed = mpsc::UnboundedSender<String>;

/// All registered connections, by id.
pub struct Connections {
    by_id: DashMap<String, Arc<Connection>>,
    on_closed: OnClosed,
    epoch: Instant,
    next_request_id: AtomicU64,
}

impl Connections {
    /// An empty registry; `on_closed` receives the id of each connection that ends.
    pub fn new(on_closed: OnClosed) -> Arc<Self> {
        Arc::new(Self { by_id: DashMap::new(), on_closed, epoch: Instant::now(), next_request_id: AtomicU64::new(1) })
    }

    /// Milliseconds on the registry clock (pausable in tests).
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A fresh id for a server→client request.
    pub fn next_request_id(&self) -> String {
        self.next_request_id.fetch_add(1, Ordering::Relaxed).to_string()
    }

    /// Registers a connection after its setup request; returns it and its outbound receiver.
    pub fn register(
        self: &Arc<Self>,
        meta: ConnectionMeta,
        queue: usize,
    ) -> (Arc<Connection>, mpsc::Receiver<Box<Payload>>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let conn = Arc::new(Connection {
            meta,
            outbound: tx,
            closed: CancellationToken::new(),
            last_active_ms: AtomicU64::new(self.now_ms()),
            probe_sent_ms: AtomicU64::new(0),
            registry: Arc::downgrade(self),
        });
        if let Some(old) = self.by_id.insert(conn.meta.connection_id.clone(), Arc::clone(&conn)) {
            // A second setup on the same transport replaces the first stream.
            old.closed.cancel();
        }
        tracing::debug!(id = %conn.meta.connection_id, version = %conn.meta.version, "connection registered");
        (conn, rx)
    }

    /// A registered connection.
    pub fn get(&self, id: &str) -> Option<Arc<Connection>> {
        self.by_id.get(id).map(|c| Arc::clone(c.value()))
    }

    /// Ends a connection (idempotent): leaves the registry, ends its stream, and its instances
    /// and subscriptions are dropped by the `on_closed` consumer.
    pub fn unregister(&self, id: &str, reason: &str) {
        if let Some((_, conn)) = self.by_id.remove(id) {
            tracing::info!(%id, reason, "connection closed");
            conn.closed.cancel();
            let _ = self.on_closed.send(id.to_owned());
        }
    }

    /// Ends the connection only if it is still `conn` (not a newer stream on the transport).
    pub fn unregister_if_same(&self, conn: &Arc<Connection>, reason: &str) {
        let same = self.by_id.get(&conn.meta.connection_id).is_some_and(|c| Arc::ptr_eq(c.value(), conn));
        if same {
            self.unregister(&conn.meta.connection_id, reason);
        }
    }

    /// Setup facts of every connection.
    pub fn list(&self) -> Vec<ConnectionMeta> {
        let mut out: Vec<ConnectionMeta> = self.by_id.iter().map(|c| c.meta.clone()).collect();
        out.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
        out
    }

    /// Number of registered connections.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no connection is registered.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Asks every client to reconnect (`ConnectResetRequest`), e.g. before this node stops, so
    /// that clients move to another member at once instead of waiting for a failed health check.
    pub fn reset_all(&self) -> usize {
        let mut sent = 0;
        for c in &self.by_id {
            let body = serde_json::json!({ "headers": {}, "module": "internal", "requestId": self.next_request_id() });
            if c.send(payload("ConnectResetRequest", &body)).is_ok() {
                sent += 1;
            }
        }
        sent
    }

    /// One detection pass (spec §9.7): probes connections idle for `idle_ms`, ends those whose
    /// probe went unanswered for `timeout_ms`. Returns how many were ended.
    pub fn detect(&self, idle_ms: u64, timeout_ms: u64) -> usize {
        let now = self.now_ms();
        let mut ended = Vec::new();
        for c in &self.by_id {
            let probe = c.probe_sent_ms.load(Ordering::Relaxed);
            if probe != 0 {
                if now.saturating_sub(probe) >= timeout_ms {
                    ended.push(c.meta.connection_id.clone());
                }
                continue;
            }
            if now.saturating_sub(c.last_active_ms.load(Ordering::Relaxed)) >= idle_ms {
                let body =
                    serde_json::json!({ "headers": {}, "module": "internal", "requestId": self.next_request_id() });
                match c.send(payload("ClientDetectionRequest", &body)) {
                    Ok(()) => c.probe_sent_ms.store(now.max(1), Ordering::Relaxed),
                    Err(_) => ended.push(c.meta.connection_id.clone()),
                }
            }
        }
        for id in &ended {
            self.unregister(id, "client detection failed");
        }
        ended.len()
    }
}
