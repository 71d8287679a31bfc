//! The webhook's own TLS identity: a self-signed CA ([`Authority`]) and the serving certificates
//! it signs for the webhook Service's DNS names. The API server only accepts HTTPS webhooks and
//! checks the certificate against the `caBundle` of the MutatingWebhookConfiguration, so the
//! operator makes both at start-up and publishes the CA (see [`super::ca_bundle`]); nothing has
//! to be provisioned beforehand (no cert-manager, no Secret).
//!
//! The CA lives as long as the process (valid [`CA_VALIDITY`]), so the published `caBundle`
//! never has to change while it runs; the serving certificate is short-lived ([`SERVING_VALIDITY`])
//! and [`keep_renewed`] swaps in a new one, signed by the same CA, when two thirds of its life
//! have passed. Keys are ECDSA P-256 (rcgen's default) and never leave memory: a restarted
//! operator makes a new CA and re-publishes it before it reports ready.

use std::sync::Arc;

use axum_server::tls_rustls::RustlsConfig;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use snafu::{ResultExt, Snafu};
use time::{Duration, OffsetDateTime};
use tokio_util::sync::CancellationToken;

/// Validity of the CA: longer than any operator process is expected to run.
pub const CA_VALIDITY: Duration = Duration::days(3650);

/// Validity of a serving certificate; [`keep_renewed`] replaces it after two thirds.
pub const SERVING_VALIDITY: Duration = Duration::days(90);

/// Backdating of `notBefore`, so an API server whose clock is a little behind the operator's
/// still accepts a certificate made a moment ago.
const CLOCK_SKEW: Duration = Duration::hours(1);

/// Wait before retrying a renewal that failed (it only fails if key generation does).
const RENEWAL_RETRY: Duration = Duration::hours(1);

/// Why a certificate could not be made or loaded.
#[derive(Debug, Snafu)]
pub enum Error {
    /// rcgen refused the parameters or could not sign.
    #[snafu(display("cannot generate the webhook certificate"))]
    Generate {
        /// Cause.
        source: rcgen::Error,
    },
    /// rustls refused the generated key pair.
    #[snafu(display("cannot build the webhook's TLS configuration"))]
    Tls {
        /// Cause.
        source: rustls::Error,
    },
}

/// The self-signed CA; its certificate is the `caBundle`.
pub struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
    not_after: OffsetDateTime,
}

// The CA key must never reach a log line.
impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").field("not_after", &self.not_after).finish_non_exhaustive()
    }
}

/// A serving certificate and its key.
pub struct ServingCertificate {
    /// The certificate (DER).
    pub cert_der: CertificateDer<'static>,
    key_der: PrivatePkcs8KeyDer<'static>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

// The private key must never reach a log line.
impl std::fmt::Debug for ServingCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCertificate").field("not_after", &self.not_after).finish_non_exhaustive()
    }
}

/// The DNS names the API server may use for the webhook Service: it calls
/// `<service>.<namespace>.svc`; the shorter forms serve in-namespace callers and debugging.
pub fn dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![service.to_owned(), format!("{service}.{namespace}"), format!("{service}.{namespace}.svc")]
}

impl Authority {
    /// A fresh CA, valid from `now` (less a clock-skew margin) for [`CA_VALIDITY`].
    pub fn generate(namespace: &str, now: OffsetDateTime) -> Result<Self, Error> {
        let not_after = now + CA_VALIDITY;
        let mut params = CertificateParams::default();
        params.distinguished_name.remove(DnType::CommonName);
        params.distinguished_name.push(DnType::CommonName, format!("nacos-operator webhook CA ({namespace})"));
        // The CA signs only serving certificates, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - CLOCK_SKEW;
        params.not_after = not_after;
        let issuer =
            CertifiedIssuer::self_signed(params, KeyPair::generate().context(GenerateSnafu)?).context(GenerateSnafu)?;
        Ok(Self { issuer, not_after })
    }

    /// The CA certificate in PEM: the `caBundle` of the webhook configuration.
    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate in DER, what a client adds to its roots.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        self.issuer.der()
    }

    /// A new serving certificate for `names`, valid from `now` for [`SERVING_VALIDITY`] but
    /// never beyond the CA.
    pub fn issue(&self, names: &[String], now: OffsetDateTime) -> Result<ServingCertificate, Error> {
        let not_before = now - CLOCK_SKEW;
        let not_after = (now + SERVING_VALIDITY).min(self.not_after);
        let mut params = CertificateParams::new(names.to_vec()).context(GenerateSnafu)?;
        params.distinguished_name.remove(DnType::CommonName);
        if let Some(name) = names.last() {
            params.distinguished_name.push(DnType::CommonName, name.clone());
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate().context(GenerateSnafu)?;
        let cert = params.signed_by(&key, &self.issuer).context(GenerateSnafu)?;
        Ok(ServingCertificate {
            cert_der: cert.der().clone(),
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
            not_before,
            not_after,
        })
    }
}

impl ServingCertificate {
    /// When to replace this certificate: two thirds into its validity, leaving a third of it
    /// for retries.
    pub fn renew_at(&self) -> OffsetDateTime {
        self.not_before + (self.not_after - self.not_before) * 2 / 3
    }

    /// The rustls server configuration presenting this certificate. The crypto provider is
    /// passed explicitly (ring, as the kube client uses) instead of relying on a process-wide
    /// default that another part of the operator might install differently.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, Error> {
        let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context(TlsSnafu)?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert_der.clone()], PrivateKeyDer::Pkcs8(self.key_der.clone_key()))
            .context(TlsSnafu)?;
        // The API server speaks HTTP/1.1 to webhooks when offered nothing else.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Replaces the certificate `tls` serves with a new one from `authority` at each
/// [`ServingCertificate::renew_at`] (the first one at `renew_at`), until `shutdown`. The CA does
/// not change, so the API server trusts the new certificate at once.
pub async fn keep_renewed(
    authority: Authority,
    names: Vec<String>,
    mut renew_at: OffsetDateTime,
    tls: RustlsConfig,
    shutdown: CancellationToken,
) {
    loop {
        let wait = std::time::Duration::try_from(renew_at - OffsetDateTime::now_utc()).unwrap_or_default();
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let now = OffsetDateTime::now_utc();
        match authority.issue(&names, now).and_then(|cert| Ok((cert.renew_at(), cert.server_config()?))) {
            Ok((next, config)) => {
                tls.reload_from_config(config);
                renew_at = next;
                tracing::info!(renew_at = %next, "webhook serving certificate renewed");
            }
            Err(error) => {
                tracing::warn!(error = %snafu::Report::from_error(error), "cannot renew the webhook certificate");
                renew_at = now + RENEWAL_RETRY;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use rustls::RootCertStore;
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};

    use super::*;

    const SERVICE: &str = "nacos-operator-webhook";
    const NAMESPACE: &str = "nacos-system";

    fn now() -> OffsetDateTime {
        OffsetDateTime::from(SystemTime::now())
    }

    fn unix(time: OffsetDateTime) -> UnixTime {
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(time.unix_timestamp().try_into().unwrap()))
    }

    /// Verifies `cert` the way a TLS client trusting only `ca` would: chain, key usage, SAN and
    /// validity at `at`.
    fn verify(
        ca: &CertificateDer<'static>,
        cert: &ServingCertificate,
        name: &str,
        at: OffsetDateTime,
    ) -> Result<(), rustls::Error> {
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone()).unwrap();
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let name = ServerName::try_from(name.to_owned()).unwrap();
        verifier.verify_server_cert(&cert.cert_der, &[], &name, &[], unix(at)).map(|_| ())
    }

    #[test]
    fn serving_certificate_is_trusted_for_the_service_names_while_valid() {
        let now = now();
        let authority = Authority::generate(NAMESPACE, now).unwrap();
        let cert = authority.issue(&dns_names(SERVICE, NAMESPACE), now).unwrap();
        let ca = authority.ca_der();

        for name in [SERVICE, "nacos-operator-webhook.nacos-system", "nacos-operator-webhook.nacos-system.svc"] {
            verify(ca, &cert, name, now).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        // A near-miss name, before notBefore and after notAfter are all refused.
        let svc = "nacos-operator-webhook.nacos-system.svc";
        assert!(verify(ca, &cert, "nacos-operator-webhook.other.svc", now).is_err());
        assert!(verify(ca, &cert, svc, now - Duration::hours(2)).is_err());
        assert!(verify(ca, &cert, svc, now + Duration::days(89)).is_ok());
        assert!(verify(ca, &cert, svc, now + Duration::days(91)).is_err());
        assert!(cert.server_config().is_ok());
    }

    #[test]
    fn renewed_certificates_are_trusted_by_the_same_ca_and_never_outlive_it() {
        let start = now();
        let authority = Authority::generate(NAMESPACE, start).unwrap();
        let names = dns_names(SERVICE, NAMESPACE);
        let first = authority.issue(&names, start).unwrap();
        let renewed_at = first.renew_at();
        assert!(renewed_at > start + Duration::days(59) && renewed_at < start + Duration::days(60), "{renewed_at}");

        let second = authority.issue(&names, renewed_at).unwrap();
        verify(authority.ca_der(), &second, &names[2], renewed_at + Duration::days(80)).unwrap();
        // Nine years on, a new certificate ends with the CA.
        let late = authority.issue(&names, start + Duration::days(3600)).unwrap();
        assert_eq!(late.not_after, start + CA_VALIDITY);
        verify(authority.ca_der(), &late, &names[2], start + Duration::days(3620)).unwrap();
    }

    #[test]
    fn each_authority_is_fresh_and_trusts_only_its_own_certificates() {
        let now = now();
        let first = Authority::generate(NAMESPACE, now).unwrap();
        let second = Authority::generate(NAMESPACE, now).unwrap();
        assert!(first.ca_pem().starts_with("-----BEGIN CERTIFICATE-----\n"), "{}", first.ca_pem());
        assert_ne!(first.ca_pem(), second.ca_pem());
        let cert = first.issue(&dns_names("svc", "ns"), now).unwrap();
        assert!(verify(second.ca_der(), &cert, "svc.ns.svc", now).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn serving_certificate_is_swapped_when_due() {
        let names = dns_names(SERVICE, NAMESPACE);
        let authority = Authority::generate(NAMESPACE, now()).unwrap();
        let first = authority.issue(&names, now()).unwrap();
        let tls = RustlsConfig::from_config(first.server_config().unwrap());
        let served = tls.get_inner();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(keep_renewed(authority, names, first.renew_at(), tls.clone(), shutdown.clone()));

        // Paused time jumps ahead while every task sleeps: 59 days pass in an instant.
        tokio::time::sleep(std::time::Duration::from_secs(59 * 86_400)).await;
        assert!(Arc::ptr_eq(&served, &tls.get_inner()), "renewed too early");
        tokio::time::sleep(std::time::Duration::from_secs(86_400)).await;
        assert!(!Arc::ptr_eq(&served, &tls.get_inner()), "not renewed after 60 days");

        shutdown.cancel();
        task.await.unwrap();
    }
}
