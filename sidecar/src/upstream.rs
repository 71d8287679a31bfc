//! The sidecar's way to the cluster: one [`Session`] (the shared client: failover between
//! members, reconnect with backoff, redo) per Nacos namespace the pod uses, because naming pushes
//! do not name their namespace and a session's subscriptions must be unambiguous. Every session
//! carries the pod's labels as connection labels, so label-based gray configs reach this pod.
//! Events of all sessions arrive on one channel, tagged with their namespace.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use registry_proto::client::{ClientError, Event, Session, SessionConfig, Setup};
use registry_proto::contract::tls::{ALPN_H2, ALPN_HTTP1};
use registry_proto::model::key::DEFAULT_NAMESPACE;
use registry_proto::tls::{self, Connector, TlsError};
use tokio::sync::mpsc;

use crate::settings::UpstreamTls;

/// `clientVersion` the sidecar announces upstream.
pub const CLIENT_VERSION: &str = concat!("Nacos-Rust-Sidecar:v", env!("CARGO_PKG_VERSION"));

/// Bound on one upstream call.
const UPSTREAM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// An event of the namespace's session.
pub type Tagged = (String, Event);

/// Tagged events not yet taken by the cache. When full, each session's forwarder waits, its
/// session's own event queue fills and its stream from the registry is read no further
/// (backpressure up to the registry, which closes a connection whose queue stays full).
const EVENTS_QUEUE: usize = 1024;

/// Tags one session's events with its namespace onto the shared queue, counting connected
/// sessions; waits while the shared queue is full. Ends with the session or the receiver.
async fn forward(
    namespace: String,
    mut events: mpsc::Receiver<Event>,
    tagged: mpsc::Sender<Tagged>,
    connected: Arc<AtomicUsize>,
) {
    while let Some(event) = events.recv().await {
        match &event {
            Event::Connected(_) => {
                connected.fetch_add(1, Ordering::Relaxed);
            }
            Event::Disconnected(_) => {
                connected.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
        if tagged.send((namespace.clone(), event)).await.is_err() {
            return;
        }
    }
}

/// TLS to the registry: one client config per protocol, the files followed on change.
#[derive(Clone)]
pub struct Tls {
    /// gRPC sessions (ALPN `h2`), checking the configured server name.
    pub grpc: Connector,
    /// The HTTP pass-through (ALPN `http/1.1`).
    pub http: Arc<rustls::ClientConfig>,
}

impl Tls {
    /// Reads the files named by `settings`.
    pub fn load(settings: &UpstreamTls) -> Result<Self, TlsError> {
        let identity = settings.identity.as_ref().map(tls::Credentials::load).transpose()?;
        let ca = tls::TrustAnchors::load(&settings.ca)?;
        let grpc = tls::client_config(&ca, identity.as_ref(), &[ALPN_H2])?;
        let http = tls::client_config(&ca, identity.as_ref(), &[ALPN_HTTP1])?;
        Ok(Self { grpc: Connector::new(grpc).with_server_name(&settings.server_name), http })
    }
}

/// The sessions.
pub struct Upstream {
    servers: Vec<SocketAddr>,
    tls: Option<Connector>,
    labels: HashMap<String, String>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    events: mpsc::Sender<Tagged>,
    connected: Arc<AtomicUsize>,
}

impl Upstream {
    /// No session yet; events of every session later started go to the returned receiver.
    /// With `tls`, every session connects through it.
    pub fn new(
        servers: Vec<SocketAddr>,
        labels: HashMap<String, String>,
        tls: Option<Connector>,
    ) -> (Self, mpsc::Receiver<Tagged>) {
        let (events, rx) = mpsc::channel(EVENTS_QUEUE);
        let connected = Arc::new(AtomicUsize::new(0));
        let upstream = Self { servers, tls, labels, sessions: Mutex::default(), events, connected };
        (upstream, rx)
    }

    /// The session of `namespace` (`""` is `public`), started on first use.
    pub fn session(&self, namespace: &str) -> Result<Arc<Session>, ClientError> {
        let namespace = if namespace.is_empty() { DEFAULT_NAMESPACE } else { namespace };
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(session) = sessions.get(namespace) {
            return Ok(Arc::clone(session));
        }
        let mut setup = Setup::new(CLIENT_VERSION, "naming,config");
        setup.tenant = namespace.to_owned();
        // Shorter than a local SDK's own 3 s: a hung member yields a cache answer or a clear
        // error before the local caller gives up.
        setup.request_timeout = UPSTREAM_TIMEOUT;
        setup.labels.extend(self.labels.clone());
        setup.tls.clone_from(&self.tls);
        let mut config = SessionConfig::new(self.servers.clone(), setup);
        // Calls made while reconnecting are recorded and redone; they need not wait long.
        config.request_timeout = std::time::Duration::from_millis(500);
        let (session, events) = Session::start(config)?;
        let session = Arc::new(session);
        sessions.insert(namespace.to_owned(), Arc::clone(&session));
        tokio::spawn(forward(namespace.to_owned(), events, self.events.clone(), Arc::clone(&self.connected)));
        Ok(session)
    }

    /// How many sessions are connected right now.
    pub fn connected(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }

    /// How many sessions exist, and how many connections they set up in total.
    pub fn sessions(&self) -> (usize, u64) {
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        (sessions.len(), sessions.values().map(|s| s.connects()).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_events_queue_holds_the_session_back_instead_of_growing() {
        let addr: SocketAddr = "127.0.0.1:9848".parse().unwrap();
        let (session_tx, session_rx) = mpsc::channel(8);
        let (tagged_tx, mut tagged_rx) = mpsc::channel(2);
        let connected = Arc::new(AtomicUsize::new(0));
        let forwarder = tokio::spawn(forward("ns".into(), session_rx, tagged_tx, Arc::clone(&connected)));
        for _ in 0..8 {
            session_tx.send(Event::Connected(addr)).await.unwrap();
        }
        // The forwarder fills the shared queue (2), holds one it cannot place, and takes no more:
        // the rest stays in the session's own bounded queue.
        let held = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while connected.load(Ordering::Relaxed) < 3 {
                tokio::task::yield_now().await;
            }
        });
        held.await.expect("the forwarder took three events");
        assert_eq!(session_tx.capacity(), 3, "five events wait in the session's queue");
        assert!(session_tx.try_send(Event::Connected(addr)).is_ok());
        // Draining lets everything through, in order and tagged.
        for _ in 0..9 {
            let (namespace, event) = tagged_rx.recv().await.unwrap();
            assert!(namespace == "ns" && matches!(event, Event::Connected(_)));
        }
        assert_eq!(connected.load(Ordering::Relaxed), 9);
        drop(session_tx);
        forwarder.await.unwrap();
    }
}
