//! Counters of the health checks this member ran, for `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use registry_proto::probe::checker::HealthChecker;
use registry_proto::probe::outcome::Outcome;

/// Checker types that run, as labelled.
const TYPES: [&str; 3] = ["TCP", "HTTP", "MYSQL"];
/// Outcomes, as labelled.
const OUTCOMES: [&str; 3] = ["ok", "fail", "fail_now"];

/// Updated by the check tasks, read by the metrics endpoint. Every series exists from the start
/// (at 0), so a reader can compare before and after.
#[derive(Debug, Default)]
pub struct CheckStats {
    /// Checks run, by [`TYPES`] × [`OUTCOMES`].
    checks: [[AtomicU64; 3]; 3],
    /// Health flips decided here: [to unhealthy, to healthy].
    flips: [AtomicU64; 2],
    /// Flips that could not be written (no Raft quorum): retried by later checks.
    write_failures: AtomicU64,
    /// Instances this member checks now (a gauge).
    tasks: AtomicU64,
}

impl CheckStats {
    /// Counts one finished check.
    pub(crate) fn checked(&self, checker: &HealthChecker, outcome: Outcome) {
        let kind = match checker {
            HealthChecker::Tcp => 0,
            HealthChecker::Http(_) => 1,
            HealthChecker::Mysql(_) => 2,
            HealthChecker::None => return,
        };
        let outcome = match outcome {
            Outcome::Ok => 0,
            Outcome::Fail => 1,
            Outcome::FailNow => 2,
        };
        self.checks[kind][outcome].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a flip and whether its write went through.
    pub(crate) fn flipped(&self, healthy: bool, written: bool) {
        self.flips[usize::from(healthy)].fetch_add(1, Ordering::Relaxed);
        if !written {
            self.write_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sets the number of instances checked here.
    pub(crate) fn set_tasks(&self, n: usize) {
        self.tasks.store(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Checks run so far, over every type and outcome.
    pub fn total(&self) -> u64 {
        self.checks.iter().flatten().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Prometheus text exposition.
    pub fn render_prometheus(&self, out: &mut String) {
        let name = "registry_health_checks_total";
        let _ = writeln!(
            out,
            "# HELP {name} Health checks of persistent instances run by this member\n# TYPE {name} counter"
        );
        for (kind, row) in TYPES.iter().zip(&self.checks) {
            for (outcome, count) in OUTCOMES.iter().zip(row) {
                let _ =
                    writeln!(out, "{name}{{type=\"{kind}\",outcome=\"{outcome}\"}} {}", count.load(Ordering::Relaxed));
            }
        }
        let name = "registry_health_check_flips_total";
        let _ = writeln!(
            out,
            "# HELP {name} Health changes of persistent instances decided by this member's checks\n# TYPE {name} counter"
        );
        for (to, count) in ["unhealthy", "healthy"].iter().zip(&self.flips) {
            let _ = writeln!(out, "{name}{{to=\"{to}\"}} {}", count.load(Ordering::Relaxed));
        }
        for (name, kind, help, value) in [
            (
                "registry_health_check_write_failures_total",
                "counter",
                "Health changes that could not be written through Raft (retried by later checks)",
                &self.write_failures,
            ),
            ("registry_health_check_tasks", "gauge", "Persistent instances this member is checking", &self.tasks),
        ] {
            let _ =
                writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}", value.load(Ordering::Relaxed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_exposed_from_the_start() {
        let stats = CheckStats::default();
        stats.checked(&HealthChecker::Tcp, Outcome::FailNow);
        stats.checked(&HealthChecker::None, Outcome::Ok);
        stats.flipped(false, false);
        let mut out = String::new();
        stats.render_prometheus(&mut out);
        assert!(out.contains("registry_health_checks_total{type=\"TCP\",outcome=\"fail_now\"} 1\n"), "{out}");
        assert!(out.contains("registry_health_checks_total{type=\"MYSQL\",outcome=\"ok\"} 0\n"), "{out}");
        assert!(out.contains("registry_health_check_flips_total{to=\"unhealthy\"} 1\n"), "{out}");
        assert!(out.contains("registry_health_check_write_failures_total 1\n"), "{out}");
        assert!(out.contains("registry_health_check_tasks 0\n"), "{out}");
        assert_eq!(stats.total(), 1);
    }
}
