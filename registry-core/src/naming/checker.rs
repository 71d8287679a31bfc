//! Server-side health checks of persistent instances (spec §13.4): the member responsible for an
//! instance's `ip:port` (the one its v1 client would belong to, Nacos' Distro hash over the
//! healthy members; standalone: this node) probes it with its cluster's checker, and writes a
//! flip through Raft with the same command as the manual health API, so every member pushes it.
//! An unhealthy persistent instance is marked, never removed.
//!
//! ```text
//!  ChangeEvent (service changed) ──┐
//!  resync tick (responsibility,    ├─► reconciler: wanted = plan::targets(view), responsible here
//!    peer health) / event lag ─────┘        │ diff with the running tasks: start new ones,
//!                                           │ stop those gone or changed (checker, port)
//!                                           ▼
//!   task per instance: sleep(Schedule) → permit (max_concurrency) → probe → stats
//!                      → HealthTracker → flip? → SetPersistentHealth through Raft
//! ```
//!
//! Layout: `plan.rs` decides what is checked and how (pure), `task.rs` is one instance's loop,
//! `stats.rs` the counters for `/metrics`. Probes, outcomes, tracker and schedule are the shared
//! crate's (`registry_proto::probe`), which the sidecar uses too.

mod plan;
mod stats;
mod task;

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{Semaphore, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::NamingService;
use crate::model::{ChangeEvent, InstanceKey, ServiceKey};
use crate::state::ServiceView;
use plan::Spec;
pub use stats::CheckStats;

/// The `[naming.health_check]` section.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckerConfig {
    /// Whether this member probes persistent instances at all. Nacos: on.
    pub enabled: bool,
    /// Checks in flight at once; the others wait for their turn (their schedule slips).
    pub max_concurrency: usize,
    /// How often the set of checked instances is recomputed from scratch (ms): responsibility
    /// follows peer health, which changes without a service change.
    pub resync_interval_ms: u64,
}

impl Default for CheckerConfig {
    fn default() -> Self {
        Self { enabled: true, max_concurrency: 64, resync_interval_ms: 5_000 }
    }
}

// === impl NamingService (what the checker reads and writes) ===

impl NamingService {
    /// Counters of the checks this member runs.
    pub fn health_checks(&self) -> &Arc<CheckStats> {
        &self.checks
    }

    /// Whether this member checks the instance at `ip:port`: the member its v1 client belongs to.
    pub(crate) fn responsible_for(&self, ip: &str, port: u16) -> bool {
        self.consistency.responsible_for(&format!("{ip}:{port}"))
    }

    /// The current health of a persistent instance; `None` when it is not registered (any more).
    pub(crate) fn persistent_health(&self, service: &ServiceKey, instance: &InstanceKey) -> Option<bool> {
        let view = self.store.view(service)?;
        view.find(&instance.ip, instance.port, &instance.cluster).filter(|i| !i.ephemeral).map(|i| i.healthy)
    }
}

/// Runs the checks this member is responsible for until `shutdown`, then waits for the tasks to
/// finish their check in flight (each is bounded by its probe's timeouts).
pub async fn run(naming: NamingService, shutdown: CancellationToken) {
    let config = naming.config().health_check.clone();
    if !config.enabled {
        tracing::info!("health checks of persistent instances are disabled");
        return;
    }
    let mut events = naming.consistency.subscribe();
    let shared = Arc::new(task::Shared {
        naming: naming.clone(),
        permits: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
    });
    let mut reconciler = Reconciler { shared, running: HashMap::new(), tasks: TaskTracker::new(), shutdown };
    let shutdown = reconciler.shutdown.clone();
    let mut resync = tokio::time::interval(Duration::from_millis(config.resync_interval_ms.max(1)));
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = resync.tick() => reconciler.all(),
            event = events.recv() => {
                if reconciler.changed(event, &mut events).is_break() {
                    break;
                }
            }
        }
    }
    reconciler.stop().await;
}

/// A running check.
struct Running {
    spec: Spec,
    stop: CancellationToken,
}

/// The tasks this member runs, by service then instance; only the reconcile loop touches it.
struct Reconciler {
    shared: Arc<task::Shared>,
    running: HashMap<Arc<ServiceKey>, HashMap<InstanceKey, Running>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Reconciler {
    /// Reacts to a change event. Bursts (a batch of registrations) touch a service many times:
    /// what is already queued is gathered, and each service reconciled once. `Break` when the
    /// writer is gone (shutting down).
    fn changed(
        &mut self,
        first: Result<ChangeEvent, RecvError>,
        events: &mut broadcast::Receiver<ChangeEvent>,
    ) -> ControlFlow<()> {
        let mut dirty = HashSet::new();
        let mut next = first;
        loop {
            match next {
                Ok(ChangeEvent::ServiceChanged { key, .. }) => {
                    dirty.insert(key);
                }
                Ok(ChangeEvent::ConfigChanged { .. }) => {}
                Err(RecvError::Lagged(_)) => {
                    self.all();
                    return ControlFlow::Continue(());
                }
                Err(RecvError::Closed) => return ControlFlow::Break(()),
            }
            next = match events.try_recv() {
                Ok(event) => Ok(event),
                Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
                Err(TryRecvError::Empty) => break,
            };
        }
        for key in dirty {
            let view = self.shared.naming.view(&key);
            self.service(key, view.as_deref());
        }
        ControlFlow::Continue(())
    }

    /// Recomputes every service's checks (start, responsibility changes, missed events).
    fn all(&mut self) {
        let views = self.shared.naming.store.all_views();
        let mut seen = HashSet::with_capacity(views.len());
        for view in &views {
            if view.has_persistent_part || self.running.contains_key(&view.key) {
                self.service(Arc::clone(&view.key), Some(view));
            }
            seen.insert(Arc::clone(&view.key));
        }
        let gone: Vec<Arc<ServiceKey>> = self.running.keys().filter(|k| !seen.contains(*k)).cloned().collect();
        for key in gone {
            self.service(key, None);
        }
    }

    /// Makes the running checks of one service what its view asks for.
    fn service(&mut self, key: Arc<ServiceKey>, view: Option<&ServiceView>) {
        let naming = &self.shared.naming;
        let wanted: HashMap<InstanceKey, Spec> = match view {
            Some(view) if view.has_persistent_part => plan::targets(view.instances(), view.metadata.as_ref())
                .filter(|(instance, _)| naming.responsible_for(&instance.ip, instance.port))
                .collect(),
            _ => HashMap::new(),
        };
        if wanted.is_empty() && !self.running.contains_key(&key) {
            return;
        }
        let running = self.running.entry(Arc::clone(&key)).or_default();
        running.retain(|instance, task| {
            let keep = wanted.get(instance) == Some(&task.spec);
            if !keep {
                task.stop.cancel();
            }
            keep
        });
        for (instance, spec) in wanted {
            if running.contains_key(&instance) {
                continue;
            }
            let stop = self.shutdown.child_token();
            self.tasks.spawn(task::run(
                Arc::clone(&self.shared),
                Arc::clone(&key),
                instance.clone(),
                spec.clone(),
                stop.clone(),
            ));
            running.insert(instance, Running { spec, stop });
        }
        if running.is_empty() {
            self.running.remove(&key);
        }
        let count = self.running.values().map(HashMap::len).sum();
        naming.health_checks().set_tasks(count);
    }

    /// Stops every task and waits for them.
    async fn stop(self) {
        for task in self.running.values().flat_map(HashMap::values) {
            task.stop.cancel();
        }
        self.shared.naming.health_checks().set_tasks(0);
        self.shared.permits.close();
        self.tasks.close();
        self.tasks.wait().await;
    }
}
