//! Chaos suite (Jepsen-style): real `registry` members, each in its own network namespace on a
//! bridge (`netlab`), a concurrent workload, a nemesis (kill -9, SIGSTOP, restart on a new
//! address, partitions: majority/minority, bridge, one-way) and checkers on the recorded
//! history. See `docs/reliability.md` for the bounds and how to read a verdict.
//!
//! Needs root, `ip` and `nft`; prints `SKIP chaos: ...` without them (`CHAOS_REQUIRED=1` fails
//! instead). The checkers' own unit tests run everywhere.

#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "../it/harness.rs"]
mod harness;

mod checker;
mod cluster;
mod history;
mod nemesis;
mod run;
mod workload;

use std::time::Duration;

use run::Profile;

fn assert_clean(verdict: &run::Verdict) {
    assert!(
        verdict.violations.is_empty(),
        "{} violations (see {}):\n{}",
        verdict.violations.len(),
        verdict.dir.display(),
        verdict.violations.join("\n")
    );
}

/// The short profile: three members, 32 faults of every kind, zero violations.
#[tokio::test(flavor = "multi_thread")]
async fn short_profile_three_members_loses_nothing_and_stays_linearizable() {
    let Some(verdict) = run::run(Profile::short("short-3", 3, 32)).await else { return };
    assert!(verdict.nemesis_events >= 30 && verdict.nemesis.len() == 6, "{:?}", verdict.nemesis);
    assert_clean(&verdict);
}

/// Five members, fewer faults (the long profile, `scripts/chaos-long`, runs five for 30 min).
#[tokio::test(flavor = "multi_thread")]
async fn short_profile_five_members_loses_nothing_and_stays_linearizable() {
    let Some(verdict) = run::run(Profile::short("short-5", 5, 12)).await else { return };
    assert_clean(&verdict);
}

/// The checker catches a real bug: members that acknowledge persistent writes before Raft
/// commits them (`--chaos-plant ack-before-commit`, test-only) fail the run.
#[tokio::test(flavor = "multi_thread")]
async fn planted_ack_before_commit_is_caught_by_the_checker() {
    use nemesis::Fault;
    let profile = Profile {
        faults: Some(&[Fault::MajorityMinority, Fault::Kill, Fault::OneWay]),
        plant: Some("ack-before-commit"),
        ..Profile::short("planted-ack-before-commit", 3, 6)
    };
    let Some(verdict) = run::run(profile).await else { return };
    let caught = verdict.violations.iter().any(|v| v.contains("acknowledged") || v.contains("not linearizable"));
    assert!(caught, "the planted bug went unnoticed; see {}", verdict.dir.display());
}

/// The long profile (`scripts/chaos-long`): five members (`CHAOS_MEMBERS`), at least
/// `CHAOS_MINUTES` (30) of faults.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "long profile: run by scripts/chaos-long"]
async fn long_profile() {
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let profile = Profile {
        min_time: Duration::from_secs(60 * env("CHAOS_MINUTES", 30)),
        ..Profile::short("long", env("CHAOS_MEMBERS", 5) as usize, 30)
    };
    let Some(verdict) = run::run(profile).await else { return };
    assert_clean(&verdict);
}
