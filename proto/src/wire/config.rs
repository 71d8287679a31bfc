//! The JSON bodies of the config requests (spec §11), in both directions.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `ConfigQueryRequest`, `ConfigPublishRequest`, `ConfigRemoveRequest`: one shape, the fields a
/// type does not use stay empty.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConfigRequest {
    /// Data id.
    pub data_id: Option<String>,
    /// Group.
    pub group: Option<String>,
    /// Namespace (null or empty: public).
    pub tenant: Option<String>,
    /// Beta/tag selector (never sent back: Go decodes `tag` as a bool).
    pub tag: Option<String>,
    /// Content to publish.
    pub content: Option<String>,
    /// Publish only if the stored MD5 is this one.
    pub cas_md5: Option<String>,
    /// `type`, `desc`, `appName`, `config_tags`, `betaIps`, ...
    pub addition_map: HashMap<String, Value>,
    /// Request headers; `consistency: linearizable` asks for a ReadIndex read.
    pub headers: HashMap<String, Value>,
}

/// One config a `ConfigBatchListenRequest` (un)listens to, with the MD5 the client holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ListenContext {
    /// Data id.
    pub data_id: Option<String>,
    /// Group.
    pub group: Option<String>,
    /// Namespace.
    pub tenant: Option<String>,
    /// The MD5 of the content the client holds ("" when it holds none).
    pub md5: Option<String>,
}

/// `ConfigBatchListenRequest`: `listen` false removes the listeners.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BatchListenRequest {
    /// Add (true) or remove (false) the listeners.
    pub listen: bool,
    /// The configs.
    pub config_listen_contexts: Vec<ListenContext>,
}

impl Default for BatchListenRequest {
    fn default() -> Self {
        Self { listen: true, config_listen_contexts: Vec::new() }
    }
}
