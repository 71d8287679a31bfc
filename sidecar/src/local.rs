//! The pod's Nacos gRPC API on localhost, multiplexed onto the upstream sessions.
//!
//! ```text
//!  local SDK ─► registry_proto::server (handshake, detection) ─► Local::handle
//!     InstanceRequest / BatchInstanceRequest ─► publications[service][owner] ─► union published
//!                                                upstream as the sidecar's own (redone on reconnect)
//!     SubscribeServiceRequest ─► one upstream subscription per service, fanned out locally
//!                                (shared with the DNS resolver's, `resolve_subscribe`)
//!     ServiceQueryRequest ─► the pushed cache when subscribed, else upstream, else the cache
//!     ConfigQueryRequest ─► upstream, remembered; the cache while the cluster is away
//!     ConfigBatchListenRequest ─► one upstream listener per config, fanned out locally
//!     anything else (persistent instances, publish, list) ─► forwarded as it came
//!  upstream events ─► cache + NotifySubscriberRequest / ConfigChangeNotifyRequest to local clients
//! ```
//!
//! Registrations belong to the sidecar's upstream connection, not to the app's local one: an
//! app's instances stay while its local connection does, and survive the sidecar reconnecting
//! to another member. Writes are recorded before they are sent, so an unreachable cluster
//! delays them (they are redone on reconnect) rather than failing them; reads fall back to the
//! failover cache, and fail with a clear error only when nothing was ever cached.

mod config;
pub mod http;
mod naming;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use registry_proto::client::{ClientError, Event};
use registry_proto::model::ServiceKey;
use registry_proto::nacos::Payload;
use registry_proto::server::{Connection, Handler};
use registry_proto::wire::REQUEST_TYPES;
use registry_proto::wire::codes::{ERR_BAD_GATEWAY, INVALID_PARAM, SERVER_ERROR};
use registry_proto::wire::frame::{error_response, payload};
use registry_proto::wire::naming::WireInstance;
use serde_json::{Value, json};

use crate::cache::{Cache, ConfigId};
use crate::metrics::Stats;
use crate::upstream::{Tagged, Upstream};

/// Who published instances through the sidecar: a local connection, or the sidecar itself
/// (the declared instance).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owner {
    /// A local SDK connection, by id.
    Conn(String),
    /// The instance declared by the environment.
    Declared,
}

/// A local subscription.
struct Subscriber {
    clusters: String,
    conn: Arc<Connection>,
}

/// What local clients hold.
#[derive(Default)]
struct State {
    publications: BTreeMap<ServiceKey, BTreeMap<Owner, Vec<WireInstance>>>,
    subscribers: BTreeMap<ServiceKey, BTreeMap<String, Subscriber>>,
    listeners: BTreeMap<ConfigId, BTreeMap<String, Arc<Connection>>>,
    /// Services the DNS resolver subscribed to: kept for the sidecar's life (local clients
    /// leaving never unsubscribe them), so names once resolved survive an outage.
    resolved: BTreeSet<ServiceKey>,
}

/// Removes `id` from the members of `key`; true when it was the last one (the entry is gone).
fn remove_member<K: Ord, V>(map: &mut BTreeMap<K, BTreeMap<String, V>>, key: &K, id: &str) -> bool {
    let Some(members) = map.get_mut(key) else { return false };
    members.remove(id);
    let last = members.is_empty();
    if last {
        map.remove(key);
    }
    last
}

/// A refused local request: an `ErrorResponse` with this code, as the server would answer.
#[derive(Debug)]
pub(crate) struct Reject {
    code: i32,
    message: String,
}

impl Reject {
    fn invalid(message: impl ToString) -> Self {
        Self { code: INVALID_PARAM, message: message.to_string() }
    }

    /// The cluster could not answer and nothing cached can stand in.
    fn unavailable(e: &ClientError) -> Self {
        Self { code: SERVER_ERROR, message: format!("registry unreachable and nothing cached: {e}") }
    }

    /// What the cluster refused, passed on with its code.
    fn from_upstream(e: &ClientError) -> Self {
        match e {
            ClientError::Rejected { code, message } => {
                Self { code: i32::try_from(*code).unwrap_or(SERVER_ERROR), message: message.clone() }
            }
            other => Self::unavailable(other),
        }
    }
}

/// Whether a failed call means "the cluster is away" (answer from the cache, redo later) rather
/// than "the cluster said no".
fn unreachable(e: &ClientError) -> bool {
    !matches!(e, ClientError::Rejected { .. } | ClientError::Unexpected { .. } | ClientError::Json(_))
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Reject> {
    serde_json::from_slice(body)
        .map_err(|e| Reject { code: ERR_BAD_GATEWAY, message: format!("malformed request body: {e}") })
}

/// The local API.
pub struct Local {
    upstream: Upstream,
    cache: Arc<Cache>,
    stats: Arc<Stats>,
    state: Mutex<State>,
    /// Serializes publishing, so the union sent upstream is always the latest one.
    publishing: tokio::sync::Mutex<()>,
    next_request_id: AtomicU64,
}

impl Local {
    /// The local API over `upstream`.
    pub fn new(upstream: Upstream, cache: Arc<Cache>, stats: Arc<Stats>) -> Self {
        Self {
            upstream,
            cache,
            stats,
            state: Mutex::default(),
            publishing: tokio::sync::Mutex::new(()),
            next_request_id: AtomicU64::new(1),
        }
    }

    /// The upstream sessions.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Plain maps, never held across an await.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn request_id(&self) -> String {
        format!("sidecar-{}", self.next_request_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Sends a request as it came on the session of `namespace`; the answer as it came. While
    /// the session reconnects it waits briefly (its request timeout), then fails: the caller
    /// answers from the cache instead.
    async fn call(&self, namespace: &str, kind: &str, body: &Value) -> Result<(String, Value), ClientError> {
        let session = self.upstream.session(namespace)?;
        let answer = match session.unary().await {
            Ok(unary) => unary.call(kind, body).await,
            Err(e) => Err(e),
        };
        if answer.is_err() {
            self.stats.upstream_failures.fetch_add(1, Ordering::Relaxed);
        }
        answer
    }

    /// Forwards a request as it came, on the session of `namespace`.
    async fn forward(&self, namespace: &str, kind: &str, body: &[u8]) -> Result<Payload, Reject> {
        let body: Value = parse(body)?;
        let (answer, body) = self.call(namespace, kind, &body).await.map_err(|e| Reject::from_upstream(&e))?;
        Ok(payload(&answer, &body))
    }

    fn failed(&self, e: &ClientError) -> Reject {
        self.stats.upstream_failures.fetch_add(1, Ordering::Relaxed);
        Reject::from_upstream(e)
    }

    /// Ends everything a local connection held: its instances, subscriptions and listeners.
    pub async fn connection_closed(&self, id: &str) {
        let owner = Owner::Conn(id.to_owned());
        let (services, dropped_subs, dropped_listens) = {
            let mut state = self.state();
            let services: Vec<ServiceKey> = state
                .publications
                .iter_mut()
                .filter_map(|(k, owners)| owners.remove(&owner).map(|_| k.clone()))
                .collect();
            let subscribed: Vec<ServiceKey> = state.subscribers.keys().cloned().collect();
            let dropped_subs: Vec<ServiceKey> =
                subscribed.into_iter().filter(|key| remove_member(&mut state.subscribers, key, id)).collect();
            let listened: Vec<ConfigId> = state.listeners.keys().cloned().collect();
            let dropped_listens: Vec<ConfigId> =
                listened.into_iter().filter(|config| remove_member(&mut state.listeners, config, id)).collect();
            (services, dropped_subs, dropped_listens)
        };
        for key in services {
            if let Err(e) = self.publish(&key).await {
                tracing::warn!(service = %key, message = %e.message, "could not withdraw a closed connection's instances");
            }
        }
        for key in dropped_subs {
            self.unsubscribe_upstream(&key).await;
        }
        for (tenant, group, data_id) in dropped_listens {
            if let Ok(session) = self.upstream.session(&tenant) {
                let _ = session.unlisten_config(&tenant, &group, &data_id).await;
            }
        }
    }

    /// Applies an upstream event: refreshes the cache and tells the local clients concerned.
    pub fn on_event(&self, (namespace, event): Tagged) {
        match event {
            Event::Service(info) => {
                let Ok(key) = ServiceKey::new(&namespace, &info.group_name, &info.name) else { return };
                // A push of a subscription just dropped (a name the resolver found empty) is
                // not kept.
                if !self.follows(&key) {
                    return;
                }
                self.cache.put_service(&key, &info);
                let targets: Vec<(String, Arc<Connection>)> = self
                    .state()
                    .subscribers
                    .get(&key)
                    .map(|subs| subs.values().map(|s| (s.clusters.clone(), Arc::clone(&s.conn))).collect())
                    .unwrap_or_default();
                for (clusters, conn) in targets {
                    let body = json!({ "headers": {}, "module": "naming", "requestId": self.request_id(),
                        "serviceInfo": naming::filtered(&info, &clusters) });
                    self.stats.local_pushes.fetch_add(1, Ordering::Relaxed);
                    let _ = conn.send(payload("NotifySubscriberRequest", &body));
                }
            }
            Event::ConfigChanged { tenant, group, data_id } => {
                let id = (tenant, group, data_id);
                let conns: Vec<Arc<Connection>> =
                    self.state().listeners.get(&id).map(|c| c.values().cloned().collect()).unwrap_or_default();
                let (tenant, group, data_id) = id;
                for conn in conns {
                    let body = json!({ "headers": {}, "module": "config", "requestId": self.request_id(),
                        "dataId": data_id, "group": group, "tenant": tenant });
                    self.stats.local_pushes.fetch_add(1, Ordering::Relaxed);
                    let _ = conn.send(payload("ConfigChangeNotifyRequest", &body));
                }
            }
            Event::Connected(_) | Event::Disconnected(_) => {}
        }
    }
}

impl Handler for Local {
    fn handles(&self, kind: &str) -> bool {
        REQUEST_TYPES.contains(&kind)
    }

    fn ready(&self) -> bool {
        true
    }

    async fn handle(&self, conn: &Arc<Connection>, kind: &str, body: &[u8]) -> Payload {
        self.stats.local_requests.fetch_add(1, Ordering::Relaxed);
        let answer = match kind {
            "InstanceRequest" => self.instance(conn, body).await,
            "BatchInstanceRequest" => self.batch(conn, body).await,
            "SubscribeServiceRequest" => self.subscribe(conn, body).await,
            "ServiceQueryRequest" => self.query(body).await,
            "ConfigQueryRequest" => self.config_query(body).await,
            "ConfigBatchListenRequest" => self.listen(conn, body).await,
            _ => {
                let namespace = parse::<Value>(body).ok().and_then(|v| {
                    v.get("namespace").or_else(|| v.get("tenant")).and_then(Value::as_str).map(str::to_owned)
                });
                self.forward(namespace.as_deref().unwrap_or_default(), kind, body).await
            }
        };
        answer.unwrap_or_else(|r| error_response(r.code, &r.message))
    }

    fn on_response(&self, _conn_id: &str, _kind: &str, _request_id: &str) {
        // Local pushes are sent once: a local client that misses one reads the cache on its
        // next query, and its connection is closed by detection if it stopped reading.
    }
}
