//! A real `registry` process for the tier (the projection subscribes to it, sidecars register
//! with it): standalone, embedded store, killed when dropped.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{eventually, workspace_binary};

/// A `registry` process, standalone, on loopback ports of its own; killed when dropped.
pub(crate) struct Registry {
    child: Child,
    /// HTTP address.
    pub(crate) http: SocketAddr,
    /// gRPC address (HTTP + 1000, as SDKs and the sidecar derive it).
    pub(crate) grpc: SocketAddr,
    _data: tempfile::TempDir,
}

impl Registry {
    /// Starts one bound to `bind` (loopback, or a lab's gateway so pods in namespaces reach it).
    pub(crate) async fn start(bind: Ipv4Addr) -> Self {
        let (http, grpc, cluster) = free_layout(bind);
        let data = tempfile::tempdir().expect("data dir");
        let child = Command::new(workspace_binary("registry-core", "registry"))
            .args(["--bind", &bind.to_string(), "--http-port", &http.to_string(), "--grpc-port", &grpc.to_string()])
            .args(["--cluster-port", &cluster.to_string(), "--log-level", "warn"])
            .arg("--data-dir")
            .arg(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn registry");
        let registry =
            Self { child, http: SocketAddr::from((bind, http)), grpc: SocketAddr::from((bind, grpc)), _data: data };
        let ready = eventually(Duration::from_secs(30), || async {
            let r = reqwest::get(registry.url("/nacos/v1/console/health/readiness")).await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        assert!(ready.is_some(), "the registry did not become ready");
        registry
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// A form request that must answer `ok`.
    async fn send(&self, method: reqwest::Method, path: &str, form: &[(&str, &str)]) {
        let response = reqwest::Client::new().request(method.clone(), self.url(path)).form(form).send().await;
        let (status, body) = match response {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        };
        assert_eq!((status, body.as_str()), (200, "ok"), "{method} {path} {form:?}");
    }

    /// Registers a persistent instance (it needs no heartbeat).
    pub(crate) async fn register(&self, service: &str, group: &str, ip: &str, port: &str) {
        let form = [("serviceName", service), ("groupName", group), ("ip", ip), ("port", port), ("ephemeral", "false")];
        self.send(reqwest::Method::POST, "/nacos/v1/ns/instance", &form).await;
    }

    /// Turns off active checks for `service`'s default cluster, then sets an instance's health.
    pub(crate) async fn set_health(&self, service: &str, ip: &str, port: &str, healthy: bool) {
        let checker = [
            ("serviceName", service),
            ("clusterName", "DEFAULT"),
            ("checkPort", "80"),
            ("useInstancePort4Check", "true"),
            ("healthChecker", r#"{"type":"NONE"}"#),
        ];
        self.send(reqwest::Method::PUT, "/nacos/v1/ns/cluster", &checker).await;
        let healthy = healthy.to_string();
        let form = [("serviceName", service), ("ip", ip), ("port", port), ("healthy", healthy.as_str())];
        self.send(reqwest::Method::PUT, "/nacos/v1/ns/health/instance", &form).await;
    }

    pub(crate) async fn disable(&self, service: &str, ip: &str, port: &str) {
        let form = [("serviceName", service), ("ip", ip), ("port", port), ("ephemeral", "false"), ("enabled", "false")];
        self.send(reqwest::Method::PUT, "/nacos/v1/ns/instance", &form).await;
    }

    pub(crate) async fn deregister(&self, service: &str, ip: &str, port: &str) {
        let form = [("serviceName", service), ("ip", ip), ("port", port), ("ephemeral", "false")];
        self.send(reqwest::Method::DELETE, "/nacos/v1/ns/instance", &form).await;
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Free HTTP, gRPC (HTTP + 1000) and cluster ports on `bind`.
fn free_layout(bind: Ipv4Addr) -> (u16, u16, u16) {
    for _ in 0..100 {
        let Ok(http) = TcpListener::bind((bind, 0)) else { continue };
        let Ok(port) = http.local_addr().map(|a| a.port()) else { continue };
        let Some(grpc) = port.checked_add(1000) else { continue };
        let Ok(_grpc) = TcpListener::bind((bind, grpc)) else { continue };
        let Ok(cluster) = TcpListener::bind((bind, 0)).and_then(|c| c.local_addr()) else { continue };
        return (port, grpc, cluster.port());
    }
    panic!("no free port pair HTTP/HTTP+1000 on {bind}");
}
