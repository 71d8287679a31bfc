//! Linearizability of one register (one config key), Wing & Gong's search with Lowe's memo
//! (the algorithm behind Knossos and Porcupine): linearize, one at a time, an operation that no
//! pending completed operation must precede; remember every (linearized set, value) reached so
//! no state is explored twice. An operation whose outcome is unknown may take effect at any
//! point after its invoke, or never: it never bounds the others and need not be linearized.

use std::collections::HashSet;

/// What an operation does to the register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RegOp {
    /// Observed this value (`None`: absent).
    Read(Option<String>),
    /// Compare-and-swap that took effect: the value was `expect`, is now `new`. On an absent
    /// value it takes effect too (Nacos' CAS guards existing configs only).
    Cas { expect: String, new: String },
    /// Compare-and-swap refused by the state: the value was not `expect`.
    CasRefused { expect: String },
}

/// One operation of the history.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) op: RegOp,
    pub(crate) invoke: u64,
    /// `None`: unknown outcome (may never have taken effect).
    pub(crate) complete: Option<u64>,
}

/// The check's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A linearization exists; `states` were explored to find it.
    Linearizable { states: usize },
    /// None exists. `prefix` is the most operations any attempt linearized; `stuck` describes
    /// the completed operations that could come next from that deepest attempt.
    Violation { states: usize, prefix: usize, stuck: String },
    /// The search gave up after `states` states (the history is too concurrent to decide).
    Undecided { states: usize },
}

/// Applies `op` to `value`, or `None` when `op` cannot happen on it.
fn step(value: &Option<String>, op: &RegOp) -> Option<Option<String>> {
    match op {
        RegOp::Read(v) => (v == value).then(|| value.clone()),
        RegOp::Cas { expect, new } => value.as_ref().is_none_or(|v| v == expect).then(|| Some(new.clone())),
        RegOp::CasRefused { expect } => value.as_ref().is_some_and(|v| v != expect).then(|| value.clone()),
    }
}

/// Whether `events`, from `initial`, is linearizable; gives up after `budget` states.
pub(crate) fn check(initial: Option<String>, events: &[Event], budget: usize) -> Verdict {
    let n = events.len();
    let words = n.div_ceil(64).max(1);
    let is_set = |bits: &[u64], i: usize| bits[i / 64] & (1 << (i % 64)) != 0;
    let mut seen: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    let start = (vec![0u64; words], initial);
    seen.insert(start.clone());
    let mut stack = vec![(start, 0usize)];
    let (mut deepest, mut stuck) = (0usize, String::new());
    while let Some(((bits, value), depth)) = stack.pop() {
        if seen.len() > budget {
            return Verdict::Undecided { states: seen.len() };
        }
        // The earliest completion among pending completed operations: whatever was invoked
        // after it must come after it.
        let horizon = (0..n).filter(|&i| !is_set(&bits, i)).filter_map(|i| events[i].complete).min();
        let Some(horizon) = horizon else { return Verdict::Linearizable { states: seen.len() } };
        let candidates: Vec<usize> = (0..n).filter(|&i| !is_set(&bits, i) && events[i].invoke <= horizon).collect();
        if depth >= deepest {
            deepest = depth;
            stuck = candidates
                .iter()
                .filter(|&&i| events[i].complete.is_some())
                .map(|&i| format!("{:?}@{}..{:?}", events[i].op, events[i].invoke, events[i].complete))
                .collect::<Vec<_>>()
                .join("; ");
            stuck = format!("value {value:?}; next could be: {stuck}");
        }
        for i in candidates {
            if let Some(next) = step(&value, &events[i].op) {
                let mut b = bits.clone();
                b[i / 64] |= 1 << (i % 64);
                let state = (b, next);
                if seen.insert(state.clone()) {
                    stack.push((state, depth + 1));
                }
            }
        }
    }
    Verdict::Violation { states: seen.len(), prefix: deepest, stuck }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(op: RegOp, invoke: u64, complete: Option<u64>) -> Event {
        Event { op, invoke, complete }
    }
    fn read(v: &str, a: u64, b: u64) -> Event {
        ev(RegOp::Read(Some(v.into())), a, Some(b))
    }
    fn cas(e: &str, n: &str, a: u64, b: Option<u64>) -> Event {
        ev(RegOp::Cas { expect: e.into(), new: n.into() }, a, b)
    }
    fn linearizable(v: &Verdict) -> bool {
        matches!(v, Verdict::Linearizable { .. })
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = [cas("0", "1", 0, Some(10)), read("1", 11, 20), cas("1", "2", 21, Some(30)), read("2", 31, 40)];
        assert!(linearizable(&check(Some("0".into()), &h, 10_000)));
    }

    #[test]
    fn concurrent_read_may_see_either_value() {
        // The read overlaps the write: old or new value are both fine.
        for seen in ["0", "1"] {
            let h = [cas("0", "1", 0, Some(10)), read(seen, 5, 15)];
            assert!(linearizable(&check(Some("0".into()), &h, 10_000)), "read {seen}");
        }
    }

    #[test]
    fn stale_read_after_an_acknowledged_write_is_a_violation() {
        let h = [cas("0", "1", 0, Some(10)), read("0", 11, 20)];
        assert!(matches!(check(Some("0".into()), &h, 10_000), Verdict::Violation { prefix: 1, .. }));
    }

    #[test]
    fn two_acknowledged_swaps_from_the_same_value_are_a_violation() {
        // The planted "ack before commit" bug: both CASes 0→1 acknowledged.
        let h = [cas("0", "1", 0, Some(10)), cas("0", "1", 1, Some(12))];
        assert!(matches!(check(Some("0".into()), &h, 10_000), Verdict::Violation { .. }));
    }

    #[test]
    fn unknown_outcomes_may_apply_late_or_never() {
        // A timed-out CAS that a later read shows applied, long after it was invoked...
        let late = [cas("0", "1", 0, None), read("0", 50, 60), read("1", 100, 110)];
        assert!(linearizable(&check(Some("0".into()), &late, 10_000)));
        // ...or that never applied.
        let never = [cas("0", "1", 0, None), read("0", 100, 110)];
        assert!(linearizable(&check(Some("0".into()), &never, 10_000)));
        // But it cannot apply before it was invoked.
        let early = [read("1", 0, 10), cas("0", "1", 20, None)];
        assert!(!linearizable(&check(Some("0".into()), &early, 10_000)));
    }

    #[test]
    fn refused_swap_means_the_value_differed() {
        let refused = |e: &str, a, b| ev(RegOp::CasRefused { expect: e.into() }, a, Some(b));
        let ok = [cas("0", "1", 0, Some(10)), refused("0", 11, 20)];
        assert!(linearizable(&check(Some("0".into()), &ok, 10_000)));
        let bad = [refused("0", 0, 10)];
        assert!(!linearizable(&check(Some("0".into()), &bad, 10_000)));
    }

    #[test]
    fn value_going_back_between_reads_is_a_violation() {
        let h = [cas("0", "1", 0, Some(100)), read("1", 10, 20), read("0", 30, 40)];
        assert!(!linearizable(&check(Some("0".into()), &h, 10_000)));
    }

    #[test]
    fn search_gives_up_past_its_budget() {
        // Forty unknown no-op swaps can be linearized in 2^40 subsets before an impossible read.
        let h: Vec<Event> = (0..40).map(|_| cas("0", "0", 0, None)).chain([read("never", 0, 1)]).collect();
        assert!(matches!(check(Some("0".into()), &h, 1_000), Verdict::Undecided { .. }));
    }
}
