//! The webhook's own TLS identity: a self-signed CA ([`Authority`]) and the serving certificates
//! it signs for the webhook Service's DNS names. The API server only accepts HTTPS webhooks and
//! checks the certificate against the `caBundle` of the MutatingWebhookConfiguration, so the
//! operator makes both at start-up and publishes the CA (see [`super::ca_bundle`]); nothing has
//! to be provisioned beforehand (no cert-manager, no Secret).
//!
//! The CA lives as long as the process (valid [`CA_VALIDITY`]), so the published `caBundle`
//! never has to change while it runs; the serving certificate is short-lived ([`SERVING_VALIDITY`])
//! and [`keep_renewed`] swaps in a new one, signed by the same CA, when two thirds of its life
//! have passed. The CA and certificates come from [`crate::pki`]; here they never leave memory:
//! a restarted operator makes a new CA and re-publishes it before it reports ready.

use std::sync::Arc;

use axum_server::tls_rustls::RustlsConfig;
use rustls::ServerConfig;
use rustls::pki_types::PrivateKeyDer;
use snafu::{ResultExt, Snafu};
use time::{Duration, OffsetDateTime};
use tokio_util::sync::CancellationToken;

use crate::pki::{self, Issued, Usage};

pub use crate::pki::Authority;

/// Validity of the CA: longer than any operator process is expected to run.
pub const CA_VALIDITY: Duration = Duration::days(3650);

/// Validity of a serving certificate; [`keep_renewed`] replaces it after two thirds.
pub const SERVING_VALIDITY: Duration = Duration::days(90);

/// Wait before retrying a renewal that failed (it only fails if key generation does).
const RENEWAL_RETRY: Duration = Duration::hours(1);

/// Why a certificate could not be made or loaded.
#[derive(Debug, Snafu)]
pub enum Error {
    /// The CA or the certificate could not be made.
    #[snafu(display("cannot generate the webhook certificate"))]
    Generate {
        /// Cause.
        source: pki::Error,
    },
    /// rustls refused the generated key pair.
    #[snafu(display("cannot build the webhook's TLS configuration"))]
    Tls {
        /// Cause.
        source: rustls::Error,
    },
}

/// The DNS names the API server may use for the webhook Service: it calls
/// `<service>.<namespace>.svc`; the shorter forms serve in-namespace callers and debugging.
pub fn dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![service.to_owned(), format!("{service}.{namespace}"), format!("{service}.{namespace}.svc")]
}

/// A fresh CA for the webhook of the operator in `namespace`, valid from `now` for
/// [`CA_VALIDITY`].
pub fn authority(namespace: &str, now: OffsetDateTime) -> Result<Authority, Error> {
    Authority::generate(&format!("nacos-operator webhook CA ({namespace})"), CA_VALIDITY, now).context(GenerateSnafu)
}

/// A new serving certificate for `names`, valid from `now` for [`SERVING_VALIDITY`] but never
/// beyond the CA.
pub fn issue(authority: &Authority, names: &[String], now: OffsetDateTime) -> Result<Issued, Error> {
    authority.issue(names, Usage::Server, SERVING_VALIDITY, now).context(GenerateSnafu)
}

/// The rustls server configuration presenting `cert`.
pub fn server_config(cert: &Issued) -> Result<Arc<ServerConfig>, Error> {
    let mut config = ServerConfig::builder_with_provider(pki::provider())
        .with_safe_default_protocol_versions()
        .context(TlsSnafu)?
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert_der.clone()], PrivateKeyDer::Pkcs8(cert.key_der()))
        .context(TlsSnafu)?;
    // The API server speaks HTTP/1.1 to webhooks when offered nothing else.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Replaces the certificate `tls` serves with a new one from `authority` at each
/// [`Issued::renew_at`] (the first one at `renew_at`), until `shutdown`. The CA does
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
        match issue(&authority, &names, now).and_then(|cert| Ok((cert.renew_at(), server_config(&cert)?))) {
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

    use rustls::pki_types::CertificateDer;

    use super::*;

    const SERVICE: &str = "nacos-operator-webhook";
    const NAMESPACE: &str = "nacos-system";

    fn now() -> OffsetDateTime {
        OffsetDateTime::from(SystemTime::now())
    }

    /// Verifies `cert` the way a TLS client trusting only `ca` would: chain, key usage, SAN and
    /// validity at `at`.
    fn verify(ca: &CertificateDer<'static>, cert: &Issued, name: &str, at: OffsetDateTime) -> Result<(), String> {
        if pki::trusts(ca, &cert.cert_der, name, at) { Ok(()) } else { Err(format!("{name} is not trusted at {at}")) }
    }

    #[test]
    fn serving_certificate_is_trusted_for_the_service_names_while_valid() {
        let now = now();
        let authority = authority(NAMESPACE, now).unwrap();
        let cert = issue(&authority, &dns_names(SERVICE, NAMESPACE), now).unwrap();
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
        assert!(server_config(&cert).is_ok());
    }

    #[test]
    fn renewed_certificates_are_trusted_by_the_same_ca_and_never_outlive_it() {
        let start = now();
        let authority = authority(NAMESPACE, start).unwrap();
        let names = dns_names(SERVICE, NAMESPACE);
        let first = issue(&authority, &names, start).unwrap();
        let renewed_at = first.renew_at();
        assert!(renewed_at > start + Duration::days(59) && renewed_at < start + Duration::days(60), "{renewed_at}");

        let second = issue(&authority, &names, renewed_at).unwrap();
        verify(authority.ca_der(), &second, &names[2], renewed_at + Duration::days(80)).unwrap();
        // Nine years on, a new certificate ends with the CA.
        let late = issue(&authority, &names, start + Duration::days(3600)).unwrap();
        assert_eq!(late.not_after, start + CA_VALIDITY);
        verify(authority.ca_der(), &late, &names[2], start + Duration::days(3620)).unwrap();
    }

    #[test]
    fn each_authority_is_fresh_and_trusts_only_its_own_certificates() {
        let now = now();
        let first = authority(NAMESPACE, now).unwrap();
        let second = authority(NAMESPACE, now).unwrap();
        assert!(first.ca_pem().starts_with("-----BEGIN CERTIFICATE-----\n"), "{}", first.ca_pem());
        assert_ne!(first.ca_pem(), second.ca_pem());
        let cert = issue(&first, &dns_names("svc", "ns"), now).unwrap();
        assert!(verify(second.ca_der(), &cert, "svc.ns.svc", now).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn serving_certificate_is_swapped_when_due() {
        let names = dns_names(SERVICE, NAMESPACE);
        let authority = authority(NAMESPACE, now()).unwrap();
        let first = issue(&authority, &names, now()).unwrap();
        let tls = RustlsConfig::from_config(server_config(&first).unwrap());
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
