//! A Raft cluster of real `registry` processes, one per network namespace of a [`netlab::Lab`]:
//! start, SIGKILL, SIGSTOP/SIGCONT, restart on the same or a new address, and the admin views
//! (Raft status, Distro digest) the checkers compare. The test process reaches every member from
//! the root namespace over the bridge; partitions only ever cut members from each other.

use std::fs::OpenOptions;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use netlab::{Lab, Node};
use registry_proto::contract::ports::{CLUSTER_OFFSET, DEFAULT_HTTP, GRPC_OFFSET};
use serde_json::Value;

use crate::harness::{eventually, patience};

/// How long a member may take to answer its liveness check after a (re)start.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Health checks dial the made-up addresses the workload registers: off.
const CONFIG: &str = "[naming.health_check]\nenabled = false\n";

/// One member: its namespace, process (if running) and data directory.
pub(crate) struct Member {
    /// Raft node id (1-based).
    pub(crate) id: u64,
    node: Node,
    child: Option<Child>,
    paused: bool,
    dir: PathBuf,
    /// Host parts of its two addresses; a restart "with a new address" swaps between them.
    hosts: [u8; 2],
}

/// The members and their lab.
pub(crate) struct ChaosCluster {
    pub(crate) lab: Lab,
    pub(crate) members: Vec<Member>,
    plant: Option<String>,
    http: reqwest::Client,
}

impl ChaosCluster {
    /// `n` members in their own namespaces (`<run_dir>/member-<id>/` holds data and logs),
    /// started together; `plant` is the test-only `--chaos-plant` value, if any.
    pub(crate) async fn start(mut lab: Lab, n: usize, run_dir: &std::path::Path, plant: Option<&str>) -> Self {
        let mut members = Vec::new();
        for i in 0..n {
            let hosts = [10 + i as u8, 110 + i as u8];
            let node = lab
                .add_node_with(
                    &format!("m{}", i + 1),
                    netlab::NodeOptions { addr: Some(lab.host(hosts[0])), ..Default::default() },
                )
                .expect("add member namespace");
            let dir = run_dir.join(format!("member-{}", i + 1));
            std::fs::create_dir_all(&dir).expect("member dir");
            std::fs::write(dir.join("registry.toml"), CONFIG).expect("member config");
            members.push(Member { id: i as u64 + 1, node, child: None, paused: false, dir, hosts });
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().expect("client");
        let mut cluster = Self { lab, members, plant: plant.map(str::to_owned), http };
        for i in 0..n {
            cluster.spawn(i);
        }
        for i in 0..n {
            cluster.await_live(i).await;
        }
        cluster
    }

    /// Member `i`'s current address.
    pub(crate) fn addr(&self, i: usize) -> Ipv4Addr {
        self.lab.addr(self.members[i].node)
    }

    /// Member `i`'s HTTP base URL.
    pub(crate) fn url(&self, i: usize, path: &str) -> String {
        format!("http://{}:{DEFAULT_HTTP}{path}", self.addr(i))
    }

    /// Every gRPC address a member may have (both of each member's addresses, current ones
    /// first): sessions get them all, so they can follow a member that moved.
    pub(crate) fn all_grpc_addrs(&self) -> Vec<SocketAddr> {
        let current = (0..self.members.len()).map(|i| self.addr(i));
        let other = self.members.iter().flat_map(|m| m.hosts).map(|h| self.lab.host(h));
        let mut out: Vec<SocketAddr> = Vec::new();
        for a in current.chain(other) {
            let s = SocketAddr::from((a, DEFAULT_HTTP + GRPC_OFFSET));
            if !out.contains(&s) {
                out.push(s);
            }
        }
        out
    }

    /// Whether member `i` runs and is not paused.
    pub(crate) fn is_up(&self, i: usize) -> bool {
        self.members[i].child.is_some() && !self.members[i].paused
    }

    fn spawn(&mut self, i: usize) {
        let members: Vec<String> =
            (0..self.members.len()).map(|j| format!("{}:{DEFAULT_HTTP}", self.addr(j))).collect();
        let m = &self.members[i];
        let log = OpenOptions::new().create(true).append(true).open(m.dir.join("registry.log")).expect("member log");
        let mut cmd: Command = self.lab.command(m.node, registry_bin());
        cmd.args(["--bind", &self.addr(i).to_string(), "--http-port", &DEFAULT_HTTP.to_string()])
            .args(["--cluster-port", &(DEFAULT_HTTP + CLUSTER_OFFSET).to_string()])
            .args(["--node-id", &m.id.to_string(), "--members", &members.join(",")])
            .arg("--data-dir")
            .arg(m.dir.join("data"))
            .arg("--config")
            .arg(m.dir.join("registry.toml"))
            .env("RUST_LOG", "info")
            .env_remove("NACOS_CONFIG")
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .stdin(Stdio::null());
        if let Some(plant) = &self.plant {
            cmd.args(["--chaos-plant", plant]);
        }
        self.members[i].child = Some(cmd.spawn().expect("spawn registry in its namespace"));
        self.members[i].paused = false;
    }

    async fn await_live(&self, i: usize) {
        let url = self.url(i, "/nacos/v1/console/health/liveness");
        let live = eventually(START_TIMEOUT, || async {
            let r = self.http.get(&url).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        assert!(live.is_some(), "member {} did not come up; see {}", i + 1, self.members[i].dir.display());
    }

    fn signal(&self, i: usize, sig: &str) {
        if let Some(c) = &self.members[i].child {
            let _ = Command::new("kill").args([sig, &c.id().to_string()]).status();
        }
    }

    /// SIGKILL (a stopped member dies too).
    pub(crate) fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.members[i].paused = false;
    }

    /// SIGSTOP.
    pub(crate) fn pause(&mut self, i: usize) {
        self.signal(i, "-STOP");
        self.members[i].paused = self.members[i].child.is_some();
    }

    /// SIGCONT.
    pub(crate) fn resume(&mut self, i: usize) {
        self.signal(i, "-CONT");
        self.members[i].paused = false;
    }

    /// Starts a stopped member on its data directory; with `move_address` on its other address
    /// (a pod back with a new IP), announcing every member's current address.
    pub(crate) async fn restart(&mut self, i: usize, move_address: bool) {
        assert!(self.members[i].child.is_none(), "kill the member first");
        if move_address {
            let [a, b] = self.members[i].hosts;
            let next = if self.addr(i) == self.lab.host(a) { b } else { a };
            let addr = self.lab.host(next);
            self.lab.readdress(self.members[i].node, addr).expect("move the member");
        }
        self.spawn(i);
        self.await_live(i).await;
    }

    /// Resumes, restarts and heals everything (the end of the nemesis).
    pub(crate) async fn recover_all(&mut self) {
        self.lab.heal().expect("heal");
        for i in 0..self.members.len() {
            if self.members[i].paused {
                self.resume(i);
            }
            if self.members[i].child.is_none() {
                self.restart(i, false).await;
            }
        }
    }

    /// `data` of member `i`'s Raft status (`/nacos/v2/core/cluster/raft`).
    pub(crate) async fn raft_status(&self, i: usize) -> Option<Value> {
        self.admin(i, "/nacos/v2/core/cluster/raft").await
    }

    /// `data` of member `i`'s Distro digest (`/nacos/v2/core/distro/digest`).
    pub(crate) async fn distro_digest(&self, i: usize) -> Option<Value> {
        self.admin(i, "/nacos/v2/core/distro/digest").await
    }

    async fn admin(&self, i: usize, path: &str) -> Option<Value> {
        let body: Value = self.http.get(self.url(i, path)).send().await.ok()?.json().await.ok()?;
        Some(body["data"].clone())
    }

    /// The index of the member the up members name as leader, if they agree on one.
    pub(crate) async fn leader(&self) -> Option<usize> {
        let mut seen = None;
        for i in (0..self.members.len()).filter(|&i| self.is_up(i)) {
            let l = self.raft_status(i).await?["leader"].as_u64()?;
            if seen.is_some_and(|s| s != l) {
                return None;
            }
            seen = Some(l);
        }
        seen.and_then(|l| usize::try_from(l).ok()?.checked_sub(1))
    }
}

impl Drop for ChaosCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.resume(i);
            self.kill9(i);
        }
    }
}

/// The `registry` binary: cargo's, or `CHAOS_REGISTRY_BIN` (a copy that a shared build
/// directory cannot swap under a long run).
fn registry_bin() -> std::ffi::OsString {
    std::env::var_os("CHAOS_REGISTRY_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_registry").into())
}

/// Deadline multiplier of the run (`IT_PATIENCE`).
pub(crate) fn scaled(d: Duration) -> Duration {
    d * patience()
}
