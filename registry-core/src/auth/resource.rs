//! What a request touches and what it wants to do, and the one decision over them: pure
//! functions over the account table, shared by HTTP, gRPC and (later) DNS.
//!
//! Resources are Nacos' strings `namespace:group:type/name` (`public:DEFAULT_GROUP:naming/orders`);
//! a blank group or name becomes `*`, a blank namespace `public`. Permissions name patterns
//! where `*` matches any run of characters (Nacos turns `*` into the regex `.*`), and an
//! action `r`, `w` or `rw`.

use crate::state::Accounts;
use crate::state::namespaces::PUBLIC;

/// What a request wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Reads (`r`).
    Read,
    /// Writes (`w`).
    Write,
}

impl Action {
    fn letter(self) -> char {
        match self {
            Self::Read => 'r',
            Self::Write => 'w',
        }
    }
}

/// What a request touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// Naming or config data: `namespace:group:type/name`.
    Data(String),
    /// Console reads any signed-in user may do (the namespace list).
    Console,
    /// Console writes, cluster administration and account management: administrators only.
    Admin,
}

impl Resource {
    /// A naming resource.
    pub fn naming(namespace: &str, group: &str, service: &str) -> Self {
        Self::data(namespace, group, "naming", service)
    }

    /// A config resource (`tenant` `""` is `public`).
    pub fn config(tenant: &str, group: &str, data_id: &str) -> Self {
        Self::data(tenant, group, "config", data_id)
    }

    fn data(namespace: &str, group: &str, kind: &str, name: &str) -> Self {
        let or_star = |s: &str| if s.trim().is_empty() { "*".to_owned() } else { s.trim().to_owned() };
        let namespace = if namespace.trim().is_empty() { PUBLIC } else { namespace.trim() };
        Self::Data(format!("{namespace}:{}:{kind}/{}", or_star(group), or_star(name)))
    }
}

/// Who is asking, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Another member (the server identity header matched).
    Server,
    /// A user.
    User(String),
}

/// Whether `identity` may do `action` on `resource`: members and administrators may do
/// everything; others need a permission of one of their roles whose pattern matches and
/// whose action contains the wanted one. An unknown user may do nothing.
pub fn permits(accounts: &Accounts, identity: &Identity, resource: &Resource, action: Action) -> bool {
    let user = match identity {
        Identity::Server => return true,
        Identity::User(u) => u,
    };
    if !accounts.users.contains_key(user) {
        return false;
    }
    if accounts.is_admin(user) {
        return true;
    }
    match resource {
        Resource::Admin => false,
        Resource::Console => action == Action::Read,
        Resource::Data(path) => accounts.roles_of(user).any(|role| {
            accounts.permissions_of(role).any(|p| p.action.contains(action.letter()) && glob_matches(&p.resource, path))
        }),
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (none included).
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|b| *b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::accounts::{ADMIN_ROLE, Permission, RoleBinding, User};

    fn accounts() -> Accounts {
        let mut a = Accounts::default();
        for u in ["admin", "dev", "nobody"] {
            a.users.insert(u.into(), User { username: u.into(), password_hash: String::new() });
        }
        a.roles.insert(RoleBinding { role: ADMIN_ROLE.into(), username: "admin".into() });
        a.roles.insert(RoleBinding { role: "devs".into(), username: "dev".into() });
        a.permissions.insert(Permission {
            role: "devs".into(),
            resource: "public:*:config/*".into(),
            action: "rw".into(),
        });
        a.permissions.insert(Permission { role: "devs".into(), resource: "dev:*:*".into(), action: "r".into() });
        a
    }

    #[test]
    fn roles_permissions_and_actions_decide() {
        let a = accounts();
        let dev = Identity::User("dev".into());
        let cfg = Resource::config("", "DEFAULT_GROUP", "app.yaml");
        assert_eq!(cfg, Resource::Data("public:DEFAULT_GROUP:config/app.yaml".into()));
        assert!(permits(&a, &dev, &cfg, Action::Write));
        assert!(!permits(&a, &dev, &Resource::naming("public", "DEFAULT_GROUP", "orders"), Action::Read));
        assert!(permits(&a, &dev, &Resource::naming("dev", "g", "orders"), Action::Read));
        assert!(!permits(&a, &dev, &Resource::naming("dev", "g", "orders"), Action::Write));
        assert!(!permits(&a, &dev, &Resource::Admin, Action::Read));
        assert!(permits(&a, &dev, &Resource::Console, Action::Read));
        assert!(!permits(&a, &Identity::User("nobody".into()), &cfg, Action::Read));
        assert!(!permits(&a, &Identity::User("ghost".into()), &Resource::Console, Action::Read));
        assert!(permits(&a, &Identity::User("admin".into()), &Resource::Admin, Action::Write));
        assert!(permits(&a, &Identity::Server, &Resource::Admin, Action::Write));
    }

    #[test]
    fn glob_stars_match_any_run() {
        assert!(glob_matches("public:*:*", "public:G:naming/s"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("a*c*e", "abcdcxe"));
        assert!(!glob_matches("public:*:config/*", "public:G:naming/s"));
        assert!(!glob_matches("pub", "public"));
        assert!(!glob_matches("dev:*", "devx:g:naming/s"));
    }
}
