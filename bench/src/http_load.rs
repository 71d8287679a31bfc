//! Closed-loop HTTP load: `concurrency` workers, each with its own keep-alive connection, send
//! requests back to back until `count` requests are done or the deadline passes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// What a run measured.
#[derive(Debug)]
pub struct LoadResult {
    /// Latencies in microseconds.
    pub histogram: Histogram<u64>,
    /// Requests that failed (non-2xx or transport error).
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

/// Builds request `i` for a client.
pub type MakeRequest = Arc<dyn Fn(&reqwest::Client, usize) -> reqwest::RequestBuilder + Send + Sync>;

/// Runs the load.
pub async fn run(
    concurrency: usize,
    count: usize,
    deadline: Duration,
    make: MakeRequest,
) -> anyhow::Result<LoadResult> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let cpu0 = crate::process_cpu();
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        let client = reqwest::Client::builder().pool_max_idle_per_host(1).tcp_nodelay(true).build()?;
        let (next, make) = (Arc::clone(&next), Arc::clone(&make));
        workers.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds are valid");
            let mut errors = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || start.elapsed() > deadline {
                    break;
                }
                let t0 = Instant::now();
                match make(&client, i).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        let _ = h.record((t0.elapsed().as_micros() as u64).max(1));
                    }
                    _ => errors += 1,
                }
            }
            (h, errors)
        }));
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    for w in workers {
        let (h, e) = w.await?;
        histogram.add(h)?;
        errors += e;
    }
    let elapsed = start.elapsed();
    Ok(LoadResult { histogram, errors, elapsed, cpu: crate::process_cpu().saturating_sub(cpu0) })
}
