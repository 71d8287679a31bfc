//! The operator's Prometheus metrics and its small HTTP server (`/metrics`, `/healthz`).
//!
//! Hand-rolled text exposition: three series families do not justify a metrics dependency.
//! Counters are atomics and the per-step error counts sit behind a std mutex held only for
//! an increment or a render, never across an `.await`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// Upper bounds (seconds) of the reconcile duration histogram.
const BUCKETS: [f64; 9] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Reconcile metrics, shared by the controller and the HTTP server.
#[derive(Debug, Default)]
pub struct Metrics {
    reconciles: AtomicU64,
    /// Observations per bucket of [`BUCKETS`] (not cumulative; rendered cumulatively).
    duration_buckets: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    /// Sum of durations in microseconds (integer so it can be atomic).
    duration_sum_micros: AtomicU64,
    /// Failed reconciles per pipeline step.
    errors: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// Counts one reconcile that took `elapsed`.
    pub fn observe_reconcile(&self, elapsed: Duration) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.duration_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.duration_sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Counts one failed reconcile in pipeline step `step`.
    pub fn observe_error(&self, step: &'static str) {
        let mut errors = self.errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *errors.entry(step).or_default() += 1;
    }

    /// Reconciles counted so far (`nacos_operator_reconciles_total`).
    pub fn reconciles(&self) -> u64 {
        self.reconciles.load(Ordering::Relaxed)
    }

    /// Failed reconciles counted for `step`.
    pub fn errors(&self, step: &str) -> u64 {
        let errors = self.errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        errors.get(step).copied().unwrap_or(0)
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(1024);
        let _ = writeln!(
            out,
            "# HELP nacos_operator_reconciles_total Reconciles run.\n# TYPE nacos_operator_reconciles_total counter\n\
             nacos_operator_reconciles_total {}",
            self.reconciles.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP nacos_operator_reconcile_errors_total Failed reconciles by pipeline step.\n\
             # TYPE nacos_operator_reconcile_errors_total counter"
        );
        {
            let errors = self.errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for (step, count) in errors.iter() {
                let _ = writeln!(out, "nacos_operator_reconcile_errors_total{{step=\"{step}\"}} {count}");
            }
        }
        let name = "nacos_operator_reconcile_duration_seconds";
        let _ = writeln!(out, "# HELP {name} Time a reconcile took.\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.duration_buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.duration_count.load(Ordering::Relaxed);
        let sum = self.duration_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}");
        out
    }
}

/// Routes of the operator's HTTP server: `/metrics` and `/healthz`.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new().route("/metrics", get(render)).route("/healthz", get(|| async { "ok" })).with_state(metrics)
}

async fn render(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics.render())
}

#[cfg(test)]
mod tests {
    use std::future::IntoFuture;

    use super::*;

    #[test]
    fn histogram_is_cumulative_and_errors_are_per_step() {
        let metrics = Metrics::default();
        metrics.observe_reconcile(Duration::from_millis(30));
        metrics.observe_reconcile(Duration::from_millis(300));
        metrics.observe_reconcile(Duration::from_secs(60));
        metrics.observe_error("Apply");
        metrics.observe_error("Apply");
        let text = metrics.render();
        for line in [
            "nacos_operator_reconciles_total 3",
            "nacos_operator_reconcile_errors_total{step=\"Apply\"} 2",
            "nacos_operator_reconcile_duration_seconds_bucket{le=\"0.01\"} 0",
            "nacos_operator_reconcile_duration_seconds_bucket{le=\"0.05\"} 1",
            "nacos_operator_reconcile_duration_seconds_bucket{le=\"0.5\"} 2",
            "nacos_operator_reconcile_duration_seconds_bucket{le=\"10\"} 2",
            "nacos_operator_reconcile_duration_seconds_bucket{le=\"+Inf\"} 3",
            "nacos_operator_reconcile_duration_seconds_count 3",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert_eq!(metrics.errors("Apply"), 2);
    }

    #[tokio::test]
    async fn server_answers_metrics_and_healthz() {
        let metrics = Arc::new(Metrics::default());
        metrics.observe_reconcile(Duration::from_millis(1));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(axum::serve(listener, router(metrics)).into_future());
        let client = reqwest::Client::new();
        let health = client.get(format!("http://{address}/healthz")).send().await.unwrap();
        assert_eq!((health.status().as_u16(), health.text().await.unwrap().as_str()), (200, "ok"));
        let text = client.get(format!("http://{address}/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(text.lines().any(|l| l == "nacos_operator_reconciles_total 1"), "{text}");
        server.abort();
    }
}
