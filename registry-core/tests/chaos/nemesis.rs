//! The nemesis: one fault at a time, held for a moment, then removed, while the workload runs.
//! Faults rotate through every kind so each appears in any run of six events or more; targets
//! are the leader half of the time (the interesting member), else any member.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::cluster::ChaosCluster;
use crate::history::{Kind, Op, Outcome};
use crate::workload::Ctx;

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Fault {
    /// SIGKILL, then a restart on the same address and data.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// A minority (with the target) cut from the majority, both ways.
    MajorityMinority,
    /// Two halves that cannot reach each other, both reaching the target (Jepsen's bridge).
    Bridge,
    /// The target's packets to every other member dropped (it still hears them), or the reverse.
    OneWay,
    /// SIGKILL, then a restart on the member's other address.
    RestartNewAddress,
}

const ROTATION: [Fault; 6] =
    [Fault::Kill, Fault::MajorityMinority, Fault::Pause, Fault::RestartNewAddress, Fault::Bridge, Fault::OneWay];

/// Runs faults until at least `events` ran and `min_time` passed; returns how many of each.
pub(crate) async fn run(
    cluster: &mut ChaosCluster,
    ctx: &Ctx,
    events: usize,
    min_time: Duration,
    only: Option<&[Fault]>,
) -> BTreeMap<Fault, usize> {
    let mut rng = fastrand::Rng::with_seed(ctx.seed ^ 0x4E4E);
    let rotation: &[Fault] = only.unwrap_or(&ROTATION);
    let started = std::time::Instant::now();
    let mut counts = BTreeMap::new();
    let n = cluster.members.len();
    let mut k = 0;
    while k < events || started.elapsed() < min_time {
        let fault = rotation[k % rotation.len()];
        k += 1;
        let leader = if rng.bool() { cluster.leader().await } else { None };
        let target = leader.unwrap_or_else(|| rng.usize(..n));
        let hold = Duration::from_millis(rng.u64(1_000..3_000));
        let invoke = ctx.history.now();
        let what = inject(cluster, fault, target, &mut rng).await;
        if !matches!(fault, Fault::Kill | Fault::RestartNewAddress) {
            tokio::time::sleep(hold).await;
        }
        match fault {
            Fault::Kill => {
                tokio::time::sleep(hold).await;
                cluster.restart(target, false).await;
            }
            Fault::RestartNewAddress => {
                cluster.restart(target, true).await;
                ctx.addrs.write().unwrap()[target] = cluster.addr(target);
            }
            Fault::Pause => cluster.resume(target),
            _ => cluster.lab.heal().expect("heal"),
        }
        ctx.history.push(Op {
            process: "nemesis".into(),
            kind: Kind::Nemesis,
            key: format!("{fault:?}"),
            value: Some(what),
            expect: None,
            member: Some(target as u64 + 1),
            invoke_us: invoke,
            complete_us: ctx.history.now(),
            outcome: Outcome::Ok,
            detail: String::new(),
        });
        *counts.entry(fault).or_insert(0) += 1;
        tokio::time::sleep(Duration::from_millis(rng.u64(500..1_500))).await;
    }
    counts
}

/// Injects `fault` on `target`; what it did, for the history.
async fn inject(cluster: &mut ChaosCluster, fault: Fault, target: usize, rng: &mut fastrand::Rng) -> String {
    let n = cluster.members.len();
    let nodes = cluster.lab.nodes();
    let mut others: Vec<usize> = (0..n).filter(|&i| i != target).collect();
    rng.shuffle(&mut others);
    let ids = |v: &[usize]| v.iter().map(|i| (i + 1).to_string()).collect::<Vec<_>>().join(",");
    match fault {
        Fault::Kill | Fault::RestartNewAddress => {
            cluster.kill9(target);
            format!("kill -9 member {}", target + 1)
        }
        Fault::Pause => {
            cluster.pause(target);
            format!("SIGSTOP member {}", target + 1)
        }
        Fault::MajorityMinority => {
            let mut minority = vec![target];
            minority.extend_from_slice(&others[..(n - 1) / 2 - 1]);
            let majority: Vec<usize> = others[(n - 1) / 2 - 1..].to_vec();
            let group = |v: &[usize]| v.iter().map(|&i| nodes[i]).collect::<Vec<_>>();
            cluster.lab.partition(&[group(&minority), group(&majority)]).expect("partition");
            format!("partition minority [{}] | majority [{}]", ids(&minority), ids(&majority))
        }
        Fault::Bridge => {
            let (left, right) = others.split_at(others.len() / 2);
            for &a in left {
                for &b in right {
                    cluster.lab.cut(nodes[a], nodes[b]).expect("cut");
                }
            }
            format!("bridge [{}] <-> {} <-> [{}]", ids(left), target + 1, ids(right))
        }
        Fault::OneWay => {
            let outgoing = rng.bool();
            for &o in &others {
                let (from, to) = if outgoing { (target, o) } else { (o, target) };
                cluster.lab.block(nodes[from], nodes[to]).expect("block");
            }
            if outgoing {
                format!("member {}'s packets to all others dropped", target + 1)
            } else {
                format!("all packets to member {} dropped", target + 1)
            }
        }
    }
}
