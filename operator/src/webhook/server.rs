//! The HTTPS side: an axum router with `/mutate` (the admission endpoint), `/livez` and
//! `/readyz`, served with rustls. The `/mutate` handler is a thin shell over
//! [`super::inject`]: parse, decide, look the `NacosCluster` up when needed, answer.
//!
//! Status codes say who should act: 400 for a body that is not an AdmissionReview (a caller
//! bug), 503 when the `NacosCluster` cannot be read (transient; the configuration's
//! `failurePolicy` decides whether the pod is admitted without the sidecar), 200 with an
//! AdmissionReview otherwise, allowed or denied.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use futures_util::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use super::inject::{self, ClusterRef, Decision, Settings};
use crate::controller::tls::CA_KEY;
use crate::crd::NacosCluster;

/// How long the lookups may take (the `NacosCluster`, then its CA Secret when its SDK ports use
/// TLS): under the chart's default `timeoutSeconds` (5), so a slow API server gets a clear 503
/// from us rather than a timeout on its side.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(4);

/// How long in-flight admission requests may finish after shutdown is asked for; the API server
/// gives up on a webhook after its `timeoutSeconds` (at most 30 s) anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Where the webhook finds `NacosCluster`s and their CA. A trait so handler tests run without
/// an API server; the operator passes its [`Client`].
pub trait ClusterLookup: Send + Sync {
    /// The cluster, `None` when it does not exist.
    fn cluster<'a>(&'a self, cluster: &'a ClusterRef) -> BoxFuture<'a, Result<Option<NacosCluster>, kube::Error>>;

    /// The `ca.crt` of Secret `secret` in `namespace`, `None` when the Secret or the key is
    /// absent.
    fn trusted_ca<'a>(
        &'a self,
        namespace: &'a str,
        secret: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, kube::Error>>;
}

impl ClusterLookup for Client {
    fn cluster<'a>(&'a self, cluster: &'a ClusterRef) -> BoxFuture<'a, Result<Option<NacosCluster>, kube::Error>> {
        Box::pin(async move {
            Api::<NacosCluster>::namespaced(self.clone(), &cluster.namespace).get_opt(&cluster.name).await
        })
    }

    fn trusted_ca<'a>(
        &'a self,
        namespace: &'a str,
        secret: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, kube::Error>> {
        Box::pin(async move {
            let secret = Api::<Secret>::namespaced(self.clone(), namespace).get_opt(secret).await?;
            Ok(secret.and_then(|secret| secret.data?.remove(CA_KEY)).map(|ca| ca.0))
        })
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Operator environment and default cluster.
    pub settings: Arc<Settings>,
    /// `NacosCluster` source.
    pub clusters: Arc<dyn ClusterLookup>,
    /// Set once the API server trusts this process's CA (the caBundle was published): until
    /// then admission calls would fail TLS verification, so the pod must not be ready.
    pub ready: Arc<AtomicBool>,
}

/// The webhook's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::Relaxed) {
        "ok".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caBundle not published yet").into_response()
    }
}

async fn mutate(State(state): State<AppState>, body: Bytes) -> Response {
    let request = match inject::parse_review(&body) {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(%error, "refused a malformed admission request");
            return (StatusCode::BAD_REQUEST, error.to_string()).into_response();
        }
    };
    let response = match inject::decide(&request, &state.settings) {
        Decision::Respond(response) => *response,
        Decision::Lookup(injection) => {
            match tokio::time::timeout(LOOKUP_TIMEOUT, look_up(&state, &injection.cluster)).await {
                Ok(Ok((cluster, ca))) => {
                    inject::complete(&request, &injection, cluster.as_ref(), ca.as_deref(), &state.settings)
                }
                Ok(Err(error)) => return unavailable(&injection.cluster, &error),
                Err(elapsed) => return unavailable(&injection.cluster, &elapsed),
            }
        }
    };
    if response.allowed && response.patch.is_some() {
        tracing::info!(namespace = ?request.namespace, name = %request.name, "injected the nacos sidecar");
    } else if !response.allowed {
        tracing::info!(namespace = ?request.namespace, name = %request.name, reason = %response.result.message, "denied a pod");
    }
    axum::Json(response.into_review()).into_response()
}

/// The cluster `reference` names and, when its SDK ports use TLS, the CA its sidecars trust.
async fn look_up(
    state: &AppState,
    reference: &ClusterRef,
) -> Result<(Option<NacosCluster>, Option<Vec<u8>>), kube::Error> {
    let cluster = state.clusters.cluster(reference).await?;
    let ca = match cluster.as_ref().and_then(|cluster| inject::trust_secret(cluster, &state.settings)) {
        Some(secret) => state.clusters.trusted_ca(&reference.namespace, &secret).await?,
        None => None,
    };
    Ok((cluster, ca))
}

/// 503: the `NacosCluster` could not be read, a transient API server problem; the
/// configuration's `failurePolicy` decides what happens to the pod.
fn unavailable(cluster: &ClusterRef, error: &dyn std::fmt::Display) -> Response {
    tracing::warn!(%cluster, %error, "cannot read the NacosCluster for injection");
    (StatusCode::SERVICE_UNAVAILABLE, format!("cannot read NacosCluster {cluster}: {error}")).into_response()
}

/// Serves `router` over TLS on `listen` until `shutdown`, then lets in-flight requests finish
/// for a short grace. `handle` reports the bound address (tests bind port 0); `tls` may be
/// reloaded meanwhile (certificate renewal).
pub async fn run(
    listen: SocketAddr,
    tls: RustlsConfig,
    router: Router,
    handle: Handle<SocketAddr>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        stopper.graceful_shutdown(Some(SHUTDOWN_GRACE));
    });
    axum_server::bind_rustls(listen, tls).handle(handle).serve(router.into_make_service()).await
}

#[cfg(test)]
mod tests;
