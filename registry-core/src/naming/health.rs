//! v1 heartbeat liveness (spec §13.1): every HTTP-registered ephemeral instance must beat;
//! without beats for its heartbeat timeout (15 s) it turns unhealthy, for its delete timeout
//! (30 s) it is removed. Both timeouts come from the instance's preserved metadata keys.
//!
//! The tracker lives here, beside the index, so beats never touch the single writer unless the
//! health actually flips. The sweeper is a thin loop around the pure [`verdict`].

use crate::state::{FastDashMap, FastMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::NamingService;
use crate::consistency::NamingCommand;
use crate::model::{ClientId, ServiceKey};

/// What the tracker knows of one heartbeat client's instance in one service. Not which
/// instance it is: a v1 client publishes exactly one, and the rare paths that need its key
/// (recovery, marking unhealthy) read it from the index instead of every entry carrying a copy.
/// Kept to 24 bytes (one per ephemeral HTTP instance): times are milliseconds since the
/// tracker's epoch rather than 16-byte `Instant`s, timeouts are `u32` milliseconds (49 days).
#[derive(Debug, Clone)]
struct BeatState {
    /// Last beat, in ms since [`BeatTracker::epoch`].
    last_beat_ms: u64,
    /// Unhealthy after this much silence (ms), from the instance's metadata at registration.
    timeout_ms: u32,
    /// Removed after this much silence (ms).
    delete_ms: u32,
    healthy: bool,
}

/// Last beat per (service, `ip:port#true` client). Two levels, service then client, so a
/// service key (three names) is stored once per service rather than once per instance; the
/// outer map is sharded, so beats into different services do not contend on one lock.
#[derive(Debug)]
pub struct BeatTracker {
    services: FastDashMap<ServiceKey, FastMap<ClientId, BeatState>>,
    /// What beat times are counted from.
    epoch: Instant,
    /// Instances the sweeper decided to remove since start: lets a test show that no second
    /// member expired the same instance without waiting for one to.
    expired: AtomicU64,
}

impl Default for BeatTracker {
    fn default() -> Self {
        Self { services: FastDashMap::default(), epoch: Instant::now(), expired: AtomicU64::new(0) }
    }
}

/// What a beat found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeatOutcome {
    /// Known and healthy: the beat was recorded.
    Alive,
    /// Known and unhealthy: the beat was recorded and the instance must be marked healthy.
    Recovered,
    /// Not known here.
    Unknown,
}

impl BeatTracker {
    /// Instances this member's sweeper removed for silence since start (counted when it
    /// decides, before the removal is applied).
    pub fn expired(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }

    /// Starts tracking an instance just registered (counts as a beat). Its timeouts are taken
    /// from its metadata now, so a sweep looks an instance up only to change its health.
    pub fn track(&self, service: &ServiceKey, client: &ClientId, instance: &crate::model::Instance) {
        let state = BeatState {
            last_beat_ms: self.millis(Instant::now()),
            healthy: instance.healthy,
            timeout_ms: u32::try_from(instance.heart_beat_timeout_ms()).unwrap_or(u32::MAX),
            delete_ms: u32::try_from(instance.ip_delete_timeout_ms()).unwrap_or(u32::MAX),
        };
        // Look up before `entry`: the common case (known service) needs no key copy.
        if let Some(mut clients) = self.services.get_mut(service) {
            clients.insert(client.clone(), state);
            return;
        }
        self.services.entry(service.clone()).or_default().insert(client.clone(), state);
    }

    /// Stops tracking (deregistered or expired).
    pub fn untrack(&self, service: &ServiceKey, client: &ClientId) {
        let now_empty = match self.services.get_mut(service) {
            Some(mut clients) => {
                clients.remove(client);
                clients.is_empty()
            }
            None => false,
        };
        if now_empty {
            // Re-checked under the shard's write lock: a `track` may have come in between.
            self.services.remove_if(service, |_, clients| clients.is_empty());
        }
    }

    /// Records a beat.
    pub fn beat(&self, service: &ServiceKey, client: &ClientId) -> BeatOutcome {
        let Some(mut clients) = self.services.get_mut(service) else { return BeatOutcome::Unknown };
        let Some(state) = clients.get_mut(client) else { return BeatOutcome::Unknown };
        state.last_beat_ms = self.millis(Instant::now());
        if state.healthy {
            BeatOutcome::Alive
        } else {
            state.healthy = true;
            BeatOutcome::Recovered
        }
    }

    /// Milliseconds from the epoch to `t`.
    fn millis(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Number of tracked instances.
    pub fn len(&self) -> usize {
        self.services.iter().map(|e| e.value().len()).sum()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.services.iter().all(|e| e.value().is_empty())
    }

    /// What each silent instance needs, decided in one pass over the map (no copies of the
    /// healthy majority); unhealthy marks are recorded in the tracker at once.
    fn due(&self, now: Instant) -> Vec<(ServiceKey, ClientId, Verdict, u64)> {
        let mut out = Vec::new();
        let now_ms = self.millis(now);
        for mut e in self.services.iter_mut() {
            let (service, clients) = e.pair_mut();
            for (client, state) in clients.iter_mut() {
                let silent = now_ms.saturating_sub(state.last_beat_ms);
                let v = verdict(silent, state.healthy, state.timeout_ms.into(), state.delete_ms.into());
                if v == Verdict::MarkUnhealthy {
                    state.healthy = false;
                }
                if v != Verdict::Keep {
                    out.push((service.clone(), client.clone(), v, silent));
                }
            }
        }
        out
    }

    #[cfg(test)]
    fn set_healthy(&self, service: &ServiceKey, client: &ClientId, healthy: bool) {
        if let Some(mut clients) = self.services.get_mut(service)
            && let Some(s) = clients.get_mut(client)
        {
            s.healthy = healthy;
        }
    }
}

/// What the sweeper does with one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Beating in time (or already unhealthy and not yet expired).
    Keep,
    /// Silent past the heartbeat timeout: mark unhealthy and push.
    MarkUnhealthy,
    /// Silent past the delete timeout: remove.
    Remove,
}

/// Decides an instance's fate from how long it has been silent.
pub fn verdict(silent_ms: u64, healthy: bool, heart_beat_timeout_ms: u64, ip_delete_timeout_ms: u64) -> Verdict {
    if silent_ms > ip_delete_timeout_ms {
        Verdict::Remove
    } else if healthy && silent_ms > heart_beat_timeout_ms {
        Verdict::MarkUnhealthy
    } else {
        Verdict::Keep
    }
}

/// One pass over every tracked instance. Returns how many instances changed.
pub async fn sweep(naming: &NamingService) -> usize {
    let tracker = naming.beats();
    let mut changed = 0;
    for (service, client, v, silent) in tracker.due(Instant::now()) {
        if v != Verdict::Keep && !naming.owns_client(&client) {
            // The client wrote through another member since: its liveness runs there now.
            tracing::debug!(%service, %client, "beat client owned by another member: no longer watched here");
            tracker.untrack(&service, &client);
            continue;
        }
        let cmd = match v {
            Verdict::Keep => continue,
            Verdict::MarkUnhealthy => {
                let Some(instance) = naming.beat_instance(&service, &client) else {
                    // No longer published (withdrawn through another path): nothing to watch.
                    tracker.untrack(&service, &client);
                    continue;
                };
                tracing::info!(%service, %client, silent_ms = silent, "heartbeat timeout: instance marked unhealthy");
                NamingCommand::SetEphemeralHealth {
                    service: service.clone(),
                    client: client.clone(),
                    instance,
                    healthy: false,
                }
            }
            Verdict::Remove => {
                tracing::info!(%service, %client, silent_ms = silent, "heartbeat expired: instance removed");
                tracker.expired.fetch_add(1, Ordering::Relaxed);
                tracker.untrack(&service, &client);
                NamingCommand::UnpublishEphemeral { service: service.clone(), client: client.clone() }
            }
        };
        match naming.submit(cmd).await {
            Ok(()) => changed += 1,
            Err(e) => tracing::warn!(%service, %client, error = %e, "heartbeat sweep could not apply"),
        }
    }
    changed
}

/// Runs [`sweep`] every `beat_check_interval_ms` until cancelled.
pub async fn run_sweeper(naming: NamingService, shutdown: CancellationToken) {
    let period = Duration::from_millis(naming.config().beat_check_interval_ms.max(1));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => { sweep(&naming).await; }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_follows_the_5_15_30_contract() {
        assert_eq!(verdict(4_000, true, 15_000, 30_000), Verdict::Keep);
        assert_eq!(verdict(15_000, true, 15_000, 30_000), Verdict::Keep);
        assert_eq!(verdict(15_001, true, 15_000, 30_000), Verdict::MarkUnhealthy);
        assert_eq!(verdict(20_000, false, 15_000, 30_000), Verdict::Keep);
        assert_eq!(verdict(30_001, false, 15_000, 30_000), Verdict::Remove);
        assert_eq!(verdict(30_001, true, 15_000, 30_000), Verdict::Remove);
    }

    #[tokio::test(start_paused = true)]
    async fn tracker_reports_recovery_once() {
        let t = BeatTracker::default();
        let s = ServiceKey::new("public", "DEFAULT_GROUP", "s").unwrap();
        let c = ClientId::ip_port("1.1.1.1", 80, true);
        assert_eq!(t.beat(&s, &c), BeatOutcome::Unknown);
        t.track(&s, &c, &crate::model::Instance::new("1.1.1.1", 80, "DEFAULT", true));
        assert_eq!(t.beat(&s, &c), BeatOutcome::Alive);
        t.set_healthy(&s, &c, false);
        assert_eq!(t.beat(&s, &c), BeatOutcome::Recovered);
        assert_eq!(t.beat(&s, &c), BeatOutcome::Alive);
    }
}
