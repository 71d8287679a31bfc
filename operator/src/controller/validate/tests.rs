use super::*;
use crate::fixtures::{
    self, AUTH, CUSTOM_STORAGE_SCHEDULING, DEFAULTS, DNS, DNS_TLS, NAME, NAMESPACE, TLS, TLS_CERT_MANAGER,
};

fn refused(spec: &str) -> Error {
    match validate(&fixtures::cluster(spec), &fixtures::env()) {
        Ok(cluster) => panic!("spec was accepted: {spec}\n{cluster:#?}"),
        Err(error) => error,
    }
}

#[test]
fn defaults_fill_every_field() {
    let cluster = fixtures::validated(DEFAULTS);
    assert_eq!((cluster.name.as_str(), cluster.namespace.as_str()), (NAME, NAMESPACE));
    assert_eq!(cluster.replicas, 3);
    assert_eq!(cluster.quorum(), 2);
    assert_eq!(cluster.image, "registry.test/registry:1.0.0");
    assert_eq!(cluster.storage, Storage { size: "10Gi".into(), storage_class_name: None });
    assert_eq!(cluster.ports, Ports { http: 8848, grpc: 9848, cluster: 9849 });
    assert_eq!(cluster.log_level, "info");
    assert_eq!((cluster.auth.as_ref(), cluster.dns.as_ref()), (None, None));
    assert_eq!(cluster.service_type, ServiceType::ClusterIP);
    assert_eq!(cluster.pdb_max_unavailable, Some(1));
    assert!(cluster.extra_config.is_empty());
    assert_eq!(cluster.termination_grace_period_seconds, 30);
    assert_eq!(cluster.sidecar_injection.as_ref().map(|s| s.image.as_str()), Some("registry.test/sidecar:1.0.0"));
    assert_eq!(cluster.warnings, []);
    assert_eq!(cluster.peer_dns(), "nacos-headless.registry.svc.cluster.local");
}

#[test]
fn owner_reference_points_at_the_cluster_as_controller() {
    let owner = fixtures::validated(DEFAULTS).owner_reference;
    assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()), ("NacosCluster", NAME, fixtures::UID));
    assert_eq!(owner.controller, Some(true));
}

#[test]
fn odd_sizes_pass_without_warnings() {
    for size in [1, 3, 5, 7] {
        let cluster = fixtures::validated(&fixtures::with_replicas(size));
        assert_eq!((cluster.replicas, cluster.warnings.as_slice()), (size, &[][..]));
    }
}

#[test]
fn even_sizes_pass_with_a_warning() {
    for size in [2, 4] {
        let cluster = fixtures::validated(&fixtures::with_replicas(size));
        assert_eq!(cluster.warnings, [Warning::EvenReplicas { replicas: size }]);
    }
    let message = Warning::EvenReplicas { replicas: 4 }.to_string();
    assert!(message.contains("no more failures than 3"), "{message}");
}

#[test]
fn zero_or_negative_replicas_are_refused() {
    for replicas in [0, -1] {
        let error = refused(&fixtures::with_replicas(replicas));
        assert!(matches!(error, Error::InvalidReplicas { replicas: r } if r == replicas), "{error:?}");
        assert_eq!(error.reason(), "InvalidReplicas");
    }
    assert_eq!(refused("replicas: 0").to_string(), "spec.replicas is 0; a cluster needs at least 1 member");
}

#[test]
fn bad_storage_sizes_are_refused_with_the_reason() {
    for (size, reason) in [
        ("ten", "does not start with a number"),
        ("10GB", "unknown suffix \"GB\""),
        ("0", "greater than zero"),
        ("-1Gi", "greater than zero"),
        ("", "empty"),
    ] {
        let error = refused(&format!("storage: {{ size: \"{size}\" }}"));
        assert_eq!(error.reason(), "InvalidStorageSize");
        let message = error.to_string();
        assert!(message.contains(&format!("{size:?}")) && message.contains(reason), "{size}: {message}");
    }
}

#[test]
fn auth_needs_a_secret_name() {
    let error = refused("auth: { enabled: true }");
    assert!(matches!(error, Error::MissingAuthSecretName), "{error:?}");
    assert!(error.to_string().contains("spec.auth.secretName is not set"));
    assert!(matches!(refused("auth: { enabled: true, secretName: \"\" }"), Error::MissingAuthSecretName));
}

#[test]
fn auth_secret_name_and_keys_must_be_valid() {
    let error = refused("auth: { enabled: true, secretName: Nacos_Auth }");
    assert!(matches!(error, Error::InvalidAuthSecretName { ref name } if name == "Nacos_Auth"), "{error:?}");
    let error = refused("auth: { enabled: true, secretName: auth, secretKeys: { token: \"a/b\" } }");
    assert!(matches!(error, Error::InvalidAuthSecretKey { field: "token", .. }), "{error:?}");
}

#[test]
fn auth_keeps_the_secret_reference() {
    let auth = fixtures::validated(AUTH).auth.unwrap();
    assert_eq!(auth.secret_name, "nacos-auth");
    assert_eq!(
        (auth.keys.token.as_str(), auth.keys.identity_key.as_str(), auth.keys.identity_value.as_str()),
        ("jwt-secret", "identity-key", "identity-value")
    );
}

#[test]
fn disabled_auth_ignores_the_secret_name() {
    assert_eq!(fixtures::validated("auth: { enabled: false, secretName: whatever }").auth, None);
}

#[test]
fn dns_zone_loses_its_trailing_dot() {
    let dns = fixtures::validated(DNS).dns.unwrap();
    assert_eq!(dns, Dns { service_port: 53, container_port: 5353, zone: "svc.example".into(), tls: None });
}

#[test]
fn dns_settings_are_checked() {
    let error = refused("dns: { enabled: true, containerPort: 9848 }");
    assert!(matches!(error, Error::DnsPortClash { field: "containerPort", port: 9848, taken_by: "gRPC" }), "{error:?}");
    let error = refused("dns: { enabled: true, zone: Bad_Zone }");
    assert!(matches!(error, Error::InvalidDnsZone { .. }), "{error:?}");
    let error = refused("dns: { enabled: true, port: 70000 }");
    assert!(matches!(error, Error::InvalidDnsPort { field: "port", port: 70000 }), "{error:?}");
    // Off: nothing is checked, nothing is kept.
    assert_eq!(fixtures::validated("dns: { enabled: false, zone: Bad_Zone }").dns, None);
}

#[test]
fn dns_over_tls_keeps_its_service_port_and_an_unprivileged_container_port() {
    let dns = fixtures::validated(DNS_TLS).dns.unwrap();
    assert_eq!(dns.tls, Some(DnsTls { service_port: 853, container_port: 8853 }));
    let custom = fixtures::validated(
        "dns: { enabled: true, tlsPort: 8853, tlsContainerPort: 10853 }\ntls: { clientFacing: true }",
    );
    assert_eq!(custom.dns.unwrap().tls, Some(DnsTls { service_port: 8853, container_port: 10853 }));
    assert_eq!(fixtures::validated(DNS).dns.unwrap().tls, None);
}

#[test]
fn dns_over_tls_needs_dns_and_client_facing_tls() {
    let error = refused("dns: { tlsPort: 853 }\ntls: { clientFacing: true }");
    assert!(matches!(error, Error::DnsTlsWithoutDns), "{error:?}");
    assert!(error.to_string().contains("spec.dns.enabled"), "{error}");
    for tls in ["", "tls: {}", "tls: { clientFacing: false }"] {
        let error = refused(&format!("dns: {{ enabled: true, tlsPort: 853 }}\n{tls}"));
        assert!(matches!(error, Error::DnsTlsWithoutClientTls), "{tls:?}: {error:?}");
        assert!(error.to_string().contains("clientFacing: true"), "{error}");
    }
}

#[test]
fn dns_over_tls_ports_are_checked() {
    let with = |dns: &str| refused(&format!("dns: {{ enabled: true, {dns} }}\ntls: {{ clientFacing: true }}"));
    let error = with("tlsPort: 0");
    assert!(matches!(error, Error::InvalidDnsPort { field: "tlsPort", port: 0 }), "{error:?}");
    let error = with("tlsPort: 853, tlsContainerPort: 70000");
    assert!(matches!(error, Error::InvalidDnsPort { field: "tlsContainerPort", port: 70000 }), "{error:?}");
    // DNS over TCP already listens on the plain DNS port, in the container and on the Services.
    let error = with("tlsPort: 53");
    assert!(matches!(error, Error::DnsPortClash { field: "tlsPort", port: 53, taken_by: "DNS" }), "{error:?}");
    let error = with("tlsPort: 853, tlsContainerPort: 5353");
    assert!(
        matches!(error, Error::DnsPortClash { field: "tlsContainerPort", port: 5353, taken_by: "DNS" }),
        "{error:?}"
    );
    let error = with("tlsPort: 853, tlsContainerPort: 9849");
    assert!(
        matches!(error, Error::DnsPortClash { field: "tlsContainerPort", port: 9849, taken_by: "cluster" }),
        "{error:?}"
    );
    let error = with("tlsPort: 8848");
    assert!(matches!(error, Error::DnsPortClash { field: "tlsPort", port: 8848, taken_by: "HTTP" }), "{error:?}");
}

#[test]
fn dns_on_a_load_balancer_warns_about_mixed_protocols() {
    let cluster = fixtures::validated("dns: { enabled: true }\nservice: { type: LoadBalancer }");
    assert_eq!(cluster.warnings, [Warning::DnsOnLoadBalancer]);
}

#[test]
fn http_port_must_leave_room_for_the_derived_ports() {
    assert!(matches!(refused("ports: { http: 64535 }"), Error::InvalidHttpPort { port: 64535 }));
    assert!(matches!(refused("ports: { http: 0 }"), Error::InvalidHttpPort { port: 0 }));
    assert_eq!(fixtures::validated("ports: { http: 64534 }").ports.cluster, 65535);
}

#[test]
fn extra_config_must_be_toml_sections_without_operator_keys() {
    let error = refused("config: \"[server\"");
    assert_eq!(error.reason(), "InvalidConfig");
    let error = refused("config: \"beat = 1\"");
    assert!(matches!(error, Error::ConfigNotSection { ref key } if key == "beat"), "{error:?}");
    for key in RESERVED_SERVER_KEYS {
        let error = refused(&format!("config: \"[server]\\n{key} = 1\""));
        assert!(matches!(error, Error::ReservedConfigKey { key: ref k } if *k == format!("server.{key}")), "{error:?}");
    }
    let error = refused("config: \"[server]\\nshutdown_grace_ms = \\\"soon\\\"\"");
    assert!(matches!(error, Error::InvalidConfigValue { key: "server.shutdown_grace_ms", .. }), "{error:?}");
}

#[test]
fn extra_config_is_kept_and_sets_the_grace_period() {
    let cluster = fixtures::validated(CUSTOM_STORAGE_SCHEDULING);
    assert_eq!(cluster.extra_config["naming"]["beat_check_interval_ms"].as_integer(), Some(3000));
    assert_eq!(cluster.termination_grace_period_seconds, 40);
}

#[test]
fn disruption_budget_must_keep_a_quorum() {
    let error = refused("replicas: 3\npodDisruptionBudget: { maxUnavailable: 2 }");
    assert!(matches!(error, Error::UnsafeMaxUnavailable { max_unavailable: 2, replicas: 3, quorum: 2 }), "{error:?}");
    assert!(error.to_string().contains("at most 1 may be unavailable"), "{error}");
    assert_eq!(
        fixtures::validated("replicas: 5\npodDisruptionBudget: { maxUnavailable: 2 }").pdb_max_unavailable,
        Some(2)
    );
    assert_eq!(fixtures::validated("replicas: 1").pdb_max_unavailable, Some(1));
    assert_eq!(fixtures::validated("replicas: 2").pdb_max_unavailable, Some(1));
    assert_eq!(fixtures::validated("podDisruptionBudget: { enabled: false }").pdb_max_unavailable, None);
}

#[test]
fn names_that_cannot_name_services_and_pods_are_refused() {
    for name in ["1nacos", "a".repeat(MAX_NAME_LEN + 1).as_str(), "nacos.prod"] {
        let mut cluster = fixtures::cluster(DEFAULTS);
        cluster.metadata.name = Some(name.to_owned());
        let error = validate(&cluster, &fixtures::env()).unwrap_err();
        assert!(matches!(error, Error::InvalidName { .. }), "{name}: {error:?}");
    }
    let mut cluster = fixtures::cluster(DEFAULTS);
    cluster.metadata.name = Some("a".repeat(MAX_NAME_LEN));
    assert!(validate(&cluster, &fixtures::env()).is_ok());
}

#[test]
fn objects_not_from_the_api_server_are_refused() {
    let mut cluster = fixtures::cluster(DEFAULTS);
    cluster.metadata.uid = None;
    let error = validate(&cluster, &fixtures::env()).unwrap_err();
    assert!(matches!(error, Error::MissingMetadata { field: "uid" }), "{error:?}");
    cluster.metadata.namespace = None;
    let error = validate(&cluster, &fixtures::env()).unwrap_err();
    assert!(matches!(error, Error::MissingMetadata { field: "namespace" }), "{error:?}");
}

#[test]
fn images_and_log_level_must_not_be_blank() {
    assert!(matches!(refused("image: \"\""), Error::InvalidImage { field: "spec.image", .. }));
    assert!(matches!(
        refused("sidecarInjection: { image: \"a b\" }"),
        Error::InvalidImage { field: "spec.sidecarInjection.image", .. }
    ));
    assert!(matches!(refused("logLevel: \"\""), Error::InvalidLogLevel { .. }));
}

#[test]
fn sidecar_injection_can_be_turned_off_or_customised() {
    assert_eq!(fixtures::validated("sidecarInjection: { enabled: false }").sidecar_injection, None);
    let sidecar = fixtures::validated("sidecarInjection: { image: my/sidecar:2, imagePullPolicy: Never }")
        .sidecar_injection
        .unwrap();
    assert_eq!((sidecar.image.as_str(), sidecar.image_pull_policy), ("my/sidecar:2", Some(ImagePullPolicy::Never)));
}

#[test]
fn tls_is_off_by_default_and_mutual_between_members_once_set() {
    let plain = fixtures::validated(DEFAULTS);
    assert_eq!((plain.tls.as_ref(), plain.tls_secret_name()), (None, None));

    let managed = fixtures::validated("tls: {}");
    assert_eq!(managed.tls.clone(), Some(Tls { cluster: true, client_facing: false, source: TlsSource::Managed }));
    assert_eq!(managed.tls_secret_name().as_deref(), Some("nacos-tls"));
    assert!(fixtures::validated(TLS).tls.is_some_and(|t| t.client_facing && t.cluster && t.is_managed()));

    let given = fixtures::validated(TLS_CERT_MANAGER);
    assert_eq!(given.tls.as_ref().map(|t| &t.source), Some(&TlsSource::Secret("nacos-members-tls".into())));
    assert_eq!(given.tls_secret_name().as_deref(), Some("nacos-members-tls"));
}

#[test]
fn tls_that_enables_nothing_or_names_no_valid_secret_is_refused() {
    assert!(
        matches!(refused("tls: { cluster: false }"), Error::TlsNothingEnabled),
        "{:?}",
        refused("tls: { cluster: false }")
    );
    let error = refused("tls: { secretName: Not_A_Name }");
    assert!(matches!(error, Error::InvalidTlsSecretName { ref name } if name == "Not_A_Name"), "{error:?}");
    // The operator sets the members' TLS; a [tls] section would contradict it.
    let error = refused("tls: {}\nconfig: \"[tls]\\ncluster = false\"");
    assert!(matches!(error, Error::ReservedConfigKey { ref key } if key == "tls"), "{error:?}");
    assert!(fixtures::validated("config: \"[tls]\\ncluster = false\"").tls.is_none());
}
