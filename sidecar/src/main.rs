//! `nacos-sidecar`: configured by the environment the operator's webhook injects (each also a
//! flag, see `--help`); on SIGTERM or SIGINT it drains the declared instance, then exits.

use clap::Parser;
use nacos_sidecar::settings::{Args, Settings};
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let settings = Settings::resolve(Args::parse(), |name| std::env::var(name).ok())?;
    let running = nacos_sidecar::start(settings).await?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("stopping: draining first");
    running.shutdown().await;
    Ok(())
}
