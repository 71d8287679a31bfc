//! Config change notification: the one task that reads `ConfigChanged` events. It wakes held
//! long-polls (through the [`ListenHub`]) and sends `ConfigChangeNotifyRequest` to every gRPC
//! connection listening to the key. Listeners live in the push engine's [`SubscriberTable`],
//! and acks, resends and the slow-consumer rule are the push engine's [`ConnDelivery`]:
//! unacknowledged notifications are resent with a growing delay, and a connection that never
//! acknowledges is closed so its client resyncs (§13.6).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::ConfigCenterConfig;
use super::listen::ListenHub;
use crate::model::{ChangeEvent, ConfigKey};
use crate::push::delivery::{CloseReasons, ConnDelivery, ControlQueue};
use crate::push::pending::{Backoff, Due, RetryPolicy};
use crate::push::table::SubscriberTable;
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
type Listeners = SubscriberTable<ConfigKey, String, Listener>;

enum Control {
    Ack(String, String),
}

/// What the notifier did since start, for `/metrics`: with them a test shows that a listener
/// was not notified by reading the server, instead of waiting for a callback that never comes.
#[derive(Debug, Default)]
struct Counts {
    /// `ConfigChanged` events handled (counted once their notifications are sent).
    changes: AtomicU64,
    /// Notifications sent to listeners (first attempts, not resends).
    notifications: AtomicU64,
}

/// What transports use to register config listeners. Cheap to clone.
#[derive(Clone)]
pub struct ConfigNotifyHandle {
    listeners: Arc<Listeners>,
    control: Arc<ControlQueue<Control>>,
    counts: Arc<Counts>,
}

impl ConfigNotifyHandle {
    /// Registers a connection's interest in a key (spelled as the client spelled it).
    pub fn listen(&self, key: ConfigKey, data_id: &str, group: &str, tenant: &str, sink: Arc<dyn PushSink>) {
        let id = sink.id().to_owned();
        let listener =
            Listener { sink, data_id: data_id.to_owned(), group: group.to_owned(), tenant: tenant.to_owned() };
        self.listeners.insert(&key, id, listener);
    }

    /// Removes a connection's interest in a key.
    pub fn unlisten(&self, key: &ConfigKey, conn: &str) {
        self.listeners.remove(key, conn);
    }

    /// Drops every listen of a closed connection.
    pub fn connection_closed(&self, conn: &str) {
        self.listeners.remove_subscriber(conn);
    }

    /// A connection acknowledged a notification.
    pub fn ack(&self, conn: &str, request_id: &str) {
        self.control.send(Control::Ack(conn.to_owned(), request_id.to_owned()));
    }

    /// The connections listening to a key (the console's listener view).
    pub fn listeners_of(&self, key: &ConfigKey) -> Vec<String> {
        let mut ids: Vec<String> = self.listeners.of(key).into_iter().map(|l| l.sink.id().to_owned()).collect();
        ids.sort();
        ids
    }

    /// Number of (key, connection) listens.
    pub fn len(&self) -> usize {
        self.listeners.len()
    }

    /// Config changes handled since start; each one's notifications are already counted.
    pub fn changes_handled(&self) -> u64 {
        self.counts.changes.load(Ordering::Relaxed)
    }

    /// Notifications sent to listeners since start (first attempts).
    pub fn notifications(&self) -> u64 {
        self.counts.notifications.load(Ordering::Relaxed)
    }

    /// Acks dropped because the notifier's queue was full (the notification is resent).
    pub fn control_dropped(&self) -> u64 {
        self.control.dropped()
    }

    /// Most acks that wait for the notifier at once.
    pub fn control_capacity(&self) -> usize {
        self.control.capacity()
    }

    /// Whether nobody listens.
    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }
}

/// Starts the notifier, taking at most `control_queue` waiting acks (`[queues]
/// config_notify_control`).
pub fn spawn(
    hub: Arc<ListenHub>,
    events: broadcast::Receiver<ChangeEvent>,
    config: &ConfigCenterConfig,
    control_queue: usize,
    shutdown: CancellationToken,
) -> ConfigNotifyHandle {
    let (control, control_rx) = ControlQueue::new(control_queue);
    let handle = ConfigNotifyHandle {
        listeners: Arc::new(Listeners::default()),
        control: Arc::new(control),
        counts: Arc::default(),
    };
    let policy = RetryPolicy::from_millis(config.push_ack_timeout_ms.max(1), config.push_max_retries, Backoff::Linear);
    let reasons =
        CloseReasons { slow: "config notification queue full", unacked: "config notifications not acknowledged" };
    let notifier = Notifier {
        hub,
        listeners: Arc::clone(&handle.listeners),
        counts: Arc::clone(&handle.counts),
        // Notifications are few (one per listener per change) and were never capped.
        delivery: ConnDelivery::new(policy, usize::MAX, reasons),
    };
    tokio::spawn(notifier.run(events, control_rx, shutdown));
    handle
}

struct Notifier {
    hub: Arc<ListenHub>,
    listeners: Arc<Listeners>,
    counts: Arc<Counts>,
    delivery: ConnDelivery<ConfigKey>,
}

impl Notifier {
    async fn run(
        mut self,
        mut events: broadcast::Receiver<ChangeEvent>,
        mut control: mpsc::Receiver<Control>,
        shutdown: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(self.delivery.check_every());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                ev = events.recv() => match ev {
                    Ok(ChangeEvent::ConfigChanged { key }) => {
                        self.hub.wake(&key);
                        self.notify_key(&key);
                        self.counts.changes.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(ChangeEvent::ServiceChanged { .. }) => {}
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "config notifier lagged; notifying every listener");
                        self.hub.wake_all();
                        for key in self.listeners.keys() {
                            self.notify_key(&key);
                        }
                        self.counts.changes.fetch_add(missed, Ordering::Relaxed);
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                Some(Control::Ack(conn, id)) = control.recv() => {
                    self.delivery.remove(conn, id);
                }
                _ = ticker.tick() => self.retry_due(),
            }
        }
    }

    fn notify_key(&mut self, key: &ConfigKey) {
        for l in self.listeners.of(key) {
            self.send(key, &l, 0);
        }
    }

    fn send(&mut self, key: &ConfigKey, l: &Listener, attempt: u32) {
        if attempt == 0 {
            self.counts.notifications.fetch_add(1, Ordering::Relaxed);
        }
        let request_id = self.delivery.next_request_id();
        let body = serde_json::json!({
            "headers": {}, "module": "config", "requestId": request_id,
            "dataId": l.data_id, "group": l.group, "tenant": l.tenant,
        });
        let body = serde_json::to_vec(&body).unwrap_or_default();
        // A full queue closes the connection; its listens go when the transport reports it closed.
        if let Err(SinkError::Full) =
            self.delivery.send(&*l.sink, CHANGE_NOTIFY, request_id, body, key.clone(), attempt)
        {
            tracing::warn!(conn = l.sink.id(), "config listener is not reading; closing its connection");
        }
    }

    fn retry_due(&mut self) {
        for (conn, due) in self.delivery.take_due() {
            let Some(l) = self.listeners.get(due.payload(), &conn) else { continue };
            match due {
                Due::Resend { payload: key, attempt } => self.send(&key, &l, attempt),
                Due::GiveUp(_) => {
                    tracing::warn!(%conn, "config notification never acknowledged; closing the connection");
                    self.delivery.give_up(&*l.sink);
                }
            }
        }
    }
}
