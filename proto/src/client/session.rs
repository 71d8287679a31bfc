//! A session: one live connection to any server of a list, and everything the caller holds on
//! it, redone on each new connection (spec §12): the instances it publishes, its subscriptions
//! and its config listeners. Server requests on the stream are answered here (push acks after the
//! event reached the caller, detection, reset), so a caller only sees [`Event`]s.
//!
//! ```text
//!  caller ──► Session::register/subscribe/listen_config ──► Redo (recorded first) ──► Unary
//!  run loop: connect(servers[i]) ─► publish Unary ─► redo everything ─► pump stream ─┐
//!            ▲   failed / lost: backoff (doubling, capped), next server               │
//!            └───────────────────────────────────────────────────────────────────────┘
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tonic::Streaming;

use super::{ClientError, Connection, Setup, Unary};
use crate::model::ServiceKey;
use crate::nacos::Payload;
use crate::wire::ServiceInfo;
use crate::wire::config::ListenContext;
use crate::wire::frame::{decode, ok_response};
use crate::wire::naming::WireInstance;

/// Room for events the caller has not read yet; a full queue holds back push acks, so the
/// server sees a slow consumer rather than the session dropping events.
const EVENT_QUEUE: usize = 1024;

/// Where a session connects and how it retries.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// gRPC addresses of the cluster's members, tried in turn.
    pub servers: Vec<SocketAddr>,
    /// What each connection announces.
    pub setup: Setup,
    /// First pause after a failed connect; doubles per failure up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest pause between connects.
    pub backoff_max: Duration,
    /// How long a call waits for a connection before it fails with `NotConnected`.
    pub request_timeout: Duration,
}

impl SessionConfig {
    /// Defaults for `servers`: 100 ms to 5 s backoff, 3 s request timeout (the Java SDK's).
    pub fn new(servers: Vec<SocketAddr>, setup: Setup) -> Self {
        Self {
            servers,
            setup,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            request_timeout: Duration::from_secs(3),
        }
    }
}

/// What a session tells its caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A connection to this server is set up; the redo follows.
    Connected(SocketAddr),
    /// The connection to this server is gone; the session reconnects.
    Disconnected(SocketAddr),
    /// A subscribed service as it is now (a push, or the answer of a redone subscription).
    Service(ServiceInfo),
    /// A listened config changed (or changed while disconnected): fetch it again.
    ConfigChanged {
        /// Namespace.
        tenant: String,
        /// Group.
        group: String,
        /// Data id.
        data_id: String,
    },
}

/// A config by `(tenant, group, dataId)`.
type ConfigId = (String, String, String);

/// Everything redone on a new connection.
#[derive(Debug, Default)]
struct Redo {
    /// What this session publishes per service (one connection, one publication per service).
    instances: BTreeMap<ServiceKey, Vec<WireInstance>>,
    /// Subscribed services and their cluster filter.
    subscriptions: BTreeMap<ServiceKey, String>,
    /// Listened configs and the MD5 the caller holds.
    listeners: BTreeMap<ConfigId, String>,
}

/// State shared by the handle and the run loop.
#[derive(Debug)]
struct Shared {
    redo: Mutex<Redo>,
    /// One gate per published service: a publication is recorded and sent under it, and a redo
    /// sends the latest record under it, so a redo that started before a newer publication can
    /// never land after it (a drain's weight 0 overwritten by the weight it replaced).
    publish_gates: Mutex<BTreeMap<ServiceKey, Arc<tokio::sync::Mutex<()>>>>,
    current: watch::Sender<Option<(SocketAddr, Unary)>>,
    connects: AtomicU64,
}

impl Shared {
    fn redo(&self) -> MutexGuard<'_, Redo> {
        // The lock guards plain maps and is never held across an await: a panic elsewhere
        // cannot leave them half-written.
        self.redo.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds `service`'s publish gate until the guard drops.
    async fn publish_gate(&self, service: &ServiceKey) -> tokio::sync::OwnedMutexGuard<()> {
        let gate = {
            let mut gates = self.publish_gates.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(gates.entry(service.clone()).or_default())
        };
        gate.lock_owned().await
    }
}

/// A live session; dropping it closes the connection.
#[derive(Debug)]
pub struct Session {
    shared: Arc<Shared>,
    current: watch::Receiver<Option<(SocketAddr, Unary)>>,
    request_timeout: Duration,
    task: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Session {
    /// Starts connecting; events arrive on the returned receiver.
    pub fn start(config: SessionConfig) -> Result<(Self, mpsc::Receiver<Event>), ClientError> {
        if config.servers.is_empty() {
            return Err(ClientError::NotConnected);
        }
        let (current, rx) = watch::channel(None);
        let shared = Arc::new(Shared {
            redo: Mutex::default(),
            publish_gates: Mutex::default(),
            current,
            connects: AtomicU64::new(0),
        });
        let (events, events_rx) = mpsc::channel(EVENT_QUEUE);
        let request_timeout = config.request_timeout;
        let task = tokio::spawn(run(Arc::clone(&shared), config, events));
        Ok((Self { shared, current: rx, request_timeout, task }, events_rx))
    }

    /// The server currently connected, if any.
    pub fn connected_to(&self) -> Option<SocketAddr> {
        self.current.borrow().as_ref().map(|(addr, _)| *addr)
    }

    /// How many connections this session has set up so far.
    pub fn connects(&self) -> u64 {
        self.shared.connects.load(Ordering::Relaxed)
    }

    /// The current connection's unary half, waiting up to the request timeout for one.
    pub async fn unary(&self) -> Result<Unary, ClientError> {
        let mut current = self.current.clone();
        match tokio::time::timeout(self.request_timeout, current.wait_for(Option::is_some)).await {
            Ok(Ok(connected)) => connected.as_ref().map(|(_, unary)| unary.clone()).ok_or(ClientError::NotConnected),
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::NotConnected),
        }
    }

    /// Publishes `instance` as this session's instance of `service` (replacing an earlier one).
    /// Recorded before it is sent: even when this call fails, the next connection redoes it.
    pub async fn register(&self, service: &ServiceKey, instance: WireInstance) -> Result<(), ClientError> {
        let _gate = self.shared.publish_gate(service).await;
        self.shared.redo().instances.insert(service.clone(), vec![instance.clone()]);
        self.unary().await?.register(service, &instance).await
    }

    /// Publishes exactly `instances` in `service` (an empty list withdraws them all).
    pub async fn batch_register(&self, service: &ServiceKey, instances: Vec<WireInstance>) -> Result<(), ClientError> {
        let _gate = self.shared.publish_gate(service).await;
        if instances.is_empty() {
            self.shared.redo().instances.remove(service);
        } else {
            self.shared.redo().instances.insert(service.clone(), instances.clone());
        }
        self.unary().await?.batch_register(service, &instances).await
    }

    /// Withdraws this session's instance of `service`; forgotten even when the call fails (the
    /// connection it was on takes it along when it closes).
    pub async fn deregister(&self, service: &ServiceKey, instance: WireInstance) -> Result<(), ClientError> {
        let _gate = self.shared.publish_gate(service).await;
        self.shared.redo().instances.remove(service);
        self.unary().await?.deregister(service, &instance).await
    }

    /// Subscribes to `service` (`clusters` comma-separated, empty = all); the service now.
    /// Later changes arrive as [`Event::Service`].
    pub async fn subscribe(&self, service: &ServiceKey, clusters: &str) -> Result<ServiceInfo, ClientError> {
        self.shared.redo().subscriptions.insert(service.clone(), clusters.to_owned());
        self.unary().await?.subscribe(service, clusters, true).await
    }

    /// Ends a subscription.
    pub async fn unsubscribe(&self, service: &ServiceKey) -> Result<(), ClientError> {
        let clusters = self.shared.redo().subscriptions.remove(service).unwrap_or_default();
        self.unary().await?.subscribe(service, &clusters, false).await.map(drop)
    }

    /// Listens to a config the caller holds with `md5` ("" for none); true when it already
    /// differs (fetch it now). Changes arrive as [`Event::ConfigChanged`].
    pub async fn listen_config(
        &self,
        tenant: &str,
        group: &str,
        data_id: &str,
        md5: &str,
    ) -> Result<bool, ClientError> {
        let id = (tenant.to_owned(), group.to_owned(), data_id.to_owned());
        self.shared.redo().listeners.insert(id.clone(), md5.to_owned());
        let changed = self.unary().await?.listen_configs(vec![context(&id, md5)], true).await?;
        Ok(!changed.is_empty())
    }

    /// Records that the caller now holds `md5` of a listened config (after fetching it), so a
    /// redo does not report it changed again.
    pub fn config_held(&self, tenant: &str, group: &str, data_id: &str, md5: &str) {
        let id = (tenant.to_owned(), group.to_owned(), data_id.to_owned());
        if let Some(held) = self.shared.redo().listeners.get_mut(&id) {
            md5.clone_into(held);
        }
    }

    /// Stops listening to a config.
    pub async fn unlisten_config(&self, tenant: &str, group: &str, data_id: &str) -> Result<(), ClientError> {
        let id = (tenant.to_owned(), group.to_owned(), data_id.to_owned());
        let md5 = self.shared.redo().listeners.remove(&id).unwrap_or_default();
        self.unary().await?.listen_configs(vec![context(&id, &md5)], false).await.map(drop)
    }

    /// Any request on the current connection, not recorded for redo.
    pub async fn request(&self, kind: &str, body: &Value, expected: &str) -> Result<Value, ClientError> {
        self.unary().await?.request(kind, body, expected).await
    }
}

fn context((tenant, group, data_id): &ConfigId, md5: &str) -> ListenContext {
    ListenContext {
        data_id: Some(data_id.clone()),
        group: Some(group.clone()),
        tenant: Some(tenant.clone()),
        md5: Some(md5.to_owned()),
    }
}

/// Connects, redoes, pumps; again on loss, forever (until the session is dropped).
async fn run(shared: Arc<Shared>, config: SessionConfig, events: mpsc::Sender<Event>) {
    let mut next = 0usize;
    let mut backoff = config.backoff_min;
    loop {
        let addr = config.servers[next % config.servers.len()];
        next = next.wrapping_add(1);
        let conn = match Connection::connect(addr, &config.setup).await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::debug!(%addr, error = %e, "connect failed; trying the next server");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(config.backoff_max);
                continue;
            }
        };
        backoff = config.backoff_min;
        shared.connects.fetch_add(1, Ordering::Relaxed);
        let unary = conn.unary().clone();
        let Connection { to_server, from_server, .. } = conn;
        shared.current.send_replace(Some((addr, unary.clone())));
        let _ = events.send(Event::Connected(addr)).await;
        let redo = tokio::spawn(redo(Arc::clone(&shared), unary, events.clone()));
        pump(from_server, &to_server, &events).await;
        redo.abort();
        shared.current.send_replace(None);
        let _ = events.send(Event::Disconnected(addr)).await;
    }
}

/// Sends everything the session holds on a new connection. A failure is logged: a lost
/// connection ends the pump too, and a refusal (bad input) would be refused again.
async fn redo(shared: Arc<Shared>, unary: Unary, events: mpsc::Sender<Event>) {
    let (services, subscriptions, listeners) = {
        let redo = shared.redo();
        (redo.instances.keys().cloned().collect::<Vec<_>>(), redo.subscriptions.clone(), redo.listeners.clone())
    };
    for service in &services {
        // The latest record, read under the gate: a publication made since the snapshot above
        // was already sent on this connection and is not replaced by an older one.
        let _gate = shared.publish_gate(service).await;
        let Some(published) = shared.redo().instances.get(service).cloned() else { continue };
        let result = match published.as_slice() {
            [one] => unary.register(service, one).await,
            many => unary.batch_register(service, many).await,
        };
        if let Err(e) = result {
            tracing::warn!(%service, error = %e, "redo of a registration failed");
        }
    }
    for (service, clusters) in &subscriptions {
        match unary.subscribe(service, clusters, true).await {
            Ok(info) => {
                let _ = events.send(Event::Service(info)).await;
            }
            Err(e) => tracing::warn!(%service, error = %e, "redo of a subscription failed"),
        }
    }
    if listeners.is_empty() {
        return;
    }
    let contexts = listeners.iter().map(|(id, md5)| context(id, md5)).collect();
    match unary.listen_configs(contexts, true).await {
        Ok(changed) => {
            for (tenant, group, data_id) in changed {
                let _ = events.send(Event::ConfigChanged { tenant, group, data_id }).await;
            }
        }
        Err(e) => tracing::warn!(error = %e, "redo of config listeners failed"),
    }
}

/// Answers the server's requests until the stream ends or the server asks for a reset.
async fn pump(mut from_server: Streaming<Payload>, to_server: &mpsc::Sender<Payload>, events: &mpsc::Sender<Event>) {
    while let Ok(Some(message)) = from_server.message().await {
        let Some((kind, body)) = decode(&message) else { continue };
        let text = |field: &str| body.get(field).and_then(Value::as_str).unwrap_or_default().to_owned();
        let (answer, event) = match kind.as_str() {
            "NotifySubscriberRequest" => {
                let info = body.get("serviceInfo").cloned().map(serde_json::from_value::<ServiceInfo>);
                ("NotifySubscriberResponse", info.and_then(Result::ok).map(Event::Service))
            }
            "ConfigChangeNotifyRequest" => (
                "ConfigChangeNotifyResponse",
                Some(Event::ConfigChanged { tenant: text("tenant"), group: text("group"), data_id: text("dataId") }),
            ),
            "ClientDetectionRequest" => ("ClientDetectionResponse", None),
            "SetupAckRequest" => ("SetupAckResponse", None),
            "ConnectResetRequest" => {
                let _ = to_server.send(ok_response("ConnectResetResponse", json!({}), Some(&text("requestId")))).await;
                return;
            }
            other => {
                tracing::debug!(kind = other, "unhandled server request");
                continue;
            }
        };
        // The event first: when the server learns the push arrived, the caller has it.
        if let Some(event) = event {
            let _ = events.send(event).await;
        }
        if to_server.send(ok_response(answer, json!({}), Some(&text("requestId")))).await.is_err() {
            return;
        }
    }
}
