//! Which instances of a service the server checks, and how (spec §13.4): every persistent
//! instance whose cluster's checker is not `NONE`, on the instance's port or the cluster's check
//! port, except those a sidecar reports for. Pure: who is responsible is the caller's question.

use std::sync::Arc;

use registry_proto::contract::sidecar::HEALTH_REPORTED_METADATA;
use registry_proto::probe::checker::HealthChecker;
use serde_json::Value;
use smol_str::SmolStr;

use crate::model::{ClusterMetadata, Instance, InstanceKey, ServiceMetadata};

/// How one instance is checked. A task runs one spec; a changed spec means a new task, so a new
/// checker or port starts with a fresh schedule and streak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spec {
    /// What to run (never `NONE`).
    pub(crate) checker: HealthChecker,
    /// Address as registered (an IP, or a host name resolved at each check).
    pub(crate) host: SmolStr,
    /// Port probed.
    pub(crate) port: u16,
}

/// The checker of a cluster. The API accepts the `type` in any case (as Nacos does), the probe
/// crate's JSON wants it upper case; a missing `type` is Nacos' default, TCP.
pub(crate) fn checker_of(cluster: &ClusterMetadata) -> Result<HealthChecker, serde_json::Error> {
    let mut json = cluster.health_checker.clone();
    if let Value::Object(fields) = &mut json {
        let kind = fields.get("type").and_then(Value::as_str).map_or_else(|| "TCP".to_owned(), str::to_ascii_uppercase);
        fields.insert("type".to_owned(), Value::String(kind));
    }
    serde_json::from_value(json)
}

/// Whether a sidecar reports this instance's health (then the server does not probe it).
pub(crate) fn reported_by_sidecar(instance: &Instance) -> bool {
    instance.metadata.get(HEALTH_REPORTED_METADATA).is_some_and(|v| !v.is_empty())
}

/// The checks a service's instances need, by instance. Clusters without metadata use Nacos'
/// default (TCP on the instance port); a checker JSON the probe crate cannot read checks nothing
/// (logged), since guessing a checker would probe what the user did not ask for.
pub(crate) fn targets(
    instances: &[Arc<Instance>],
    metadata: Option<&ServiceMetadata>,
) -> impl Iterator<Item = (InstanceKey, Spec)> {
    let default = ClusterMetadata::default();
    instances.iter().filter(|i| !i.ephemeral && !reported_by_sidecar(i)).filter_map(move |i| {
        let cluster = metadata.and_then(|m| m.clusters.get(i.cluster.as_str())).unwrap_or(&default);
        let checker = match checker_of(cluster) {
            Ok(HealthChecker::None) => return None,
            Ok(checker) => checker,
            Err(error) => {
                tracing::debug!(instance = %i.key(), %error, "unreadable health checker: instance not checked");
                return None;
            }
        };
        let port = if cluster.use_instance_port { i.port } else { cluster.health_check_port };
        Some((i.key(), Spec { checker, host: i.ip.clone(), port }))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use registry_proto::probe::checker::HttpChecker;
    use serde_json::json;

    use super::*;

    fn instance(ip: &str, port: u16, cluster: &str, ephemeral: bool) -> Arc<Instance> {
        Arc::new(Instance::new(ip, port, cluster, ephemeral))
    }

    fn cluster(checker: Value, use_instance_port: bool, port: u16) -> ClusterMetadata {
        ClusterMetadata {
            health_checker: checker,
            use_instance_port,
            health_check_port: port,
            metadata: BTreeMap::new(),
        }
    }

    fn plan(instances: &[Arc<Instance>], metadata: Option<&ServiceMetadata>) -> Vec<(String, Spec)> {
        targets(instances, metadata).map(|(k, s)| (k.to_string(), s)).collect()
    }

    fn spec(checker: HealthChecker, host: &str, port: u16) -> Spec {
        Spec { checker, host: host.into(), port }
    }

    #[test]
    fn persistent_instances_are_checked_per_their_clusters_checker_and_port() {
        let mut meta = ServiceMetadata::new(false);
        meta.clusters.insert("web".into(), cluster(json!({ "type": "http", "path": "/up" }), true, 80));
        meta.clusters.insert("db".into(), cluster(json!({ "type": "TCP" }), false, 3306));
        meta.clusters.insert("manual".into(), cluster(json!({ "type": "NONE" }), true, 80));
        let instances = [
            instance("10.0.0.1", 8080, "web", false),
            instance("10.0.0.2", 9999, "db", false),
            instance("10.0.0.3", 7000, "manual", false),
            instance("10.0.0.4", 7001, "DEFAULT", false),
            instance("10.0.0.5", 7002, "web", true),
        ];
        let http = HealthChecker::Http(HttpChecker { path: "/up".into(), ..HttpChecker::default() });
        assert_eq!(
            plan(&instances, Some(&meta)),
            vec![
                ("10.0.0.1:8080:web".to_owned(), spec(http, "10.0.0.1", 8080)),
                ("10.0.0.2:9999:db".to_owned(), spec(HealthChecker::Tcp, "10.0.0.2", 3306)),
                ("10.0.0.4:7001:DEFAULT".to_owned(), spec(HealthChecker::Tcp, "10.0.0.4", 7001)),
            ],
            "NONE and ephemeral instances are not checked; a cluster without metadata gets TCP"
        );
        assert_eq!(plan(&instances[3..4], None).len(), 1, "a service without metadata: TCP");
    }

    #[test]
    fn instances_a_sidecar_reports_for_are_not_checked() {
        let mut owned = Instance::new("10.0.0.1", 80, "DEFAULT", false);
        owned.metadata.insert(HEALTH_REPORTED_METADATA.into(), "sidecar".into());
        let mut empty_value = Instance::new("10.0.0.2", 80, "DEFAULT", false);
        empty_value.metadata.insert(HEALTH_REPORTED_METADATA.into(), String::new());
        let planned = plan(&[Arc::new(owned), Arc::new(empty_value)], None);
        assert_eq!(planned.len(), 1);
        assert_eq!(planned[0].0, "10.0.0.2:80:DEFAULT", "an empty value does not count");
    }

    #[test]
    fn checker_type_is_case_insensitive_and_defaults_to_tcp() {
        let of = |v: Value| checker_of(&cluster(v, true, 80)).ok();
        assert_eq!(of(json!({ "type": "none" })), Some(HealthChecker::None));
        assert_eq!(of(json!({ "type": "Tcp" })), Some(HealthChecker::Tcp));
        assert_eq!(of(json!({})), Some(HealthChecker::Tcp));
        assert_eq!(of(json!({ "type": "HTTP", "path": 5 })), None, "unreadable: not guessed");
    }
}
