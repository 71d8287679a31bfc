//! The instance declared by the environment: registered once the app's probe first passes,
//! kept healthy or unhealthy by the probe (Nacos' thresholds and scheduling, shared with the
//! server's checker), and drained on request: published with weight 0 first, so consumers'
//! load balancers stop choosing it while the app still serves, then withdrawn. (Weight 0, not
//! `enabled=false`: a disabled instance vanishes from queries and pushes at once, so consumers
//! could not tell a drain from a removal.)
//!
//! ```text
//!  Waiting ──probe ok──► Serving{healthy} ──flip (3 in a row / fail now)──► re-published
//!                            │ drain (/drain, SIGTERM)
//!                            ▼
//!                        Draining (weight 0 upstream) ──window──► Drained (withdrawn)
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use registry_proto::contract::sidecar::HEALTH_REPORTED_METADATA;
use registry_proto::probe::checker::{HealthChecker, HttpChecker};
use registry_proto::probe::health::HealthTracker;
use registry_proto::probe::outcome::Outcome;
use registry_proto::probe::schedule::{RtParams, Schedule};
use registry_proto::probe::spec::ProbeSpec;
use registry_proto::wire::naming::{InstanceRequest, NamingBase, WireInstance};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::local::{Local, Owner};
use crate::metrics::Stats;
use crate::settings;

/// How often the probe runs before it first passes (the app is starting).
const STARTUP_PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Where the declared instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The probe has not passed yet; nothing is registered.
    Waiting,
    /// Registered; `healthy` by the probe.
    Serving {
        /// Health as last published.
        healthy: bool,
    },
    /// Published with weight 0; withdrawn when the drain window ends.
    Draining,
    /// Withdrawn.
    Drained,
}

/// The declared instance and its lifecycle.
pub struct Declaration {
    spec: settings::Declared,
    local: Arc<Local>,
    stats: Arc<Stats>,
    phase: Mutex<Phase>,
    drain_window: Duration,
    drained: CancellationToken,
}

impl Declaration {
    /// Nothing registered yet.
    pub fn new(spec: settings::Declared, local: Arc<Local>, stats: Arc<Stats>, drain_window: Duration) -> Self {
        Self { spec, local, stats, phase: Mutex::new(Phase::Waiting), drain_window, drained: CancellationToken::new() }
    }

    /// The current phase.
    pub async fn phase(&self) -> Phase {
        *self.phase.lock().await
    }

    /// Resolves once the instance is withdrawn.
    pub async fn drained(&self) {
        self.drained.cancelled().await;
    }

    fn checker(&self) -> Option<(HealthChecker, SocketAddr)> {
        let target = |port| SocketAddr::new(self.spec.ip, port);
        match &self.spec.probe {
            ProbeSpec::Tcp { port } => Some((HealthChecker::Tcp, target(*port))),
            ProbeSpec::Http { port, path } => {
                Some((HealthChecker::Http(HttpChecker { path: path.clone(), ..HttpChecker::default() }), target(*port)))
            }
            ProbeSpec::Mysql { port } => Some((HealthChecker::Mysql(self.spec.mysql.clone()?), target(*port))),
            ProbeSpec::None => None,
        }
    }

    fn instance(&self, healthy: bool, draining: bool) -> WireInstance {
        let mut metadata: std::collections::BTreeMap<String, serde_json::Value> =
            self.spec.metadata.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
        if !self.spec.ephemeral {
            // The server leaves the health of this instance to the sidecar (it does not probe).
            metadata.insert(HEALTH_REPORTED_METADATA.to_owned(), serde_json::Value::String("nacos-sidecar".into()));
        }
        WireInstance {
            ip: Some(self.spec.ip.to_string()),
            port: i64::from(self.spec.port),
            weight: if draining { 0.0 } else { self.spec.weight },
            healthy,
            enabled: true,
            ephemeral: self.spec.ephemeral,
            cluster_name: Some(self.spec.cluster.clone()),
            metadata: Some(metadata),
            ..WireInstance::default()
        }
    }

    /// Publishes the instance (`None`: withdraws it): ephemeral ones as the sidecar's own
    /// publication, persistent ones as a persistent registration it keeps healthy.
    async fn publish(&self, instance: Option<WireInstance>) -> Result<(), String> {
        let key = &self.spec.service;
        if self.spec.ephemeral {
            let instances = instance.into_iter().collect();
            return self.local.set_publication(key, Owner::Declared, instances).await.map_err(|r| format!("{r:?}"));
        }
        let (kind, instance) = match instance {
            Some(i) => ("registerInstance", i),
            None => ("deregisterInstance", self.instance(false, false)),
        };
        let body = InstanceRequest {
            base: NamingBase {
                namespace: Some(key.namespace.clone()),
                service_name: Some(key.service.clone()),
                group_name: Some(key.group.clone()),
            },
            kind: Some(kind.to_owned()),
            instance: Some(instance),
        };
        let body = serde_json::to_value(body).map_err(|e| e.to_string())?;
        let session = self.local.upstream().session(&key.namespace).map_err(|e| e.to_string())?;
        session
            .request("PersistentInstanceRequest", &body, "InstanceResponse")
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Probes until the first pass, registers, then keeps the health current until a drain
    /// starts or `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let checker = self.checker();
        if let Some((checker, target)) = &checker {
            loop {
                if self.probe(checker, *target).await.is_some_and(|o| o == Outcome::Ok) {
                    break;
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(STARTUP_PROBE_INTERVAL) => {}
                }
            }
        }
        {
            let mut phase = self.phase.lock().await;
            if *phase != Phase::Waiting {
                return;
            }
            self.set_healthy(&mut phase, true).await;
        }
        let Some((checker, target)) = checker else { return };
        let Some(params) = RtParams::of(&checker) else { return };
        let mut seed = seed();
        let mut schedule = Schedule::new(params, |below| next_random(&mut seed) % below.max(1));
        let mut tracker = HealthTracker::new(true);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(schedule.delay()) => {}
            }
            let Some(report) = registry_proto::probe::check(&checker, target).await else { return };
            self.count(report.outcome());
            schedule.record(report.rt_sample());
            if let Some(healthy) = tracker.record(report.outcome()) {
                let mut phase = self.phase.lock().await;
                if !matches!(*phase, Phase::Serving { .. }) {
                    return;
                }
                self.set_healthy(&mut phase, healthy).await;
            }
        }
    }

    async fn probe(&self, checker: &HealthChecker, target: SocketAddr) -> Option<Outcome> {
        let outcome = registry_proto::probe::check(checker, target).await?.outcome();
        self.count(outcome);
        Some(outcome)
    }

    fn count(&self, outcome: Outcome) {
        let counter = if outcome == Outcome::Ok { &self.stats.probes_ok } else { &self.stats.probes_failed };
        counter.fetch_add(1, Ordering::Relaxed);
        if outcome == Outcome::FailNow {
            self.stats.probes_failed_now.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn set_healthy(&self, phase: &mut Phase, healthy: bool) {
        if let Err(e) = self.publish(Some(self.instance(healthy, false))).await {
            tracing::warn!(error = %e, "could not publish the declared instance; it is redone on reconnect");
        }
        *phase = Phase::Serving { healthy };
        self.stats.instance_healthy.store(u64::from(healthy), Ordering::Relaxed);
        self.stats.instance_registered.store(1, Ordering::Relaxed);
        tracing::info!(service = %self.spec.service, healthy, "declared instance published");
    }

    /// Drains (idempotent; a second caller waits for the first): publishes the instance with
    /// weight 0, waits the drain window while the app still serves, then withdraws it.
    pub async fn drain(&self) {
        {
            let mut phase = self.phase.lock().await;
            match *phase {
                Phase::Draining | Phase::Drained => {
                    drop(phase);
                    self.drained().await;
                    return;
                }
                Phase::Waiting => {}
                Phase::Serving { healthy } => {
                    // Counted first: consumers may see the weight 0 before the publish returns.
                    self.stats.drain_state.store(1, Ordering::Relaxed);
                    if let Err(e) = self.publish(Some(self.instance(healthy, true))).await {
                        tracing::warn!(error = %e, "could not publish the draining instance");
                    }
                    tracing::info!(window = ?self.drain_window, "draining: instance published with weight 0");
                }
            }
            let was_serving = matches!(*phase, Phase::Serving { .. });
            *phase = Phase::Draining;
            drop(phase);
            if was_serving {
                tokio::time::sleep(self.drain_window).await;
            }
        }
        if let Err(e) = self.publish(None).await {
            tracing::warn!(error = %e, "could not withdraw the declared instance");
        }
        *self.phase.lock().await = Phase::Drained;
        self.stats.instance_registered.store(0, Ordering::Relaxed);
        self.stats.drain_state.store(2, Ordering::Relaxed);
        tracing::info!("drained: instance withdrawn");
        self.drained.cancel();
    }
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32) | 1
}

/// xorshift64: the probe schedule's jitter needs spread, not quality.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
