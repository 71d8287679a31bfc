//! A process kubelet: runs the pods of one namespace as real processes, each pod in a network
//! namespace of its own (its IP) on the network lab's bridge, and writes their status back.
//!
//! What it does, as a kubelet would:
//! - binds unscheduled pods to its node (no scheduler runs in this tier);
//! - materialises volumes: ConfigMaps and Secrets as files, a `persistentVolumeClaim` as a
//!   directory kept by claim name (a pod that comes back finds its data), `emptyDir`, and
//!   downward-API label and annotation files;
//! - mounts them at the container's paths in a private mount namespace: the parent of each
//!   mount path gets an overlay whose upper layer lives in the test's directory, so the path
//!   can be made and bound there without touching the host's filesystem;
//! - gives each container its environment (values, field, Secret and ConfigMap references,
//!   `HOSTNAME`), expands `$(VAR)` and `$$` in command and args, runs it with the image's
//!   entrypoint when it has no command ([`Images`]), and restarts it when it exits;
//! - reports `podIP`, `Running` and `Ready` from each container's HTTP readiness probe;
//! - on deletion: SIGTERM, the grace period, SIGKILL, then removes the pod from the API server
//!   (the StatefulSet controller then makes it again).
//!
//! Cluster DNS for the pods is the `cluster_dns` stand-in on the lab's gateway, port 53.
//! Test-only simplifications: images are not pulled (an image maps to a local program), the
//! security context is not applied (processes run as the test's user), lifecycle hooks and
//! liveness/startup probes are not run.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Node, Pod, Secret, Volume};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client, ResourceExt};
use netlab::{Lab, NodeOptions};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::cluster_dns;

/// The node every pod of this kubelet is bound to.
pub(crate) const NODE: &str = "process-kubelet";
/// How often pods are listed and probed.
const TICK: Duration = Duration::from_millis(250);
/// The longest a terminating container is given before SIGKILL (a test's budget, not the pod's).
const MAX_GRACE: Duration = Duration::from_secs(30);
/// Least time between two starts of a container that keeps exiting.
const RESTART_BACKOFF: Duration = Duration::from_secs(1);

/// The program an image runs when its container has no `command` (its entrypoint).
pub(crate) type Images = BTreeMap<String, Vec<String>>;

/// A running kubelet; stops every process it started when dropped.
pub(crate) struct Kubelet {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    client: Client,
    namespace: String,
    lab: Mutex<Lab>,
    pods: Mutex<BTreeMap<String, Slot>>,
    /// `claims/<claim>` (kept across pods), `pods/<uid>/…` (volumes, overlays, logs).
    dir: tempfile::TempDir,
    /// `PATH` of every container: the workspace's binaries first.
    path: String,
    images: Images,
    /// Content of each pod's `/etc/resolv.conf`.
    resolv_conf: String,
    /// The readiness prober's client (like the kubelet's, it does not verify certificates).
    prober: reqwest::Client,
    /// How each container of a stopped pod ended, by `<pod>/<container>`.
    exits: Mutex<BTreeMap<String, ExitStatus>>,
}

enum Slot {
    Running(PodRun),
    /// Being stopped by a task of its own.
    Terminating,
}

struct PodRun {
    name: String,
    uid: String,
    node: netlab::Node,
    ip: Ipv4Addr,
    dir: PathBuf,
    containers: Vec<ContainerRun>,
    /// The readiness last written to the API server.
    reported: Option<bool>,
}

struct ContainerRun {
    spec: Container,
    /// The prepared command (re-spawned on restart).
    launch: Vec<String>,
    env: BTreeMap<String, String>,
    log: PathBuf,
    child: Child,
    started: Instant,
    restarts: i32,
    ready: bool,
}

impl Kubelet {
    /// Runs the pods of `namespace` in `lab`'s network; `bin` holds the workspace binaries the
    /// pods' commands name; cluster DNS is served on the lab's gateway.
    pub(crate) async fn start(client: Client, namespace: &str, lab: Lab, bin: &Path, images: Images) -> Self {
        let gateway = lab.gateway();
        // The node the pods are bound to (the endpoint-slice controller looks it up).
        let node: Node =
            serde_json::from_value(json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": NODE },
            "status": { "addresses": [{ "type": "InternalIP", "address": gateway.to_string() }] } }))
            .expect("node");
        match Api::<Node>::all(client.clone()).create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.is_already_exists() => {}
            Err(error) => panic!("node {NODE}: {error}"),
        }
        cluster_dns::serve(client.clone(), SocketAddr::from((gateway, 53)));
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let resolv_conf = format!(
            "nameserver {gateway}\nsearch {namespace}.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
        let shared = Arc::new(Shared {
            client,
            namespace: namespace.to_owned(),
            lab: Mutex::new(lab),
            pods: Mutex::new(BTreeMap::new()),
            dir: tempfile::Builder::new().prefix("process-kubelet-").tempdir().expect("kubelet dir"),
            path,
            images,
            resolv_conf,
            prober: reqwest::Client::builder()
                .timeout(Duration::from_secs(1))
                .no_proxy()
                .danger_accept_invalid_certs(true)
                .build()
                .expect("prober"),
            exits: Mutex::new(BTreeMap::new()),
        });
        let task = tokio::spawn(run(shared.clone()));
        Self { shared, task }
    }

    /// The lab's gateway: where the test reaches pods from, and cluster DNS listens.
    pub(crate) fn gateway(&self) -> Ipv4Addr {
        lock(&self.shared.lab).gateway()
    }

    /// The IP of the running pod `name`.
    pub(crate) fn pod_ip(&self, name: &str) -> Option<Ipv4Addr> {
        self.view().ip(name)
    }

    /// A handle that reads pod IPs from other tasks (the operator's registry locator).
    pub(crate) fn view(&self) -> PodIps {
        PodIps(self.shared.clone())
    }

    /// How container `container` of the stopped pod `pod` ended (SIGKILLed after its grace
    /// period shows as a signal, not a success).
    pub(crate) fn exit_status(&self, pod: &str, container: &str) -> Option<ExitStatus> {
        lock(&self.shared.exits).get(&format!("{pod}/{container}")).copied()
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) a container: a hung process, which its probes see
    /// time out, and which is not restarted as an exited one would be.
    pub(crate) fn freeze(&self, pod: &str, container: &str, frozen: bool) {
        let table = lock(&self.shared.pods);
        let Some(Slot::Running(run)) = table.get(pod) else { panic!("pod {pod} does not run") };
        let found = run.containers.iter().find(|c| c.spec.name == container);
        let pid = found.unwrap_or_else(|| panic!("no container {container} in {pod}")).child.id().to_string();
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let sent = Command::new("kill").args([signal, &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill {signal} {pid}");
    }

    /// The uid of the pod `name` this kubelet runs now.
    pub(crate) fn pod_uid(&self, name: &str) -> Option<String> {
        match lock(&self.shared.pods).get(name) {
            Some(Slot::Running(run)) => Some(run.uid.clone()),
            _ => None,
        }
    }

    /// The last lines of each container log of the pods this kubelet runs (for a failing test).
    pub(crate) fn logs(&self) -> String {
        let mut out = String::new();
        for (name, slot) in lock(&self.shared.pods).iter() {
            let Slot::Running(run) = slot else { continue };
            for container in &run.containers {
                let text = std::fs::read_to_string(&container.log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                out.push_str(&format!("--- {name}/{} (restarts {})\n", container.spec.name, container.restarts));
                for line in &lines[lines.len().saturating_sub(40)..] {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let mut pods = lock(&self.shared.pods);
        for slot in pods.values_mut() {
            if let Slot::Running(run) = slot {
                for container in &mut run.containers {
                    let _ = container.child.kill();
                    let _ = container.child.wait();
                }
            }
        }
    }
}

/// Pod IPs of a running kubelet, readable from anywhere.
#[derive(Clone)]
pub(crate) struct PodIps(Arc<Shared>);

impl PodIps {
    /// The IP of the running pod `name`.
    pub(crate) fn ip(&self, name: &str) -> Option<Ipv4Addr> {
        match lock(&self.0.pods).get(name) {
            Some(Slot::Running(run)) => Some(run.ip),
            _ => None,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn run(shared: Arc<Shared>) {
    let pods: Api<Pod> = Api::namespaced(shared.client.clone(), &shared.namespace);
    loop {
        if let Ok(list) = pods.list(&ListParams::default()).await {
            let listed: BTreeSet<String> = list.items.iter().map(ResourceExt::name_any).collect();
            for pod in list.items {
                if let Err(error) = sync(&shared, &pods, pod).await {
                    eprintln!("process kubelet: {error}");
                }
            }
            // Gone without our part (a forced delete): stop what still runs.
            let gone: Vec<String> = lock(&shared.pods).keys().filter(|n| !listed.contains(*n)).cloned().collect();
            for name in gone {
                let removed = lock(&shared.pods).remove(&name);
                if let Some(Slot::Running(run)) = removed {
                    stop(&shared, run, Duration::ZERO).await;
                }
            }
        }
        probe_all(&shared, &pods).await;
        tokio::time::sleep(TICK).await;
    }
}

/// Brings one pod towards what the API server says.
async fn sync(shared: &Arc<Shared>, pods: &Api<Pod>, pod: Pod) -> Result<(), String> {
    let name = pod.name_any();
    let uid = pod.uid().unwrap_or_default();
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    if node.is_none() {
        let binding = json!({ "apiVersion": "v1", "kind": "Binding", "metadata": { "name": name },
                              "target": { "apiVersion": "v1", "kind": "Node", "name": NODE } });
        pods.create_subresource::<_, serde_json::Value>("binding", &name, &PostParams::default(), &binding)
            .await
            .map_err(|e| format!("bind {name}: {e}"))?;
        return Ok(());
    }
    if node.as_deref() != Some(NODE) {
        return Ok(());
    }
    let known = match lock(&shared.pods).get(&name) {
        Some(Slot::Running(run)) => Some(run.uid.clone()),
        Some(Slot::Terminating) => return Ok(()),
        None => None,
    };
    if pod.metadata.deletion_timestamp.is_some() {
        let grace = Duration::from_secs(pod.metadata.deletion_grace_period_seconds.unwrap_or(0).max(0).unsigned_abs());
        let run = {
            let mut table = lock(&shared.pods);
            match table.remove(&name) {
                Some(Slot::Running(run)) => {
                    table.insert(name.clone(), Slot::Terminating);
                    Some(run)
                }
                _ => None,
            }
        };
        let shared = shared.clone();
        let pods = pods.clone();
        tokio::spawn(async move {
            if let Some(run) = run {
                stop(&shared, run, grace.min(MAX_GRACE)).await;
            }
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
                ..DeleteParams::default()
            };
            let _ = pods.delete(&name, &params).await;
            lock(&shared.pods).remove(&name);
        });
        return Ok(());
    }
    match known {
        Some(running) if running == uid => return Ok(()),
        Some(_) => {
            // An older pod of that name still runs (its deletion was not seen): stop it first.
            let removed = lock(&shared.pods).remove(&name);
            if let Some(Slot::Running(run)) = removed {
                stop(shared, run, Duration::ZERO).await;
            }
        }
        None => {}
    }
    let run = start(shared, &pod).await?;
    report(pods, &name, &snapshot(&run)).await?;
    lock(&shared.pods).insert(name, Slot::Running(run));
    Ok(())
}

/// Makes the pod's network namespace and volumes and starts its containers.
async fn start(shared: &Shared, pod: &Pod) -> Result<PodRun, String> {
    let name = pod.name_any();
    let uid = pod.uid().unwrap_or_default();
    let spec = pod.spec.clone().ok_or("pod without spec")?;
    let dir = shared.dir.path().join("pods").join(&uid);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut volumes = BTreeMap::new();
    for volume in spec.volumes.iter().flatten() {
        volumes.insert(volume.name.clone(), materialize(shared, pod, volume, &dir).await?);
    }
    let (node, ip) = {
        let mut lab = lock(&shared.lab);
        let options = NodeOptions { addr: None, resolv_conf: Some(shared.resolv_conf.clone()) };
        let node = lab.add_node_with(&name, options).map_err(|e| format!("network namespace for {name}: {e}"))?;
        (node, lab.addr(node))
    };
    let mut run =
        PodRun { name: name.clone(), uid, node, ip, dir: dir.clone(), containers: Vec::new(), reported: None };
    for container in &spec.containers {
        match start_container(shared, pod, container, &run, &volumes).await {
            Ok(started) => run.containers.push(started),
            Err(error) => {
                stop(shared, run, Duration::ZERO).await;
                return Err(error);
            }
        }
    }
    Ok(run)
}

/// Starts one container of the pod `run` is making.
async fn start_container(
    shared: &Shared,
    pod: &Pod,
    container: &Container,
    run: &PodRun,
    volumes: &BTreeMap<String, PathBuf>,
) -> Result<ContainerRun, String> {
    let (ip, node, dir) = (run.ip, run.node, &run.dir);
    let env = container_env(shared, pod, container, ip).await?;
    let mounts: Vec<(String, PathBuf)> = container
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| volumes.get(&m.name).map(|source| (m.mount_path.clone(), source.clone())))
        .collect();
    let command = match &container.command {
        Some(command) => command.clone(),
        None => {
            let image = container.image.clone().unwrap_or_default();
            let entrypoint = shared.images.iter().find(|(prefix, _)| image.starts_with(prefix.as_str()));
            entrypoint.map(|(_, e)| e.clone()).ok_or(format!("no local program for image {image:?}"))?
        }
    };
    let argv: Vec<String> = command.iter().chain(container.args.iter().flatten()).map(|a| expand(a, &env)).collect();
    let netns = lock(&shared.lab).netns(node).to_owned();
    let launch = wrap(&netns, &mounts, &dir.join(format!("overlay-{}", container.name)), argv);
    let log = dir.join(format!("{}.log", container.name));
    let child = spawn(&launch, &env, &log)?;
    Ok(ContainerRun {
        spec: container.clone(),
        launch,
        env,
        log,
        child,
        started: Instant::now(),
        restarts: 0,
        ready: false,
    })
}

/// The directory that backs `volume` for `pod`.
async fn materialize(shared: &Shared, pod: &Pod, volume: &Volume, dir: &Path) -> Result<PathBuf, String> {
    let files = |target: &Path, entries: BTreeMap<String, Vec<u8>>| -> Result<PathBuf, String> {
        std::fs::create_dir_all(target).map_err(|e| e.to_string())?;
        for (key, value) in entries {
            std::fs::write(target.join(key), value).map_err(|e| e.to_string())?;
        }
        Ok(target.to_path_buf())
    };
    let target = dir.join("volumes").join(&volume.name);
    if let Some(source) = &volume.persistent_volume_claim {
        // StatefulSet claims are `<template>-<pod>`: the same pod name finds the same data.
        let claim = shared.dir.path().join("claims").join(&source.claim_name);
        std::fs::create_dir_all(&claim).map_err(|e| e.to_string())?;
        return Ok(claim);
    }
    if let Some(source) = &volume.config_map {
        let api: Api<ConfigMap> = Api::namespaced(shared.client.clone(), &shared.namespace);
        let map = api.get(&source.name).await.map_err(|e| format!("configMap {}: {e}", source.name))?;
        let data = map.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes()));
        return files(&target, data.collect());
    }
    if let Some(source) = &volume.secret {
        let secret_name = source.secret_name.clone().unwrap_or_default();
        let api: Api<Secret> = Api::namespaced(shared.client.clone(), &shared.namespace);
        let secret = api.get(&secret_name).await.map_err(|e| format!("secret {secret_name}: {e}"))?;
        return files(&target, secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect());
    }
    if let Some(source) = &volume.downward_api {
        let mut entries = BTreeMap::new();
        for item in source.items.iter().flatten() {
            let path = item.field_ref.as_ref().map(|f| f.field_path.as_str()).unwrap_or_default();
            let (labels, annotations) = (&pod.metadata.labels, &pod.metadata.annotations);
            let text = match path {
                "metadata.labels" => key_values(labels.as_ref()),
                "metadata.annotations" => key_values(annotations.as_ref()),
                // One key, written as its bare value (what a kubelet does).
                other => match (selected_key(other, "metadata.labels"), selected_key(other, "metadata.annotations")) {
                    (Some(key), _) => labels.iter().flatten().find(|(k, _)| *k == key).map(|(_, v)| v.clone()),
                    (_, Some(key)) => annotations.iter().flatten().find(|(k, _)| *k == key).map(|(_, v)| v.clone()),
                    _ => return Err(format!("downward API field this kubelet does not know: {other}")),
                }
                .unwrap_or_default(),
            };
            entries.insert(item.path.clone(), text.into_bytes());
        }
        return files(&target, entries);
    }
    if volume.empty_dir.is_some() {
        return files(&target, BTreeMap::new());
    }
    Err(format!("volume {} of a kind this kubelet does not know", volume.name))
}

/// A label or annotation map as the downward API writes it: `key="value"` lines.
fn key_values(map: Option<&BTreeMap<String, String>>) -> String {
    map.iter().flat_map(|m| m.iter()).map(|(k, v)| format!("{k}={v:?}\n")).collect()
}

/// `KEY` of a field path `<map>['KEY']`.
fn selected_key<'a>(path: &'a str, map: &str) -> Option<&'a str> {
    path.strip_prefix(map)?.strip_prefix("['")?.strip_suffix("']")
}

/// The container's environment as the kubelet gives it.
async fn container_env(
    shared: &Shared,
    pod: &Pod,
    container: &Container,
    ip: Ipv4Addr,
) -> Result<BTreeMap<String, String>, String> {
    let spec = pod.spec.as_ref();
    let hostname = spec.and_then(|s| s.hostname.clone()).unwrap_or_else(|| pod.name_any());
    let mut env = BTreeMap::from([("PATH".to_owned(), shared.path.clone()), ("HOSTNAME".to_owned(), hostname)]);
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => expand(value, &env),
            (None, Some(from)) => {
                if let Some(field) = &from.field_ref {
                    match field.field_path.as_str() {
                        "metadata.name" => pod.name_any(),
                        "metadata.namespace" => shared.namespace.clone(),
                        "metadata.uid" => pod.uid().unwrap_or_default(),
                        "status.podIP" => ip.to_string(),
                        "status.hostIP" => lock(&shared.lab).gateway().to_string(),
                        "spec.nodeName" => NODE.to_owned(),
                        "spec.serviceAccountName" => {
                            spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default()
                        }
                        other => return Err(format!("env field this kubelet does not know: {other}")),
                    }
                } else if let Some(key) = &from.secret_key_ref {
                    let api: Api<Secret> = Api::namespaced(shared.client.clone(), &shared.namespace);
                    let secret = api.get(&key.name).await.map_err(|e| format!("secret {}: {e}", key.name))?;
                    let value = secret.data.unwrap_or_default().remove(&key.key).map(|v| v.0);
                    String::from_utf8(value.ok_or(format!("secret {} has no key {}", key.name, key.key))?)
                        .map_err(|e| e.to_string())?
                } else if let Some(key) = &from.config_map_key_ref {
                    let api: Api<ConfigMap> = Api::namespaced(shared.client.clone(), &shared.namespace);
                    let map = api.get(&key.name).await.map_err(|e| format!("configMap {}: {e}", key.name))?;
                    map.data.unwrap_or_default().remove(&key.key).ok_or(format!("{} has no {}", key.name, key.key))?
                } else {
                    return Err(format!("env {} from a source this kubelet does not know", var.name));
                }
            }
            (None, None) => String::new(),
        };
        env.insert(var.name.clone(), value);
    }
    Ok(env)
}

/// Kubernetes' expansion of commands, args and env values: `$(VAR)` becomes the variable's
/// value when it is defined (kept as written otherwise), `$$` a literal `$`.
fn expand(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
            && let Some(value) = env.get(&inner[..end])
        {
            out.push_str(value);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The command line that runs `argv` in the pod: a private mount namespace where each mount
/// path is bound to its volume (the parent overlaid first, its upper layer under `overlays`),
/// then the pod's network namespace.
fn wrap(netns: &str, mounts: &[(String, PathBuf)], overlays: &Path, argv: Vec<String>) -> Vec<String> {
    let mut mounts = mounts.to_vec();
    mounts.sort();
    let mut setup = String::from("set -e\n");
    // Directories that exist in the namespace by now, and those overlaid with nothing bound
    // over them since.
    let mut made: BTreeSet<PathBuf> = BTreeSet::new();
    let mut overlaid: BTreeSet<PathBuf> = BTreeSet::new();
    for (index, (path, source)) in mounts.iter().enumerate() {
        let path = Path::new(path);
        // The nearest directory above the mount path that exists: the overlay makes the rest.
        let anchor = path.ancestors().skip(1).find(|a| made.contains(*a) || a.is_dir()).unwrap_or(Path::new("/"));
        if !overlaid.contains(anchor) {
            let layer = overlays.join(index.to_string());
            let (upper, work) = (layer.join("upper").display().to_string(), layer.join("work").display().to_string());
            setup.push_str(&format!(
                "mkdir -p {upper} {work}\nmount -t overlay overlay -o lowerdir={anchor},upperdir={upper},workdir={work} {anchor}\n",
                upper = quote(&upper),
                work = quote(&work),
                anchor = quote(&anchor.display().to_string()),
            ));
            overlaid.insert(anchor.to_path_buf());
        }
        setup.push_str(&format!(
            "mkdir -p {path}\nmount --bind {source} {path}\n",
            path = quote(&path.display().to_string()),
            source = quote(&source.display().to_string())
        ));
        overlaid.remove(path);
        made.extend(path.ancestors().map(Path::to_path_buf));
    }
    setup.push_str(&format!("exec ip netns exec {} \"$@\"\n", quote(netns)));
    let mut line = vec!["unshare".into(), "-m".into(), "--propagation".into(), "private".into(), "--".into()];
    line.extend(["/bin/sh".into(), "-c".into(), setup, "process-kubelet".into()]);
    line.extend(argv);
    line
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn spawn(launch: &[String], env: &BTreeMap<String, String>, log: &Path) -> Result<Child, String> {
    let file = OpenOptions::new().create(true).append(true).open(log).map_err(|e| e.to_string())?;
    let err = file.try_clone().map_err(|e| e.to_string())?;
    Command::new(&launch[0])
        .args(&launch[1..])
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", launch[0]))
}

/// SIGTERM to every container, up to `grace` for them to exit, SIGKILL; then the network
/// namespace goes.
async fn stop(shared: &Shared, mut run: PodRun, grace: Duration) {
    for container in &run.containers {
        let pid = container.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && run.containers.iter_mut().any(|c| c.child.try_wait().ok().flatten().is_none()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for container in &mut run.containers {
        let _ = container.child.kill();
        if let Ok(status) = container.child.wait() {
            lock(&shared.exits).insert(format!("{}/{}", run.name, container.spec.name), status);
        }
    }
    let _ = lock(&shared.lab).remove_node(run.node);
    let _ = std::fs::remove_dir_all(run.dir.join("volumes"));
}

/// Restarts containers that exited and probes readiness; writes changes to the API server.
async fn probe_all(shared: &Shared, pods: &Api<Pod>) {
    let names: Vec<String> = lock(&shared.pods).keys().cloned().collect();
    let http = &shared.prober;
    for name in names {
        let targets = {
            let mut table = lock(&shared.pods);
            let Some(Slot::Running(run)) = table.get_mut(&name) else { continue };
            for container in &mut run.containers {
                if container.child.try_wait().ok().flatten().is_some() && container.started.elapsed() > RESTART_BACKOFF
                {
                    match spawn(&container.launch, &container.env, &container.log) {
                        Ok(child) => {
                            container.child = child;
                            container.restarts += 1;
                            container.started = Instant::now();
                        }
                        Err(error) => eprintln!("process kubelet: restart {name}: {error}"),
                    }
                }
            }
            let ip = run.ip;
            run.containers.iter().map(|c| readiness_url(&c.spec, ip)).collect::<Vec<_>>()
        };
        let mut ready = Vec::with_capacity(targets.len());
        for target in targets {
            ready.push(match target {
                Some(url) => http.get(url).send().await.is_ok_and(|r| r.status().is_success()),
                None => true,
            });
        }
        let changed = {
            let mut table = lock(&shared.pods);
            let Some(Slot::Running(run)) = table.get_mut(&name) else { continue };
            for (container, ready) in run.containers.iter_mut().zip(&ready) {
                container.ready = *ready && container.child.try_wait().ok().flatten().is_none();
            }
            let all = run.containers.iter().all(|c| c.ready);
            (run.reported != Some(all)).then(|| snapshot(run))
        };
        if let Some(run) = changed
            && report(pods, &name, &run).await.is_ok()
            && let Some(Slot::Running(current)) = lock(&shared.pods).get_mut(&name)
        {
            current.reported = Some(run.ready);
        }
    }
}

/// What a status write needs of a pod (taken under the lock, written without it).
struct Snapshot {
    ip: Ipv4Addr,
    ready: bool,
    containers: Vec<(String, String, bool, i32)>,
}

fn snapshot(run: &PodRun) -> Snapshot {
    Snapshot {
        ip: run.ip,
        ready: run.containers.iter().all(|c| c.ready),
        containers: run
            .containers
            .iter()
            .map(|c| (c.spec.name.clone(), c.spec.image.clone().unwrap_or_default(), c.ready, c.restarts))
            .collect(),
    }
}

/// Writes the pod's status: Running on its IP, Ready as probed.
async fn report(pods: &Api<Pod>, name: &str, run: &Snapshot) -> Result<(), String> {
    let ready = run.ready;
    let flag = |b: bool| if b { "True" } else { "False" };
    let ip = run.ip.to_string();
    let containers: Vec<serde_json::Value> = run
        .containers
        .iter()
        .map(|(name, image, ready, restarts)| {
            json!({ "name": name, "image": image, "imageID": "", "ready": ready,
                    "restartCount": restarts, "started": true, "state": { "running": {} } })
        })
        .collect();
    let status = json!({ "status": {
        "phase": "Running", "podIP": ip, "podIPs": [{ "ip": ip }],
        "conditions": [
            { "type": "PodScheduled", "status": "True" },
            { "type": "Initialized", "status": "True" },
            { "type": "ContainersReady", "status": flag(ready) },
            { "type": "Ready", "status": flag(ready) },
        ],
        "containerStatuses": containers,
    } });
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map(drop)
        .map_err(|e| format!("status of {name}: {e}"))
}

/// `http(s)://<pod ip>:<port><path>` of the container's HTTP readiness probe.
fn readiness_url(container: &Container, ip: Ipv4Addr) -> Option<String> {
    let action = container.readiness_probe.as_ref()?.http_get.as_ref()?;
    let port = match &action.port {
        IntOrString::Int(port) => *port,
        IntOrString::String(name) => {
            container.ports.iter().flatten().find(|p| p.name.as_deref() == Some(name.as_str()))?.container_port
        }
    };
    // The kubelet does not verify a probe's certificate, nor does the client probing here.
    let scheme = if action.scheme.as_deref() == Some("HTTPS") { "https" } else { "http" };
    Some(format!("{scheme}://{ip}:{port}{}", action.path.as_deref().unwrap_or("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_overlay_the_nearest_existing_directory_once() {
        let mounts = [
            ("/etc/not-there/podinfo".to_owned(), PathBuf::from("/v/podinfo")),
            ("/etc/registry".to_owned(), PathBuf::from("/v/config")),
            ("/etc/registry/tls".to_owned(), PathBuf::from("/v/tls")),
        ];
        let line = wrap("ns", &mounts, Path::new("/o"), vec!["app".into()]);
        let script = &line[7];
        let overlays: Vec<&str> = script.lines().filter(|l| l.starts_with("mount -t overlay")).collect();
        assert_eq!(overlays.len(), 2, "/etc once, then the bound /etc/registry for tls:\n{script}");
        assert!(overlays[0].ends_with(" '/etc'") && overlays[1].ends_with(" '/etc/registry'"), "{script}");
        assert!(
            script.contains("mkdir -p '/etc/not-there/podinfo'\nmount --bind '/v/podinfo' '/etc/not-there/podinfo'")
        );
        assert_eq!(line.last().map(String::as_str), Some("app"));
    }

    #[test]
    fn expansion_follows_kubernetes() {
        let env = BTreeMap::from([("POD_NAME".to_owned(), "nacos-2".to_owned())]);
        assert_eq!(
            expand("$$((ordinal + 1)) $(POD_NAME) $(MISSING) $x", &env),
            "$((ordinal + 1)) nacos-2 $(MISSING) $x"
        );
    }
}
