//! The injection decision, pure: an AdmissionReview in, an AdmissionResponse (allowed, denied,
//! or allowed with an RFC 6902 patch adding the sidecar) out. No IO happens here; the HTTP
//! handler in [`super::server`] only parses the body, looks up the `NacosCluster` the pod names
//! and passes it in.
//!
//! ```text
//!  body ──► parse_review ──► decide ──► Respond(response)                   (skip or deny)
//!                                 └──► Lookup(injection) ─► [handler: GET NacosCluster]
//!                                                              └─► complete ─► response + patch
//! ```
//!
//! The pod's annotations are the whole interface for application owners; they are listed in
//! [`annotation`] and documented in docs/operator.md.

use std::collections::BTreeMap;
use std::fmt;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, DownwardAPIVolumeFile, DownwardAPIVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, Lifecycle, LifecycleHandler, ObjectFieldSelector, Pod, SecretKeySelector, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use registry_proto::contract::sidecar::{self, env};
use registry_proto::contract::tls::sidecar_env as tls_env;
use registry_proto::probe::spec::{ANNOTATION_FORMS, ProbeSpec};
use snafu::{ResultExt, Snafu};

use crate::controller::OperatorEnvironment;
use crate::controller::validate::{ValidatedCluster, validate};
use crate::crd::NacosCluster;

/// Pod annotations read by the webhook (all under `nacos.rs/`).
pub mod annotation {
    /// `"true"` asks for the sidecar; any other value, or none, leaves the pod alone.
    pub const INJECT: &str = "nacos.rs/inject";
    /// The `NacosCluster` to register with: `NAME` (in the pod's namespace) or `NAMESPACE/NAME`.
    /// Optional when the operator has a default cluster.
    pub const CLUSTER: &str = "nacos.rs/cluster";
    /// Service name the pod registers under (required).
    pub const SERVICE: &str = "nacos.rs/service";
    /// Port registered for the instance: a number or the name of a container port (required).
    pub const PORT: &str = "nacos.rs/port";
    /// Health probe deciding whether the instance is healthy: `tcp` (default, connect to the
    /// port), `tcp:PORT`, `http:/PATH` (GET on the port), `http:PORT/PATH`, `mysql` (Nacos'
    /// MySQL master check on the port), `mysql:PORT`, or `none`; the grammar is
    /// `registry_proto::probe::spec`, shared with the sidecar.
    pub const PROBE: &str = "nacos.rs/probe";
    /// The Secret (in the pod's namespace) holding the `mysql` probe's login under the keys
    /// `username` and `password`; required with `mysql`, refused with any other probe. The
    /// login reaches the sidecar only as `secretKeyRef` env, never in an annotation.
    pub const PROBE_MYSQL_SECRET: &str = "nacos.rs/probe-mysql-secret";
    /// Nacos group of the service (optional; the sidecar's default is `DEFAULT_GROUP`).
    pub const GROUP: &str = "nacos.rs/group";
    /// Nacos namespace (tenant) of the service, not the Kubernetes namespace (optional; the
    /// sidecar's default is the public namespace).
    pub const NAMESPACE: &str = "nacos.rs/namespace";
    /// Set by the webhook, not by owners: the cluster CA (PEM) the sidecar trusts when the
    /// registry's client-facing ports use TLS. An annotation because the CA's Secret lives in
    /// the cluster's namespace, which the pod cannot mount from; the downward API turns it into
    /// the sidecar's CA file. The CA is public; it changes only when its Secret is replaced,
    /// and pods injected before then need a restart.
    pub const TLS_CA: &str = "nacos.rs/tls-ca";
}

/// Name of the injected container; a pod that has it is never injected again, so a
/// reinvocation or an update of an injected pod's template is a no-op.
pub const SIDECAR_CONTAINER: &str = "nacos-sidecar";

/// The downward-API volume holding the pod's labels, mounted into the sidecar only: they become
/// its upstream connection labels, so label gray configs reach this pod.
const PODINFO_VOLUME: &str = "nacos-sidecar-podinfo";
/// Where the sidecar sees that volume, and the labels file in it.
const PODINFO_DIR: &str = "/etc/nacos-sidecar/podinfo";
const LABELS_FILE: &str = "labels";
/// The CA file in that volume, from [`annotation::TLS_CA`].
const TLS_CA_FILE: &str = "ca.crt";

/// Why an HTTP body is not an AdmissionReview the webhook can answer. Answered with HTTP 400:
/// there is no request uid to put in a response.
#[derive(Debug, Snafu)]
pub enum BadReview {
    /// Not JSON, or not shaped like an AdmissionReview.
    #[snafu(display("the body is not an AdmissionReview: {source}"))]
    Parse {
        /// Cause.
        source: serde_json::Error,
    },
    /// An AdmissionReview without a `request`.
    #[snafu(display("the AdmissionReview has no request"))]
    NoRequest,
}

/// The request inside an AdmissionReview body.
pub fn parse_review(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, BadReview> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body).context(ParseSnafu)?;
    review.try_into().map_err(|_| BadReview::NoRequest)
}

/// A `NacosCluster` named by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRef {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl ClusterRef {
    /// Parses `NAME` (in `default_namespace`) or `NAMESPACE/NAME`; `None` unless both parts
    /// are DNS labels, which every namespace and `NacosCluster` name is.
    pub fn parse(value: &str, default_namespace: &str) -> Option<Self> {
        let (namespace, name) = value.trim().split_once('/').unwrap_or((default_namespace, value.trim()));
        (is_dns_label(namespace) && is_dns_label(name))
            .then(|| Self { namespace: namespace.to_owned(), name: name.to_owned() })
    }
}

impl fmt::Display for ClusterRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What the webhook knows besides the request: the operator's environment and the cluster
/// used when a pod names none.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Cluster domain and default sidecar image.
    pub environment: OperatorEnvironment,
    /// `NAMESPACE/NAME` of the `NacosCluster` for pods without `nacos.rs/cluster`.
    pub default_cluster: Option<ClusterRef>,
}

/// The outcome of [`decide`].
#[derive(Debug)]
pub enum Decision {
    /// The answer is known without looking anything up (boxed: a response is ten times the
    /// size of an injection).
    Respond(Box<AdmissionResponse>),
    /// The pod asked for the sidecar and its annotations are valid; the handler fetches
    /// `injection.cluster` and calls [`complete`].
    Lookup(Injection),
}

/// A pod that asked for the sidecar, with its annotations checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Injection {
    /// The cluster to register with.
    pub cluster: ClusterRef,
    /// What the sidecar registers and probes.
    pub app: App,
    /// Whether the pod already lists volumes (the patch appends to the list, else creates it).
    pub pod_has_volumes: bool,
}

/// The application instance the sidecar registers, from the pod's annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// Service name.
    pub service: String,
    /// Instance port.
    pub port: u16,
    /// Health probe, its ports resolved.
    pub probe: ProbeSpec,
    /// The Secret with the `mysql` probe's login (only with that probe).
    pub mysql_secret: Option<String>,
    /// Nacos group, when given.
    pub group: Option<String>,
    /// Nacos namespace, when given.
    pub nacos_namespace: Option<String>,
}

/// First step: is this a pod that asked for injection, and are its annotations usable?
///
/// Anything but a pod CREATE, a pod without `nacos.rs/inject: "true"` and an already injected
/// pod are allowed unchanged. Invalid annotations are denied with every problem listed: the
/// owner asked for the sidecar, and a pod that silently starts without it would be worse than
/// a ReplicaSet event saying why it was refused.
pub fn decide(request: &AdmissionRequest<DynamicObject>, settings: &Settings) -> Decision {
    let allow = || Decision::Respond(Box::new(AdmissionResponse::from(request)));
    if request.kind.kind != "Pod" || request.operation != Operation::Create {
        return allow();
    }
    let Some(object) = &request.object else {
        return deny(request, "the request carries no pod");
    };
    let pod: Pod = match serde_json::to_value(object).and_then(serde_json::from_value) {
        Ok(pod) => pod,
        Err(error) => return deny(request, format!("the object is not a valid Pod: {error}")),
    };
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    if annotations.get(annotation::INJECT).map(String::as_str) != Some("true") || is_injected(&pod) {
        return allow();
    }
    let namespace = request.namespace.clone().or_else(|| pod.metadata.namespace.clone()).unwrap_or_default();
    match read_annotations(&pod, &annotations, &namespace, settings) {
        Ok(injection) => Decision::Lookup(injection),
        Err(problems) => deny(request, format!("cannot inject the nacos sidecar: {}", problems.join("; "))),
    }
}

/// Between the steps: the Secret whose `ca.crt` the sidecar must trust, when `cluster` is valid
/// and its client-facing ports use TLS (the handler reads it and passes it to [`complete`]).
pub fn trust_secret(cluster: &NacosCluster, settings: &Settings) -> Option<String> {
    validate(cluster, &settings.environment).ok().as_ref().and_then(ca_secret)
}

/// The one decision behind [`trust_secret`] and [`complete`]: the Secret holding the CA of a
/// cluster whose SDK ports use TLS.
fn ca_secret(cluster: &ValidatedCluster) -> Option<String> {
    cluster.tls.as_ref().filter(|tls| tls.client_facing)?;
    cluster.tls_secret_name()
}

/// Second step: the response once the `NacosCluster` was looked up (`None`: it does not exist),
/// with the `ca.crt` of its [`trust_secret`] when it has one (`None`: absent or no such key).
pub fn complete(
    request: &AdmissionRequest<DynamicObject>,
    injection: &Injection,
    cluster: Option<&NacosCluster>,
    tls_ca: Option<&[u8]>,
    settings: &Settings,
) -> AdmissionResponse {
    let mut response = AdmissionResponse::from(request);
    let Some(cluster) = cluster else {
        return response.deny(format!(
            "cannot inject the nacos sidecar: NacosCluster {} not found (set the {} annotation to NAME or \
             NAMESPACE/NAME)",
            injection.cluster,
            annotation::CLUSTER
        ));
    };
    let validated = match validate(cluster, &settings.environment) {
        Ok(validated) => validated,
        Err(error) => {
            return response.deny(format!(
                "cannot inject the nacos sidecar: NacosCluster {} is invalid: {}",
                injection.cluster,
                snafu::Report::from_error(error)
            ));
        }
    };
    let Some(sidecar) = &validated.sidecar_injection else {
        // Disabling injection on a cluster means "start pods without the sidecar", not "block
        // them"; the warning reaches whoever created the pod directly.
        response.warnings = Some(vec![format!(
            "nacos sidecar not injected: sidecarInjection is disabled on NacosCluster {}",
            injection.cluster
        )]);
        return response;
    };
    let registry = format!("{}:{}", validated.client_service_host(), validated.ports.http);
    // The sidecar trusts the cluster CA when the registry's SDK ports speak TLS; a pod that
    // would start without a usable one could never connect, so it is refused until it exists.
    let tls_ca = match ca_secret(&validated) {
        None => None,
        Some(secret) => {
            let usable = tls_ca.filter(|pem| registry_proto::tls::anchors_in(pem).is_ok());
            match usable.and_then(|pem| std::str::from_utf8(pem).ok()) {
                Some(pem) => Some(pem),
                None => return response.deny(not_ready_ca(&secret)),
            }
        }
    };
    let container = Container {
        image: Some(sidecar.image.clone()),
        image_pull_policy: sidecar.image_pull_policy.map(|p| p.as_str().to_owned()),
        resources: sidecar.resources.clone(),
        ..sidecar_container(&injection.app, &registry, tls_ca.is_some())
    };
    let value = match serde_json::to_value(&container) {
        Ok(value) => value,
        Err(error) => return response.deny(format!("cannot serialize the sidecar: {error}")),
    };
    let podinfo = podinfo_volume(tls_ca.is_some());
    let (volume_path, volume) = if injection.pod_has_volumes {
        (PointerBuf::from_tokens(["spec", "volumes", "-"]), serde_json::to_value(podinfo))
    } else {
        (PointerBuf::from_tokens(["spec", "volumes"]), serde_json::to_value([podinfo]))
    };
    let volume = match volume {
        Ok(volume) => volume,
        Err(error) => return response.deny(format!("cannot serialize the sidecar's volume: {error}")),
    };
    let mut operations = Vec::with_capacity(3);
    // `decide` only passes pods with the inject annotation, so the annotations map exists.
    operations.extend(tls_ca.map(|pem| {
        PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["metadata", "annotations", annotation::TLS_CA]),
            value: serde_json::Value::String(pem.to_owned()),
        })
    }));
    operations.push(PatchOperation::Add(AddOperation { path: volume_path, value: volume }));
    operations
        .push(PatchOperation::Add(AddOperation { path: PointerBuf::from_tokens(["spec", "containers", "-"]), value }));
    let patch = Patch(operations);
    response
        .with_patch(patch)
        .unwrap_or_else(|error| AdmissionResponse::from(request).deny(format!("cannot serialize the patch: {error}")))
}

/// Why a pod is refused while its cluster's CA cannot be read.
fn not_ready_ca(secret: &str) -> String {
    format!(
        "cannot inject the nacos sidecar: the registry's client-facing ports use TLS and the Secret {secret} has \
         no usable PEM ca.crt yet (the operator or cert-manager writes it; the pod's controller retries)"
    )
}

/// The sidecar container without image settings: env for the registry address, the instance
/// and the downward API, the CA file when `tls` (the registry's SDK ports use TLS), and the
/// preStop hook.
fn sidecar_container(app: &App, registry: &str, tls: bool) -> Container {
    let mut vars = vec![
        value(env::SERVER_ADDR, registry),
        value(env::SERVICE, &app.service),
        value(env::PORT, &app.port.to_string()),
    ];
    vars.extend(app.group.as_deref().map(|group| value(env::GROUP, group)));
    vars.extend(app.nacos_namespace.as_deref().map(|ns| value(env::NAMESPACE, ns)));
    vars.extend(app.probe.env().into_iter().map(|(name, probe)| value(name, &probe)));
    if let Some(secret) = &app.mysql_secret {
        vars.push(secret_key(env::MYSQL_USER, secret, sidecar::MYSQL_SECRET_USER_KEY));
        vars.push(secret_key(env::MYSQL_PASSWORD, secret, sidecar::MYSQL_SECRET_PASSWORD_KEY));
    }
    vars.push(value(env::ADMIN_PORT, &sidecar::ADMIN_PORT.to_string()));
    vars.push(value(env::LABELS_FILE, &format!("{PODINFO_DIR}/{LABELS_FILE}")));
    if tls {
        vars.push(value(tls_env::CA, &format!("{PODINFO_DIR}/{TLS_CA_FILE}")));
    }
    for (name, field) in [
        (env::POD_NAME, "metadata.name"),
        (env::POD_NAMESPACE, "metadata.namespace"),
        (env::POD_IP, "status.podIP"),
        (env::NODE_NAME, "spec.nodeName"),
    ] {
        vars.push(EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector { field_path: field.into(), ..ObjectFieldSelector::default() }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        });
    }
    Container {
        name: SIDECAR_CONTAINER.into(),
        env: Some(vars),
        volume_mounts: Some(vec![VolumeMount {
            name: PODINFO_VOLUME.into(),
            mount_path: PODINFO_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                http_get: Some(HTTPGetAction {
                    path: Some(sidecar::DRAIN_PATH.into()),
                    port: IntOrString::Int(sidecar::ADMIN_PORT.into()),
                    ..HTTPGetAction::default()
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Capabilities::default() }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

/// The pod's labels as a downward-API file (`key="value"` lines), which the kubelet keeps current;
/// the sidecar reads it once, at start. With `tls`, also the cluster CA from
/// [`annotation::TLS_CA`].
fn podinfo_volume(tls: bool) -> Volume {
    let file = |path: &str, field_path: String| DownwardAPIVolumeFile {
        path: path.into(),
        field_ref: Some(ObjectFieldSelector { field_path, ..ObjectFieldSelector::default() }),
        ..DownwardAPIVolumeFile::default()
    };
    let mut items = vec![file(LABELS_FILE, "metadata.labels".into())];
    if tls {
        items.push(file(TLS_CA_FILE, format!("metadata.annotations['{}']", annotation::TLS_CA)));
    }
    Volume {
        name: PODINFO_VOLUME.into(),
        downward_api: Some(DownwardAPIVolumeSource { items: Some(items), ..DownwardAPIVolumeSource::default() }),
        ..Volume::default()
    }
}

fn value(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), ..EnvVar::default() }
}

/// A variable read from `key` of `secret`; not optional, so a missing Secret or key keeps the
/// pod from starting with a probe that could never log in (the kubelet's event names it).
fn secret_key(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector { name: secret.into(), key: key.into(), optional: Some(false) }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn deny(request: &AdmissionRequest<DynamicObject>, message: impl ToString) -> Decision {
    Decision::Respond(Box::new(AdmissionResponse::from(request).deny(message)))
}

fn is_injected(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(|spec| {
        spec.containers.iter().chain(spec.init_containers.iter().flatten()).any(|c| c.name == SIDECAR_CONTAINER)
    })
}

/// Reads every annotation, collecting all problems rather than stopping at the first, so one
/// denied pod tells the owner everything to fix.
fn read_annotations(
    pod: &Pod,
    annotations: &BTreeMap<String, String>,
    namespace: &str,
    settings: &Settings,
) -> Result<Injection, Vec<String>> {
    let mut problems = Vec::new();
    let get = |key: &str| annotations.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());

    let cluster = match get(annotation::CLUSTER) {
        Some(value) => ClusterRef::parse(value, namespace).or_else(|| {
            problems.push(format!("{}: {value:?} is not NAME or NAMESPACE/NAME", annotation::CLUSTER));
            None
        }),
        None => settings.default_cluster.clone().or_else(|| {
            problems.push(format!("{} is missing and the operator has no default cluster", annotation::CLUSTER));
            None
        }),
    };
    let service = match get(annotation::SERVICE) {
        Some(service) if service.chars().any(char::is_whitespace) => {
            problems.push(format!("{}: {service:?} contains whitespace", annotation::SERVICE));
            None
        }
        Some(service) => Some(service.to_owned()),
        None => {
            problems.push(format!("{} is missing (the service name to register)", annotation::SERVICE));
            None
        }
    };
    let port = match get(annotation::PORT) {
        Some(port) => resolve_port(pod, port).or_else(|| {
            problems.push(format!("{}: {port:?} is neither a port number nor a container port name", annotation::PORT));
            None
        }),
        None => {
            problems.push(format!("{} is missing (the port to register)", annotation::PORT));
            None
        }
    };
    let probe = port.and_then(|port| {
        parse_probe(pod, get(annotation::PROBE).unwrap_or("tcp"), port).or_else(|| {
            problems.push(format!(
                "{}: {:?} is not {ANNOTATION_FORMS} (a named port must be a container port of the pod)",
                annotation::PROBE,
                get(annotation::PROBE).unwrap_or_default()
            ));
            None
        })
    });
    let mysql_secret = match (&probe, get(annotation::PROBE_MYSQL_SECRET)) {
        (Some(ProbeSpec::Mysql { .. }), None) => {
            problems.push(format!(
                "{}: mysql needs {} naming a Secret in the pod's namespace with the keys {} and {} (credentials                  are never read from annotations)",
                annotation::PROBE,
                annotation::PROBE_MYSQL_SECRET,
                sidecar::MYSQL_SECRET_USER_KEY,
                sidecar::MYSQL_SECRET_PASSWORD_KEY
            ));
            None
        }
        (Some(ProbeSpec::Mysql { .. }), Some(secret)) if !is_dns_subdomain(secret) => {
            problems.push(format!("{}: {secret:?} is not a Secret name", annotation::PROBE_MYSQL_SECRET));
            None
        }
        (Some(ProbeSpec::Mysql { .. }), Some(secret)) => Some(secret.to_owned()),
        (Some(_), Some(_)) => {
            problems.push(format!("{} is only used with the mysql probe", annotation::PROBE_MYSQL_SECRET));
            None
        }
        (None, _) | (Some(_), None) => None,
    };
    match (cluster, service, port, probe) {
        (Some(cluster), Some(service), Some(port), Some(probe)) if problems.is_empty() => Ok(Injection {
            cluster,
            pod_has_volumes: pod.spec.as_ref().is_some_and(|spec| spec.volumes.is_some()),
            app: App {
                service,
                port,
                probe,
                mysql_secret,
                group: get(annotation::GROUP).map(str::to_owned),
                nacos_namespace: get(annotation::NAMESPACE).map(str::to_owned),
            },
        }),
        _ => Err(problems),
    }
}

/// A port number, or the number of the application container port with that name.
fn resolve_port(pod: &Pod, value: &str) -> Option<u16> {
    match value.parse::<u16>() {
        Ok(number) => (number != 0).then_some(number),
        Err(_) => named_port(pod, value),
    }
}

/// The number of the application container port named `name`.
fn named_port(pod: &Pod, name: &str) -> Option<u16> {
    pod.spec
        .iter()
        .flat_map(|spec| &spec.containers)
        .flat_map(|container| container.ports.iter().flatten())
        .find(|port: &&ContainerPort| port.name.as_deref() == Some(name))
        .and_then(|port| u16::try_from(port.container_port).ok())
        .filter(|&number| number != 0)
}

/// The probe annotation with its ports resolved: the syntax is the shared grammar's, only the
/// container port names are the pod's.
fn parse_probe(pod: &Pod, value: &str, app_port: u16) -> Option<ProbeSpec> {
    ProbeSpec::parse_annotation(value).ok()?.resolve(app_port, |name| named_port(pod, name))
}

/// RFC 1123 subdomain: what Secret names are.
fn is_dns_subdomain(value: &str) -> bool {
    value.len() <= 253 && value.split('.').all(is_dns_label)
}

/// RFC 1123 label: what namespaces and `NacosCluster` names are.
fn is_dns_label(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 63
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-')
}

#[cfg(test)]
mod tests;
