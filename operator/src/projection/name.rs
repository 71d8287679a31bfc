//! Kubernetes names of projected services: a registered service becomes a Service whose name is
//! a DNS-1035 label, so `<name>.<namespace>.svc.<domain>` resolves it.
//!
//! The mapping is deterministic and collision-free: a service of `DEFAULT_GROUP` in `public`
//! whose name already is such a label keeps it (`orders`), unless it ends like a hashed name;
//! every other service gets a readable prefix and ten hex digits of the MD5 of its namespace,
//! group and name (`orders-v2-3f2a9c01bd`). Plain names never end in `-<10 hex>` and hashed ones
//! always do, so the two sets cannot meet; the original names are in annotations.

use registry_proto::model::ServiceKey;
use registry_proto::model::config::md5_hex;

/// Longest Kubernetes Service name (a DNS-1035 label).
const MAX_LABEL: usize = 63;
/// Hex digits of the hash suffix (40 bits).
const HASH_DIGITS: usize = 10;

/// The Service name of `key`.
pub fn service_name(key: &ServiceKey) -> String {
    let default_place = key.namespace == "public" && key.group == "DEFAULT_GROUP";
    if default_place && is_label(&key.service) && !looks_hashed(&key.service) {
        return key.service.clone();
    }
    let hash = md5_hex(&format!("{}\n{}\n{}", key.namespace, key.group, key.service));
    let mut prefix = String::new();
    for c in key.service.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && (prefix.is_empty() || prefix.ends_with('-'))) {
            prefix.push(c);
        }
    }
    if !prefix.starts_with(|c: char| c.is_ascii_lowercase()) {
        prefix.insert(0, 'n');
    }
    prefix.truncate(MAX_LABEL - HASH_DIGITS - 1);
    let prefix = prefix.trim_end_matches('-');
    format!("{prefix}-{}", &hash[..HASH_DIGITS])
}

/// A DNS-1035 label: lowercase letters, digits and `-`, starting with a letter, not ending with
/// `-`, at most 63 characters.
fn is_label(s: &str) -> bool {
    s.len() <= MAX_LABEL
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Ends in `-` and ten lowercase hex digits, as hashed names do.
fn looks_hashed(s: &str) -> bool {
    let Some(cut) = s.len().checked_sub(HASH_DIGITS + 1) else { return false };
    let (head, tail) = s.split_at(cut);
    !head.is_empty()
        && tail.starts_with('-')
        && tail[1..].chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(namespace: &str, group: &str, service: &str) -> ServiceKey {
        ServiceKey { namespace: namespace.into(), group: group.into(), service: service.into() }
    }

    #[test]
    fn labels_in_the_default_place_keep_their_name() {
        assert_eq!(service_name(&key("public", "DEFAULT_GROUP", "orders")), "orders");
        assert_eq!(service_name(&key("public", "DEFAULT_GROUP", "orders-v2")), "orders-v2");
    }

    #[test]
    fn everything_else_is_hashed_into_a_label() {
        for k in [
            key("public", "DEFAULT_GROUP", "Orders"),
            key("public", "DEFAULT_GROUP", "com.example.OrderService"),
            key("dev", "DEFAULT_GROUP", "orders"),
            key("public", "payments", "orders"),
            key("public", "DEFAULT_GROUP", "9lives"),
            key("public", "DEFAULT_GROUP", &"x".repeat(200)),
            key("public", "DEFAULT_GROUP", "orders-0123456789"),
            key("public", "DEFAULT_GROUP", "---"),
        ] {
            let name = service_name(&k);
            assert!(is_label(&name), "{name:?} from {k:?}");
            assert!(looks_hashed(&name), "{name:?} from {k:?}");
        }
        assert!(
            service_name(&key("public", "DEFAULT_GROUP", "com.example.OrderService"))
                .starts_with("com-example-orderservice-")
        );
    }

    #[test]
    fn distinct_services_get_distinct_names() {
        let keys = [
            key("public", "DEFAULT_GROUP", "orders"),
            key("public", "DEFAULT_GROUP", "Orders"),
            key("public", "DEFAULT_GROUP", "ORDERS"),
            key("dev", "DEFAULT_GROUP", "orders"),
            key("public", "g", "orders"),
            key("public", "DEFAULT_GROUP", "orders."),
            key("public", "DEFAULT_GROUP", "orders_"),
        ];
        let names: std::collections::BTreeSet<String> = keys.iter().map(service_name).collect();
        assert_eq!(names.len(), keys.len(), "{names:?}");
        assert_eq!(service_name(&keys[1]), service_name(&keys[1]), "deterministic");
    }
}
