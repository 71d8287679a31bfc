//! Names of the naming hierarchy (namespace → group → service → cluster) and their rules (spec §2.1).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Namespace used when a client sends none (naming): `public`.
pub const DEFAULT_NAMESPACE: &str = "public";
/// Group used when a client sends none.
pub const DEFAULT_GROUP: &str = "DEFAULT_GROUP";
/// Cluster used when a client sends none.
pub const DEFAULT_CLUSTER: &str = "DEFAULT";
/// Separator of a grouped service name `group@@service`.
pub const GROUP_SEPARATOR: &str = "@@";

/// Longest namespace id accepted (Nacos parameter check).
const MAX_NAMESPACE_LEN: usize = 64;
/// Longest group or service name accepted.
const MAX_SERVICE_LEN: usize = 512;
/// Longest cluster name accepted.
const MAX_CLUSTER_LEN: usize = 64;

/// Why a name was refused; the text is what the client sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// A required name was empty or only whitespace.
    #[error("{field} must not be blank")]
    Blank {
        /// Parameter name as the client spells it.
        field: &'static str,
    },
    /// The name is longer than allowed.
    #[error("{field} is too long ({len} > {max} characters)")]
    TooLong {
        /// Parameter name as the client spells it.
        field: &'static str,
        /// Length received.
        len: usize,
        /// Maximum accepted.
        max: usize,
    },
    /// The name contains characters outside the allowed set.
    #[error("{field} '{value}' is illegal: {rule}")]
    Illegal {
        /// Parameter name as the client spells it.
        field: &'static str,
        /// The offending value.
        value: String,
        /// The rule it broke.
        rule: &'static str,
    },
}

/// Identity of a service: (namespace, group, service name). The ephemeral flag is not part of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceKey {
    /// Namespace id (`public` by default).
    pub namespace: String,
    /// Group name (`DEFAULT_GROUP` by default).
    pub group: String,
    /// Bare service name (never contains `@@`).
    pub service: String,
}

impl ServiceKey {
    /// Builds a key from already-trimmed parts, validating each (spec §2.1, §9.8).
    pub fn new(namespace: &str, group: &str, service: &str) -> Result<Self, NameError> {
        let namespace = if namespace.trim().is_empty() { DEFAULT_NAMESPACE } else { namespace.trim() };
        let group = if group.trim().is_empty() { DEFAULT_GROUP } else { group.trim() };
        let service = service.trim();
        validate_namespace(namespace)?;
        validate_group(group)?;
        validate_service(service)?;
        Ok(Self { namespace: namespace.to_owned(), group: group.to_owned(), service: service.to_owned() })
    }

    /// Builds a key from a possibly grouped name (`group@@service` or `service` + separate group),
    /// the way the v1 grouped-name filter does: a group inside the name wins over the separate
    /// one, blank parts take the defaults, and an empty group part is refused.
    ///
    /// ```
    /// use registry_proto::model::ServiceKey;
    ///
    /// let k = ServiceKey::from_grouped("", "payments@@orders", Some("ignored")).unwrap();
    /// assert_eq!((k.namespace.as_str(), k.grouped_name().as_str()), ("public", "payments@@orders"));
    ///
    /// let bare = ServiceKey::from_grouped("dev", " orders ", None).unwrap();
    /// assert_eq!(bare.grouped_name(), "DEFAULT_GROUP@@orders");
    ///
    /// assert!(ServiceKey::from_grouped("", "@@orders", None).is_err());
    /// ```
    pub fn from_grouped(namespace: &str, grouped_or_bare: &str, group: Option<&str>) -> Result<Self, NameError> {
        let name = grouped_or_bare.trim();
        match name.split_once(GROUP_SEPARATOR) {
            Some((g, s)) => {
                if g.trim().is_empty() {
                    return Err(NameError::Illegal {
                        field: "serviceName",
                        value: name.to_owned(),
                        rule: "group part of a grouped service name must not be empty",
                    });
                }
                Self::new(namespace, g, s)
            }
            None => Self::new(namespace, group.unwrap_or(DEFAULT_GROUP), name),
        }
    }

    /// `group@@service`, the form the v1 API and instance `serviceName` use.
    pub fn grouped_name(&self) -> String {
        format!("{}{GROUP_SEPARATOR}{}", self.group, self.service)
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}##{}{GROUP_SEPARATOR}{}", self.namespace, self.group, self.service)
    }
}

fn validate_namespace(ns: &str) -> Result<(), NameError> {
    check_len("namespaceId", ns, MAX_NAMESPACE_LEN)?;
    if !ns.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(NameError::Illegal {
            field: "namespaceId",
            value: ns.to_owned(),
            rule: "only letters, digits, '_' and '-' are allowed",
        });
    }
    Ok(())
}

fn validate_group(group: &str) -> Result<(), NameError> {
    check_len("groupName", group, MAX_SERVICE_LEN)?;
    if group.contains(GROUP_SEPARATOR) || group.chars().any(char::is_whitespace) {
        return Err(NameError::Illegal {
            field: "groupName",
            value: group.to_owned(),
            rule: "must not contain '@@' or whitespace",
        });
    }
    Ok(())
}

fn validate_service(service: &str) -> Result<(), NameError> {
    if service.is_empty() {
        return Err(NameError::Blank { field: "serviceName" });
    }
    check_len("serviceName", service, MAX_SERVICE_LEN)?;
    if service.starts_with('@') || service.contains(GROUP_SEPARATOR) || service.chars().any(char::is_whitespace) {
        return Err(NameError::Illegal {
            field: "serviceName",
            value: service.to_owned(),
            rule: "must not start with '@', contain '@@' or whitespace",
        });
    }
    Ok(())
}

/// Validates a cluster name against `^[0-9a-zA-Z-]+$` (what Nacos checks on registration).
pub fn validate_cluster(cluster: &str) -> Result<(), NameError> {
    if cluster.is_empty() {
        return Err(NameError::Blank { field: "clusterName" });
    }
    check_len("clusterName", cluster, MAX_CLUSTER_LEN)?;
    if !cluster.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(NameError::Illegal {
            field: "clusterName",
            value: cluster.to_owned(),
            rule: "cluster name can only have these characters: 0-9a-zA-Z-",
        });
    }
    Ok(())
}

fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), NameError> {
    let len = value.chars().count();
    if len > max {
        return Err(NameError::TooLong { field, len, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_parts_take_defaults() {
        let key = ServiceKey::new("", " ", "orders").unwrap();
        assert_eq!(key.namespace, DEFAULT_NAMESPACE);
        assert_eq!(key.group, DEFAULT_GROUP);
        assert_eq!(key.grouped_name(), "DEFAULT_GROUP@@orders");
    }

    #[test]
    fn grouped_name_overrides_group_parameter() {
        let key = ServiceKey::from_grouped("dev", "g1@@orders", Some("other")).unwrap();
        assert_eq!((key.group.as_str(), key.service.as_str()), ("g1", "orders"));
        let bare = ServiceKey::from_grouped("dev", "orders", Some("g2")).unwrap();
        assert_eq!(bare.group, "g2");
    }

    #[test]
    fn malformed_service_names_are_refused() {
        assert!(ServiceKey::from_grouped("public", "@@orders", None).is_err());
        assert!(ServiceKey::from_grouped("public", "g@@", None).is_err());
        assert!(ServiceKey::new("public", "g", "a b").is_err());
        assert!(ServiceKey::new("bad ns", "g", "a").is_err());
        assert!(ServiceKey::new("public", "g", &"x".repeat(513)).is_err());
    }

    #[test]
    fn cluster_names_follow_the_nacos_pattern() {
        assert!(validate_cluster("DEFAULT").is_ok());
        assert!(validate_cluster("zone-a1").is_ok());
        assert!(validate_cluster("zone_a").is_err());
        assert!(validate_cluster("zone.a").is_err());
        assert!(validate_cluster("").is_err());
    }
}
