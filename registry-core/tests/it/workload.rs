//! Concurrent clients for fault tests: writers that publish configs until stopped, each write
//! recorded with the fault epoch current when it was invoked and the one current when it was
//! answered, and the checks that every acknowledged write survived.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::harness::{Server, call, client, eventually, patience};

/// The server's write timeout (`raft.write_timeout_ms`, default) plus room for the HTTP round
/// trip: every write must be answered within this, success or error.
pub(crate) const WRITE_BOUND: Duration = Duration::from_secs(5 + 3);

/// What one write got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Acked,
    Refused,
}

/// One recorded write: its key and content, when it was invoked (fault epoch at invoke), and
/// what it got.
#[derive(Debug, Clone)]
pub(crate) struct Write {
    pub(crate) data_id: String,
    pub(crate) content: String,
    /// Fault epoch when it was invoked.
    pub(crate) epoch: usize,
    /// Fault epoch when its answer came: later than `epoch` for a write in flight at a fault.
    pub(crate) answered_epoch: usize,
    pub(crate) outcome: Outcome,
}

/// Publishes a config; `Err` when no answer came within the bound (the failure under test).
pub(crate) async fn publish(
    http: &reqwest::Client,
    base: &str,
    data_id: &str,
    content: &str,
) -> Result<Outcome, String> {
    let req = http.post(format!("{base}/nacos/v1/cs/configs")).form(&[
        ("dataId", data_id),
        ("group", "DEFAULT_GROUP"),
        ("content", content),
    ]);
    match req.send().await {
        Ok(r) if r.status() == 200 => Ok(Outcome::Acked),
        Ok(r) if r.status() == 503 => Ok(Outcome::Refused),
        Ok(r) => Err(format!("unexpected status {}: {}", r.status(), r.text().await.unwrap_or_default())),
        Err(e) if e.is_timeout() => Err(format!("no answer within {:?}", WRITE_BOUND * patience())),
        // A member being killed may reset the connection: not an answer, but not a hang either.
        Err(_) => Ok(Outcome::Refused),
    }
}

/// Writers that publish to one member until stopped, recording every write with the fault
/// epoch current when it was invoked.
pub(crate) struct Writers {
    stop: Arc<AtomicBool>,
    epoch: Arc<AtomicUsize>,
    history: Arc<Mutex<Vec<Write>>>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), String>>>,
}

impl Writers {
    pub(crate) fn start(target: &Server, count: usize, prefix: &str) -> Self {
        Self::start_on(&[target], count, prefix)
    }

    /// `count` writers spread over `targets` (writer `w` writes to `targets[w % len]`).
    pub(crate) fn start_on(targets: &[&Server], count: usize, prefix: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let epoch = Arc::new(AtomicUsize::new(0));
        let history = Arc::new(Mutex::new(Vec::new()));
        let http = reqwest::Client::builder().timeout(WRITE_BOUND * patience()).build().expect("client");
        let tasks = (0..count)
            .map(|w| {
                let (stop, epoch, history, http) = (stop.clone(), epoch.clone(), history.clone(), http.clone());
                let (prefix, base) = (prefix.to_owned(), targets[w % targets.len()].url(""));
                tokio::spawn(async move {
                    let mut k = 0u32;
                    while !stop.load(Ordering::Relaxed) {
                        let data_id = format!("{prefix}-{w}-{k}");
                        let content = format!("v{k}");
                        let at = epoch.load(Ordering::SeqCst);
                        let outcome = publish(&http, &base, &data_id, &content).await?;
                        let answered_epoch = epoch.load(Ordering::SeqCst);
                        history.lock().push(Write { data_id, content, epoch: at, answered_epoch, outcome });
                        k += 1;
                        if outcome == Outcome::Refused {
                            // Like a client's retry pause; the next write is a new key.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        Self { stop, epoch, history, tasks }
    }

    /// Marks a fault: writes invoked from now on carry the next epoch.
    pub(crate) fn next_epoch(&self) -> usize {
        self.epoch.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub(crate) fn count(&self, epoch: usize, outcome: Outcome) -> usize {
        self.history.lock().iter().filter(|w| w.epoch == epoch && w.outcome == outcome).count()
    }

    /// Waits until `n` writes invoked in `epoch` got `outcome`.
    pub(crate) async fn wait_for(&self, epoch: usize, outcome: Outcome, n: usize, timeout: Duration) {
        let seen = eventually(timeout, || async { (self.count(epoch, outcome) >= n).then_some(()) }).await;
        assert!(seen.is_some(), "wanted {n} writes {outcome:?} in epoch {epoch}, saw {}", self.count(epoch, outcome));
    }

    /// Stops the writers; fails if any write went unanswered within the bound.
    pub(crate) async fn stop(self) -> Vec<Write> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("writer task").unwrap_or_else(|e| panic!("a write was not answered: {e}"));
        }
        std::mem::take(&mut *self.history.lock())
    }
}

/// Every acknowledged write reads back with its content on `server` (after convergence).
pub(crate) async fn has_every_acked_write(server: &Server, history: &[Write]) -> bool {
    for w in history.iter().filter(|w| w.outcome == Outcome::Acked) {
        let query = [("dataId", w.data_id.as_str()), ("group", "DEFAULT_GROUP")];
        let (status, body) = call(client().get(server.url("/nacos/v1/cs/configs")).query(&query)).await;
        if status != 200 || body != w.content {
            return false;
        }
    }
    true
}
