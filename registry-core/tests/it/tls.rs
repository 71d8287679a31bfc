//! TLS on real `registry` processes (docs/tls.md), with certificates made here by a test CA:
//! HTTPS and the SDK channel over TLS (the shared Rust client; the crates.io `nacos-sdk` can
//! only do TLS with a compile-time feature that turns every client of the process to TLS, see
//! docs/tls.md), a renewed certificate served without a restart, members replicating and
//! forwarding over (mutual) TLS while refusing peers without a certificate from the cluster CA,
//! members following a replaced CA file (and counting its reloads), and the sidecar
//! registering its app through a TLS upstream.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_resolver::proto::op::{Message, Query};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use registry_proto::client::{Connection, Setup};
use registry_proto::cluster::RaftRequest;
use registry_proto::cluster::cluster_client::ClusterClient;
use registry_proto::contract::tls::{ALPN_DOT, ALPN_H2, ALPN_HTTP1, sidecar_env};
use registry_proto::model::ServiceKey;
use registry_proto::tls::{Connector, Credentials, Identity, TrustAnchors, client_config};
use registry_proto::wire::naming::WireInstance;
use serde_json::Value;

use crate::harness::{Server, eventually, free_member_ports};
use crate::sidecar::{Sidecar, declared_env};

/// A certificate authority in a temporary directory, issuing certificates for 127.0.0.1.
struct Pki {
    dir: tempfile::TempDir,
    ca: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, issuer.pem()).unwrap();
        Self { dir, ca, issuer }
    }

    /// A server and client certificate for `127.0.0.1` and `localhost`, written as `name.pem`
    /// and `name-key.pem`.
    fn issue(&self, name: &str) -> Identity {
        let identity =
            Identity::new(self.dir.path().join(format!("{name}.pem")), self.dir.path().join(format!("{name}-key.pem")));
        self.issue_into(name, &identity, FIRST_EXPIRY.0);
        identity
    }

    /// A new certificate and key for `name`, valid until the start of `year`, written over
    /// `identity`'s files (a renewal).
    fn issue_into(&self, name: &str, identity: &Identity, year: i32) -> Vec<u8> {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.not_after = rcgen::date_time_ymd(year, 1, 1);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        std::fs::write(&identity.key, key.serialize_pem()).unwrap();
        std::fs::write(&identity.cert, cert.pem()).unwrap();
        cert.der().to_vec()
    }
}

/// Certificates issued by [`Pki::issue`] expire at the start of this year (Unix seconds from
/// `date -u -d 2040-01-01 +%s`); renewals at the start of the next.
const FIRST_EXPIRY: (i32, i64) = (2040, 2_208_988_800);
const RENEWED_EXPIRY: (i32, i64) = (2041, 2_240_611_200);

/// The `[tls]` section for `identity`, with the cluster CA when given.
fn tls_section(identity: &Identity, ca: Option<&Path>, client_facing: bool) -> String {
    let mut toml = format!(
        "[tls]\ncert = '{}'\nkey = '{}'\nclient_facing = {client_facing}\n",
        identity.cert.display(),
        identity.key.display()
    );
    match ca {
        Some(ca) => toml.push_str(&format!("ca = '{}'\n", ca.display())),
        None => toml.push_str("cluster = false\n"),
    }
    toml
}

/// An HTTPS client trusting `ca` only.
fn https_client(ca: &Path) -> reqwest::Client {
    let config = client_config(&anchors(ca), None, &[ALPN_HTTP1]).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(rustls::ClientConfig::clone(&config))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn https(server: &Server, path: &str) -> String {
    format!("https://{}{path}", server.http)
}

/// The instance IPs of `service` as the server lists them over HTTPS.
async fn ips(client: &reqwest::Client, server: &Server, service: &str) -> Option<Vec<String>> {
    let url = https(server, "/nacos/v1/ns/instance/list");
    let body: Value = client.get(url).query(&[("serviceName", service)]).send().await.ok()?.json().await.ok()?;
    let mut ips: Vec<String> =
        body["hosts"].as_array()?.iter().filter_map(|h| h["ip"].as_str().map(str::to_owned)).collect();
    ips.sort();
    Some(ips)
}

async fn register_https(client: &reqwest::Client, server: &Server, service: &str, ip: &str) -> bool {
    let form = [("serviceName", service), ("ip", ip), ("port", "80"), ("ephemeral", "false")];
    let sent = client.post(https(server, "/nacos/v1/ns/instance")).form(&form).send().await;
    matches!(sent, Ok(r) if r.status() == 200)
}

/// `series` (name and labels) in `server`'s `/metrics`, scraped over HTTPS; `None` when absent.
async fn tls_metric(client: &reqwest::Client, server: &Server, series: &str) -> Option<i64> {
    let text = client.get(https(server, "/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Waits until `series` in `server`'s `/metrics` satisfies `want`; its last value.
async fn metric_until(
    client: &reqwest::Client,
    server: &Server,
    series: &str,
    want: impl Fn(i64) -> bool,
) -> Option<i64> {
    eventually(Duration::from_secs(10), || async { tls_metric(client, server, series).await.filter(|v| want(*v)) })
        .await
}

/// The certificate a TLS handshake with `addr` is shown (offering the port's `alpn`: a server
/// refuses a client whose protocols it does not speak).
async fn served_certificate(ca: &Path, addr: SocketAddr, alpn: &[u8]) -> Option<Vec<u8>> {
    let connector = Connector::new(client_config(&anchors(ca), None, &[alpn]).ok()?);
    let stream = connector.connect("127.0.0.1", addr.port()).await.ok()?;
    Some(stream.get_ref().1.peer_certificates()?.first()?.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_facing_tls_serves_https_and_the_sdk_channel_and_follows_a_renewed_certificate() {
    let pki = Pki::new("client-facing");
    let identity = pki.issue("server");
    let server = Server::start_with_config(Some(&tls_section(&identity, None, true)));
    let client = https_client(&pki.ca);

    // HTTPS: a persistent registration and its listing.
    assert!(register_https(&client, &server, "tls-http", "10.40.0.1").await, "registration over HTTPS");
    assert_eq!(ips(&client, &server, "tls-http").await, Some(vec!["10.40.0.1".to_owned()]));
    // Plain HTTP on the TLS port gets no answer, and counts as a failed handshake.
    let http_failures = r#"registry_tls_handshake_failures_total{listener="http"}"#;
    let failures = tls_metric(&client, &server, http_failures).await.expect("http handshake failures");
    let plain = reqwest::Client::new().get(format!("http://{}/nacos/v1/console/health/liveness", server.http)).send();
    assert!(plain.await.is_err(), "plain HTTP on the TLS port was answered");
    assert!(metric_until(&client, &server, http_failures, |n| n > failures).await.is_some(), "failure not counted");
    assert!(tls_metric(&client, &server, r#"registry_tls_handshakes_total{listener="http"}"#).await >= Some(1));

    // The SDK channel over TLS (the shared client): register, then see it over HTTPS.
    let mut setup = Setup::new("it-tls", "naming");
    setup.tls = Some(Connector::new(client_config(&anchors(&pki.ca), None, &[ALPN_H2]).unwrap()));
    let sdk = Connection::connect(server.grpc, &setup).await.expect("gRPC over TLS");
    let key = ServiceKey::new("public", "DEFAULT_GROUP", "tls-grpc").unwrap();
    let wire = WireInstance { ip: Some("10.40.0.2".into()), port: 8080, ..Default::default() };
    sdk.unary().register(&key, &wire).await.expect("register over TLS");
    let listed = eventually(Duration::from_secs(10), || async {
        ips(&client, &server, "tls-grpc").await.filter(|ips| ips == &["10.40.0.2"])
    })
    .await;
    assert!(listed.is_some(), "the instance registered over gRPC+TLS is listed");
    // A plain gRPC client on the TLS port is refused.
    let mut plain_setup = Setup::new("it-plain", "naming");
    plain_setup.connect_timeout = Duration::from_secs(2);
    assert!(Connection::connect(server.grpc, &plain_setup).await.is_err(), "plain gRPC on the TLS port");

    // Renewal: new certificate and key written over the old files, no restart. Writes keep
    // going while the files change.
    let before = served_certificate(&pki.ca, server.http, ALPN_HTTP1).await.expect("handshake before renewal");
    let (expiry, reloads) =
        ("registry_tls_certificate_expiry_seconds", r#"registry_tls_certificate_reloads_total{kind="identity"}"#);
    assert_eq!(tls_metric(&client, &server, expiry).await, Some(FIRST_EXPIRY.1));
    assert_eq!(tls_metric(&client, &server, reloads).await, Some(0));
    let renewed = pki.issue_into("server-renewed", &identity, RENEWED_EXPIRY.0);
    assert_ne!(before, renewed);
    let mut in_flight = 0;
    let followed = eventually(Duration::from_secs(10), || {
        in_flight += 1;
        let (client, server, ip) = (&client, &server, format!("10.40.1.{in_flight}"));
        let (ca, renewed) = (&pki.ca, &renewed);
        async move {
            assert!(register_https(client, server, "tls-renewal", &ip).await, "a write during the renewal failed");
            let http = served_certificate(ca, server.http, ALPN_HTTP1).await?;
            let grpc = served_certificate(ca, server.grpc, ALPN_H2).await?;
            (&http == renewed && &grpc == renewed).then_some(())
        }
    })
    .await;
    assert!(followed.is_some(), "the HTTP and gRPC ports serve the renewed certificate");
    // The open SDK connection survives the renewal; a new one works with the new certificate.
    sdk.unary().register(&key, &wire).await.expect("the existing TLS connection still works");
    Connection::connect(server.grpc, &setup).await.expect("a new TLS connection after the renewal");
    // One renewal read (one certificate for every port), the new end of validity shown.
    assert_eq!(tls_metric(&client, &server, expiry).await, Some(RENEWED_EXPIRY.1));
    assert_eq!(tls_metric(&client, &server, reloads).await, Some(1));

    // A broken certificate file: counted as a failed reload, the renewed pair stays in force.
    let failures = r#"registry_tls_certificate_reload_failures_total{kind="identity"}"#;
    let failed = tls_metric(&client, &server, failures).await.expect("reload failures");
    std::fs::write(&identity.cert, "not a certificate").unwrap();
    assert!(metric_until(&client, &server, failures, |n| n > failed).await.is_some(), "failed reload not counted");
    assert_eq!(tls_metric(&client, &server, expiry).await, Some(RENEWED_EXPIRY.1));
    assert_eq!(served_certificate(&pki.ca, server.grpc, ALPN_H2).await, Some(renewed));
}

/// One A query over DNS over TLS to `addr`, trusting `ca` and offering ALPN `dot`: the decoded
/// reply, `None` when the handshake or the exchange failed.
async fn dot_query(ca: &Path, addr: SocketAddr, name: &str) -> Option<Message> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let connector = Connector::new(client_config(&anchors(ca), None, &[ALPN_DOT]).ok()?);
    let mut stream = connector.connect("127.0.0.1", addr.port()).await.ok()?;
    let query = a_query(name);
    let mut framed = u16::try_from(query.len()).ok()?.to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    stream.write_all(&framed).await.ok()?;
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read_u16()).await.ok()?.ok()?;
    let mut reply = vec![0; usize::from(n)];
    stream.read_exact(&mut reply).await.ok()?;
    Message::from_vec(&reply).ok()
}

fn a_query(name: &str) -> Vec<u8> {
    let mut q = Message::query();
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    q.to_vec().unwrap()
}

fn a_addresses(m: &Message) -> Vec<String> {
    m.answers.iter().filter_map(|r| if let RData::A(a) = &r.data { Some(a.0.to_string()) } else { None }).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dns_over_tls_answers_clients_trusting_the_ca_beside_plain_dns_and_counts_refusals() {
    let pki = Pki::new("dot");
    let identity = pki.issue("server");
    let config = format!("{}[dns]\nport = 0\ntls_port = 0\nttl_secs = 1\n", tls_section(&identity, None, true));
    let server = Server::start_with_config(Some(&config));
    let (plain, dot) = (server.dns.expect("dns address logged"), server.dns_tls.expect("dns-tls address logged"));
    assert_ne!(plain.port(), dot.port());
    let client = https_client(&pki.ca);
    assert!(register_https(&client, &server, "dot-orders", "10.44.0.1").await, "registration over HTTPS");

    // A client trusting the CA resolves the service over TLS.
    let name = "dot-orders.nacos.local.";
    let answered = eventually(Duration::from_secs(10), || async {
        dot_query(&pki.ca, dot, name).await.filter(|m| a_addresses(m) == ["10.44.0.1"])
    })
    .await;
    assert!(answered.is_some(), "no answer over DNS over TLS");
    let dns_handshakes = r#"registry_tls_handshakes_total{listener="dns"}"#;
    assert!(tls_metric(&client, &server, dns_handshakes).await >= Some(1), "DoT handshake not counted");
    // The TLS series pass promtool's lint like the rest.
    let scrape = client.get(https(&server, "/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(scrape.contains("registry_tls_certificate_expiry_seconds"), "{scrape}");
    crate::metrics::promtool_accepts(&scrape);

    // Plain DNS over TCP on the TLS port gets no answer; the refused handshake is counted.
    let dns_failures = r#"registry_tls_handshake_failures_total{listener="dns"}"#;
    let failures = tls_metric(&client, &server, dns_failures).await.expect("dns handshake failures");
    let reply = crate::dns::raw_tcp(dot, &a_query(name)).await;
    assert!(reply.and_then(|r| Message::from_vec(&r).ok()).is_none(), "plain DNS answered on the TLS port");
    assert!(metric_until(&client, &server, dns_failures, |n| n > failures).await.is_some(), "failure not counted");
    // A client trusting another CA gets nothing either.
    assert!(dot_query(&Pki::new("dot-rogue").ca, dot, name).await.is_none(), "answered a client not trusting the CA");

    // The plain port keeps answering plain DNS (stub domains), over UDP and TCP.
    for tcp in [false, true] {
        let query = a_query(name);
        let reply =
            if tcp { crate::dns::raw_tcp(plain, &query).await } else { crate::dns::raw_udp(plain, &query).await };
        let reply = Message::from_vec(&reply.expect("plain DNS answers")).expect("a decodable reply");
        assert_eq!(a_addresses(&reply), ["10.44.0.1"], "plain DNS over {}", if tcp { "TCP" } else { "UDP" });
    }
    // The DoT connection stays usable for several queries in a row (RFC 7858 §3.4).
    let connector = Connector::new(client_config(&anchors(&pki.ca), None, &[ALPN_DOT]).unwrap());
    let mut stream = connector.connect("127.0.0.1", dot.port()).await.expect("DoT connection");
    for round in 0..3 {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let query = a_query(name);
        stream.write_all(&u16::try_from(query.len()).unwrap().to_be_bytes()).await.unwrap();
        stream.write_all(&query).await.unwrap();
        let n = stream.read_u16().await.unwrap_or_else(|e| panic!("round {round}: {e}"));
        let mut reply = vec![0; usize::from(n)];
        stream.read_exact(&mut reply).await.unwrap();
        assert_eq!(a_addresses(&Message::from_vec(&reply).unwrap()), ["10.44.0.1"], "round {round}");
    }
}

/// Starts three members, each with its own certificate from `pki`: TLS on every port, mutual
/// TLS on the cluster port.
fn start_tls_cluster(pki: &Pki) -> Vec<Server> {
    let configs: Vec<String> =
        (1..=3).map(|id| tls_section(&pki.issue(&format!("member-{id}")), Some(&pki.ca), true)).collect();
    let mut last_error = String::new();
    for _ in 0..5 {
        let ports = free_member_ports(3);
        let started: Result<Vec<Server>, String> =
            (1..=3).map(|id| Server::try_start_member(id, &ports, Some(&configs[id - 1]))).collect();
        match started {
            Ok(members) => return members,
            Err(output) => last_error = output,
        }
    }
    panic!("could not start a TLS cluster; last output:\n{last_error}");
}

/// A v2 admin answer's `data` over HTTPS.
async fn data(client: &reqwest::Client, server: &Server, path: &str) -> Option<Value> {
    let body: Value = client.get(https(server, path)).send().await.ok()?.json().await.ok()?;
    Some(body["data"].clone())
}

/// How a gRPC call to a cluster port ends for a client presenting `identity` (or nothing):
/// `Ok(code)` when the service answered (the TLS layer let it in), `Err` when the transport
/// refused it.
async fn cluster_call(addr: SocketAddr, ca: &Path, identity: Option<&Identity>) -> Result<tonic::Code, String> {
    let credentials = identity.map(Credentials::load).transpose().map_err(|e| e.to_string())?;
    let connector =
        Connector::new(client_config(&anchors(ca), credentials.as_ref(), &[ALPN_H2]).map_err(|e| e.to_string())?);
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).map_err(|e| e.to_string())?;
    let channel = endpoint
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect_with_connector(connector)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    // No sender id: a member's service answers Unauthenticated, which proves it was reached.
    match ClusterClient::new(channel).vote(RaftRequest { json: b"{}".to_vec() }).await {
        Ok(_) => Ok(tonic::Code::Ok),
        Err(status) if status.code() == tonic::Code::Unauthenticated => Ok(status.code()),
        Err(status) => Err(format!("call: {status}")),
    }
}

/// The alert a raw TLS client presenting `identity` gets from a cluster port: with TLS 1.3 the
/// client's handshake completes first, and the server's verdict on its certificate arrives on
/// the first read.
async fn raw_alert(addr: SocketAddr, ca: &Path, identity: Option<&Identity>) -> Option<rustls::AlertDescription> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let credentials = identity.map(|i| Credentials::load(i).unwrap());
    let connector = Connector::new(client_config(&anchors(ca), credentials.as_ref(), &[ALPN_H2]).unwrap());
    let mut stream = match connector.connect("127.0.0.1", addr.port()).await {
        Ok(s) => s,
        Err(e) => return alert_of(&e),
    };
    let _ = stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
        Ok(Err(e)) => alert_of(&e),
        _ => None,
    }
}

fn alert_of(e: &std::io::Error) -> Option<rustls::AlertDescription> {
    match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(*alert),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_replicate_over_mutual_tls_and_refuse_peers_without_a_valid_certificate() {
    let pki = Pki::new("cluster");
    let members = start_tls_cluster(&pki);
    let client = https_client(&pki.ca);
    let rogue = Pki::new("rogue");
    let rogue_identity = rogue.issue("intruder");

    // Intruders (trusting the cluster CA, so only the members' refusal fails them) keep knocking
    // on every cluster port while the members replicate writes.
    let cluster_addrs: Vec<SocketAddr> = members.iter().map(|m| m.cluster).collect();
    let (ca, intruder) = (pki.ca.clone(), rogue_identity.clone());
    let knocking = tokio::spawn(async move {
        let mut refused = 0;
        for round in 0..20 {
            let addr = cluster_addrs[round % 3];
            let identity = (round % 2 == 0).then_some(&intruder);
            if cluster_call(addr, &ca, identity).await.is_err() {
                refused += 1;
            }
        }
        refused
    });
    // Persistent writes through every member: followers forward them to the leader over the
    // cluster port, the leader replicates them.
    for (i, ip) in ["10.41.0.1", "10.41.0.2", "10.41.0.3"].iter().enumerate() {
        let written = eventually(Duration::from_secs(30), || async {
            register_https(&client, &members[i], "tls-cluster", ip).await.then_some(())
        })
        .await;
        assert!(written.is_some(), "persistent write through member {}", i + 1);
    }
    for member in &members {
        let replicated = eventually(Duration::from_secs(10), || async {
            ips(&client, member, "tls-cluster").await.filter(|ips| ips.len() == 3)
        })
        .await;
        assert!(replicated.is_some(), "member on {} has every write", member.http);
    }
    // v1 ephemeral registrations go over HTTPS to the member their `ip:port` hashes to, once the
    // first member finds the others UP (each then owns some).
    let all_up = eventually(Duration::from_secs(20), || async {
        let nodes = data(&client, &members[0], "/nacos/v1/core/cluster/nodes").await?;
        let nodes = nodes.as_array()?.clone();
        (nodes.len() == 3 && nodes.iter().all(|n| n["state"] == "UP")).then_some(())
    })
    .await;
    assert!(all_up.is_some(), "member 1 sees every member UP");
    for i in 1..=12 {
        let ip = format!("10.41.1.{i}");
        let form = [("serviceName", "tls-ephemeral"), ("ip", ip.as_str()), ("port", "80")];
        let sent = client.post(https(&members[0], "/nacos/v1/ns/instance")).form(&form).send().await;
        assert!(matches!(sent, Ok(r) if r.status() == 200), "v1 ephemeral register of {ip}");
    }
    let mut owners = Vec::new();
    for member in &members {
        let digest = data(&client, member, "/nacos/v2/core/distro/digest").await.expect("distro digest");
        owners.push(digest["owned"].as_u64().expect("owned"));
    }
    assert_eq!(owners.iter().sum::<u64>(), 12, "each v1 client has one owner: {owners:?}");
    assert!(owners.iter().all(|o| *o > 0), "v1 writes were forwarded over HTTPS to every member: {owners:?}");
    assert_eq!(knocking.await.unwrap(), 20, "every intruder call was refused");
    // Members' own handshakes complete; the intruders' are counted as failed on the cluster port.
    let (mut completed, mut failed) = (0, 0);
    for member in &members {
        completed += tls_metric(&client, member, r#"registry_tls_handshakes_total{listener="cluster"}"#).await.unwrap();
        failed +=
            tls_metric(&client, member, r#"registry_tls_handshake_failures_total{listener="cluster"}"#).await.unwrap();
    }
    assert!(completed >= 2 && failed >= 10, "cluster handshakes: {completed} completed, {failed} failed");

    let target = members[1].cluster;
    // A member's certificate gets through to the service (which then wants a sender id).
    let member_identity = Identity::new(pki.dir.path().join("member-1.pem"), pki.dir.path().join("member-1-key.pem"));
    assert_eq!(cluster_call(target, &pki.ca, Some(&member_identity)).await, Ok(tonic::Code::Unauthenticated));
    // No certificate, or one from another CA: refused by the TLS layer, with the TLS alert.
    assert!(cluster_call(target, &pki.ca, None).await.is_err());
    assert!(cluster_call(target, &pki.ca, Some(&rogue_identity)).await.is_err());
    assert_eq!(raw_alert(target, &pki.ca, None).await, Some(rustls::AlertDescription::CertificateRequired));
    let wrong_ca = raw_alert(target, &pki.ca, Some(&rogue_identity)).await;
    assert!(
        matches!(wrong_ca, Some(rustls::AlertDescription::UnknownCA | rustls::AlertDescription::BadCertificate)),
        "{wrong_ca:?}"
    );
    // Plain gRPC on the cluster port does not get through either.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{target}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await;
    if let Ok(channel) = plain {
        let r = ClusterClient::new(channel).vote(RaftRequest { json: b"{}".to_vec() }).await;
        assert!(r.is_err_and(|s| s.code() != tonic::Code::Unauthenticated), "plain gRPC reached the service");
    }
}

/// Puts `content` at `path` in one step (written beside it, then renamed over it), as a
/// mounted Secret changes: a reader never sees half of it.
fn replace(path: &Path, content: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, content).unwrap();
    std::fs::rename(&next, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_follow_a_replaced_ca_file_and_count_its_reloads_keeping_the_previous_on_a_broken_one() {
    let pki = Pki::new("rotating");
    // The test's own clients trust a copy: the members' CA file changes under them.
    let trusted = pki.dir.path().join("trusted.pem");
    std::fs::copy(&pki.ca, &trusted).unwrap();
    let members = start_tls_cluster(&pki);
    let client = https_client(&trusted);
    let next = Pki::new("next");
    let newcomer = next.issue("newcomer");
    let member = Identity::new(pki.dir.path().join("member-1.pem"), pki.dir.path().join("member-1-key.pem"));
    let target = members[1].cluster;
    let reloads = r#"registry_tls_certificate_reloads_total{kind="ca"}"#;
    let failures = r#"registry_tls_certificate_reload_failures_total{kind="ca"}"#;
    let written = eventually(Duration::from_secs(30), || async {
        register_https(&client, &members[0], "ca-rotation", "10.42.0.1").await.then_some(())
    })
    .await;
    assert!(written.is_some(), "the cluster takes writes");
    assert_eq!(tls_metric(&client, &members[1], reloads).await, Some(0));
    assert_eq!(tls_metric(&client, &members[1], failures).await, Some(0));
    assert!(cluster_call(target, &trusted, Some(&newcomer)).await.is_err(), "the next CA is not trusted yet");

    // Rotation: the file becomes the bundle of the current and the next CA. Writes keep going
    // through every member (followers forward over the cluster port) while it changes.
    let bundle = format!("{}{}", std::fs::read_to_string(&pki.ca).unwrap(), next.issuer.pem());
    replace(&pki.ca, &bundle);
    let mut in_flight = 0;
    let followed = eventually(Duration::from_secs(20), || {
        in_flight += 1;
        let (client, members, trusted, newcomer) = (&client, &members, &trusted, &newcomer);
        async move {
            let ip = format!("10.42.1.{in_flight}");
            let through = &members[in_flight % 3];
            assert!(register_https(client, through, "ca-rotation", &ip).await, "a write during the CA change failed");
            (cluster_call(target, trusted, Some(newcomer)).await == Ok(tonic::Code::Unauthenticated)).then_some(())
        }
    })
    .await;
    assert!(followed.is_some(), "the cluster port trusts the next CA once the file changed");
    // One change, read once by the member (its cluster port and its channels share the file).
    assert_eq!(tls_metric(&client, &members[1], reloads).await, Some(1));
    assert_eq!(tls_metric(&client, &members[1], failures).await, Some(0));

    // A broken CA file: counted as failed, the bundle stays in force for every certificate.
    replace(&pki.ca, "not a certificate");
    let counted = eventually(Duration::from_secs(20), || async {
        assert_eq!(cluster_call(target, &trusted, Some(&member)).await, Ok(tonic::Code::Unauthenticated));
        tls_metric(&client, &members[1], failures).await.filter(|n| *n == 1)
    })
    .await;
    assert!(counted.is_some(), "the broken CA file is counted as a failed reload");
    assert_eq!(tls_metric(&client, &members[1], reloads).await, Some(1));
    assert_eq!(cluster_call(target, &trusted, Some(&newcomer)).await, Ok(tonic::Code::Unauthenticated));
    assert!(cluster_call(target, &trusted, Some(&Pki::new("rogue").issue("intruder"))).await.is_err());
    // Members still replicate to each other.
    assert!(register_https(&client, &members[2], "ca-rotation", "10.42.2.1").await, "write after the broken CA");
    for member in &members {
        let replicated = eventually(Duration::from_secs(10), || async {
            ips(&client, member, "ca-rotation").await.filter(|ips| ips.iter().any(|ip| ip == "10.42.2.1"))
        })
        .await;
        assert!(replicated.is_some(), "member on {} has the write made after the broken CA", member.http);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sidecar_registers_its_app_through_a_tls_upstream() {
    let pki = Pki::new("sidecar");
    let identity = pki.issue("registry");
    let server = Server::start_on_derived_ports_with_config(Some(&tls_section(&identity, None, true)));
    let app = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = app.local_addr().unwrap().port();
    let mut env = declared_env("tls-sidecar", port);
    env.push((sidecar_env::CA, pki.ca.display().to_string()));
    let sidecar = Sidecar::start(&[&server], &env);

    let client = https_client(&pki.ca);
    let registered = eventually(Duration::from_secs(15), || async {
        ips(&client, &server, "tls-sidecar").await.filter(|ips| ips == &["127.0.0.1"])
    })
    .await;
    assert!(registered.is_some(), "the declared instance reached the registry over TLS");
    assert!(sidecar.metric("sidecar_upstream_connects_total").await >= 1);
    // The local HTTP API passes reads through to the registry over HTTPS.
    register_https(&client, &server, "tls-passthrough", "10.42.0.1").await;
    let url = sidecar.http_url("/nacos/v1/ns/instance/list");
    let body: Value = crate::harness::client()
        .get(url)
        .query(&[("serviceName", "tls-passthrough")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["hosts"][0]["ip"], "10.42.0.1", "{body}");
}

/// The probe program (`tests/sdk-tls-probe`), built (a no-op when current) in its own target
/// directory next to this build's; `None` after a SKIP line when OpenSSL's development files
/// are missing (the SDK's `tls` feature links OpenSSL; `apt-get install libssl-dev
/// pkg-config`), a failure instead with `SDK_TLS_REQUIRED=1` (CI).
fn sdk_tls_probe() -> Option<PathBuf> {
    let openssl = std::process::Command::new("pkg-config").args(["--exists", "openssl"]).status();
    if !openssl.is_ok_and(|s| s.success()) {
        let message = "OpenSSL development files not found (apt-get install libssl-dev pkg-config)";
        assert!(std::env::var("SDK_TLS_REQUIRED").as_deref() != Ok("1"), "SDK_TLS_REQUIRED=1 but {message}");
        println!("SKIP nacos-sdk over TLS: {message}");
        return None;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk-tls-probe/Cargo.toml");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_registry")).parent().expect("target dir").to_path_buf();
    let target = bin_dir.parent().expect("target root").join("sdk-tls-probe");
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "-q", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        .status();
    assert!(status.is_ok_and(|s| s.success()), "building the sdk-tls-probe failed");
    Some(target.join("debug/sdk-tls-probe"))
}

/// Builds nacos-sdk with its `tls` feature outside the workspace first (about a minute cold).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_crates_io_nacos_sdk_registers_over_tls() {
    let Some(probe) = sdk_tls_probe() else { return };
    let pki = Pki::new("nacos-sdk");
    let identity = pki.issue("registry");
    let server = Server::start_with_config(Some(&tls_section(&identity, None, true)));
    let run = |ca: Option<&Path>| {
        let mut cmd = std::process::Command::new(&probe);
        cmd.args([&server.http.port().to_string(), &server.grpc.port().to_string(), "sdk-tls", "10.43.0.1"]);
        cmd.env_remove("NACOS_CLIENT_TLS_CA_CERT");
        if let Some(ca) = ca {
            cmd.env("NACOS_CLIENT_TLS_CA_CERT", ca);
        }
        cmd.output().expect("run sdk-tls-probe")
    };
    let trusted = run(Some(&pki.ca));
    let stdout = String::from_utf8_lossy(&trusted.stdout);
    assert!(trusted.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&trusted.stderr));
    assert_eq!(stdout.trim(), "listed 10.43.0.1:8080", "the SDK lists its own instance over TLS");
    // Without the test CA the SDK cannot verify the server and gets nowhere.
    assert!(!run(None).status.success(), "the SDK connected without trusting the server's CA");
}

/// The CA file `ca`, followed.
fn anchors(ca: &std::path::Path) -> TrustAnchors {
    TrustAnchors::load(ca).expect("CA file")
}
