//! Step 2 of the pipeline: turns a `NacosCluster` (plus the operator's environment) into a
//! [`ValidatedCluster`], or says precisely which field is wrong.
//!
//! Pure: no client, no clock. This is the only module that reads the spec; defaults the
//! schema cannot know (images, cluster domain) are filled in here, and `build` consumes only
//! the result. Accepted-but-questionable specs (an even member count) pass with
//! [`Warning`]s for the caller to surface as events.

mod syntax;

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{LocalObjectReference, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use registry_proto::contract::ports as port_layout;
use snafu::{OptionExt, ResultExt, Snafu, ensure};

use self::syntax::{is_dns1035_label, is_dns1123_subdomain, is_image, is_secret_key};
use super::OperatorEnvironment;
use crate::crd::{AuthSecretKeys, ImagePullPolicy, NacosCluster, SchedulingSpec, ServiceSelector, ServiceType};
use crate::quantity;

/// Longest cluster name: the StatefulSet's pods carry a `controller-revision-hash` label of
/// `<name>-<10-character hash>`, and label values stop at 63 characters.
pub const MAX_NAME_LEN: usize = 52;

/// Keys of the `[server]` section the operator writes itself; `spec.config` may not set them.
pub const RESERVED_SERVER_KEYS: [&str; 8] =
    ["http_port", "grpc_port", "cluster_port", "data_dir", "node_id", "members", "peer_dns", "log_level"];

/// The registry's default `server.shutdown_grace_ms` (docs/configuration.md).
const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 10_000;

/// Everything `build` needs, checked and with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedCluster {
    /// Name of the `NacosCluster`; also the StatefulSet's and the client Service's name.
    pub name: String,
    /// Namespace of the `NacosCluster` and of everything built for it.
    pub namespace: String,
    /// Controller owner reference to the `NacosCluster`, put on every built object.
    pub owner_reference: OwnerReference,
    /// DNS domain of the Kubernetes cluster.
    pub cluster_domain: String,
    /// Number of members.
    pub replicas: i32,
    /// Registry image.
    pub image: String,
    /// Image pull policy; `None` leaves Kubernetes' default.
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// Image pull Secrets.
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Container resources.
    pub resources: Option<ResourceRequirements>,
    /// Per-member volume.
    pub storage: Storage,
    /// Listening ports.
    pub ports: Ports,
    /// Registry log filter.
    pub log_level: String,
    /// Auth Secret, when auth is on.
    pub auth: Option<Auth>,
    /// DNS settings, when DNS is on.
    pub dns: Option<Dns>,
    /// TLS settings, when `spec.tls` is set.
    pub tls: Option<Tls>,
    /// Selectors of the registered services projected as headless Services, when the
    /// projection is on.
    pub service_projection: Option<Vec<ServiceSelector>>,
    /// Client Service type.
    pub service_type: ServiceType,
    /// Client Service annotations.
    pub service_annotations: BTreeMap<String, String>,
    /// Scheduling constraints as given (the default anti-affinity is added by `build`).
    pub scheduling: SchedulingSpec,
    /// `maxUnavailable` of the PodDisruptionBudget, when one is wanted.
    pub pdb_max_unavailable: Option<i32>,
    /// Parsed `spec.config`: sections to merge over the operator's configuration.
    pub extra_config: toml::Table,
    /// Seconds Kubernetes waits between the preStop hook and SIGKILL: the preStop delay, the
    /// registry's shutdown grace and a margin.
    pub termination_grace_period_seconds: i64,
    /// Sidecar injection settings, when injection is on.
    pub sidecar_injection: Option<SidecarInjection>,
    /// What was accepted but deserves the user's attention.
    pub warnings: Vec<Warning>,
}

/// Per-member volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    /// Requested size, a valid positive quantity.
    pub size: String,
    /// StorageClass; `None` uses the cluster default.
    pub storage_class_name: Option<String>,
}

/// The registry's ports (gRPC and cluster derived from HTTP as the registry does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// HTTP.
    pub http: i32,
    /// gRPC = HTTP + 1000.
    pub grpc: i32,
    /// Cluster (member to member) = HTTP + 1001.
    pub cluster: i32,
}

/// Where the auth credentials are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// Secret in the cluster's namespace.
    pub secret_name: String,
    /// Its keys.
    pub keys: AuthSecretKeys,
}

/// TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// Mutual TLS on the cluster port.
    pub cluster: bool,
    /// TLS on the HTTP and gRPC SDK ports.
    pub client_facing: bool,
    /// Where the members' certificate comes from.
    pub source: TlsSource,
}

/// Where the members' certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// The operator makes `<name>-tls` from its CA in `<name>-tls-ca`.
    Managed,
    /// A Secret someone else keeps current (cert-manager's layout).
    Secret(String),
}

impl Tls {
    /// Whether the operator makes and renews the certificate.
    pub fn is_managed(&self) -> bool {
        self.source == TlsSource::Managed
    }
}

/// DNS interface settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    /// Port on the Services.
    pub service_port: i32,
    /// Port in the container.
    pub container_port: i32,
    /// Zone served, without a trailing dot.
    pub zone: String,
    /// DNS over TLS, when `spec.dns.tlsPort` is set.
    pub tls: Option<DnsTls>,
}

/// DNS-over-TLS ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsTls {
    /// Port on the Services.
    pub service_port: i32,
    /// Port in the container.
    pub container_port: i32,
}

/// Sidecar injection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SidecarInjection {
    /// Sidecar image.
    pub image: String,
    /// Its pull policy.
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// Its resources.
    pub resources: Option<ResourceRequirements>,
}

impl ValidatedCluster {
    /// Name of the headless Service that gives members their peer DNS names.
    pub fn headless_service_name(&self) -> String {
        format!("{}-headless", self.name)
    }

    /// Name of the client Service.
    pub fn client_service_name(&self) -> String {
        self.name.clone()
    }

    /// Fully qualified name of the client Service: what clients (sidecars, the projection)
    /// dial, and the name the members' certificate carries for them.
    pub fn client_service_host(&self) -> String {
        format!("{}.{}.svc.{}", self.client_service_name(), self.namespace, self.cluster_domain)
    }

    /// Name of the ConfigMap holding the registry configuration.
    pub fn config_map_name(&self) -> String {
        format!("{}-config", self.name)
    }

    /// Fully qualified name of the headless Service: members resolve it to find each other
    /// (`--peer-dns`), and member `n` is `<name>-n.<this>`.
    pub fn peer_dns(&self) -> String {
        format!("{}.{}.svc.{}", self.headless_service_name(), self.namespace, self.cluster_domain)
    }

    /// Name of the Secret holding the members' certificate, key and CA, when TLS is on: the
    /// named one, or `<name>-tls` which the operator makes.
    pub fn tls_secret_name(&self) -> Option<String> {
        self.tls.as_ref().map(|tls| match &tls.source {
            TlsSource::Managed => super::tls::members_secret_name(&self.name),
            TlsSource::Secret(name) => name.clone(),
        })
    }

    /// Members needed for a Raft quorum.
    pub fn quorum(&self) -> i32 {
        self.replicas / 2 + 1
    }
}

/// Accepted, but worth telling the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// An even member count tolerates no more failures than one member fewer.
    EvenReplicas {
        /// The requested count.
        replicas: i32,
    },
    /// DNS (UDP) beside TCP ports on a LoadBalancer Service needs mixed-protocol support.
    DnsOnLoadBalancer,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EvenReplicas { replicas } => write!(
                f,
                "spec.replicas is {replicas}: an even number of members tolerates no more failures than {} \
                 (quorum is {}); prefer an odd number",
                replicas - 1,
                replicas / 2 + 1
            ),
            Self::DnsOnLoadBalancer => f.write_str(
                "spec.dns.enabled with spec.service.type LoadBalancer puts UDP and TCP ports on one load \
                 balancer, which needs Kubernetes 1.26+ and a provider that supports mixed protocols",
            ),
        }
    }
}

/// Why a `NacosCluster` was refused. The variant name is the stable reason used in conditions
/// and events ([`Error::reason`]).
#[derive(Debug, Snafu, strum::IntoStaticStr)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    /// Metadata the API server always sets is missing (not an object read from the API server).
    #[snafu(display("the NacosCluster has no metadata.{field}"))]
    MissingMetadata {
        /// The absent field.
        field: &'static str,
    },
    /// The name cannot name the StatefulSet and Services.
    #[snafu(display(
        "metadata.name {name:?} cannot name the cluster's Services and pods: it must be at most {MAX_NAME_LEN} \
         characters of a-z, 0-9 and '-', start with a letter and end with a letter or digit"
    ))]
    InvalidName {
        /// The refused name.
        name: String,
    },
    /// Fewer than one member.
    #[snafu(display("spec.replicas is {replicas}; a cluster needs at least 1 member"))]
    InvalidReplicas {
        /// The refused count.
        replicas: i32,
    },
    /// The volume size is no positive quantity.
    #[snafu(display("spec.storage.size {size:?} is not a positive Kubernetes quantity such as 10Gi: {reason}"))]
    InvalidStorageSize {
        /// The refused size.
        size: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP port leaves no room for the derived ports.
    #[snafu(display(
        "spec.ports.http {port} is out of range: it must be 1..=64534 so that gRPC (+1000) and cluster (+1001) \
         ports exist"
    ))]
    InvalidHttpPort {
        /// The refused port.
        port: i32,
    },
    /// A DNS port outside 1..=65535.
    #[snafu(display("spec.dns.{field} {port} is out of range 1..=65535"))]
    InvalidDnsPort {
        /// `port`, `containerPort`, `tlsPort` or `tlsContainerPort`.
        field: &'static str,
        /// The refused port.
        port: i32,
    },
    /// A DNS port is taken by another listener (container ports) or another TCP port of the
    /// Services.
    #[snafu(display("spec.dns.{field} {port} is already the registry's {taken_by} port"))]
    DnsPortClash {
        /// `containerPort`, `tlsPort` or `tlsContainerPort`.
        field: &'static str,
        /// The refused port.
        port: i32,
        /// Which listener has it.
        taken_by: &'static str,
    },
    /// DNS over TLS asked for without DNS.
    #[snafu(display(
        "spec.dns.tlsPort is set but spec.dns.enabled is false: DNS over TLS answers the DNS zone, so enable DNS \
         or remove tlsPort"
    ))]
    DnsTlsWithoutDns,
    /// DNS over TLS asked for without a client-facing certificate for it.
    #[snafu(display(
        "spec.dns.tlsPort needs spec.tls with clientFacing: true: members answer DNS over TLS with their \
         client-facing certificate"
    ))]
    DnsTlsWithoutClientTls,
    /// The DNS zone is no domain name.
    #[snafu(display("spec.dns.zone {zone:?} is not a lowercase DNS domain name such as nacos.local"))]
    InvalidDnsZone {
        /// The refused zone.
        zone: String,
    },
    /// The projection is on but selects nothing.
    #[snafu(display("spec.serviceProjection.enabled is true but spec.serviceProjection.selectors is empty"))]
    EmptyProjectionSelectors,
    /// A projection selector field is empty.
    #[snafu(display("spec.serviceProjection.selectors[{index}].{field} is empty"))]
    EmptyProjectionSelector {
        /// Which selector.
        index: usize,
        /// `namespace`, `group` or `service`.
        field: &'static str,
    },
    /// Auth is on but no Secret is named.
    #[snafu(display(
        "spec.auth.enabled is true but spec.auth.secretName is not set: name the Secret that holds the auth \
         token (secrets never go into the NacosCluster itself)"
    ))]
    MissingAuthSecretName,
    /// The Secret name is no valid object name.
    #[snafu(display("spec.auth.secretName {name:?} is not a valid Secret name (lowercase DNS subdomain)"))]
    InvalidAuthSecretName {
        /// The refused name.
        name: String,
    },
    /// TLS is set with neither the cluster nor the client-facing ports using it.
    #[snafu(display(
        "spec.tls is set but both spec.tls.cluster and spec.tls.clientFacing are false; remove spec.tls for \
         plain ports"
    ))]
    TlsNothingEnabled,
    /// The TLS Secret name is no valid object name.
    #[snafu(display("spec.tls.secretName {name:?} is not a valid Secret name (lowercase DNS subdomain)"))]
    InvalidTlsSecretName {
        /// The refused name.
        name: String,
    },
    /// A Secret key with characters Secrets do not allow.
    #[snafu(display(
        "spec.auth.secretKeys.{field} {key:?} is not a valid Secret key (letters, digits, '-', '_', '.')"
    ))]
    InvalidAuthSecretKey {
        /// Which key setting.
        field: &'static str,
        /// The refused key.
        key: String,
    },
    /// An image reference that is empty or contains whitespace.
    #[snafu(display("{field} {image:?} is not an image reference"))]
    InvalidImage {
        /// `spec.image` or `spec.sidecarInjection.image`.
        field: &'static str,
        /// The refused value.
        image: String,
    },
    /// An empty log filter, or one with whitespace.
    #[snafu(display("spec.logLevel {level:?} is not a log filter such as info or registry_core=debug,info"))]
    InvalidLogLevel {
        /// The refused value.
        level: String,
    },
    /// `spec.config` is not TOML.
    #[snafu(display("spec.config is not valid TOML"))]
    InvalidConfig {
        /// The parser's complaint, with line and column.
        source: Box<toml::de::Error>,
    },
    /// `spec.config` has a top-level key that is not a `[section]`.
    #[snafu(display("spec.config key {key:?} is not a [section]; every registry setting lives in a section"))]
    ConfigNotSection {
        /// The top-level key.
        key: String,
    },
    /// `spec.config` sets a key the operator owns.
    #[snafu(display("spec.config sets {key}, which the operator sets itself (use the NacosCluster field instead)"))]
    ReservedConfigKey {
        /// The dotted key.
        key: String,
    },
    /// `spec.config` has a value of the wrong type for a setting the operator reads.
    #[snafu(display("spec.config {key} must be {expected}"))]
    InvalidConfigValue {
        /// The dotted key.
        key: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// The disruption budget would allow losing quorum.
    #[snafu(display(
        "spec.podDisruptionBudget.maxUnavailable {max_unavailable} would let a drain take {replicas} members below \
         their quorum of {quorum}; at most {} may be unavailable",
        replicas - quorum
    ))]
    UnsafeMaxUnavailable {
        /// The refused value.
        max_unavailable: i32,
        /// Member count.
        replicas: i32,
        /// Quorum of that count.
        quorum: i32,
    },
}

impl Error {
    /// Stable CamelCase reason (the variant name) for conditions, events and metrics.
    pub fn reason(&self) -> &'static str {
        self.into()
    }
}

/// Checks `cluster` and applies the defaults that depend on `env`.
pub fn validate(cluster: &NacosCluster, env: &OperatorEnvironment) -> Result<ValidatedCluster, Error> {
    let meta = &cluster.metadata;
    let name = meta.name.clone().context(MissingMetadataSnafu { field: "name" })?;
    let namespace = meta.namespace.clone().context(MissingMetadataSnafu { field: "namespace" })?;
    // Needs the uid, which only objects stored by the API server have.
    let owner_reference = cluster.controller_owner_ref(&()).context(MissingMetadataSnafu { field: "uid" })?;
    ensure!(is_dns1035_label(&name, MAX_NAME_LEN), InvalidNameSnafu { name });

    let spec = &cluster.spec;
    let mut warnings = Vec::new();

    let replicas = spec.replicas;
    ensure!(replicas >= 1, InvalidReplicasSnafu { replicas });
    if replicas % 2 == 0 {
        warnings.push(Warning::EvenReplicas { replicas });
    }

    let image = spec.image.clone().unwrap_or_else(|| env.registry_image.clone());
    ensure!(is_image(&image), InvalidImageSnafu { field: "spec.image", image });

    let storage = validate_storage(&spec.storage.size)?;
    let storage = Storage { size: storage, storage_class_name: spec.storage.storage_class_name.clone() };

    let http = spec.ports.http;
    ensure!((1..=i32::from(port_layout::MAX_HTTP)).contains(&http), InvalidHttpPortSnafu { port: http });
    let ports = Ports {
        http,
        grpc: http + i32::from(port_layout::GRPC_OFFSET),
        cluster: http + i32::from(port_layout::CLUSTER_OFFSET),
    };

    let log_level = spec.log_level.clone();
    ensure!(
        !log_level.is_empty() && !log_level.contains(char::is_whitespace),
        InvalidLogLevelSnafu { level: log_level }
    );

    let auth = if spec.auth.enabled {
        let secret_name = spec.auth.secret_name.clone().context(MissingAuthSecretNameSnafu)?;
        ensure!(!secret_name.is_empty(), MissingAuthSecretNameSnafu);
        ensure!(is_dns1123_subdomain(&secret_name), InvalidAuthSecretNameSnafu { name: secret_name });
        let keys = spec.auth.secret_keys.clone();
        for (field, key) in
            [("token", &keys.token), ("identityKey", &keys.identity_key), ("identityValue", &keys.identity_value)]
        {
            ensure!(is_secret_key(key), InvalidAuthSecretKeySnafu { field, key: key.clone() });
        }
        Some(Auth { secret_name, keys })
    } else {
        None
    };

    let tls = spec.tls.as_ref().map(validate_tls).transpose()?;
    let dns = if spec.dns.enabled {
        Some(validate_dns(&spec.dns, ports, tls.as_ref())?)
    } else {
        ensure!(spec.dns.tls_port.is_none(), DnsTlsWithoutDnsSnafu);
        None
    };
    if dns.is_some() && spec.service.type_ == ServiceType::LoadBalancer {
        warnings.push(Warning::DnsOnLoadBalancer);
    }

    let service_projection =
        if spec.service_projection.enabled { Some(validate_projection(&spec.service_projection)?) } else { None };

    let pdb_max_unavailable = if spec.pod_disruption_budget.enabled {
        let max_unavailable = spec.pod_disruption_budget.max_unavailable;
        let quorum = replicas / 2 + 1;
        // With 1 or 2 members no budget keeps a quorum through a drain short of blocking drains
        // forever; from 3 on, refuse a budget that would allow losing it.
        ensure!(
            max_unavailable >= 1 && (replicas < 3 || replicas - max_unavailable >= quorum),
            UnsafeMaxUnavailableSnafu { max_unavailable, replicas, quorum }
        );
        Some(max_unavailable)
    } else {
        None
    };

    let extra_config = parse_extra_config(spec.config.as_deref())?;
    // The members' TLS settings come from environment variables, which win over the file.
    ensure!(tls.is_none() || !extra_config.contains_key("tls"), ReservedConfigKeySnafu { key: "tls" });
    let shutdown_grace_ms = shutdown_grace_ms(&extra_config)?;

    let sidecar_injection = if spec.sidecar_injection.enabled {
        let sidecar = &spec.sidecar_injection;
        let image = sidecar.image.clone().unwrap_or_else(|| env.sidecar_image.clone());
        ensure!(is_image(&image), InvalidImageSnafu { field: "spec.sidecarInjection.image", image });
        Some(SidecarInjection {
            image,
            image_pull_policy: sidecar.image_pull_policy,
            resources: sidecar.resources.clone(),
        })
    } else {
        None
    };

    Ok(ValidatedCluster {
        name,
        namespace,
        owner_reference,
        cluster_domain: env.cluster_domain.clone(),
        replicas,
        image,
        image_pull_policy: spec.image_pull_policy,
        image_pull_secrets: spec.image_pull_secrets.clone(),
        resources: spec.resources.clone(),
        storage,
        ports,
        log_level,
        auth,
        dns,
        tls,
        service_projection,
        service_type: spec.service.type_,
        service_annotations: spec.service.annotations.clone(),
        scheduling: spec.scheduling.clone(),
        pdb_max_unavailable,
        extra_config,
        termination_grace_period_seconds: termination_grace_period_seconds(shutdown_grace_ms),
        sidecar_injection,
        warnings,
    })
}

/// Seconds the preStop hook waits so endpoints drop the pod before the registry stops.
pub const PRE_STOP_DELAY_SECONDS: i64 = 5;

fn termination_grace_period_seconds(shutdown_grace_ms: u64) -> i64 {
    let shutdown_seconds = i64::try_from(shutdown_grace_ms.div_ceil(1000)).unwrap_or(i64::MAX / 2);
    PRE_STOP_DELAY_SECONDS + shutdown_seconds + 15
}

fn validate_storage(size: &str) -> Result<String, Error> {
    match quantity::parse(size) {
        Ok(q) if q.is_positive() => Ok(size.to_owned()),
        Ok(_) => InvalidStorageSizeSnafu { size, reason: "it must be greater than zero" }.fail(),
        Err(e) => InvalidStorageSizeSnafu { size, reason: e.to_string() }.fail(),
    }
}

fn validate_dns(spec: &crate::crd::DnsSpec, ports: Ports, tls: Option<&Tls>) -> Result<Dns, Error> {
    for (field, port) in [("port", spec.port), ("containerPort", spec.container_port)] {
        ensure!((1..=65535).contains(&port), InvalidDnsPortSnafu { field, port });
    }
    let registry_ports = [("HTTP", ports.http), ("gRPC", ports.grpc), ("cluster", ports.cluster)];
    for (taken_by, port) in registry_ports {
        ensure!(spec.container_port != port, DnsPortClashSnafu { field: "containerPort", port, taken_by });
    }
    let zone = spec.zone.strip_suffix('.').unwrap_or(&spec.zone);
    ensure!(is_dns1123_subdomain(zone), InvalidDnsZoneSnafu { zone: spec.zone.clone() });
    let tls = spec.tls_port.map(|tls_port| validate_dns_tls(spec, tls_port, ports, tls)).transpose()?;
    Ok(Dns { service_port: spec.port, container_port: spec.container_port, zone: zone.to_owned(), tls })
}

/// DNS over TLS: its own TCP port in the container and on the Services, clear of every other
/// TCP port there (DNS over TCP shares the plain DNS port), and a client-facing certificate
/// to serve it with (the registry refuses to start otherwise).
fn validate_dns_tls(
    spec: &crate::crd::DnsSpec,
    tls_port: i32,
    ports: Ports,
    tls: Option<&Tls>,
) -> Result<DnsTls, Error> {
    ensure!(tls.is_some_and(|tls| tls.client_facing), DnsTlsWithoutClientTlsSnafu);
    for (field, port) in [("tlsPort", tls_port), ("tlsContainerPort", spec.tls_container_port)] {
        ensure!((1..=65535).contains(&port), InvalidDnsPortSnafu { field, port });
    }
    let registry_ports = [("HTTP", ports.http), ("gRPC", ports.grpc), ("cluster", ports.cluster)];
    for (field, own, dns) in
        [("tlsPort", tls_port, spec.port), ("tlsContainerPort", spec.tls_container_port, spec.container_port)]
    {
        for (taken_by, port) in registry_ports.into_iter().chain([("DNS", dns)]) {
            ensure!(own != port, DnsPortClashSnafu { field, port, taken_by });
        }
    }
    Ok(DnsTls { service_port: tls_port, container_port: spec.tls_container_port })
}

fn validate_tls(spec: &crate::crd::TlsSpec) -> Result<Tls, Error> {
    ensure!(spec.cluster || spec.client_facing, TlsNothingEnabledSnafu);
    let source = match spec.secret_name.as_deref() {
        None => TlsSource::Managed,
        Some(name) => {
            ensure!(is_dns1123_subdomain(name), InvalidTlsSecretNameSnafu { name });
            TlsSource::Secret(name.to_owned())
        }
    };
    Ok(Tls { cluster: spec.cluster, client_facing: spec.client_facing, source })
}

fn validate_projection(spec: &crate::crd::ServiceProjectionSpec) -> Result<Vec<ServiceSelector>, Error> {
    ensure!(!spec.selectors.is_empty(), EmptyProjectionSelectorsSnafu);
    for (index, selector) in spec.selectors.iter().enumerate() {
        for (field, value) in
            [("namespace", &selector.namespace), ("group", &selector.group), ("service", &selector.service)]
        {
            ensure!(!value.trim().is_empty(), EmptyProjectionSelectorSnafu { index, field });
        }
    }
    Ok(spec.selectors.clone())
}

fn parse_extra_config(text: Option<&str>) -> Result<toml::Table, Error> {
    let Some(text) = text else {
        return Ok(toml::Table::new());
    };
    let table: toml::Table = toml::from_str(text).map_err(Box::new).context(InvalidConfigSnafu)?;
    for (key, value) in &table {
        ensure!(value.is_table(), ConfigNotSectionSnafu { key: key.clone() });
    }
    if let Some(server) = table.get("server").and_then(toml::Value::as_table) {
        for key in RESERVED_SERVER_KEYS {
            ensure!(!server.contains_key(key), ReservedConfigKeySnafu { key: format!("server.{key}") });
        }
    }
    Ok(table)
}

fn shutdown_grace_ms(extra_config: &toml::Table) -> Result<u64, Error> {
    let value = extra_config.get("server").and_then(|server| server.get("shutdown_grace_ms"));
    match value {
        None => Ok(DEFAULT_SHUTDOWN_GRACE_MS),
        Some(value) => value.as_integer().and_then(|ms| u64::try_from(ms).ok()).filter(|ms| *ms <= 3_600_000).context(
            InvalidConfigValueSnafu {
                key: "server.shutdown_grace_ms",
                expected: "an integer number of milliseconds from 0 to 3600000",
            },
        ),
    }
}

#[cfg(test)]
mod tests;
