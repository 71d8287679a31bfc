//! `nacos-sidecar`: the per-pod agent. The pod's apps talk to a Nacos API on localhost; the
//! sidecar carries it to the cluster over its own upstream sessions (failover, redo), registers
//! the pod from its environment once the app's probe passes, keeps its health, drains it before
//! the pod stops, and answers reads from a failover cache while the cluster is away.
//!
//! ```text
//!  app (any Nacos SDK) ─► 127.0.0.1:9848 gRPC ─► local ─► upstream sessions ─► registry members
//!                      ─► 127.0.0.1:8848 HTTP ─► local::http ─► first member that answers
//!  env (webhook) ─► settings ─► declare (probe ─► publish, drain) ─► local
//!  upstream events ─► cache (memory + disk) ─► local pushes
//!  app's resolver ─► 127.0.0.1:<dns port> ─► dns: the zone from the cache, else the pod's resolver
//!  kubelet ─► :15090 admin: /live /ready /metrics /drain
//! ```

pub mod admin;
pub mod cache;
pub mod declare;
pub mod dns;
pub mod local;
pub mod metrics;
pub mod settings;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

use registry_proto::contract::ports;
use registry_proto::server::ChannelConfig;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cache::Cache;
use crate::declare::Declaration;
use crate::local::Local;
use crate::metrics::Stats;
use crate::settings::Settings;
use crate::upstream::Upstream;

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A registry address that does not resolve.
    #[error("cannot resolve registry address {0}: {1}")]
    Resolve(String, std::io::Error),
    /// A listener that cannot be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The failover cache directory cannot be used.
    #[error("failover cache: {0}")]
    Cache(std::io::Error),
    /// The upstream session cannot start.
    #[error("upstream: {0}")]
    Upstream(#[from] registry_proto::client::ClientError),
    /// The TLS files for the upstream connection cannot be used.
    #[error("upstream tls: {0}")]
    Tls(#[from] registry_proto::tls::TlsError),
}

/// A running sidecar.
pub struct Running {
    /// Local HTTP address (Open API v1/v2).
    pub local_http: SocketAddr,
    /// Local gRPC address (the SDK channel).
    pub local_grpc: SocketAddr,
    /// Admin address.
    pub admin: SocketAddr,
    /// DNS resolver address (UDP and TCP), when enabled.
    pub dns: Option<SocketAddr>,
    declaration: Option<Arc<Declaration>>,
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

/// Resolves `host:port` HTTP addresses into the members' gRPC addresses (+ 1000).
async fn grpc_addresses(servers: &[String]) -> Result<Vec<SocketAddr>, StartError> {
    let mut out = Vec::new();
    for server in servers {
        let addrs =
            tokio::net::lookup_host(server.as_str()).await.map_err(|e| StartError::Resolve(server.clone(), e))?;
        for addr in addrs {
            if let Some(grpc) = ports::grpc(addr.port()) {
                out.push(SocketAddr::new(addr.ip(), grpc));
            }
        }
    }
    Ok(out)
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|e| StartError::Bind(addr, e))
}

/// Starts every part; returns once the local and admin ports listen.
pub async fn start(settings: Settings) -> Result<Running, StartError> {
    let servers = grpc_addresses(&settings.servers).await?;
    let cache = Arc::new(Cache::open(settings.cache_dir.clone()).map_err(StartError::Cache)?);
    let stats = Arc::new(Stats::default());
    let labels = settings.labels.clone().into_iter().collect();
    let tls = match &settings.tls {
        Some(t) => Some(upstream::Tls::load(t)?),
        None => None,
    };
    let (upstream, mut events) = Upstream::new(servers, labels, tls.as_ref().map(|t| t.grpc.clone()));
    let namespace = settings.declared.as_ref().map_or_else(String::new, |d| d.service.namespace.clone());
    upstream.session(&namespace)?;
    let local = Arc::new(Local::new(upstream, Arc::clone(&cache), Arc::clone(&stats)));
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();

    let on_events = Arc::clone(&local);
    // Ends on stop: the session feeding it lives as long as `local`, which this task holds.
    let events_stop = stop.child_token();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => on_events.on_event(event),
                    None => return,
                },
                () = events_stop.cancelled() => return,
            }
        }
    });

    let http_listener = bind(settings.local_http).await?;
    let local_http = http_listener.local_addr().map_err(|e| StartError::Bind(settings.local_http, e))?;
    let http_api = local::http::HttpApi::new(
        settings.servers.clone(),
        &settings.labels,
        tls.map(|t| t.http),
        Arc::clone(&cache),
        Arc::clone(&stats),
    )
    .router();
    let http_stop = stop.child_token();
    tasks.spawn(async move {
        let served = axum::serve(http_listener, http_api).with_graceful_shutdown(http_stop.cancelled_owned()).await;
        if let Err(e) = served {
            tracing::error!(error = %e, "local HTTP API failed");
        }
    });

    let grpc_listener = bind(settings.local_grpc).await?;
    let local_grpc = grpc_listener.local_addr().map_err(|e| StartError::Bind(settings.local_grpc, e))?;
    let closer = Arc::clone(&local);
    let connections = registry_proto::server::connections(
        move |id: String| {
            let local = Arc::clone(&closer);
            async move { local.connection_closed(&id).await }
        },
        stop.child_token(),
    );
    let (channel, conns, grpc_stop) = (Arc::clone(&local), Arc::clone(&connections), stop.child_token());
    tasks.spawn(async move {
        let config = Arc::new(ChannelConfig::default());
        let grpc_listener = match registry_proto::tls::Incoming::new(grpc_listener, None) {
            Ok(l) => l,
            Err(e) => return tracing::error!(error = %e, "local gRPC API failed"),
        };
        if let Err(e) = registry_proto::server::serve(grpc_listener, channel, conns, config, grpc_stop).await {
            tracing::error!(error = %e, "local gRPC API failed");
        }
    });

    let declaration = settings
        .declared
        .clone()
        .map(|d| Arc::new(Declaration::new(d, Arc::clone(&local), Arc::clone(&stats), settings.drain)));
    if let Some(declaration) = &declaration {
        tasks.spawn(Arc::clone(declaration).run(stop.child_token()));
    }

    let dns = match &settings.dns {
        Some(dns) => {
            let sockets = dns::server::bind(dns.addr).await.map_err(|e| StartError::Bind(dns.addr, e))?;
            let bound = sockets.0.local_addr().map_err(|e| StartError::Bind(dns.addr, e))?;
            let forwarder = dns::forward::Forwarder::from_resolv_conf(&dns.resolv_conf, bound);
            let resolver = Arc::new(dns::Resolver::new(
                dns.zone.clone(),
                Arc::clone(&cache),
                Arc::clone(&local),
                forwarder,
                Arc::clone(&stats),
            ));
            dns::server::spawn(sockets, resolver, &mut tasks, stop.child_token());
            Some(bound)
        }
        None => None,
    };

    let admin_listener = bind(settings.admin).await?;
    let admin = admin_listener.local_addr().map_err(|e| StartError::Bind(settings.admin, e))?;
    let router = admin::router(admin::Admin {
        local: Arc::clone(&local),
        connections,
        cache,
        stats,
        declaration: declaration.clone(),
    });
    let admin_stop = stop.child_token();
    tasks.spawn(async move {
        let served = axum::serve(admin_listener, router).with_graceful_shutdown(admin_stop.cancelled_owned()).await;
        if let Err(e) = served {
            tracing::error!(error = %e, "admin port failed");
        }
    });
    let dns_addr = dns.map_or_else(|| "off".to_owned(), |a| a.to_string());
    tracing::info!(http = %local_http, grpc = %local_grpc, %admin, dns = %dns_addr, "sidecar listening");
    Ok(Running { local_http, local_grpc, admin, dns, declaration, stop, tasks })
}

impl Running {
    /// Drains the declared instance (if any), then stops everything.
    pub async fn shutdown(mut self) {
        if let Some(declaration) = &self.declaration {
            declaration.drain().await;
        }
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}
