//! The push actor: the only reader of change events. It gathers changes per service for a few
//! milliseconds, renders each (service, clusters) view once, sends it to every subscriber,
//! and tracks acknowledgements with a bounded pending table.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc};
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::subscribers::UdpSubscribers;
use super::udp::{encode_push, parse_ack};
use super::{PushConfig, PushHandle, PushStats};
use crate::model::{ChangeEvent, ServiceKey};
use crate::naming::{NameForm, ServiceInfo, parse_clusters, select};
use crate::state::NamingStore;

/// An unacknowledged datagram.
struct Pending {
    packet: Arc<Vec<u8>>,
    deadline: Instant,
    retries_left: u32,
}

/// Starts the engine on an already-bound UDP socket; returns the handle transports use.
pub fn spawn(
    store: Arc<NamingStore>,
    events: broadcast::Receiver<ChangeEvent>,
    socket: UdpSocket,
    config: PushConfig,
    shutdown: CancellationToken,
) -> PushHandle {
    let (new_subscriber, new_rx) = mpsc::unbounded_channel();
    let handle = PushHandle {
        subscribers: Arc::new(UdpSubscribers::default()),
        stats: Arc::new(PushStats::default()),
        new_subscriber,
    };
    let engine = Engine {
        store,
        subscribers: Arc::clone(&handle.subscribers),
        stats: Arc::clone(&handle.stats),
        socket,
        config,
        pending: HashMap::new(),
        epoch: Instant::now(),
        last_ref_time: 0,
    };
    tokio::spawn(engine.run(events, new_rx, shutdown));
    handle
}

struct Engine {
    store: Arc<NamingStore>,
    subscribers: Arc<UdpSubscribers>,
    stats: Arc<PushStats>,
    socket: UdpSocket,
    config: PushConfig,
    /// Keyed by (subscriber, lastRefTime), the pair the client echoes in its ack.
    pending: HashMap<(SocketAddr, u64), Pending>,
    epoch: Instant,
    last_ref_time: u64,
}

impl Engine {
    async fn run(
        mut self,
        mut events: broadcast::Receiver<ChangeEvent>,
        mut new_subscribers: mpsc::UnboundedReceiver<(ServiceKey, SocketAddr)>,
        shutdown: CancellationToken,
    ) {
        let debounce = Duration::from_millis(self.config.debounce_ms);
        let tick = Duration::from_millis((self.config.udp_ack_timeout_ms / 4).clamp(10, 1_000));
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut dirty: HashSet<ServiceKey> = HashSet::new();
        let mut targeted: Vec<(ServiceKey, SocketAddr)> = Vec::new();
        let mut flush_at: Option<Instant> = None;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let flush = async {
                match flush_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                ev = events.recv() => match ev {
                    Ok(ChangeEvent::ServiceChanged { key, .. }) => {
                        dirty.insert(key);
                        flush_at.get_or_insert_with(|| Instant::now() + debounce);
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "push engine lagged; re-pushing every subscribed service");
                        dirty.extend(self.subscribers.services());
                        flush_at.get_or_insert_with(|| Instant::now() + debounce);
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                Some(sub) = new_subscribers.recv() => {
                    targeted.push(sub);
                    flush_at.get_or_insert_with(|| Instant::now() + debounce);
                }
                () = flush => {
                    flush_at = None;
                    for key in std::mem::take(&mut dirty) {
                        self.push_service(&key, None).await;
                    }
                    for (key, addr) in std::mem::take(&mut targeted) {
                        self.push_service(&key, Some(addr)).await;
                    }
                }
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((n, from)) => self.on_datagram(&buf[..n], from),
                    Err(e) => tracing::debug!(error = %e, "udp receive failed"),
                },
                _ = ticker.tick() => {
                    self.retry_due().await;
                    self.subscribers.expire(Duration::from_millis(self.config.udp_subscriber_ttl_ms));
                }
            }
        }
    }

    /// Pushes the current view of `key` to its subscribers (or only to `only`).
    async fn push_service(&mut self, key: &ServiceKey, only: Option<SocketAddr>) {
        let subs = match only {
            Some(addr) => self.subscribers.get(key, addr).into_iter().collect(),
            None => self.subscribers.of(key),
        };
        if subs.is_empty() {
            return;
        }
        let view = self.store.view(key);
        // Render once per distinct clusters filter, share the bytes among subscribers.
        let mut rendered: HashMap<String, ServiceInfo> = HashMap::new();
        for sub in subs {
            let info = rendered.entry(sub.clusters.clone()).or_insert_with(|| {
                let selection = select(view.as_deref(), &parse_clusters(&sub.clusters), false);
                ServiceInfo::build(key, &sub.clusters, &selection, NameForm::Grouped)
            });
            let last_ref_time = self.next_ref_time();
            let packet = match encode_push(info, last_ref_time) {
                Ok(p) => Arc::new(p),
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode push");
                    continue;
                }
            };
            self.send(sub.addr, &packet).await;
            PushStats::add(&self.stats.sent, 1);
            if self.pending.len() < self.config.max_pending_acks {
                self.pending.insert(
                    (sub.addr, last_ref_time),
                    Pending {
                        packet,
                        deadline: Instant::now() + Duration::from_millis(self.config.udp_ack_timeout_ms),
                        retries_left: self.config.udp_max_retries,
                    },
                );
            }
        }
    }

    /// A strictly increasing stamp, nanoseconds since the engine started (Nacos uses
    /// `System.nanoTime()`); the ack echoes it.
    fn next_ref_time(&mut self) -> u64 {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_ref_time = now.max(self.last_ref_time + 1);
        self.last_ref_time
    }

    async fn send(&self, addr: SocketAddr, packet: &[u8]) {
        if let Err(e) = self.socket.send_to(packet, addr).await {
            tracing::debug!(%addr, error = %e, "udp push send failed");
        }
    }

    fn on_datagram(&mut self, datagram: &[u8], from: SocketAddr) {
        if let Some(stamp) = parse_ack(datagram)
            && self.pending.remove(&(from, stamp)).is_some()
        {
            PushStats::add(&self.stats.acked, 1);
        }
    }

    async fn retry_due(&mut self) {
        let now = Instant::now();
        let due: Vec<(SocketAddr, u64)> =
            self.pending.iter().filter(|(_, p)| p.deadline <= now).map(|(k, _)| *k).collect();
        for k in due {
            let Some(mut p) = self.pending.remove(&k) else { continue };
            if p.retries_left == 0 {
                PushStats::add(&self.stats.failed, 1);
                tracing::debug!(addr = %k.0, "udp push not acknowledged; giving up");
                continue;
            }
            p.retries_left -= 1;
            p.deadline = now + Duration::from_millis(self.config.udp_ack_timeout_ms);
            self.send(k.0, &p.packet).await;
            PushStats::add(&self.stats.retried, 1);
            self.pending.insert(k, p);
        }
    }
}
