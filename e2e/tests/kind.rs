//! The kind scenario, run by `e2e/kind/run` (ignored otherwise): a three-member `NacosCluster`
//! from the operator's default (freshly built) image, a demo app whose pods get the injected
//! sidecar, then registry and app pods killed, 3 → 5 → 3 members and an image roll, with writes in
//! flight throughout. After each step nothing registered or configured may be lost: the configs
//! read back through the sidecar, the app's instances are the app's pods, and DNS (CoreDNS
//! forwarding the registry's zone, as docs/kubernetes.md says) resolves the service to them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use e2e::{KindCluster, eventually};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use nacos_operator::crd::{ConditionStatus, ConditionType, MemberRole, NacosCluster, NacosClusterStatus};
use nacos_operator::webhook::inject::{SIDECAR_CONTAINER, annotation};
use registry_proto::contract::{dns::DEFAULT_ZONE, ports::DEFAULT_HTTP};
use serde_json::{Value, json};

/// Name of the `NacosCluster` (and of its client Service).
const CLUSTER: &str = "nacos";
/// Name of the demo Deployment, its app container's name and the service it registers.
const APP: &str = "demo";
const APP_CONTAINER: &str = "app";
const APP_PORT: u16 = 8080;
const GROUP: &str = "DEFAULT_GROUP";
/// A config the app reads.
const APP_CONFIG: (&str, &str) = ("demo.properties", "greeting=hello");
/// A persistent instance (kept by Raft, not by a connection) that must survive everything; the
/// address is from the test range and nothing answers there, so it is listed unhealthy.
const PERSISTENT: (&str, &str) = ("e2e-persistent", "198.18.0.10");
/// How long a membership change or a roll may take on a small runner (× IT_PATIENCE).
const CLUSTER_DEADLINE: Duration = Duration::from_secs(600);
const APP_DEADLINE: Duration = Duration::from_secs(180);

struct Scenario {
    kind: KindCluster,
    client: Client,
    ns: String,
}

#[tokio::test]
#[ignore = "e2e: needs a kind cluster; run e2e/kind/run"]
async fn nothing_registered_or_configured_is_lost_through_pod_kills_scaling_and_an_image_roll() {
    let Some(kind) = KindCluster::from_env() else { return };
    let client = kind.client().await;
    let ns = kind.namespace(&client, "e2e-kind").await;
    let s = Scenario { kind, client, ns };

    s.create_cluster(3).await;
    let status = s.wait_members(3).await;
    println!("cluster available: leader {:?}", status.leader);
    s.forward_zone_from_coredns().await;
    s.deploy_app(2).await;
    let pods = s.wait_app(2).await;
    for (pod, _) in &pods {
        s.assert_injected(pod).await;
    }

    let (first, _) = &pods[0];
    s.publish(first, APP_CONFIG.0, APP_CONFIG.1).await.expect("publish the app's config");
    let seeds: Vec<String> = (0..10).map(|i| format!("seed-{i}")).collect();
    for id in &seeds {
        s.publish(first, id, &content_of(id)).await.expect("publish a seed config");
    }
    s.register_persistent(first).await;
    s.assert_nothing_lost(&seeds).await;

    // Writes through the app's sidecars while pods die, members come and go and roll.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_until(
        Scenario { kind: s.kind.clone(), client: s.client.clone(), ns: s.ns.clone() },
        stop.clone(),
    ));

    let leader = s.wait_members(3).await.leader.expect("a leader");
    println!("killing the leader's pod {leader}");
    s.kill_pod(&leader).await;
    s.wait_members(3).await;
    s.assert_nothing_lost(&seeds).await;

    let (victim, _) = s.wait_app(2).await.remove(0);
    println!("killing app pod {victim}");
    s.kill_pod(&victim).await;
    s.wait_app(2).await;
    s.assert_nothing_lost(&seeds).await;

    for replicas in [5, 3] {
        println!("scaling to {replicas}");
        s.scale(replicas).await;
        s.wait_members(replicas).await;
        s.assert_nothing_lost(&seeds).await;
    }

    println!("rolling the members to {}", s.kind.roll_image);
    s.roll_to(&s.kind.roll_image.clone()).await;
    s.assert_nothing_lost(&seeds).await;

    stop.store(true, Ordering::Relaxed);
    let written = writer.await.expect("the writer task");
    assert!(written.len() >= 10, "only {} writes were acknowledged during the scenario", written.len());
    let mut all = seeds;
    all.extend(written);
    s.assert_nothing_lost(&all).await;

    Api::<k8s_openapi::api::core::v1::Namespace>::all(s.client.clone())
        .delete(&s.ns, &DeleteParams::default())
        .await
        .expect("delete the namespace");
}

/// Publishes configs through any running app pod's sidecar until `stop`; returns the ids whose
/// publish was acknowledged (failures while pods die or leaders change are expected and retried
/// under a new id).
async fn write_until(s: Scenario, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut acknowledged = Vec::new();
    let mut next = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let pods = s.app_pods().await;
        let Some((pod, _)) = pods.get(next as usize % pods.len().max(1)) else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let id = format!("load-{next}");
        next += 1;
        if s.publish(pod, &id, &content_of(&id)).await.is_ok() {
            acknowledged.push(id);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    acknowledged
}

fn content_of(id: &str) -> String {
    format!("value-of-{id}")
}

impl Scenario {
    fn clusters(&self) -> Api<NacosCluster> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// The `NacosCluster` under test: default image (the chart's `registryImage`), DNS on, small
    /// volumes (kind's local-path provisioner).
    async fn create_cluster(&self, replicas: i32) {
        let cluster: NacosCluster = serde_json::from_value(json!({
            "apiVersion": "nacos.rs/v1alpha1",
            "kind": "NacosCluster",
            "metadata": { "name": CLUSTER, "namespace": self.ns },
            "spec": {
                "replicas": replicas,
                "storage": { "size": "1Gi" },
                "dns": { "enabled": true },
            },
        }))
        .expect("a NacosCluster");
        self.clusters().create(&PostParams::default(), &cluster).await.expect("create the NacosCluster");
    }

    /// Waits until the cluster has `replicas` ready voting members, a leader, `Available=True`
    /// and a status for its current generation; returns that status.
    async fn wait_members(&self, replicas: i32) -> NacosClusterStatus {
        let found = eventually(CLUSTER_DEADLINE, || async {
            let cluster = self.clusters().get(CLUSTER).await.ok()?;
            let status = cluster.status?;
            let available = status
                .conditions
                .iter()
                .any(|c| c.type_ == ConditionType::Available && c.status == ConditionStatus::True);
            let voters = status.members.iter().filter(|m| matches!(m.role, MemberRole::Leader | MemberRole::Follower));
            let done = available
                && status.leader.is_some()
                && status.ready_replicas == replicas
                && status.members.len() == replicas as usize
                && voters.count() == replicas as usize
                && status.observed_generation == cluster.metadata.generation;
            done.then_some(status)
        })
        .await;
        match found {
            Some(status) => status,
            None => {
                let status = self.clusters().get(CLUSTER).await.map(|c| c.status);
                panic!("the cluster did not reach {replicas} ready voting members: {status:#?}")
            }
        }
    }

    async fn scale(&self, replicas: i32) {
        self.clusters()
            .patch(CLUSTER, &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": replicas } })))
            .await
            .expect("scale the NacosCluster");
    }

    /// Changes the registry image and waits until every member runs it, ready, with the
    /// cluster available again.
    async fn roll_to(&self, image: &str) {
        self.clusters()
            .patch(CLUSTER, &PatchParams::default(), &Patch::Merge(json!({ "spec": { "image": image } })))
            .await
            .expect("change the NacosCluster's image");
        let replicas = self.clusters().get(CLUSTER).await.expect("the NacosCluster").spec.replicas;
        let sets: Api<StatefulSet> = Api::namespaced(self.client.clone(), &self.ns);
        let rolled = eventually(CLUSTER_DEADLINE, || async {
            let status = sets.get(CLUSTER).await.ok()?.status?;
            let done = status.update_revision.is_some()
                && status.current_revision == status.update_revision
                && status.updated_replicas == Some(replicas)
                && status.ready_replicas == Some(replicas);
            let pods = self.pods().list(&ListParams::default().labels(&member_selector())).await.ok()?;
            let on_image = pods.items.len() == replicas as usize
                && pods.items.iter().all(|p| {
                    p.spec.as_ref().is_some_and(|s| s.containers.iter().any(|c| c.image.as_deref() == Some(image)))
                });
            (done && on_image).then_some(())
        })
        .await;
        assert!(rolled.is_some(), "the members did not roll to {image}");
        self.wait_members(replicas).await;
    }

    /// Deletes a pod without a grace period: its processes are killed.
    async fn kill_pod(&self, name: &str) {
        let now = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
        self.pods().delete(name, &now).await.expect("delete the pod");
    }

    /// Makes the cluster DNS forward the registry's zone to the client Service's DNS port: the
    /// `Corefile` server block of docs/kubernetes.md ("DNS"). CoreDNS's `reload` plugin picks it up.
    async fn forward_zone_from_coredns(&self) {
        let services: Api<Service> = Api::namespaced(self.client.clone(), &self.ns);
        let service = services.get(CLUSTER).await.expect("the client Service");
        let spec = service.spec.expect("a Service spec");
        let ip = spec.cluster_ip.expect("a ClusterIP");
        let port = spec.ports.unwrap_or_default().into_iter().find(|p| p.protocol.as_deref() == Some("UDP"));
        let port = port.expect("a DNS (UDP) port on the client Service").port;
        let block = format!("{DEFAULT_ZONE}:53 {{\n    forward . {ip}:{port}\n}}\n");
        let maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), "kube-system");
        let corefile = maps.get("coredns").await.expect("the coredns ConfigMap").data.unwrap_or_default();
        let corefile = corefile.get("Corefile").cloned().unwrap_or_default();
        // A block from an earlier run points at another ClusterIP: replace it.
        let kept = match corefile.find(&format!("{DEFAULT_ZONE}:53 {{")) {
            Some(start) => {
                let end = corefile[start..].find('}').map_or(corefile.len(), |i| start + i + 1);
                format!("{}{}", &corefile[..start], corefile[end..].trim_start_matches('\n'))
            }
            None => corefile,
        };
        let patch = json!({ "data": { "Corefile": format!("{kept}{block}") } });
        maps.patch("coredns", &PatchParams::default(), &Patch::Merge(patch)).await.expect("patch the Corefile");
    }

    /// The demo app: a busybox serving HTTP on `APP_PORT`, annotated for the sidecar, which
    /// registers each pod as service `APP` once its port accepts connections.
    async fn deploy_app(&self, replicas: i32) {
        let deployment: Deployment = serde_json::from_value(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": APP, "namespace": self.ns },
            "spec": {
                "replicas": replicas,
                "selector": { "matchLabels": { "app": APP } },
                "template": {
                    "metadata": {
                        "labels": { "app": APP },
                        "annotations": {
                            annotation::INJECT: "true",
                            annotation::CLUSTER: CLUSTER,
                            annotation::SERVICE: APP,
                            annotation::PORT: "http",
                            annotation::PROBE: "tcp",
                        },
                    },
                    "spec": {
                        "terminationGracePeriodSeconds": 10,
                        "containers": [{
                            "name": APP_CONTAINER,
                            "image": self.kind.app_image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["sh", "-c", format!(
                                "mkdir -p /tmp/www && echo ok > /tmp/www/index.html && exec httpd -f -p {APP_PORT} -h /tmp/www"
                            )],
                            "ports": [{ "name": "http", "containerPort": APP_PORT, "protocol": "TCP" }],
                            "readinessProbe": { "tcpSocket": { "port": "http" }, "periodSeconds": 2 },
                        }],
                    },
                },
            },
        }))
        .expect("a Deployment");
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.ns);
        api.create(&PostParams::default(), &deployment).await.expect("create the demo app");
    }

    /// Running, ready app pods that are not being deleted: (name, IP).
    async fn app_pods(&self) -> Vec<(String, String)> {
        let Ok(pods) = self.pods().list(&ListParams::default().labels(&format!("app={APP}"))).await else {
            return Vec::new();
        };
        let mut found: Vec<(String, String)> = pods
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| {
                let status = p.status?;
                let ready = status.conditions?.iter().any(|c| c.type_ == "Ready" && c.status == "True");
                ready.then_some((p.metadata.name?, status.pod_ip?))
            })
            .collect();
        found.sort();
        found
    }

    /// Waits until exactly `replicas` app pods are ready and the registry lists exactly them,
    /// healthy, under `APP`; returns them.
    async fn wait_app(&self, replicas: usize) -> Vec<(String, String)> {
        let found = eventually(APP_DEADLINE, || async {
            let pods = self.app_pods().await;
            if pods.len() != replicas {
                return None;
            }
            let ips: BTreeSet<String> = pods.iter().map(|(_, ip)| ip.clone()).collect();
            let listed = self.instances(&pods[0].0, APP).await.ok()?;
            let healthy: BTreeSet<String> = listed.iter().filter(|i| i.1).map(|i| i.0.clone()).collect();
            (listed.len() == replicas && healthy == ips).then_some(pods)
        })
        .await;
        let pods = self.app_pods().await;
        found.unwrap_or_else(|| panic!("the registry did not list exactly the {replicas} app pods {pods:?}"))
    }

    /// The pod has the injected sidecar next to the app.
    async fn assert_injected(&self, pod: &str) {
        let pod = self.pods().get(pod).await.expect("the app pod");
        let names: Vec<String> = pod.spec.expect("a pod spec").containers.into_iter().map(|c| c.name).collect();
        assert!(names.iter().any(|n| n == SIDECAR_CONTAINER), "no {SIDECAR_CONTAINER} container in {names:?}");
    }

    /// Runs a shell command in the app container of `pod`.
    async fn sh(&self, pod: &str, script: &str) -> Result<String, String> {
        self.kind.exec(&self.ns, pod, APP_CONTAINER, &["sh", "-c", script]).await
    }

    /// Publishes a config through the pod's sidecar (the local Open API).
    async fn publish(&self, pod: &str, data_id: &str, content: &str) -> Result<(), String> {
        let script = format!(
            "wget -qO- --post-data 'dataId={data_id}&group={GROUP}&content={content}' \
             http://127.0.0.1:{DEFAULT_HTTP}/nacos/v1/cs/configs"
        );
        let answer = self.sh(pod, &script).await?;
        if answer.trim() == "true" { Ok(()) } else { Err(format!("publish {data_id} answered {answer:?}")) }
    }

    /// Registers `PERSISTENT` on the cluster (straight to the client Service).
    async fn register_persistent(&self, pod: &str) {
        let (service, ip) = PERSISTENT;
        let script = format!(
            "wget -qO- --post-data 'serviceName={service}&ip={ip}&port=80&ephemeral=false' {}/nacos/v1/ns/instance",
            self.registry_url()
        );
        let answer = self.sh(pod, &script).await.expect("register the persistent instance");
        assert_eq!(answer.trim(), "ok", "registering the persistent instance");
    }

    /// The client Service's HTTP address, as seen from the app pods.
    fn registry_url(&self) -> String {
        format!("http://{CLUSTER}.{}.svc.cluster.local:{DEFAULT_HTTP}", self.ns)
    }

    /// The registry's instance list of `service` (all, healthy or not): (ip, healthy).
    async fn instances(&self, pod: &str, service: &str) -> Result<Vec<(String, bool)>, String> {
        let script = format!("wget -qO- '{}/nacos/v1/ns/instance/list?serviceName={service}'", self.registry_url());
        let body: Value = serde_json::from_str(&self.sh(pod, &script).await?).map_err(|e| e.to_string())?;
        let hosts = body["hosts"].as_array().ok_or_else(|| format!("no hosts in {body}"))?;
        Ok(hosts
            .iter()
            .filter_map(|h| Some((h["ip"].as_str()?.to_owned(), h["healthy"].as_bool().unwrap_or(false))))
            .collect())
    }

    /// A records of `name` as the pod's resolver (the cluster DNS) answers them.
    async fn resolve(&self, pod: &str, name: &str) -> BTreeSet<String> {
        // busybox nslookup: "Name: …" then one "Address: IP" line per record; its exit status
        // also reflects the AAAA query, so only the output counts.
        let output = self.sh(pod, &format!("nslookup -type=a {name} || true")).await.unwrap_or_default();
        let answers = output.split_once("Name:").map_or("", |(_, rest)| rest);
        answers.lines().filter_map(|l| l.trim().strip_prefix("Address:")).map(|a| a.trim().to_owned()).collect()
    }

    /// Every config in `ids` reads back with its content through each app pod's sidecar, the
    /// app's config too; the app's instances are its pods; the persistent instance is still
    /// registered; the service name resolves to the app's pods.
    async fn assert_nothing_lost(&self, ids: &[String]) {
        let pods = self.wait_app(2).await;
        let ips: BTreeSet<String> = pods.iter().map(|(_, ip)| ip.clone()).collect();
        let list = ids.join(" ");
        for (pod, _) in &pods {
            let script = format!(
                "for id in {list} {app}; do printf '%s=' \"$id\"; \
                 wget -qO- \"http://127.0.0.1:{DEFAULT_HTTP}/nacos/v1/cs/configs?dataId=$id&group={GROUP}\" || printf MISSING; \
                 echo; done",
                app = APP_CONFIG.0
            );
            let answer = self.sh(pod, &script).await.expect("read the configs back");
            let read: BTreeSet<&str> = answer.lines().collect();
            let mut expected: Vec<String> = ids.iter().map(|id| format!("{id}={}", content_of(id))).collect();
            expected.push(format!("{}={}", APP_CONFIG.0, APP_CONFIG.1));
            let lost: Vec<&String> = expected.iter().filter(|e| !read.contains(e.as_str())).collect();
            assert!(lost.is_empty(), "configs lost or changed, read through {pod}'s sidecar: {lost:?}");
        }
        let (first, _) = &pods[0];
        let persistent = self.instances(first, PERSISTENT.0).await.expect("list the persistent service");
        assert!(persistent.iter().any(|(ip, _)| ip == PERSISTENT.1), "the persistent instance is gone: {persistent:?}");
        let name = format!("{APP}.{DEFAULT_ZONE}");
        let resolved = eventually(APP_DEADLINE, || async {
            let answers = self.resolve(first, &name).await;
            (answers == ips).then_some(())
        })
        .await;
        let last = self.resolve(first, &name).await;
        assert!(resolved.is_some(), "{name} resolves to {last:?}, not the app pods {ips:?}");
    }
}

fn member_selector() -> String {
    format!("app.kubernetes.io/instance={CLUSTER},app.kubernetes.io/managed-by=nacos-operator")
}
