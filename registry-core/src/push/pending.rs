//! The pending-ack table: every message that expects an acknowledgement (naming pushes over
//! gRPC and UDP, config change notifications) waits here until it is acknowledged, comes due
//! for a resend, or has used up its retries. Both notifiers own one per channel and drive it
//! from their ticker; the table itself does no I/O, so the policy is testable with paused time.

use std::collections::HashMap;
use std::hash::Hash;

use tokio::time::{Duration, Instant};

/// How the wait before the next resend grows with the attempt number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backoff {
    /// Every attempt waits the timeout (Nacos' UDP pushes).
    Fixed,
    /// Attempt n waits (n + 1) × timeout (Nacos resends config notifications about every 2·n s).
    Linear,
    /// Attempt n waits 2ⁿ × timeout, capped at 2¹⁰ (naming gRPC pushes).
    Doubling,
}

/// When an unacknowledged message is resent and when the sender gives up on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Wait of the first attempt.
    pub(crate) timeout: Duration,
    /// Resends before giving up.
    pub(crate) max_retries: u32,
    /// Growth of the wait.
    pub(crate) backoff: Backoff,
}

impl RetryPolicy {
    /// A policy from configured milliseconds.
    pub(crate) fn from_millis(timeout_ms: u64, max_retries: u32, backoff: Backoff) -> Self {
        Self { timeout: Duration::from_millis(timeout_ms), max_retries, backoff }
    }

    /// How long attempt `attempt` (0 = first send) waits for its ack.
    pub(crate) fn wait(&self, attempt: u32) -> Duration {
        match self.backoff {
            Backoff::Fixed => self.timeout,
            Backoff::Linear => self.timeout.saturating_mul(attempt.saturating_add(1)),
            Backoff::Doubling => self.timeout.saturating_mul(1 << attempt.min(10)),
        }
    }

    /// How often deadlines are checked: a quarter of the timeout keeps resends within 25 % of
    /// their due time, bounded so that tiny timeouts do not spin and long ones are not late.
    pub(crate) fn check_every(&self) -> Duration {
        (self.timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

/// What to do with a message whose ack did not come in time.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Due<T> {
    /// Send it again as attempt `attempt`.
    Resend {
        /// What the sender stored with the message.
        payload: T,
        /// The attempt number of the resend.
        attempt: u32,
    },
    /// Retries are used up: the sender gives up (gRPC: closes the connection so its client
    /// reconnects and resyncs).
    GiveUp(T),
}

impl<T> Due<T> {
    /// What the sender stored with the message, whatever is to be done with it.
    pub(crate) fn payload(&self) -> &T {
        match self {
            Self::Resend { payload, .. } | Self::GiveUp(payload) => payload,
        }
    }
}

struct Entry<T> {
    payload: T,
    attempt: u32,
    deadline: Instant,
}

/// Unacknowledged messages keyed by what the ack echoes: (connection, requestId) for gRPC,
/// (address, lastRefTime) for UDP.
pub(crate) struct PendingAcks<K, T> {
    entries: HashMap<K, Entry<T>>,
    policy: RetryPolicy,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, T> PendingAcks<K, T> {
    /// An empty table; beyond `capacity` entries new messages are sent without retry, so a
    /// flood of unacknowledging clients cannot grow memory without bound.
    pub(crate) fn new(policy: RetryPolicy, capacity: usize) -> Self {
        Self { entries: HashMap::new(), policy, capacity }
    }

    /// The policy the table applies.
    pub(crate) fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Records that attempt `attempt` of a message was just sent.
    pub(crate) fn track(&mut self, key: K, payload: T, attempt: u32) {
        if self.entries.len() < self.capacity {
            let deadline = Instant::now() + self.policy.wait(attempt);
            self.entries.insert(key, Entry { payload, attempt, deadline });
        }
    }

    /// Removes a message (acknowledged, or superseded by a newer one); returns its payload.
    pub(crate) fn remove(&mut self, key: &K) -> Option<T> {
        self.entries.remove(key).map(|e| e.payload)
    }

    /// Takes every message whose deadline passed, each with what to do about it.
    pub(crate) fn take_due(&mut self) -> Vec<(K, Due<T>)> {
        let now = Instant::now();
        let due: Vec<K> = self.entries.iter().filter(|(_, e)| e.deadline <= now).map(|(k, _)| k.clone()).collect();
        let mut out = Vec::with_capacity(due.len());
        for key in due {
            let Some(e) = self.entries.remove(&key) else { continue };
            let action = if e.attempt >= self.policy.max_retries {
                Due::GiveUp(e.payload)
            } else {
                Due::Resend { payload: e.payload, attempt: e.attempt + 1 }
            };
            out.push((key, action));
        }
        out
    }

    /// Keeps only the messages whose key `keep` accepts (a connection went away).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.entries.retain(|k, _| keep(k));
    }

    /// Messages awaiting an ack.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(backoff: Backoff, max_retries: u32) -> PendingAcks<u32, &'static str> {
        PendingAcks::new(RetryPolicy { timeout: Duration::from_secs(1), max_retries, backoff }, 10)
    }

    #[tokio::test(start_paused = true)]
    async fn unacknowledged_message_is_resent_after_its_timeout() {
        let mut t = table(Backoff::Fixed, 3);
        t.track(1, "m", 0);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(t.take_due().is_empty(), "not due before the timeout");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(t.take_due(), vec![(1, Due::Resend { payload: "m", attempt: 1 })]);
        assert_eq!(t.len(), 0, "a due message leaves the table until it is resent");
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_retries() {
        let mut t = table(Backoff::Fixed, 2);
        t.track(1, "m", 0);
        for attempt in 1..=2 {
            tokio::time::advance(Duration::from_secs(1)).await;
            assert_eq!(t.take_due(), vec![(1, Due::Resend { payload: "m", attempt })]);
            t.track(1, "m", attempt);
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(t.take_due(), vec![(1, Due::GiveUp("m"))]);
        assert_eq!(t.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn acknowledged_message_is_never_resent() {
        let mut t = table(Backoff::Fixed, 3);
        t.track(1, "m", 0);
        t.track(2, "n", 0);
        assert_eq!(t.remove(&1), Some("m"));
        assert_eq!(t.remove(&1), None, "a second ack finds nothing");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(t.take_due(), vec![(2, Due::Resend { payload: "n", attempt: 1 })]);
    }

    #[tokio::test(start_paused = true)]
    async fn beyond_capacity_messages_are_not_tracked() {
        let mut t = PendingAcks::new(
            RetryPolicy { timeout: Duration::from_secs(1), max_retries: 1, backoff: Backoff::Fixed },
            1,
        );
        t.track(1, "m", 0);
        t.track(2, "n", 0);
        assert_eq!(t.len(), 1);
        t.retain(|k| *k != 1);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn waits_grow_as_configured() {
        let p = |backoff| RetryPolicy { timeout: Duration::from_secs(3), max_retries: 50, backoff };
        assert_eq!(p(Backoff::Fixed).wait(4), Duration::from_secs(3));
        assert_eq!(p(Backoff::Linear).wait(0), Duration::from_secs(3));
        assert_eq!(p(Backoff::Linear).wait(2), Duration::from_secs(9));
        assert_eq!(p(Backoff::Doubling).wait(2), Duration::from_secs(12));
        assert_eq!(p(Backoff::Doubling).wait(30), Duration::from_secs(3 * 1024));
        assert_eq!(p(Backoff::Fixed).check_every(), Duration::from_millis(750));
    }
}
