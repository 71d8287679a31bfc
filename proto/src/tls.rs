//! TLS from PEM files, for every listener and channel that offers it: the registry's HTTP, SDK
//! gRPC and cluster ports, member-to-member channels, the sidecar's upstream connection.
//! rustls with the ring provider only (no OpenSSL, no aws-lc).
//!
//! ```text
//!  cert.pem + key.pem ─► Reloading<CertifiedKey> ─┬─ server: ResolvesServerCert (every handshake)
//!                                                 └─ client: ResolvesClientCert (mutual TLS)
//!  ca.pem ─► Reloading<verifier> ─┬─ server: client certificates must chain to it (mutual TLS)
//!                                 └─ client: the server's certificate must chain to it
//!  each file's mtime checked at most every RECHECK; a change is read at the next handshake
//!  (no restart); a file that does not parse keeps the previous one in force. Each is read
//!  once per process: Credentials shares the pair, TrustAnchors the CA file.
//! ```

mod client;
mod files;
mod reload;
mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustls::crypto::CryptoProvider;

pub use client::{Connector, anchors_in, client_config, client_config_trusting};
pub use server::{Backlog, Incoming, ServerIo, server_config};

/// Why TLS material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM of the expected kind.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// rustls refused the material (key does not match the certificate, bad CA, ...).
    #[error("tls: {0}")]
    Rustls(String),
    /// A peer address has no host usable as a TLS server name.
    #[error("no TLS server name in {0}")]
    ServerName(String),
}

/// A certificate chain and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Identity {
    /// The pair at `cert` and `key`.
    pub fn new(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        Self { cert: cert.as_ref().to_owned(), key: key.as_ref().to_owned() }
    }
}

/// This side's certificate and key, read once and then followed: every config built from one
/// value shares it, so a renewal is read (and counted) once per process, not once per port.
#[derive(Debug, Clone)]
pub struct Credentials(Arc<reload::ReloadingIdentity>);

impl Credentials {
    /// Reads the pair (errors name the file).
    pub fn load(identity: &Identity) -> Result<Self, TlsError> {
        reload::ReloadingIdentity::new(identity, provider()).map(|r| Self(Arc::new(r)))
    }

    /// The end of the validity of the certificate in force, in seconds since the Unix epoch
    /// (the files are looked at first, at most once a second).
    pub fn not_after(&self) -> Option<i64> {
        files::not_after(self.0.current().cert.first()?)
    }

    /// Changed files read since start (the first load not counted): `ok`, put in force;
    /// `failed`, unreadable, unparsable or a key not matching (the previous pair stays).
    pub fn reloads(&self) -> &Outcomes {
        self.0.reloads()
    }
}

/// A CA file, followed: load it once and hand clones to every config that trusts it (the
/// server side checking client certificates, the client side checking servers), so a changed
/// file is read, and counted, once.
#[derive(Debug, Clone)]
pub struct TrustAnchors(Arc<reload::ReloadingAnchors>);

impl TrustAnchors {
    /// Reads `ca` (a file without a usable certificate is an error), then follows it.
    pub fn load(ca: &Path) -> Result<Self, TlsError> {
        reload::ReloadingAnchors::new(ca, provider()).map(|anchors| Self(Arc::new(anchors)))
    }

    /// Changes read since start (the first load not counted): `ok`, put in force; `failed`,
    /// unreadable or no usable certificate (the previous anchors stay). A change is read at
    /// the next handshake that checks a certificate against it.
    pub fn reloads(&self) -> &Outcomes {
        self.0.reloads()
    }
}

/// How often something succeeded and failed since start: a listener's handshakes (failed:
/// refused, not TLS, or timed out), a certificate's or CA file's reloads.
#[derive(Debug, Default)]
pub struct Outcomes {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl Outcomes {
    /// Successes.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Failures.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    fn count(&self, ok: bool) {
        let counter = if ok { &self.ok } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The one crypto provider: ring.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn rustls_error(e: impl std::fmt::Display) -> TlsError {
    TlsError::Rustls(e.to_string())
}
