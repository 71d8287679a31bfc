//! Authentication and authorization, Nacos-compatible (spec §8): who a request comes from
//! (token, user name + password, or the member identity header) and whether it may do what
//! it asks. The one check every transport uses:
//!
//! ```text
//!  HTTP guard (api/http/guard.rs) ─┐
//!  gRPC Handler::admit (api/grpc) ─┼─► Auth::check(credentials, resource, action)
//!  DNS (later) ────────────────────┘        │ authenticate: token.rs / password.rs (+ limiter.rs)
//!                                           ▼ authorize:    resource::permits (pure)
//!                                      state/accounts.rs (users, roles, permissions via Raft)
//! ```
//!
//! What is enforced where (see `docs/auth.md`): console APIs (namespaces, users, roles,
//! permissions) always; client APIs (naming, config, gRPC) and cluster administration only
//! with `[auth] enabled` (`NACOS_AUTH_ENABLE`); health and `/metrics` never.

pub mod limiter;
pub mod password;
pub mod resource;
pub mod token;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use registry_proto::clock::now_millis;
use registry_proto::contract::auth::{ADMIN_USER, env};
use subtle::ConstantTimeEq as _;

use crate::consistency::{ApplyError, AuthCommand, Command, Consistency, SubmitError};
use crate::state::AccountStore;
pub use resource::{Action, Identity, Resource, permits};
use token::{Signer, TokenError};

/// Name of the file in the data directory holding a generated administrator password.
pub const GENERATED_PASSWORD_FILE: &str = "admin-password";

/// Writes `text` to `path` readable and writable by this user only (replacing it).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    // `mode` applies to a new file only.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// The `[auth]` section (environment: `NACOS_AUTH_*`, see `contract::auth::env`).
#[derive(Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Enforce auth on client APIs and cluster administration (`NACOS_AUTH_ENABLE`).
    pub enabled: bool,
    /// Token signing secret, base64, ≥ 32 bytes decoded (`NACOS_AUTH_TOKEN`). Absent: a random
    /// one per process when standalone; clustered, logins are refused.
    pub token_secret: Option<String>,
    /// Token lifetime (s); Nacos: 18 000.
    pub token_ttl_seconds: u64,
    /// Password of `nacos` on the first bootstrap (`NACOS_AUTH_ADMIN_PASSWORD`); absent: one is
    /// generated and written to the data directory's [`GENERATED_PASSWORD_FILE`].
    pub admin_password: Option<String>,
    /// Header name marking member-to-member calls (`NACOS_AUTH_IDENTITY_KEY`).
    pub identity_key: Option<String>,
    /// Value that header must carry (`NACOS_AUTH_IDENTITY_VALUE`).
    pub identity_value: Option<String>,
    /// Failed logins per (user name, client IP) before further attempts are refused.
    pub login_max_failures: u32,
    /// Window of those failures (s).
    pub login_window_seconds: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            token_secret: None,
            token_ttl_seconds: 18_000,
            admin_password: None,
            identity_key: None,
            identity_value: None,
            login_max_failures: 5,
            login_window_seconds: 300,
        }
    }
}

impl std::fmt::Debug for AuthConfig {
    /// Secrets are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("enabled", &self.enabled)
            .field("token_secret", &self.token_secret.as_ref().map(|_| "<set>"))
            .field("token_ttl_seconds", &self.token_ttl_seconds)
            .field("admin_password", &self.admin_password.as_ref().map(|_| "<set>"))
            .field("identity_key", &self.identity_key)
            .field("identity_value", &self.identity_value.as_ref().map(|_| "<set>"))
            .field("login_max_failures", &self.login_max_failures)
            .field("login_window_seconds", &self.login_window_seconds)
            .finish()
    }
}

impl AuthConfig {
    /// Refuses settings that cannot work.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(secret) = &self.token_secret {
            Signer::from_base64(secret).map_err(|e| format!("{}: {e}", env::TOKEN))?;
        }
        if self.identity_key.is_some() != self.identity_value.is_some() {
            return Err(format!("{} and {} must be set together", env::IDENTITY_KEY, env::IDENTITY_VALUE));
        }
        if self.token_ttl_seconds == 0 || self.login_window_seconds == 0 {
            return Err("auth.token_ttl_seconds and auth.login_window_seconds must be positive".into());
        }
        Ok(())
    }
}

/// Why a request was refused; the messages are Nacos'.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credentials, an unknown user or a wrong password.
    #[error("user not found!")]
    UserNotFound,
    /// A bad or expired token.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Authenticated, but without the permission.
    #[error("authorization failed!")]
    Forbidden,
    /// Too many failed logins for this user from this address.
    #[error("too many failed login attempts, try again later")]
    TooManyAttempts,
    /// No token secret: this member cannot issue tokens.
    #[error("login is unavailable: no token secret is configured ({})", env::TOKEN)]
    NoSecret,
    /// A management change was refused by the state (user exists, ...).
    #[error(transparent)]
    Rejected(ApplyError),
    /// The change could not be committed, or hashing failed.
    #[error("{0}")]
    Unavailable(String),
}

impl From<SubmitError> for AuthError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Rejected(r) => Self::Rejected(r),
            SubmitError::Raft(r) => Self::Unavailable(r.to_string()),
        }
    }
}

impl From<password::HashError> for AuthError {
    fn from(e: password::HashError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// What a request presented. Its `Debug` shows which credentials came, never their values.
#[derive(Clone, Default)]
pub struct Credentials {
    /// `accessToken`, or the bearer token of `Authorization`.
    pub access_token: Option<String>,
    /// `username` (with `password`).
    pub username: Option<String>,
    /// `password`.
    pub password: Option<String>,
    /// Value of the server identity header, when present.
    pub server_identity: Option<String>,
    /// Client address (login limiting).
    pub ip: Option<IpAddr>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |v: &Option<String>| v.as_ref().map(|_| REDACTED);
        f.debug_struct("Credentials")
            .field("access_token", &shown(&self.access_token))
            .field("username", &self.username)
            .field("password", &shown(&self.password))
            .field("server_identity", &shown(&self.server_identity))
            .field("ip", &self.ip)
            .finish()
    }
}

/// What `Debug` shows for a secret that is present.
const REDACTED: &str = "<redacted>";

/// A successful login. Its `Debug` leaves the token out.
#[derive(Clone)]
pub struct Login {
    /// The token.
    pub access_token: String,
    /// Its lifetime (s).
    pub token_ttl: u64,
    /// Whether the user is an administrator.
    pub global_admin: bool,
    /// The user.
    pub username: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("access_token", &REDACTED)
            .field("token_ttl", &self.token_ttl)
            .field("global_admin", &self.global_admin)
            .field("username", &self.username)
            .finish()
    }
}

/// The auth service: one per member, shared by every transport.
pub struct Auth {
    config: AuthConfig,
    /// Where a generated administrator password is written (never logged).
    password_file: PathBuf,
    signer: Option<Signer>,
    accounts: Arc<AccountStore>,
    consistency: Consistency,
    limiter: limiter::LoginLimiter,
    verifier: password::Verifier,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Auth {
    /// The service. Without a configured secret a standalone member signs with a random one
    /// (development mode: tokens die with the process); a clustered one cannot issue tokens.
    /// `password_file`: where a generated administrator password goes (the data directory's
    /// [`GENERATED_PASSWORD_FILE`]).
    pub fn new(
        config: AuthConfig,
        password_file: PathBuf,
        standalone: bool,
        accounts: Arc<AccountStore>,
        consistency: Consistency,
    ) -> Result<Self, String> {
        config.validate()?;
        let signer = match &config.token_secret {
            Some(secret) => Some(Signer::from_base64(secret).map_err(|e| e.to_string())?),
            None if standalone => {
                tracing::warn!(
                    "no {} set: standalone development mode signs tokens with a random secret; they end with this process",
                    env::TOKEN
                );
                let mut key = vec![0u8; 32];
                getrandom::fill(&mut key).map_err(|e| format!("no randomness for a token secret: {e}"))?;
                Some(Signer::from_bytes(key).map_err(|e| e.to_string())?)
            }
            None => {
                tracing::warn!("no {} set: logins are refused on this cluster member", env::TOKEN);
                None
            }
        };
        let limiter =
            limiter::LoginLimiter::new(config.login_max_failures, Duration::from_secs(config.login_window_seconds));
        Ok(Self {
            config,
            password_file,
            signer,
            accounts,
            consistency,
            limiter,
            verifier: password::Verifier::default(),
        })
    }

    /// Whether client APIs (naming, config, gRPC) and cluster administration are protected.
    pub fn client_auth_enabled(&self) -> bool {
        self.config.enabled
    }

    /// The server identity header name, when configured.
    pub fn identity_header(&self) -> Option<&str> {
        self.config.identity_key.as_deref()
    }

    /// Authenticates and authorizes in one step.
    pub async fn check(&self, c: &Credentials, resource: &Resource, action: Action) -> Result<Identity, AuthError> {
        let identity = self.authenticate(c).await?;
        self.authorize(&identity, resource, action)?;
        Ok(identity)
    }

    /// Whether `identity` may do `action` on `resource` (the plain decision, for DNS too).
    pub fn authorize(&self, identity: &Identity, resource: &Resource, action: Action) -> Result<(), AuthError> {
        if self.accounts.read(|a| permits(a, identity, resource, action)) { Ok(()) } else { Err(AuthError::Forbidden) }
    }

    /// Who presented `c`: a member (identity header), a token's user (token preferred), or a
    /// user proving its password.
    pub async fn authenticate(&self, c: &Credentials) -> Result<Identity, AuthError> {
        if let (Some(expected), Some(given)) = (&self.config.identity_value, &c.server_identity)
            && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
        {
            return Ok(Identity::Server);
        }
        if let Some(token) = c.access_token.as_deref().filter(|t| !t.trim().is_empty()) {
            let signer = self.signer.as_ref().ok_or(AuthError::Token(TokenError::Invalid))?;
            let user = signer.verify(token, now_millis() / 1000)?;
            // A deleted user's tokens die with it.
            if !self.accounts.read(|a| a.users.contains_key(&user)) {
                return Err(AuthError::UserNotFound);
            }
            return Ok(Identity::User(user));
        }
        match (&c.username, &c.password) {
            (Some(u), Some(p)) => {
                self.check_password(u, p, c.ip).await?;
                Ok(Identity::User(u.clone()))
            }
            _ => Err(AuthError::UserNotFound),
        }
    }

    /// `POST /v1/auth/login`: checks the password and issues a token.
    pub async fn login(&self, username: &str, password: &str, ip: Option<IpAddr>) -> Result<Login, AuthError> {
        let signer = self.signer.as_ref().ok_or(AuthError::NoSecret)?;
        self.check_password(username, password, ip).await?;
        let ttl = self.config.token_ttl_seconds;
        Ok(Login {
            access_token: signer.issue(username, now_millis() / 1000, ttl),
            token_ttl: ttl,
            global_admin: self.accounts.read(|a| a.is_admin(username)),
            username: username.to_owned(),
        })
    }

    /// A password check, limited per (user, address).
    async fn check_password(&self, username: &str, password: &str, ip: Option<IpAddr>) -> Result<(), AuthError> {
        if self.limiter.blocked(username, ip, Instant::now()) {
            return Err(AuthError::TooManyAttempts);
        }
        let stored = self.accounts.read(|a| a.users.get(username).map(|u| u.password_hash.clone()));
        // An unknown user costs a verification too, so timing does not tell which names exist.
        let stored = stored.unwrap_or_else(|| UNKNOWN_USER_HASH.to_owned());
        if self.verifier.verify(username, password, &stored).await
            && self.accounts.read(|a| a.users.contains_key(username))
        {
            self.limiter.succeeded(username, ip);
            Ok(())
        } else {
            self.limiter.failed(username, ip, Instant::now());
            Err(AuthError::UserNotFound)
        }
    }

    /// Applies an account change (passwords already hashed).
    pub async fn submit(&self, cmd: AuthCommand) -> Result<(), AuthError> {
        self.consistency.submit(Command::Auth(cmd)).await.map_err(AuthError::from)
    }

    /// The account table (management endpoints read it).
    pub fn accounts(&self) -> &AccountStore {
        &self.accounts
    }

    /// Creates the administrator `nacos` once per cluster, ever: with the configured password,
    /// else a generated one kept in the password file of the member whose creation took
    /// effect (never logged: logs are collected and kept where passwords must not be).
    /// Returns whether it is settled (created now or before); `false` means retry later.
    pub async fn bootstrap(&self) -> bool {
        if self.accounts.read(|a| a.bootstrapped) {
            self.forget_losing_password().await;
            return true;
        }
        let (password, generated) = match &self.config.admin_password {
            Some(p) if !p.is_empty() => (p.clone(), false),
            _ => match self.pending_password() {
                Some(p) => (p, true),
                None => return false,
            },
        };
        let password_hash = match password::hash(&password).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hash the administrator password");
                return false;
            }
        };
        match self.submit(AuthCommand::Bootstrap { username: ADMIN_USER.to_owned(), password_hash }).await {
            Ok(()) => {
                if generated {
                    tracing::warn!(
                        file = %self.password_file.display(),
                        "created the administrator '{ADMIN_USER}' with a generated password, in the file named here \
                         (readable by this user only; set {} to choose it)",
                        env::ADMIN_PASSWORD
                    );
                } else {
                    tracing::info!("created the administrator '{ADMIN_USER}'");
                }
                true
            }
            Err(AuthError::Rejected(ApplyError::AlreadyBootstrapped)) => {
                self.forget_losing_password().await;
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "administrator not created yet; retrying");
                false
            }
        }
    }

    /// The generated password this member proposes: the one in the password file when an
    /// earlier attempt wrote it (a proposal that timed out may still commit, so a retry must not
    /// replace it), else a new one, written there before it is proposed, so an administrator
    /// never exists whose password is nowhere. `None`: no randomness or the file cannot be written.
    fn pending_password(&self) -> Option<String> {
        if let Ok(text) = std::fs::read_to_string(&self.password_file)
            && !text.trim().is_empty()
        {
            return Some(text.trim().to_owned());
        }
        let password = generate_password()?;
        match write_private(&self.password_file, &password) {
            Ok(()) => Some(password),
            Err(e) => {
                tracing::warn!(file = %self.password_file.display(), error = %e, "cannot write the generated administrator password");
                None
            }
        }
    }

    /// Removes the password file when its password is not the administrator's (another
    /// member's creation took effect), so the only file left is the one that logs in.
    async fn forget_losing_password(&self) {
        let Ok(text) = std::fs::read_to_string(&self.password_file) else { return };
        let stored = self.accounts.read(|a| a.users.get(ADMIN_USER).map(|u| u.password_hash.clone()));
        let current = match stored {
            Some(hash) => self.verifier.verify(ADMIN_USER, text.trim(), &hash).await,
            None => false,
        };
        if !current {
            let _ = std::fs::remove_file(&self.password_file);
        }
    }

    /// Retries [`Self::bootstrap`] until settled (a cluster may have no leader yet).
    pub async fn run_bootstrap(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        while !self.bootstrap().await {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
}

/// A valid bcrypt hash nobody knows the password of (cost 10, as real ones).
const UNKNOWN_USER_HASH: &str = "$2b$10$7EqJtq98hPqEX7fNZaFWoOhi5BWX4Z7VfaJxG1w6E0v0xXAWzAO9a";

/// 20 random characters from an unambiguous alphabet.
fn generate_password() -> Option<String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_credentials_or_tokens() {
        let credentials = Credentials {
            access_token: Some("tok-123".into()),
            username: Some("alice".into()),
            password: Some("s3cret".into()),
            server_identity: Some("member-key".into()),
            ip: None,
        };
        let login =
            Login { access_token: "tok-456".into(), token_ttl: 18000, global_admin: false, username: "alice".into() };
        let shown = format!("{credentials:?} {login:?}");
        for secret in ["tok-123", "s3cret", "member-key", "tok-456"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("alice") && shown.contains(REDACTED), "{shown}");
    }
}
