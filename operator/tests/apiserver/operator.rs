//! The operator's real controller loop, in-process against the control plane: discovery, the
//! reconcile pipeline with watches, events and status, and the HTTP registry client (members
//! answer only where the process kubelet runs registry processes behind the pods).

use std::sync::Arc;

use kube::Client;
use nacos_operator::controller::registry::HttpRegistry;
use nacos_operator::controller::server::ServerCapabilities;
use nacos_operator::controller::{self, Context, OperatorEnvironment};
use nacos_operator::metrics::Metrics;
use nacos_operator::projection::Locate;
use tokio::task::JoinHandle;

use crate::cluster_dns;

/// A running controller; stopped when dropped.
pub(crate) struct Operator {
    /// The operator's metrics (reconcile and error counts).
    pub(crate) metrics: Arc<Metrics>,
    /// What discovery found.
    pub(crate) capabilities: ServerCapabilities,
    task: JoinHandle<()>,
}

impl Operator {
    /// Discovers the server and starts the controller, as `nacos-operator run` does.
    pub(crate) async fn start(client: Client) -> Self {
        Self::start_with(client, None).await
    }

    /// [`Self::start`], reaching registries for the service projection through `locate`
    /// (a registry process on loopback: no pod of this tier runs one).
    pub(crate) async fn start_with(client: Client, locate: Option<Locate>) -> Self {
        Self::start_full(client, locate, HttpRegistry::new().expect("registry client")).await
    }

    /// [`Self::start`], reaching members by their pod DNS names through cluster DNS: registry
    /// processes run behind the pods (the process kubelet).
    /// `locate` as in [`Self::start_with`].
    pub(crate) async fn start_in_cluster(client: Client, dns: cluster_dns::Resolver, locate: Option<Locate>) -> Self {
        let registry = HttpRegistry::with_resolver(Arc::new(dns)).expect("registry client");
        Self::start_full(client, locate, registry).await
    }

    async fn start_full(client: Client, locate: Option<Locate>, registry: HttpRegistry) -> Self {
        let capabilities = ServerCapabilities::discover(&client).await.expect("discovery");
        let metrics = Arc::new(Metrics::default());
        let registry = Arc::new(registry);
        let mut ctx =
            Context::new(client, registry, OperatorEnvironment::default(), metrics.clone(), Some("test".into()))
                .with_server(capabilities);
        if let Some(locate) = locate {
            ctx = ctx.with_registry_locator(locate);
        }
        let task = tokio::spawn(async move {
            if let Err(error) = controller::run(Arc::new(ctx)).await {
                panic!("controller stopped: {error}");
            }
        });
        Self { metrics, capabilities, task }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.task.abort();
    }
}
