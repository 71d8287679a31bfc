//! A network lab for tests: one Linux bridge, one network namespace per node with a veth into
//! the bridge and an address from 198.18.0.0/15 (the range reserved for test networks), processes
//! started inside a node's namespace, and partitions as nft drop rules inside the namespaces.
//! Everything it made is removed when the [`Lab`] drops; processes left in its namespaces are
//! killed by their PIDs.
//!
//! ```text
//!  root namespace (the test): 198.18.x.1 on the bridge ─┬─ veth ─ node "a" (netns, eth0 198.18.x.2)
//!                                                       ├─ veth ─ node "b" (netns, eth0 198.18.x.3)
//!                                                       └─ veth ─ node "c" ...
//!  partition: in node b's namespace `ip saddr <a> drop` (input hook) = nothing from a reaches b
//! ```
//!
//! Names carry the creating PID and a per-process sequence number, so parallel test binaries
//! never collide; a lab left behind by a killed test process (its PID gone) is swept by the
//! next [`Lab::create`]. Needs root, `ip` (iproute2) and `nft` (nftables); [`start_or_skip`]
//! turns their absence into a clean skip. Nothing outside the lab's own names is touched except
//! `/etc/netns/<namespace>/`, which `ip netns exec` reads for that namespace only.

mod partition;
mod sys;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use partition::Partitions;

/// Why the lab could not be made or changed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// This machine cannot host a lab (not root, a tool missing): tests should skip.
    #[error("{0}")]
    Unavailable(String),
    /// A command failed.
    #[error("`{cmd}` failed: {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// What it printed on stderr (or why it could not run).
        stderr: String,
    },
    /// A file under `/etc/netns` could not be written or the allocation lock taken.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A caller's request that cannot hold (an address outside the subnet, no free subnet).
    #[error("{0}")]
    Invalid(String),
}

/// A node of a lab (an index; cheap to copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Node(usize);

impl Node {
    /// Position in creation order (0-based).
    pub fn index(self) -> usize {
        self.0
    }
}

/// How a node is made.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// Its address (must be in the lab's subnet); default: the next free one.
    pub addr: Option<Ipv4Addr>,
    /// Content of `/etc/netns/<namespace>/resolv.conf`, which `ip netns exec` mounts over
    /// `/etc/resolv.conf` for processes of this node only (a test DNS server, say).
    pub resolv_conf: Option<String>,
}

#[derive(Debug)]
struct NodeState {
    name: String,
    netns: String,
    addr: Ipv4Addr,
    etc_dir: Option<PathBuf>,
    /// Removed by [`Lab::remove_node`]: its namespace is gone and its address free.
    removed: bool,
}

/// Sequence of labs made by this process (names stay unique within it).
static SEQ: AtomicU32 = AtomicU32::new(0);

/// The prefix of every name a lab makes: `nl<pid hex>`; the sweep parses it back.
const PREFIX: &str = "nl";

/// A bridge, its nodes and the partitions between them. Dropping it tears all of it down.
#[derive(Debug)]
pub struct Lab {
    /// `nl<pid>x<seq>`: prefix of every name this lab makes.
    id: String,
    bridge: String,
    /// Index of the /24 inside 198.18.0.0/15.
    subnet: u16,
    nodes: Vec<NodeState>,
    partitions: Partitions,
}

/// A lab, or `None` after printing `SKIP <suite>: <why>` when this machine cannot host one
/// (not root, `ip` or `nft` missing). With `<required_var>=1` in the environment the skip is a
/// panic instead, so a CI that means to run the suite cannot silently skip it.
pub fn start_or_skip(suite: &str, required_var: &str) -> Option<Lab> {
    match Lab::create() {
        Ok(lab) => Some(lab),
        Err(LabError::Unavailable(why)) => {
            assert!(std::env::var(required_var).as_deref() != Ok("1"), "{suite} required ({required_var}=1): {why}");
            println!("SKIP {suite}: {why}");
            None
        }
        Err(e) => panic!("{suite}: cannot build the network lab: {e}"),
    }
}

impl Lab {
    /// Checks the machine, sweeps labs whose creating process is gone, picks a free /24 and
    /// brings up the bridge with the root namespace's address (`.1`) on it.
    pub fn create() -> Result<Self, LabError> {
        sys::check_available()?;
        sys::sweep_stale(PREFIX);
        let pid = std::process::id();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let id = format!("{PREFIX}{pid:x}x{seq:x}");
        let bridge = format!("{id}b");
        let subnet = sys::with_allocation_lock(|| {
            let used = sys::used_subnets()?;
            let start = (pid.wrapping_mul(31).wrapping_add(seq.wrapping_mul(7)) % 512) as u16;
            let subnet = (0..512u16)
                .map(|k| (start + k) % 512)
                .find(|s| !used.contains(s))
                .ok_or_else(|| LabError::Invalid("no free /24 left in 198.18.0.0/15".into()))?;
            sys::ip(&["link", "add", &bridge, "type", "bridge"])?;
            let gw = format!("{}/24", host_addr(subnet, 1));
            sys::ip(&["addr", "add", &gw, "dev", &bridge])?;
            sys::ip(&["link", "set", &bridge, "up"])?;
            Ok(subnet)
        });
        let subnet = match subnet {
            Ok(s) => s,
            Err(e) => {
                let _ = sys::ip(&["link", "del", &bridge]);
                return Err(e);
            }
        };
        Ok(Self { id, bridge, subnet, nodes: Vec::new(), partitions: Partitions::default() })
    }

    /// The root namespace's address on the bridge (where the test process talks from).
    pub fn gateway(&self) -> Ipv4Addr {
        self.host(1)
    }

    /// The address with host part `host` in this lab's /24 (2..=254 are for nodes).
    pub fn host(&self, host: u8) -> Ipv4Addr {
        host_addr(self.subnet, host)
    }

    /// Adds a node with the next free address.
    pub fn add_node(&mut self, name: &str) -> Result<Node, LabError> {
        self.add_node_with(name, NodeOptions::default())
    }

    /// Adds a node: its namespace, a veth into the bridge (`eth0` inside), its address, `lo` up.
    pub fn add_node_with(&mut self, name: &str, opts: NodeOptions) -> Result<Node, LabError> {
        let addr = match opts.addr {
            Some(a) => self.check_free(a)?,
            None => self.next_free()?,
        };
        let index = self.nodes.len();
        let netns = format!("{}-{name}", self.id);
        let veth = format!("{}v{index:x}", self.id);
        let mut state = NodeState { name: name.to_owned(), netns: netns.clone(), addr, etc_dir: None, removed: false };
        sys::ip(&["netns", "add", &netns])?;
        // Recorded before anything else can fail, so Drop removes the namespace too.
        if let Some(resolv) = &opts.resolv_conf {
            let dir = PathBuf::from("/etc/netns").join(&netns);
            state.etc_dir = Some(dir.clone());
            self.nodes.push(state);
            std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::write(dir.join("resolv.conf"), resolv))
                .map_err(|source| LabError::Io { what: format!("write {}/resolv.conf", dir.display()), source })?;
        } else {
            self.nodes.push(state);
        }
        sys::ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns])?;
        sys::ip(&["link", "set", &veth, "master", &self.bridge, "up"])?;
        sys::ip(&["-n", &netns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
        sys::ip(&["-n", &netns, "link", "set", "eth0", "up"])?;
        sys::ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        Ok(Node(index))
    }

    /// Removes a node (a deleted pod): kills what runs in it (by PID), deletes its namespace
    /// and `/etc/netns` entry, forgets its partitions and frees its address. Its [`Node`] must
    /// not be used again.
    pub fn remove_node(&mut self, node: Node) -> Result<(), LabError> {
        let state = &mut self.nodes[node.0];
        if state.removed {
            return Ok(());
        }
        state.removed = true;
        sys::remove_netns(&state.netns);
        if let Some(dir) = state.etc_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        let touched = self.partitions.forget(node);
        touched.into_iter().try_for_each(|n| self.render(n))
    }

    /// Every node not removed, in creation order.
    pub fn nodes(&self) -> Vec<Node> {
        (0..self.nodes.len()).filter(|&i| !self.nodes[i].removed).map(Node).collect()
    }

    /// A node's current address.
    pub fn addr(&self, node: Node) -> Ipv4Addr {
        self.nodes[node.0].addr
    }

    /// A node's name as given to [`Lab::add_node`].
    pub fn name(&self, node: Node) -> &str {
        &self.nodes[node.0].name
    }

    /// A node's namespace name (for `ip netns exec` by hand).
    pub fn netns(&self, node: Node) -> &str {
        &self.nodes[node.0].netns
    }

    /// `program` to be run inside the node's namespace (`ip netns exec NS program`; `ip` execs
    /// it, so the spawned child's PID is the program's). The caller spawns and owns the child;
    /// whatever still runs in the namespace when the lab drops is killed by PID.
    pub fn command(&self, node: Node, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.nodes[node.0].netns]).arg(program);
        cmd
    }

    /// Moves a node to another address of the subnet (a pod that comes back with a new IP).
    /// Processes in it should be stopped first; partitions follow the node.
    pub fn readdress(&mut self, node: Node, addr: Ipv4Addr) -> Result<(), LabError> {
        if self.nodes[node.0].addr == addr {
            return Ok(());
        }
        let addr = self.check_free(addr)?;
        let netns = self.nodes[node.0].netns.clone();
        sys::ip(&["-n", &netns, "addr", "flush", "dev", "eth0"])?;
        sys::ip(&["-n", &netns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
        self.nodes[node.0].addr = addr;
        self.render_all()
    }

    /// Drops everything `from` sends to `to` (one way).
    pub fn block(&mut self, from: Node, to: Node) -> Result<(), LabError> {
        if self.partitions.block(from, to) { self.render(to) } else { Ok(()) }
    }

    /// Drops traffic between `a` and `b` both ways.
    pub fn cut(&mut self, a: Node, b: Node) -> Result<(), LabError> {
        self.block(a, b)?;
        self.block(b, a)
    }

    /// Cuts every pair of nodes that are in different groups (nodes in no group are untouched).
    pub fn partition(&mut self, groups: &[Vec<Node>]) -> Result<(), LabError> {
        for (i, g) in groups.iter().enumerate() {
            for h in &groups[i + 1..] {
                for &a in g {
                    for &b in h {
                        self.cut(a, b)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes every drop rule.
    pub fn heal(&mut self) -> Result<(), LabError> {
        let touched: BTreeSet<Node> = self.partitions.pairs().map(|(_, to)| to).collect();
        self.partitions.clear();
        touched.into_iter().try_for_each(|n| self.render(n))
    }

    /// The blocked `(from, to)` pairs.
    pub fn blocked(&self) -> Vec<(Node, Node)> {
        self.partitions.pairs().collect()
    }

    fn render(&self, to: Node) -> Result<(), LabError> {
        let sources: Vec<Ipv4Addr> = self.partitions.sources_of(to).map(|n| self.nodes[n.0].addr).collect();
        sys::nft_script(&self.nodes[to.0].netns, &partition::ruleset(&sources))
    }

    fn render_all(&self) -> Result<(), LabError> {
        self.nodes().into_iter().try_for_each(|n| self.render(n))
    }

    fn check_free(&self, addr: Ipv4Addr) -> Result<Ipv4Addr, LabError> {
        let o = addr.octets();
        let inside = (2..=254).contains(&o[3]) && host_addr(self.subnet, o[3]) == addr;
        if !inside {
            return Err(LabError::Invalid(format!("{addr} is not a node address of {}/24", self.host(0))));
        }
        if self.nodes.iter().any(|n| !n.removed && n.addr == addr) {
            return Err(LabError::Invalid(format!("{addr} is taken by another node")));
        }
        Ok(addr)
    }

    fn next_free(&self) -> Result<Ipv4Addr, LabError> {
        (2..=254u8)
            .map(|h| self.host(h))
            .find(|a| self.nodes.iter().all(|n| n.removed || n.addr != *a))
            .ok_or_else(|| LabError::Invalid("no free address left in the lab's /24".into()))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for n in self.nodes.iter().filter(|n| !n.removed) {
            sys::remove_netns(&n.netns);
            if let Some(dir) = &n.etc_dir {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        let _ = sys::ip(&["link", "del", &self.bridge]);
    }
}

/// `198.18.0.0/15` split into 512 /24s: subnet `s`, host `h`.
fn host_addr(subnet: u16, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18 + (subnet / 256) as u8, (subnet % 256) as u8, host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_cover_198_18_slash_15() {
        assert_eq!(host_addr(0, 1), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(host_addr(511, 254), Ipv4Addr::new(198, 19, 255, 254));
    }
}
