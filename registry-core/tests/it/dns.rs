//! The DNS server against a real resolver (hickory's, with its cache, UDP then TCP): answers
//! follow the registry's healthy, enabled instances, within the TTL after a change.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::op::{Message, Query};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Server, call, client, eventually, metric};

/// Records live one second, so a change must show within about that (plus the push delay).
const CONFIG: &str = "[dns]\nport = 0\nttl_secs = 1\n";
/// TTL plus the time a change takes to reach the records, before patience.
const CHANGE_DEADLINE: Duration = Duration::from_secs(4);

fn dns_addr(server: &Server) -> SocketAddr {
    server.dns.expect("the server logged its dns address")
}

/// A resolver that asks only `server`, UDP first, TCP when an answer is truncated.
fn resolver(server: &Server) -> TokioResolver {
    let addr = dns_addr(server);
    let connection = |mut c: ConnectionConfig| {
        c.port = addr.port();
        c
    };
    let ns = NameServerConfig::new(
        addr.ip(),
        true,
        vec![connection(ConnectionConfig::udp()), connection(ConnectionConfig::tcp())],
    );
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_secs(2);
    TokioResolver::builder_with_config(ResolverConfig::from_name_servers(vec![ns]), TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .expect("resolver")
}

pub(crate) async fn register(server: &Server, service: &str, ip: &str, extra: &[(&str, &str)]) {
    let mut form = vec![("serviceName", service), ("ip", ip), ("port", "8080"), ("ephemeral", "false")];
    form.extend_from_slice(extra);
    let (status, body) = call(client().post(server.url("/nacos/v1/ns/instance")).form(&form)).await;
    assert_eq!((status, body.as_str()), (200, "ok"), "register {form:?}");
}

/// The addresses the resolver gets for `name`; empty when it has none (NODATA/NXDOMAIN).
async fn a_records(resolver: &TokioResolver, name: &str) -> BTreeSet<Ipv4Addr> {
    match resolver.lookup(name, RecordType::A).await {
        Ok(lookup) => {
            lookup.answers().iter().filter_map(|r| if let RData::A(a) = &r.data { Some(a.0) } else { None }).collect()
        }
        Err(e) if e.is_no_records_found() => BTreeSet::new(),
        Err(e) => panic!("lookup {name}: {e}"),
    }
}

fn ips(list: &[&str]) -> BTreeSet<Ipv4Addr> {
    list.iter().map(|ip| ip.parse().unwrap()).collect()
}

/// Waits until `name` resolves to exactly `want`.
async fn resolves_to(resolver: &TokioResolver, name: &str, want: &[&str], what: &str) {
    let want = ips(want);
    let last = std::sync::Mutex::new(BTreeSet::new());
    let seen = eventually(CHANGE_DEADLINE, || async {
        let got = a_records(resolver, name).await;
        let done = got == want;
        *last.lock().unwrap() = got;
        done.then_some(())
    })
    .await;
    assert!(seen.is_some(), "{what}: {name} resolved to {:?}, expected {want:?}", last.lock().unwrap());
}

/// One raw query over UDP or TCP; the decoded reply.
async fn raw(server: &Server, name: &str, t: RecordType, tcp: bool) -> Message {
    let mut q = Message::query();
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    let bytes = q.to_vec().unwrap();
    let reply = if tcp { raw_tcp(dns_addr(server), &bytes).await } else { raw_udp(dns_addr(server), &bytes).await };
    Message::from_vec(&reply.expect("a reply")).expect("a decodable reply")
}

pub(crate) async fn raw_udp(addr: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(packet, addr).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf)).await.ok()?.ok()?;
    Some(buf[..n].to_vec())
}

pub(crate) async fn raw_tcp(addr: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let len = u16::try_from(packet.len()).unwrap();
    stream.write_all(&len.to_be_bytes()).await.ok()?;
    stream.write_all(packet).await.ok()?;
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read_u16()).await.ok()?.ok()?;
    let mut buf = vec![0u8; usize::from(n)];
    stream.read_exact(&mut buf).await.ok()?;
    Some(buf)
}

#[tokio::test]
async fn a_srv_and_txt_answers_follow_the_healthy_enabled_instances() {
    let server = Server::start_with_config(Some(CONFIG));
    let r = resolver(&server);
    for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        register(&server, "orders", ip, &[]).await;
    }
    register(&server, "orders", "10.0.0.4", &[("weight", "2.5"), ("clusterName", "east")]).await;
    register(&server, "orders", "10.0.1.1", &[("groupName", "pay"), ("metadata", r#"{"version":"7"}"#)]).await;
    register(&server, "orders", "10.0.0.9", &[("weight", "0")]).await;

    // Short form = DEFAULT_GROUP in public; weight 0 is left out; the group form; a cluster.
    resolves_to(&r, "orders.nacos.local.", &["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"], "initial").await;
    resolves_to(&r, "orders.pay.nacos.local.", &["10.0.1.1"], "group form").await;
    resolves_to(&r, "east._cluster.orders.nacos.local.", &["10.0.0.4"], "cluster form").await;

    let srv = r.lookup("_http._tcp.orders.nacos.local.", RecordType::SRV).await.expect("srv");
    let mut found: Vec<(u16, u16, String)> = srv
        .answers()
        .iter()
        .filter_map(
            |rec| if let RData::SRV(s) = &rec.data { Some((s.port, s.weight, s.target.to_ascii())) } else { None },
        )
        .collect();
    found.sort();
    assert_eq!(found.len(), 4, "{found:?}");
    assert!(found.iter().all(|(port, _, _)| *port == 8080));
    assert!(found.contains(&(8080, 250, "10-0-0-4.addr.nacos.local.".to_owned())), "weight 2.5 → 250: {found:?}");
    // Every target resolves to its address (also given as glue in the additional section).
    assert_eq!(a_records(&r, "10-0-0-4.addr.nacos.local.").await, ips(&["10.0.0.4"]));
    assert_eq!(srv.additionals().len(), 4);

    let txt = r.lookup("orders.pay.nacos.local.", RecordType::TXT).await.expect("txt");
    let strings: Vec<String> = txt
        .answers()
        .iter()
        .filter_map(|rec| if let RData::TXT(t) = &rec.data { Some(t.to_string()) } else { None })
        .collect();
    assert!(strings.iter().any(|s| s.contains("instance=10.0.1.1:8080") && s.contains("version=7")), "{strings:?}");

    // Unhealthy through the manual health API (persistent instance, its cluster's checker
    // NONE), disabled, deregistered: each leaves the answer within the TTL plus the push delay.
    crate::harness::set_manual_health(&server, "orders", "10.0.0.2", false).await;
    resolves_to(&r, "orders.nacos.local.", &["10.0.0.1", "10.0.0.3", "10.0.0.4"], "unhealthy").await;
    let (status, body) = call(client().put(server.url("/nacos/v1/ns/instance")).form(&[
        ("serviceName", "orders"),
        ("ip", "10.0.0.3"),
        ("port", "8080"),
        ("ephemeral", "false"),
        ("enabled", "false"),
    ]))
    .await;
    assert_eq!(status, 200, "{body}");
    resolves_to(&r, "orders.nacos.local.", &["10.0.0.1", "10.0.0.4"], "disabled").await;
    let (status, body) = call(client().delete(server.url("/nacos/v1/ns/instance")).query(&[
        ("serviceName", "orders"),
        ("ip", "10.0.0.1"),
        ("port", "8080"),
        ("ephemeral", "false"),
    ]))
    .await;
    assert_eq!(status, 200, "{body}");
    resolves_to(&r, "orders.nacos.local.", &["10.0.0.4"], "deregistered").await;
    assert!(metric(&server, r#"registry_dns_queries_total{type="A",rcode="NOERROR"}"#).await > 0);
    assert!(metric(&server, r#"registry_dns_queries_total{type="SRV",rcode="NOERROR"}"#).await > 0);
}

#[tokio::test]
async fn unknown_names_are_nxdomain_with_the_soa_and_other_zones_refused() {
    let server = Server::start_with_config(Some(CONFIG));
    register(&server, "orders", "10.0.0.1", &[]).await;
    let r = resolver(&server);
    let err = r.lookup("nope.nacos.local.", RecordType::A).await.expect_err("no such service");
    assert!(err.is_nx_domain(), "{err}");
    let soa = err.into_soa().expect("the SOA in the authority section");
    assert_eq!((soa.name.to_ascii().as_str(), soa.data.mname.to_ascii().as_str()), ("nacos.local.", "ns.nacos.local."));
    assert_eq!(soa.data.minimum, 1, "negative answers live as long as records");

    let m = raw(&server, "orders.example.com.", RecordType::A, false).await;
    assert_eq!(m.metadata.response_code, hickory_resolver::proto::op::ResponseCode::Refused);
    assert!(metric(&server, r#"registry_dns_queries_total{type="A",rcode="NXDOMAIN"}"#).await >= 1);
    assert!(metric(&server, r#"registry_dns_queries_total{type="A",rcode="REFUSED"}"#).await >= 1);
}

#[tokio::test]
async fn a_large_answer_is_truncated_over_udp_and_complete_over_tcp() {
    let server = Server::start_with_config(Some(CONFIG));
    let all: Vec<String> = (1..=100).map(|i| format!("10.1.0.{i}")).collect();
    for ip in &all {
        register(&server, "big", ip, &[]).await;
    }
    let m = raw(&server, "big.nacos.local.", RecordType::A, false).await;
    assert!(m.metadata.truncation && m.answers.is_empty(), "100 A records do not fit 512 bytes");
    let m = raw(&server, "big.nacos.local.", RecordType::A, true).await;
    assert_eq!(m.answers.len(), 100);
    // The resolver retries over TCP by itself.
    let got = a_records(&resolver(&server), "big.nacos.local.").await;
    assert_eq!(got.len(), 100);
    assert!(metric(&server, "registry_dns_truncated_total").await >= 1);
}

/// A tiny seeded generator (xorshift64*), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[tokio::test]
async fn malformed_packets_leave_the_server_answering() {
    let server = Server::start_with_config(Some(CONFIG));
    register(&server, "orders", "10.0.0.1", &[]).await;
    let addr = dns_addr(&server);
    let mut q = Message::query();
    q.add_query(Query::query(Name::from_ascii("orders.nacos.local.").unwrap(), RecordType::A));
    let valid = q.to_vec().unwrap();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut rng = Rng(0xD15E_A5E5_0000_0015);
    // In rounds of 100, each closed by a valid query that must be answered: the server keeps
    // answering throughout, and the socket buffer never overflows (no packet lost unseen).
    for round in 0..20 {
        for i in 0..100 {
            let mut p = valid.clone();
            match i % 4 {
                0 => p.truncate((rng.next() as usize) % p.len()),
                1 => p[4 + 2 * ((rng.next() as usize) % 4)] = 0xFF,
                2 => {
                    p.truncate(12);
                    p.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
                }
                _ => p = (0..(rng.next() % 512)).map(|_| rng.next() as u8).collect(),
            }
            socket.send_to(&p, addr).await.unwrap();
        }
        let m = raw(&server, "orders.nacos.local.", RecordType::A, round % 2 == 1).await;
        assert_eq!(m.answers.len(), 1, "round {round}");
    }
    // 500 compression loops and 500 impossible counts at least were each answered FORMERR.
    let formerr = eventually(Duration::from_secs(5), || async {
        let n = metric(&server, r#"registry_dns_queries_total{type="malformed",rcode="FORMERR"}"#).await;
        (n >= 1_000).then_some(n)
    })
    .await;
    assert!(formerr.is_some(), "the malformed packets were not all answered with FORMERR");
}

/// With client auth on, DNS answers as its configured user through the one authorization
/// check: a service that user may read resolves, one it may not is NXDOMAIN (its existence
/// does not leak), and a permission granted later takes effect.
#[tokio::test(flavor = "multi_thread")]
async fn with_client_auth_dns_answers_only_what_its_user_may_read() {
    use crate::auth::{ADMIN_PASSWORD, auth_config, login, user_with};
    let server = Server::start_with_config(Some(&auth_config(&format!("{CONFIG}user = \"dns-reader\"\n"))));
    let admin = login(&server, "nacos", ADMIN_PASSWORD).await;
    for (service, ip) in [("orders", "10.0.0.1"), ("payroll", "10.0.0.2")] {
        let form = [("serviceName", service), ("ip", ip), ("port", "8080"), ("ephemeral", "false")];
        let req = client().post(server.url("/nacos/v1/ns/instance")).query(&[("accessToken", admin.as_str())]);
        assert_eq!(call(req.form(&form)).await, (200, "ok".to_owned()), "register {service}");
    }
    user_with(&server, &admin, "dns-reader", "dns-readers", &[("public:*:naming/orders", "r")]).await;
    let r = resolver(&server);
    let want: BTreeSet<Ipv4Addr> = ["10.0.0.1".parse().expect("ip")].into();
    let answered =
        eventually(CHANGE_DEADLINE, || async { (a_records(&r, "orders.nacos.local.").await == want).then_some(()) })
            .await;
    assert!(answered.is_some(), "a readable service resolves");
    let err = r.lookup("payroll.nacos.local.", RecordType::A).await.expect_err("not readable");
    assert!(err.is_nx_domain(), "an unreadable service is NXDOMAIN: {err}");

    let grant = [("role", "dns-readers"), ("resource", "public:*:naming/payroll"), ("action", "r")];
    let req = client().post(server.url("/nacos/v1/auth/permissions")).query(&[("accessToken", admin.as_str())]);
    assert_eq!(call(req.form(&grant)).await.0, 200);
    let want: BTreeSet<Ipv4Addr> = ["10.0.0.2".parse().expect("ip")].into();
    let granted =
        eventually(CHANGE_DEADLINE, || async { (a_records(&r, "payroll.nacos.local.").await == want).then_some(()) })
            .await;
    assert!(granted.is_some(), "a permission granted later takes effect");
}
