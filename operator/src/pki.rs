//! The operator's certificate authorities and the certificates they issue, shared by the
//! webhook (an in-memory CA for its serving certificate, `webhook::cert`) and the registry
//! clusters (a CA kept in a Secret per cluster, `controller::tls`).
//!
//! Keys are ECDSA P-256 (rcgen's default). A CA signs only leaf certificates (path length 0);
//! a leaf never outlives its CA and is backdated by [`CLOCK_SKEW`] so a peer whose clock is a
//! little behind still accepts a certificate made a moment ago.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use snafu::{OptionExt, ResultExt, Snafu};
use time::{Duration, OffsetDateTime};

/// Backdating of `notBefore`.
pub const CLOCK_SKEW: Duration = Duration::hours(1);

/// Why a certificate could not be made, loaded or checked.
#[derive(Debug, Snafu)]
pub enum Error {
    /// rcgen refused the parameters or could not sign.
    #[snafu(display("cannot generate a certificate"))]
    Generate {
        /// Cause.
        source: rcgen::Error,
    },
    /// A stored CA certificate or key does not parse.
    #[snafu(display("cannot read the stored CA certificate and key"))]
    Parse {
        /// Cause.
        source: rcgen::Error,
    },
    /// A stored CA certificate has no readable validity.
    #[snafu(display("cannot read the validity of the stored CA certificate"))]
    Validity,
}

/// What an issued certificate may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A TLS server only (the webhook).
    Server,
    /// A TLS server and client (registry members: each dials the others with its certificate).
    ServerAndClient,
}

/// A CA: its certificate and the key that signs with it.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    not_after: OffsetDateTime,
}

// The CA key must never reach a log line.
impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").field("not_after", &self.not_after).finish_non_exhaustive()
    }
}

/// An issued certificate and its key.
pub struct Issued {
    /// The certificate (DER).
    pub cert_der: CertificateDer<'static>,
    /// The certificate (PEM).
    pub cert_pem: String,
    key: KeyPair,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

// The private key must never reach a log line.
impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").field("not_after", &self.not_after).finish_non_exhaustive()
    }
}

impl Authority {
    /// A fresh self-signed CA named `common_name`, valid from `now` (less [`CLOCK_SKEW`]) for
    /// `validity`.
    pub fn generate(common_name: &str, validity: Duration, now: OffsetDateTime) -> Result<Self, Error> {
        let not_after = now + validity;
        let mut params = CertificateParams::default();
        params.distinguished_name.remove(DnType::CommonName);
        params.distinguished_name.push(DnType::CommonName, common_name);
        // The CA signs only leaf certificates, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - CLOCK_SKEW;
        params.not_after = not_after;
        let key = KeyPair::generate().context(GenerateSnafu)?;
        let cert = params.self_signed(&key).context(GenerateSnafu)?;
        Ok(Self { cert_der: cert.der().clone(), cert_pem: cert.pem(), issuer: Issuer::new(params, key), not_after })
    }

    /// The CA stored as PEM (a certificate and its PKCS#8 key), as [`Self::ca_pem`] and
    /// [`Self::key_pem`] wrote it.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, Error> {
        let key = KeyPair::from_pem(key_pem).context(ParseSnafu)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).context(ParseSnafu)?;
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .ok()
            .map(|der: CertificateDer<'_>| der.into_owned())
            .context(ValiditySnafu)?;
        let not_after = x509_parser::parse_x509_certificate(&der)
            .ok()
            .and_then(|(_, cert)| OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp()).ok())
            .context(ValiditySnafu)?;
        Ok(Self { issuer, cert_der: der, cert_pem: cert_pem.to_owned(), not_after })
    }

    /// The CA certificate in PEM: what peers trust.
    pub fn ca_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate in DER, what a client adds to its roots.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA's private key in PEM (PKCS#8), for storing the CA.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// End of the CA's validity.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// A new certificate for the DNS `names` (the last is also its common name), valid from
    /// `now` for `validity` but never beyond the CA, for `usage`.
    pub fn issue(
        &self,
        names: &[String],
        usage: Usage,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<Issued, Error> {
        let not_before = now - CLOCK_SKEW;
        let not_after = (now + validity).min(self.not_after);
        let mut params = CertificateParams::new(names.to_vec()).context(GenerateSnafu)?;
        params.distinguished_name.remove(DnType::CommonName);
        if let Some(name) = names.last() {
            params.distinguished_name.push(DnType::CommonName, name.clone());
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::ServerAndClient => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate().context(GenerateSnafu)?;
        let cert = params.signed_by(&key, &self.issuer).context(GenerateSnafu)?;
        Ok(Issued { cert_der: cert.der().clone(), cert_pem: cert.pem(), key, not_before, not_after })
    }
}

impl Issued {
    /// When to replace this certificate: two thirds into its validity, leaving a third of it
    /// for retries.
    pub fn renew_at(&self) -> OffsetDateTime {
        self.not_before + (self.not_after - self.not_before) * 2 / 3
    }

    /// The private key (PKCS#8 DER).
    pub fn key_der(&self) -> PrivatePkcs8KeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.key.serialize_der())
    }

    /// The private key in PEM (PKCS#8).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }
}

/// The ring crypto provider, passed explicitly (as the kube client uses it) instead of relying
/// on a process-wide default that another part of the operator might install differently.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Whether a TLS client trusting only `ca` accepts `cert` as the server `name` at `at`: chain,
/// key usage, name and validity.
pub fn trusts(ca: &CertificateDer<'static>, cert: &CertificateDer<'_>, name: &str, at: OffsetDateTime) -> bool {
    let mut roots = RootCertStore::empty();
    let Ok(()) = roots.add(ca.clone()) else { return false };
    let Ok(verifier) = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider()).build() else {
        return false;
    };
    let (Ok(name), Ok(seconds)) = (ServerName::try_from(name.to_owned()), u64::try_from(at.unix_timestamp())) else {
        return false;
    };
    let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds));
    verifier.verify_server_cert(cert, &[], &name, &[], at).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_ca_signs_certificates_its_certificate_trusts() {
        let now = OffsetDateTime::now_utc();
        let original = Authority::generate("test CA", Duration::days(3650), now).unwrap();
        let stored = Authority::from_pem(original.ca_pem(), &original.key_pem()).unwrap();
        // Seconds precision: the certificate stores no fractions.
        assert_eq!(stored.not_after().unix_timestamp(), original.not_after().unix_timestamp());
        let names = vec!["a.example".to_owned()];
        let cert = stored.issue(&names, Usage::ServerAndClient, Duration::days(90), now).unwrap();
        assert!(trusts(original.ca_der(), &cert.cert_der, "a.example", now));
        assert!(!trusts(original.ca_der(), &cert.cert_der, "b.example", now));
        let other = Authority::generate("other CA", Duration::days(3650), now).unwrap();
        assert!(!trusts(other.ca_der(), &cert.cert_der, "a.example", now));
        assert!(Authority::from_pem(original.ca_pem(), "not a key").is_err());
    }
}
