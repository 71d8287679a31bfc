//! Namespaces as the console manages them (create, rename, describe, delete, list with config
//! counts), replicated through Raft.
//!
//! Existence is checked here only. Client APIs (naming and config over HTTP and gRPC) accept
//! any valid namespace id, created or not, exactly as Nacos does: registering into or
//! publishing to an id nobody created works, and deleting a namespace leaves its services and
//! configs in place. `public` always exists and cannot be created, changed or deleted.

use std::sync::Arc;

use crate::consistency::{ApplyError, Command, Consistency, NamespaceCommand, SubmitError};
use crate::model::config::MAX_TENANT_LEN;
use crate::state::namespaces::{DEFAULT_QUOTA, PUBLIC};
use crate::state::{ConfigStore, Namespace, NamespaceStore};

/// Characters Nacos refuses in a namespace's display name.
const NAME_FORBIDDEN: &[char] = &['@', '#', '$', '%', '^', '&', '*'];

/// Why a namespace change was refused.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// An id or name breaks the rules.
    #[error("{0}")]
    Invalid(String),
    /// The id is taken.
    #[error("the namespaceId {0} already exists")]
    Exists(String),
    /// No such namespace.
    #[error("namespaceId [{0}] not exist")]
    NotFound(String),
    /// `public` is built in.
    #[error("the namespace public cannot be changed")]
    Public,
    /// The change could not be committed.
    #[error("namespace change failed: {0}")]
    Unavailable(String),
}

impl From<SubmitError> for NamespaceError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Rejected(ApplyError::NamespaceExists(id)) => Self::Exists(id),
            SubmitError::Rejected(ApplyError::NamespaceNotFound(id)) => Self::NotFound(id),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

/// A namespace as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// The namespace.
    pub namespace: Namespace,
    /// Configs it holds now.
    pub config_count: usize,
    /// Nacos' type: 0 the built-in `public`, 2 a created one.
    pub kind: u8,
}

/// The namespace domain.
#[derive(Clone)]
pub struct NamespaceService {
    store: Arc<NamespaceStore>,
    configs: Arc<ConfigStore>,
    consistency: Consistency,
}

impl NamespaceService {
    /// A service over the namespace table, counting configs in `configs`.
    pub fn new(store: Arc<NamespaceStore>, configs: Arc<ConfigStore>, consistency: Consistency) -> Self {
        Self { store, configs, consistency }
    }

    /// `public` first, then created namespaces by id.
    pub fn list(&self) -> Vec<NamespaceInfo> {
        let mut out = vec![self.public()];
        out.extend(self.store.list().into_iter().map(|n| self.info(n, 2)));
        out
    }

    /// One namespace (`public` included).
    pub fn get(&self, id: &str) -> Option<NamespaceInfo> {
        if is_public(id) {
            return Some(self.public());
        }
        self.store.get(id).map(|n| self.info(n, 2))
    }

    /// Whether `id` is `public` or was created.
    pub fn exists(&self, id: &str) -> bool {
        is_public(id) || self.store.get(id).is_some()
    }

    /// Creates a namespace; without an id, a random UUID is used (as Nacos). Returns the id.
    pub async fn create(&self, id: Option<&str>, name: &str, desc: &str) -> Result<String, NamespaceError> {
        let id = match id.map(str::trim).filter(|i| !i.is_empty()) {
            Some(i) => i.to_owned(),
            None => random_uuid().ok_or_else(|| NamespaceError::Unavailable("no randomness for an id".into()))?,
        };
        check_id(&id)?;
        check_name(name)?;
        if is_public(&id) {
            return Err(NamespaceError::Exists(id));
        }
        let ns =
            Namespace { id: id.clone(), name: name.trim().to_owned(), desc: desc.to_owned(), quota: DEFAULT_QUOTA };
        self.consistency.submit(Command::Namespace(NamespaceCommand::Create(ns))).await?;
        Ok(id)
    }

    /// Renames / redescribes a namespace.
    pub async fn update(&self, id: &str, name: &str, desc: &str) -> Result<(), NamespaceError> {
        if is_public(id) {
            return Err(NamespaceError::Public);
        }
        check_name(name)?;
        let cmd = NamespaceCommand::Update { id: id.to_owned(), name: name.trim().to_owned(), desc: desc.to_owned() };
        self.consistency.submit(Command::Namespace(cmd)).await?;
        Ok(())
    }

    /// Deletes a namespace (its data stays, see the module doc).
    pub async fn delete(&self, id: &str) -> Result<(), NamespaceError> {
        if is_public(id) {
            return Err(NamespaceError::Public);
        }
        self.consistency.submit(Command::Namespace(NamespaceCommand::Delete { id: id.to_owned() })).await?;
        Ok(())
    }

    fn public(&self) -> NamespaceInfo {
        let ns = Namespace {
            id: PUBLIC.to_owned(),
            name: PUBLIC.to_owned(),
            desc: "Public Namespace".to_owned(),
            quota: DEFAULT_QUOTA,
        };
        self.info(ns, 0)
    }

    fn info(&self, namespace: Namespace, kind: u8) -> NamespaceInfo {
        // Configs keep the default namespace as tenant "".
        let tenant = if namespace.id == PUBLIC { "" } else { namespace.id.as_str() };
        let config_count = self.configs.read_data(|d| d.items.keys().filter(|k| k.tenant == tenant).count());
        NamespaceInfo { namespace, config_count, kind }
    }
}

fn is_public(id: &str) -> bool {
    id.trim().is_empty() || id.trim() == PUBLIC
}

/// Ids must be usable as a config tenant too: `[A-Za-z0-9_-]`, at most 64 characters.
fn check_id(id: &str) -> Result<(), NamespaceError> {
    if id.len() > MAX_TENANT_LEN || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(NamespaceError::Invalid(format!(
            "namespaceId [{id}] must be at most {MAX_TENANT_LEN} characters of letters, digits, '_' and '-'"
        )));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), NamespaceError> {
    if name.trim().is_empty() {
        return Err(NamespaceError::Invalid("namespaceName is required".into()));
    }
    if name.contains(NAME_FORBIDDEN) {
        return Err(NamespaceError::Invalid(format!("namespaceName [{name}] contains illegal characters")));
    }
    Ok(())
}

/// A version-4 UUID, as Nacos generates ids.
fn random_uuid() -> Option<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).ok()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Some(format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]))
}
