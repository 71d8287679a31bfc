//! The cluster as this member sees it: who the members are, how they are reached, and whether
//! they answer.
//!
//! ```text
//!  --members / peer DNS / bound ports ──► member table: node id → cluster addr + HTTP addr
//!  Raft membership (records both) ──────►   (the membership wins once there is one)
//!                                             │
//!  Raft (votes, appends, snapshots, forwarded writes, read index, rejoin) ─┐
//!  Distro (sync, verify, snapshot, inspect) ───────────────────────────────┼► one channel per
//!                                                                          │  member (lazy,
//!  every answer / failure ──► peer health: last answer, failures in a row ◄┘  keepalive, DNS)
//! ```
//!
//! Members may listen on any ports: each member's cluster and HTTP addresses are carried as
//! they are, so nothing here or elsewhere computes one port from another. The one exception is
//! the derived `--members host:port` form ([`MemberAddr::parse`]), whose cluster port is the
//! HTTP port + [`ports::CLUSTER_OFFSET`] by contract, and memberships written before HTTP
//! addresses were recorded (read the same way, until their member announces itself).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use registry_proto::contract::ports;
use registry_proto::tls::Connector;
use tonic::transport::{Channel, Endpoint};

use crate::consistency::raft::{Member, NodeId};

/// HTTP/2 ping period and ack timeout on member connections.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(3);
/// Failed calls in a row after which a member is reported `DOWN` (Nacos' `maxFailAccessCnt`).
const DOWN_AFTER_FAILURES: u32 = 3;
/// Default for [`Cluster::set_health_window`].
const DEFAULT_HEALTH_WINDOW: Duration = Duration::from_secs(6);

/// Where one member is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberAddr {
    /// Cluster (member-to-member) address, `host:port`: Raft and Distro.
    pub cluster: String,
    /// HTTP address, `host:port`: v1 writes forwarded to the member responsible for them.
    pub http: String,
}

impl MemberAddr {
    /// Parses one `--members` entry: `host:http` (cluster port derived: HTTP + 1001) or
    /// `host:http:cluster` (both given, unrelated). IPv6 hosts need brackets (`[::1]:8848`).
    /// Port 0 (derived ports stay 0) is only meaningful for this member's own entry: it stands
    /// for the port this member binds (see [`ClusterConfig::bound`]).
    pub fn parse(entry: &str) -> Result<Self, String> {
        let entry = entry.trim();
        let bad = || format!("member '{entry}' is not host:httpPort or host:httpPort:clusterPort");
        let (rest, last) = entry.rsplit_once(':').ok_or_else(bad)?;
        let last: u16 = last.parse().map_err(|_| bad())?;
        let explicit = rest.rsplit_once(':').and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)));
        let (host, http, cluster) = match explicit {
            Some((host, http)) => (host, http, last),
            None => {
                let cluster = ports::cluster(last)
                    .ok_or_else(|| format!("member '{entry}': HTTP port + {} overflows", ports::CLUSTER_OFFSET))?;
                (rest, last, cluster)
            }
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Self { cluster: format!("{host}:{cluster}"), http: format!("{host}:{http}") })
    }

    /// Whether either address names port 0 (unknown until bound).
    fn unbound(&self) -> bool {
        self.cluster.ends_with(":0") || self.http.ends_with(":0")
    }
}

/// Replaces a `:0` port (ephemeral) by the port actually bound.
fn with_bound_port(addr: &str, bound: u16) -> String {
    match addr.strip_suffix(":0") {
        Some(host) => format!("{host}:{bound}"),
        None => addr.to_owned(),
    }
}

/// The member table as configured, before any Raft membership is known.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This member's id.
    pub me: NodeId,
    /// This member's own addresses, as announced to the others.
    pub own: MemberAddr,
    /// The initial members (this one included) by id; empty standalone.
    pub members: BTreeMap<NodeId, MemberAddr>,
}

impl ClusterConfig {
    /// A standalone node: itself at the default ports on loopback.
    pub fn standalone(me: NodeId) -> Self {
        let own = MemberAddr {
            cluster: format!("127.0.0.1:{}", ports::DEFAULT_HTTP + ports::CLUSTER_OFFSET),
            http: format!("127.0.0.1:{}", ports::DEFAULT_HTTP),
        };
        Self { me, own, members: BTreeMap::new() }
    }

    /// This member's port-0 addresses made real with the ports it bound: with ephemeral ports a
    /// member only learns them after binding, and must announce those.
    pub fn bound(mut self, http: SocketAddr, cluster: SocketAddr) -> Self {
        let fix = |a: &mut MemberAddr| {
            a.http = with_bound_port(&a.http, http.port());
            a.cluster = with_bound_port(&a.cluster, cluster.port());
        };
        fix(&mut self.own);
        if let Some(entry) = self.members.get_mut(&self.me) {
            fix(entry);
        }
        self
    }

    /// Refuses tables that cannot work: another member on port 0.
    pub fn check(&self) -> Result<(), String> {
        match self.members.iter().find(|(id, a)| **id != self.me && a.unbound()) {
            Some((id, a)) => Err(format!(
                "member {id} ({}, cluster {}) has port 0: only this member's own entry may (its bound ports)",
                a.http, a.cluster
            )),
            None => Ok(()),
        }
    }
}

/// What this member knows of a peer's health, from its own calls to it.
#[derive(Debug, Clone, Copy, Default)]
struct Health {
    last_answer: Option<Instant>,
    failures_in_a_row: u32,
}

/// A peer's health as the member list reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerHealth {
    /// `UP` (answered within the window, no failure since), `SUSPICIOUS` (failed lately, or not
    /// heard from within the window), `DOWN` (failed [`DOWN_AFTER_FAILURES`] times in a row).
    pub state: &'static str,
    /// Calls failed in a row since its last answer (Nacos' `failAccessCnt`).
    pub failures_in_a_row: u32,
}

/// The member table, the peer transport and peer health (see the module doc).
pub struct Cluster {
    config: ClusterConfig,
    /// openraft's metrics, which carry the current membership (set once Raft runs).
    membership: OnceLock<tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, Member>>>,
    /// One channel per member, with the cluster address it was opened for.
    links: Mutex<HashMap<NodeId, (String, Channel)>>,
    /// Mutual TLS to members (`None`: plain), see [`crate::tls`].
    tls: Option<Connector>,
    health: Mutex<HashMap<NodeId, Health>>,
    health_window: Mutex<Duration>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("config", &self.config).finish_non_exhaustive()
    }
}

/// A cluster address that is no valid endpoint.
#[derive(Debug, thiserror::Error)]
#[error("invalid peer address {0}")]
pub struct InvalidAddress(pub String);

impl Cluster {
    /// The cluster as configured, members reached over plain TCP; [`Self::observe`] adds the
    /// Raft membership once Raft runs.
    pub fn new(config: ClusterConfig) -> Arc<Self> {
        Self::with_tls(config, None)
    }

    /// [`Self::new`], members reached through `tls` (mutual TLS) when given.
    pub fn with_tls(config: ClusterConfig, tls: Option<Connector>) -> Arc<Self> {
        Arc::new(Self {
            config,
            membership: OnceLock::new(),
            links: Mutex::new(HashMap::new()),
            tls,
            health: Mutex::new(HashMap::new()),
            health_window: Mutex::new(DEFAULT_HEALTH_WINDOW),
        })
    }

    /// From now on the member table follows this Raft's membership.
    pub fn observe(&self, metrics: tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, Member>>) {
        if self.membership.set(metrics).is_err() {
            tracing::warn!("the cluster already observes a raft membership");
        }
    }

    /// A member that answered within this long is `UP` (and counts for the v1 hash).
    pub fn set_health_window(&self, window: Duration) {
        *self.health_window.lock() = window;
    }

    /// This member's id.
    pub fn me(&self) -> NodeId {
        self.config.me
    }

    /// This member's own addresses (ports as bound).
    pub fn own(&self) -> &MemberAddr {
        &self.config.own
    }

    /// The members configured at start (`--members`, peer DNS bootstrap set), by id.
    pub fn configured(&self) -> &BTreeMap<NodeId, MemberAddr> {
        &self.config.members
    }

    /// Every member (this one included) by id: the Raft membership once there is one, else the
    /// configured members.
    pub fn members(&self) -> BTreeMap<NodeId, MemberAddr> {
        if let Some(metrics) = self.membership.get() {
            let m = metrics.borrow();
            let nodes: BTreeMap<NodeId, MemberAddr> =
                m.membership_config.membership().nodes().map(|(id, node)| (*id, self.addr_of(*id, node))).collect();
            if !nodes.is_empty() {
                return nodes;
            }
        }
        self.config.members.clone()
    }

    /// A membership entry's addresses. Memberships written before HTTP addresses were recorded
    /// lack them: then this member's own, the configured one (same cluster address), or by the
    /// derived layout, until the member announces itself (`rejoin`).
    pub fn addr_of(&self, id: NodeId, node: &Member) -> MemberAddr {
        let http = if !node.http.is_empty() {
            node.http.clone()
        } else if id == self.config.me {
            self.config.own.http.clone()
        } else if let Some(c) = self.config.members.get(&id).filter(|c| c.cluster == node.addr) {
            c.http.clone()
        } else {
            legacy_http(&node.addr).unwrap_or_default()
        };
        MemberAddr { cluster: node.addr.clone(), http }
    }

    /// A member's HTTP address, if it is a member and has one.
    pub fn http_addr(&self, id: NodeId) -> Option<String> {
        self.members().remove(&id).map(|a| a.http).filter(|h| !h.is_empty())
    }

    /// The channel to member `id` at cluster address `addr`: one per member, shared by every
    /// caller (Raft, Distro, forwarded writes), opened again only when the address changes.
    ///
    /// Lazily connected. Addresses may be DNS names (peer DNS): the name is resolved again on
    /// every (re)connect, so a member rescheduled with a new IP is found without any membership
    /// change. HTTP/2 keepalive notices a connection to an IP that vanished (no RST ever comes)
    /// within seconds, which triggers that reconnect.
    pub fn channel(&self, id: NodeId, addr: &str) -> Result<Channel, InvalidAddress> {
        let mut links = self.links.lock();
        if let Some((a, c)) = links.get(&id)
            && a == addr
        {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|_| InvalidAddress(addr.to_owned()))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(2))
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_INTERVAL)
            .keep_alive_while_idle(true);
        // With TLS the peer's certificate must name the host dialled (IP or DNS name).
        let channel = match &self.tls {
            Some(tls) => endpoint.connect_with_connector_lazy(tls.clone()),
            None => endpoint.connect_lazy(),
        };
        links.insert(id, (addr.to_owned(), channel.clone()));
        Ok(channel)
    }

    /// The channel to member `id` at its current cluster address.
    pub fn channel_of(&self, id: NodeId) -> Result<Channel, String> {
        let addr = self.members().remove(&id).map(|a| a.cluster).ok_or_else(|| format!("node {id} is not a member"))?;
        self.channel(id, &addr).map_err(|e| e.to_string())
    }

    /// Records an answer from member `id`.
    pub fn answered(&self, id: NodeId) {
        let mut health = self.health.lock();
        let h = health.entry(id).or_default();
        h.last_answer = Some(Instant::now());
        h.failures_in_a_row = 0;
    }

    /// Records a call to member `id` that got no answer.
    pub fn failed(&self, id: NodeId) {
        let mut health = self.health.lock();
        let h = health.entry(id).or_default();
        h.failures_in_a_row = h.failures_in_a_row.saturating_add(1);
    }

    /// Whether member `id` answered within the health window (this member always has).
    pub fn healthy(&self, id: NodeId) -> bool {
        id == self.config.me || self.peer_health(id).state == "UP"
    }

    /// Member `id`'s health as this member's calls found it.
    pub fn peer_health(&self, id: NodeId) -> PeerHealth {
        if id == self.config.me {
            return PeerHealth { state: "UP", failures_in_a_row: 0 };
        }
        let window = *self.health_window.lock();
        let h = self.health.lock().get(&id).copied().unwrap_or_default();
        let recent = h.last_answer.is_some_and(|at| at.elapsed() < window);
        let state = match h.failures_in_a_row {
            n if n >= DOWN_AFTER_FAILURES => "DOWN",
            0 if recent => "UP",
            _ => "SUSPICIOUS",
        };
        PeerHealth { state, failures_in_a_row: h.failures_in_a_row }
    }
}

/// The HTTP address of a member known only by its cluster address, by the derived layout.
fn legacy_http(cluster_addr: &str) -> Option<String> {
    let (host, port) = cluster_addr.rsplit_once(':')?;
    let http = port.parse::<u16>().ok()?.checked_sub(ports::CLUSTER_OFFSET)?;
    Some(format!("{host}:{http}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(cluster: &str, http: &str) -> MemberAddr {
        MemberAddr { cluster: cluster.into(), http: http.into() }
    }

    #[test]
    fn members_entries_derive_or_name_their_ports() {
        assert_eq!(MemberAddr::parse("10.0.0.1:8848"), Ok(addr("10.0.0.1:9849", "10.0.0.1:8848")));
        assert_eq!(MemberAddr::parse(" a.b:18848:20001 "), Ok(addr("a.b:20001", "a.b:18848")));
        assert_eq!(MemberAddr::parse("[::1]:8848"), Ok(addr("[::1]:9849", "[::1]:8848")));
        assert_eq!(MemberAddr::parse("[::1]:1:2"), Ok(addr("[::1]:2", "[::1]:1")));
        assert_eq!(MemberAddr::parse("h:0"), Ok(addr("h:0", "h:0")));
        for bad in ["nohost", ":8848", "h:x", "h:8848:x", "h:65000", ":1:2"] {
            assert!(MemberAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn own_port_zero_becomes_the_bound_port_and_others_may_not_use_it() {
        let members = BTreeMap::from([(1, addr("h:0", "h:0")), (2, addr("g:9", "g:8"))]);
        let config = ClusterConfig { me: 1, own: addr("h:0", "h:0"), members };
        assert!(config.check().is_ok());
        let bound = config.clone().bound("127.0.0.1:4000".parse().unwrap(), "127.0.0.1:5000".parse().unwrap());
        assert_eq!(bound.own, addr("h:5000", "h:4000"));
        assert_eq!(bound.members[&1], addr("h:5000", "h:4000"));
        assert_eq!(bound.members[&2], addr("g:9", "g:8"));
        assert!(ClusterConfig { me: 2, ..config }.check().is_err());
    }

    #[test]
    fn membership_entries_without_an_http_address_fall_back_in_order() {
        let config =
            ClusterConfig { me: 1, own: addr("me:7", "me:6"), members: BTreeMap::from([(2, addr("two:5", "two:4"))]) };
        let cluster = Cluster::new(config);
        let recorded = Member { addr: "x:1".into(), http: "x:2".into(), store: String::new() };
        assert_eq!(cluster.addr_of(3, &recorded), addr("x:1", "x:2"));
        assert_eq!(cluster.addr_of(1, &Member::new("me:7")), addr("me:7", "me:6"));
        assert_eq!(cluster.addr_of(2, &Member::new("two:5")), addr("two:5", "two:4"));
        // Moved since configured, or never configured: the derived layout (old memberships).
        assert_eq!(cluster.addr_of(2, &Member::new("two:9849")), addr("two:9849", "two:8848"));
    }

    #[test]
    fn health_follows_answers_and_failures() {
        let cluster = Cluster::new(ClusterConfig::standalone(1));
        assert_eq!(cluster.peer_health(1).state, "UP");
        assert_eq!(cluster.peer_health(2).state, "SUSPICIOUS");
        cluster.answered(2);
        assert!(cluster.healthy(2));
        cluster.failed(2);
        assert_eq!(cluster.peer_health(2), PeerHealth { state: "SUSPICIOUS", failures_in_a_row: 1 });
        cluster.failed(2);
        cluster.failed(2);
        assert_eq!(cluster.peer_health(2).state, "DOWN");
        cluster.answered(2);
        assert_eq!(cluster.peer_health(2).state, "UP");
        cluster.set_health_window(Duration::ZERO);
        assert!(!cluster.healthy(2));
    }
}
