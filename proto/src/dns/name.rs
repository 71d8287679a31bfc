//! Names in the zone and how Nacos names become DNS labels (docs/dns.md, "Names").
//!
//! Forms, left to right, before the zone:
//! - `<service>` (group `DEFAULT_GROUP`, namespace `public`), `<service>.<group>` (namespace
//!   `public`), `<service>.<group>.<namespace>`;
//! - a cluster: `<cluster>._cluster.` in front of any of them;
//! - SRV in RFC 2782 style: `_<anything>._tcp.` or `._udp.` in front of all that (Nacos
//!   instances have one port, so the first label names nothing and is ignored);
//! - `<ip>.addr` (`10-0-0-1`, or the eight groups of an IPv6 address joined by `-`): the target
//!   names of SRV records, answering that address.
//!
//! Labels: a Nacos name that is already a lower-case LDH label without `--` is used as it is;
//! any other is lower-cased, every other character becomes `-` (runs collapsed, ends trimmed,
//! cut to 53 characters) and `--` plus the first 8 hex digits of the MD5 of the original name
//! are appended (`DEFAULT_GROUP` → `default-group--<hash>`). The `--` tells mapped labels apart
//! from names used as they are, so two different names share a label only if their hashes
//! collide; the [`LabelIndex`] then answers with the smallest key, deterministically.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, LazyLock};

use hickory_proto::rr::Name;
use md5::{Digest, Md5};

use crate::model::ServiceKey;
use crate::model::key::{DEFAULT_GROUP, DEFAULT_NAMESPACE};

/// Longest DNS label.
const MAX_LABEL: usize = 63;
/// Longest readable prefix of a mapped label (63 − `--` − 8 hex digits).
const MAX_PREFIX: usize = MAX_LABEL - 2 - 8;
/// Marks a cluster selection: `<cluster>._cluster.<service>…`.
pub const CLUSTER_MARK: &str = "_cluster";
/// The second label of address names: `<ip>.addr.<zone>`.
pub const ADDR_MARK: &str = "addr";

/// The DNS label of a Nacos name (namespace, group, service or cluster); see the module doc.
pub fn label(name: &str) -> Cow<'_, str> {
    if is_plain_label(name) {
        return Cow::Borrowed(name);
    }
    let mut prefix = String::with_capacity(name.len().min(MAX_PREFIX));
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            prefix.push(c);
        } else if !prefix.is_empty() && !prefix.ends_with('-') {
            prefix.push('-');
        }
        if prefix.len() >= MAX_PREFIX {
            break;
        }
    }
    let prefix = prefix.trim_end_matches('-');
    let digest = Md5::digest(name.as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    // A label must start with a letter or digit: an all-symbol name gets a fixed `x`.
    Cow::Owned(format!("{}--{hash}", if prefix.is_empty() { "x" } else { prefix }))
}

/// A lower-case LDH label of at most 63 characters, without `--` (which marks mapped labels).
fn is_plain_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LABEL
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// The label of an address in SRV target names: `10-0-0-1`, or for IPv6 the eight groups in
/// hex joined by `-` (never abbreviated, so it never starts or ends with `-`).
pub fn ip_label(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.segments().iter().map(|s| format!("{s:x}")).collect::<Vec<_>>().join("-"),
    }
}

/// The address an [`ip_label`] names.
fn parse_ip_label(label: &str) -> Option<IpAddr> {
    let parts: Vec<&str> = label.split('-').collect();
    match parts.len() {
        4 => label.replace('-', ".").parse::<Ipv4Addr>().ok().map(IpAddr::V4),
        8 => label.replace('-', ":").parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        _ => None,
    }
}

/// A service named by a query: labels as the client sent them (lower case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceName<'a> {
    /// Service label.
    pub service: &'a str,
    /// Group label (`None`: `DEFAULT_GROUP`).
    pub group: Option<&'a str>,
    /// Namespace label (`None`: `public`).
    pub namespace: Option<&'a str>,
    /// Cluster label (`None`: every cluster).
    pub cluster: Option<&'a str>,
}

impl ServiceName<'_> {
    /// The [`LabelIndex`] key of the service (defaults filled in).
    pub fn index_key(&self) -> String {
        self.with_index_key(str::to_owned)
    }

    /// Calls `f` with the [`index_key`](Self::index_key), built on the stack when it fits (it
    /// always does for labels from a query): every query looks one up.
    pub fn with_index_key<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        // The default labels are hashed once, not per query.
        static DEFAULTS: LazyLock<(String, String)> =
            LazyLock::new(|| (label(DEFAULT_GROUP).into_owned(), label(DEFAULT_NAMESPACE).into_owned()));
        let group = self.group.unwrap_or(&DEFAULTS.0);
        let namespace = self.namespace.unwrap_or(&DEFAULTS.1);
        let parts = [self.service, group, namespace];
        let mut buf = [0; 3 * MAX_LABEL + 2];
        let mut len = 0;
        for (i, part) in parts.iter().enumerate() {
            let dot = usize::from(i > 0);
            let Some(slot) = buf.get_mut(len..len + dot + part.len()) else {
                return f(&parts.join("."));
            };
            slot[..dot].copy_from_slice(&b"."[..dot]);
            slot[dot..].copy_from_slice(part.as_bytes());
            len += dot + part.len();
        }
        // UTF-8: whole `&str`s joined by an ASCII dot.
        match std::str::from_utf8(&buf[..len]) {
            Ok(key) => f(key),
            Err(_) => f(&parts.join(".")),
        }
    }
}

/// What a name inside the zone designates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// The zone itself.
    Apex,
    /// `<ip>.addr.<zone>`: an address (SRV targets).
    Address(IpAddr),
    /// A service, possibly one cluster of it.
    Service(ServiceName<'a>),
    /// Nothing this zone can hold (NXDOMAIN).
    Unknown,
}

/// Parses labels (leftmost first, lower case, the zone's labels removed) into a [`Target`].
pub fn parse<'a>(labels: &[&'a str]) -> Target<'a> {
    let mut rest = labels;
    if rest.is_empty() {
        return Target::Apex;
    }
    if let [ip, ADDR_MARK] = rest
        && let Some(ip) = parse_ip_label(ip)
    {
        return Target::Address(ip);
    }
    if let [first, proto, tail @ ..] = rest
        && first.starts_with('_')
        && (*proto == "_tcp" || *proto == "_udp")
    {
        rest = tail;
    }
    let mut cluster = None;
    if let [c, CLUSTER_MARK, tail @ ..] = rest {
        cluster = Some(*c);
        rest = tail;
    }
    if rest.iter().any(|l| l.starts_with('_') || l.is_empty()) {
        return Target::Unknown;
    }
    match *rest {
        [service] => Target::Service(ServiceName { service, group: None, namespace: None, cluster }),
        [service, group] => Target::Service(ServiceName { service, group: Some(group), namespace: None, cluster }),
        [service, group, namespace] => {
            Target::Service(ServiceName { service, group: Some(group), namespace: Some(namespace), cluster })
        }
        _ => Target::Unknown,
    }
}

/// The labels of `qname` below `origin`, leftmost first, if `qname` is inside the zone and
/// every label is UTF-8. Both must be lower case.
pub fn labels_below<'a>(origin: &Name, qname: &'a Name) -> Option<Vec<&'a str>> {
    if !origin.zone_of_case(qname) {
        return None;
    }
    let below = usize::from(qname.num_labels().saturating_sub(origin.num_labels()));
    qname.iter().take(below).map(|l| std::str::from_utf8(l).ok()).collect()
}

/// Services by their labels (`service.group.namespace`), maintained by whoever tracks the
/// services; maps query names back to keys, since mapped labels cannot be reversed. `S`: the
/// hasher (a caller on the query path may want a faster one than SipHash).
#[derive(Debug, Default)]
pub struct LabelIndex<S = std::hash::RandomState> {
    by_labels: HashMap<String, BTreeSet<Arc<ServiceKey>>, S>,
}

impl<S: std::hash::BuildHasher> LabelIndex<S> {
    /// The index key of `key`.
    pub fn key_of(key: &ServiceKey) -> String {
        format!("{}.{}.{}", label(&key.service), label(&key.group), label(&key.namespace))
    }

    /// Adds a service (idempotent).
    pub fn insert(&mut self, key: Arc<ServiceKey>) {
        self.by_labels.entry(Self::key_of(&key)).or_default().insert(key);
    }

    /// Removes a service.
    pub fn remove(&mut self, key: &ServiceKey) {
        let k = Self::key_of(key);
        if let Some(set) = self.by_labels.get_mut(&k) {
            set.remove(key);
            if set.is_empty() {
                self.by_labels.remove(&k);
            }
        }
    }

    /// The service a query names; of colliding services, the smallest key.
    pub fn get(&self, name: &ServiceName<'_>) -> Option<&Arc<ServiceKey>> {
        name.with_index_key(|key| self.by_labels.get(key))?.first()
    }

    /// Number of services indexed.
    pub fn len(&self) -> usize {
        self.by_labels.values().map(BTreeSet::len).sum()
    }

    /// True when no service is indexed.
    pub fn is_empty(&self) -> bool {
        self.by_labels.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_kept_and_others_mapped_deterministically() {
        assert_eq!(label("orders"), "orders");
        assert_eq!(label("order-v2"), "order-v2");
        let mapped = label("DEFAULT_GROUP");
        assert!(mapped.starts_with("default-group--"), "{mapped}");
        assert_eq!(mapped.len(), "default-group--".len() + 8);
        assert_eq!(label("DEFAULT_GROUP"), mapped, "deterministic");
        // Case and symbols never merge two names: the hash of the original tells them apart.
        assert_ne!(label("Orders"), label("orders"));
        assert_ne!(label("a_b"), label("a:b"));
        // A name that looks like a mapped label is mapped too (it contains `--`).
        assert_ne!(label("x--00000000"), "x--00000000");
        for odd in ["@@", ":", "_", "-a", "a-", "UPPER", "a.b", "über", &"x".repeat(100), "com.acme:svc:1.0"] {
            let l = label(odd);
            assert!(l.len() <= MAX_LABEL, "{odd}: {l}");
            assert!(l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'), "{odd}: {l}");
            assert!(!l.starts_with('-') && !l.ends_with('-'), "{odd}: {l}");
            assert!(l.contains("--"), "{odd}: {l}");
        }
        assert!(label("@@").starts_with("x--"));
        assert!(label("com.acme:svc:1.0").starts_with("com-acme-svc-1-0--"));
    }

    #[test]
    fn address_labels_round_trip() {
        for ip in ["10.0.0.1", "fd00::1", "::1", "2001:db8::ff00:42:8329"] {
            let ip: IpAddr = ip.parse().unwrap();
            let l = ip_label(ip);
            assert!(!l.starts_with('-') && !l.ends_with('-') && l.len() <= MAX_LABEL, "{l}");
            assert_eq!(parse_ip_label(&l), Some(ip));
        }
        assert_eq!(ip_label("10.0.0.1".parse().unwrap()), "10-0-0-1");
        assert_eq!(parse_ip_label("10-0-0"), None);
        assert_eq!(parse_ip_label("orders"), None);
    }

    #[test]
    fn name_forms_parse_to_services_clusters_and_addresses() {
        let svc =
            |service, group, namespace, cluster| Target::Service(ServiceName { service, group, namespace, cluster });
        assert_eq!(parse(&[]), Target::Apex);
        assert_eq!(parse(&["orders"]), svc("orders", None, None, None));
        assert_eq!(parse(&["orders", "pay"]), svc("orders", Some("pay"), None, None));
        assert_eq!(parse(&["orders", "pay", "dev"]), svc("orders", Some("pay"), Some("dev"), None));
        assert_eq!(parse(&["a", "_cluster", "orders"]), svc("orders", None, None, Some("a")));
        assert_eq!(parse(&["_http", "_tcp", "orders", "pay"]), svc("orders", Some("pay"), None, None));
        assert_eq!(parse(&["_x", "_udp", "b", "_cluster", "orders"]), svc("orders", None, None, Some("b")));
        assert_eq!(parse(&["10-0-0-7", "addr"]), Target::Address("10.0.0.7".parse().unwrap()));
        // A group called `addr` still works for names that are not addresses.
        assert_eq!(parse(&["orders", "addr"]), svc("orders", Some("addr"), None, None));
        assert_eq!(parse(&["a", "b", "c", "d"]), Target::Unknown);
        assert_eq!(parse(&["_x", "orders"]), Target::Unknown);
        assert_eq!(parse(&["_cluster", "orders"]), Target::Unknown);
    }

    #[test]
    fn short_forms_find_default_group_and_namespace() {
        let mut index = LabelIndex::default();
        let default = Arc::new(ServiceKey::new("public", "DEFAULT_GROUP", "orders").unwrap());
        let grouped = Arc::new(ServiceKey::new("public", "pay", "orders").unwrap());
        let dev = Arc::new(ServiceKey::new("dev", "pay", "Orders").unwrap());
        for k in [&default, &grouped, &dev] {
            index.insert(Arc::clone(k));
        }
        let get = |index: &LabelIndex, labels: &[&str]| match parse(labels) {
            Target::Service(name) => index.get(&name).cloned(),
            _ => None,
        };
        assert_eq!(get(&index, &["orders"]), Some(Arc::clone(&default)));
        assert_eq!(get(&index, &["orders", "pay"]), Some(Arc::clone(&grouped)));
        let upper = label("Orders");
        assert_eq!(get(&index, &[&upper, "pay", "dev"]), Some(Arc::clone(&dev)));
        assert_eq!(get(&index, &["orders", "pay", "dev"]), None);
        index.remove(&default);
        assert_eq!(get(&index, &["orders"]), None);
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn labels_below_the_zone_only() {
        let origin = Name::from_ascii("nacos.local.").unwrap();
        let q = Name::from_ascii("orders.pay.nacos.local.").unwrap();
        assert_eq!(labels_below(&origin, &q), Some(vec!["orders", "pay"]));
        assert_eq!(labels_below(&origin, &origin), Some(vec![]));
        assert_eq!(labels_below(&origin, &Name::from_ascii("example.com.").unwrap()), None);
        assert_eq!(labels_below(&origin, &Name::from_ascii("xnacos.local.").unwrap()), None);
    }
}
