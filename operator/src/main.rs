//! `nacos-operator`: command-line front end of the operator library.

use std::future::IntoFuture;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use nacos_operator::controller::registry::HttpRegistry;
use nacos_operator::controller::server::{KubeVersion, ServerCapabilities};
use nacos_operator::controller::{self, Context, OperatorEnvironment};
use nacos_operator::metrics::{self, Metrics};

/// Kubernetes operator for Nacos-compatible registry clusters.
#[derive(Debug, Parser)]
#[command(name = "nacos-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the NacosCluster CustomResourceDefinition as YAML (the content of
    /// crds/nacoscluster.yaml).
    Crd,
    /// Run the controller (and the metrics/health server) until SIGTERM.
    Run(Box<RunArgs>),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Address of the HTTP server serving /metrics and /healthz.
    #[arg(long, env = "NACOS_OPERATOR_METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    metrics_address: SocketAddr,
    /// DNS domain of the Kubernetes cluster (members' peer DNS names end with it).
    #[arg(long, env = "NACOS_OPERATOR_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// Registry image for clusters that name none (default: the release matching this operator).
    #[arg(long, env = "NACOS_OPERATOR_REGISTRY_IMAGE")]
    registry_image: Option<String>,
    /// Sidecar image for clusters that name none (default: the release matching this operator).
    #[arg(long, env = "NACOS_OPERATOR_SIDECAR_IMAGE")]
    sidecar_image: Option<String>,
    /// Name of this operator replica in events (the chart passes the pod name).
    #[arg(long, env = "POD_NAME")]
    instance: Option<String>,
    /// The sidecar-injection admission webhook.
    #[command(flatten)]
    webhook: nacos_operator::webhook::WebhookConfig,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crd => print_crd(),
        Command::Run(args) => match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime.block_on(run(*args)),
            Err(error) => fail(&error),
        },
    }
}

fn print_crd() -> ExitCode {
    match nacos_operator::crd::crd_yaml() {
        Ok(yaml) => match std::io::stdout().lock().write_all(yaml.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(&error),
        },
        Err(error) => fail(&error),
    }
}

async fn run(args: RunArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let defaults = OperatorEnvironment::default();
    let env = OperatorEnvironment {
        cluster_domain: args.cluster_domain,
        registry_image: args.registry_image.unwrap_or(defaults.registry_image),
        sidecar_image: args.sidecar_image.unwrap_or(defaults.sidecar_image),
    };
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(error) => return fail(&error),
    };
    let registry = match HttpRegistry::new() {
        Ok(registry) => registry,
        Err(error) => return fail(&error),
    };
    // Once per client: objects are built for the server this client talks to.
    let capabilities = match ServerCapabilities::discover(&client).await {
        Ok(capabilities) => capabilities,
        Err(error) => return fail(&error),
    };
    tracing::info!(server = %capabilities, "API server discovered");
    if capabilities.version < KubeVersion::OLDEST_SUPPORTED {
        tracing::warn!(
            server = %capabilities.version, oldest_supported = %KubeVersion::OLDEST_SUPPORTED,
            "this Kubernetes is older than the operator supports; objects may be refused"
        );
    }
    let metrics = Arc::new(Metrics::default());
    let listener = match tokio::net::TcpListener::bind(args.metrics_address).await {
        Ok(listener) => listener,
        Err(error) => return fail(&error),
    };
    tracing::info!(address = %args.metrics_address, "serving /metrics and /healthz");
    let server = axum::serve(listener, metrics::router(metrics.clone())).into_future();
    // The webhook serves beside the controller; when either ends, the token stops the other's
    // in-flight admissions gracefully.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let webhook = nacos_operator::webhook::serve(args.webhook, env.clone(), client.clone(), shutdown.clone());
    let ctx = Arc::new(Context::new(client, Arc::new(registry), env, metrics, args.instance).with_server(capabilities));

    let _stop_webhook = shutdown.drop_guard();
    tokio::select! {
        result = webhook => match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(&error),
        },
        result = controller::run(ctx) => match result {
            Ok(()) => {
                tracing::info!("controller stopped");
                ExitCode::SUCCESS
            }
            Err(error) => fail(&error),
        },
        result = server => match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(&error),
        },
    }
}

fn fail(error: &(dyn std::error::Error + 'static)) -> ExitCode {
    eprintln!("nacos-operator: {}", snafu::Report::from_error(error));
    ExitCode::FAILURE
}
