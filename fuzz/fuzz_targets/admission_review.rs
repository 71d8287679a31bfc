//! The sidecar-injection webhook's request path without a kube client: `parse_review`, then
//! `decide`; a pod that asks for injection is completed against fixed `NacosCluster`s, as the
//! handler does after its lookup: one plain, one with client-facing TLS whose CA is the input
//! itself (anything but a CA must be refused, never panicked on).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use nacos_operator::controller::OperatorEnvironment;
use nacos_operator::crd::NacosCluster;
use nacos_operator::webhook::inject::{ClusterRef, Decision, Settings, complete, decide, parse_review};

static SETTINGS: LazyLock<Settings> = LazyLock::new(|| Settings {
    environment: OperatorEnvironment::default(),
    default_cluster: ClusterRef::parse("registry/nacos", "default"),
});

fn cluster(spec: serde_json::Value) -> NacosCluster {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "nacos.rs/v1alpha1",
        "kind": "NacosCluster",
        "metadata": { "name": "nacos", "namespace": "registry", "uid": "u1", "generation": 1 },
        "spec": spec
    }))
    .expect("the fixed NacosCluster decodes")
}

static CLUSTER: LazyLock<NacosCluster> = LazyLock::new(|| cluster(serde_json::json!({})));
static TLS_CLUSTER: LazyLock<NacosCluster> =
    LazyLock::new(|| cluster(serde_json::json!({ "tls": { "clientFacing": true } })));

fuzz_target!(|data: &[u8]| {
    let Ok(request) = parse_review(data) else { return };
    match decide(&request, &SETTINGS) {
        Decision::Respond(_) => {}
        Decision::Lookup(injection) => {
            let _ = complete(&request, &injection, Some(&CLUSTER), None, &SETTINGS);
            let _ = complete(&request, &injection, None, None, &SETTINGS);
            let _ = complete(&request, &injection, Some(&TLS_CLUSTER), Some(data), &SETTINGS);
        }
    }
});
