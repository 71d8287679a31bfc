//! A kube-dns stand-in: cluster DNS answered from the API server's Endpoints, as kube-dns
//! answers for headless Services. `A <service>.<namespace>.svc.cluster.local` is every address
//! of the Service's Endpoints; `A <hostname>.<service>.<namespace>.svc.cluster.local` is the
//! address whose `hostname` is that (a StatefulSet pod's stable name, set by the endpoints
//! controller from the pod's `hostname` and `subdomain`); anything else is NXDOMAIN.
//!
//! Pods in network namespaces reach it through their `resolv.conf` (`nameserver` = the lab's
//! gateway, port 53, as glibc only asks port 53); the in-process operator through [`Resolver`].

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use k8s_openapi::api::core::v1::{EndpointSubset, Endpoints};
use kube::{Api, Client};

/// The subsets of the Endpoints `name` (`None` when they do not exist).
async fn subsets(client: &Client, namespace: &str, name: &str) -> Option<Vec<EndpointSubset>> {
    let endpoints = Api::<Endpoints>::namespaced(client.clone(), namespace).get_opt(name).await.ok()??;
    Some(endpoints.subsets.unwrap_or_default())
}

/// The addresses the Endpoints `name` holds (ready ones only, as a client of the Service sees
/// them; `None` when the Endpoints do not exist).
pub(crate) async fn endpoint_ips(client: &Client, namespace: &str, name: &str) -> Option<BTreeSet<String>> {
    let subsets = subsets(client, namespace, name).await?;
    Some(subsets.iter().flat_map(|s| s.addresses.iter().flatten().map(|a| a.ip.clone())).collect())
}

/// What `labels` (a query name, lowercased) resolves to, `None` for NXDOMAIN.
async fn answer(client: &Client, labels: &[String]) -> Option<BTreeSet<String>> {
    match labels {
        [service, namespace, svc, cluster, local] if svc == "svc" && cluster == "cluster" && local == "local" => {
            endpoint_ips(client, namespace, service).await
        }
        [host, service, namespace, svc, cluster, local] if svc == "svc" && cluster == "cluster" && local == "local" => {
            let subsets = subsets(client, namespace, service).await?;
            let addresses =
                subsets.iter().flat_map(|s| s.addresses.iter().flatten().chain(s.not_ready_addresses.iter().flatten()));
            let ips: BTreeSet<String> =
                addresses.filter(|a| a.hostname.as_deref() == Some(host.as_str())).map(|a| a.ip.clone()).collect();
            (!ips.is_empty()).then_some(ips)
        }
        _ => None,
    }
}

/// Serves cluster DNS on UDP `bind` (port 0: any free port) until the process exits; its
/// address.
pub(crate) fn serve(client: Client, bind: SocketAddr) -> SocketAddr {
    let socket = UdpSocket::bind(bind).expect("dns socket");
    let addr = socket.local_addr().expect("dns addr");
    let runtime = tokio::runtime::Handle::current();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((len, from)) = socket.recv_from(&mut buf) {
            let Some((labels, question_end, qtype)) = question(&buf[..len]) else { continue };
            let ips = runtime.block_on(answer(&client, &labels));
            // The name exists, but only A records do: other types get an empty NOERROR.
            let ips = ips.map(|ips| if qtype == 1 { ips } else { BTreeSet::new() });
            let _ = socket.send_to(&reply(&buf[..question_end], ips.as_ref()), from);
        }
    });
    addr
}

/// The lowercased labels of a query's one question, where the question ends and its type.
fn question(packet: &[u8]) -> Option<(Vec<String>, usize, u16)> {
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
    let qtype = u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]);
    (packet.len() >= at + 4).then_some((labels, at + 4, qtype))
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

/// A resolver asking only the stand-in at `addr`, without a cache.
pub(crate) fn resolver(addr: SocketAddr) -> TokioResolver {
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

/// The A records of `name` (empty on NXDOMAIN or failure).
pub(crate) async fn a_records(resolver: &TokioResolver, name: &str) -> BTreeSet<String> {
    match resolver.lookup(name, RecordType::A).await {
        Ok(lookup) => lookup
            .answers()
            .iter()
            .filter_map(|r| if let RData::A(a) = &r.data { Some(a.0.to_string()) } else { None })
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// Cluster DNS for the in-process operator's HTTP client (`reqwest`'s resolver seam), as a
/// pod's resolver would answer it.
pub(crate) struct Resolver(pub(crate) TokioResolver);

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.0.clone();
        Box::pin(async move {
            let fqdn = format!("{}.", name.as_str().trim_end_matches('.'));
            let ips = a_records(&resolver, &fqdn).await;
            let addrs: Vec<SocketAddr> =
                ips.iter().filter_map(|ip| ip.parse::<IpAddr>().ok()).map(|ip| SocketAddr::new(ip, 0)).collect();
            if addrs.is_empty() {
                return Err(format!("cluster DNS: no address for {}", name.as_str()).into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
