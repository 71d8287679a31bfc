//! A member as the Raft membership records it.

use serde::{Deserialize, Serialize};

/// Where a member is reached and which store answered for it.
///
/// Replaces openraft's `BasicNode` (`{"addr": ...}`) with the same JSON plus `http` and `store`,
/// so logs and snapshots written before they existed decode unchanged (an empty `store` is
/// unbound, an empty `http` unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Cluster address (`host:port`, or a DNS name with peer DNS).
    pub addr: String,
    /// HTTP address (`host:port`), where v1 writes it is responsible for are forwarded: members
    /// may use unrelated ports, so it is recorded, not derived. Empty in memberships written
    /// before it was recorded (`cluster.rs` then falls back).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub http: String,
    /// Id of the store this member answered from when the leader first heard it (see
    /// `identity.rs`); empty until then.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub store: String,
}

impl Member {
    /// A member at `addr` whose HTTP address and store are not known yet.
    pub fn new(addr: impl Into<String>) -> Self {
        Self { addr: addr.into(), http: String::new(), store: String::new() }
    }

    /// A member at these addresses whose store is not known yet.
    pub fn at(addr: &crate::cluster::MemberAddr) -> Self {
        Self { addr: addr.cluster.clone(), http: addr.http.clone(), store: String::new() }
    }
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.store.is_empty() { f.write_str(&self.addr) } else { write!(f, "{} (store {})", self.addr, self.store) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_basic_node_json_written_before_stores_were_recorded() {
        let old: Member = serde_json::from_str(r#"{"addr":"10.0.0.1:9849"}"#).expect("decodes");
        assert_eq!(old, Member::new("10.0.0.1:9849"));
        let bound = Member { addr: "a:1".into(), http: String::new(), store: "s1".into() };
        let json = serde_json::to_string(&bound).expect("encodes");
        assert_eq!(serde_json::from_str::<Member>(&json).expect("round trip"), bound);
        assert_eq!(serde_json::to_string(&Member::new("a:1")).expect("encodes"), r#"{"addr":"a:1"}"#);
    }

    #[test]
    fn http_addresses_are_recorded_and_entries_without_one_still_decode() {
        let with_store: Member = serde_json::from_str(r#"{"addr":"a:9849","store":"s1"}"#).expect("decodes");
        assert_eq!((with_store.http.as_str(), with_store.store.as_str()), ("", "s1"));
        let full = Member { addr: "a:20001".into(), http: "a:18848".into(), store: "s1".into() };
        let json = serde_json::to_string(&full).expect("encodes");
        assert_eq!(json, r#"{"addr":"a:20001","http":"a:18848","store":"s1"}"#);
        assert_eq!(serde_json::from_str::<Member>(&json).expect("round trip"), full);
    }
}
