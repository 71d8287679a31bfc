//! The replicated vocabulary: every change to the state is one of these. Commands are serde
//! values because persistent ones are written to the Raft log; keep old variants decodable.

use serde::{Deserialize, Serialize};

use crate::model::{
    ClientId, ClusterMetadata, ConfigKey, ConfigMeta, GrayKind, GrayRule, Instance, InstanceKey, InstanceOverride,
    ServiceKey, ServiceMetadata, Source,
};
use crate::state::Namespace;

/// A change to the state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// A change to the naming index.
    Naming(NamingCommand),
    /// A change to the config index (always persistent).
    Config(ConfigCommand),
    /// A change to the namespace table (always persistent).
    Namespace(NamespaceCommand),
    /// A change to users, roles or permissions (always persistent).
    Auth(AuthCommand),
}

impl Command {
    /// Whether the command changes Raft-owned data (and so must go through Raft).
    pub fn is_persistent(&self) -> bool {
        match self {
            Self::Naming(c) => c.is_persistent(),
            Self::Config(_) | Self::Namespace(_) | Self::Auth(_) => true,
        }
    }
}

/// Changes to configs. Times come from the node that accepted the write, so that every replica
/// (and every replay) records the same history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConfigCommand {
    /// Creates or updates the formal content; with `cas_md5`, only if the current MD5 matches.
    Publish {
        /// Config.
        key: ConfigKey,
        /// New content.
        content: String,
        /// Descriptive fields.
        meta: ConfigMeta,
        /// Compare-and-swap guard: the MD5 the writer last saw (`""` = must not exist).
        cas_md5: Option<String>,
        /// Who.
        source: Source,
        /// When (ms since the epoch).
        at_ms: u64,
    },
    /// Deletes a config and its gray variants.
    Remove {
        /// Config.
        key: ConfigKey,
        /// Who.
        source: Source,
        /// When.
        at_ms: u64,
    },
    /// Sets the gray variant of the rule's kind.
    PublishGray {
        /// Config.
        key: ConfigKey,
        /// Who sees it.
        rule: GrayRule,
        /// Its content.
        content: String,
        /// Its encrypted data key.
        encrypted_data_key: String,
        /// When.
        at_ms: u64,
    },
    /// Removes the gray variant of a kind.
    StopGray {
        /// Config.
        key: ConfigKey,
        /// Which kind.
        kind: GrayKind,
    },
    /// Drops history older than `before_ms`.
    PurgeHistory {
        /// Cut-off (ms since the epoch).
        before_ms: u64,
    },
}

/// Changes to the naming index. Variants are grouped: the first ones are ephemeral (AP, applied
/// locally), the rest persistent (CP, through Raft). Persistent variants must be decided by
/// replicated data only, because a restarted node replays them without any ephemeral data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NamingCommand {
    /// A client (re)publishes its instances of a service, replacing what it published before.
    PublishEphemeral {
        /// Service.
        service: ServiceKey,
        /// Owning client.
        client: ClientId,
        /// The client's whole publication for the service.
        instances: Vec<Instance>,
    },
    /// A client withdraws its publication from a service.
    UnpublishEphemeral {
        /// Service.
        service: ServiceKey,
        /// Owning client.
        client: ClientId,
    },
    /// Heartbeat liveness flipped the health of an ephemeral instance.
    SetEphemeralHealth {
        /// Service.
        service: ServiceKey,
        /// Owning client.
        client: ClientId,
        /// Which instance of the client's publication.
        instance: InstanceKey,
        /// New health.
        healthy: bool,
    },
    /// A client is gone: every ephemeral instance it published is removed.
    RemoveClient {
        /// The client.
        client: ClientId,
    },
    /// A replicated client (Distro): its whole publication as its owner member has it; services
    /// not listed lose the client's instances.
    SyncClient {
        /// The client.
        client: ClientId,
        /// Every service it publishes into, with its instances there.
        publication: Vec<(ServiceKey, Vec<Instance>)>,
    },
    /// Removes a service that has been empty long enough and has no persistent part.
    RemoveEmptyService {
        /// Service.
        service: ServiceKey,
    },
    /// A persistent instance is registered (or replaced) by its `ip:port#false` client.
    PublishPersistent {
        /// Service.
        service: ServiceKey,
        /// Owning client (`ip:port#false`).
        client: ClientId,
        /// The instance.
        instance: Instance,
    },
    /// A persistent instance is deregistered.
    UnpublishPersistent {
        /// Service.
        service: ServiceKey,
        /// Owning client.
        client: ClientId,
    },
    /// The health of a persistent instance changes (probe verdict or manual health API).
    SetPersistentHealth {
        /// Service.
        service: ServiceKey,
        /// Which instance.
        instance: InstanceKey,
        /// New health.
        healthy: bool,
    },
    /// Creates service metadata; refused if the service already has metadata.
    CreateService {
        /// Service.
        service: ServiceKey,
        /// Initial metadata.
        metadata: ServiceMetadata,
    },
    /// Patches service metadata, creating it (with `ephemeral`) when absent.
    UpdateService {
        /// Service.
        service: ServiceKey,
        /// Ephemeral flag for metadata created by this update.
        ephemeral: bool,
        /// New protect threshold.
        protect_threshold: Option<f64>,
        /// New metadata map (replaces the old one).
        metadata: Option<std::collections::BTreeMap<String, String>>,
        /// New selector.
        selector: Option<serde_json::Value>,
    },
    /// Deletes service metadata and overrides; refused while persistent instances remain.
    DeleteService {
        /// Service.
        service: ServiceKey,
    },
    /// Sets the metadata of one cluster of a service.
    UpdateCluster {
        /// Service.
        service: ServiceKey,
        /// Ephemeral flag for service metadata created by this update.
        ephemeral: bool,
        /// Cluster name.
        cluster: String,
        /// New cluster metadata.
        metadata: ClusterMetadata,
    },
    /// Merges an update-API override into an instance's overrides.
    UpdateInstanceOverride {
        /// Service.
        service: ServiceKey,
        /// Which instance.
        instance: InstanceKey,
        /// Fields to set.
        patch: InstanceOverride,
    },
    /// Removes an empty service's persistent leftovers (overrides) when it has no metadata.
    RemoveEmptyPersistentService {
        /// Service.
        service: ServiceKey,
    },
}

impl NamingCommand {
    /// Whether the command changes Raft-owned data.
    pub fn is_persistent(&self) -> bool {
        !matches!(
            self,
            Self::PublishEphemeral { .. }
                | Self::UnpublishEphemeral { .. }
                | Self::SetEphemeralHealth { .. }
                | Self::RemoveClient { .. }
                | Self::SyncClient { .. }
                | Self::RemoveEmptyService { .. }
        )
    }
}

/// Changes to the namespace table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NamespaceCommand {
    /// Creates a namespace; refused if the id exists.
    Create(Namespace),
    /// Changes a namespace's name and description; refused if it does not exist.
    Update {
        /// Id.
        id: String,
        /// New display name.
        name: String,
        /// New description.
        desc: String,
    },
    /// Deletes a namespace (its configs and services stay, as in Nacos); refused if absent.
    Delete {
        /// Id.
        id: String,
    },
}

/// Changes to users, roles and permissions. Passwords arrive hashed: the log never holds one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AuthCommand {
    /// Creates the administrator (with the admin role) unless one was ever created.
    Bootstrap {
        /// User name.
        username: String,
        /// bcrypt hash.
        password_hash: String,
    },
    /// Creates a user; refused if the name exists.
    CreateUser {
        /// User name.
        username: String,
        /// bcrypt hash.
        password_hash: String,
    },
    /// Changes a user's password; refused if the user does not exist.
    UpdatePassword {
        /// User name.
        username: String,
        /// bcrypt hash.
        password_hash: String,
    },
    /// Deletes a user and its role bindings.
    DeleteUser {
        /// User name.
        username: String,
    },
    /// Gives a user a role; refused if the user does not exist or already holds it.
    BindRole {
        /// Role.
        role: String,
        /// User name.
        username: String,
    },
    /// Takes a role from one user, or (`username` absent) deletes the role with its
    /// permissions.
    UnbindRole {
        /// Role.
        role: String,
        /// User name.
        username: Option<String>,
    },
    /// Grants a role an action on a resource pattern; refused if already granted.
    AddPermission {
        /// Role.
        role: String,
        /// Resource pattern.
        resource: String,
        /// `r`, `w` or `rw`.
        action: String,
    },
    /// Revokes a permission.
    RemovePermission {
        /// Role.
        role: String,
        /// Resource pattern.
        resource: String,
        /// `r`, `w` or `rw`.
        action: String,
    },
}

/// A command refused by the state when applied. Serializable: it is the Raft response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApplyError {
    /// `CreateService` on a service that already has metadata.
    #[error("specified service {0} already exists!")]
    ServiceAlreadyExists(String),
    /// `DeleteService` while persistent instances remain.
    #[error("Service {0} is not empty, can't be delete. Please unregister instance first")]
    ServiceNotEmpty(String),
    /// A compare-and-swap publish whose expected MD5 did not match.
    #[error("Cas publish fail, server md5 may have changed.")]
    CasConflict,
    /// A gray publish for a config that does not exist.
    #[error("config {0} does not exist; publish it before its gray variant")]
    ConfigNotFound(String),
    /// `NamespaceCommand::Create` for an existing id.
    #[error("namespace {0} already exists")]
    NamespaceExists(String),
    /// A namespace change for an id that does not exist.
    #[error("namespace {0} does not exist")]
    NamespaceNotFound(String),
    /// A user that already exists.
    #[error("user '{0}' already exist!")]
    UserExists(String),
    /// A user that does not exist.
    #[error("user '{0}' not found!")]
    UserNotFound(String),
    /// A role binding or permission that already exists.
    #[error("{0} already exists")]
    Duplicate(String),
    /// A permission for a role nobody holds.
    #[error("role {0} not found!")]
    RoleNotFound(String),
    /// Deleting a user that holds the admin role.
    #[error("cannot delete admin: {0}")]
    AdminProtected(String),
    /// `AuthCommand::Bootstrap` after the administrator was created once.
    #[error("the administrator was already created")]
    AlreadyBootstrapped,
}

/// What applying a command yields.
pub type CommandResult = Result<(), ApplyError>;
