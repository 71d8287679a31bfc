//! What closed-loop runs measured, and its formatting as Markdown table rows.

use std::time::Duration;

use hdrhistogram::Histogram;

/// What a closed-loop run measured.
#[derive(Debug)]
pub struct LoadResult {
    /// Latencies of successful requests in microseconds.
    pub histogram: Histogram<u64>,
    /// Requests that failed (non-2xx, error answer or transport error).
    pub errors: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// CPU time this process used during the run (user + system).
    pub cpu: Duration,
}

impl LoadResult {
    /// Completed requests per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.histogram.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// An empty latency histogram in microseconds, 1 µs to 60 s at three significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}

/// Microseconds as milliseconds with three decimals.
pub fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

/// `| label | count/expected | p50 | p90 | p99 | max |` (milliseconds).
pub fn latency_row(label: &str, h: &Histogram<u64>, expected: u64) -> String {
    format!(
        "| {label} | {}/{expected} | {} | {} | {} | {} |",
        h.len(),
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.90)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
    )
}

/// `| label | done/requested | p50 | p90 | p99 | max | ops/s | errors | wall ms | tool CPU ms | tool CPU % |`:
/// the row of the closed-loop tables, whose last columns show whether the load tool itself was
/// the bottleneck.
pub fn load_row(label: &str, r: &LoadResult, requested: u64) -> String {
    format!(
        "{} {:.0} | {} | {} | {} | {:.0}% |",
        latency_row(label, &r.histogram, requested),
        r.ops_per_sec(),
        r.errors,
        r.elapsed.as_millis(),
        r.cpu.as_millis(),
        100.0 * r.cpu.as_secs_f64() / r.elapsed.as_secs_f64().max(1e-9),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_read_from_the_histogram() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 1_000_000, 3).unwrap();
        for v in 1..=100u64 {
            h.record(v * 10).unwrap();
        }
        let row = latency_row("x", &h, 100);
        assert!(row.starts_with("| x | 100/100 | 0.500 | 0.900 | 0.990 | 1.000 |"), "{row}");
        assert_eq!(ms(1500), "1.500");
    }

    #[test]
    fn load_rows_have_the_throughput_columns() {
        let mut histogram = latency_histogram();
        histogram.record(1000).unwrap();
        let r =
            LoadResult { histogram, errors: 2, elapsed: Duration::from_millis(500), cpu: Duration::from_millis(250) };
        assert_eq!(
            load_row("4 conns", &r, 3),
            "| 4 conns | 1/3 | 1.000 | 1.000 | 1.000 | 1.000 | 2 | 2 | 500 | 250 | 50% |"
        );
    }
}
