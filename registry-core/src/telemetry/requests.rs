//! Request counts and latency for `/metrics`: HTTP by API (the route template, so label values
//! stay bounded), method and status, recorded by a layer on the whole router; gRPC by request
//! type and result code, recorded by the gRPC handler.

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

/// One series' (API and method, or request type) counts by status and its latency histogram.
#[derive(Default)]
struct Series {
    by_status: BTreeMap<i64, u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

/// Request metrics of one protocol. Cheap to share.
pub struct RequestMetrics {
    /// `registry_http` or `registry_grpc`.
    family: &'static str,
    /// What the series is about (`HTTP requests answered`), for the help texts.
    what: &'static str,
    /// The status label's name (`status`, `code`).
    status_label: &'static str,
    /// Rendered series labels (`api="/x",method="GET"`) → counts.
    series: Mutex<BTreeMap<String, Series>>,
}

impl RequestMetrics {
    /// HTTP requests: `registry_http_*{api,method,status}`.
    pub fn http() -> Self {
        Self {
            family: "registry_http",
            what: "HTTP requests, by API (route) and method",
            status_label: "status",
            series: Mutex::default(),
        }
    }

    /// gRPC SDK requests: `registry_grpc_*{type,code}` (`code`: the answer's `resultCode`).
    pub fn grpc() -> Self {
        Self {
            family: "registry_grpc",
            what: "gRPC requests, by request type",
            status_label: "code",
            series: Mutex::default(),
        }
    }

    /// Counts one answered HTTP request.
    pub fn observe_http(&self, api: &str, method: &str, status: u16, seconds: f64) {
        self.observe(format!("api=\"{api}\",method=\"{method}\""), i64::from(status), seconds);
    }

    /// Counts one answered gRPC request of type `kind` (one of the known request types).
    pub fn observe_grpc(&self, kind: &str, code: i64, seconds: f64) {
        self.observe(format!("type=\"{kind}\""), code, seconds);
    }

    fn observe(&self, labels: String, status: i64, seconds: f64) {
        let mut all = self.series.lock();
        let s = all.entry(labels).or_default();
        *s.by_status.entry(status).or_default() += 1;
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            s.buckets[i] += 1;
        }
        s.count += 1;
        s.sum_seconds += seconds;
    }

    /// Prometheus text exposition: `<family>_requests_total` by the series' labels and status,
    /// `<family>_request_duration_seconds` by the series' labels.
    pub fn render_prometheus(&self, out: &mut String) {
        let (family, what, status_label) = (self.family, self.what, self.status_label);
        let all = self.series.lock();
        let total = format!("{family}_requests_total");
        let _ = writeln!(out, "# HELP {total} {what} and {status_label}");
        let _ = writeln!(out, "# TYPE {total} counter");
        for (labels, s) in all.iter() {
            for (status, n) in &s.by_status {
                let _ = writeln!(out, "{total}{{{labels},{status_label}=\"{status}\"}} {n}");
            }
        }
        let name = format!("{family}_request_duration_seconds");
        let _ = writeln!(out, "# HELP {name} Time to answer {what}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (labels, s) in all.iter() {
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
    metrics.observe_http(&api, &method, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_status_and_fills_cumulative_buckets() {
        let m = RequestMetrics::http();
        m.observe_http("/nacos/v1/ns/instance", "POST", 200, 0.0003);
        m.observe_http("/nacos/v1/ns/instance", "POST", 200, 0.02);
        m.observe_http("/nacos/v1/ns/instance", "POST", 400, 60.0);
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
        let g = RequestMetrics::grpc();
        g.observe_grpc("InstanceRequest", 200, 0.001);
        let mut out = String::new();
        g.render_prometheus(&mut out);
        assert!(
            out.lines().any(|l| l == r#"registry_grpc_requests_total{type="InstanceRequest",code="200"} 1"#),
            "{out}"
        );
    }
}
