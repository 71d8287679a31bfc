//! Formatting of results as Markdown table rows.

use hdrhistogram::Histogram;

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
}
