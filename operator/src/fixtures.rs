//! Test fixtures: `NacosCluster` objects written as YAML, shaped as the API server hands them to
//! the operator (name, namespace, uid and generation set; schema defaults applied by serde),
//! then run through the real `validate` and `build`.

use crate::controller::OperatorEnvironment;
use crate::controller::build::{Resources, build};
use crate::controller::server::ServerCapabilities;
use crate::controller::validate::{ValidatedCluster, validate};
use crate::crd::NacosCluster;

/// Namespace of every fixture.
pub(crate) const NAMESPACE: &str = "registry";
/// Name of every fixture.
pub(crate) const NAME: &str = "nacos";
/// Uid of every fixture.
pub(crate) const UID: &str = "6b0d4c8e-2f7a-4d51-9a7e-0c3f5e1d2a9b";

/// Nothing but defaults.
pub(crate) const DEFAULTS: &str = "{}";

/// Custom storage, resources, pull settings and every scheduling knob.
pub(crate) const CUSTOM_STORAGE_SCHEDULING: &str = r#"
    replicas: 5
    image: registry.example.com/nacos/registry:2.1.0
    imagePullPolicy: Always
    imagePullSecrets:
      - name: pull-secret
    resources:
      requests: { cpu: 500m, memory: 1Gi }
      limits: { memory: 2Gi }
    storage:
      size: 50Gi
      storageClassName: fast-ssd
    logLevel: registry_core=debug,info
    scheduling:
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
              - matchExpressions:
                  - { key: node-role, operator: In, values: [registry] }
      tolerations:
        - { key: dedicated, operator: Equal, value: registry, effect: NoSchedule }
      nodeSelector:
        disktype: ssd
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: topology.kubernetes.io/zone
          whenUnsatisfiable: DoNotSchedule
          labelSelector:
            matchLabels: { app.kubernetes.io/instance: nacos }
    service:
      type: LoadBalancer
      annotations:
        service.beta.kubernetes.io/aws-load-balancer-internal: "true"
    podDisruptionBudget:
      maxUnavailable: 2
    config: |
      [server]
      shutdown_grace_ms = 20000

      [naming]
      beat_check_interval_ms = 3000
"#;

/// Auth on, with the Secret's keys renamed.
pub(crate) const AUTH: &str = r#"
    auth:
      enabled: true
      secretName: nacos-auth
      secretKeys:
        token: jwt-secret
"#;

/// DNS on.
pub(crate) const DNS: &str = r#"
    dns:
      enabled: true
      zone: svc.example.
"#;

/// DNS with DNS over TLS on its conventional port, served with client-facing TLS.
pub(crate) const DNS_TLS: &str = r#"
    dns:
      enabled: true
      tlsPort: 853
    tls:
      clientFacing: true
"#;

/// TLS with operator-managed certificates: mutual TLS between members and on the client ports.
pub(crate) const TLS: &str = "tls: { clientFacing: true }";

/// TLS between members from a Secret cert-manager keeps current.
pub(crate) const TLS_CERT_MANAGER: &str = "tls: { secretName: nacos-members-tls }";

/// A full `NacosCluster` document around `spec` (YAML, any common indentation).
pub(crate) fn document(spec: &str) -> String {
    let spec = dedent(spec);
    let spec = if spec.trim().starts_with('{') {
        format!("spec: {}\n", spec.trim())
    } else {
        format!("spec:\n{}", spec.lines().map(|l| format!("  {l}\n")).collect::<String>())
    };
    format!(
        "apiVersion: nacos.rs/v1alpha1\nkind: NacosCluster\nmetadata:\n  name: {NAME}\n  namespace: {NAMESPACE}\n  \
         uid: {UID}\n  generation: 1\n{spec}"
    )
}

/// The `NacosCluster` with `spec`.
pub(crate) fn cluster(spec: &str) -> NacosCluster {
    let yaml = document(spec);
    serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("fixture does not parse: {e}\n{yaml}"))
}

/// The operator environment the fixtures run in.
pub(crate) fn env() -> OperatorEnvironment {
    OperatorEnvironment {
        cluster_domain: "cluster.local".into(),
        registry_image: "registry.test/registry:1.0.0".into(),
        sidecar_image: "registry.test/sidecar:1.0.0".into(),
    }
}

/// `spec` validated; panics with the error when refused.
pub(crate) fn validated(spec: &str) -> ValidatedCluster {
    validate(&cluster(spec), &env()).unwrap_or_else(|e| panic!("fixture refused: {}", snafu::Report::from_error(e)))
}

/// `spec` validated and built for the newest API server.
pub(crate) fn built(spec: &str) -> Resources {
    built_for(spec, &ServerCapabilities::NEWEST)
}

/// `spec` validated and built for an API server with `server`'s capabilities.
pub(crate) fn built_for(spec: &str, server: &ServerCapabilities) -> Resources {
    build(&validated(spec), server).unwrap_or_else(|e| panic!("fixture not built: {}", snafu::Report::from_error(e)))
}

/// `spec` with `replicas` set.
pub(crate) fn with_replicas(replicas: i32) -> String {
    format!("replicas: {replicas}\n")
}

/// Removes the indentation common to all non-blank lines.
fn dedent(text: &str) -> String {
    let indent =
        text.lines().filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len()).min().unwrap_or(0);
    text.lines().map(|l| format!("{}\n", l.get(indent..).unwrap_or(""))).collect()
}
