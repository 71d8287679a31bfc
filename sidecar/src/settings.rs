//! What the sidecar is told: the environment the operator's webhook injects
//! (`registry_proto::contract::sidecar::env`), each also a flag. Resolved once at start into
//! [`Settings`]; a value that cannot be used stops the sidecar with a message naming it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use registry_proto::contract::sidecar::{self, env};
use registry_proto::contract::tls::sidecar_env as tls_env;
use registry_proto::contract::{dns, ports};
use registry_proto::model::{ServiceKey, metadata};
use registry_proto::probe::checker::MysqlChecker;
use registry_proto::probe::spec::ProbeSpec;

/// Metadata keys the declared instance carries (Kubernetes identity of the pod).
pub mod meta {
    /// Pod name.
    pub const POD_NAME: &str = "k8s.pod.name";
    /// Kubernetes namespace.
    pub const POD_NAMESPACE: &str = "k8s.pod.namespace";
    /// Node name.
    pub const NODE_NAME: &str = "k8s.node.name";
    /// Prefix of each pod label.
    pub const LABEL_PREFIX: &str = "k8s.label.";
}

/// Command line and environment.
#[derive(Debug, Clone, Parser)]
#[command(name = "nacos-sidecar", version, about)]
pub struct Args {
    /// Registry HTTP addresses, `host:port[,host:port...]` (gRPC is each + 1000).
    #[arg(long, env = env::SERVER_ADDR, value_delimiter = ',')]
    pub server_addr: Vec<String>,
    /// Local HTTP port of the Nacos API on 127.0.0.1 (gRPC = + 1000).
    #[arg(long, env = env::HTTP_PORT, default_value_t = ports::DEFAULT_HTTP)]
    pub http_port: u16,
    /// Admin port (`/live`, `/ready`, `/metrics`, `/drain`), on every address of the pod.
    #[arg(long, env = env::ADMIN_PORT, default_value_t = sidecar::ADMIN_PORT)]
    pub admin_port: u16,
    /// Address the admin port binds to.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub admin_bind: IpAddr,
    /// Service the pod registers under; without it nothing is registered declaratively.
    #[arg(long, env = env::SERVICE)]
    pub service: Option<String>,
    /// Instance port.
    #[arg(long, env = env::PORT)]
    pub port: Option<u16>,
    /// Nacos group.
    #[arg(long, env = env::GROUP, default_value = "DEFAULT_GROUP")]
    pub group: String,
    /// Nacos namespace (tenant).
    #[arg(long, env = env::NAMESPACE, default_value = "public")]
    pub namespace: String,
    /// Nacos cluster of the instance.
    #[arg(long, env = env::CLUSTER, default_value = "DEFAULT")]
    pub cluster: String,
    /// Instance weight.
    #[arg(long, env = env::WEIGHT, default_value_t = 1.0)]
    pub weight: f64,
    /// Ephemeral (bound to the sidecar's connection) or persistent (health from the probe).
    #[arg(long, env = env::EPHEMERAL, default_value_t = true, action = clap::ArgAction::Set)]
    pub ephemeral: bool,
    /// Extra instance metadata (JSON object or `k1=v1,k2=v2`).
    #[arg(long, env = env::METADATA)]
    pub metadata: Option<String>,
    /// Address registered (the pod IP).
    #[arg(long, env = env::POD_IP)]
    pub pod_ip: Option<IpAddr>,
    /// Pod name (metadata).
    #[arg(long, env = env::POD_NAME)]
    pub pod_name: Option<String>,
    /// Pod namespace (metadata).
    #[arg(long, env = env::POD_NAMESPACE)]
    pub pod_namespace: Option<String>,
    /// Node name (metadata).
    #[arg(long, env = env::NODE_NAME)]
    pub node_name: Option<String>,
    /// Pod labels file (downward API format).
    #[arg(long, env = env::LABELS_FILE)]
    pub labels_file: Option<PathBuf>,
    /// Failover cache directory; without it the cache lives in memory only.
    #[arg(long, env = env::CACHE_DIR)]
    pub cache_dir: Option<PathBuf>,
    /// Seconds between disabling the instance and deregistering it on drain.
    #[arg(long, env = env::DRAIN_SECONDS, default_value_t = 5)]
    pub drain_seconds: u64,
    /// DNS resolver port on 127.0.0.1, UDP and TCP (0: an ephemeral one); off when unset.
    #[arg(long, env = env::DNS_PORT)]
    pub dns_port: Option<u16>,
    /// Zone answered from the cache (the registry's `NACOS_DNS_ZONE`).
    #[arg(long, env = dns::env::ZONE, default_value = dns::DEFAULT_ZONE)]
    pub dns_zone: String,
    /// resolv.conf whose first `nameserver` gets every name outside the zone.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub dns_resolv_conf: PathBuf,
    /// CA bundle (PEM) the registry's certificate must chain to; set: TLS to the registry
    /// (gRPC and the HTTP pass-through; docs/tls.md).
    #[arg(long, env = tls_env::CA)]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) presented to the registry; with `--tls-key`.
    #[arg(long, env = tls_env::CERT)]
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = tls_env::KEY)]
    pub tls_key: Option<PathBuf>,
    /// Name the registry's certificate must carry (default: the host of the first server address).
    #[arg(long, env = tls_env::SERVER_NAME)]
    pub tls_server_name: Option<String>,
}

/// TLS to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// CA bundle the registry's certificate chains to.
    pub ca: PathBuf,
    /// Client certificate and key, when the registry asks for one.
    pub identity: Option<registry_proto::tls::Identity>,
    /// Name the registry's certificate must carry.
    pub server_name: String,
}

/// The DNS resolver's settings.
#[derive(Debug, Clone)]
pub struct DnsSettings {
    /// Where it listens (127.0.0.1, UDP and TCP).
    pub addr: SocketAddr,
    /// The zone answered from the cache.
    pub zone: registry_proto::dns::Zone,
    /// The pod's original resolver configuration.
    pub resolv_conf: PathBuf,
}

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// No registry address.
    #[error("{var} is empty: the sidecar needs at least one registry address", var = env::SERVER_ADDR)]
    NoServer,
    /// An address that is not `host:port`.
    #[error("{var}: '{0}' is not host:port", var = env::SERVER_ADDR)]
    BadServer(String),
    /// A port whose gRPC port (+ 1000) does not exist.
    #[error("port {0} has no gRPC port (+ 1000)")]
    NoGrpcPort(u16),
    /// A service without a port or pod IP.
    #[error("{var} is set, so {1} is required", var = env::SERVICE)]
    Missing(&'static str, &'static str),
    /// The service name, group or namespace breaks Nacos' naming rules.
    #[error("{0}")]
    Name(#[from] registry_proto::model::NameError),
    /// Metadata that is neither JSON nor `k=v` pairs.
    #[error("{var}: {0}", var = env::METADATA)]
    Metadata(#[from] metadata::MetadataError),
    /// A probe the sidecar cannot run.
    #[error("{0}")]
    Probe(#[from] registry_proto::probe::spec::SpecError),
    /// A `mysql` probe without its login (the webhook maps it from the pod's Secret).
    #[error("{probe}=mysql needs {0} (the webhook sets it from the Secret the pod names)", probe = env::PROBE)]
    MysqlLogin(&'static str),
    /// The labels file cannot be read.
    #[error("{var}: {0}", var = env::LABELS_FILE)]
    Labels(std::io::Error),
    /// A zone that is not a domain name.
    #[error("{var}: {0}", var = dns::env::ZONE)]
    Zone(#[from] registry_proto::dns::DnsError),
    /// A client certificate without its key or the other way round.
    #[error("{cert} and {key} go together", cert = tls_env::CERT, key = tls_env::KEY)]
    TlsIdentity,
}

/// The instance the sidecar registers on the pod's behalf.
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    /// Where it is registered.
    pub service: ServiceKey,
    /// Address.
    pub ip: IpAddr,
    /// Port.
    pub port: u16,
    /// Nacos cluster.
    pub cluster: String,
    /// Weight.
    pub weight: f64,
    /// Ephemeral or persistent.
    pub ephemeral: bool,
    /// Metadata: the configured pairs, the pod's identity and labels.
    pub metadata: BTreeMap<String, String>,
    /// How health is decided.
    pub probe: ProbeSpec,
    /// The `mysql` probe's login and Nacos' master check (only with that probe; its `Debug`
    /// hides the password).
    pub mysql: Option<MysqlChecker>,
}

/// Everything resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Registry HTTP addresses as given (`host:port`).
    pub servers: Vec<String>,
    /// Local HTTP API address (127.0.0.1).
    pub local_http: SocketAddr,
    /// Local gRPC API address (127.0.0.1, HTTP + 1000).
    pub local_grpc: SocketAddr,
    /// Admin address.
    pub admin: SocketAddr,
    /// The declared instance, if any.
    pub declared: Option<Declared>,
    /// Pod labels: the upstream connection's labels.
    pub labels: BTreeMap<String, String>,
    /// Failover cache directory.
    pub cache_dir: Option<PathBuf>,
    /// Drain window.
    pub drain: Duration,
    /// The DNS resolver, when a port is set.
    pub dns: Option<DnsSettings>,
    /// TLS to the registry, when a CA is set.
    pub tls: Option<UpstreamTls>,
}

impl Settings {
    /// Resolves `args`; `probe_env` reads the probe variables (the process environment).
    pub fn resolve(args: Args, probe_env: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let servers: Vec<String> =
            args.server_addr.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
        if servers.is_empty() {
            return Err(SettingsError::NoServer);
        }
        for s in &servers {
            let port = s.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok());
            let port = port.ok_or_else(|| SettingsError::BadServer(s.clone()))?;
            ports::grpc(port).ok_or(SettingsError::NoGrpcPort(port))?;
        }
        let grpc_port = ports::grpc(args.http_port).ok_or(SettingsError::NoGrpcPort(args.http_port))?;
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let labels = match &args.labels_file {
            Some(path) => parse_labels(&std::fs::read_to_string(path).map_err(SettingsError::Labels)?),
            None => BTreeMap::new(),
        };
        let declared = match &args.service {
            Some(service) => Some(declared(&args, service, &labels, probe_env)?),
            None => None,
        };
        let dns = match args.dns_port {
            Some(port) => Some(DnsSettings {
                addr: SocketAddr::new(local, port),
                zone: zone(&args.dns_zone)?,
                resolv_conf: args.dns_resolv_conf.clone(),
            }),
            None => None,
        };
        let tls = upstream_tls(&args, &servers)?;
        Ok(Self {
            servers,
            local_http: SocketAddr::new(local, args.http_port),
            local_grpc: SocketAddr::new(local, grpc_port),
            admin: SocketAddr::new(args.admin_bind, args.admin_port),
            declared,
            labels,
            cache_dir: args.cache_dir,
            drain: Duration::from_secs(args.drain_seconds),
            dns,
            tls,
        })
    }
}

/// TLS to the registry when a CA is given; the server name defaults to the first server's host.
fn upstream_tls(args: &Args, servers: &[String]) -> Result<Option<UpstreamTls>, SettingsError> {
    let Some(ca) = args.tls_ca.clone() else { return Ok(None) };
    let identity = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(registry_proto::tls::Identity::new(cert, key)),
        (None, None) => None,
        _ => return Err(SettingsError::TlsIdentity),
    };
    let first_host = servers.first().and_then(|s| s.rsplit_once(':')).map(|(host, _)| host);
    let first_host = first_host.unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let server_name = args.tls_server_name.clone().unwrap_or_else(|| first_host.to_owned());
    Ok(Some(UpstreamTls { ca, identity, server_name }))
}

/// The zone with the registry's default TTL; its SOA serial is the start time (resolvers only
/// compare serials).
fn zone(origin: &str) -> Result<registry_proto::dns::Zone, SettingsError> {
    let serial = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
    Ok(registry_proto::dns::Zone::new(origin, registry_proto::dns::DEFAULT_TTL_SECS, serial)?)
}

fn declared(
    args: &Args,
    service: &str,
    labels: &BTreeMap<String, String>,
    probe_env: impl Fn(&str) -> Option<String>,
) -> Result<Declared, SettingsError> {
    let port = args.port.ok_or(SettingsError::Missing(env::SERVICE, env::PORT))?;
    let ip = args.pod_ip.ok_or(SettingsError::Missing(env::SERVICE, env::POD_IP))?;
    let key = ServiceKey::new(&args.namespace, &args.group, service)?;
    let mut metadata = match &args.metadata {
        Some(raw) => metadata::parse(raw)?,
        None => BTreeMap::new(),
    };
    for (key, value) in [
        (meta::POD_NAME, &args.pod_name),
        (meta::POD_NAMESPACE, &args.pod_namespace),
        (meta::NODE_NAME, &args.node_name),
    ] {
        if let Some(value) = value {
            metadata.insert(key.to_owned(), value.clone());
        }
    }
    for (k, v) in labels {
        metadata.insert(format!("{}{k}", meta::LABEL_PREFIX), v.clone());
    }
    let probe = ProbeSpec::from_env(&probe_env, port)?;
    let mysql = match probe {
        ProbeSpec::Mysql { .. } => Some(mysql_login(&probe_env)?),
        _ => None,
    };
    Ok(Declared {
        service: key,
        ip,
        port,
        cluster: args.cluster.clone(),
        weight: args.weight,
        ephemeral: args.ephemeral,
        metadata,
        probe,
        mysql,
    })
}

/// The login of the `mysql` probe, running Nacos' master check (`read_only=ON` is unhealthy).
fn mysql_login(probe_env: impl Fn(&str) -> Option<String>) -> Result<MysqlChecker, SettingsError> {
    let read = |name| probe_env(name).filter(|v| !v.is_empty()).ok_or(SettingsError::MysqlLogin(name));
    Ok(MysqlChecker {
        user: read(env::MYSQL_USER)?,
        pwd: read(env::MYSQL_PASSWORD)?,
        cmd: MysqlChecker::MASTER_CHECK.to_owned(),
    })
}

/// Parses the downward-API labels file: one `key="value"` per line, the value a quoted string
/// with `\"`, `\\` and `\n` escapes. Lines that do not parse are skipped.
pub fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some((key, raw)) = line.split_once('=') else { continue };
        let Some(quoted) = raw.trim().strip_prefix('"').and_then(|r| r.strip_suffix('"')) else { continue };
        let mut value = String::with_capacity(quoted.len());
        let mut chars = quoted.chars();
        while let Some(c) = chars.next() {
            match (c, c == '\\') {
                (_, true) => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => {}
                },
                (c, false) => value.push(c),
            }
        }
        out.insert(key.trim().to_owned(), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["nacos-sidecar", "--server-addr", "10.0.0.1:8848,nacos:8848"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap()
    }

    #[test]
    fn upstream_tls_needs_a_ca_and_names_the_first_server_by_default() {
        assert_eq!(Settings::resolve(args(&[]), |_| None).unwrap().tls, None);
        let tls = Settings::resolve(args(&["--tls-ca", "/ca.pem"]), |_| None).unwrap().tls.unwrap();
        assert_eq!((tls.ca.to_str(), tls.identity, tls.server_name.as_str()), (Some("/ca.pem"), None, "10.0.0.1"));
        let named = args(&["--tls-ca", "/ca.pem", "--tls-server-name", "registry.ns.svc"]);
        assert_eq!(Settings::resolve(named, |_| None).unwrap().tls.unwrap().server_name, "registry.ns.svc");
        let mutual = args(&["--tls-ca", "/ca.pem", "--tls-cert", "/c.pem", "--tls-key", "/k.pem"]);
        let identity = Settings::resolve(mutual, |_| None).unwrap().tls.unwrap().identity;
        assert_eq!(identity, Some(registry_proto::tls::Identity::new("/c.pem", "/k.pem")));
        let half = Settings::resolve(args(&["--tls-ca", "/ca.pem", "--tls-cert", "/c.pem"]), |_| None);
        assert!(matches!(half, Err(SettingsError::TlsIdentity)));
    }

    #[test]
    fn labels_follow_the_downward_api_format() {
        let labels = parse_labels("app=\"orders\"\ntier=\"a \\\"b\\\"\\\\c\"\nbroken\n");
        assert_eq!(labels["app"], "orders");
        assert_eq!(labels["tier"], "a \"b\"\\c");
        assert_eq!(labels.len(), 2);
    }

    #[test]
    fn a_declared_instance_needs_port_and_pod_ip_and_carries_the_pod_identity() {
        let missing = Settings::resolve(args(&["--service", "orders"]), |_| None).unwrap_err();
        assert!(missing.to_string().contains(env::PORT), "{missing}");
        let s = Settings::resolve(
            args(&[
                "--service",
                "orders",
                "--port",
                "8080",
                "--pod-ip",
                "10.1.2.3",
                "--pod-name",
                "orders-0",
                "--metadata",
                "v=1",
            ]),
            |_| None,
        )
        .unwrap();
        let d = s.declared.unwrap();
        assert_eq!(
            (d.service.grouped_name().as_str(), d.port, d.ip.to_string().as_str()),
            ("DEFAULT_GROUP@@orders", 8080, "10.1.2.3")
        );
        assert_eq!((d.metadata["v"].as_str(), d.metadata[meta::POD_NAME].as_str()), ("1", "orders-0"));
        assert_eq!(d.probe, ProbeSpec::Tcp { port: 8080 });
        assert_eq!((s.local_http.port(), s.local_grpc.port()), (8848, 9848));
    }

    #[test]
    fn a_mysql_probe_needs_its_login_from_the_environment() {
        let declared = ["--service", "db", "--port", "3306", "--pod-ip", "10.1.2.3"];
        let probe = |name: &str, password: Option<&str>| match name {
            env::PROBE => Some("mysql".to_owned()),
            env::MYSQL_USER => Some("probe".to_owned()),
            env::MYSQL_PASSWORD => password.map(str::to_owned),
            _ => None,
        };
        let missing = Settings::resolve(args(&declared), |name| probe(name, None)).unwrap_err();
        assert!(matches!(missing, SettingsError::MysqlLogin(env::MYSQL_PASSWORD)), "{missing}");
        let d = Settings::resolve(args(&declared), |name| probe(name, Some("s3cret"))).unwrap().declared.unwrap();
        assert_eq!(d.probe, ProbeSpec::Mysql { port: 3306 });
        let login = d.mysql.as_ref().unwrap();
        assert_eq!(
            (login.user.as_str(), login.pwd.as_str(), login.cmd.as_str()),
            ("probe", "s3cret", MysqlChecker::MASTER_CHECK)
        );
        assert!(!format!("{d:?}").contains("s3cret"), "the password stays out of Debug output");
    }

    #[test]
    fn unusable_server_addresses_are_refused() {
        let bad = Args::try_parse_from(["x", "--server-addr", "nacos"]).unwrap();
        assert!(matches!(Settings::resolve(bad, |_| None), Err(SettingsError::BadServer(_))));
        let high = Args::try_parse_from(["x", "--server-addr", "h:65000"]).unwrap();
        assert!(matches!(Settings::resolve(high, |_| None), Err(SettingsError::NoGrpcPort(65000))));
    }
}
