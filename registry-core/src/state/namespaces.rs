//! The namespace table: ids, display names and descriptions created through the console API.
//!
//! Existence is only a console notion: client APIs (naming, config, gRPC) accept any valid
//! namespace id, created or not, as Nacos does (see `docs/auth.md`, "Namespaces"). `public`
//! is implicit: always listed, never stored, never created, changed or deleted.

use std::collections::BTreeMap;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

/// The namespace every client lands in without one.
pub const PUBLIC: &str = "public";
/// Configs a namespace may hold as Nacos reports it (`quota`); informational, as in Nacos.
pub const DEFAULT_QUOTA: u32 = 200;

/// A created namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// Id (`namespaceId` / `tenant`).
    pub id: String,
    /// Display name (`namespaceShowName`).
    pub name: String,
    /// Description (`namespaceDesc`).
    pub desc: String,
    /// Config quota.
    pub quota: u32,
}

/// The table; written only by `consistency::apply`.
#[derive(Debug, Default)]
pub struct NamespaceStore {
    data: RwLock<BTreeMap<String, Namespace>>,
}

impl NamespaceStore {
    /// Runs one write (the applier only).
    pub fn write<R>(&self, f: impl FnOnce(&mut BTreeMap<String, Namespace>) -> R) -> R {
        f(&mut self.data.write())
    }

    /// Every created namespace, by id.
    pub fn list(&self) -> Vec<Namespace> {
        self.data.read().values().cloned().collect()
    }

    /// One created namespace.
    pub fn get(&self, id: &str) -> Option<Namespace> {
        self.data.read().get(id).cloned()
    }
}
