//! DNS over TLS as the operator sets it up, without Kubernetes: a `NacosCluster` with
//! `spec.dns.tlsPort` and client-facing TLS is validated and built, and one real `registry` is
//! started as its pod would be (the ConfigMap's `registry.toml`, the container's environment,
//! the operator-issued certificate at the mounted paths). A client trusting the cluster CA
//! resolves a registered service over TLS on the container's `dns-tls` port.

mod real_registry;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::proto::op::{Message, Query};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::core::v1::Container;
use nacos_operator::controller::build::{CONFIG_FILE, CONTAINER_NAME, Resources, TLS_DIR, build, port_name};
use nacos_operator::controller::server::ServerCapabilities;
use registry_proto::contract::tls::{ALPN_DOT, ALPN_HTTP1};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use self::real_registry::{Registry, eventually, free_member_ports, free_port, issued_certificate, spawn_registry};

/// The registered instance the DNS answer must carry.
const INSTANCE_IP: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 7);

/// A rustls client trusting only `ca_pem`, offering `alpn`.
fn trusting(ca_pem: &[u8], alpn: &[u8]) -> rustls::ClientConfig {
    rustls::ClientConfig::clone(&registry_proto::tls::client_config_trusting(ca_pem, &[alpn]).expect("CA"))
}

fn registry_container(resources: &Resources) -> &Container {
    let pod = resources.stateful_set.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod spec");
    pod.containers.iter().find(|c| c.name == CONTAINER_NAME).expect("registry container")
}

fn container_port(container: &Container, name: &str) -> u16 {
    let port = container.ports.iter().flatten().find(|p| p.name.as_deref() == Some(name)).expect(name);
    u16::try_from(port.container_port).expect("a port number")
}

/// Starts the member as its pod would: the rendered `registry.toml`, the container's literal
/// environment with the mounted TLS directory moved to `dir` (the pod-field variables only name
/// the pod), the certificate there.
fn start_member(resources: &Resources, http_port: u16, dir: &Path) -> Registry {
    let config = resources.config_map.data.as_ref().and_then(|d| d.get(CONFIG_FILE)).expect("registry.toml");
    let config_path = dir.join(CONFIG_FILE);
    std::fs::write(&config_path, config).expect("write config");
    let tls_dir = dir.display().to_string();
    let envs: Vec<(&str, String)> = registry_container(resources)
        .env
        .iter()
        .flatten()
        .filter_map(|var| Some((var.name.as_str(), var.value.as_ref()?.replace(TLS_DIR, &tls_dir))))
        .collect();
    let mut member = spawn_registry(http_port, &["--config".to_owned(), config_path.display().to_string()], &envs);
    member.http = format!("localhost:{http_port}");
    member
}

/// One A query for `name` over DNS over TLS to `port` on loopback, trusting `ca_pem`: the
/// decoded reply, `None` when the handshake or the exchange failed.
async fn dot_query(ca_pem: &[u8], port: u16, name: &str) -> Option<Message> {
    let connector = TlsConnector::from(Arc::new(trusting(ca_pem, ALPN_DOT)));
    let tcp = tokio::net::TcpStream::connect(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)).await.ok()?;
    let mut stream = connector.connect(ServerName::try_from("localhost").ok()?, tcp).await.ok()?;
    let mut query = Message::query();
    query.add_query(Query::query(Name::from_ascii(name).ok()?, RecordType::A));
    let query = query.to_vec().ok()?;
    let mut framed = u16::try_from(query.len()).ok()?.to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    stream.write_all(&framed).await.ok()?;
    let len = tokio::time::timeout(Duration::from_secs(5), stream.read_u16()).await.ok()?.ok()?;
    let mut reply = vec![0; usize::from(len)];
    stream.read_exact(&mut reply).await.ok()?;
    Message::from_vec(&reply).ok()
}

fn a_addresses(message: &Message) -> Vec<Ipv4Addr> {
    message.answers.iter().filter_map(|r| if let RData::A(a) = &r.data { Some(a.0) } else { None }).collect()
}

#[tokio::test]
async fn a_member_built_with_dns_tls_port_answers_dns_over_tls_for_clients_trusting_the_cluster_ca() {
    let http_port = free_member_ports(1)[0];
    let cluster = real_registry::validated(serde_json::json!({
        "replicas": 1,
        "ports": { "http": http_port },
        "dns": { "enabled": true, "containerPort": free_port(), "tlsPort": 853, "tlsContainerPort": free_port() },
        "tls": { "clientFacing": true },
    }));
    let resources = build(&cluster, &ServerCapabilities::NEWEST).expect("built");
    let dot_port = container_port(registry_container(&resources), port_name::DNS_TLS);
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = issued_certificate(&cluster, dir.path());
    let member = start_member(&resources, http_port, dir.path());

    // Client-facing TLS covers the HTTP port: register over HTTPS trusting the cluster CA.
    let https = reqwest::Client::builder().use_preconfigured_tls(trusting(&ca, ALPN_HTTP1)).build().expect("client");
    let url = format!("https://{}/nacos/v1/ns/instance", member.http);
    let ip = INSTANCE_IP.to_string();
    let form = [("serviceName", "orders"), ("ip", ip.as_str()), ("port", "80"), ("ephemeral", "false")];
    let registered = eventually(Duration::from_secs(30), || async {
        https.post(&url).form(&form).send().await.is_ok_and(|r| r.status().is_success()).then_some(())
    })
    .await;
    assert!(registered.is_some(), "registering over HTTPS at {url} failed");

    let name = "orders.nacos.local.";
    let answered = eventually(Duration::from_secs(10), || async {
        dot_query(&ca, dot_port, name).await.filter(|m| a_addresses(m) == [INSTANCE_IP])
    })
    .await;
    assert!(answered.is_some(), "no DNS-over-TLS answer with {INSTANCE_IP} on the dns-tls port {dot_port}");
}
