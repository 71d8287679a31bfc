//! The sidecar (`nacos-sidecar`, a real process) between apps and a real `registry`: an
//! unmodified Nacos SDK registers and discovers through its localhost API; the instance declared
//! by the environment appears once its probe passes and returns after a registry `kill -9` and
//! restart; with the registry down, lookups and config reads are answered from the failover
//! cache (memory, and disk across a sidecar restart); a drain shows a subscriber weight 0 first,
//! then the removal, while the app still serves; the declared instance follows TCP, HTTP and
//! MySQL probes (the targets of the server's own checks in `health_check.rs`); pod labels reach
//! label gray configs; v1 HTTP registrations stay the app's, kept by its beats; its DNS resolver
//! answers the zone from the cache through a registry kill, NXDOMAIN for unknown names, and
//! relays other names to a stub upstream resolver (SERVFAIL when it is silent or gone).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use hickory_resolver::proto::op::{Message, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use registry_proto::client::{Connection, Event, Session, SessionConfig, Setup};
use registry_proto::contract::sidecar::env;
use registry_proto::model::ServiceKey;
use serde_json::{Value, json};

use crate::config_sdk::{expect_sdk_content, http_publish, sdk_at};
use crate::dns;
use crate::grpc_sdk::{
    all_instances, bounded, expect_event, http_hosts, instance, sdk_with, set, subscribe, wait_http,
};
use crate::harness::targets::{HttpTarget, http_status_steps};
use crate::harness::{Server, call, client, eventually, free_member_ports, patience};
use registry_proto::probe::mariadb::MariaDb;

/// How long a sidecar may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The sidecar binary next to the registry's, built (a no-op when current) so a test never runs
/// a stale one: this package's tests do not build another package's binary by themselves.
fn sidecar_bin() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_registry")).parent().expect("target dir");
    registry_proto::workspace_binary::workspace_binary(env!("CARGO"), "nacos-sidecar", "nacos-sidecar", dir)
}

/// A running sidecar process.
pub(crate) struct Sidecar {
    child: Option<Child>,
    /// Local HTTP port (the SDK's server address).
    http_port: u16,
    /// Local gRPC address (HTTP + 1000).
    grpc: SocketAddr,
    /// Admin address.
    admin: SocketAddr,
    /// DNS resolver address, when enabled.
    dns: Option<SocketAddr>,
    output: Arc<Mutex<Vec<String>>>,
}

impl Sidecar {
    /// A sidecar for `servers` with extra environment.
    pub(crate) fn start(servers: &[&Server], extra: &[(&str, String)]) -> Self {
        Self::start_with_args(servers, extra, &[])
    }

    /// A sidecar for `servers` with extra environment and flags.
    fn start_with_args(servers: &[&Server], extra: &[(&str, String)], args: &[String]) -> Self {
        let http_port = free_member_ports(1)[0];
        let addrs: Vec<String> = servers.iter().map(|s| s.http.to_string()).collect();
        let mut cmd = Command::new(sidecar_bin());
        cmd.env_clear()
            .env("RUST_LOG", "info")
            .env(env::SERVER_ADDR, addrs.join(","))
            .env(env::HTTP_PORT, http_port.to_string())
            .env(env::ADMIN_PORT, "0")
            .args(["--admin-bind", "127.0.0.1"])
            .args(args)
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn nacos-sidecar");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let streams: [Box<dyn std::io::Read + Send>; 2] =
            [Box::new(child.stdout.take().expect("stdout")), Box::new(child.stderr.take().expect("stderr"))];
        for stream in streams {
            let (out, tx) = (Arc::clone(&output), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    out.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = std::time::Instant::now() + START_TIMEOUT * patience();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                panic!("sidecar did not start; output:\n{}", output.lock().unwrap().join("\n"));
            };
            if !line.contains("sidecar listening") {
                continue;
            }
            let field = |name: &str| -> Option<SocketAddr> {
                let rest = &line[line.find(name).expect("field logged") + name.len()..];
                rest.split_whitespace().next().and_then(|a| a.parse().ok())
            };
            let (grpc, admin) = (field("grpc=").expect("grpc address"), field("admin=").expect("admin address"));
            return Self { child: Some(child), http_port, grpc, admin, dns: field("dns="), output };
        }
    }

    pub(crate) fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// One series of the sidecar's `/metrics`.
    pub(crate) async fn metric(&self, name: &str) -> u64 {
        let (status, text) = call(client().get(self.admin_url("/metrics"))).await;
        assert_eq!(status, 200, "{text}");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from the sidecar's /metrics"))
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- sidecar output ---\n{}", self.output.lock().unwrap().join("\n"));
        }
    }
}

pub(crate) fn declared_env(service: &str, port: u16) -> Vec<(&'static str, String)> {
    vec![
        (env::SERVICE, service.to_owned()),
        (env::PORT, port.to_string()),
        (env::POD_IP, "127.0.0.1".to_owned()),
        (env::POD_NAME, format!("{service}-pod-0")),
    ]
}

/// A raw SDK connection to the sidecar's local gRPC port (the shared client).
async fn local_connection(sidecar: &Sidecar) -> Connection {
    Connection::connect(sidecar.grpc, &Setup::new("it-local-app", "naming")).await.expect("local connection")
}

/// The instance IPs of `sc-cached` and the content of `sc-cfg`, through the sidecar's HTTP API.
async fn read_http(sidecar: &Sidecar) -> (Vec<String>, String) {
    let (status, body) =
        call(client().get(sidecar.http_url("/nacos/v1/ns/instance/list")).query(&[("serviceName", "sc-cached")])).await;
    assert_eq!(status, 200, "{body}");
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["name"], "DEFAULT_GROUP@@sc-cached", "the v1 (grouped) form: {body}");
    let ips = info["hosts"].as_array().unwrap().iter().map(|h| h["ip"].as_str().unwrap().to_owned()).collect();
    let query = [("dataId", "sc-cfg"), ("group", "DEFAULT_GROUP")];
    let (status, content) = call(client().get(sidecar.http_url("/nacos/v1/cs/configs")).query(&query)).await;
    assert_eq!(status, 200, "{content}");
    (ips, content)
}

async fn register_persistent(server: &Server, service: &str, ip: &str, port: u16) {
    let port = port.to_string();
    let (status, body) = call(client().post(server.url("/nacos/v1/ns/instance")).form(&[
        ("serviceName", service),
        ("ip", ip),
        ("port", port.as_str()),
        ("ephemeral", "false"),
    ]))
    .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_sdk_app_registers_and_discovers_through_the_sidecar() {
    let server = Server::start_on_derived_ports();
    let sidecar = Sidecar::start(&[&server], &[]);
    let app = sdk_with(sidecar.http_port, sidecar.grpc.port(), |p| p).await;
    bounded("register", app.register_instance("sc-orders".into(), None, instance("10.30.0.1", 8080)))
        .await
        .expect("register through the sidecar");
    wait_http(&server, "sc-orders", &set(&["10.30.0.1:8080"]), Duration::from_secs(10)).await;

    let mut pushes = subscribe(&app, "sc-orders").await;
    // Another client, straight to the registry.
    let other = Connection::connect(server.grpc, &Setup::new("it-other", "naming")).await.unwrap();
    let key = ServiceKey::new("public", "DEFAULT_GROUP", "sc-orders").unwrap();
    let wire =
        registry_proto::wire::naming::WireInstance { ip: Some("10.30.0.2".into()), port: 8080, ..Default::default() };
    other.unary().register(&key, &wire).await.unwrap();
    let both = set(&["10.30.0.1:8080", "10.30.0.2:8080"]);
    expect_event(&mut pushes, Duration::from_secs(10), &both, "a change pushed through the sidecar").await;
    let listed = all_instances(&app, "sc-orders", None).await;
    assert_eq!(crate::grpc_sdk::addrs(&listed), both);

    // The registry sees the sidecar's connection, not the app's.
    let (status, body) = call(client().get(server.url("/nacos/v2/core/loader/current"))).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Nacos-Rust-Sidecar"), "the sidecar's connection is listed: {body}");
    assert!(sidecar.metric("sidecar_local_requests_total").await >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_declared_instance_appears_after_its_probe_passes_and_returns_after_a_registry_kill9() {
    let mut server = Server::start_on_derived_ports();
    // The app's port is closed at first: nothing may be registered until the probe passes.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = reserved.local_addr().unwrap().port();
    drop(reserved);
    let sidecar = Sidecar::start(&[&server], &declared_env("sc-declared", port));
    let failed = eventually(Duration::from_secs(10), || async {
        (sidecar.metric("sidecar_probes_failed_total").await >= 2).then_some(())
    })
    .await;
    assert!(failed.is_some(), "the probe ran against the closed port");
    assert!(http_hosts(&server, "sc-declared", &[]).await.is_empty(), "registered before the probe passed");
    assert_eq!(sidecar.metric("sidecar_instance_registered").await, 0);

    let _app = std::net::TcpListener::bind(("127.0.0.1", port)).expect("app port");
    let want = set(&[&format!("127.0.0.1:{port}")]);
    let hosts = wait_http(&server, "sc-declared", &want, Duration::from_secs(10)).await;
    assert_eq!(hosts[0]["metadata"]["k8s.pod.name"], "sc-declared-pod-0", "{hosts:?}");

    server.kill9();
    server.restart_same_ports();
    wait_http(&server, "sc-declared", &want, Duration::from_secs(30)).await;
    assert!(sidecar.metric("sidecar_upstream_connects_total").await >= 2, "reconnected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_registry_down_lookups_and_config_reads_come_from_the_cache() {
    let mut server = Server::start_on_derived_ports();
    register_persistent(&server, "sc-cached", "10.31.0.1", 80).await;
    http_publish(&server, "sc-cfg", "", "k=v").await;
    let cache = tempfile::tempdir().unwrap();
    let cache_env = vec![(env::CACHE_DIR, cache.path().display().to_string())];
    let mut sidecar = Sidecar::start(&[&server], &cache_env);

    let query = json!({ "namespace": "public", "groupName": "DEFAULT_GROUP", "serviceName": "sc-cached",
                        "cluster": "", "healthyOnly": false });
    let config = json!({ "dataId": "sc-cfg", "group": "DEFAULT_GROUP", "tenant": "" });
    let read = |conn: Connection| {
        let (query, config) = (query.clone(), config.clone());
        async move {
            let hosts =
                conn.unary().request("ServiceQueryRequest", &query, "QueryServiceResponse").await.expect("query");
            let content =
                conn.unary().request("ConfigQueryRequest", &config, "ConfigQueryResponse").await.expect("config");
            let ips: Vec<String> = hosts["serviceInfo"]["hosts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["ip"].as_str().unwrap().to_owned())
                .collect();
            (ips, content["content"].as_str().unwrap_or_default().to_owned())
        }
    };
    let live = read(local_connection(&sidecar).await).await;
    assert_eq!(live, (vec!["10.31.0.1".to_owned()], "k=v".to_owned()));
    let http_live = read_http(&sidecar).await;
    assert_eq!(http_live, live, "the local HTTP API passes reads through");
    let from_cache_before = sidecar.metric("sidecar_cache_answers_total").await;

    server.kill9();
    let during_outage = read(local_connection(&sidecar).await).await;
    assert_eq!(during_outage, live, "answered from the cache while the registry is down");
    assert_eq!(read_http(&sidecar).await, live, "the HTTP API answers from the cache too");
    assert_eq!(sidecar.metric("sidecar_cache_answers_total").await, from_cache_before + 4);
    let (status, body) =
        call(client().get(sidecar.http_url("/nacos/v1/ns/instance/list")).query(&[("serviceName", "sc-never-seen")]))
            .await;
    assert_eq!(status, 503, "nothing cached: a clear 503: {body}");

    // A new sidecar on the same cache directory, the registry still down: from disk.
    sidecar.kill9();
    let restarted = Sidecar::start(&[&server], &cache_env);
    assert_eq!(read(local_connection(&restarted).await).await, live, "answered from the disk cache");
    assert_eq!(restarted.metric("sidecar_cached_services").await, 1);

    // Nothing cached and nothing reachable: a clear error, not a hang.
    let unknown = json!({ "namespace": "public", "groupName": "DEFAULT_GROUP", "serviceName": "sc-never-seen",
                          "cluster": "", "healthyOnly": false });
    let err = local_connection(&restarted)
        .await
        .unary()
        .request("ServiceQueryRequest", &unknown, "QueryServiceResponse")
        .await;
    assert!(err.is_err_and(|e| e.to_string().contains("unreachable")), "an error naming the outage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drain_shows_subscribers_weight_zero_then_the_removal_while_the_app_still_serves() {
    let server = Server::start_on_derived_ports();
    let app = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = app.local_addr().unwrap().port();
    let mut env = declared_env("sc-drain", port);
    env.push((registry_proto::contract::sidecar::env::DRAIN_SECONDS, "2".to_owned()));
    let sidecar = Sidecar::start(&[&server], &env);
    let want = set(&[&format!("127.0.0.1:{port}")]);
    wait_http(&server, "sc-drain", &want, Duration::from_secs(10)).await;

    let setup = Setup::new("it-consumer", "naming");
    let (consumer, mut events) = Session::start(SessionConfig::new(vec![server.grpc], setup)).unwrap();
    let key = ServiceKey::new("public", "DEFAULT_GROUP", "sc-drain").unwrap();
    let now = consumer.subscribe(&key, "").await.unwrap();
    assert_eq!((now.hosts.len(), now.hosts[0].weight), (1, 1.0));

    let drain_url = sidecar.admin_url("/drain");
    let drain = tokio::spawn(async move { call(client().get(drain_url)).await });
    let weights = |e: &Event| match e {
        Event::Service(info) => Some(info.hosts.iter().map(|h| h.weight).collect::<Vec<f64>>()),
        _ => None,
    };
    let deadline = Duration::from_secs(10) * patience();
    // Pushes of the unchanged instance (the one after subscribing) are skipped.
    let first = tokio::time::timeout(deadline, async {
        loop {
            if let Some(w) = events.recv().await.as_ref().and_then(weights).filter(|w| *w != [1.0]) {
                return w;
            }
        }
    })
    .await
    .expect("a push after the drain started");
    assert_eq!(first, vec![0.0], "first the weight drops to 0, the instance still listed");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(), "the app still serves during the window");
    assert!(!drain.is_finished(), "/drain answers only after the window");
    assert_eq!(sidecar.metric("sidecar_drain_state").await, 1);
    let second = tokio::time::timeout(deadline, async {
        loop {
            if let Some(w) = events.recv().await.as_ref().and_then(weights) {
                return w;
            }
        }
    })
    .await
    .expect("a push when the window ended");
    assert!(second.is_empty(), "then the instance is removed: {second:?}");
    let (status, body) = drain.await.unwrap();
    assert_eq!((status, body.as_str()), (200, "drained"));
    assert!(http_hosts(&server, "sc-drain", &[]).await.is_empty());
    drop(app);
}

/// Reads answered by the sidecar never hang on a dead upstream: bounded, then from the cache or
/// a clear error (checked in the cache test); and local input errors match the server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_local_input_gets_the_servers_errors() {
    let server = Server::start_on_derived_ports();
    let sidecar = Sidecar::start(&[&server], &[]);
    let direct = Connection::connect(server.grpc, &Setup::new("it-direct", "naming")).await.unwrap();
    let local = local_connection(&sidecar).await;
    let bad_bodies: [(&str, Value); 3] = [
        (
            "InstanceRequest",
            json!({ "serviceName": "bad name!", "groupName": "G", "type": "registerInstance",
                                    "instance": { "ip": "1.1.1.1", "port": 80 } }),
        ),
        (
            "InstanceRequest",
            json!({ "serviceName": "ok", "type": "registerInstance",
                                    "instance": { "ip": "1.1.1.1", "port": 80, "weight": 20000.0 } }),
        ),
        (
            "InstanceRequest",
            json!({ "serviceName": "ok", "type": "renameInstance", "instance": { "ip": "1.1.1.1", "port": 80 } }),
        ),
    ];
    for (kind, body) in bad_bodies {
        let from_server = direct.unary().call(kind, &body).await.unwrap();
        let from_sidecar = local.unary().call(kind, &body).await.unwrap();
        assert_eq!(from_sidecar.0, from_server.0, "{body}");
        for field in ["errorCode", "resultCode"] {
            assert_eq!(
                from_sidecar.1[field], from_server.1[field],
                "{field} for {body}: {from_sidecar:?} vs {from_server:?}"
            );
        }
    }
}

/// Whether `server` lists a connection of the sidecar.
async fn holds_sidecar(server: &Server) -> bool {
    let (status, body) = call(client().get(server.url("/nacos/v2/core/loader/current"))).await;
    status == 200 && body.contains("Nacos-Rust-Sidecar")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_member_the_sidecar_uses_moves_it_to_another_without_losing_the_instance() {
    let mut cluster = crate::cluster::Cluster::start(3, None);
    let app = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = app.local_addr().unwrap().port();
    let servers: Vec<&Server> = cluster.members.iter().collect();
    let sidecar = Sidecar::start(&servers, &declared_env("sc-failover", port));
    let want = set(&[&format!("127.0.0.1:{port}")]);
    for m in &cluster.members {
        wait_http(m, "sc-failover", &want, Duration::from_secs(15)).await;
    }
    // Exactly one member holds the sidecar's connection (a connect refused while a member was
    // still starting may linger on it for a moment).
    let connected = eventually(Duration::from_secs(10), || async {
        let mut holding = Vec::new();
        for (i, m) in cluster.members.iter().enumerate() {
            if holds_sidecar(m).await {
                holding.push(i);
            }
        }
        (holding.len() == 1).then(|| holding[0])
    })
    .await
    .expect("one member holds the sidecar's connection");
    let survivors: Vec<usize> = (0..3).filter(|i| *i != connected).collect();

    // Readers poll the survivors throughout the failover: the instance must never be missing.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for &i in &survivors {
        let (url, stop, want) = (cluster.members[i].url("/nacos/v1/ns/instance/list"), Arc::clone(&stop), want.clone());
        readers.push(tokio::spawn(async move {
            let (mut reads, mut missing) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, body) = call(client().get(&url).query(&[("serviceName", "sc-failover")])).await;
                if status == 200 {
                    let hosts =
                        serde_json::from_str::<Value>(&body).unwrap()["hosts"].as_array().cloned().unwrap_or_default();
                    if crate::grpc_sdk::http_addrs(&hosts) != want {
                        missing.push(body);
                    }
                    reads += 1;
                }
            }
            (reads, missing)
        }));
    }
    cluster.members[connected].kill9();
    let moved = eventually(Duration::from_secs(30), || async {
        for &i in &survivors {
            if holds_sidecar(&cluster.members[i]).await {
                return Some(i);
            }
        }
        None
    })
    .await;
    moved.expect("the sidecar reconnected to a surviving member");
    // The member lists the connection before the sidecar has finished setting it up.
    let counted = eventually(Duration::from_secs(10), || async {
        (sidecar.metric("sidecar_upstream_connects_total").await >= 2).then_some(())
    })
    .await;
    assert!(counted.is_some(), "the sidecar counts its second connection");
    // Still listed once the failover settled: without the redo on the new member the survivors
    // drop the dead member's connection-owned instance (checked by disabling the redo).
    for &i in &survivors {
        wait_http(&cluster.members[i], "sc-failover", &want, Duration::from_secs(10)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        let (reads, missing) = reader.await.unwrap();
        assert!(reads > 0, "the readers ran");
        assert!(missing.is_empty(), "the instance went missing during the failover: {missing:?}");
    }
    drop(app);
}

/// Whether `service`'s only instance is healthy on `server`; asked with `healthyOnly`, because
/// the full list of a service with metadata shows a lone unhealthy instance as healthy (Nacos'
/// protect threshold, 0 by default).
async fn health_of(server: &Server, service: &str) -> Option<bool> {
    if http_hosts(server, service, &[]).await.len() != 1 {
        return None;
    }
    Some(http_hosts(server, service, &[("healthyOnly", "true")]).await.len() == 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_declared_instance_follows_its_probe_a_listener_that_goes_away_and_comes_back() {
    declared_instance_follows_its_probe("sc-probed", true).await;
}

/// A persistent declared instance: its health is the sidecar's to report (the metadata key
/// tells the server's own checks to leave it alone), and it outlives the sidecar.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_persistent_declared_instance_carries_the_sidecars_health_and_outlives_it() {
    let (server, mut sidecar) = declared_instance_follows_its_probe("sc-probed-persistent", false).await;
    let hosts = http_hosts(&server, "sc-probed-persistent", &[]).await;
    assert_eq!(hosts[0]["ephemeral"], false, "{hosts:?}");
    assert_eq!(hosts[0]["metadata"][registry_proto::contract::sidecar::HEALTH_REPORTED_METADATA], "nacos-sidecar");
    sidecar.kill9();
    assert_eq!(http_hosts(&server, "sc-probed-persistent", &[]).await.len(), 1, "a persistent instance stays");
}

async fn declared_instance_follows_its_probe(service: &str, ephemeral: bool) -> (Server, Sidecar) {
    let server = Server::start_on_derived_ports();
    let app = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = app.local_addr().unwrap().port();
    let mut env = declared_env(service, port);
    env.push((registry_proto::contract::sidecar::env::EPHEMERAL, ephemeral.to_string()));
    let sidecar = Sidecar::start(&[&server], &env);
    let healthy =
        eventually(Duration::from_secs(10), || async { health_of(&server, service).await.filter(|h| *h) }).await;
    assert!(healthy.is_some(), "registered healthy once the probe passed");

    // The app goes away: a refused connection fails at once (fail now), on the next check
    // (2–7 s after registration, Nacos' first delay). The instance is marked, not removed.
    drop(app);
    let down =
        eventually(Duration::from_secs(15), || async { health_of(&server, service).await.filter(|h| !*h) }).await;
    assert!(down.is_some(), "marked unhealthy while the app is gone");
    assert_eq!(sidecar.metric("sidecar_instance_healthy").await, 0);

    // Back: three passing checks in a row (at least 1 s apart for TCP) make it healthy again.
    let oks_before = sidecar.metric("sidecar_probes_ok_total").await;
    let app = std::net::TcpListener::bind(("127.0.0.1", port)).expect("app port again");
    let up = eventually(Duration::from_secs(30), || async { health_of(&server, service).await.filter(|h| *h) }).await;
    assert!(up.is_some(), "healthy again after the app returned");
    assert!(sidecar.metric("sidecar_probes_ok_total").await >= oks_before + 3, "after three passing checks");
    drop(app);
    (server, sidecar)
}

/// Long enough for the first scheduled check (≤ 7 s) and the three results a flip needs.
const FLIP: Duration = Duration::from_secs(30);

/// Waits until `service`'s only instance is listed with `healthy`; fails (naming `step`) at
/// the deadline.
async fn wait_health(server: &Server, service: &str, healthy: bool, step: &str) {
    let seen = eventually(FLIP, || async { health_of(server, service).await.filter(|h| *h == healthy) }).await;
    if seen.is_none() {
        let now = health_of(server, service).await;
        panic!("{step}: {service} not listed with healthy={healthy} within {FLIP:?} (listed: {now:?})");
    }
}

/// The HTTP target of the server's check test (`health_check.rs`), through the sidecar's probe:
/// 503 flips after three, 404 at once, a closed port at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_declared_instance_follows_an_http_probe_through_200_503_404_and_a_closed_port() {
    let server = Server::start_on_derived_ports();
    let target = HttpTarget::start().await;
    let service = "sc-http-probed";
    let mut env = declared_env(service, target.addr.port());
    env.extend([(env::PROBE, "http".to_owned()), (env::PROBE_PATH, "/health".to_owned())]);
    let sidecar = Sidecar::start(&[&server], &env);
    wait_health(&server, service, true, "200").await;
    assert_eq!(sidecar.metric("sidecar_probes_failed_total").await, 0);

    http_status_steps(target, |healthy, step| wait_health(&server, service, healthy, step)).await;
    // The 404 and the refused connection failed now; the 503s did not.
    assert!(sidecar.metric("sidecar_probes_failed_now_total").await >= 2);
    assert!(sidecar.metric("sidecar_probes_failed_total").await >= 5);
    assert_eq!(sidecar.metric("sidecar_instance_healthy").await, 0);
}

/// The MariaDB target of the server's check test, through the sidecar's `mysql` probe on a
/// persistent declared instance: `read_only` flips it; wrong credentials never pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mysql_probe_follows_read_only_and_wrong_credentials_never_pass() {
    let Some(db) = MariaDb::start("probe", "pw") else { return };
    db.sql("SET GLOBAL read_only=OFF");
    let server = Server::start_on_derived_ports();
    let mysql_env = |service: &str, password: &str| {
        let mut env = declared_env(service, db.addr().port());
        env.extend([
            (env::EPHEMERAL, "false".to_owned()),
            (env::PROBE, "mysql".to_owned()),
            (env::MYSQL_USER, "probe".to_owned()),
            (env::MYSQL_PASSWORD, password.to_owned()),
        ]);
        env
    };
    let sidecar = Sidecar::start(&[&server], &mysql_env("sc-db", "pw"));
    wait_health(&server, "sc-db", true, "read_only=OFF").await;
    assert_eq!(http_hosts(&server, "sc-db", &[]).await[0]["ephemeral"], false);

    db.sql("SET GLOBAL read_only=ON");
    wait_health(&server, "sc-db", false, "read_only=ON (a replica)").await;
    assert!(sidecar.metric("sidecar_probes_failed_total").await >= 3, "a replica is a plain failure");
    assert_eq!(sidecar.metric("sidecar_probes_failed_now_total").await, 0);
    db.sql("SET GLOBAL read_only=OFF");
    wait_health(&server, "sc-db", true, "read_only=OFF again").await;

    // Wrong credentials: every check fails now, so the instance is never registered healthy.
    let wrong = Sidecar::start(&[&server], &mysql_env("sc-db-wrong", "wrong"));
    let refused = eventually(Duration::from_secs(10), || async {
        (wrong.metric("sidecar_probes_failed_now_total").await >= 3).then_some(())
    })
    .await;
    assert!(refused.is_some(), "the refused logins count as fail-now");
    assert_eq!(wrong.metric("sidecar_probes_ok_total").await, 0);
    assert_eq!(
        wrong.metric("sidecar_probes_failed_total").await,
        wrong.metric("sidecar_probes_failed_now_total").await,
        "every failure failed now"
    );
    assert_eq!(wrong.metric("sidecar_instance_registered").await, 0);
    assert!(http_hosts(&server, "sc-db-wrong", &[]).await.is_empty(), "never registered");
}

/// Pod labels are the sidecar's connection labels: a label gray rule reaches the app behind the
/// sidecar whose pod matches (gRPC SDK and local HTTP API alike), the formal content the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_label_gray_config_reaches_only_the_app_whose_pod_has_the_label() {
    let server = Server::start_on_derived_ports();
    let data_id = "sc-gray.yaml";
    http_publish(&server, data_id, "", "formal").await;
    let labels = tempfile::tempdir().unwrap();
    let labels_file = |name: &str, text: &str| {
        let path = labels.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let canary_pod = labels_file("canary", "app=\"orders\"\nenv=\"canary\"\n");
    let stable_pod = labels_file("stable", "app=\"orders\"\nenv=\"stable\"\n");
    let canary = Sidecar::start(&[&server], &[(env::LABELS_FILE, canary_pod)]);
    let stable = Sidecar::start(&[&server], &[(env::LABELS_FILE, stable_pod)]);
    let canary_app = sdk_at(canary.http_port, canary.grpc.port(), |p| p).await;
    let stable_app = sdk_at(stable.http_port, stable.grpc.port(), |p| p).await;
    expect_sdk_content(&canary_app, data_id, "formal").await;
    expect_sdk_content(&stable_app, data_id, "formal").await;

    let (status, body) = call(client().post(server.url("/nacos/v1/cs/configs")).form(&[
        ("dataId", data_id),
        ("group", "DEFAULT_GROUP"),
        ("content", "gray"),
        ("grayLabels", "env=canary"),
    ]))
    .await;
    assert_eq!((status, body.as_str()), (200, "true"));
    expect_sdk_content(&canary_app, data_id, "gray").await;
    expect_sdk_content(&stable_app, data_id, "formal").await;
    // The local HTTP API carries the pod's labels too.
    let http_read = |sidecar: &Sidecar| {
        let url = sidecar.http_url("/nacos/v1/cs/configs");
        async move { call(client().get(url).query(&[("dataId", data_id), ("group", "DEFAULT_GROUP")])).await }
    };
    assert_eq!(http_read(&canary).await, (200, "gray".to_owned()));
    assert_eq!(http_read(&stable).await, (200, "formal".to_owned()));
    // Straight to the server, without labels: the formal content.
    let direct = sdk_at(server.http.port(), server.grpc.port(), |p| p).await;
    expect_sdk_content(&direct, data_id, "formal").await;
}

/// Heartbeat timeouts short enough for a test (interval 200 ms, unhealthy after 0.8 s, removed
/// after 1.6 s; the server sweeps every 5 s).
const FAST_BEATS: &str = r#"{"preserved.heart.beat.interval":"200","preserved.heart.beat.timeout":"800","preserved.ip.delete.timeout":"1600"}"#;

/// A v1 HTTP registration through the sidecar is the app's, kept by the app's beats (passed
/// through like the registration): the beating instance stays, the silent one is removed
/// while the sidecar and its connection carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v1_registrations_through_the_sidecar_live_by_the_apps_beats() {
    let server = Server::start_on_derived_ports();
    let sidecar = Sidecar::start(&[&server], &[]);
    for ip in ["10.32.0.1", "10.32.0.2"] {
        let (status, body) = call(client().post(sidecar.http_url("/nacos/v1/ns/instance")).form(&[
            ("serviceName", "sc-v1"),
            ("ip", ip),
            ("port", "9000"),
            ("metadata", FAST_BEATS),
        ]))
        .await;
        assert_eq!((status, body.as_str()), (200, "ok"));
    }
    wait_http(&server, "sc-v1", &set(&["10.32.0.1:9000", "10.32.0.2:9000"]), Duration::from_secs(5)).await;

    let beat = || {
        call(client().put(sidecar.http_url("/nacos/v1/ns/instance/beat")).form(&[
            ("serviceName", "sc-v1"),
            ("ip", "10.32.0.1"),
            ("port", "9000"),
        ]))
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let keep_beating = async {
        let mut beats = 0u32;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let (status, body) = beat().await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["code"], 10200, "the server knows it: {body}");
            beats += 1;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        beats
    };
    let observe = async {
        let only_beating = set(&["10.32.0.1:9000"]);
        let removed = eventually(Duration::from_secs(20), || async {
            (crate::grpc_sdk::http_addrs(&http_hosts(&server, "sc-v1", &[]).await) == only_beating).then_some(())
        })
        .await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        removed.expect("the silent instance removed, the beating one kept");
    };
    let (beats, ()) = tokio::join!(keep_beating, observe);
    assert!(beats >= 5, "beats went through the sidecar meanwhile ({beats})");
    assert!(holds_sidecar(&server).await, "the sidecar's own connection is still up");
}

/// How long a local call may take when the upstream hangs (the sidecar bounds each upstream
/// call at 2 s; the rest is slack for a loaded machine).
const HUNG_BOUND: Duration = Duration::from_secs(5);

/// A registry that accepts but never answers (SIGSTOP) must not hang the local API: reads
/// remembered are answered from the cache, others fail with a clear error, all within a bound,
/// also when several arrive at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_registry_never_makes_the_local_api_hang() {
    let server = Server::start_on_derived_ports();
    register_persistent(&server, "sc-cached", "10.33.0.1", 80).await;
    http_publish(&server, "sc-cfg", "", "k=v").await;
    let sidecar = Sidecar::start(&[&server], &[]);
    let live = read_http(&sidecar).await;
    assert_eq!(live, (vec!["10.33.0.1".to_owned()], "k=v".to_owned()));
    let local = local_connection(&sidecar).await;

    let pid = server.pid().expect("registry running").to_string();
    let signal = |sig: &str| {
        let status = Command::new("kill").args([sig, pid.as_str()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill {sig} {pid}");
    };
    signal("-STOP");
    // The stop is asynchronous: wait until the kernel reports the registry stopped (`T`).
    let stat = format!("/proc/{pid}/stat");
    let stopped = eventually(Duration::from_secs(5), || async {
        let text = std::fs::read_to_string(&stat).ok()?;
        (text.rsplit_once(") ")?.1.starts_with('T')).then_some(())
    })
    .await;
    assert!(stopped.is_some(), "the registry did not stop");
    let bound = HUNG_BOUND * patience();
    let unknown = json!({ "namespace": "public", "groupName": "DEFAULT_GROUP", "serviceName": "sc-never-seen",
                          "cluster": "", "healthyOnly": false });
    let started = tokio::time::Instant::now();
    let (cached, http_unknown, grpc_unknown) = tokio::join!(
        tokio::time::timeout(bound, read_http(&sidecar)),
        tokio::time::timeout(
            bound,
            call(
                client().get(sidecar.http_url("/nacos/v1/ns/instance/list")).query(&[("serviceName", "sc-never-seen")])
            )
        ),
        tokio::time::timeout(bound, local.unary().request("ServiceQueryRequest", &unknown, "QueryServiceResponse")),
    );
    let elapsed = started.elapsed();
    signal("-CONT");
    assert_eq!(cached.expect("a cached read answered in time"), live, "answered from the cache");
    let (status, body) = http_unknown.expect("an uncached HTTP read answered in time");
    assert_eq!(status, 503, "a clear 503: {body}");
    let grpc = grpc_unknown.expect("an uncached gRPC read answered in time");
    assert!(grpc.is_err_and(|e| e.to_string().contains("unreachable")), "an error naming the outage");
    assert!(elapsed < bound, "took {elapsed:?}");
    assert!(sidecar.metric("sidecar_cache_answers_total").await >= 2);
}

/// The sidecar's DNS resolver on an ephemeral port, other names going to `resolv_conf`'s
/// first nameserver.
fn dns_sidecar(server: &Server, resolv_conf: &Path) -> Sidecar {
    let args = ["--dns-resolv-conf".to_owned(), resolv_conf.display().to_string()];
    let sidecar = Sidecar::start_with_args(&[server], &[(env::DNS_PORT, "0".to_owned())], &args);
    assert!(sidecar.dns.is_some(), "the sidecar logs its dns address");
    sidecar
}

/// One A query to the sidecar (no resolver cache in between): its code and addresses.
async fn ask_a(sidecar: &Sidecar, name: &str, tcp: bool) -> Option<(ResponseCode, BTreeSet<Ipv4Addr>)> {
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let (bytes, addr) = (q.to_vec().unwrap(), sidecar.dns.expect("dns enabled"));
    let reply = if tcp { dns::raw_tcp(addr, &bytes).await? } else { dns::raw_udp(addr, &bytes).await? };
    let m = Message::from_vec(&reply).expect("a decodable reply");
    let ips = m.answers.iter().filter_map(|r| if let RData::A(a) = &r.data { Some(a.0) } else { None }).collect();
    Some((m.metadata.response_code, ips))
}

fn ipset(list: &[&str]) -> BTreeSet<Ipv4Addr> {
    list.iter().map(|ip| ip.parse().unwrap()).collect()
}

/// Waits until `name` answers NOERROR with exactly `want` through the sidecar.
async fn sidecar_resolves(sidecar: &Sidecar, name: &str, want: &[&str], what: &str) {
    let want = (ResponseCode::NoError, ipset(want));
    let last = Mutex::new(None);
    let seen = eventually(Duration::from_secs(5), || async {
        let got = ask_a(sidecar, name, false).await;
        let done = got.as_ref() == Some(&want);
        *last.lock().unwrap() = got;
        done.then_some(())
    })
    .await;
    assert!(seen.is_some(), "{what}: {name} answered {:?}, expected {want:?}", last.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sidecar_resolves_the_zone_from_its_cache_and_keeps_resolving_with_the_registry_killed() {
    let mut server = Server::start_on_derived_ports();
    for ip in ["10.41.0.1", "10.41.0.2", "10.41.0.3"] {
        dns::register(&server, "sc-dns", ip, &[]).await;
    }
    crate::harness::set_manual_health(&server, "sc-dns", "10.41.0.2", false).await;
    let resolv = tempfile::NamedTempFile::new().unwrap();
    let sidecar = dns_sidecar(&server, resolv.path());

    // First lookup: subscribed upstream, answered with the healthy instances.
    sidecar_resolves(&sidecar, "sc-dns.nacos.local.", &["10.41.0.1", "10.41.0.3"], "first lookup").await;
    assert_eq!(sidecar.metric("sidecar_dns_subscribed_total").await, 1);
    // Pushes keep it current: a health flip shows without another subscription.
    crate::harness::set_manual_health(&server, "sc-dns", "10.41.0.3", false).await;
    sidecar_resolves(&sidecar, "sc-dns.nacos.local.", &["10.41.0.1"], "after a push").await;
    assert_eq!(sidecar.metric("sidecar_dns_subscribed_total").await, 1, "answered from the pushed cache");
    // A name of the zone no service has: NXDOMAIN (the registry asked, nothing kept).
    let nx = ask_a(&sidecar, "sc-dns-nobody.nacos.local.", false).await.expect("a reply");
    assert_eq!(nx, (ResponseCode::NXDomain, BTreeSet::new()));
    assert_eq!(sidecar.metric("sidecar_cached_services").await, 1, "an unknown name caches nothing");

    // Resolution in flight while every member is killed: each answer, UDP and TCP, is the same.
    let answered_before = sidecar.metric("sidecar_dns_local_answers_total").await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sidecar = Arc::new(sidecar);
    let (probe, halt) = (Arc::clone(&sidecar), Arc::clone(&stop));
    let in_flight = tokio::spawn(async move {
        let mut answers = Vec::new();
        while !halt.load(std::sync::atomic::Ordering::Relaxed) {
            for tcp in [false, true] {
                answers.push(ask_a(&probe, "sc-dns.nacos.local.", tcp).await);
            }
        }
        answers
    });
    server.kill9();
    let upstream_gone = eventually(Duration::from_secs(10), || async {
        (sidecar.metric("sidecar_upstream_connected").await == 0).then_some(())
    })
    .await;
    assert!(upstream_gone.is_some(), "the sidecar noticed the registry is gone");
    // A few more rounds after the sidecar knows the cluster is away.
    let more = sidecar.metric("sidecar_dns_local_answers_total").await + 10;
    let progressed = eventually(Duration::from_secs(5), || async {
        (sidecar.metric("sidecar_dns_local_answers_total").await >= more).then_some(())
    })
    .await;
    assert!(progressed.is_some(), "queries keep being answered");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers = in_flight.await.unwrap();
    let want = Some((ResponseCode::NoError, ipset(&["10.41.0.1"])));
    assert!(answers.len() >= 10, "{} answers", answers.len());
    assert!(answers.iter().all(|a| *a == want), "every answer through the outage: {answers:?}");
    assert!(sidecar.metric("sidecar_dns_local_answers_total").await >= answered_before + answers.len() as u64);
    assert_eq!(sidecar.metric("sidecar_dns_forwarded_total").await, 0, "nothing of the zone is forwarded");
}

/// A tiny upstream resolver on `127.77.x.y`:53 (resolv.conf has no port): every A question
/// gets `198.18.7.7`; counts the queries it answered; can turn silent (reads, never answers).
struct StubResolver {
    ip: std::net::IpAddr,
    queries: Arc<std::sync::atomic::AtomicUsize>,
    silent: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl StubResolver {
    async fn start() -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let queries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let silent = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (udp, tcp, ip) = loop {
            let ip = std::net::IpAddr::V4(Ipv4Addr::new(127, 77, rand_octet(), rand_octet()));
            let Ok(udp) = tokio::net::UdpSocket::bind((ip, 53)).await else { continue };
            let Ok(tcp) = tokio::net::TcpListener::bind((ip, 53)).await else { continue };
            break (udp, tcp, ip);
        };
        let (counted, quiet) = (Arc::clone(&queries), Arc::clone(&silent));
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            // Connections of the silent phase stay open, unanswered.
            let mut held = Vec::new();
            loop {
                tokio::select! {
                    r = udp.recv_from(&mut buf) => {
                        let Ok((n, from)) = r else { continue };
                        if quiet.load(Relaxed) { continue }
                        counted.fetch_add(1, Relaxed);
                        let _ = udp.send_to(&stub_answer(&buf[..n]), from).await;
                    }
                    r = tcp.accept() => {
                        let Ok((mut stream, _)) = r else { continue };
                        if quiet.load(Relaxed) {
                            held.push(stream);
                            continue;
                        }
                        let Ok(len) = stream.read_u16().await else { continue };
                        let mut query = vec![0u8; usize::from(len)];
                        if stream.read_exact(&mut query).await.is_err() { continue }
                        counted.fetch_add(1, Relaxed);
                        let reply = stub_answer(&query);
                        let _ = stream.write_all(&u16::try_from(reply.len()).unwrap().to_be_bytes()).await;
                        let _ = stream.write_all(&reply).await;
                    }
                }
            }
        });
        Self { ip, queries, silent, task }
    }

    fn answered(&self) -> usize {
        self.queries.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn rand_octet() -> u8 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    u8::try_from((nanos ^ (nanos >> 8) ^ std::process::id()) % 250).unwrap() + 2
}

fn stub_answer(query: &[u8]) -> Vec<u8> {
    let q = Message::from_vec(query).expect("the sidecar relays queries as they came");
    let mut reply = Message::response(q.metadata.id, q.metadata.op_code);
    reply.metadata.recursion_available = true;
    for question in &q.queries {
        reply.add_answer(hickory_resolver::proto::rr::Record::from_rdata(
            question.name().clone(),
            30,
            RData::A(hickory_resolver::proto::rr::rdata::A(Ipv4Addr::new(198, 18, 7, 7))),
        ));
    }
    reply.add_queries(q.queries);
    reply.to_vec().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn names_outside_the_zone_go_to_the_pods_resolver_and_its_silence_is_servfail() {
    let server = Server::start_on_derived_ports();
    let mut stub = StubResolver::start().await;
    let resolv = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(resolv.path(), format!("search svc.cluster.local\nnameserver {}\noptions ndots:5\n", stub.ip))
        .unwrap();
    let sidecar = dns_sidecar(&server, resolv.path());

    let relayed = Some((ResponseCode::NoError, ipset(&["198.18.7.7"])));
    assert_eq!(ask_a(&sidecar, "www.example.org.", false).await, relayed, "over UDP");
    assert_eq!(ask_a(&sidecar, "www.example.org.", true).await, relayed, "over TCP");
    assert_eq!((stub.answered(), sidecar.metric("sidecar_dns_forwarded_total").await), (2, 2));
    // The zone itself is never forwarded.
    let nx = ask_a(&sidecar, "sc-nobody.nacos.local.", false).await.expect("a reply");
    assert_eq!(nx.0, ResponseCode::NXDomain);
    assert_eq!(stub.answered(), 2);

    // The pod's resolver goes silent: SERVFAIL after the relay's deadline (2 s), not silence.
    stub.silent.store(true, std::sync::atomic::Ordering::Relaxed);
    let started = std::time::Instant::now();
    let failed = ask_a(&sidecar, "www.example.org.", true).await.expect("a reply, not silence");
    assert_eq!(failed, (ResponseCode::ServFail, BTreeSet::new()), "after {:?}", started.elapsed());
    assert!(started.elapsed() >= Duration::from_millis(1500), "after waiting: {:?}", started.elapsed());
    // Then it is gone (the port refuses): SERVFAIL at once, over UDP too.
    stub.task.abort();
    let _ = (&mut stub.task).await;
    let failed = ask_a(&sidecar, "www.example.org.", false).await;
    assert_eq!(failed, Some((ResponseCode::ServFail, BTreeSet::new())));
    assert_eq!(stub.answered(), 2);
    let servfails = eventually(Duration::from_secs(5), || async {
        (sidecar.metric("sidecar_dns_servfail_total").await == 2).then_some(())
    })
    .await;
    assert!(servfails.is_some(), "both silences answered SERVFAIL");
}
