//! One checked instance: sleep as the schedule says, check, count, and write a flip through
//! Raft. The loop is thin; the decisions are the probe crate's (`Schedule`, `HealthTracker`,
//! the outcome table).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use registry_proto::probe::health::HealthTracker;
use registry_proto::probe::outcome::{Failure, Report};
use registry_proto::probe::schedule::{RtParams, Schedule};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::plan::Spec;
use crate::consistency::NamingCommand;
use crate::model::{InstanceKey, ServiceKey};
use crate::naming::NamingService;

/// Longest wait for a host name to resolve (instances registered by name, not IP).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(1);

/// What every task shares.
pub(crate) struct Shared {
    /// Reads the instance's current health and writes flips.
    pub(crate) naming: NamingService,
    /// Bounds the checks in flight (`max_concurrency`); a sleeping task holds none.
    pub(crate) permits: Arc<Semaphore>,
}

/// Checks `instance` of `service` per `spec` until `stop`. The reconciler (`checker.rs`) owns
/// starting and stopping; this loop only skips rounds in which it has nothing to do (another
/// member became responsible, the instance is gone) until it is told to stop.
pub(crate) async fn run(
    shared: Arc<Shared>,
    service: Arc<ServiceKey>,
    instance: InstanceKey,
    spec: Spec,
    stop: CancellationToken,
) {
    let Some(params) = RtParams::of(&spec.checker) else { return };
    let mut schedule = Schedule::new(params, rand_below);
    let mut tracker: Option<HealthTracker> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(schedule.delay()) => {}
        }
        // Checked again each round: the reconciler follows responsibility only every resync.
        if !shared.naming.responsible_for(&instance.ip, instance.port) {
            continue;
        }
        let Some(current) = shared.naming.persistent_health(&service, &instance) else { continue };
        // The registry's health is the truth (a manual write, another member's flip before a
        // responsibility change): a streak counts from it, as Nacos reads the live instance.
        let tracked = match tracker.take() {
            Some(t) if t.healthy() == current => tracker.insert(t),
            _ => tracker.insert(HealthTracker::new(current)),
        };
        let report = {
            let _permit = tokio::select! {
                () = stop.cancelled() => return,
                permit = shared.permits.acquire() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return, // closed: shutting down
                },
            };
            tokio::select! {
                () = stop.cancelled() => return,
                report = probe(&spec) => report,
            }
        };
        let Some(report) = report else { return };
        let outcome = report.outcome();
        shared.naming.health_checks().checked(&spec.checker, outcome);
        schedule.record(report.rt_sample());
        let Some(healthy) = tracked.record(outcome) else { continue };
        let cmd = NamingCommand::SetPersistentHealth {
            service: ServiceKey::clone(&service),
            instance: instance.clone(),
            healthy,
        };
        let written = match shared.naming.submit(cmd).await {
            Ok(()) => {
                tracing::info!(%service, %instance, healthy, why = ?report.result.err(), "health check flipped an instance");
                true
            }
            Err(error) => {
                // Not written: the registry keeps the old health, so the next round's streak
                // starts from it again (see above) and a lasting failure flips it later.
                tracing::warn!(%service, %instance, healthy, %error, "health check flip could not be written");
                false
            }
        };
        shared.naming.health_checks().flipped(healthy, written);
    }
}

/// Runs the check; `None` only for `NONE` (never scheduled).
async fn probe(spec: &Spec) -> Option<Report> {
    let started = Instant::now();
    match resolve(&spec.host, spec.port).await {
        Ok(target) => registry_proto::probe::check(&spec.checker, target).await,
        Err(failure) => Some(Report { result: Err(failure), elapsed: started.elapsed() }),
    }
}

/// The address to check: the IP as registered, or the first address of a host name.
async fn resolve(host: &str, port: u16) -> Result<SocketAddr, Failure> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Err(_) => Err(Failure::Timeout("host name resolution")),
        Ok(Err(error)) => Err(Failure::Unreachable(error)),
        Ok(Ok(mut addrs)) => addrs
            .next()
            .ok_or_else(|| Failure::Unreachable(io::Error::new(io::ErrorKind::NotFound, "host name has no address"))),
    }
}

/// A uniform number in `[0, bound)` for the first delay's spread (modulo bias is irrelevant
/// here); the clock when the OS has no randomness to give.
fn rand_below(bound: u64) -> u64 {
    let random = getrandom::u64().unwrap_or_else(|_| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos().into())
    });
    random % bound.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ip_literals_need_no_lookup() {
        assert_eq!(resolve("127.0.0.1", 80).await.unwrap(), SocketAddr::from(([127, 0, 0, 1], 80)));
        assert_eq!(resolve("::1", 80).await.unwrap(), "[::1]:80".parse().unwrap());
    }

    #[test]
    fn random_numbers_stay_below_their_bound() {
        assert!((0..100).all(|_| rand_below(7) < 7));
        assert_eq!(rand_below(1), 0);
    }
}
