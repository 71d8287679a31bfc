//! HTTP request counts and latency by API (the route template, so label values stay bounded),
//! method and status, for `/metrics`. Recorded by a layer on the whole router.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use parking_lot::Mutex;

/// Upper bounds of the latency buckets, seconds (long-polls land in `+Inf`).
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];
/// The API label of requests no route matched (any path: not a label value of its own).
const UNMATCHED: &str = "unmatched";

/// One (API, method) pair's counts by status and its latency histogram.
#[derive(Default)]
struct Series {
    by_status: BTreeMap<u16, u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

/// Request metrics of one server. Cheap to share.
#[derive(Default)]
pub struct RequestMetrics {
    series: Mutex<BTreeMap<(String, String), Series>>,
}

impl RequestMetrics {
    /// Counts one answered request.
    pub fn observe(&self, api: &str, method: &str, status: u16, seconds: f64) {
        let mut all = self.series.lock();
        let s = all.entry((api.to_owned(), method.to_owned())).or_default();
        *s.by_status.entry(status).or_default() += 1;
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            s.buckets[i] += 1;
        }
        s.count += 1;
        s.sum_seconds += seconds;
    }

    /// Prometheus text exposition: `registry_http_requests_total{api,method,status}` and
    /// `registry_http_request_duration_seconds{api,method}`.
    pub fn render_prometheus(&self, out: &mut String) {
        let all = self.series.lock();
        let total = "registry_http_requests_total";
        let _ = writeln!(out, "# HELP {total} HTTP requests answered, by API (route), method and status");
        let _ = writeln!(out, "# TYPE {total} counter");
        for ((api, method), s) in all.iter() {
            for (status, n) in &s.by_status {
                let _ = writeln!(out, "{total}{{api=\"{api}\",method=\"{method}\",status=\"{status}\"}} {n}");
            }
        }
        let name = "registry_http_request_duration_seconds";
        let _ = writeln!(out, "# HELP {name} Time to answer HTTP requests, by API (route) and method");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for ((api, method), s) in all.iter() {
            let labels = format!("api=\"{api}\",method=\"{method}\"");
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(s.buckets) {
                cumulative += n;
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
            }
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", s.count);
            let _ = writeln!(out, "{name}_sum{{{labels}}} {}", s.sum_seconds);
            let _ = writeln!(out, "{name}_count{{{labels}}} {}", s.count);
        }
    }
}

/// The layer: times the request and records it under its route template.
pub async fn record(State(metrics): State<Arc<RequestMetrics>>, req: Request, next: Next) -> Response {
    let api = req.extensions().get::<MatchedPath>().map_or(UNMATCHED, MatchedPath::as_str).to_owned();
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    metrics.observe(&api, &method, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_status_and_fills_cumulative_buckets() {
        let m = RequestMetrics::default();
        m.observe("/nacos/v1/ns/instance", "POST", 200, 0.0003);
        m.observe("/nacos/v1/ns/instance", "POST", 200, 0.02);
        m.observe("/nacos/v1/ns/instance", "POST", 400, 60.0);
        let mut out = String::new();
        m.render_prometheus(&mut out);
        let line = |l: &str| assert!(out.lines().any(|x| x == l), "{l} missing in\n{out}");
        line(r#"registry_http_requests_total{api="/nacos/v1/ns/instance",method="POST",status="200"} 2"#);
        line(r#"registry_http_requests_total{api="/nacos/v1/ns/instance",method="POST",status="400"} 1"#);
        line(
            r#"registry_http_request_duration_seconds_bucket{api="/nacos/v1/ns/instance",method="POST",le="0.0005"} 1"#,
        );
        line(
            r#"registry_http_request_duration_seconds_bucket{api="/nacos/v1/ns/instance",method="POST",le="0.025"} 2"#,
        );
        line(r#"registry_http_request_duration_seconds_bucket{api="/nacos/v1/ns/instance",method="POST",le="5"} 2"#);
        line(r#"registry_http_request_duration_seconds_bucket{api="/nacos/v1/ns/instance",method="POST",le="+Inf"} 3"#);
        line(r#"registry_http_request_duration_seconds_count{api="/nacos/v1/ns/instance",method="POST"} 3"#);
    }
}
