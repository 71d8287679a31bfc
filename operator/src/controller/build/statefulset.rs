//! The StatefulSet running the members.
//!
//! - Stable identity: pod `<name>-<ordinal>` is member `ordinal + 1` (`--node-id`, derived
//!   from the pod name at start by a tiny shell wrapper) and is found by the others at
//!   `<name>-<ordinal>.<name>-headless.<namespace>.svc.<domain>` (`--peer-dns` names the
//!   headless Service). A rescheduled pod keeps its name, volume and therefore its identity.
//! - `podManagementPolicy: Parallel`: members must be able to start together to form their
//!   first quorum; `OrderedReady` would wait forever for member 1 to be ready alone.
//! - One volume per member from the claim template, kept when the StatefulSet scales down or
//!   is deleted (a member that returns finds its Raft log).
//! - Liveness, readiness and startup probes on the registry's health endpoints: ready means
//!   caught up with the committed log, so a rolling update waits for real recovery.
//! - A preStop delay lets endpoints drop the pod before SIGTERM starts the registry's own
//!   graceful shutdown (clients told to reconnect elsewhere, in-flight requests drained).
//!   Raft membership is not touched on restart; removing a member is the operator's job when
//!   the cluster scales down.
//! - With `spec.tls`, the TLS Secret is mounted read-only at [`TLS_DIR`] and `NACOS_TLS_*` point
//!   the registry at its files; probes use HTTPS when the client-facing ports do.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, ExecAction,
    HTTPGetAction, Lifecycle, LifecycleHandler, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SecretKeySelector,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use registry_proto::contract::{auth, dns, tls};

use super::config_map::{CONFIG_DIR, CONFIG_FILE, DATA_DIR};
use super::{labels, object_meta, port_name, selector_labels};
use crate::controller::server::ServerCapabilities;
use crate::controller::tls::{CA_KEY, CERT_KEY, KEY_KEY};
use crate::controller::validate::{PRE_STOP_DELAY_SECONDS, ValidatedCluster};

/// Name of the registry container.
pub const CONTAINER_NAME: &str = "registry";
/// Name of the data volume claim template (PVCs are `data-<pod>`).
pub const DATA_VOLUME: &str = "data";
/// Name of the configuration volume.
const CONFIG_VOLUME: &str = "config";
/// Name of the TLS Secret volume.
pub const TLS_VOLUME: &str = "tls";
/// Where the TLS Secret is mounted: `tls.crt`, `tls.key` and `ca.crt` in it. A whole-volume
/// mount (no `subPath`), so the kubelet swaps in a renewed Secret and the registry reloads it.
pub const TLS_DIR: &str = "/etc/registry/tls";
/// Pod template annotation carrying a hash of `registry.toml`: the ConfigMap's content is not
/// part of the pod template, so without it a configuration change would restart nothing.
pub const CONFIG_HASH_ANNOTATION: &str = "nacos.rs/config-hash";
/// The registry's liveness endpoint.
pub const LIVENESS_PATH: &str = "/nacos/v1/console/health/liveness";
/// The registry's readiness endpoint (200 once caught up).
pub const READINESS_PATH: &str = "/nacos/v1/console/health/readiness";
/// Topology key of the default anti-affinity.
const HOSTNAME_TOPOLOGY_KEY: &str = "kubernetes.io/hostname";

/// The StatefulSet of `cluster`; `config` is the rendered `registry.toml`. The volume retention
/// policy is left out for servers that do not know it (before 1.23 they retain volumes anyway).
pub(super) fn build(cluster: &ValidatedCluster, config: &str, server: &ServerCapabilities) -> StatefulSet {
    let selector = selector_labels(cluster);
    StatefulSet {
        metadata: object_meta(cluster, cluster.name.clone()),
        spec: Some(StatefulSetSpec {
            replicas: Some(cluster.replicas),
            selector: LabelSelector { match_labels: Some(selector.clone()), ..LabelSelector::default() },
            service_name: Some(cluster.headless_service_name()),
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                ..StatefulSetUpdateStrategy::default()
            }),
            persistent_volume_claim_retention_policy: server.statefulset_pvc_retention_policy().then(|| {
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_scaled: Some("Retain".into()),
                    when_deleted: Some("Retain".into()),
                }
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(cluster)),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_owned(),
                        format!("{:016x}", fnv1a64(config.as_bytes())),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(cluster, selector.clone())),
            },
            volume_claim_templates: Some(vec![data_claim(cluster, selector)]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

/// The group the registry image runs as (`registry-core/Dockerfile`: `USER 65532:65532`).
const REGISTRY_GID: i64 = 65532;

fn pod_spec(cluster: &ValidatedCluster, selector: BTreeMap<String, String>) -> PodSpec {
    let scheduling = &cluster.scheduling;
    let mut volumes = vec![Volume {
        name: CONFIG_VOLUME.into(),
        config_map: Some(ConfigMapVolumeSource { name: cluster.config_map_name(), ..ConfigMapVolumeSource::default() }),
        ..Volume::default()
    }];
    if let Some(secret_name) = cluster.tls_secret_name() {
        volumes.push(Volume {
            name: TLS_VOLUME.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret_name),
                // Readable by the registry's group (the pod's fsGroup) only.
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    PodSpec {
        containers: vec![container(cluster)],
        volumes: Some(volumes),
        image_pull_secrets: non_empty(cluster.image_pull_secrets.clone()),
        affinity: Some(scheduling.affinity.clone().unwrap_or_else(|| default_affinity(selector))),
        tolerations: non_empty(scheduling.tolerations.clone()),
        node_selector: (!scheduling.node_selector.is_empty()).then(|| scheduling.node_selector.clone()),
        topology_spread_constraints: non_empty(scheduling.topology_spread_constraints.clone()),
        termination_grace_period_seconds: Some(cluster.termination_grace_period_seconds),
        // Service links would inject `<SERVICE>_PORT=tcp://…` variables; a Service named like
        // `nacos-http` would then set `NACOS_HTTP_PORT`, which the registry reads as a flag.
        enable_service_links: Some(false),
        // The registry never talks to the Kubernetes API.
        automount_service_account_token: Some(false),
        // The image runs as uid/gid 65532; most volume drivers hand out root-owned volumes, so
        // the data volume is made group-writable for that gid.
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            fs_group: Some(REGISTRY_GID),
            ..PodSecurityContext::default()
        }),
        ..PodSpec::default()
    }
}

fn container(cluster: &ValidatedCluster) -> Container {
    let mut ports = vec![
        container_port(port_name::HTTP, cluster.ports.http, "TCP"),
        container_port(port_name::GRPC, cluster.ports.grpc, "TCP"),
        container_port(port_name::CLUSTER, cluster.ports.cluster, "TCP"),
    ];
    if let Some(dns) = &cluster.dns {
        ports.push(container_port(port_name::DNS, dns.container_port, "UDP"));
        ports.push(container_port(port_name::DNS_TCP, dns.container_port, "TCP"));
        if let Some(tls) = &dns.tls {
            ports.push(container_port(port_name::DNS_TLS, tls.container_port, "TCP"));
        }
    }
    Container {
        name: CONTAINER_NAME.into(),
        image: Some(cluster.image.clone()),
        image_pull_policy: cluster.image_pull_policy.map(|p| p.as_str().to_owned()),
        command: Some(vec!["/bin/sh".into(), "-c".into(), start_script(cluster)]),
        env: Some(env(cluster)),
        ports: Some(ports),
        resources: cluster.resources.clone(),
        volume_mounts: Some(volume_mounts(cluster)),
        // A slow start (a long log to replay) must not be cut short by the liveness probe.
        startup_probe: Some(Probe {
            period_seconds: Some(5),
            failure_threshold: Some(60),
            ..http_probe(cluster, LIVENESS_PATH)
        }),
        liveness_probe: Some(Probe {
            period_seconds: Some(10),
            failure_threshold: Some(3),
            ..http_probe(cluster, LIVENESS_PATH)
        }),
        readiness_probe: Some(Probe {
            period_seconds: Some(5),
            failure_threshold: Some(3),
            ..http_probe(cluster, READINESS_PATH)
        }),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec!["/bin/sh".into(), "-c".into(), format!("sleep {PRE_STOP_DELAY_SECONDS}")]),
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Capabilities::default() }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

fn volume_mounts(cluster: &ValidatedCluster) -> Vec<VolumeMount> {
    let read_only = |name: &str, path: &str| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    let mut mounts = vec![
        VolumeMount { name: DATA_VOLUME.into(), mount_path: DATA_DIR.into(), ..VolumeMount::default() },
        read_only(CONFIG_VOLUME, CONFIG_DIR),
    ];
    if cluster.tls.is_some() {
        mounts.push(read_only(TLS_VOLUME, TLS_DIR));
    }
    mounts
}

/// The container's shell command: derives `--node-id` from the pod name's ordinal (node ids
/// start at 1, ordinals at 0) and starts the registry with the shared configuration and the
/// headless Service as peer DNS. Written as it appears in the manifest: `$$` is Kubernetes'
/// escape for a literal `$` in commands.
pub fn start_script(cluster: &ValidatedCluster) -> String {
    format!(
        "set -e\n\
         ordinal=\"${{POD_NAME##*-}}\"\n\
         case \"$ordinal\" in\n  \
           ''|*[!0-9]*) echo \"cannot derive a node id from pod name '$POD_NAME'\" >&2; exit 1 ;;\n\
         esac\n\
         exec registry --config {CONFIG_DIR}/{CONFIG_FILE} --node-id \"$$((ordinal + 1))\" --peer-dns {}\n",
        cluster.peer_dns()
    )
}

fn env(cluster: &ValidatedCluster) -> Vec<EnvVar> {
    let mut env = vec![field_env("POD_NAME", "metadata.name"), field_env("POD_NAMESPACE", "metadata.namespace")];
    if let Some(auth) = &cluster.auth {
        env.push(value_env(auth::env::ENABLE, "true"));
        env.push(secret_env(auth::env::TOKEN, &auth.secret_name, &auth.keys.token));
        env.push(secret_env(auth::env::IDENTITY_KEY, &auth.secret_name, &auth.keys.identity_key));
        env.push(secret_env(auth::env::IDENTITY_VALUE, &auth.secret_name, &auth.keys.identity_value));
    }
    if let Some(settings) = &cluster.dns {
        env.push(value_env(dns::env::PORT, &settings.container_port.to_string()));
        env.push(value_env(dns::env::ZONE, &settings.zone));
        if let Some(tls) = &settings.tls {
            env.push(value_env(dns::env::TLS_PORT, &tls.container_port.to_string()));
        }
    }
    if let Some(settings) = &cluster.tls {
        env.push(value_env(tls::env::CERT, &format!("{TLS_DIR}/{CERT_KEY}")));
        env.push(value_env(tls::env::KEY, &format!("{TLS_DIR}/{KEY_KEY}")));
        env.push(value_env(tls::env::CA, &format!("{TLS_DIR}/{CA_KEY}")));
        env.push(value_env(tls::env::CLIENT_FACING, &settings.client_facing.to_string()));
        env.push(value_env(tls::env::CLUSTER, &settings.cluster.to_string()));
    }
    env
}

fn value_env(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), ..EnvVar::default() }
}

fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: field_path.into(), ..ObjectFieldSelector::default() }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// An env var read from the Secret at start: the value never passes through the pod template.
/// Every key is required (the operator needs the identity pair too, see `dereference`).
fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector { name: secret.into(), key: key.into(), optional: None }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn container_port(name: &str, port: i32, protocol: &str) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some(protocol.into()),
        ..ContainerPort::default()
    }
}

/// A probe of the HTTP port; HTTPS when the client-facing ports use TLS (the kubelet does not
/// verify the certificate).
fn http_probe(cluster: &ValidatedCluster, path: &str) -> Probe {
    let https = cluster.tls.as_ref().is_some_and(|tls| tls.client_facing);
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(port_name::HTTP.into()),
            scheme: https.then(|| "HTTPS".into()),
            ..HTTPGetAction::default()
        }),
        timeout_seconds: Some(3),
        ..Probe::default()
    }
}

/// Prefer one member per node: losing a node then costs at most one member. Preferred, not
/// required, so a cluster with fewer nodes than members still schedules.
fn default_affinity(selector: BTreeMap<String, String>) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: PodAffinityTerm {
                    label_selector: Some(LabelSelector { match_labels: Some(selector), ..LabelSelector::default() }),
                    topology_key: HOSTNAME_TOPOLOGY_KEY.into(),
                    ..PodAffinityTerm::default()
                },
            }]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

fn data_claim(cluster: &ValidatedCluster, selector: BTreeMap<String, String>) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta { name: Some(DATA_VOLUME.into()), labels: Some(selector), ..ObjectMeta::default() },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), Quantity(cluster.storage.size.clone()))])),
                ..VolumeResourceRequirements::default()
            }),
            storage_class_name: cluster.storage.storage_class_name.clone(),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

/// 64-bit FNV-1a: a stable hash (unlike std's, which may change between Rust releases), so the
/// annotation changes only when the configuration does.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests;
