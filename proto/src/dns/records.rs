//! The records of one service (or one cluster of it), encoded once per revision and shared by
//! every query until the service changes.
//!
//! Answer records are kept as "tails": type, class, TTL and RDATA without the owner name. The
//! answer's owner is always the question's name, which sits at offset 12 of every reply, so the
//! handler writes a 2-byte compression pointer (`0xC00C`) and the tail: a reply is a few
//! copies, whatever the name's case or form.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_proto::ProtoError;
use hickory_proto::rr::rdata::{A, AAAA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

use super::Zone;
use super::name::{ADDR_MARK, ip_label, label};
use crate::model::Instance;

/// One encoded record, or record tail.
pub(crate) type Encoded = Box<[u8]>;

/// Longest TXT character-string.
const MAX_TXT_STRING: usize = 255;

/// The hosts DNS answers with: the cluster (by label) if one is named, then the query rules
/// ([`crate::select::select`]: enabled only, protect threshold), then healthy ones (all are
/// healthy once the protect threshold fired) with a weight above 0.
pub fn answerable<'a>(
    instances: impl IntoIterator<Item = &'a Arc<Instance>>,
    protect_threshold: Option<f64>,
    cluster_label: Option<&str>,
) -> Vec<Arc<Instance>> {
    let in_cluster = instances.into_iter().filter(|i| cluster_label.is_none_or(|c| label(&i.cluster) == c));
    let selection = crate::select::select(in_cluster, protect_threshold, &[], false);
    selection.hosts.into_iter().filter(|i| i.healthy && i.weight > 0.0).collect()
}

/// Encoded records of one service view.
#[derive(Debug, Default)]
pub struct ServiceRecords {
    /// Revision of the service these were built from.
    pub revision: u64,
    a: Vec<Encoded>,
    aaaa: Vec<Encoded>,
    srv: Vec<Encoded>,
    /// Address records of the SRV targets (full records, for the additional section).
    glue: Vec<Encoded>,
    txt: Vec<Encoded>,
    /// Where the next answer starts (round robin across queries).
    turn: AtomicUsize,
}

impl ServiceRecords {
    /// Encodes the records of `hosts` (already [`answerable`]) at `revision`. Hosts registered
    /// by host name instead of address appear only as SRV targets (when the name is valid).
    pub fn build(zone: &Zone, revision: u64, hosts: &[Arc<Instance>]) -> Self {
        let mut out = Self { revision, ..Self::default() };
        let ttl = zone.ttl();
        let mut seen_ips: Vec<IpAddr> = Vec::with_capacity(hosts.len());
        for host in hosts {
            let ip = host.ip.parse::<IpAddr>().ok();
            if let Some(ip) = ip
                && !seen_ips.contains(&ip)
            {
                seen_ips.push(ip);
                let (list, rdata) = match ip {
                    IpAddr::V4(v4) => (&mut out.a, RData::A(A(v4))),
                    IpAddr::V6(v6) => (&mut out.aaaa, RData::AAAA(AAAA(v6))),
                };
                push_tail(list, ttl, rdata);
                if let Ok(target) = address_name(zone, ip) {
                    let rdata = match ip {
                        IpAddr::V4(v4) => RData::A(A(v4)),
                        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
                    };
                    if let Ok(bytes) = encode_full(&Record::from_rdata(target, ttl, rdata)) {
                        out.glue.push(bytes.into_boxed_slice());
                    }
                }
            }
            let target = match ip {
                Some(ip) => address_name(zone, ip),
                None => Name::from_ascii(format!("{}.", host.ip.trim_end_matches('.'))),
            };
            if let Ok(target) = target {
                let srv = SRV::new(0, srv_weight(host.weight), host.port, target);
                push_tail(&mut out.srv, ttl, RData::SRV(srv));
            }
            push_tail(&mut out.txt, ttl, RData::TXT(TXT::new(txt_strings(host))));
        }
        out
    }

    /// The answer tails for `kind`, and the glue for the additional section.
    pub(crate) fn for_kind(&self, kind: super::QueryKind) -> (&[Encoded], &[Encoded]) {
        use super::QueryKind;
        match kind {
            QueryKind::A => (&self.a, &[]),
            QueryKind::Aaaa => (&self.aaaa, &[]),
            QueryKind::Srv => (&self.srv, &self.glue),
            QueryKind::Txt => (&self.txt, &[]),
            _ => (&[], &[]),
        }
    }

    /// The start index of the next answer: each query starts one further along.
    pub(crate) fn next_turn(&self) -> usize {
        self.turn.fetch_add(1, Ordering::Relaxed)
    }

    /// True when the service has no answerable host.
    pub fn is_empty(&self) -> bool {
        self.srv.is_empty() && self.a.is_empty() && self.aaaa.is_empty()
    }
}

/// SRV weight of a Nacos weight: weight × 100 (two decimals kept), at least 1, at most 65535.
fn srv_weight(weight: f64) -> u16 {
    (weight * 100.0).round().clamp(1.0, f64::from(u16::MAX)) as u16
}

/// `<ip>.addr.<zone>`.
pub(crate) fn address_name(zone: &Zone, ip: IpAddr) -> Result<Name, ProtoError> {
    zone.origin().prepend_label(ADDR_MARK)?.prepend_label(ip_label(ip))
}

/// TXT strings of one instance: where it is, then its metadata as `key=value` (strings over
/// 255 bytes are left out).
fn txt_strings(host: &Instance) -> Vec<String> {
    let mut strings = vec![
        format!("instance={}:{}", host.ip, host.port),
        format!("cluster={}", host.cluster),
        format!("weight={}", host.weight),
    ];
    strings.extend(host.metadata.iter().map(|(k, v)| format!("{k}={v}")));
    strings.retain(|s| s.len() <= MAX_TXT_STRING);
    strings
}

/// Appends the [`tail`] of a record.
fn push_tail(list: &mut Vec<Encoded>, ttl: u32, rdata: RData) {
    if let Ok(t) = tail(ttl, rdata) {
        list.push(t);
    }
}

/// A record without its owner name: type, class, TTL, RDATA.
pub(crate) fn tail(ttl: u32, rdata: RData) -> Result<Encoded, ProtoError> {
    let bytes = encode_full(&Record::from_rdata(Name::root(), ttl, rdata))?;
    // The root name is the single byte 0.
    Ok(bytes.get(1..).unwrap_or_default().into())
}

/// A whole record, names uncompressed.
pub(crate) fn encode_full(record: &Record) -> Result<Vec<u8>, ProtoError> {
    let mut buf = Vec::with_capacity(64);
    let mut encoder = BinEncoder::new(&mut buf);
    // Spliced into other messages: a compression pointer would point into the wrong bytes.
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    record.emit(&mut encoder)?;
    Ok(buf)
}

/// The tail of an address record for `ip`, built per query (address names are not cached).
pub(crate) fn address_tail(ttl: u32, ip: IpAddr) -> Option<Encoded> {
    let rdata = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    tail(ttl, rdata).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::QueryKind;

    fn host(ip: &str, port: u16, cluster: &str, healthy: bool, weight: f64) -> Arc<Instance> {
        let mut i = Instance::new(ip, port, cluster, true);
        i.healthy = healthy;
        i.weight = weight;
        Arc::new(i)
    }

    #[test]
    fn only_healthy_enabled_weighted_hosts_of_the_cluster_answer() {
        let mut disabled = Instance::new("10.0.0.4", 80, "A", true);
        disabled.enabled = false;
        let hosts = [
            host("10.0.0.1", 80, "A", true, 1.0),
            host("10.0.0.2", 80, "A", false, 1.0),
            host("10.0.0.3", 80, "A", true, 0.0),
            Arc::new(disabled),
            host("10.0.0.5", 80, "B", true, 1.0),
        ];
        let ips = |v: Vec<Arc<Instance>>| v.iter().map(|i| i.ip.to_string()).collect::<Vec<_>>();
        assert_eq!(ips(answerable(&hosts, None, None)), ["10.0.0.1", "10.0.0.5"]);
        assert_eq!(ips(answerable(&hosts, None, Some(&label("A")))), ["10.0.0.1"]);
        assert_eq!(ips(answerable(&hosts, None, Some("b--nothing"))), Vec::<String>::new());
    }

    #[test]
    fn protect_threshold_returns_unhealthy_hosts_as_queries_do() {
        let hosts = [host("10.0.0.1", 80, "A", true, 1.0), host("10.0.0.2", 80, "A", false, 1.0)];
        assert_eq!(answerable(&hosts, Some(0.4), None).len(), 1);
        assert_eq!(answerable(&hosts, Some(0.5), None).len(), 2, "1/2 healthy ≤ 0.5: protection fires");
        assert_eq!(answerable(&hosts, None, None).len(), 1, "no metadata, no protection");
    }

    #[test]
    fn records_cover_each_type_and_deduplicate_addresses() {
        let zone = Zone::new("nacos.local", 5, 1).unwrap();
        let hosts = [
            host("10.0.0.1", 80, "A", true, 1.0),
            host("10.0.0.1", 81, "A", true, 2.5),
            host("fd00::1", 80, "A", true, 1.0),
            host("db.example", 3306, "A", true, 1.0),
        ];
        let r = ServiceRecords::build(&zone, 7, &hosts);
        assert_eq!(r.revision, 7);
        let count = |k| r.for_kind(k).0.len();
        assert_eq!(
            (count(QueryKind::A), count(QueryKind::Aaaa), count(QueryKind::Srv), count(QueryKind::Txt)),
            (1, 1, 4, 4)
        );
        assert_eq!(r.for_kind(QueryKind::Srv).1.len(), 2, "one glue record per address");
        // A tail: type A, class IN, TTL 5, length 4, the address.
        assert_eq!(&*r.for_kind(QueryKind::A).0[0], &[0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 0, 0, 1]);
        assert_eq!((srv_weight(1.0), srv_weight(2.5), srv_weight(0.001), srv_weight(10_000.0)), (100, 250, 1, 65535));
    }
}
