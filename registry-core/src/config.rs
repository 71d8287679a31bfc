//! One typed configuration tree, assembled from (lowest to highest precedence) defaults, an
//! optional TOML file (`--config`), `NACOS_*` environment variables and command-line flags.
//! Each subsystem owns its section's struct; this module only assembles and validates.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use clap::Parser;
use registry_proto::contract::auth::env as auth_env;
use registry_proto::contract::tls::env as tls_env;
use registry_proto::contract::{dns, ports};
use serde::Deserialize;

use crate::api::grpc::GrpcConfig;
use crate::api::http::HttpConfig;
use crate::auth::AuthConfig;
use crate::cluster::{ClusterConfig, MemberAddr};
use crate::configs::ConfigCenterConfig;
use crate::consistency::RaftConfig;
use crate::dns::DnsConfig;
use crate::naming::NamingConfig;
use crate::push::PushConfig;
use crate::tls::TlsConfig;

/// Command line of the `registry` binary. Every flag has a `NACOS_*` environment equivalent.
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "registry", version, about = "Nacos-compatible service registry and configuration center")]
pub struct Cli {
    /// Address every listener binds to.
    #[arg(long, env = "NACOS_BIND")]
    pub bind: Option<IpAddr>,
    /// HTTP port (Open API v1/v2, console health). 0 binds an ephemeral port.
    #[arg(long, env = "NACOS_HTTP_PORT")]
    pub http_port: Option<u16>,
    /// gRPC (SDK) port; default HTTP port + 1000.
    #[arg(long, env = "NACOS_GRPC_PORT")]
    pub grpc_port: Option<u16>,
    /// Cluster (member-to-member) port; default HTTP port + 1001.
    #[arg(long, env = "NACOS_CLUSTER_PORT")]
    pub cluster_port: Option<u16>,
    /// Directory of the durable store.
    #[arg(long, env = "NACOS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Stable id of this member. Default: 1 standalone; in a cluster, the StatefulSet ordinal
    /// of the hostname plus one (`registry-2` is member 3).
    #[arg(long, env = "NACOS_NODE_ID")]
    pub node_id: Option<u64>,
    /// This machine's host name (a StatefulSet pod's is `<set>-<ordinal>`); default: the
    /// kernel's host name.
    #[arg(long, env = "HOSTNAME")]
    pub hostname: Option<String>,
    /// Peer discovery by DNS: the StatefulSet's headless Service (`registry-headless.ns.svc.
    /// cluster.local`). Member k is then `<set>-<k-1>.<NAME>`, on this member's ports.
    #[arg(long, env = "NACOS_PEER_DNS")]
    pub peer_dns: Option<String>,
    /// With `--peer-dns`: how many members form the first voter set (members 1..=N), once, on
    /// empty stores. Members beyond it join through the admin API (the operator adds them).
    #[arg(long, env = "NACOS_BOOTSTRAP_EXPECT")]
    pub bootstrap_expect: Option<u64>,
    /// Initial cluster members in node-id order: `host:port` (HTTP; its cluster port is HTTP +
    /// 1001) or `host:httpPort:clusterPort` (both named), comma-separated. This member's own
    /// entry may give port 0: it then announces the ports it bound. Absent: standalone.
    #[arg(long, env = "NACOS_MEMBERS", value_delimiter = ',')]
    pub members: Option<Vec<String>>,
    /// UDP and TCP port of the DNS server for registered services (docs/dns.md); unset: no
    /// DNS server; 0: an ephemeral port.
    #[arg(long, env = dns::env::PORT)]
    pub dns_port: Option<u16>,
    /// DNS-over-TLS port (RFC 7858, usually 853) beside the plain DNS port; needs
    /// client-facing TLS (docs/dns.md); unset: no DNS over TLS; 0: an ephemeral port.
    #[arg(long, env = dns::env::TLS_PORT)]
    pub dns_tls_port: Option<u16>,
    /// Zone the DNS server answers for (default `nacos.local`).
    #[arg(long, env = dns::env::ZONE)]
    pub dns_zone: Option<String>,
    /// TOML configuration file.
    #[arg(long, env = "NACOS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log filter (`info`, `debug`, `registry_core=debug,info`, ...); `RUST_LOG` wins if set.
    #[arg(long, env = "NACOS_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Enforce auth on the client APIs and cluster administration (Nacos'
    /// `nacos.core.auth.enabled`); console APIs always require it.
    #[arg(long, env = auth_env::ENABLE)]
    pub auth_enable: Option<bool>,
    /// Token signing secret, base64 (prefer the environment: flags show in `ps`).
    #[arg(long, env = auth_env::TOKEN, hide_env_values = true)]
    pub auth_token: Option<String>,
    /// Header name marking member-to-member calls.
    #[arg(long, env = auth_env::IDENTITY_KEY)]
    pub auth_identity_key: Option<String>,
    /// Value of that header.
    #[arg(long, env = auth_env::IDENTITY_VALUE, hide_env_values = true)]
    pub auth_identity_value: Option<String>,
    /// Password of the administrator `nacos` on the first bootstrap.
    #[arg(long, env = auth_env::ADMIN_PASSWORD, hide_env_values = true)]
    pub auth_admin_password: Option<String>,
    /// Certificate chain (PEM) this member presents on its TLS ports and to other members
    /// (docs/tls.md); with `--tls-key`. Unset: every port is plain.
    #[arg(long, env = tls_env::CERT)]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `--tls-cert`.
    #[arg(long, env = tls_env::KEY)]
    pub tls_key: Option<PathBuf>,
    /// CA bundle (PEM) members' certificates chain to: mutual TLS on the cluster port.
    #[arg(long, env = tls_env::CA)]
    pub tls_ca: Option<PathBuf>,
    /// TLS on the HTTP and gRPC SDK ports (default true once a certificate is set).
    #[arg(long, env = tls_env::CLIENT_FACING)]
    pub tls_client_facing: Option<bool>,
    /// Mutual TLS on the cluster port (default true once a certificate is set; needs a CA).
    #[arg(long, env = tls_env::CLUSTER)]
    pub tls_cluster: Option<bool>,
    /// TEST ONLY, hidden: plants a known bug so the chaos suite can show that its checker
    /// catches it (`docs/reliability.md`). Never set outside that test.
    #[arg(long, hide = true, value_enum)]
    pub chaos_plant: Option<crate::consistency::Plant>,
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The `[server]` section: where this node listens and keeps its data.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address every listener binds to.
    pub bind: IpAddr,
    /// HTTP port.
    pub http_port: u16,
    /// gRPC port (`None`: HTTP + 1000).
    pub grpc_port: Option<u16>,
    /// Cluster port (`None`: HTTP + 1001).
    pub cluster_port: Option<u16>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Stable member id (`None`: derived, see [`Cli::node_id`]; resolved by [`Config::load`]).
    pub node_id: Option<u64>,
    /// This machine's host name (`None`: the kernel's).
    pub hostname: Option<String>,
    /// Initial members in node-id order, `host:http` or `host:http:cluster` (empty: standalone).
    pub members: Vec<String>,
    /// Headless Service name whose per-pod records address the members (see [`Cli::peer_dns`]).
    pub peer_dns: Option<String>,
    /// Longest wait for in-flight requests on shutdown (ms).
    pub shutdown_grace_ms: u64,
    /// Log filter.
    pub log_level: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            http_port: ports::DEFAULT_HTTP,
            grpc_port: None,
            cluster_port: None,
            data_dir: PathBuf::from("data"),
            node_id: None,
            hostname: None,
            members: Vec::new(),
            peer_dns: None,
            shutdown_grace_ms: 10_000,
            log_level: "info".into(),
        }
    }
}

impl ServerConfig {
    /// This member's id (1 until [`Config::load`] resolved it).
    pub fn node_id(&self) -> u64 {
        self.node_id.unwrap_or(1)
    }

    /// Whether this node is one member of a cluster (static list or DNS) rather than standalone.
    pub fn clustered(&self) -> bool {
        !self.members.is_empty() || self.peer_dns.is_some()
    }

    /// The gRPC port in force (HTTP + 1000 unless set; 0 stays 0).
    pub fn grpc_port(&self) -> u16 {
        self.grpc_port.unwrap_or_else(|| ports::grpc(self.http_port).unwrap_or(u16::MAX))
    }

    /// The cluster port in force (HTTP + 1001 unless set; 0 stays 0).
    pub fn cluster_port(&self) -> u16 {
        self.cluster_port.unwrap_or_else(|| ports::cluster(self.http_port).unwrap_or(u16::MAX))
    }
}

/// Splits a StatefulSet pod's host name `<set>-<ordinal>` (the first DNS label only).
fn statefulset_ordinal(hostname: &str) -> Option<(&str, u64)> {
    let label = hostname.split('.').next()?;
    let (set, ordinal) = label.rsplit_once('-')?;
    if set.is_empty() || ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((set, ordinal.parse().ok()?))
}

/// The `[raft]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftSection {
    /// Take a snapshot after this many log entries. Concurrent writes share entries (up to 256
    /// commands each), so under load this covers more writes than entries.
    pub snapshot_after_logs: u64,
    /// Log entries kept behind a snapshot (for lagging followers).
    pub keep_logs_after_snapshot: u64,
    /// With peer DNS: members 1..=N form the first voter set (see [`Cli::bootstrap_expect`]).
    pub bootstrap_expect: u64,
    /// A leader that no quorum acknowledged for this long refuses writes and reports no leader
    /// (ms). Must exceed the election timeout (600 ms).
    pub leader_lease_ms: u64,
    /// Longest wait for a persistent write to commit, forwarding included (ms); then 503.
    pub write_timeout_ms: u64,
}

impl Default for RaftSection {
    fn default() -> Self {
        let d = RaftConfig::default();
        Self {
            snapshot_after_logs: d.snapshot_after_logs,
            keep_logs_after_snapshot: d.keep_logs_after_snapshot,
            bootstrap_expect: 1,
            leader_lease_ms: crate::consistency::raft::DEFAULT_LEADER_LEASE_MS,
            write_timeout_ms: crate::consistency::raft::DEFAULT_WRITE_TIMEOUT_MS,
        }
    }
}

/// The root of the configuration tree.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listeners and data.
    pub server: ServerConfig,
    /// Naming domain.
    pub naming: NamingConfig,
    /// Push engine.
    pub push: PushConfig,
    /// HTTP API.
    pub http: HttpConfig,
    /// gRPC SDK channel.
    pub grpc: GrpcConfig,
    /// Config center.
    pub configs: ConfigCenterConfig,
    /// Raft.
    pub raft: RaftSection,
    /// Distro (ephemeral data between members).
    pub distro: crate::consistency::distro::DistroConfig,
    /// Authentication and authorization.
    pub auth: AuthConfig,
    /// TEST ONLY: the planted bug of `--chaos-plant` (flag only, never from the file).
    #[serde(skip)]
    pub chaos_plant: Option<crate::consistency::Plant>,
    /// DNS server.
    pub dns: DnsConfig,
    /// Request rate limits.
    pub limits: crate::limits::LimitsConfig,
    /// TLS on the listeners and member channels.
    pub tls: TlsConfig,
    /// Bounds of the queues between tasks that no other section holds.
    pub queues: crate::queues::QueuesConfig,
}

impl Config {
    /// Defaults, then the file named by `cli.config`, then the flags/env in `cli`; validated.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        let mut config = match &cli.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        let s = &mut config.server;
        if let Some(v) = cli.bind {
            s.bind = v;
        }
        if let Some(v) = cli.http_port {
            s.http_port = v;
        }
        if let Some(v) = cli.grpc_port {
            s.grpc_port = Some(v);
        }
        if let Some(v) = cli.cluster_port {
            s.cluster_port = Some(v);
        }
        if let Some(v) = &cli.data_dir {
            s.data_dir.clone_from(v);
        }
        if let Some(v) = cli.node_id {
            s.node_id = Some(v);
        }
        if let Some(v) = &cli.hostname {
            s.hostname = Some(v.clone());
        }
        if let Some(v) = &cli.peer_dns {
            s.peer_dns = Some(v.trim().trim_end_matches('.').to_owned()).filter(|v| !v.is_empty());
        }
        if let Some(v) = &cli.members {
            s.members = v.iter().map(|m| m.trim().to_owned()).filter(|m| !m.is_empty()).collect();
        }
        if let Some(v) = &cli.log_level {
            s.log_level.clone_from(v);
        }
        if let Some(v) = cli.bootstrap_expect {
            config.raft.bootstrap_expect = v;
        }
        let a = &mut config.auth;
        if let Some(v) = cli.auth_enable {
            a.enabled = v;
        }
        // The operator maps optional Secret keys; an empty value counts as unset.
        let set = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        for (cli_value, field) in [
            (&cli.auth_token, &mut a.token_secret),
            (&cli.auth_identity_key, &mut a.identity_key),
            (&cli.auth_identity_value, &mut a.identity_value),
            (&cli.auth_admin_password, &mut a.admin_password),
        ] {
            if let Some(v) = set(cli_value) {
                *field = Some(v);
            }
        }
        config.chaos_plant = cli.chaos_plant;
        if let Some(v) = cli.dns_port {
            config.dns.port = Some(v);
        }
        if let Some(v) = cli.dns_tls_port {
            config.dns.tls_port = Some(v);
        }
        if let Some(v) = &cli.dns_zone {
            config.dns.zone.clone_from(v);
        }
        let t = &mut config.tls;
        for (cli_value, field) in [(&cli.tls_cert, &mut t.cert), (&cli.tls_key, &mut t.key), (&cli.tls_ca, &mut t.ca)] {
            // An empty value (an optional Secret key mapped by the operator) counts as unset.
            if let Some(v) = cli_value.clone().filter(|v| !v.as_os_str().is_empty()) {
                *field = Some(v);
            }
        }
        if let Some(v) = cli.tls_client_facing {
            t.client_facing = v;
        }
        if let Some(v) = cli.tls_cluster {
            t.cluster = v;
        }
        config.resolve_node_id()?;
        config.validate()?;
        Ok(config)
    }

    /// Reads a TOML file (unknown keys are errors).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source: Box::new(source) })
    }

    /// Settles `server.node_id`: as configured, else (clustered) the hostname's StatefulSet
    /// ordinal + 1, else 1. Standalone nodes never derive it: a renamed machine must not change
    /// the id its store was initialised with.
    fn resolve_node_id(&mut self) -> Result<(), ConfigError> {
        if self.server.node_id.is_some() {
            return Ok(());
        }
        if !self.server.clustered() {
            self.server.node_id = Some(1);
            return Ok(());
        }
        let hostname = self.hostname()?;
        let (_, ordinal) = statefulset_ordinal(&hostname).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "no --node-id given and host name '{hostname}' has no StatefulSet ordinal (<name>-<n>)"
            ))
        })?;
        self.server.node_id = Some(ordinal + 1);
        Ok(())
    }

    /// The host name in force: configured, else the kernel's.
    fn hostname(&self) -> Result<String, ConfigError> {
        if let Some(h) = &self.server.hostname {
            return Ok(h.clone());
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .map_err(|e| ConfigError::Invalid(format!("cannot read the host name: {e}; pass --hostname")))
    }

    /// Checks ranges that would make the server misbehave.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.server.node_id() == 0 {
            return invalid("server.node_id must be at least 1");
        }
        if !self.server.members.is_empty() && self.server.peer_dns.is_some() {
            return invalid("--members and --peer-dns are two membership sources: give one");
        }
        if !self.server.members.is_empty() {
            let n = self.server.members.len() as u64;
            if self.server.node_id() > n {
                return Err(ConfigError::Invalid(format!(
                    "server.node_id {} is not among the {n} members (ids are 1..={n} in --members order)",
                    self.server.node_id()
                )));
            }
        }
        if self.raft.bootstrap_expect == 0 {
            return invalid("raft.bootstrap_expect must be at least 1");
        }
        self.queues.check().map_err(ConfigError::Invalid)?;
        self.auth.validate().map_err(ConfigError::Invalid)?;
        self.tls.check().map_err(ConfigError::Invalid)?;
        if self.dns.tls_port.is_some() {
            if self.dns.port.is_none() {
                return invalid("dns.tls_port serves the DNS server's zone over TLS: set dns.port too");
            }
            if !self.tls.client_facing_on() {
                return invalid("dns.tls_port needs client-facing TLS: tls.cert and tls.key, tls.client_facing on");
            }
        }
        if self.auth.enabled && self.auth.token_secret.is_none() && self.server.clustered() {
            return Err(ConfigError::Invalid(format!(
                "auth is enabled on a cluster member without a token secret: set {}",
                auth_env::TOKEN
            )));
        }
        self.cluster_config()?.check().map_err(ConfigError::Invalid)?;
        if self.naming.beat_check_interval_ms == 0 || self.naming.empty_service_clean_interval_ms == 0 {
            return invalid("naming check intervals must be positive");
        }
        let checks = &self.naming.health_check;
        if checks.max_concurrency == 0 || checks.resync_interval_ms == 0 {
            return invalid("naming.health_check.max_concurrency and resync_interval_ms must be positive");
        }
        if self.push.udp_ack_timeout_ms == 0 {
            return invalid("push.udp_ack_timeout_ms must be positive");
        }
        if self.grpc.idle_detect_after_ms == 0 || self.grpc.detect_timeout_ms == 0 || self.grpc.outbound_queue == 0 {
            return invalid(
                "grpc.idle_detect_after_ms, grpc.detect_timeout_ms and grpc.outbound_queue must be positive",
            );
        }
        // A copy is renewed once per verify interval: with fewer than three chances, one lost
        // round trip would expire the copies of a healthy member.
        if self.distro.verify_interval_ms == 0
            || self.distro.expire_after_ms < self.distro.verify_interval_ms.saturating_mul(3)
        {
            return invalid(
                "distro.verify_interval_ms must be positive and distro.expire_after_ms at least three times it",
            );
        }
        if self.raft.leader_lease_ms <= crate::consistency::raft::ELECTION_TIMEOUT_MAX_MS {
            return invalid("raft.leader_lease_ms must exceed the election timeout (600 ms)");
        }
        if self.raft.write_timeout_ms == 0 {
            return invalid("raft.write_timeout_ms must be positive");
        }
        if self.http.max_body_bytes < 1024 {
            return invalid("http.max_body_bytes must be at least 1024");
        }
        if self.dns.ttl_secs == 0 {
            return invalid("dns.ttl_secs must be positive");
        }
        registry_proto::dns::Zone::new(&self.dns.zone, self.dns.ttl_secs, 0)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(())
    }

    /// The member table as configured, with this member's own addresses (ports possibly 0
    /// until bound, see [`ClusterConfig::bound`]). Members from `--members` (by position), or
    /// under peer DNS members 1..=bootstrap_expect at their per-pod names on this member's
    /// ports; empty standalone. Own addresses: its entry, else its per-pod name, else the bind
    /// address.
    pub fn cluster_config(&self) -> Result<ClusterConfig, ConfigError> {
        let me = self.server.node_id();
        let members = if self.server.peer_dns.is_some() {
            (1..=self.raft.bootstrap_expect).map(|id| Ok((id, self.peer_dns_addr(id)?))).collect::<Result<_, _>>()?
        } else {
            self.server
                .members
                .iter()
                .enumerate()
                .map(|(i, m)| Ok((i as u64 + 1, MemberAddr::parse(m).map_err(ConfigError::Invalid)?)))
                .collect::<Result<std::collections::BTreeMap<_, _>, _>>()?
        };
        let own = match members.get(&me) {
            Some(own) => own.clone(),
            None if self.server.peer_dns.is_some() => self.peer_dns_addr(me)?,
            None => MemberAddr {
                cluster: format!("{}:{}", self.server.bind, self.server.cluster_port()),
                http: format!("{}:{}", self.server.bind, self.server.http_port),
            },
        };
        Ok(ClusterConfig { me, own, members })
    }

    /// Member `id`'s addresses under peer DNS: `<set>-<id-1>.<peer dns>` on this member's
    /// cluster and HTTP ports (a StatefulSet's pods share them), the StatefulSet name taken from
    /// this member's host name. A DNS name, never a pod IP: it survives rescheduling, and
    /// connections resolve it afresh whenever they (re)connect.
    fn peer_dns_addr(&self, id: u64) -> Result<MemberAddr, ConfigError> {
        let domain = self.server.peer_dns.as_deref().unwrap_or_default();
        let hostname = self.hostname()?;
        let (set, _) = statefulset_ordinal(&hostname).ok_or_else(|| {
            ConfigError::Invalid(format!("--peer-dns needs a StatefulSet host name (<name>-<n>), not '{hostname}'"))
        })?;
        let ordinal = id.checked_sub(1).ok_or_else(|| ConfigError::Invalid("node id 0".into()))?;
        let host = format!("{set}-{ordinal}.{domain}");
        Ok(MemberAddr {
            cluster: format!("{host}:{}", self.server.cluster_port()),
            http: format!("{host}:{}", self.server.http_port),
        })
    }

    /// The Raft settings for this node, over `cluster` (built from [`Self::cluster_config`]).
    pub fn raft_config(&self, cluster: std::sync::Arc<crate::cluster::Cluster>) -> RaftConfig {
        RaftConfig {
            node_id: self.server.node_id(),
            cluster,
            snapshot_after_logs: self.raft.snapshot_after_logs,
            keep_logs_after_snapshot: self.raft.keep_logs_after_snapshot,
            standalone: !self.server.clustered(),
            leader_lease: std::time::Duration::from_millis(self.raft.leader_lease_ms),
            write_timeout: std::time::Duration::from_millis(self.raft.write_timeout_ms),
            write_queue: self.queues.raft_writes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_is_off_unless_a_port_is_given_and_a_bad_zone_is_refused() {
        let c = Config::load(&Cli::default()).unwrap();
        assert_eq!((c.dns.port, c.dns.zone.as_str(), c.dns.ttl_secs), (None, "nacos.local", 5));
        let cli = Cli { dns_port: Some(5353), dns_zone: Some("svc.example".into()), ..Cli::default() };
        let c = Config::load(&cli).unwrap();
        assert_eq!((c.dns.port, c.dns.zone.as_str()), (Some(5353), "svc.example"));
        let bad = Cli { dns_zone: Some("bad_zone..x".into()), ..Cli::default() };
        assert!(matches!(Config::load(&bad), Err(ConfigError::Invalid(m)) if m.contains("DNS zone")));
    }

    #[test]
    fn ports_derive_from_http_port() {
        let c = Config::load(&Cli { http_port: Some(18848), ..Cli::default() }).unwrap();
        assert_eq!((c.server.grpc_port(), c.server.cluster_port()), (19848, 19849));
        let c = Config::load(&Cli { http_port: Some(0), ..Cli::default() }).unwrap();
        assert_eq!((c.server.grpc_port(), c.server.cluster_port()), (0, 0));
    }

    #[test]
    fn members_give_cluster_addresses_by_node_id() {
        let cli = Cli {
            node_id: Some(2),
            members: Some(vec!["127.0.0.1:18848".into(), "127.0.0.1:28848".into(), "127.0.0.1:38848".into()]),
            ..Cli::default()
        };
        let c = Config::load(&cli).unwrap();
        let r = c.cluster_config().unwrap();
        assert_eq!(r.members.len(), 3);
        assert_eq!(r.members[&3].cluster, "127.0.0.1:39849");
        assert_eq!(r.members[&3].http, "127.0.0.1:38848");
        assert_eq!(r.own.cluster, "127.0.0.1:29849");
        // Named ports, mixed with derived ones; this member's own entry on ephemeral ports.
        let named = Cli {
            node_id: Some(2),
            members: Some(vec!["127.0.0.1:18848:40001".into(), "127.0.0.1:0:0".into(), "h:38848".into()]),
            ..Cli::default()
        };
        let r = Config::load(&named).unwrap().cluster_config().unwrap();
        assert_eq!(
            (r.members[&1].http.as_str(), r.members[&1].cluster.as_str()),
            ("127.0.0.1:18848", "127.0.0.1:40001")
        );
        assert_eq!((r.own.http.as_str(), r.own.cluster.as_str()), ("127.0.0.1:0", "127.0.0.1:0"));
        assert_eq!(r.members[&3].cluster, "h:39849");
        // Port 0 is for this member's own entry only.
        assert!(Config::load(&Cli { node_id: Some(1), ..named.clone() }).is_err());
        let bad = Cli { node_id: Some(4), ..cli.clone() };
        assert!(Config::load(&bad).is_err());
        let garbage = Cli { members: Some(vec!["nohost".into()]), node_id: Some(1), ..Cli::default() };
        assert!(Config::load(&garbage).is_err());
    }

    #[test]
    fn node_id_comes_from_the_statefulset_ordinal_only_in_a_cluster() {
        let dns = |host: &str| Cli {
            hostname: Some(host.into()),
            peer_dns: Some("registry-headless.prod.svc.cluster.local".into()),
            ..Cli::default()
        };
        assert_eq!(Config::load(&dns("registry-0")).unwrap().server.node_id(), 1);
        assert_eq!(Config::load(&dns("my-registry-12.registry-headless")).unwrap().server.node_id(), 13);
        let unnumbered = Config::load(&dns("registry")).unwrap_err().to_string();
        assert!(unnumbered.contains("no StatefulSet ordinal"), "{unnumbered}");
        assert!(Config::load(&dns("registry-x1")).is_err());
        // An explicit id wins over the host name.
        let explicit = Cli { node_id: Some(7), ..dns("registry-0") };
        assert_eq!(Config::load(&explicit).unwrap().server.node_id(), 7);
        // Standalone: always 1, whatever the machine is called.
        let standalone = Cli { hostname: Some("web-3".into()), ..Cli::default() };
        assert_eq!(Config::load(&standalone).unwrap().server.node_id(), 1);
        // A static list derives it too.
        let listed = Cli {
            hostname: Some("registry-1".into()),
            members: Some(vec!["a:8848".into(), "b:8848".into(), "c:8848".into()]),
            ..Cli::default()
        };
        assert_eq!(Config::load(&listed).unwrap().server.node_id(), 2);
    }

    #[test]
    fn peer_dns_addresses_members_by_per_pod_names() {
        let cli = Cli {
            hostname: Some("nacos-2".into()),
            peer_dns: Some("nacos-headless.ns.svc.cluster.local.".into()),
            http_port: Some(8848),
            bootstrap_expect: Some(3),
            ..Cli::default()
        };
        let c = Config::load(&cli).unwrap();
        assert!(c.server.clustered());
        let r = c.cluster_config().unwrap();
        assert_eq!(r.me, 3);
        assert_eq!(
            r.members.into_iter().map(|(id, a)| (id, a.cluster)).collect::<Vec<_>>(),
            vec![
                (1, "nacos-0.nacos-headless.ns.svc.cluster.local:9849".to_owned()),
                (2, "nacos-1.nacos-headless.ns.svc.cluster.local:9849".to_owned()),
                (3, "nacos-2.nacos-headless.ns.svc.cluster.local:9849".to_owned()),
            ]
        );
        assert_eq!(r.own.cluster, "nacos-2.nacos-headless.ns.svc.cluster.local:9849");
        assert_eq!(r.own.http, "nacos-2.nacos-headless.ns.svc.cluster.local:8848");
        // Beyond the bootstrap set: not an initial member, still addressed by its name.
        let later = Cli { hostname: Some("nacos-4".into()), ..cli.clone() };
        let r = Config::load(&later).unwrap().cluster_config().unwrap();
        assert_eq!((r.me, r.members.len()), (5, 3));
        assert_eq!(r.own.cluster, "nacos-4.nacos-headless.ns.svc.cluster.local:9849");
        // Two membership sources, or an empty bootstrap set, are refused.
        let both = Cli { members: Some(vec!["a:1".into()]), node_id: Some(1), ..cli.clone() };
        assert!(Config::load(&both).is_err());
        assert!(Config::load(&Cli { bootstrap_expect: Some(0), ..cli }).is_err());
    }

    #[test]
    fn liveness_settings_default_to_nacos_timings_and_are_validated() {
        let c = Config::default();
        assert_eq!(c.distro.expire_after_ms, 180_000, "Nacos' nacos.naming.client.expired.time");
        assert_eq!(c.grpc.idle_detect_after_ms + c.grpc.detect_timeout_ms, 20_000, "a frozen client goes after 20 s");
        c.validate().unwrap();
        let mut c = Config::default();
        c.distro.verify_interval_ms = 2_000;
        c.distro.expire_after_ms = 5_999;
        assert!(c.validate().is_err(), "fewer than three verify rounds before expiry");
        c.distro.expire_after_ms = 6_000;
        c.validate().unwrap();
        for broken in [|c: &mut Config| c.grpc.idle_detect_after_ms = 0, |c: &mut Config| c.grpc.detect_timeout_ms = 0]
        {
            let mut c = Config::default();
            broken(&mut c);
            assert!(c.validate().is_err());
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.toml");
        std::fs::write(&path, "[grpc]\ndetect_interval_ms = 3000\n").unwrap();
        assert!(Config::from_file(&path).is_err(), "detection has no interval any more: a stale key is refused");
    }

    #[test]
    fn tls_flags_override_the_file_and_half_configurations_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.toml");
        std::fs::write(&path, "[tls]\ncert = '/c.pem'\nkey = '/k.pem'\nca = '/ca.pem'\n").unwrap();
        let file = || Cli { config: Some(path.clone()), ..Cli::default() };
        let c = Config::load(&file()).unwrap();
        assert_eq!((c.tls.ca.as_deref(), c.tls.client_facing, c.tls.cluster), (Some(Path::new("/ca.pem")), true, true));
        // Flags win; an empty value (an optional Secret key) counts as unset.
        let cli =
            Cli { tls_cert: Some("/d.pem".into()), tls_ca: Some("".into()), tls_client_facing: Some(false), ..file() };
        let c = Config::load(&cli).unwrap();
        assert_eq!(
            (c.tls.cert.as_deref(), c.tls.ca.as_deref()),
            (Some(Path::new("/d.pem")), Some(Path::new("/ca.pem")))
        );
        assert!(!c.tls.client_facing);
        // A certificate without its key, or mutual TLS between members without a CA: refused.
        assert!(Config::load(&Cli { tls_cert: Some("/c.pem".into()), ..Cli::default() }).is_err());
        let no_ca = Cli { tls_cert: Some("/c.pem".into()), tls_key: Some("/k.pem".into()), ..Cli::default() };
        assert!(Config::load(&no_ca).unwrap_err().to_string().contains("tls.ca"));
        assert!(Config::load(&Cli { tls_cluster: Some(false), ..no_ca }).is_ok());
    }

    #[test]
    fn dns_over_tls_needs_the_dns_server_and_client_facing_tls() {
        let tls = || Cli {
            tls_cert: Some("/c.pem".into()),
            tls_key: Some("/k.pem".into()),
            tls_cluster: Some(false),
            dns_port: Some(5353),
            dns_tls_port: Some(853),
            ..Cli::default()
        };
        assert_eq!(Config::load(&tls()).unwrap().dns.tls_port, Some(853));
        for (cli, why) in [
            (Cli { tls_cert: None, tls_key: None, ..tls() }, "client-facing TLS"),
            (Cli { tls_client_facing: Some(false), ..tls() }, "client-facing TLS"),
            (Cli { dns_port: None, ..tls() }, "dns.port"),
        ] {
            let refused = Config::load(&cli).unwrap_err().to_string();
            assert!(refused.contains(why), "{refused}");
        }
    }

    #[test]
    fn flags_override_file_and_unknown_keys_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.toml");
        std::fs::write(&path, "[server]\nhttp_port = 1\nnode_id = 3\n[naming]\nbeat_check_interval_ms = 500\n")
            .unwrap();
        let c = Config::load(&Cli { config: Some(path.clone()), http_port: Some(2), ..Cli::default() }).unwrap();
        assert_eq!((c.server.http_port, c.server.node_id(), c.naming.beat_check_interval_ms), (2, 3, 500));
        std::fs::write(&path, "[server]\nhttp_prot = 1\n").unwrap();
        assert!(matches!(Config::load(&Cli { config: Some(path), ..Cli::default() }), Err(ConfigError::Parse { .. })));
    }

    #[test]
    fn queue_bounds_come_from_the_file_and_zero_is_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.toml");
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Config::load(&Cli { config: Some(path.clone()), ..Cli::default() })
        };
        let c = load("[queues]\nraft_writes = 8\ntls_handshakes = 3\n").unwrap();
        let q = c.queues;
        assert_eq!((q.raft_writes, q.tls_handshakes, q.push_control, q.change_events), (8, 3, 65_536, 16_384));
        assert_eq!(c.raft_config(crate::cluster::Cluster::new(c.cluster_config().unwrap())).write_queue, 8);
        let refused = load("[queues]\npush_control = 0\n").unwrap_err().to_string();
        assert!(refused.contains("queues.push_control is 0"), "{refused}");
        assert!(load("[queues]\nchange_events = 100000000\n").is_err());
        assert!(matches!(load("[queues]\nraft_write = 8\n"), Err(ConfigError::Parse { .. })));
    }
}
