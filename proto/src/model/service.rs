//! Service and cluster metadata (spec §2.5, §4.3). Persistent data: written through Raft.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Metadata of a service. Its presence matters: protect-threshold and selectors only apply to
/// services that have metadata (spec §2.5 step 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceMetadata {
    /// Whether the service holds ephemeral instances; fixed at creation.
    pub ephemeral: bool,
    /// When healthy/total ≤ this, queries return every instance as healthy.
    pub protect_threshold: f64,
    /// Free-form service metadata (Nacos `extendData`).
    pub metadata: BTreeMap<String, String>,
    /// Selector as the client sent it (`{"type":"none"}` by default).
    pub selector: serde_json::Value,
    /// Per-cluster settings, by cluster name.
    pub clusters: BTreeMap<String, ClusterMetadata>,
}

impl ServiceMetadata {
    /// Metadata with Nacos' defaults.
    pub fn new(ephemeral: bool) -> Self {
        Self {
            ephemeral,
            protect_threshold: 0.0,
            metadata: BTreeMap::new(),
            selector: default_selector(),
            clusters: BTreeMap::new(),
        }
    }
}

/// `{"type":"none"}`: the selector that selects everything.
pub fn default_selector() -> serde_json::Value {
    serde_json::json!({ "type": "none" })
}

/// Settings of one cluster of a service: how its persistent instances are health-checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterMetadata {
    /// Port probed when `use_instance_port` is false.
    pub health_check_port: u16,
    /// Probe every instance on its own port.
    pub use_instance_port: bool,
    /// Checker as JSON (`{"type":"TCP"}`, `{"type":"HTTP","path":..}`, `{"type":"NONE"}`, ...).
    pub health_checker: serde_json::Value,
    /// Free-form cluster metadata.
    pub metadata: BTreeMap<String, String>,
}

impl Default for ClusterMetadata {
    fn default() -> Self {
        Self {
            health_check_port: 80,
            use_instance_port: true,
            health_checker: serde_json::json!({ "type": "TCP" }),
            metadata: BTreeMap::new(),
        }
    }
}

impl ClusterMetadata {
    /// The checker type in upper case (`TCP`, `HTTP`, `MYSQL`, `NONE`).
    pub fn checker_type(&self) -> String {
        self.health_checker.get("type").and_then(|t| t.as_str()).unwrap_or("TCP").to_ascii_uppercase()
    }
}
