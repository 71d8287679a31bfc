//! Build-then-run: [`App::bind`] opens the store, starts Raft, binds every listener (port 0
//! allowed) and exposes the bound addresses; [`App::run`] serves until the shutdown future
//! resolves, then drains in-flight requests (bounded by the grace period) and stops Raft.
//! Every acknowledged write is already durable (Raft fsyncs before acknowledging), so a
//! shutdown, graceful or not, loses none of them.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::grpc::{self, GrpcState};
use crate::api::{ApiState, Services, http};
use crate::auth::Auth;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::configs::{self, ConfigService};
use crate::consistency::distro::{Distro, DistroService};
use crate::consistency::{Admin, Applier, Consistency, RaftNode, raft::RaftError};
use crate::dns::{self as dns_server, DnsServer, DnsStats};
use crate::limits::NamespaceRates;
use crate::namespaces::NamespaceService;
use crate::naming::{NamingService, checker, cleaner, health};
use crate::push::{self, PushHandle};
use crate::queues::Capacities;
use crate::state::NamingStore;
use crate::telemetry::requests::RequestMetrics;
use crate::tls::{PeerHttp, Tls, TlsMetrics};
use registry_proto::server::Connections;
use registry_proto::tls::{Backlog, Incoming, ServerIo};

/// How long startup waits for the Raft store to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The configuration was refused (checked again at start).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The Raft store failed.
    #[error(transparent)]
    Raft(#[from] RaftError),
    /// The store did not become ready in time.
    #[error("the store did not become ready within {0:?}")]
    NotReady(Duration),
    /// A listener could not be bound.
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Address tried.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS files could not be used.
    #[error(transparent)]
    Tls(#[from] registry_proto::tls::TlsError),
    /// Serving failed.
    #[error("http server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// A bound, not yet serving, server.
pub struct App {
    config: Config,
    http_listener: Incoming,
    grpc_listener: Incoming,
    grpc_state: GrpcState,
    cluster_addr: SocketAddr,
    udp_push_addr: SocketAddr,
    dns: Option<DnsServer>,
    state: ApiState,
    raft: RaftNode,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl App {
    /// Opens the store, starts Raft, binds the HTTP listener and the UDP push socket.
    pub async fn bind(config: Config) -> Result<Self, AppError> {
        let data_dir = config.server.data_dir.clone();
        let tls = Tls::load(&config.tls)?;
        if tls.http.is_some() || tls.cluster_server.is_some() {
            let (client_facing, cluster) = (tls.http.is_some(), tls.cluster_server.is_some());
            tracing::info!(client_facing, cluster, "tls on (files followed for renewals)");
        }
        std::fs::create_dir_all(&data_dir).map_err(|source| AppError::DataDir { path: data_dir.clone(), source })?;

        // Listeners first: with ephemeral ports (0) a member learns its own ports only by
        // binding, and the member table and Raft membership must carry the real ones.
        let cluster_listener =
            bind_tcp("cluster", SocketAddr::new(config.server.bind, config.server.cluster_port())).await?;
        let cluster_addr = cluster_listener.local_addr().map_err(|source| AppError::Bind {
            what: "cluster",
            addr: SocketAddr::new(config.server.bind, config.server.cluster_port()),
            source,
        })?;
        let http_addr = SocketAddr::new(config.server.bind, config.server.http_port);
        let http_listener = bind_tcp("http", http_addr).await?;
        let http_addr =
            http_listener.local_addr().map_err(|source| AppError::Bind { what: "http", addr: http_addr, source })?;
        // With an ephemeral HTTP port the gRPC port is ephemeral too (its own port 0).
        let grpc_listener = bind_tcp("grpc", SocketAddr::new(config.server.bind, config.server.grpc_port())).await?;
        let cluster_config =
            config.cluster_config().map_err(|e| AppError::Config(e.to_string()))?.bound(http_addr, cluster_addr);
        let cluster = Cluster::with_tls(cluster_config, tls.cluster_client.clone());
        // A peer counts as healthy (v1 hash, member list) if it answered within three Distro
        // verify rounds: every member calls every other at least that often.
        cluster.set_health_window(Duration::from_millis(config.distro.verify_interval_ms.saturating_mul(3)));

        let store = Arc::new(NamingStore::new());
        let queues = config.queues;
        let applier = Arc::new(Applier::with_event_capacity(Arc::clone(&store), queues.change_events));
        let raft = RaftNode::start(config.raft_config(cluster), &data_dir, Arc::clone(&applier)).await?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        // Members must answer each other before any of them can elect a leader: the cluster
        // port serves from here on, and only a standalone node waits for its store at startup
        // (members report readiness through the readiness endpoint instead).
        let distro = Distro::new(Arc::clone(&applier), raft.clone(), config.distro.clone(), shutdown.child_token());
        let mut tls_metrics = TlsMetrics::new(&tls);
        let cluster_listener =
            incoming("cluster", cluster_addr, cluster_listener, tls.cluster_server.clone(), queues.tls_backlog())?;
        if tls.cluster_server.is_some() {
            tls_metrics.listener("cluster", cluster_listener.handshakes());
        }
        tasks.spawn(serve_cluster(
            cluster_listener,
            raft.cluster_service(),
            DistroService::new(Arc::clone(&distro)),
            shutdown.child_token(),
        ));
        if !config.server.clustered() && !raft.wait_ready(READY_TIMEOUT).await {
            return Err(AppError::NotReady(READY_TIMEOUT));
        }
        distro.start(!config.server.clustered());
        let consistency = Consistency::new(Arc::clone(&applier), raft.clone())
            .with_distro(Arc::clone(&distro))
            .with_plant(config.chaos_plant);
        let auth = Arc::new(
            Auth::new(
                config.auth.clone(),
                data_dir.join(crate::auth::GENERATED_PASSWORD_FILE),
                !config.server.clustered(),
                Arc::clone(applier.accounts()),
                consistency.clone(),
            )
            .map_err(AppError::Config)?,
        );
        // Standalone, the store is ready: the administrator exists before "ready" is logged.
        // Members create it once a leader exists (run_bootstrap in `run`).
        if !config.server.clustered() {
            auth.bootstrap().await;
        }
        let namespaces =
            NamespaceService::new(Arc::clone(applier.namespaces()), Arc::clone(applier.configs()), consistency.clone());
        let naming = NamingService::new(Arc::clone(&store), consistency.clone(), config.naming.clone());
        let configs = ConfigService::new(Arc::clone(applier.configs()), consistency, config.configs.clone());

        let udp_addr = SocketAddr::new(config.server.bind, 0);
        let udp = UdpSocket::bind(udp_addr).await.map_err(|source| AppError::Bind {
            what: "udp push",
            addr: udp_addr,
            source,
        })?;
        let udp_push_addr =
            udp.local_addr().map_err(|source| AppError::Bind { what: "udp push", addr: udp_addr, source })?;
        let push: PushHandle = push::engine::spawn(
            Arc::clone(&store),
            applier.subscribe(),
            udp,
            config.push.clone(),
            queues.push_control,
            shutdown.child_token(),
        );

        // The SDK channel serves ephemeral data, which must not depend on a Raft quorum: ready
        // once the own store is replayed and the Distro snapshot loaded, leader or not.
        let (ready_raft, ready_distro) = (raft.clone(), Arc::clone(&distro));
        let ready: crate::api::ReadinessProbe = Arc::new(move || ready_raft.replayed() && ready_distro.loaded());
        let config_notify = configs::notify::spawn(
            Arc::clone(configs.hub()),
            applier.subscribe(),
            configs.config(),
            queues.config_notify_control,
            shutdown.child_token(),
        );
        let (dns, dns_stats) = bind_dns(&config, &tls, &store, &applier, &auth, &tasks, &shutdown).await?;
        if let Some(dns) = dns.as_ref().and_then(|d| d.tls_handshakes()) {
            tls_metrics.listener("dns", dns);
        }
        let http_listener = incoming("http", http_addr, http_listener, tls.http.clone(), queues.tls_backlog())?;
        let grpc_addr = SocketAddr::new(config.server.bind, config.server.grpc_port());
        let grpc_listener = incoming("grpc", grpc_addr, grpc_listener, tls.grpc.clone(), queues.tls_backlog())?;
        if tls.http.is_some() {
            tls_metrics.listener("http", http_listener.handshakes());
            tls_metrics.listener("grpc", grpc_listener.handshakes());
        }
        let mut capacities = Capacities::default();
        for (queue, capacity) in [
            ("queues.push_control", push.control_capacity()),
            ("queues.config_notify_control", config_notify.control_capacity()),
            ("queues.change_events", applier.events_capacity()),
            ("queues.raft_writes", raft.write_queue_capacity()),
            ("queues.tls_handshakes", http_listener.backlog().handshakes),
            ("queues.tls_accepted", http_listener.backlog().accepted),
            ("grpc.outbound_queue", config.grpc.outbound_queue),
            ("push.max_pending_acks", config.push.max_pending_acks),
        ] {
            capacities.set(queue, capacity);
        }
        let connections: Arc<Connections> =
            grpc::connections(naming.clone(), push.clone(), config_notify.clone(), shutdown.child_token());
        let grpc_state = GrpcState {
            naming: naming.clone(),
            configs: configs.clone(),
            config_notify: config_notify.clone(),
            push: push.clone(),
            connections: Arc::clone(&connections),
            ready: Arc::clone(&ready),
            config: Arc::new(config.grpc.clone()),
            auth: Arc::clone(&auth),
            requests: Arc::new(RequestMetrics::grpc()),
            namespace_rates: Arc::new(NamespaceRates::new(&config.limits)),
        };
        let state = ApiState::new(Services {
            naming,
            configs,
            push,
            ready,
            http_addr,
            config_notify,
            connections,
            admin: Admin::new(raft.clone(), distro),
            auth,
            namespaces,
            dns: dns_stats,
            http_requests: Arc::new(RequestMetrics::http()),
            grpc_requests: Arc::clone(&grpc_state.requests),
            namespace_rates: Arc::clone(&grpc_state.namespace_rates),
            peer_http: PeerHttp::new(&config.tls, &tls)?,
            tls: tls_metrics,
            queues: capacities,
            limits: crate::limits::configured(&config),
        });
        Ok(Self {
            config,
            http_listener,
            grpc_listener,
            grpc_state,
            cluster_addr,
            udp_push_addr,
            dns,
            state,
            raft,
            shutdown,
            tasks,
        })
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.state.http_addr
    }

    /// The bound gRPC (SDK channel) address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_listener.local_addr()
    }

    /// The bound cluster (member-to-member) address.
    pub fn cluster_addr(&self) -> SocketAddr {
        self.cluster_addr
    }

    /// The local address UDP pushes are sent from (acks come back here).
    pub fn udp_push_addr(&self) -> SocketAddr {
        self.udp_push_addr
    }

    /// The bound DNS address (UDP and TCP), when the DNS server is on.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns.as_ref().and_then(|d| d.local_addr().ok())
    }

    /// The bound DNS-over-TLS address, when on.
    pub fn dns_tls_addr(&self) -> Option<SocketAddr> {
        self.dns.as_ref().and_then(DnsServer::tls_addr)
    }

    /// Serves until `signal` resolves, then shuts down gracefully.
    pub async fn run(self, signal: impl Future<Output = ()> + Send + 'static) -> Result<(), AppError> {
        let Self { config, http_listener, grpc_listener, grpc_state, dns, state, raft, shutdown, tasks, .. } = self;
        if let Some(dns) = dns {
            dns.spawn(&tasks, shutdown.child_token());
        }

        let grpc_stop = shutdown.child_token();
        tasks.spawn(async move {
            if let Err(e) = grpc::serve(grpc_listener, grpc_state, grpc_stop).await {
                tracing::error!(error = %e, "grpc server failed");
            }
        });
        tasks.spawn(health::run_sweeper(state.naming.clone(), shutdown.child_token()));
        tasks.spawn(cleaner::run_cleaner(state.naming.clone(), shutdown.child_token()));
        tasks.spawn(checker::run(state.naming.clone(), shutdown.child_token()));
        tasks.spawn(state.configs.clone().run_history_cleaner(shutdown.child_token()));
        tasks.spawn(Arc::clone(&state.auth).run_bootstrap(shutdown.child_token()));

        let trigger = shutdown.clone();
        tokio::spawn(async move {
            signal.await;
            trigger.cancel();
        });

        let router = http::router(state, &config.http);
        let stop = shutdown.clone();
        use axum::serve::ListenerExt as _;
        // `tap_io` makes the peer address the connect info (TCP_NODELAY is already set).
        let http_listener = HttpListener(http_listener).tap_io(|_| {});
        let serve = axum::serve(http_listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move { stop.cancelled().await });
        let grace = Duration::from_millis(config.server.shutdown_grace_ms);
        let served = tokio::select! {
            r = serve => r.map_err(AppError::Serve),
            () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(?grace, "in-flight requests did not finish within the grace period");
                Ok(())
            }
        };
        shutdown.cancel();
        tasks.close();
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            tracing::warn!("background tasks did not stop within the grace period");
        }
        if let Err(e) = raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown reported an error");
        }
        tracing::info!("stopped");
        served
    }
}

/// With a DNS port configured: the records cache (following changes from here on) and the
/// bound DNS server (with its DNS-over-TLS port when configured), not yet serving.
async fn bind_dns(
    config: &Config,
    tls: &Tls,
    store: &Arc<NamingStore>,
    applier: &Applier,
    auth: &Arc<Auth>,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<(Option<DnsServer>, Option<Arc<DnsStats>>), AppError> {
    let Some(port) = config.dns.port else { return Ok((None, None)) };
    let serial = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
    let zone = registry_proto::dns::Zone::new(&config.dns.zone, config.dns.ttl_secs, serial)
        .map_err(|e| AppError::Config(e.to_string()))?;
    // Subscribed before the index is filled: a change in between is applied twice, never lost.
    let events = applier.subscribe();
    let mut cache = dns_server::Cache::new(zone, Arc::clone(store));
    if auth.client_auth_enabled() {
        if config.dns.user.is_none() {
            tracing::warn!("client auth is on and [dns] user is not set: DNS answers no service name");
        }
        cache = cache.with_access(dns_server::DnsAccess::new(Arc::clone(auth), config.dns.user.as_deref()));
    }
    let cache = Arc::new(cache);
    tasks.spawn(dns_server::cache::follow(Arc::clone(&cache), events, shutdown.child_token()));
    let stats = Arc::new(DnsStats::default());
    let addr = SocketAddr::new(config.server.bind, port);
    let mut server =
        DnsServer::bind(config.server.bind, port, config.dns.max_tcp_connections, cache, Arc::clone(&stats))
            .await
            .map_err(|source| AppError::Bind { what: "dns", addr, source })?;
    if let Some(tls_port) = config.dns.tls_port {
        // Config::validate makes sure client-facing TLS is on.
        let server_tls =
            tls.dns.clone().ok_or_else(|| AppError::Config("dns.tls_port needs client-facing TLS".into()))?;
        let addr = SocketAddr::new(config.server.bind, tls_port);
        let listener =
            incoming("dns-tls", addr, bind_tcp("dns-tls", addr).await?, Some(server_tls), config.queues.tls_backlog())?;
        server = server.with_tls(listener);
    }
    Ok((Some(server), Some(stats)))
}

async fn bind_tcp(what: &'static str, addr: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr).await.map_err(|source| AppError::Bind { what, addr, source })
}

/// A listener bound to `addr`, accepting plain or (with `tls`) TLS connections from here on,
/// its queues sized by `backlog`.
fn incoming(
    what: &'static str,
    addr: SocketAddr,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    backlog: Backlog,
) -> Result<Incoming, AppError> {
    Incoming::with_backlog(listener, tls, backlog).map_err(|source| AppError::Bind { what, addr, source })
}

/// The HTTP port's connections, plain or TLS, as axum takes them.
struct HttpListener(Incoming);

impl axum::serve::Listener for HttpListener {
    type Io = ServerIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.0.accept().await {
            Some(accepted) => accepted,
            // The accept loop only stops once this listener is dropped: nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.0.local_addr())
    }
}

/// Serves the cluster service (Raft messages, forwarded writes) until cancelled; with mutual
/// TLS only peers with a certificate from the cluster CA get this far.
async fn serve_cluster(
    listener: Incoming,
    service: crate::consistency::raft::ClusterService,
    distro: DistroService,
    shutdown: CancellationToken,
) {
    let incoming = listener.into_stream();
    let service = registry_proto::cluster::cluster_server::ClusterServer::new(service)
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
    let distro = registry_proto::cluster::distro_server::DistroServer::new(distro)
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
    let served = tonic::transport::Server::builder()
        .add_service(service)
        .add_service(distro)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled())
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "cluster server failed");
    }
}
