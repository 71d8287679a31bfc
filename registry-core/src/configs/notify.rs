//! Config change notification: the one task that reads `ConfigChanged` events. It wakes held
//! long-polls (through the [`ListenHub`]) and sends `ConfigChangeNotifyRequest` to every gRPC
//! connection listening to the key; unacknowledged notifications are resent with a growing
//! delay, and a connection that never acknowledges is closed so its client resyncs (§13.6).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use tokio::sync::{broadcast, mpsc};
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::ConfigCenterConfig;
use super::listen::ListenHub;
use crate::model::{ChangeEvent, ConfigKey};
use crate::push::{PushSink, SinkError};

/// The gRPC message type of a config change notification.
const CHANGE_NOTIFY: &str = "ConfigChangeNotifyRequest";

/// A connection listening to a key, with the spelling of the key it used (echoed back).
#[derive(Clone)]
struct Listener {
    sink: Arc<dyn PushSink>,
    data_id: String,
    group: String,
    tenant: String,
}

/// gRPC config listeners: key → connection → listener.
#[derive(Default)]
struct Listeners {
    by_key: RwLock<HashMap<ConfigKey, HashMap<String, Listener>>>,
}

enum Control {
    Ack(String, String),
}

/// What transports use to register config listeners. Cheap to clone.
#[derive(Clone)]
pub struct ConfigNotifyHandle {
    listeners: Arc<Listeners>,
    control: mpsc::UnboundedSender<Control>,
}

impl ConfigNotifyHandle {
    /// Registers a connection's interest in a key (spelled as the client spelled it).
    pub fn listen(&self, key: ConfigKey, data_id: &str, group: &str, tenant: &str, sink: Arc<dyn PushSink>) {
        let id = sink.id().to_owned();
        let listener =
            Listener { sink, data_id: data_id.to_owned(), group: group.to_owned(), tenant: tenant.to_owned() };
        self.listeners.by_key.write().entry(key).or_default().insert(id, listener);
    }

    /// Removes a connection's interest in a key.
    pub fn unlisten(&self, key: &ConfigKey, conn: &str) {
        let mut map = self.listeners.by_key.write();
        if let Some(l) = map.get_mut(key) {
            l.remove(conn);
            if l.is_empty() {
                map.remove(key);
            }
        }
    }

    /// Drops every listen of a closed connection.
    pub fn connection_closed(&self, conn: &str) {
        self.listeners.by_key.write().retain(|_, l| {
            l.remove(conn);
            !l.is_empty()
        });
    }

    /// A connection acknowledged a notification.
    pub fn ack(&self, conn: &str, request_id: &str) {
        let _ = self.control.send(Control::Ack(conn.to_owned(), request_id.to_owned()));
    }

    /// Number of (key, connection) listens.
    pub fn len(&self) -> usize {
        self.listeners.by_key.read().values().map(HashMap::len).sum()
    }

    /// Whether nobody listens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Pending {
    key: ConfigKey,
    attempt: u32,
    deadline: Instant,
}

/// Starts the notifier.
pub fn spawn(
    hub: Arc<ListenHub>,
    events: broadcast::Receiver<ChangeEvent>,
    config: &ConfigCenterConfig,
    shutdown: CancellationToken,
) -> ConfigNotifyHandle {
    let (control, control_rx) = mpsc::unbounded_channel();
    let handle = ConfigNotifyHandle { listeners: Arc::new(Listeners::default()), control };
    let notifier = Notifier {
        hub,
        listeners: Arc::clone(&handle.listeners),
        pending: HashMap::new(),
        next_request_id: AtomicU64::new(1),
        ack_timeout: Duration::from_millis(config.push_ack_timeout_ms.max(1)),
        max_retries: config.push_max_retries,
    };
    tokio::spawn(notifier.run(events, control_rx, shutdown));
    handle
}

struct Notifier {
    hub: Arc<ListenHub>,
    listeners: Arc<Listeners>,
    pending: HashMap<(String, String), Pending>,
    next_request_id: AtomicU64,
    ack_timeout: Duration,
    max_retries: u32,
}

impl Notifier {
    async fn run(
        mut self,
        mut events: broadcast::Receiver<ChangeEvent>,
        mut control: mpsc::UnboundedReceiver<Control>,
        shutdown: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval((self.ack_timeout / 4).max(Duration::from_millis(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                ev = events.recv() => match ev {
                    Ok(ChangeEvent::ConfigChanged { key }) => {
                        self.hub.wake(&key);
                        self.notify_key(&key);
                    }
                    Ok(ChangeEvent::ServiceChanged { .. }) => {}
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "config notifier lagged; notifying every listener");
                        self.hub.wake_all();
                        let keys: Vec<ConfigKey> = self.listeners.by_key.read().keys().cloned().collect();
                        for key in keys {
                            self.notify_key(&key);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                Some(Control::Ack(conn, id)) = control.recv() => {
                    self.pending.remove(&(conn, id));
                }
                _ = ticker.tick() => self.retry_due(),
            }
        }
    }

    fn notify_key(&mut self, key: &ConfigKey) {
        let targets: Vec<Listener> =
            self.listeners.by_key.read().get(key).map(|l| l.values().cloned().collect()).unwrap_or_default();
        for l in targets {
            self.send(key, &l, 0);
        }
    }

    fn send(&mut self, key: &ConfigKey, l: &Listener, attempt: u32) {
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed).to_string();
        let body = serde_json::json!({
            "headers": {}, "module": "config", "requestId": request_id,
            "dataId": l.data_id, "group": l.group, "tenant": l.tenant,
        });
        let conn = l.sink.id().to_owned();
        match l.sink.try_send(CHANGE_NOTIFY, serde_json::to_vec(&body).unwrap_or_default()) {
            Ok(()) => {
                // Nacos' schedule: the n-th resend waits about 2·n seconds; ours scales the ack timeout.
                let wait = self.ack_timeout.saturating_mul(attempt.saturating_add(1));
                self.pending
                    .insert((conn, request_id), Pending { key: key.clone(), attempt, deadline: Instant::now() + wait });
            }
            Err(SinkError::Full) => {
                tracing::warn!(%conn, "config listener is not reading; closing its connection");
                l.sink.close("config notification queue full");
            }
            Err(SinkError::Closed) => {}
        }
    }

    fn retry_due(&mut self) {
        let now = Instant::now();
        let due: Vec<(String, String)> =
            self.pending.iter().filter(|(_, p)| p.deadline <= now).map(|(k, _)| k.clone()).collect();
        for k in due {
            let Some(p) = self.pending.remove(&k) else { continue };
            let listener = self.listeners.by_key.read().get(&p.key).and_then(|l| l.get(&k.0).cloned());
            let Some(l) = listener else { continue };
            if p.attempt >= self.max_retries {
                tracing::warn!(conn = %k.0, "config notification never acknowledged; closing the connection");
                l.sink.close("config notifications not acknowledged");
                continue;
            }
            self.send(&p.key, &l, p.attempt + 1);
        }
    }
}
