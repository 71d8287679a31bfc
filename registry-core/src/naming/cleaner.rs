//! Empty-service cleanup (spec §13.3): a service nobody publishes into is removed once it has
//! been empty for the expiry time.
//!
//! Deliberate difference from Nacos: services that carry metadata (created or updated through
//! the service API) are kept until deleted. Nacos 2.x also deletes those after a minute, which
//! surprises users who create a service before deploying its instances.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::NamingService;
use crate::consistency::NamingCommand;
use crate::model::ServiceKey;

/// One pass: removes every service empty for at least `expire`. Returns how many.
pub async fn clean_once(naming: &NamingService, expire: Duration) -> usize {
    let now = Instant::now();
    let mut removed = 0;
    for view in naming.store.all_views() {
        if !view.is_empty() || view.metadata.is_some() || now.saturating_duration_since(view.last_changed) < expire {
            continue;
        }
        let cmd = if view.has_persistent_part {
            NamingCommand::RemoveEmptyPersistentService { service: ServiceKey::clone(&view.key) }
        } else {
            NamingCommand::RemoveEmptyService { service: ServiceKey::clone(&view.key) }
        };
        match naming.submit(cmd).await {
            Ok(()) => {
                tracing::debug!(service = %view.key, "empty service removed");
                removed += 1;
            }
            Err(e) => tracing::warn!(service = %view.key, error = %e, "empty service cleanup failed"),
        }
    }
    removed
}

/// Runs [`clean_once`] periodically until cancelled.
pub async fn run_cleaner(naming: NamingService, shutdown: CancellationToken) {
    let cfg = naming.config().clone();
    let mut ticker = tokio::time::interval(Duration::from_millis(cfg.empty_service_clean_interval_ms.max(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let expire = Duration::from_millis(cfg.empty_service_expire_ms);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => { clean_once(&naming, expire).await; }
        }
    }
}
