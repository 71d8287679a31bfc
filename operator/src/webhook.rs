//! The sidecar-injection admission webhook: pods annotated `nacos.rs/inject: "true"` get the
//! `nacos-sidecar` container, configured to register them with a `NacosCluster`.
//!
//! ```text
//!  API server ──HTTPS POST /mutate──► server (axum, rustls) ──► inject::decide (pure)
//!      ▲                                        │                   │ needs the cluster
//!      │ trusts caBundle                        │◄── GET NacosCluster (kube)
//!      │                                        └─► inject::complete (pure) ─► JSON patch
//!  ca_bundle::keep_current ◄── cert::Authority (self-signed CA, in memory)
//!                               └─► serving certificate, renewed by cert::keep_renewed
//! ```
//!
//! - [`inject`]: the decision and the patch, pure; the pod annotations are its interface.
//! - [`cert`]: the CA made at start-up and the serving certificates it signs and renews.
//! - [`ca_bundle`]: publishes the CA in the MutatingWebhookConfiguration and keeps it there.
//! - [`server`]: the HTTPS router and its thin handlers.
//!
//! [`serve`] ties them together; `nacos-operator run` calls it next to the controller.

pub mod ca_bundle;
pub mod cert;
pub mod inject;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::{Api, Client};
use snafu::{ResultExt, Snafu};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use self::inject::{ClusterRef, Settings};
use self::server::AppState;
use crate::controller::OperatorEnvironment;

/// Settings of the webhook, as flags or environment variables of `nacos-operator run` (the
/// chart sets the environment variables).
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookConfig {
    /// Address the webhook serves HTTPS on.
    #[arg(long = "webhook-listen", env = "NACOS_OPERATOR_WEBHOOK_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,

    /// Name of the Service in front of the webhook; the serving certificate is made for
    /// `<service>.<namespace>.svc`.
    #[arg(long = "webhook-service", env = "NACOS_OPERATOR_WEBHOOK_SERVICE", default_value = "nacos-operator-webhook")]
    pub service: String,

    /// Namespace of that Service, the operator's own (the chart passes it from the downward API).
    #[arg(long = "webhook-namespace", env = "NACOS_OPERATOR_NAMESPACE", default_value = "default")]
    pub namespace: String,

    /// Name of the MutatingWebhookConfiguration whose caBundle the operator keeps current.
    #[arg(
        long = "webhook-configuration",
        env = "NACOS_OPERATOR_WEBHOOK_CONFIGURATION",
        default_value = "nacos-operator"
    )]
    pub configuration: String,

    /// `NAMESPACE/NAME` of the NacosCluster used for pods without a `nacos.rs/cluster`
    /// annotation; without it such pods are refused.
    #[arg(long = "webhook-default-cluster", env = "NACOS_OPERATOR_WEBHOOK_DEFAULT_CLUSTER", value_parser = parse_default_cluster)]
    pub default_cluster: Option<ClusterRef>,

    /// Seconds between checks of the caBundle (replacing the configuration object drops it; the
    /// next check restores it).
    #[arg(long = "webhook-ca-bundle-check-seconds", env = "NACOS_OPERATOR_WEBHOOK_CA_BUNDLE_CHECK_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub ca_bundle_check_seconds: u64,
}

fn parse_default_cluster(value: &str) -> Result<ClusterRef, String> {
    match value.split_once('/') {
        Some((namespace, _)) => ClusterRef::parse(value, namespace),
        None => None,
    }
    .ok_or_else(|| format!("{value:?} is not NAMESPACE/NAME"))
}

/// Why the webhook stopped.
#[derive(Debug, Snafu)]
pub enum Error {
    /// The certificate could not be made.
    #[snafu(display("cannot make the webhook's certificate"))]
    Certificate {
        /// Cause.
        source: cert::Error,
    },
    /// The HTTPS server failed (typically: the listen address is taken).
    #[snafu(display("webhook server on {listen} failed"))]
    Serve {
        /// The address.
        listen: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// Runs the webhook until `shutdown` is cancelled: makes the CA and serving certificate, keeps
/// the caBundle current and the certificate renewed in the background, and serves admission
/// requests over HTTPS. Returns `Ok` after a requested shutdown, an error when the certificate
/// could not be made or the server could not start or failed (e.g. the address is taken).
pub async fn serve(
    config: WebhookConfig,
    environment: OperatorEnvironment,
    client: Client,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let now = OffsetDateTime::now_utc();
    let authority = cert::authority(&config.namespace, now).context(CertificateSnafu)?;
    let names = cert::dns_names(&config.service, &config.namespace);
    let serving = cert::issue(&authority, &names, now).context(CertificateSnafu)?;
    let tls = RustlsConfig::from_config(cert::server_config(&serving).context(CertificateSnafu)?);
    let ca_pem = authority.ca_pem().to_owned();
    let ready = Arc::new(AtomicBool::new(false));
    let state = AppState {
        settings: Arc::new(Settings { environment, default_cluster: config.default_cluster.clone() }),
        clusters: Arc::new(client.clone()),
        ready: ready.clone(),
    };

    let helpers = shutdown.child_token();
    let bundle = tokio::spawn(ca_bundle::keep_current(
        Api::<MutatingWebhookConfiguration>::all(client),
        config.configuration.clone(),
        ca_pem,
        Duration::from_secs(config.ca_bundle_check_seconds),
        ready,
        helpers.clone(),
    ));
    let renewal = tokio::spawn(cert::keep_renewed(authority, names, serving.renew_at(), tls.clone(), helpers.clone()));

    let handle = Handle::new();
    let listening = handle.clone();
    tokio::spawn(async move {
        if let Some(address) = listening.listening().await {
            tracing::info!("listening on https {address} (admission webhook)");
        }
    });
    let result = server::run(config.listen, tls, server::router(state), handle, shutdown).await;
    helpers.cancel();
    // Both helpers only sleep or make one request when cancelled; how they ended (a panic at
    // worst, already reported by the runtime) does not change the server's result.
    let _ = tokio::join!(bundle, renewal);
    result.context(ServeSnafu { listen: config.listen })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        webhook: WebhookConfig,
    }

    #[test]
    fn flags_default_to_what_the_chart_expects() {
        let config = Cli::try_parse_from(["nacos-operator"]).unwrap().webhook;
        assert_eq!(config.listen, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(config.service, "nacos-operator-webhook");
        assert_eq!(config.configuration, "nacos-operator");
        assert_eq!(config.default_cluster, None);
        assert_eq!(config.ca_bundle_check_seconds, 60);
    }

    /// The chart configures the webhook through these variables only; a renamed flag must not
    /// leave the chart setting a variable nobody reads.
    #[test]
    fn chart_sets_every_webhook_variable_and_no_unknown_one() {
        use clap::CommandFactory;
        let mut flags: Vec<String> = Cli::command()
            .get_arguments()
            .filter_map(|arg| arg.get_env().map(|env| env.to_string_lossy().into_owned()))
            .collect();
        flags.sort();
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/nacos-operator/templates/deployment.yaml");
        let template = std::fs::read_to_string(&path).unwrap();
        let mut chart: Vec<String> = template
            .lines()
            .filter_map(|line| line.trim().strip_prefix("- name: "))
            .filter(|name| name.starts_with("NACOS_OPERATOR_WEBHOOK_") || *name == "NACOS_OPERATOR_NAMESPACE")
            .map(str::to_owned)
            .collect();
        chart.sort();
        assert_eq!(chart, flags);
    }

    #[test]
    fn default_cluster_must_name_its_namespace() {
        let parse = |value: &str| Cli::try_parse_from(["nacos-operator", "--webhook-default-cluster", value]);
        let config = parse("registry/nacos").unwrap().webhook;
        assert_eq!(config.default_cluster, Some(ClusterRef { namespace: "registry".into(), name: "nacos".into() }));
        for bad in ["nacos", "registry/", "Registry/nacos"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(Cli::try_parse_from(["nacos-operator", "--webhook-ca-bundle-check-seconds", "0"]).is_err());
    }
}
