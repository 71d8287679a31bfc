//! TLS material that follows its files: each use checks the files' modification times (at most
//! every [`RECHECK`]) and reads them again when one changed. A file that cannot be read or
//! parsed leaves the previous material in force (a certificate being rewritten in place is
//! picked up once complete); only the first load fails loudly.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::{Identity, Outcomes, TlsError, files, rustls_error};

/// Longest time a changed file goes unnoticed (a handshake at most this often looks at mtimes).
pub(super) const RECHECK: Duration = Duration::from_secs(1);

type Build<T> = Box<dyn Fn(&[(&Path, &[u8])]) -> Result<T, TlsError> + Send + Sync>;

/// A value built from files, rebuilt when they change.
pub(super) struct Reloading<T> {
    paths: Vec<PathBuf>,
    build: Build<T>,
    /// [`RECHECK`]; zero in tests.
    recheck: Duration,
    state: Mutex<State<T>>,
    reloads: Outcomes,
}

struct State<T> {
    stamps: Vec<Option<SystemTime>>,
    value: Arc<T>,
    checked: Instant,
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading").field("paths", &self.paths).finish_non_exhaustive()
    }
}

fn stamps(paths: &[PathBuf]) -> Vec<Option<SystemTime>> {
    paths.iter().map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()).collect()
}

fn load<T>(paths: &[PathBuf], build: &Build<T>) -> Result<T, TlsError> {
    let contents = paths.iter().map(|p| files::read(p)).collect::<Result<Vec<_>, _>>()?;
    let pairs: Vec<(&Path, &[u8])> =
        paths.iter().map(PathBuf::as_path).zip(contents.iter().map(Vec::as_slice)).collect();
    build(&pairs)
}

impl<T> Reloading<T> {
    /// Reads `paths` once (errors are returned), then follows them.
    pub(super) fn new(paths: Vec<PathBuf>, build: Build<T>) -> Result<Self, TlsError> {
        let stamps = stamps(&paths);
        let value = Arc::new(load(&paths, &build)?);
        let state = Mutex::new(State { stamps, value, checked: Instant::now() });
        Ok(Self { paths, build, recheck: RECHECK, state, reloads: Outcomes::default() })
    }

    /// The current value, read again first if a file changed since the last look.
    pub(super) fn get(&self) -> Arc<T> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.checked.elapsed() >= self.recheck {
            state.checked = Instant::now();
            let now = stamps(&self.paths);
            if now != state.stamps {
                // Recorded even on failure: a broken file is reported once per change.
                state.stamps = now;
                match load(&self.paths, &self.build) {
                    Ok(value) => {
                        state.value = Arc::new(value);
                        self.reloads.count(true);
                        tracing::info!(files = ?self.paths, "tls material reloaded");
                    }
                    Err(e) => {
                        self.reloads.count(false);
                        tracing::warn!(error = %e, "tls material changed but cannot be used: keeping the previous")
                    }
                }
            }
        }
        Arc::clone(&state.value)
    }
}

/// This side's certificate and key, presented as a server or (mutual TLS) as a client.
#[derive(Debug)]
pub(super) struct ReloadingIdentity(Reloading<CertifiedKey>);

impl ReloadingIdentity {
    pub(super) fn new(identity: &Identity, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let build: Build<CertifiedKey> = Box::new(move |f| files::certified_key(f[0], f[1], &provider));
        Reloading::new(vec![identity.cert.clone(), identity.key.clone()], build).map(Self)
    }
}

impl ReloadingIdentity {
    /// The pair in force (after a look at the files, at most every [`RECHECK`]).
    pub(super) fn current(&self) -> Arc<CertifiedKey> {
        self.0.get()
    }

    pub(super) fn reloads(&self) -> &Outcomes {
        &self.0.reloads
    }
}

impl ResolvesServerCert for ReloadingIdentity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get())
    }
}

impl ResolvesClientCert for ReloadingIdentity {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The verifiers of one CA file, both built from each version of it: a change is read, and
/// counted, once for the server side (client certificates, mutual TLS) and the client side
/// (servers' certificates).
pub(super) struct Anchors {
    clients: Arc<dyn ClientCertVerifier>,
    servers: Arc<WebPkiServerVerifier>,
}

/// A CA file followed like the identity (see [`Reloading`]).
#[derive(Debug)]
pub(super) struct ReloadingAnchors(Reloading<Anchors>);

impl ReloadingAnchors {
    /// Reads `ca` (errors are returned), then follows it.
    pub(super) fn new(ca: &Path, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let build: Build<Anchors> = Box::new(move |f| {
            let roots = files::roots(f[0].0, f[0].1)?;
            let clients = WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
                .build()
                .map_err(rustls_error)?;
            let servers = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .map_err(rustls_error)?;
            Ok(Anchors { clients, servers })
        });
        Reloading::new(vec![ca.to_owned()], build).map(Self)
    }

    /// Changed CA files read since start (the first load not counted).
    pub(super) fn reloads(&self) -> &Outcomes {
        &self.0.reloads
    }
}

/// Client certificates must chain to the CA file's anchors (mutual TLS).
#[derive(Debug)]
pub(super) struct ReloadingClientVerifier(Arc<ReloadingAnchors>);

impl ReloadingClientVerifier {
    pub(super) fn new(anchors: Arc<ReloadingAnchors>) -> Self {
        Self(anchors)
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::clone(&self.0.0.get().clients)
    }
}

impl ClientCertVerifier for ReloadingClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    /// No CA names are sent (they are optional hints; the anchors may change under us).
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current().verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

/// A server's certificate must chain to the CA file's anchors and name the host dialled.
#[derive(Debug)]
pub(super) struct ReloadingServerVerifier(Arc<ReloadingAnchors>);

impl ReloadingServerVerifier {
    pub(super) fn new(anchors: Arc<ReloadingAnchors>) -> Self {
        Self(anchors)
    }

    fn current(&self) -> Arc<WebPkiServerVerifier> {
        Arc::clone(&self.0.0.get().servers)
    }
}

impl ServerCertVerifier for ReloadingServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.current().verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate for `127.0.0.1` and its key, as PEM.
    fn pair() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes `content` with a modification time `tick` seconds ahead: a change is seen even
    /// within the file system's timestamp granularity.
    fn write(path: &Path, content: &str, tick: u64) {
        std::fs::write(path, content).unwrap();
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(tick)).unwrap();
    }

    /// The certificate served, checked to belong to the key served with it.
    fn served(identity: &ReloadingIdentity) -> Vec<u8> {
        let pair = identity.0.get();
        assert!(pair.keys_match().is_ok(), "a certificate is served with another certificate's key");
        pair.cert[0].to_vec()
    }

    #[test]
    fn a_renewal_is_used_once_complete_and_broken_files_keep_the_previous_pair() {
        let dir = tempfile::tempdir().unwrap();
        let files = Identity::new(dir.path().join("c.pem"), dir.path().join("k.pem"));
        let (first_cert, first_key) = pair();
        write(&files.cert, &first_cert, 0);
        write(&files.key, &first_key, 0);
        let mut identity = ReloadingIdentity::new(&files, super::super::provider()).unwrap();
        identity.0.recheck = Duration::ZERO;
        let first = served(&identity);

        // Half written: the new key with the old certificate does not match; the old pair stays.
        let (second_cert, second_key) = pair();
        write(&files.key, &second_key, 10);
        assert_eq!(served(&identity), first);
        assert_eq!((identity.reloads().ok(), identity.reloads().failed()), (0, 1));
        write(&files.cert, &second_cert, 20);
        let second = served(&identity);
        assert_ne!(second, first, "the complete renewal is served");
        assert_eq!((identity.reloads().ok(), identity.reloads().failed()), (1, 1));
        // Garbage, then a missing file: the last good pair stays in force.
        write(&files.cert, "not a certificate", 30);
        assert_eq!(served(&identity), second);
        std::fs::remove_file(&files.key).unwrap();
        assert_eq!(served(&identity), second);
        assert_eq!((identity.reloads().ok(), identity.reloads().failed()), (1, 3));
        // Only the first load fails loudly.
        assert!(matches!(ReloadingIdentity::new(&files, super::super::provider()), Err(TlsError::Read { .. })));
    }

    #[test]
    fn a_ca_file_change_is_read_once_for_both_sides_and_a_broken_one_keeps_the_previous_anchors() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        write(&ca, &pair().0, 0);
        let mut anchors = ReloadingAnchors::new(&ca, super::super::provider()).unwrap();
        anchors.0.recheck = Duration::ZERO;
        let shared = Arc::new(anchors);
        let clients = ReloadingClientVerifier::new(Arc::clone(&shared));
        let servers = ReloadingServerVerifier::new(Arc::clone(&shared));
        let first = shared.0.get();

        write(&ca, &pair().0, 10);
        let _ = servers.current();
        let second = shared.0.get();
        assert!(!Arc::ptr_eq(&first, &second), "the changed CA is in force");
        let _ = clients.current();
        assert!(Arc::ptr_eq(&shared.0.get(), &second), "the other side uses the same version");
        assert_eq!((shared.reloads().ok(), shared.reloads().failed()), (1, 0), "read once for both sides");

        write(&ca, "not a certificate", 20);
        let _ = clients.current();
        assert!(Arc::ptr_eq(&shared.0.get(), &second), "a broken CA file keeps the previous anchors");
        assert_eq!((shared.reloads().ok(), shared.reloads().failed()), (1, 1));
    }
}
