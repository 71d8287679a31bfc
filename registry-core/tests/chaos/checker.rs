//! Checks on a recorded history and the final state read after heal. Each returns the
//! violations it found, as sentences a person can follow back into `history.jsonl`.

pub(crate) mod linear;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::history::{Kind, Op, Outcome};
use linear::{Event, RegOp, Verdict};

/// States the linearizability search may visit per key before it gives up.
const SEARCH_BUDGET: usize = 5_000_000;

/// What the members hold once the cluster converged.
#[derive(Debug, Default, Serialize)]
pub(crate) struct FinalState {
    /// Per member (index), the persistent service's instances (`ip:port`).
    pub(crate) persistent: Vec<BTreeSet<String>>,
    /// Per config key, the content each member returned to a linearizable read.
    pub(crate) configs: BTreeMap<String, Vec<Option<String>>>,
}

/// No acknowledged persistent registration is missing on any member, unless a deregistration
/// of it was attempted; no acknowledged deregistration came back; nothing appears that no one
/// registered.
pub(crate) fn lost_registrations(ops: &[Op], fin: &FinalState) -> Vec<String> {
    let of = |kind: Kind, outcome: Option<Outcome>| -> BTreeSet<&str> {
        ops.iter()
            .filter(|o| o.kind == kind && outcome.is_none_or(|w| o.outcome == w))
            .filter_map(|o| o.value.as_deref())
            .collect()
    };
    let (acked, attempted) = (of(Kind::Register, Some(Outcome::Ok)), of(Kind::Register, None));
    let (removed, remove_attempted) = (of(Kind::Deregister, Some(Outcome::Ok)), of(Kind::Deregister, None));
    let mut out = Vec::new();
    for (m, have) in fin.persistent.iter().enumerate() {
        for lost in acked.iter().filter(|r| !remove_attempted.contains(*r) && !have.contains(**r)) {
            out.push(format!("member {}: acknowledged registration {lost} lost", m + 1));
        }
        for back in removed.iter().filter(|r| have.contains(**r)) {
            out.push(format!("member {}: acknowledged deregistration of {back} undone", m + 1));
        }
        for phantom in have.iter().filter(|h| !attempted.contains(h.as_str())) {
            out.push(format!("member {}: {phantom} present but never registered", m + 1));
        }
    }
    out
}

/// Every key's final value (the same on every member) is at least the highest value an
/// acknowledged CAS wrote: the counters only rise, so anything lower lost an acknowledged write.
pub(crate) fn lost_publishes(ops: &[Op], fin: &FinalState) -> Vec<String> {
    let mut out = Vec::new();
    for (key, values) in &fin.configs {
        let acked = ops
            .iter()
            .filter(|o| o.kind == Kind::Cas && o.outcome == Outcome::Ok && o.key == *key)
            .filter_map(|o| o.value.as_deref()?.parse::<u64>().ok())
            .max();
        let distinct: BTreeSet<&Option<String>> = values.iter().collect();
        if distinct.len() > 1 {
            out.push(format!("{key}: members disagree after convergence: {values:?}"));
        }
        for (m, v) in values.iter().enumerate() {
            let have = v.as_deref().and_then(|v| v.parse::<u64>().ok());
            if let Some(acked) = acked
                && have.is_none_or(|h| h < acked)
            {
                out.push(format!("{key}: member {} holds {v:?}, below the acknowledged {acked}", m + 1));
            }
        }
    }
    out
}

/// Per key, the linearizability verdict of its linearizable reads and CASes.
#[derive(Debug, Serialize)]
pub(crate) struct KeyReport {
    pub(crate) key: String,
    pub(crate) ops: usize,
    pub(crate) states: usize,
    pub(crate) verdict: String,
}

/// Linearizable reads and CAS writes of each key form a linearizable register history from
/// `initial` (unknown CAS outcomes may or may not have applied; failed reads say nothing).
pub(crate) fn linearizable(ops: &[Op], initial: &Option<String>) -> (Vec<KeyReport>, Vec<String>) {
    let mut per_key: BTreeMap<&str, Vec<Event>> = BTreeMap::new();
    for o in ops {
        let op = match (o.kind, o.outcome) {
            (Kind::ReadLinearizable, Outcome::Ok) => RegOp::Read(o.value.clone()),
            (Kind::Cas, Outcome::Ok | Outcome::Unknown) => {
                RegOp::Cas { expect: o.expect.clone().unwrap_or_default(), new: o.value.clone().unwrap_or_default() }
            }
            (Kind::Cas, Outcome::Fail) => RegOp::CasRefused { expect: o.expect.clone().unwrap_or_default() },
            _ => continue,
        };
        let complete = (o.outcome != Outcome::Unknown).then_some(o.complete_us);
        per_key.entry(&o.key).or_default().push(Event { op, invoke: o.invoke_us, complete });
    }
    let (mut reports, mut violations) = (Vec::new(), Vec::new());
    for (key, events) in per_key {
        let verdict = linear::check(initial.clone(), &events, SEARCH_BUDGET);
        let (states, text) = match &verdict {
            Verdict::Linearizable { states } => (*states, "linearizable".to_owned()),
            Verdict::Violation { states, prefix, stuck } => {
                violations.push(format!(
                    "{key}: not linearizable (at most {prefix} of {} operations linearize; then {stuck})",
                    events.len()
                ));
                (*states, "violation".to_owned())
            }
            Verdict::Undecided { states } => {
                violations.push(format!("{key}: linearizability undecided after {states} states"));
                (*states, "undecided".to_owned())
            }
        };
        reports.push(KeyReport { key: key.to_owned(), ops: events.len(), states, verdict: text });
    }
    (reports, violations)
}

/// A counter's value as an order (absent below every value).
fn rank(v: &Option<String>) -> Option<u64> {
    v.as_deref().and_then(|v| v.parse().ok())
}

/// Local (default) reads on one member never go back in time: a read invoked after another
/// read on the same member completed returns a value at least as new (a restarted member is
/// the same member: its id).
pub(crate) fn monotonic_local_reads(ops: &[Op]) -> Vec<String> {
    let mut groups: BTreeMap<(u64, &str), Vec<&Op>> = BTreeMap::new();
    for o in ops.iter().filter(|o| o.kind == Kind::ReadLocal && o.outcome == Outcome::Ok) {
        groups.entry((o.member.unwrap_or(0), &o.key)).or_default().push(o);
    }
    let mut out = Vec::new();
    for ((member, key), reads) in groups {
        let mut by_complete = reads.clone();
        by_complete.sort_by_key(|o| o.complete_us);
        let mut by_invoke = reads;
        by_invoke.sort_by_key(|o| o.invoke_us);
        let (mut next, mut newest): (usize, Option<&Op>) = (0, None);
        for r in by_invoke {
            while next < by_complete.len() && by_complete[next].complete_us < r.invoke_us {
                let c = by_complete[next];
                if newest.is_none_or(|n| rank(&c.value) > rank(&n.value)) {
                    newest = Some(c);
                }
                next += 1;
            }
            if let Some(n) = newest
                && rank(&r.value) < rank(&n.value)
            {
                out.push(format!(
                    "member {member} {key}: read {:?} at {}µs after reading {:?} (done at {}µs)",
                    r.value, r.invoke_us, n.value, n.complete_us
                ));
            }
        }
    }
    out
}

/// The longest time (µs) a live session's instance was missing from the view of the member it
/// was connected to: from the first sample that missed it to the next that had it (or `end`).
pub(crate) fn ephemeral_gaps(ops: &[Op], end_us: u64) -> BTreeMap<String, u64> {
    let mut samples: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for o in ops.iter().filter(|o| o.kind == Kind::Presence && o.outcome == Outcome::Ok) {
        samples.entry(&o.process).or_default().push(o);
    }
    let mut out = BTreeMap::new();
    for (process, mut list) in samples {
        list.sort_by_key(|o| o.invoke_us);
        let (mut missing_since, mut worst) = (None::<u64>, 0u64);
        for o in list {
            if o.value.as_deref() == Some("true") {
                if let Some(since) = missing_since.take() {
                    worst = worst.max(o.invoke_us - since);
                }
            } else {
                missing_since.get_or_insert(o.invoke_us);
            }
        }
        if let Some(since) = missing_since {
            worst = worst.max(end_us.saturating_sub(since));
        }
        out.insert(process.to_owned(), worst);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: Kind, key: &str, value: &str, member: u64, at: (u64, u64), outcome: Outcome) -> Op {
        Op {
            process: "t".into(),
            kind,
            key: key.into(),
            value: Some(value.into()),
            expect: None,
            member: Some(member),
            invoke_us: at.0,
            complete_us: at.1,
            outcome,
            detail: String::new(),
        }
    }

    #[test]
    fn a_lost_acknowledged_registration_is_reported_and_an_attempted_removal_excuses_it() {
        let ops = [
            op(Kind::Register, "s", "a:80", 1, (0, 1), Outcome::Ok),
            op(Kind::Register, "s", "b:80", 1, (0, 1), Outcome::Ok),
            op(Kind::Deregister, "s", "b:80", 1, (2, 3), Outcome::Unknown),
            op(Kind::Register, "s", "c:80", 1, (0, 1), Outcome::Unknown),
        ];
        let fin = FinalState { persistent: vec![BTreeSet::new()], configs: BTreeMap::new() };
        assert_eq!(lost_registrations(&ops, &fin), vec!["member 1: acknowledged registration a:80 lost"]);
        let fin = FinalState { persistent: vec![["a:80".to_owned(), "c:80".to_owned()].into()], ..fin };
        assert!(lost_registrations(&ops, &fin).is_empty(), "an unknown registration may be present");
    }

    #[test]
    fn a_final_value_below_an_acknowledged_publish_is_reported() {
        let mut cas = op(Kind::Cas, "k", "5", 1, (0, 1), Outcome::Ok);
        cas.expect = Some("4".into());
        let fin = |v: &str| FinalState {
            persistent: vec![],
            configs: [("k".to_owned(), vec![Some(v.to_owned()), Some(v.to_owned())])].into(),
        };
        assert!(lost_publishes(std::slice::from_ref(&cas), &fin("6")).is_empty());
        assert_eq!(lost_publishes(&[cas], &fin("4")).len(), 2);
    }

    #[test]
    fn local_reads_going_back_on_one_member_are_reported_but_not_across_members() {
        let ops = [
            op(Kind::ReadLocal, "k", "3", 1, (0, 10), Outcome::Ok),
            op(Kind::ReadLocal, "k", "2", 2, (20, 30), Outcome::Ok),
            op(Kind::ReadLocal, "k", "2", 1, (5, 15), Outcome::Ok),
        ];
        assert!(monotonic_local_reads(&ops).is_empty(), "overlapping or on other members");
        let back = [ops[0].clone(), op(Kind::ReadLocal, "k", "2", 1, (11, 15), Outcome::Ok)];
        assert_eq!(monotonic_local_reads(&back).len(), 1);
    }

    #[test]
    fn ephemeral_gap_runs_from_first_miss_to_next_hit() {
        let p = |present: bool, at: u64| op(Kind::Presence, "s", &present.to_string(), 1, (at, at), Outcome::Ok);
        let ops = [p(true, 0), p(false, 100), p(false, 200), p(true, 700), p(false, 900)];
        assert_eq!(ephemeral_gaps(&ops, 1000)["t"], 600);
    }
}
