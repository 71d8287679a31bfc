//! The push actor: the only reader of change events. It gathers changes per service for a few
//! milliseconds, renders each (service, clusters, name form) view once per flush, sends it to
//! every subscriber, and tracks acknowledgements with bounded pending tables.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc};
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::conn_subscribers::{ConnSubscribers, ConnSubscription, SinkError};
use super::delivery::{CloseReasons, ConnDelivery, ControlQueue};
use super::pending::{Backoff, Due, PendingAcks, RetryPolicy};
use super::subscribers::UdpSubscribers;
use super::{Control, PushConfig, PushHandle, PushStats};
use crate::model::{ChangeEvent, ServiceKey};
use crate::naming::{NameForm, ServiceInfo, parse_clusters, select};
use crate::state::NamingStore;
use registry_proto::wire::udp::{encode_push, parse_ack};

/// The gRPC message type of a naming push.
const NOTIFY_SUBSCRIBER: &str = "NotifySubscriberRequest";

/// What an unacknowledged gRPC push remembers: the service to re-render on resend and when
/// it changed (the ack latency runs from there).
struct PendingGrpc {
    key: ServiceKey,
    changed_at: Instant,
}

/// Starts the engine on an already-bound UDP socket, taking at most `control_queue` waiting
/// subscriptions and acks (`[queues] push_control`); returns the handle transports use.
pub fn spawn(
    store: Arc<NamingStore>,
    events: broadcast::Receiver<ChangeEvent>,
    socket: UdpSocket,
    config: PushConfig,
    control_queue: usize,
    shutdown: CancellationToken,
) -> PushHandle {
    let (control, control_rx) = ControlQueue::new(control_queue);
    let handle = PushHandle {
        udp: Arc::new(UdpSubscribers::default()),
        conns: Arc::new(ConnSubscribers::default()),
        stats: Arc::new(PushStats::default()),
        control: Arc::new(control),
    };
    let udp_policy = RetryPolicy::from_millis(config.udp_ack_timeout_ms, config.udp_max_retries, Backoff::Fixed);
    let grpc_policy = RetryPolicy::from_millis(config.grpc_ack_timeout_ms, config.grpc_max_retries, Backoff::Doubling);
    let reasons =
        CloseReasons { slow: "push queue full: the client is not reading", unacked: "pushes not acknowledged" };
    let engine = Engine {
        store,
        udp: Arc::clone(&handle.udp),
        conns: Arc::clone(&handle.conns),
        stats: Arc::clone(&handle.stats),
        socket,
        pending_udp: PendingAcks::new(udp_policy, config.max_pending_acks),
        grpc: ConnDelivery::new(grpc_policy, config.max_pending_acks, reasons),
        latest_grpc: HashMap::new(),
        epoch: Instant::now(),
        last_ref_time: 0,
        config,
    };
    tokio::spawn(engine.run(events, control_rx, shutdown));
    handle
}

struct Engine {
    store: Arc<NamingStore>,
    udp: Arc<UdpSubscribers>,
    conns: Arc<ConnSubscribers>,
    stats: Arc<PushStats>,
    socket: UdpSocket,
    config: PushConfig,
    /// Keyed by (subscriber, lastRefTime), the pair the client echoes in its ack.
    pending_udp: PendingAcks<(SocketAddr, u64), Arc<Vec<u8>>>,
    /// gRPC pushes and their acks.
    grpc: ConnDelivery<PendingGrpc>,
    /// The request id of the newest push per (connection, service): an older unacknowledged
    /// push is superseded by a newer one, never resent after it.
    latest_grpc: HashMap<(String, ServiceKey), String>,
    epoch: Instant,
    last_ref_time: u64,
}

/// Per-flush cache of encoded views: (service, clusters, form) → ServiceInfo JSON.
type Rendered = HashMap<(ServiceKey, String, bool), Arc<String>>;

impl Engine {
    async fn run(
        mut self,
        mut events: broadcast::Receiver<ChangeEvent>,
        mut control: mpsc::Receiver<Control>,
        shutdown: CancellationToken,
    ) {
        let debounce = Duration::from_millis(self.config.debounce_ms);
        let check_every = self.pending_udp.policy().check_every().min(self.grpc.check_every());
        let mut ticker = tokio::time::interval(check_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut dirty: HashMap<ServiceKey, Instant> = HashMap::new();
        let mut new_udp: Vec<(ServiceKey, SocketAddr)> = Vec::new();
        let mut new_conn: HashSet<(ServiceKey, String)> = HashSet::new();
        let mut flush_at: Option<Instant> = None;
        // Leading-edge debounce: a change after a quiet period is pushed at once; changes that
        // follow within `debounce` of the last flush are gathered into the next one.
        let mut last_flush = Instant::now().checked_sub(debounce).unwrap_or_else(Instant::now);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let flush = async {
                match flush_at {
                    // The timer wheel has 1 ms granularity: a due flush must not wait a tick.
                    Some(at) if at <= Instant::now() => {}
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                ev = events.recv() => match ev {
                    Ok(ChangeEvent::ServiceChanged { key, .. }) => {
                        let now = Instant::now();
                        dirty.entry(Arc::unwrap_or_clone(key)).or_insert(now);
                        flush_at.get_or_insert(now.max(last_flush + debounce));
                    }
                    Ok(ChangeEvent::ConfigChanged { .. }) => {}
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "push engine lagged; re-pushing every subscribed service");
                        let now = Instant::now();
                        for key in self.udp.keys().into_iter().chain(self.conns.keys()) {
                            dirty.entry(key).or_insert(now);
                        }
                        flush_at.get_or_insert(now.max(last_flush + debounce));
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                Some(msg) = control.recv() => match msg {
                    Control::NewUdp(key, addr) => {
                        new_udp.push((key, addr));
                        flush_at.get_or_insert(Instant::now().max(last_flush + debounce));
                    }
                    Control::NewConn(key, conn) => {
                        new_conn.insert((key, conn));
                        flush_at.get_or_insert(Instant::now().max(last_flush + debounce));
                    }
                    Control::Ack(conn, request_id) => self.on_grpc_ack(conn, request_id),
                },
                () = flush => {
                    flush_at = None;
                    last_flush = Instant::now();
                    let mut rendered = Rendered::new();
                    let changed = std::mem::take(&mut dirty);
                    for (key, changed_at) in &changed {
                        for sub in self.conns.of(key) {
                            self.push_grpc(key, &sub, *changed_at, 0, &mut rendered);
                        }
                        self.push_udp(key, None, &mut rendered).await;
                    }
                    // New subscribers of a service pushed just above already have its state.
                    let now = Instant::now();
                    for (key, conn) in std::mem::take(&mut new_conn) {
                        if !changed.contains_key(&key)
                            && let Some(sub) = self.conns.get(&key, &conn)
                        {
                            self.push_grpc(&key, &sub, now, 0, &mut rendered);
                        }
                    }
                    for (key, addr) in std::mem::take(&mut new_udp) {
                        if !changed.contains_key(&key) {
                            self.push_udp(&key, Some(addr), &mut rendered).await;
                        }
                    }
                }
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((n, from)) => self.on_datagram(&buf[..n], from),
                    Err(e) => tracing::debug!(error = %e, "udp receive failed"),
                },
                _ = ticker.tick() => {
                    self.retry_udp().await;
                    self.retry_grpc();
                    let ttl = Duration::from_millis(self.config.udp_subscriber_ttl_ms);
                    let now = Instant::now();
                    self.udp.retain(|s| now.saturating_duration_since(s.refreshed) <= ttl);
                }
            }
            let pending = self.pending_udp.len() + self.grpc.len();
            self.stats.pending.store(pending as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The encoded ServiceInfo of `key` for a clusters filter and name form, rendered once per flush.
    fn render(&self, key: &ServiceKey, clusters: &str, form: NameForm, cache: &mut Rendered) -> Option<Arc<String>> {
        let slot = (key.clone(), clusters.to_owned(), form == NameForm::Bare);
        if let Some(hit) = cache.get(&slot) {
            return Some(Arc::clone(hit));
        }
        let view = self.store.view(key);
        let selection = select(view.as_deref(), &parse_clusters(clusters), false);
        let info = ServiceInfo::build(key, clusters, &selection, form);
        match serde_json::to_string(&info) {
            Ok(json) => {
                let json = Arc::new(json);
                cache.insert(slot, Arc::clone(&json));
                Some(json)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot encode push");
                None
            }
        }
    }

    fn push_grpc(
        &mut self,
        key: &ServiceKey,
        sub: &ConnSubscription,
        changed_at: Instant,
        attempt: u32,
        cache: &mut Rendered,
    ) {
        let Some(info) = self.render(key, &sub.clusters, NameForm::Bare, cache) else { return };
        let request_id = self.grpc.next_request_id();
        let body = format!(r#"{{"headers":{{}},"module":"naming","requestId":"{request_id}","serviceInfo":{info}}}"#);
        let conn = sub.sink.id().to_owned();
        // A newer push supersedes an older unacknowledged one: it is never resent after it.
        // Should the send fail, the connection is forgotten entirely anyway.
        if let Some(old) = self.latest_grpc.insert((conn.clone(), key.clone()), request_id.clone()) {
            self.grpc.remove(conn.clone(), old);
        }
        let pending = PendingGrpc { key: key.clone(), changed_at };
        match self.grpc.send(&*sub.sink, NOTIFY_SUBSCRIBER, request_id, body.into_bytes(), pending, attempt) {
            Ok(()) => PushStats::add(if attempt == 0 { &self.stats.sent } else { &self.stats.retried }, 1),
            Err(e) => {
                if e == SinkError::Full {
                    PushStats::add(&self.stats.dropped_slow, 1);
                    tracing::warn!(%conn, service = %key, "subscriber is not reading its pushes; closing its connection");
                }
                self.forget_connection(&conn);
            }
        }
    }

    fn forget_connection(&mut self, conn: &str) {
        self.conns.remove_subscriber(conn);
        self.grpc.forget_connection(conn);
        self.latest_grpc.retain(|(c, _), _| c != conn);
    }

    fn on_grpc_ack(&mut self, conn: String, request_id: String) {
        if let Some(p) = self.grpc.remove(conn.clone(), request_id) {
            self.latest_grpc.remove(&(conn, p.key));
            PushStats::add(&self.stats.acked, 1);
            let micros = u64::try_from(p.changed_at.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.stats.observe_latency(micros);
        }
    }

    fn retry_grpc(&mut self) {
        let mut cache = Rendered::new();
        for (conn, due) in self.grpc.take_due() {
            let Some(sub) = self.conns.get(&due.payload().key, &conn) else { continue };
            match due {
                Due::Resend { payload, attempt } => {
                    self.push_grpc(&payload.key, &sub, payload.changed_at, attempt, &mut cache);
                }
                Due::GiveUp(p) => {
                    PushStats::add(&self.stats.failed, 1);
                    tracing::warn!(%conn, service = %p.key, "push never acknowledged; closing the connection");
                    self.grpc.give_up(&*sub.sink);
                    self.forget_connection(&conn);
                }
            }
        }
    }

    /// Pushes the current view of `key` to its UDP subscribers (or only to `only`).
    async fn push_udp(&mut self, key: &ServiceKey, only: Option<SocketAddr>, cache: &mut Rendered) {
        let subs = match only {
            Some(addr) => self.udp.get(key, &addr).into_iter().collect(),
            None => self.udp.of(key),
        };
        for sub in subs.into_iter().map(|s| s.info) {
            let Some(info) = self.render(key, &sub.clusters, NameForm::Grouped, cache) else { continue };
            let last_ref_time = self.next_ref_time();
            let packet = match encode_push(&info, last_ref_time) {
                Ok(p) => Arc::new(p),
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode push");
                    continue;
                }
            };
            self.send_udp(sub.addr, &packet).await;
            PushStats::add(&self.stats.sent, 1);
            self.pending_udp.track((sub.addr, last_ref_time), packet, 0);
        }
    }

    /// A strictly increasing stamp, nanoseconds since the engine started (Nacos uses
    /// `System.nanoTime()`); the ack echoes it.
    fn next_ref_time(&mut self) -> u64 {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_ref_time = now.max(self.last_ref_time + 1);
        self.last_ref_time
    }

    async fn send_udp(&self, addr: SocketAddr, packet: &[u8]) {
        if let Err(e) = self.socket.send_to(packet, addr).await {
            tracing::debug!(%addr, error = %e, "udp push send failed");
        }
    }

    fn on_datagram(&mut self, datagram: &[u8], from: SocketAddr) {
        if let Some(stamp) = parse_ack(datagram)
            && self.pending_udp.remove(&(from, stamp)).is_some()
        {
            PushStats::add(&self.stats.acked, 1);
        }
    }

    async fn retry_udp(&mut self) {
        for ((addr, stamp), due) in self.pending_udp.take_due() {
            match due {
                Due::Resend { payload: packet, attempt } => {
                    self.send_udp(addr, &packet).await;
                    PushStats::add(&self.stats.retried, 1);
                    self.pending_udp.track((addr, stamp), packet, attempt);
                }
                Due::GiveUp(_) => {
                    PushStats::add(&self.stats.failed, 1);
                    tracing::debug!(%addr, "udp push not acknowledged; giving up");
                }
            }
        }
    }
}
