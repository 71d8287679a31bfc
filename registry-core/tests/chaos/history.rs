//! The recorded history: every operation with its invoke and complete times (µs since the run
//! started) and outcome, written as JSON lines.

use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// What an operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    /// Persistent instance registration (HTTP v1 or v2, `ephemeral=false`); `value` = `ip:port`.
    Register,
    /// Persistent instance deregistration; `value` = `ip:port`.
    Deregister,
    /// Config publish with `casMd5`: `expect` → `value`.
    Cas,
    /// Config read with `consistency=linearizable`; `value` = content (`None`: not found).
    ReadLinearizable,
    /// Config read with the default (local) consistency on `member`.
    ReadLocal,
    /// An ephemeral instance published over a gRPC session; `value` = `ip:port`.
    EphemeralRegister,
    /// Whether a live session's instance was in the view of the member it is connected to.
    Presence,
    /// A fault the nemesis injected (`value`: what) and removed.
    Nemesis,
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Outcome {
    /// Acknowledged.
    Ok,
    /// Definitely did not take effect (for a CAS: refused by the state, its guard failed).
    Fail,
    /// No answer in time, or an answer that does not say: may or may not have taken effect.
    Unknown,
}

/// One operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Op {
    /// Which client (`persist-0`, `config-2`, `eph-1`, `nemesis`, `final`).
    pub(crate) process: String,
    pub(crate) kind: Kind,
    /// Config key or service.
    pub(crate) key: String,
    pub(crate) value: Option<String>,
    /// A CAS's expected content.
    pub(crate) expect: Option<String>,
    /// Node id of the member asked.
    pub(crate) member: Option<u64>,
    pub(crate) invoke_us: u64,
    pub(crate) complete_us: u64,
    pub(crate) outcome: Outcome,
    /// Status or error, for people reading the history.
    pub(crate) detail: String,
}

/// The history being recorded (shared by every client task).
pub(crate) struct History {
    start: Instant,
    ops: Mutex<Vec<Op>>,
}

impl History {
    pub(crate) fn new() -> Self {
        Self { start: Instant::now(), ops: Mutex::new(Vec::new()) }
    }

    /// µs since the run started.
    pub(crate) fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    pub(crate) fn push(&self, op: Op) {
        self.ops.lock().unwrap().push(op);
    }

    /// Everything recorded so far, in invoke order.
    pub(crate) fn ops(&self) -> Vec<Op> {
        let mut ops = self.ops.lock().unwrap().clone();
        ops.sort_by_key(|o| (o.invoke_us, o.complete_us));
        ops
    }
}

/// Writes `ops` as JSON lines.
pub(crate) fn write_jsonl(path: &Path, ops: &[Op]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for op in ops {
        serde_json::to_writer(&mut out, op)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
