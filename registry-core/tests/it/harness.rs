//! Starts and stops real `registry` processes. Every wait is bounded; a server that does not
//! report `ready` in time fails the test with its output attached.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use registry_proto::contract::ports::{CLUSTER_OFFSET, GRPC_OFFSET};

#[path = "harness/targets.rs"] // explicit: the chaos suite includes this file by path too
pub(crate) mod targets;

/// How long a server may take to start. `IT_PATIENCE` multiplies every deadline (slow CI).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Health checks of persistent instances dial the addresses registered, and most tests register
/// made-up ones (`10.0.0.1:80`): no test may send traffic off loopback, and those instances would
/// turn unhealthy under tests that never asked for checks. So servers start with checks off
/// unless the test's config has its own `[naming.health_check]` (see `health_check.rs`).
const CHECKS_OFF: &str = "\n[naming.health_check]\nenabled = false\n";

/// The config file a server gets: the test's, with health checks off unless it configures them.
fn effective_config(config: Option<&str>) -> String {
    let mut toml = config.unwrap_or_default().to_owned();
    if !toml.contains("[naming.health_check]") {
        toml.push_str(CHECKS_OFF);
    }
    toml
}

/// `n` HTTP ports such that each port, +1000 and +1001 were free a moment ago (a parallel test
/// can still take one first; `Cluster::start` retries on other ports).
pub(crate) fn free_member_ports(n: usize) -> Vec<u16> {
    // Below the kernel's ephemeral range (32768+): a port that outgoing connections can never
    // take, so a member restarted on its old ports finds them free.
    let mut seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut out: Vec<u16> = Vec::new();
    while out.len() < n {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let p = 10_000 + ((seed >> 33) % 21_000) as u16;
        let clear = out.iter().all(|o| o.abs_diff(p) > 1002);
        let free = [p, p + GRPC_OFFSET, p + CLUSTER_OFFSET]
            .iter()
            .all(|q| std::net::TcpListener::bind(("127.0.0.1", *q)).is_ok());
        if clear && free {
            out.push(p);
        }
    }
    out
}

/// This member's HTTP port and the flags that make it member `node_id` of `http_ports`.
fn member_args(node_id: usize, http_ports: &[u16]) -> (u16, Vec<String>) {
    let members: Vec<String> = http_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let http = http_ports[node_id - 1];
    let extra = vec![
        "--node-id".to_owned(),
        node_id.to_string(),
        "--members".to_owned(),
        members.join(","),
        "--cluster-port".to_owned(),
        (http + CLUSTER_OFFSET).to_string(),
    ];
    (http, extra)
}

/// Multiplier for deadlines, from `IT_PATIENCE` (default 1).
pub(crate) fn patience() -> u32 {
    std::env::var("IT_PATIENCE").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1)
}

/// A running server process.
pub(crate) struct Server {
    child: Option<Child>,
    /// Bound HTTP address.
    pub(crate) http: SocketAddr,
    /// Bound gRPC (SDK channel) address.
    pub(crate) grpc: SocketAddr,
    /// Bound cluster (member-to-member) address.
    pub(crate) cluster: SocketAddr,
    /// Local address UDP pushes come from.
    pub(crate) udp_push: SocketAddr,
    /// DNS address (UDP and TCP), when started with `--dns-port`.
    pub(crate) dns: Option<SocketAddr>,
    /// DNS-over-TLS address, when started with `[dns] tls_port`.
    pub(crate) dns_tls: Option<SocketAddr>,
    data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    output: Arc<Mutex<Vec<String>>>,
    config: Option<String>,
    /// Extra command-line arguments (cluster members), kept across restarts.
    extra: Vec<String>,
}

impl Server {
    /// A server on a fresh temporary data directory with default settings.
    pub(crate) fn start() -> Self {
        Self::start_with_config(None)
    }

    /// A server on a fresh data directory with a TOML config file.
    pub(crate) fn start_with_config(config: Option<&str>) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        let mut s = Self::spawn(&dir, config.map(str::to_owned));
        s._temp = Some(temp);
        s
    }

    /// A server on a fresh data directory with extra flags; every port ephemeral (0), so its
    /// gRPC and cluster ports are unrelated to its HTTP port.
    pub(crate) fn start_with_args(extra: Vec<String>) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut s = Self::spawn_on(temp.path(), None, None, extra);
        s._temp = Some(temp);
        s
    }

    /// A server whose gRPC and cluster ports follow its HTTP port (+1000, +1001), as in a
    /// deployment: for clients that derive the gRPC port (the sidecar).
    pub(crate) fn start_on_derived_ports() -> Self {
        Self::start_on_derived_ports_with_config(None)
    }

    /// [`Self::start_on_derived_ports`] with a TOML config file.
    pub(crate) fn start_on_derived_ports_with_config(config: Option<&str>) -> Self {
        let http = free_member_ports(1)[0];
        let temp = tempfile::tempdir().expect("temp dir");
        let mut s =
            Self::spawn_on(temp.path(), config.map(str::to_owned), Some((http, http + GRPC_OFFSET)), Vec::new());
        s._temp = Some(temp);
        s
    }

    /// Restarts on the same data directory (after `kill9` or `terminate`), on new ports.
    pub(crate) fn restart(&mut self) {
        self.restart_on(None);
    }

    /// Restarts on the same data directory and the same HTTP and gRPC ports, so that clients
    /// configured with the old addresses reconnect.
    pub(crate) fn restart_same_ports(&mut self) {
        let extra = if self.extra.is_empty() {
            // The cluster port was ephemeral too: keep it, or it would default to HTTP + 1001,
            // a port nobody reserved.
            vec!["--cluster-port".to_owned(), self.cluster.port().to_string()]
        } else {
            self.extra.clone()
        };
        self.restart_on_with(Some((self.http.port(), self.grpc.port())), extra);
    }

    /// Restarts on the same data directory as member `node_id` of a cluster whose members' HTTP
    /// ports are now `http_ports` (this member's own entry may have moved).
    pub(crate) fn restart_as_member(&mut self, node_id: usize, http_ports: &[u16]) {
        assert!(self.child.is_none(), "stop the server before restarting it");
        let (http, extra) = member_args(node_id, http_ports);
        let temp = self._temp.take();
        let mut fresh =
            Self::spawn_on(&self.data_dir.clone(), self.config.clone(), Some((http, http + GRPC_OFFSET)), extra);
        fresh._temp = temp;
        *self = fresh;
    }

    fn restart_on(&mut self, ports: Option<(u16, u16)>) {
        let extra = self.extra.clone();
        self.restart_on_with(ports, extra);
    }

    fn restart_on_with(&mut self, ports: Option<(u16, u16)>, extra: Vec<String>) {
        assert!(self.child.is_none(), "stop the server before restarting it");
        let temp = self._temp.take();
        let mut fresh = Self::spawn_on(&self.data_dir.clone(), self.config.clone(), ports, extra);
        fresh._temp = temp;
        *self = fresh;
    }

    fn spawn(data_dir: &Path, config: Option<String>) -> Self {
        Self::spawn_on(data_dir, config, None, Vec::new())
    }

    fn spawn_on(data_dir: &Path, config: Option<String>, ports: Option<(u16, u16)>, extra: Vec<String>) -> Self {
        Self::try_spawn_on(data_dir, config, ports, extra)
            .unwrap_or_else(|output| panic!("registry did not become ready in time; output:\n{output}"))
    }

    /// Starts member `node_id` (1-based) of a cluster whose members' HTTP ports are `http_ports`
    /// (gRPC and cluster ports follow at +1000 and +1001), on a fresh data directory.
    pub(crate) fn start_member(node_id: usize, http_ports: &[u16], config: Option<&str>) -> Self {
        Self::try_start_member(node_id, http_ports, config)
            .unwrap_or_else(|output| panic!("member {node_id} did not become ready; output:\n{output}"))
    }

    /// Like `start_member`, but a member that cannot start (a port taken meanwhile) is an
    /// error carrying its output instead of a panic, so the caller can pick other ports.
    pub(crate) fn try_start_member(node_id: usize, http_ports: &[u16], config: Option<&str>) -> Result<Self, String> {
        let temp = tempfile::tempdir().expect("temp dir");
        let (http, extra) = member_args(node_id, http_ports);
        let mut s =
            Self::try_spawn_on(temp.path(), config.map(str::to_owned), Some((http, http + GRPC_OFFSET)), extra)?;
        s._temp = Some(temp);
        Ok(s)
    }

    fn try_spawn_on(
        data_dir: &Path,
        config: Option<String>,
        ports: Option<(u16, u16)>,
        extra: Vec<String>,
    ) -> Result<Self, String> {
        let (http_port, grpc_port) = ports.unwrap_or((0, 0));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_registry"));
        cmd.args(["--bind", "127.0.0.1", "--http-port", &http_port.to_string(), "--grpc-port", &grpc_port.to_string()])
            .arg("--data-dir")
            .arg(data_dir.join("data"))
            .env("RUST_LOG", "info")
            .env_remove("NACOS_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.args(&extra);
        let path = data_dir.join("registry.toml");
        std::fs::write(&path, effective_config(config.as_deref())).expect("write config");
        cmd.arg("--config").arg(path);
        let mut child = cmd.spawn().expect("spawn registry");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        for stream in [Box::new(stdout) as Box<dyn std::io::Read + Send>, Box::new(stderr)] {
            let out = Arc::clone(&output);
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    out.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + START_TIMEOUT * patience();
        let (mut http, mut grpc, mut cluster, mut udp, mut dns, mut dns_tls) = (None, None, None, None, None, None);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(a) = addr_after(&line, "listening on http ") {
                        http = Some(a);
                    }
                    if let Some(a) = addr_after(&line, "listening on grpc ") {
                        grpc = Some(a);
                    }
                    if let Some(a) = addr_after(&line, "listening on cluster ") {
                        cluster = Some(a);
                    }
                    if let Some(a) = addr_after(&line, "listening on udp-push ") {
                        udp = Some(a);
                    }
                    if let Some(a) = addr_after(&line, "listening on dns ") {
                        dns = Some(a);
                    }
                    if let Some(a) = addr_after(&line, "listening on dns-tls ") {
                        dns_tls = Some(a);
                    }
                    if line.trim_end().ends_with(" ready") {
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(output.lock().unwrap().join("\n"));
                }
            }
        }
        Ok(Self {
            child: Some(child),
            http: http.expect("http address logged"),
            grpc: grpc.expect("grpc address logged"),
            cluster: cluster.expect("cluster address logged"),
            udp_push: udp.expect("udp address logged"),
            dns,
            dns_tls,
            data_dir: data_dir.to_path_buf(),
            _temp: None,
            output,
            config,
            extra,
        })
    }

    /// `http://addr` + path.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// The server's process id (for signals such as SIGSTOP in fault tests).
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no chance to flush anything.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for exit (bounded); returns whether it exited successfully.
    pub(crate) fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else { return false };
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30) * patience();
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's data directory (`--data-dir`).
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.data_dir.join("data")
    }

    /// Everything the server printed so far.
    pub(crate) fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("---- registry output ----\n{}\n-------------------------", self.output());
        }
    }
}

fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// Polls `check` until it returns `Some`, at most `timeout` × patience.
pub(crate) async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout * patience();
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An HTTP client for tests.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client")
}

/// A response's status and body text.
pub(crate) async fn call(req: reqwest::RequestBuilder) -> (u16, String) {
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

/// One series of `server`'s `/metrics`: a name, with its labels as exposed when it has any
/// (`name{label="v"}`). Fails when the series is missing.
pub(crate) async fn metric(server: &Server, series: &str) -> u64 {
    let (status, text) = call(client().get(server.url("/metrics"))).await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} missing from /metrics"))
}

/// `server`'s count of acknowledged pushes, once it has sent at least `sent` and none awaits
/// its acknowledgement: the baseline from which [`pushed_since`] tells a later push apart from
/// a client's own poll.
pub(crate) async fn settled_pushes(server: &Server, sent: u64) -> u64 {
    eventually(Duration::from_secs(10), || async {
        let settled = metric(server, "registry_push_sent_total").await >= sent
            && metric(server, "registry_push_pending_acks").await == 0;
        settled.then_some(metric(server, "registry_push_acked_total").await)
    })
    .await
    .unwrap_or_else(|| panic!("pushes did not settle: fewer than {sent} sent, or acks still pending"))
}

/// Fails unless `server` had a push acknowledged after the [`settled_pushes`] baseline.
pub(crate) async fn pushed_since(server: &Server, baseline: u64, what: &str) {
    eventually(Duration::from_secs(10), || async {
        (metric(server, "registry_push_acked_total").await > baseline).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("{what}: the server acknowledged no push since the baseline ({baseline})"));
}

/// Parses JSON or fails with the text.
pub(crate) fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Lower-case hex MD5 of the UTF-8 bytes (spec §7.2), computed here, independently of the
/// server's implementation, so tests check the server against the rule.
pub(crate) fn md5_hex(s: &str) -> String {
    use md5::{Digest, Md5};
    Md5::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Turns the active checks of `service`'s `DEFAULT` cluster off (checker `NONE`), so health is
/// set by the manual health API.
pub(crate) async fn checks_off(server: &Server, service: &str) {
    let (status, body) = call(client().put(server.url("/nacos/v1/ns/cluster")).form(&[
        ("serviceName", service),
        ("clusterName", "DEFAULT"),
        ("checkPort", "80"),
        ("useInstancePort4Check", "true"),
        ("healthChecker", r#"{"type":"NONE"}"#),
    ]))
    .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
}

/// Marks a persistent instance of `service` (port 8080) healthy or not by the manual health API,
/// after turning its cluster's own checks off.
pub(crate) async fn set_manual_health(server: &Server, service: &str, ip: &str, healthy: bool) {
    checks_off(server, service).await;
    let healthy = healthy.to_string();
    let (status, body) = call(client().put(server.url("/nacos/v1/ns/health/instance")).form(&[
        ("serviceName", service),
        ("ip", ip),
        ("port", "8080"),
        ("healthy", healthy.as_str()),
    ]))
    .await;
    assert_eq!(status, 200, "{body}");
}
