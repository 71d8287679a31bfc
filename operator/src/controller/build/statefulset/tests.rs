use std::process::Command;

use k8s_openapi::api::core::v1::EnvVar;

use super::*;
use crate::controller::build::{self as build_step, Resources};
use crate::fixtures::{self, AUTH, CUSTOM_STORAGE_SCHEDULING, DEFAULTS, DNS, DNS_TLS, TLS, TLS_CERT_MANAGER};

fn statefulset(spec: &str) -> StatefulSet {
    fixtures::built(spec).stateful_set
}

fn pod(set: &StatefulSet) -> &PodSpec {
    set.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn registry(set: &StatefulSet) -> &Container {
    let containers = &pod(set).containers;
    assert_eq!(containers.len(), 1);
    &containers[0]
}

fn env_var<'a>(container: &'a Container, name: &str) -> Option<&'a EnvVar> {
    container.env.as_ref().unwrap().iter().find(|e| e.name == name)
}

/// (name, port, protocol) of each container port.
fn ports(container: &Container) -> Vec<(&str, i32, &str)> {
    container
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| (p.name.as_deref().unwrap(), p.container_port, p.protocol.as_deref().unwrap()))
        .collect()
}

fn claim(set: &StatefulSet) -> &PersistentVolumeClaim {
    let claims = set.spec.as_ref().unwrap().volume_claim_templates.as_ref().unwrap();
    assert_eq!(claims.len(), 1);
    &claims[0]
}

fn claim_size_and_class(set: &StatefulSet) -> (String, Option<String>) {
    let spec = claim(set).spec.as_ref().unwrap();
    let size = spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0.clone();
    (size, spec.storage_class_name.clone())
}

#[test]
fn defaults_give_three_parallel_members_with_stable_identity() {
    let set = statefulset(DEFAULTS);
    let spec = set.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("nacos-headless"));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    assert_eq!(spec.update_strategy.as_ref().unwrap().type_.as_deref(), Some("RollingUpdate"));
    let retention = spec.persistent_volume_claim_retention_policy.as_ref().unwrap();
    assert_eq!((retention.when_scaled.as_deref(), retention.when_deleted.as_deref()), (Some("Retain"), Some("Retain")));

    let selector = spec.selector.match_labels.as_ref().unwrap();
    let template_labels = spec.template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    assert!(selector.iter().all(|(k, v)| template_labels.get(k) == Some(v)), "template labels match the selector");

    let container = registry(&set);
    assert_eq!(container.name, CONTAINER_NAME);
    assert_eq!(container.image.as_deref(), Some("registry.test/registry:1.0.0"));
    assert_eq!(container.image_pull_policy, None);
    assert_eq!(container.resources, None);
    assert_eq!(ports(container), [("http", 8848, "TCP"), ("grpc", 9848, "TCP"), ("cluster", 9849, "TCP")]);
    let env_names: Vec<_> = container.env.as_ref().unwrap().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(env_names, ["POD_NAME", "POD_NAMESPACE"]);
    let pod_name = env_var(container, "POD_NAME").unwrap().value_from.as_ref().unwrap();
    assert_eq!(pod_name.field_ref.as_ref().unwrap().field_path, "metadata.name");

    let pod = pod(&set);
    assert_eq!(pod.image_pull_secrets, None);
    assert_eq!((pod.tolerations.as_ref(), pod.node_selector.as_ref()), (None, None));
    assert_eq!(pod.topology_spread_constraints, None);
    assert_eq!(pod.termination_grace_period_seconds, Some(30));
    assert_eq!(pod.enable_service_links, Some(false));
    assert_eq!(pod.automount_service_account_token, Some(false));
}

#[test]
fn servers_before_1_23_get_no_retention_policy_and_nothing_else_changes() {
    use crate::controller::server::{EndpointsApi, KubeVersion, PdbVersion};
    let old = ServerCapabilities {
        version: KubeVersion::new(1, 20),
        pdb: PdbVersion::V1beta1,
        endpoints: EndpointsApi::Endpoints,
    };
    for spec in [DEFAULTS, CUSTOM_STORAGE_SCHEDULING, AUTH, DNS] {
        let mut newest = statefulset(spec);
        let for_old = fixtures::built_for(spec, &old).stateful_set;
        let json = serde_json::to_string(&for_old).unwrap();
        assert!(!json.contains("persistentVolumeClaimRetentionPolicy"), "{json}");
        newest.spec.as_mut().unwrap().persistent_volume_claim_retention_policy = None;
        assert_eq!(for_old, newest, "only the retention policy differs");
    }
}

#[test]
fn command_passes_node_id_from_the_ordinal_and_the_headless_service_as_peer_dns() {
    let container = registry(&statefulset(DEFAULTS)).clone();
    let command = container.command.unwrap();
    assert_eq!(command[..2], ["/bin/sh", "-c"]);
    assert!(command[2].contains("--node-id \"$$((ordinal + 1))\""), "{}", command[2]);
    assert!(command[2].contains("--peer-dns nacos-headless.registry.svc.cluster.local\n"), "{}", command[2]);
    assert!(command[2].contains("--config /etc/registry/registry.toml"), "{}", command[2]);
    assert_eq!(container.args, None);
}

/// Runs the start script as the kubelet would (after Kubernetes' `$$` → `$` expansion), with
/// `registry` replaced by a shell function that prints its arguments (`exec` cannot run a
/// function, so it goes; a fake binary on disk would race with parallel tests' forks).
fn run_start_script(pod_name: &str) -> std::process::Output {
    let script = start_script(&fixtures::validated(DEFAULTS)).replace("$$", "$");
    assert!(script.contains("exec registry "));
    let script = format!("registry() {{ echo \"$@\"; }}\n{}", script.replace("exec registry ", "registry "));
    Command::new("/bin/sh").arg("-c").arg(script).env("POD_NAME", pod_name).output().unwrap()
}

#[test]
fn start_script_makes_ordinal_n_member_n_plus_one() {
    for (pod_name, node_id) in [("nacos-0", 1), ("nacos-4", 5), ("my-nacos-cluster-12", 13)] {
        let output = run_start_script(pod_name);
        assert!(output.status.success(), "{pod_name}: {}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            format!(
                "--config /etc/registry/registry.toml --node-id {node_id} --peer-dns \
                 nacos-headless.registry.svc.cluster.local\n"
            )
        );
    }
}

#[test]
fn start_script_refuses_a_pod_name_without_ordinal() {
    let output = run_start_script("nacos-x");
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "registry must not start");
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot derive a node id from pod name 'nacos-x'"));
}

#[test]
fn probes_use_the_health_endpoints_on_the_http_port() {
    let container = registry(&statefulset(DEFAULTS)).clone();
    for (probe, path) in [
        (container.liveness_probe.unwrap(), LIVENESS_PATH),
        (container.readiness_probe.unwrap(), READINESS_PATH),
        (container.startup_probe.unwrap(), LIVENESS_PATH),
    ] {
        let get = probe.http_get.unwrap();
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(get.port, IntOrString::String("http".into()));
    }
    let pre_stop = container.lifecycle.unwrap().pre_stop.unwrap().exec.unwrap().command.unwrap();
    assert_eq!(pre_stop, ["/bin/sh", "-c", "sleep 5"]);
}

#[test]
fn data_and_config_are_mounted() {
    let set = statefulset(DEFAULTS);
    let mounts: Vec<_> = registry(&set)
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only))
        .collect();
    assert_eq!(mounts, [("data", "/var/lib/registry", None), ("config", "/etc/registry", Some(true))]);
    let volumes = pod(&set).volumes.as_ref().unwrap();
    assert_eq!(volumes.len(), 1);
    assert_eq!(volumes[0].config_map.as_ref().unwrap().name, "nacos-config");
    assert_eq!(claim(&set).metadata.name.as_deref(), Some(DATA_VOLUME));
    assert_eq!(claim(&set).spec.as_ref().unwrap().access_modes.as_deref(), Some(&["ReadWriteOnce".to_owned()][..]));
    assert_eq!(claim_size_and_class(&set), ("10Gi".into(), None));
    let security = pod(&set).security_context.as_ref().unwrap();
    assert_eq!(
        (security.fs_group, security.run_as_non_root),
        (Some(65532), Some(true)),
        "the image's non-root user can write a root-owned data volume"
    );
}

#[test]
fn default_affinity_prefers_one_member_per_node() {
    let set = statefulset(DEFAULTS);
    let anti = pod(&set).affinity.as_ref().unwrap().pod_anti_affinity.as_ref().unwrap();
    assert_eq!(anti.required_during_scheduling_ignored_during_execution, None);
    let preferred = anti.preferred_during_scheduling_ignored_during_execution.as_ref().unwrap();
    assert_eq!(preferred.len(), 1);
    assert_eq!(preferred[0].weight, 100);
    let term = &preferred[0].pod_affinity_term;
    assert_eq!(term.topology_key, "kubernetes.io/hostname");
    assert_eq!(
        term.label_selector.as_ref().unwrap().match_labels.as_ref(),
        set.spec.as_ref().unwrap().selector.match_labels.as_ref()
    );
}

#[test]
fn custom_storage_scheduling_image_and_resources_are_passed_through() {
    let set = statefulset(CUSTOM_STORAGE_SCHEDULING);
    assert_eq!(set.spec.as_ref().unwrap().replicas, Some(5));
    assert_eq!(claim_size_and_class(&set), ("50Gi".into(), Some("fast-ssd".into())));

    let container = registry(&set);
    assert_eq!(container.image.as_deref(), Some("registry.example.com/nacos/registry:2.1.0"));
    assert_eq!(container.image_pull_policy.as_deref(), Some("Always"));
    let resources = container.resources.as_ref().unwrap();
    assert_eq!(resources.requests.as_ref().unwrap()["cpu"], Quantity("500m".into()));
    assert_eq!(resources.limits.as_ref().unwrap()["memory"], Quantity("2Gi".into()));

    let pod = pod(&set);
    assert_eq!(pod.image_pull_secrets.as_ref().unwrap()[0].name, "pull-secret");
    let affinity = pod.affinity.as_ref().unwrap();
    assert!(affinity.pod_anti_affinity.is_none(), "a given affinity replaces the default");
    let node_affinity = affinity.node_affinity.as_ref().unwrap();
    let terms =
        &node_affinity.required_during_scheduling_ignored_during_execution.as_ref().unwrap().node_selector_terms;
    assert_eq!(terms[0].match_expressions.as_ref().unwrap()[0].key, "node-role");
    assert_eq!(pod.tolerations.as_ref().unwrap()[0].key.as_deref(), Some("dedicated"));
    assert_eq!(pod.node_selector.as_ref().unwrap()["disktype"], "ssd");
    let spread = &pod.topology_spread_constraints.as_ref().unwrap()[0];
    assert_eq!((spread.topology_key.as_str(), spread.max_skew), ("topology.kubernetes.io/zone", 1));
    // preStop 5 s + shutdown_grace_ms 20000 from spec.config + 15 s margin.
    assert_eq!(pod.termination_grace_period_seconds, Some(40));
}

#[test]
fn auth_reads_the_secret_by_reference_only() {
    let set = statefulset(AUTH);
    let container = registry(&set);
    assert_eq!(env_var(container, "NACOS_AUTH_ENABLE").unwrap().value.as_deref(), Some("true"));
    // All required: members and the operator need the identity pair as much as the token.
    for (name, key) in [
        ("NACOS_AUTH_TOKEN", "jwt-secret"),
        ("NACOS_AUTH_IDENTITY_KEY", "identity-key"),
        ("NACOS_AUTH_IDENTITY_VALUE", "identity-value"),
    ] {
        let var = env_var(container, name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(var.value, None, "{name} must not carry a literal value");
        let selector = var.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!((selector.name.as_str(), selector.key.as_str(), selector.optional), ("nacos-auth", key, None));
    }
}

#[test]
fn auth_off_sets_no_auth_env() {
    let set = statefulset(DEFAULTS);
    assert!(registry(&set).env.as_ref().unwrap().iter().all(|e| !e.name.starts_with("NACOS_AUTH")));
}

#[test]
fn dns_on_opens_the_udp_port_and_tells_the_registry() {
    let set = statefulset(DNS);
    let container = registry(&set);
    assert_eq!(ports(container)[ports(container).len() - 2..], [("dns", 5353, "UDP"), ("dns-tcp", 5353, "TCP")]);
    assert_eq!(env_var(container, "NACOS_DNS_PORT").unwrap().value.as_deref(), Some("5353"));
    assert_eq!(env_var(container, "NACOS_DNS_ZONE").unwrap().value.as_deref(), Some("svc.example"));
}

#[test]
fn dns_over_tls_opens_its_tcp_port_and_tells_the_registry() {
    let set = statefulset(DNS_TLS);
    let container = registry(&set);
    assert_eq!(
        ports(container)[ports(container).len() - 3..],
        [("dns", 5353, "UDP"), ("dns-tcp", 5353, "TCP"), ("dns-tls", 8853, "TCP")]
    );
    assert_eq!(env_var(container, dns::env::TLS_PORT).unwrap().value.as_deref(), Some("8853"));
    // The certificate it answers with is the client-facing one the members already get.
    assert_eq!(env_var(container, tls::env::CLIENT_FACING).unwrap().value.as_deref(), Some("true"));

    let set = statefulset(DNS);
    let container = registry(&set);
    assert!(ports(container).iter().all(|(name, ..)| *name != "dns-tls"));
    assert!(env_var(container, dns::env::TLS_PORT).is_none());
}

#[test]
fn dns_off_opens_no_udp_port() {
    let set = statefulset(DEFAULTS);
    let container = registry(&set);
    assert!(ports(container).iter().all(|(_, _, protocol)| *protocol == "TCP"));
    assert!(env_var(container, "NACOS_DNS_PORT").is_none());
}

#[test]
fn sizes_one_three_five_differ_only_in_replicas() {
    let replicas = |set: &StatefulSet| set.spec.as_ref().unwrap().replicas;
    let mut templates = Vec::new();
    for size in [1, 3, 5] {
        let Resources { stateful_set, pod_disruption_budget, .. } = fixtures::built(&fixtures::with_replicas(size));
        assert_eq!(replicas(&stateful_set), Some(size));
        assert!(pod_disruption_budget.is_some());
        templates.push(stateful_set.spec.unwrap().template);
    }
    assert!(templates.windows(2).all(|w| w[0] == w[1]), "the pod template does not depend on the size");
}

#[test]
fn config_hash_follows_the_configuration() {
    let hash = |spec: &str| {
        let set = statefulset(spec);
        set.spec.unwrap().template.metadata.unwrap().annotations.unwrap()[CONFIG_HASH_ANNOTATION].clone()
    };
    let default = hash(DEFAULTS);
    assert_eq!(default.len(), 16);
    assert_eq!(default, hash(DEFAULTS));
    assert_ne!(default, hash("logLevel: debug"));
    assert_ne!(default, hash("config: \"[naming]\\nbeat_check_interval_ms = 1000\\n\""));
}

#[test]
fn config_hash_is_the_hash_of_the_config_map_content() {
    let cluster = fixtures::validated(DEFAULTS);
    let resources = build_step::build(&cluster, &ServerCapabilities::NEWEST).unwrap();
    let config = &resources.config_map.data.unwrap()[crate::controller::build::CONFIG_FILE];
    let annotation =
        &resources.stateful_set.spec.unwrap().template.metadata.unwrap().annotations.unwrap()[CONFIG_HASH_ANNOTATION];
    assert_eq!(*annotation, format!("{:016x}", fnv1a64(config.as_bytes())));
}

#[test]
fn fnv1a64_matches_reference_values() {
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
}

fn value_of<'a>(container: &'a Container, name: &str) -> Option<&'a str> {
    env_var(container, name).and_then(|e| e.value.as_deref())
}

fn probe_schemes(container: &Container) -> Vec<Option<&str>> {
    [&container.startup_probe, &container.liveness_probe, &container.readiness_probe]
        .iter()
        .map(|probe| probe.as_ref().unwrap().http_get.as_ref().unwrap().scheme.as_deref())
        .collect()
}

#[test]
fn tls_mounts_the_secret_read_only_and_points_the_registry_at_its_files() {
    for (spec, secret, client_facing) in [(TLS, "nacos-tls", "true"), (TLS_CERT_MANAGER, "nacos-members-tls", "false")]
    {
        let set = statefulset(spec);
        let volume = pod(&set).volumes.as_ref().unwrap().iter().find(|v| v.name == TLS_VOLUME).expect("tls volume");
        let source = volume.secret.as_ref().unwrap();
        assert_eq!((source.secret_name.as_deref(), source.default_mode), (Some(secret), Some(0o440)), "{spec}");
        let container = registry(&set);
        let mount = container.volume_mounts.as_ref().unwrap().iter().find(|m| m.name == TLS_VOLUME).unwrap();
        // No subPath: the kubelet then swaps renewed files in.
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only, mount.sub_path.as_deref()),
            (TLS_DIR, Some(true), None)
        );
        let expected = [
            (tls::env::CERT, "/etc/registry/tls/tls.crt"),
            (tls::env::KEY, "/etc/registry/tls/tls.key"),
            (tls::env::CA, "/etc/registry/tls/ca.crt"),
            (tls::env::CLIENT_FACING, client_facing),
            (tls::env::CLUSTER, "true"),
        ];
        for (name, value) in expected {
            assert_eq!(value_of(container, name), Some(value), "{spec}: {name}");
        }
    }
    // Probes follow the HTTP port to HTTPS only when it serves TLS.
    assert_eq!(probe_schemes(registry(&statefulset(TLS))), [Some("HTTPS"); 3]);
    assert_eq!(probe_schemes(registry(&statefulset(TLS_CERT_MANAGER))), [None; 3]);
}

#[test]
fn without_tls_there_is_no_tls_volume_env_or_https_probe() {
    let set = statefulset(DEFAULTS);
    assert!(pod(&set).volumes.as_ref().unwrap().iter().all(|v| v.name != TLS_VOLUME));
    let container = registry(&set);
    assert!(container.volume_mounts.as_ref().unwrap().iter().all(|m| m.name != TLS_VOLUME));
    assert!(container.env.as_ref().unwrap().iter().all(|e| !e.name.starts_with("NACOS_TLS_")));
    assert_eq!(probe_schemes(container), [None; 3]);
}
