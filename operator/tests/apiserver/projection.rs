//! The service projection against the real API server and a real `registry` process: instances
//! registered in the registry become a headless Service and Endpoints (1.20 serves no
//! `discovery.k8s.io/v1`) with exactly the instances that may take traffic, updated from
//! registry pushes as they turn unhealthy, disabled or deregistered; a resolver asking a
//! kube-dns stand-in (A records from the API server's Endpoints, as kube-dns answers headless
//! Services) gets them; turning the projection off removes them.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use nacos_operator::crd::NacosCluster;
use nacos_operator::projection::{PROJECTED_BY_LABEL, SERVICE_ANNOTATION, service_name};
use registry_proto::model::ServiceKey;
use serde_json::json;

use crate::cluster::{NAME, create_cluster};
use crate::harness::{ControlPlane, eventually};
use crate::operator::Operator;
use crate::registry::Registry;

/// How long a projected change may take to show (a push, then one apply): the real bound is
/// far lower; this is a deadline, not a measurement.
const CHANGE: Duration = Duration::from_secs(10);

/// The addresses the Endpoints `name` holds (empty when it has none or does not exist).
pub(crate) async fn endpoint_ips(client: &Client, namespace: &str, name: &str) -> Option<BTreeSet<String>> {
    let endpoints = Api::<Endpoints>::namespaced(client.clone(), namespace).get_opt(name).await.ok()??;
    let subsets = endpoints.subsets.unwrap_or_default();
    Some(subsets.iter().flat_map(|s| s.addresses.iter().flatten().map(|a| a.ip.clone())).collect())
}

fn ips(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Waits until the Endpoints `name` hold exactly `want`; how long it took.
pub(crate) async fn await_endpoints(client: &Client, namespace: &str, name: &str, want: &[&str]) -> Duration {
    await_endpoints_within(CHANGE, client, namespace, name, want).await
}

/// [`await_endpoints`] with a deadline of `within` (× patience), for changes that wait on
/// something slower than a push (a probe's three results in a row).
pub(crate) async fn await_endpoints_within(
    within: Duration,
    client: &Client,
    namespace: &str,
    name: &str,
    want: &[&str],
) -> Duration {
    let started = Instant::now();
    let want = ips(want);
    let seen = eventually(within, || async {
        (endpoint_ips(client, namespace, name).await.as_ref() == Some(&want)).then_some(())
    })
    .await;
    assert!(seen.is_some(), "Endpoints {name}: want {want:?}, have {:?}", endpoint_ips(client, namespace, name).await);
    started.elapsed()
}

/// A kube-dns stand-in on a loopback UDP port: `A <service>.<namespace>.svc.cluster.local`
/// answered from the API server's Endpoints of that Service, NXDOMAIN when there are none.
fn kube_dns(client: Client) -> SocketAddr {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("dns socket");
    let addr = socket.local_addr().expect("dns addr");
    let runtime = tokio::runtime::Handle::current();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((len, from)) = socket.recv_from(&mut buf) {
            let Some((labels, question_end)) = question(&buf[..len]) else { continue };
            let answer = match labels.as_slice() {
                [service, namespace, svc, cluster, local]
                    if svc == "svc" && cluster == "cluster" && local == "local" =>
                {
                    runtime.block_on(endpoint_ips(&client, namespace, service))
                }
                _ => None,
            };
            let _ = socket.send_to(&reply(&buf[..question_end], answer.as_ref()), from);
        }
    });
    addr
}

/// The lowercased labels of a query's one question and where the question ends.
fn question(packet: &[u8]) -> Option<(Vec<String>, usize)> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*packet.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(packet.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    (packet.len() >= at + 4).then_some((labels, at + 4))
}

/// The reply to `query` (header and question): A records of `ips` (TTL 1), NXDOMAIN without.
fn reply(query: &[u8], ips: Option<&BTreeSet<String>>) -> Vec<u8> {
    let addresses: Vec<Ipv4Addr> = ips.into_iter().flatten().filter_map(|ip| ip.parse().ok()).collect();
    let mut out = query.to_vec();
    out[2] = 0x84 | (query[2] & 0x01); // response, authoritative, RD echoed
    out[3] = if ips.is_some() { 0x00 } else { 0x03 }; // NOERROR / NXDOMAIN
    out[6..8].copy_from_slice(&u16::try_from(addresses.len()).unwrap_or(0).to_be_bytes());
    out[8..12].fill(0);
    for ip in addresses {
        out.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4]);
        out.extend_from_slice(&ip.octets());
    }
    out
}

fn resolver(addr: SocketAddr) -> TokioResolver {
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let ns = NameServerConfig::new(addr.ip(), true, vec![udp]);
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_secs(2);
    opts.cache_size = 0;
    TokioResolver::builder_with_config(ResolverConfig::from_name_servers(vec![ns]), TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .expect("resolver")
}

async fn a_records(resolver: &TokioResolver, name: &str) -> BTreeSet<String> {
    match resolver.lookup(name, RecordType::A).await {
        Ok(lookup) => lookup
            .answers()
            .iter()
            .filter_map(|r| if let RData::A(a) = &r.data { Some(a.0.to_string()) } else { None })
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

pub(crate) async fn projected_services(client: &Client, namespace: &str) -> Vec<Service> {
    let list = ListParams::default().labels(&format!("{PROJECTED_BY_LABEL}={NAME}"));
    Api::<Service>::namespaced(client.clone(), namespace).list(&list).await.map(|l| l.items).unwrap_or_default()
}

#[tokio::test]
async fn registered_instances_become_headless_services_and_endpoints_that_follow_pushes() {
    let Some(plane) = ControlPlane::start() else { return };
    let client = plane.client().await;
    let namespace = plane.namespace(&client, "projection").await;
    let registry = Registry::start(Ipv4Addr::LOCALHOST).await;
    let grpc = registry.grpc.to_string();
    let _operator = Operator::start_with(client.clone(), Some(Arc::new(move |_| vec![grpc.clone()]))).await;

    registry.register("orders", "DEFAULT_GROUP", "10.1.0.1", "8080").await;
    registry.register("orders", "DEFAULT_GROUP", "10.1.0.2", "8080").await;
    registry.register("Payments.v2", "DEFAULT_GROUP", "10.1.0.3", "9090").await;
    registry.register("orders", "other-group", "10.1.0.9", "8080").await;
    let cluster = create_cluster(&client, &namespace, json!({ "serviceProjection": { "enabled": true } })).await;
    let uid = cluster.uid().expect("uid");

    await_endpoints(&client, &namespace, "orders", &["10.1.0.1", "10.1.0.2"]).await;
    let payments = service_name(&ServiceKey::new("public", "DEFAULT_GROUP", "Payments.v2").expect("key"));
    await_endpoints(&client, &namespace, &payments, &["10.1.0.3"]).await;
    let services = projected_services(&client, &namespace).await;
    let names: BTreeSet<String> = services.iter().map(ResourceExt::name_any).collect();
    assert_eq!(names, ips(&["orders", &payments]), "only the selected group's services");
    for service in &services {
        let spec = service.spec.clone().expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"), "headless");
        assert!(spec.selector.is_none(), "selector-less");
        assert!(service.owner_references().iter().any(|o| o.uid == uid), "owned by the NacosCluster");
    }
    let payments_service = services.iter().find(|s| s.name_any() == payments).expect("payments");
    assert_eq!(payments_service.annotations().get(SERVICE_ANNOTATION).map(String::as_str), Some("Payments.v2"));

    let dns = resolver(kube_dns(client.clone()));
    let name = format!("orders.{namespace}.svc.cluster.local.");
    assert_eq!(a_records(&dns, &name).await, ips(&["10.1.0.1", "10.1.0.2"]), "cluster DNS resolves the instances");

    registry.set_health("orders", "10.1.0.2", "8080", false).await;
    let unhealthy = await_endpoints(&client, &namespace, "orders", &["10.1.0.1"]).await;
    assert_eq!(a_records(&dns, &name).await, ips(&["10.1.0.1"]));
    registry.set_health("orders", "10.1.0.2", "8080", true).await;
    await_endpoints(&client, &namespace, "orders", &["10.1.0.1", "10.1.0.2"]).await;
    registry.disable("orders", "10.1.0.1", "8080").await;
    let disabled = await_endpoints(&client, &namespace, "orders", &["10.1.0.2"]).await;
    registry.deregister("orders", "10.1.0.2", "8080").await;
    let deregistered = await_endpoints(&client, &namespace, "orders", &[]).await;
    assert!(a_records(&dns, &name).await.is_empty(), "no address once no instance may take traffic");
    println!(
        "projection: unhealthy {unhealthy:?}, disabled {disabled:?}, deregistered {deregistered:?} (polled every 200 ms)"
    );

    let clusters = Api::<NacosCluster>::namespaced(client.clone(), &namespace);
    let off = json!({ "spec": { "serviceProjection": { "enabled": false } } });
    clusters.patch(NAME, &PatchParams::default(), &Patch::Merge(&off)).await.expect("turn the projection off");
    let removed = eventually(CHANGE, || async {
        let left = projected_services(&client, &namespace).await.len();
        let endpoints = endpoint_ips(&client, &namespace, "orders").await;
        (left == 0 && endpoints.is_none()).then_some(())
    })
    .await;
    assert!(removed.is_some(), "turning the projection off removes its Services and Endpoints");
}
