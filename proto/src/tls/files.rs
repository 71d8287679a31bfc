//! Reading PEM files into what rustls takes.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{TlsError, rustls_error};

/// A file's bytes.
pub(super) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

fn pem_error(path: &Path, what: impl std::fmt::Display) -> TlsError {
    TlsError::Pem { path: path.to_owned(), what: what.to_string() }
}

/// Every certificate in a PEM file (at least one).
pub(super) fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no CERTIFICATE block"));
    }
    Ok(certs)
}

/// The certificate chain at `cert` with the key at `key`, checked to belong together.
pub(super) fn certified_key(
    cert: (&Path, &[u8]),
    key: (&Path, &[u8]),
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(cert.0, cert.1)?;
    let private = PrivateKeyDer::from_pem_slice(key.1).map_err(|e| pem_error(key.0, e))?;
    CertifiedKey::from_der(chain, private, provider).map_err(rustls_error)
}

/// The trust anchors in a CA bundle.
pub(super) fn roots(path: &Path, pem: &[u8]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(path, pem)? {
        store.add(cert).map_err(|e| pem_error(path, e))?;
    }
    Ok(Arc::new(store))
}
