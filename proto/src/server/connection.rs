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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use dashmap::DashMap;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use super::sink::{PushSink, SinkError};
use crate::nacos::Payload;
use crate::tls::ServerIo;
use crate::wire::frame::payload;

/// Facts about one TCP transport, attached to every request on it.
#[derive(Debug, Clone)]
pub struct TransportInfo {
    /// Connection id: `<millis>_<remote ip>_<remote port>` as Nacos forms it.
    pub id: Arc<str>,
    /// Peer address.
    pub remote: SocketAddr,
}

/// A transport (TCP, or TLS over TCP) that tells the registry when it is dropped (closed).
pub struct TrackedIo {
    io: ServerIo,
    info: TransportInfo,
    registry: Arc<Connections>,
}

impl TrackedIo {
    /// Wraps an accepted transport from `remote`, assigning its connection id.
    pub fn new(io: ServerIo, remote: SocketAddr, registry: Arc<Connections>) -> Self {
        let id = format!("{}_{}_{}", crate::clock::now_millis(), remote.ip(), remote.port());
        Self { io, info: TransportInfo { id: id.into(), remote }, registry }
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
    pub closed: CancellationToken,
    last_active_ms: AtomicU64,
    /// When a detection probe was sent (ms on the registry clock), 0 when none is pending.
    probe_sent_ms: AtomicU64,
    /// Requests in the current second.
    rate: super::RateWindow,
    registry: std::sync::Weak<Connections>,
}

impl Connection {
    /// Marks the connection active (any request or stream message): any answer, not only the
    /// probe's, proves the client alive. Sequentially consistent with [`Connections::detect`],
    /// which re-reads the activity after marking a probe (a message can race with the probe).
    pub fn touch(&self, now_ms: u64) {
        self.last_active_ms.store(now_ms, Ordering::SeqCst);
        self.probe_sent_ms.store(0, Ordering::SeqCst);
    }

    /// Counts one request against `per_second` (0: no limit); false when this second's
    /// budget is spent.
    pub fn admit_rate(&self, now_ms: u64, per_second: u32) -> bool {
        self.rate.admit(now_ms, per_second)
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
    /// Ended connections whose cleanup (`on_closed`) has not finished.
    closing: Arc<AtomicUsize>,
    epoch: Instant,
    next_request_id: AtomicU64,
    refused_setups: AtomicU64,
    rate_limited: AtomicU64,
}

impl Connections {
    /// An empty registry; `on_closed` receives the id of each connection that ends.
    pub fn new(on_closed: OnClosed) -> Arc<Self> {
        Arc::new(Self {
            by_id: DashMap::new(),
            on_closed,
            closing: Arc::default(),
            epoch: Instant::now(),
            next_request_id: AtomicU64::new(1),
            refused_setups: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
        })
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
            rate: super::RateWindow::default(),
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
            self.closing.fetch_add(1, Ordering::Relaxed);
            if self.on_closed.send(id.to_owned()).is_err() {
                self.closing.fetch_sub(1, Ordering::Relaxed);
            }
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

    /// Ended connections whose cleanup has not finished: their ids wait in the `on_closed`
    /// queue, whose length this is.
    pub fn closing(&self) -> usize {
        self.closing.load(Ordering::Relaxed)
    }

    /// What counts against the connection limit: registered connections and those still being
    /// cleaned up, so the cleanup queue holds at most the limit.
    pub fn occupied(&self) -> usize {
        self.len() + self.closing()
    }

    /// The counter the `on_closed` consumer decrements once a cleanup finished.
    pub(crate) fn closing_counter(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.closing)
    }

    /// Setups refused because the connection limit was reached (since start).
    pub fn refused_setups(&self) -> u64 {
        self.refused_setups.load(Ordering::Relaxed)
    }

    /// Requests refused by the per-connection rate limit (since start).
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }

    pub(crate) fn count_refused_setup(&self) {
        self.refused_setups.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
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

    /// One detection pass (spec §9.7): probes connections silent for `idle_ms`, ends those
    /// whose probe went unanswered for `timeout_ms`. A silent client is thus removed
    /// `idle_ms + timeout_ms` after its last message, provided the next pass runs when
    /// [`DetectPass::next_due_ms`] says.
    pub fn detect(&self, idle_ms: u64, timeout_ms: u64) -> DetectPass {
        let now = self.now_ms();
        let mut ended = Vec::new();
        // With nothing due earlier, the next pass is due when a connection registered right
        // now would fall silent; every later registration falls silent later still.
        let mut next_due_ms = now.saturating_add(idle_ms);
        for c in &self.by_id {
            let probe = c.probe_sent_ms.load(Ordering::SeqCst);
            if probe != 0 {
                let due = probe.saturating_add(timeout_ms);
                if now >= due {
                    ended.push(c.meta.connection_id.clone());
                } else {
                    next_due_ms = next_due_ms.min(due);
                }
                continue;
            }
            let last = c.last_active_ms.load(Ordering::SeqCst);
            let due = last.saturating_add(idle_ms);
            if now < due {
                next_due_ms = next_due_ms.min(due);
                continue;
            }
            let body = serde_json::json!({ "headers": {}, "module": "internal", "requestId": self.next_request_id() });
            match c.send(payload("ClientDetectionRequest", &body)) {
                Ok(()) => {
                    c.probe_sent_ms.store(now.max(1), Ordering::SeqCst);
                    // A message that arrived while the probe was being sent proves the client
                    // alive; its `touch` may have cleared the mark before it was set.
                    if c.last_active_ms.load(Ordering::SeqCst) != last {
                        c.probe_sent_ms.store(0, Ordering::SeqCst);
                    }
                    next_due_ms = next_due_ms.min(now.saturating_add(timeout_ms));
                }
                Err(_) => ended.push(c.meta.connection_id.clone()),
            }
        }
        for id in &ended {
            self.unregister(id, "client detection failed");
        }
        DetectPass { ended: ended.len(), next_due_ms }
    }
}

/// What a detection pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectPass {
    /// Connections it ended.
    pub ended: usize,
    /// When (registry clock, ms) the next connection falls silent or its probe times out.
    pub next_due_ms: u64,
}

/// Fewest milliseconds between detection passes, so that many connections whose deadlines are
/// spread over time cost at most 50 scans a second rather than one scan each.
const MIN_DETECT_GAP_MS: u64 = 20;

/// Runs detection until `stop`: each pass sleeps until the earliest deadline it reported,
/// rather than polling on a fixed tick that would add up to a tick to every removal (a 3 s
/// tick, as Nacos uses, made a frozen client's removal take 27–28 s instead of 20).
pub async fn run_detection(conns: Arc<Connections>, idle_ms: u64, timeout_ms: u64, stop: CancellationToken) {
    loop {
        let pass = conns.detect(idle_ms, timeout_ms);
        let wait = pass.next_due_ms.saturating_sub(conns.now_ms()).max(MIN_DETECT_GAP_MS);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(std::time::Duration::from_millis(wait)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn meta(id: &str) -> ConnectionMeta {
        ConnectionMeta {
            connection_id: id.to_owned(),
            client_ip: "127.0.0.1".into(),
            remote_ip: "127.0.0.1".into(),
            remote_port: 1,
            version: "test".into(),
            labels: HashMap::new(),
            app_name: "-".into(),
            tenant: String::new(),
            create_time: 0,
        }
    }

    fn kind(p: &Payload) -> &str {
        p.metadata.as_ref().map_or("", |m| m.r#type.as_str())
    }

    #[tokio::test]
    async fn the_rate_budget_is_per_second_and_per_connection() {
        let (tx, _closed) = mpsc::unbounded_channel();
        let conns = Connections::new(tx);
        let (a, _a_rx) = conns.register(meta("a"), 8);
        let (b, _b_rx) = conns.register(meta("b"), 8);
        let admitted = (0..5).filter(|_| a.admit_rate(10_000, 3)).count();
        assert_eq!(admitted, 3, "three in the second, then refused");
        assert!(b.admit_rate(10_500, 3), "another connection has its own budget");
        assert!(!a.admit_rate(10_999, 3), "still the same second");
        assert!(a.admit_rate(11_000, 3), "a new second, a new budget");
        assert!((0..100).all(|_| a.admit_rate(12_000, 0)), "0 is no limit");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pass_probes_silent_connections_ends_unanswered_ones_and_names_the_next_deadline() {
        let (tx, mut closed) = mpsc::unbounded_channel();
        let conns = Connections::new(tx);
        let (_silent, mut silent_rx) = conns.register(meta("silent"), 8);
        let (alive, mut alive_rx) = conns.register(meta("alive"), 8);
        assert_eq!(conns.detect(18_000, 2_000), DetectPass { ended: 0, next_due_ms: 18_000 });

        tokio::time::advance(Duration::from_millis(18_000)).await;
        assert_eq!(conns.detect(18_000, 2_000), DetectPass { ended: 0, next_due_ms: 20_000 });
        for rx in [&mut silent_rx, &mut alive_rx] {
            assert_eq!(rx.try_recv().map(|p| kind(&p).to_owned()).as_deref(), Ok("ClientDetectionRequest"));
        }
        tokio::time::advance(Duration::from_millis(500)).await;
        alive.touch(conns.now_ms()); // its answer

        tokio::time::advance(Duration::from_millis(1_499)).await;
        assert_eq!(conns.detect(18_000, 2_000).ended, 0, "the probe still has 1 ms");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(conns.detect(18_000, 2_000), DetectPass { ended: 1, next_due_ms: 18_500 + 18_000 });
        assert_eq!(closed.try_recv().as_deref(), Ok("silent"));
        assert!(conns.get("silent").is_none() && conns.get("alive").is_some());
    }

    #[tokio::test]
    async fn ended_connections_occupy_a_slot_until_their_cleanup_finished() {
        let (tx, mut closed) = mpsc::unbounded_channel();
        let conns = Connections::new(tx);
        let (_a, _a_rx) = conns.register(meta("a"), 8);
        let (_b, _b_rx) = conns.register(meta("b"), 8);
        conns.unregister("a", "test");
        conns.unregister("a", "again: idempotent");
        assert_eq!((conns.len(), conns.closing(), conns.occupied()), (1, 1, 2));
        assert_eq!(closed.try_recv().as_deref(), Ok("a"));
        conns.closing_counter().fetch_sub(1, Ordering::Relaxed); // what the consumer does after cleanup
        assert_eq!(conns.occupied(), 1);
        drop(closed);
        conns.unregister("b", "no consumer left");
        assert_eq!(conns.occupied(), 0, "a cleanup that cannot run does not hold a slot");
    }

    #[tokio::test(start_paused = true)]
    async fn a_frozen_client_is_removed_idle_plus_timeout_after_its_last_message_and_an_answering_one_never() {
        let (tx, mut closed) = mpsc::unbounded_channel();
        let conns = Connections::new(tx);
        let start = Instant::now();
        let (_frozen, _frozen_rx) = conns.register(meta("frozen"), 8);
        let (alive, mut alive_rx) = conns.register(meta("alive"), 8);
        // The live client answers every probe at once; it also sends a request at 7 s.
        let answering = {
            let conns = Arc::clone(&conns);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(7)).await;
                alive.touch(conns.now_ms());
                while let Some(p) = alive_rx.recv().await {
                    if kind(&p) == "ClientDetectionRequest" {
                        alive.touch(conns.now_ms());
                    }
                }
            })
        };
        let stop = CancellationToken::new();
        let detector = tokio::spawn(run_detection(Arc::clone(&conns), 18_000, 2_000, stop.clone()));
        // Paused time jumps from deadline to deadline: the close arrives at the virtual
        // instant the detector acted on.
        assert_eq!(closed.recv().await.as_deref(), Some("frozen"));
        assert_eq!(start.elapsed(), Duration::from_secs(20), "removed at idle + timeout, not on a later tick");
        // Several more rounds of probing: the answering client stays.
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert!(closed.try_recv().is_err(), "the answering client was ended");
        assert_eq!(conns.len(), 1);
        stop.cancel();
        detector.await.unwrap();
        answering.abort();
    }
}
