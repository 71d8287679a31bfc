//! Which registered services a projection selects: a Nacos namespace and group, and a
//! service-name pattern where `*` matches any run of characters.

use crate::crd::ServiceSelector;

/// Whether `pattern` matches all of `name` (`*` is any run, everything else literal).
pub(super) fn matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else { return true };
    let Some(mut rest) = name.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Whether any selector for `namespace`/`group` matches `service`.
pub(super) fn selected(selectors: &[ServiceSelector], namespace: &str, group: &str, service: &str) -> bool {
    selectors.iter().any(|s| s.namespace == namespace && s.group == group && matches(&s.service, service))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_match_any_run_and_the_rest_is_literal() {
        assert!(matches("*", ""));
        assert!(matches("*", "orders"));
        assert!(matches("orders", "orders"));
        assert!(!matches("orders", "orders2"));
        assert!(matches("orders-*", "orders-v2"));
        assert!(!matches("orders-*", "order"));
        assert!(matches("*-v2", "orders-v2"));
        assert!(matches("a*b*c", "aXbYc"));
        assert!(!matches("a*b*c", "aXcYb"));
        assert!(!matches("ab*ba", "aba"));
        assert!(matches("ab*ba", "abba"));
        assert!(!matches("orders.*", "orders"));
    }

    #[test]
    fn selectors_need_the_namespace_and_group_exactly() {
        let selectors =
            vec![ServiceSelector { namespace: "public".into(), group: "DEFAULT_GROUP".into(), service: "o*".into() }];
        assert!(selected(&selectors, "public", "DEFAULT_GROUP", "orders"));
        assert!(!selected(&selectors, "dev", "DEFAULT_GROUP", "orders"));
        assert!(!selected(&selectors, "public", "other", "orders"));
        assert!(!selected(&selectors, "public", "DEFAULT_GROUP", "payments"));
    }
}
