//! Users, their roles and the roles' permissions (Nacos' `users`, `roles`, `permissions`
//! tables), replicated through Raft. Passwords are stored as bcrypt hashes only.

use std::collections::{BTreeMap, BTreeSet};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

/// The role that may do everything (Nacos' `ROLE_ADMIN`); held by the bootstrap admin and
/// never granted through the API.
pub const ADMIN_ROLE: &str = "ROLE_ADMIN";

/// A user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Login name.
    pub username: String,
    /// bcrypt hash (`$2a$`/`$2b$`, as Nacos stores it).
    pub password_hash: String,
}

/// A user holding a role.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RoleBinding {
    /// Role name.
    pub role: String,
    /// User.
    pub username: String,
}

/// What a role may do: `action` (`r`, `w` or `rw`) on resources matching `resource`
/// (`namespace:group:type/name`, `*` as a wildcard).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Permission {
    /// Role name.
    pub role: String,
    /// Resource pattern.
    pub resource: String,
    /// `r`, `w` or `rw`.
    pub action: String,
}

/// All account data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accounts {
    /// Users by name.
    pub users: BTreeMap<String, User>,
    /// Role bindings.
    pub roles: BTreeSet<RoleBinding>,
    /// Permissions.
    pub permissions: BTreeSet<Permission>,
    /// Whether the administrator was created (once per cluster, ever).
    pub bootstrapped: bool,
}

impl Accounts {
    /// The roles `username` holds.
    pub fn roles_of<'a>(&'a self, username: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.roles.iter().filter(move |b| b.username == username).map(|b| b.role.as_str())
    }

    /// Whether `username` holds [`ADMIN_ROLE`].
    pub fn is_admin(&self, username: &str) -> bool {
        self.roles_of(username).any(|r| r == ADMIN_ROLE)
    }

    /// Permissions of `role`.
    pub fn permissions_of<'a>(&'a self, role: &'a str) -> impl Iterator<Item = &'a Permission> + 'a {
        self.permissions.iter().filter(move |p| p.role == role)
    }
}

/// The account table; written only by `consistency::apply`.
#[derive(Debug, Default)]
pub struct AccountStore {
    data: RwLock<Accounts>,
}

impl AccountStore {
    /// Runs one write (the applier only).
    pub fn write<R>(&self, f: impl FnOnce(&mut Accounts) -> R) -> R {
        f(&mut self.data.write())
    }

    /// Runs one read; never held across an `.await`.
    pub fn read<R>(&self, f: impl FnOnce(&Accounts) -> R) -> R {
        f(&self.data.read())
    }
}
