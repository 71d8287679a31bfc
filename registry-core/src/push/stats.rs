//! Push counters and the change → acknowledgement latency histogram.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (ms) of the latency histogram buckets; a last bucket takes the rest.
pub const LATENCY_BUCKETS_MS: [f64; 12] = [0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0, 5000.0];

/// Counters, updated by the engine, read by metrics endpoints.
#[derive(Debug, Default)]
pub struct PushStats {
    pub(crate) sent: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) dropped_slow: AtomicU64,
    /// Pushes sent and neither acknowledged nor given up on yet (a gauge): what may still be
    /// resent. Lets a test show "no more resends" from a count instead of a quiet period.
    pub(crate) pending: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    latency_sum_us: AtomicU64,
    latency_count: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushStatsSnapshot {
    /// Pushes sent (first attempts).
    pub sent: u64,
    /// Pushes acknowledged.
    pub acked: u64,
    /// Resends.
    pub retried: u64,
    /// Pushes given up on.
    pub failed: u64,
    /// Subscribers dropped because their connection stopped reading.
    pub dropped_slow: u64,
}

impl PushStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Records one change → ack latency.
    pub(crate) fn observe_latency(&self, micros: u64) {
        let ms = micros as f64 / 1000.0;
        let idx = LATENCY_BUCKETS_MS.iter().position(|b| ms <= *b).unwrap_or(LATENCY_BUCKETS_MS.len());
        self.latency_buckets[idx].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(micros, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads the counters.
    pub fn snapshot(&self) -> PushStatsSnapshot {
        PushStatsSnapshot {
            sent: self.sent.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped_slow: self.dropped_slow.load(Ordering::Relaxed),
        }
    }

    /// Prometheus text exposition of the counters and the latency histogram.
    pub fn render_prometheus(&self, out: &mut String) {
        use std::fmt::Write;
        let s = self.snapshot();
        for (name, help, v) in [
            ("registry_push_sent_total", "Pushes sent (first attempts)", s.sent),
            ("registry_push_acked_total", "Pushes acknowledged", s.acked),
            ("registry_push_retried_total", "Push resends", s.retried),
            ("registry_push_failed_total", "Pushes given up on", s.failed),
            ("registry_push_dropped_slow_total", "Connections closed for not reading pushes", s.dropped_slow),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        }
        let pending = self.pending.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP registry_push_pending_acks Pushes awaiting an acknowledgement (may be resent)\n# TYPE registry_push_pending_acks gauge\nregistry_push_pending_acks {pending}"
        );
        let name = "registry_push_ack_latency_seconds";
        let _ = writeln!(out, "# HELP {name} Change to acknowledgement latency of pushes\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, b) in LATENCY_BUCKETS_MS.iter().enumerate() {
            cumulative += self.latency_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cumulative}", b / 1000.0);
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let s = PushStats::default();
        s.observe_latency(300); // 0.3 ms
        s.observe_latency(3_000); // 3 ms
        s.observe_latency(10_000_000); // 10 s, beyond the last bucket
        let mut out = String::new();
        s.render_prometheus(&mut out);
        assert!(out.contains("registry_push_ack_latency_seconds_bucket{le=\"0.0005\"} 1"), "{out}");
        assert!(out.contains("registry_push_ack_latency_seconds_bucket{le=\"0.005\"} 2"));
        assert!(out.contains("registry_push_ack_latency_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(out.contains("registry_push_ack_latency_seconds_count 3"));
    }
}
