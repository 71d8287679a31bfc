//! Logging through `tracing`: `RUST_LOG` when set, else the configured level; process load
//! figures for the operator endpoints (`load`).

pub mod load;
pub mod requests;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber (once; later calls are ignored). A bare level (`info`)
/// keeps openraft's chatty per-election logs at `warn`; a full filter is used as given.
pub fn init(level: &str) {
    let directive = if level.contains('=') { level.to_owned() } else { format!("{level},openraft=warn") };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directive));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .with_target(false)
        .try_init();
}
