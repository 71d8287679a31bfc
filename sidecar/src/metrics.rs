//! What the sidecar counts, shown on the admin port's `/metrics` (Prometheus text format).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters and gauges updated where things happen.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests of local clients.
    pub local_requests: AtomicU64,
    /// Pushes and notifications sent to local clients.
    pub local_pushes: AtomicU64,
    /// Reads answered from the failover cache (subscribed services, or the cluster away).
    pub cache_answers: AtomicU64,
    /// Upstream calls that failed.
    pub upstream_failures: AtomicU64,
    /// Publications kept for redo because the cluster was away.
    pub upstream_deferred: AtomicU64,
    /// Probe runs that passed.
    pub probes_ok: AtomicU64,
    /// Probe runs that failed.
    pub probes_failed: AtomicU64,
    /// Of those, the ones that failed now (refused, unexpected HTTP status, SQL error such as a
    /// refused login): they flip the instance at once.
    pub probes_failed_now: AtomicU64,
    /// 1 while the declared instance is healthy by its probe.
    pub instance_healthy: AtomicU64,
    /// 1 once the declared instance is registered, 0 again after drain.
    pub instance_registered: AtomicU64,
    /// 0 serving, 1 draining (disabled upstream), 2 drained (deregistered).
    pub drain_state: AtomicU64,
    /// DNS queries answered from the zone (the cache), NXDOMAIN and other local answers included.
    pub dns_local: AtomicU64,
    /// DNS queries for names outside the zone, relayed to the pod's resolver.
    pub dns_forwarded: AtomicU64,
    /// DNS queries answered SERVFAIL (the pod's resolver silent, or a first lookup of a name in
    /// the zone while the cluster is away).
    pub dns_servfail: AtomicU64,
    /// Services the DNS resolver subscribed to on their first lookup.
    pub dns_subscribed: AtomicU64,
}

/// Gauges read at render time.
#[derive(Debug, Clone, Copy)]
pub struct Live {
    /// Connected upstream sessions.
    pub upstream_connected: usize,
    /// Upstream sessions.
    pub upstream_sessions: usize,
    /// Connections the sessions set up in total.
    pub upstream_connects: u64,
    /// Local SDK connections.
    pub local_connections: usize,
    /// Cached services and configs.
    pub cached: (usize, usize),
}

impl Stats {
    /// The Prometheus text.
    pub fn render(&self, live: Live) -> String {
        let mut out = String::new();
        let mut line = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        line("sidecar_local_requests_total", "counter", "Requests of local clients.", get(&self.local_requests));
        line("sidecar_local_pushes_total", "counter", "Pushes sent to local clients.", get(&self.local_pushes));
        line(
            "sidecar_cache_answers_total",
            "counter",
            "Reads answered from the failover cache.",
            get(&self.cache_answers),
        );
        line("sidecar_upstream_failures_total", "counter", "Upstream calls that failed.", get(&self.upstream_failures));
        line(
            "sidecar_upstream_deferred_total",
            "counter",
            "Publications kept for redo while the cluster was away.",
            get(&self.upstream_deferred),
        );
        line("sidecar_probes_ok_total", "counter", "Probe runs that passed.", get(&self.probes_ok));
        line("sidecar_probes_failed_total", "counter", "Probe runs that failed.", get(&self.probes_failed));
        line(
            "sidecar_probes_failed_now_total",
            "counter",
            "Probe runs that failed now (refused, bad status, SQL error).",
            get(&self.probes_failed_now),
        );
        line(
            "sidecar_instance_healthy",
            "gauge",
            "1 while the declared instance's probe says healthy.",
            get(&self.instance_healthy),
        );
        line(
            "sidecar_instance_registered",
            "gauge",
            "1 while the declared instance is registered.",
            get(&self.instance_registered),
        );
        line("sidecar_drain_state", "gauge", "0 serving, 1 draining, 2 drained.", get(&self.drain_state));
        line(
            "sidecar_dns_local_answers_total",
            "counter",
            "DNS queries answered from the zone (cache).",
            get(&self.dns_local),
        );
        line(
            "sidecar_dns_forwarded_total",
            "counter",
            "DNS queries relayed to the pod's resolver.",
            get(&self.dns_forwarded),
        );
        line("sidecar_dns_servfail_total", "counter", "DNS queries answered SERVFAIL.", get(&self.dns_servfail));
        line(
            "sidecar_dns_subscribed_total",
            "counter",
            "Services subscribed on their first DNS lookup.",
            get(&self.dns_subscribed),
        );
        line("sidecar_upstream_connected", "gauge", "Connected upstream sessions.", live.upstream_connected as u64);
        line(
            "sidecar_upstream_sessions",
            "gauge",
            "Upstream sessions (one per namespace).",
            live.upstream_sessions as u64,
        );
        line("sidecar_upstream_connects_total", "counter", "Upstream connections set up.", live.upstream_connects);
        line("sidecar_local_connections", "gauge", "Local SDK connections.", live.local_connections as u64);
        line("sidecar_cached_services", "gauge", "Services in the failover cache.", live.cached.0 as u64);
        line("sidecar_cached_configs", "gauge", "Configs in the failover cache.", live.cached.1 as u64);
        out
    }
}
