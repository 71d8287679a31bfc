//! `spec.tls` against the real API server: the operator makes its CA and members' Secrets,
//! owned by the cluster, the StatefulSet mounts the members' Secret, and growing the cluster
//! re-issues only the members' certificate from the same CA.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use nacos_operator::crd::NacosCluster;
use serde_json::json;

use crate::cluster::{NAME, create_cluster};
use crate::harness::{ControlPlane, eventually};
use crate::operator::Operator;

fn owned_by(secret: &Secret, uid: &str) -> bool {
    secret.owner_references().iter().any(|o| o.uid == uid && o.controller == Some(true) && o.kind == "NacosCluster")
}

fn data<'a>(secret: &'a Secret, key: &str) -> &'a [u8] {
    secret.data.as_ref().and_then(|d| d.get(key)).map_or(&[], |v| v.0.as_slice())
}

#[tokio::test]
async fn managed_tls_secrets_are_owned_by_the_cluster_mounted_and_reissued_when_it_grows() {
    let Some(plane) = ControlPlane::start() else { return };
    let client = plane.client().await;
    let namespace = plane.namespace(&client, "tls").await;
    let _operator = Operator::start(client.clone()).await;
    let cluster = create_cluster(&client, &namespace, json!({ "tls": { "clientFacing": true } })).await;
    let uid = cluster.uid().expect("uid");

    let secrets = Api::<Secret>::namespaced(client.clone(), &namespace);
    let stateful_sets = Api::<StatefulSet>::namespaced(client.clone(), &namespace);
    let found = eventually(Duration::from_secs(60), || async {
        let ca = secrets.get_opt("nacos-tls-ca").await.ok()??;
        let members = secrets.get_opt("nacos-tls").await.ok()??;
        let stateful_set = stateful_sets.get_opt(NAME).await.ok()??;
        Some((ca, members, stateful_set))
    })
    .await;
    let (ca, members, stateful_set) = found.expect("both Secrets and the StatefulSet are created");
    for secret in [&ca, &members] {
        assert!(owned_by(secret, &uid), "{} is not owned by the cluster", secret.name_any());
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    }
    assert_eq!(data(&members, "ca.crt"), data(&ca, "tls.crt"));
    assert!(!data(&members, "tls.key").is_empty());

    let pod = stateful_set.spec.and_then(|s| s.template.spec).expect("pod template");
    let volume = pod.volumes.iter().flatten().find(|v| v.name == "tls").expect("tls volume");
    assert_eq!(volume.secret.as_ref().and_then(|s| s.secret_name.as_deref()), Some("nacos-tls"));
    let container = &pod.containers[0];
    let mount = container.volume_mounts.iter().flatten().find(|m| m.name == "tls").expect("tls mount");
    assert_eq!((mount.mount_path.as_str(), mount.read_only), ("/etc/registry/tls", Some(true)));
    let env = |name: &str| container.env.iter().flatten().find(|e| e.name == name).and_then(|e| e.value.clone());
    assert_eq!(env("NACOS_TLS_CERT").as_deref(), Some("/etc/registry/tls/tls.crt"));
    assert_eq!(env("NACOS_TLS_CLIENT_FACING").as_deref(), Some("true"));

    // Five members: a new members' certificate from the same CA; the CA Secret is not written.
    let clusters = Api::<NacosCluster>::namespaced(client.clone(), &namespace);
    let patch = json!({ "spec": { "replicas": 5 } });
    clusters.patch(NAME, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("scale");
    let reissued = eventually(Duration::from_secs(60), || async {
        let now = secrets.get("nacos-tls").await.ok()?;
        (now.resource_version() != members.resource_version()).then_some(now)
    })
    .await
    .expect("the members' Secret is re-issued");
    assert_ne!(data(&reissued, "tls.crt"), data(&members, "tls.crt"));
    assert_eq!(data(&reissued, "ca.crt"), data(&ca, "tls.crt"));
    let ca_now = secrets.get("nacos-tls-ca").await.expect("CA Secret");
    assert_eq!(ca_now.resource_version(), ca.resource_version(), "the CA Secret was rewritten");
}
