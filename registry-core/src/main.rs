//! `registry`: the server binary. Parses flags, sets up logging, binds, logs every address,
//! serves until SIGTERM/SIGINT.

use anyhow::Context;
use clap::Parser;
use registry_core::app::App;
use registry_core::config::{Cli, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(&cli).context("configuration")?;
    registry_core::telemetry::init(&config.server.log_level);
    tracing::info!(data_dir = %config.server.data_dir.display(), node_id = config.server.node_id(), "starting");
    let app = App::bind(config).await.context("startup")?;
    tracing::info!("listening on http {}", app.http_addr());
    tracing::info!("listening on grpc {}", app.grpc_addr());
    tracing::info!("listening on cluster {}", app.cluster_addr());
    tracing::info!("listening on udp-push {}", app.udp_push_addr());
    if let Some(dns) = app.dns_addr() {
        tracing::info!("listening on dns {dns} (udp and tcp)");
    }
    if let Some(dot) = app.dns_tls_addr() {
        tracing::info!("listening on dns-tls {dot}");
    }
    tracing::info!("ready");
    app.run(shutdown_signal()).await.context("serving")?;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested");
}
