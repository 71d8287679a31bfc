//! Check-quorum for openraft 0.9, which has none: a leader that no quorum has acknowledged for
//! the lease stops taking writes.
//!
//! openraft 0.9 keeps an isolated leader leading, and a write proposed there waits forever for
//! a commit that cannot come. openraft does publish, for a leader, how long ago a quorum last
//! acknowledged it (`millis_since_quorum_ack`, refreshed on every heartbeat tick). With it:
//!
//! - a write that reaches a leader whose lease lapsed is refused before it is proposed (so it is
//!   certainly not applied) and the node reports no leader, as a follower without one does;
//! - a write already proposed when the lease lapses is answered at once with "outcome unknown"
//!   (the entry is in the leader's log: if the leader regains its quorum before a new leader
//!   replaces it, it commits);
//! - a leader elected but never acknowledged (isolated right after winning) counts from the
//!   moment this node saw itself lead.
//!
//! The lease is longer than the election timeout: by the time it lapses, the other members have
//! had time to elect a leader of their own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::RaftMetrics;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::NodeId;
use super::member::Member;

/// How often a waiter looks at the lease when no metrics arrive (openraft refreshes them on
/// every heartbeat tick, so this is only a floor).
const RECHECK: Duration = Duration::from_millis(100);

/// The leader lease of one node. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Lease {
    metrics: watch::Receiver<RaftMetrics<NodeId, Member>>,
    me: NodeId,
    lease: Duration,
    /// The term in which this node last saw itself lead, and since when.
    leading_since: Arc<Mutex<Option<(u64, Instant)>>>,
}

impl Lease {
    /// The lease of node `me`, judged from its metrics.
    pub(crate) fn new(metrics: watch::Receiver<RaftMetrics<NodeId, Member>>, me: NodeId, lease: Duration) -> Self {
        Self { metrics, me, lease, leading_since: Arc::default() }
    }

    /// The lease's length.
    pub(crate) fn length(&self) -> Duration {
        self.lease
    }

    /// Whether this node leads but no quorum acknowledged it within the lease.
    pub(crate) fn lapsed(&self) -> bool {
        let m = self.metrics.borrow();
        self.lapsed_in(&m)
    }

    /// [`Self::lapsed`] for a metrics snapshot the caller already holds.
    pub(crate) fn lapsed_in(&self, m: &RaftMetrics<NodeId, Member>) -> bool {
        if m.current_leader != Some(self.me) {
            return false;
        }
        let lease_ms = u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX);
        match m.millis_since_quorum_ack {
            Some(ms) => ms > lease_ms,
            None => {
                let mut since = self.leading_since.lock();
                let started = match *since {
                    Some((term, at)) if term == m.current_term => at,
                    _ => {
                        let now = Instant::now();
                        *since = Some((m.current_term, now));
                        now
                    }
                };
                started.elapsed() > self.lease
            }
        }
    }

    /// Resolves once the lease has lapsed (never, while a quorum keeps acknowledging).
    pub(crate) async fn until_lapsed(&self) {
        let mut metrics = self.metrics.clone();
        loop {
            if self.lapsed() {
                return;
            }
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return std::future::pending().await },
                () = tokio::time::sleep(RECHECK) => {}
            }
        }
    }
}
