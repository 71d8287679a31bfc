//! One chaos run: cluster up, workload and nemesis for a bounded time, everything recovered,
//! convergence measured, final state read, checkers run; `history.jsonl` and `verdict.json`
//! written into the run's directory (printed at the end).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::checker::{self, FinalState, KeyReport};
use crate::cluster::{ChaosCluster, scaled};
use crate::harness::eventually;
use crate::history::{self, History};
use crate::nemesis::{self, Fault};
use crate::workload::{self, Ctx, EphemeralClient, KEYS, PERSISTENT_SERVICE};

/// After the last fault is removed, every member applied the same Raft index and holds the
/// same Distro digest within this bound.
pub(crate) const CONVERGENCE_BOUND: Duration = Duration::from_secs(30);
/// After convergence, every subscriber's pushed view equals the members' within this bound.
pub(crate) const SUBSCRIBER_BOUND: Duration = Duration::from_secs(30);
/// A live session's instance may be missing from its member's view at most this long.
pub(crate) const EPHEMERAL_GAP_BOUND: Duration = Duration::from_secs(15);

/// What a run does.
pub(crate) struct Profile {
    pub(crate) name: &'static str,
    pub(crate) members: usize,
    /// Fault events, at least.
    pub(crate) events: usize,
    /// Nemesis time, at least.
    pub(crate) min_time: Duration,
    pub(crate) persistent_clients: usize,
    pub(crate) config_clients: usize,
    pub(crate) ephemeral_clients: usize,
    /// Only these faults (default: all, rotating).
    pub(crate) faults: Option<&'static [Fault]>,
    /// Test-only planted bug passed to every member (`--chaos-plant`).
    pub(crate) plant: Option<&'static str>,
}

impl Profile {
    /// The short profile: `members`, `events` faults, the standard workload.
    pub(crate) fn short(name: &'static str, members: usize, events: usize) -> Self {
        Self {
            name,
            members,
            events,
            min_time: Duration::ZERO,
            persistent_clients: 2,
            config_clients: 3,
            ephemeral_clients: 4,
            faults: None,
            plant: None,
        }
    }
}

/// How long a final read may be retried (the cluster converged already).
const FINAL_READ: Duration = Duration::from_secs(10);

/// The verdict file.
#[derive(Debug, Serialize)]
pub(crate) struct Verdict {
    pub(crate) profile: String,
    pub(crate) seed: u64,
    pub(crate) members: usize,
    pub(crate) plant: Option<String>,
    pub(crate) run_seconds: f64,
    pub(crate) nemesis: BTreeMap<Fault, usize>,
    pub(crate) nemesis_events: usize,
    /// Operations per kind and outcome.
    pub(crate) operations: BTreeMap<String, BTreeMap<String, usize>>,
    pub(crate) convergence_ms: Option<u128>,
    pub(crate) subscriber_convergence_ms: Option<u128>,
    pub(crate) ephemeral_max_gap_ms: BTreeMap<String, u64>,
    pub(crate) bounds_ms: BTreeMap<&'static str, u128>,
    pub(crate) linearizability: Vec<KeyReport>,
    pub(crate) final_state: FinalState,
    pub(crate) violations: Vec<String>,
    pub(crate) dir: PathBuf,
}

/// Runs `profile`; `None` when the machine cannot host a network lab (printed `SKIP chaos:`).
pub(crate) async fn run(profile: Profile) -> Option<Verdict> {
    let lab = netlab::start_or_skip("chaos", "CHAOS_REQUIRED")?;
    let seed = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // `CHAOS_DIR` overrides where runs go (default: the target dir's tmp/chaos).
    let base = std::env::var_os("CHAOS_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chaos"), PathBuf::from);
    let dir = base.join(format!("{}-{stamp}-{seed}", profile.name));
    std::fs::create_dir_all(&dir).expect("run dir");
    println!("chaos {}: seed {seed}, {} members, run dir {}", profile.name, profile.members, dir.display());
    let started = Instant::now();
    let mut cluster = ChaosCluster::start(lab, profile.members, &dir, profile.plant).await;
    let history = Arc::new(History::new());
    let addrs = (0..profile.members).map(|i| cluster.addr(i)).collect();
    let ctx = Arc::new(Ctx::new(Arc::clone(&history), addrs, seed));
    eventually(scaled(Duration::from_secs(60)), || async { cluster.leader().await }).await.expect("a leader");
    seed_keys(&ctx, profile.members).await;

    let mut sessions = Vec::new();
    for i in 0..profile.ephemeral_clients {
        sessions.push(workload::ephemeral_client(&ctx, i, cluster.all_grpc_addrs()).await);
    }
    let sessions = Arc::new(sessions);
    let mut tasks = Vec::new();
    for p in 0..profile.persistent_clients {
        tasks.push(tokio::spawn(workload::persistent_client(Arc::clone(&ctx), p)));
    }
    for c in 0..profile.config_clients {
        tasks.push(tokio::spawn(workload::config_client(Arc::clone(&ctx), c)));
    }
    tasks.push(tokio::spawn(workload::presence_monitor(Arc::clone(&ctx), Arc::clone(&sessions))));

    let nemesis = nemesis::run(&mut cluster, &ctx, profile.events, profile.min_time, profile.faults).await;
    cluster.recover_all().await;
    // Convergence is timed from here: every member runs and the network is whole. Clients
    // finish what they have in flight meanwhile.
    let t = Instant::now();
    ctx.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("client task");
    }
    let end_us = history.now();
    let mut violations = Vec::new();

    let converged = eventually(scaled(CONVERGENCE_BOUND), || converged(&cluster)).await;
    let convergence_ms = converged.map(|()| t.elapsed().as_millis());
    if convergence_ms.is_none() {
        violations.push(format!("members did not converge within {CONVERGENCE_BOUND:?} after heal"));
    }
    let t = Instant::now();
    let subscribers = eventually(scaled(SUBSCRIBER_BOUND), || subscribers_agree(&ctx, &sessions)).await;
    let subscriber_convergence_ms = subscribers.map(|()| t.elapsed().as_millis());
    if subscriber_convergence_ms.is_none() {
        violations.push(subscriber_disagreement(&ctx, &sessions).await);
    }

    let final_state = read_final(&ctx, profile.members).await;
    let ops = history.ops();
    violations.extend(checker::lost_registrations(&ops, &final_state));
    violations.extend(checker::lost_publishes(&ops, &final_state));
    let (linearizability, linear_violations) = checker::linearizable(&ops, &Some("0".to_owned()));
    violations.extend(linear_violations);
    violations.extend(checker::monotonic_local_reads(&ops));
    let gaps = checker::ephemeral_gaps(&ops, end_us);
    for (process, gap) in &gaps {
        if *gap > EPHEMERAL_GAP_BOUND.as_micros() as u64 {
            violations.push(format!("{process}: instance missing for {} ms", gap / 1000));
        }
    }

    let mut operations: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for o in &ops {
        let kind = serde_json::to_value(o.kind).map(|v| v.as_str().unwrap_or_default().to_owned()).unwrap_or_default();
        let outcome =
            serde_json::to_value(o.outcome).map(|v| v.as_str().unwrap_or_default().to_owned()).unwrap_or_default();
        *operations.entry(kind).or_default().entry(outcome).or_insert(0) += 1;
    }
    let verdict = Verdict {
        profile: profile.name.to_owned(),
        seed,
        members: profile.members,
        plant: profile.plant.map(str::to_owned),
        run_seconds: started.elapsed().as_secs_f64(),
        nemesis_events: nemesis.values().sum(),
        nemesis,
        operations,
        convergence_ms,
        subscriber_convergence_ms,
        ephemeral_max_gap_ms: gaps.into_iter().map(|(p, g)| (p, g / 1000)).collect(),
        bounds_ms: [
            ("convergence", CONVERGENCE_BOUND.as_millis()),
            ("subscribers", SUBSCRIBER_BOUND.as_millis()),
            ("ephemeral_gap", EPHEMERAL_GAP_BOUND.as_millis()),
        ]
        .into(),
        linearizability,
        final_state,
        violations,
        dir: dir.clone(),
    };
    history::write_jsonl(&dir.join("history.jsonl"), &ops).expect("write history");
    std::fs::write(dir.join("verdict.json"), serde_json::to_string_pretty(&verdict).expect("verdict json"))
        .expect("write verdict");
    println!(
        "chaos {}: {} nemesis events, {} operations, {} violations; history and verdict in {}",
        verdict.profile,
        verdict.nemesis_events,
        ops.len(),
        verdict.violations.len(),
        dir.display()
    );
    drop(sessions);
    drop(cluster);
    Some(verdict)
}

/// Writes `"0"` to every key (plain publish, retried until acknowledged) and waits until a
/// linearizable read sees it, so the register starts from a known value.
async fn seed_keys(ctx: &Ctx, members: usize) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(6)).build().expect("client");
    for key in KEYS {
        let done = eventually(scaled(Duration::from_secs(60)), || async {
            for m in 0..members {
                let url = format!("http://{}:8848/nacos/v2/cs/config", ctx.addrs.read().unwrap()[m]);
                let form = [("dataId", key), ("group", "DEFAULT_GROUP"), ("content", "0")];
                let Ok(r) = http.post(url).form(&form).send().await else { continue };
                if r.status().is_success() {
                    return Some(());
                }
            }
            None
        })
        .await;
        assert!(done.is_some(), "could not seed {key}");
    }
}

/// Every member answers, names the same leader, applied the same Raft index, and has the
/// same Distro digest.
async fn converged(cluster: &ChaosCluster) -> Option<()> {
    let (mut raft, mut digests) = (BTreeSet::new(), BTreeSet::new());
    for i in 0..cluster.members.len() {
        let s = cluster.raft_status(i).await?;
        raft.insert((s["leader"].as_u64()?, s["lastApplied"].as_u64()?));
        digests.insert(cluster.distro_digest(i).await?["digest"].as_str()?.to_owned());
    }
    (raft.len() == 1 && digests.len() == 1).then_some(())
}

/// The live sessions' instances, as every member and every subscriber should see them.
fn expected_ephemeral(sessions: &[EphemeralClient]) -> BTreeSet<String> {
    sessions.iter().map(|s| s.instance.clone()).collect()
}

async fn subscribers_agree(ctx: &Ctx, sessions: &[EphemeralClient]) -> Option<()> {
    let want = expected_ephemeral(sessions);
    for m in 0..ctx.members() {
        if workload::ephemeral_view(ctx, m).await? != want {
            return None;
        }
    }
    sessions.iter().all(|s| s.view.lock().unwrap().as_ref() == Some(&want)).then_some(())
}

async fn subscriber_disagreement(ctx: &Ctx, sessions: &[EphemeralClient]) -> String {
    let mut members = Vec::new();
    for m in 0..ctx.members() {
        members.push(workload::ephemeral_view(ctx, m).await);
    }
    let subscribers: Vec<_> = sessions.iter().map(|s| s.view.lock().unwrap().clone()).collect();
    format!(
        "ephemeral views disagree after {SUBSCRIBER_BOUND:?}: expected {:?}, members {members:?}, subscribers {subscribers:?}",
        expected_ephemeral(sessions)
    )
}

/// The persistent service on every member and every key by a linearizable read on every
/// member (recorded in the history too, as the last reads).
async fn read_final(ctx: &Ctx, members: usize) -> FinalState {
    let mut fin = FinalState::default();
    for m in 0..members {
        let view = eventually(scaled(FINAL_READ), || workload::service_view(ctx, m, PERSISTENT_SERVICE)).await;
        fin.persistent.push(view.expect("final read of the persistent service"));
        for key in KEYS {
            let read = eventually(scaled(FINAL_READ), || workload::recorded_read(ctx, "final", m, key, true)).await;
            let Some(read) = read else {
                let ops = ctx.history.ops();
                let last = ops.iter().rev().find(|o| o.process == "final").map(|o| o.detail.clone());
                panic!("no linearizable read of {key} on member {} within {FINAL_READ:?}: {last:?}", m + 1);
            };
            fin.configs.entry(key.to_owned()).or_default().push(read);
        }
    }
    fin
}
