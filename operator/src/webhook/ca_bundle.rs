//! Keeps the `caBundle` of the operator's MutatingWebhookConfiguration equal to the CA the
//! webhook serves with.
//!
//! The chart creates the configuration without a `caBundle` (it cannot know the CA the operator
//! will make), and anything that replaces the object (`kubectl replace`, `helm upgrade --force`)
//! drops it again. So the operator does not patch once: [`keep_current`] checks every interval
//! and patches only when a webhook's bundle differs, which also makes a restarted operator (with
//! a new CA) take over cleanly. The decision is the pure [`patch`]; the loop around it is thin.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch as JsonPatch, PatchOperation, TestOperation};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::Api;
use kube::api::{Patch, PatchParams};
use snafu::{OptionExt, ResultExt, Snafu};
use tokio_util::sync::CancellationToken;

/// Field manager of the operator's writes to the webhook configuration.
const FIELD_MANAGER: &str = "nacos-operator-webhook";

/// Shortest wait between two attempts, used until the first success so the operator becomes
/// ready soon after the API server accepts the patch.
const FIRST_RETRY: Duration = Duration::from_secs(2);

/// Why the caBundle could not be brought up to date.
#[derive(Debug, Snafu)]
pub enum Error {
    /// The configuration could not be read.
    #[snafu(display("cannot read MutatingWebhookConfiguration {name}"))]
    Get {
        /// Its name.
        name: String,
        /// Cause.
        source: kube::Error,
    },
    /// The configuration does not exist: the chart was not installed, or the operator was given
    /// another name.
    #[snafu(display(
        "MutatingWebhookConfiguration {name} not found (install the chart, or set --webhook-configuration to its name)"
    ))]
    NotFound {
        /// Its name.
        name: String,
    },
    /// The API server refused the patch (for example because the webhook list changed since it
    /// was read; the next attempt reads it again).
    #[snafu(display("cannot patch the caBundle of MutatingWebhookConfiguration {name}"))]
    Patch {
        /// Its name.
        name: String,
        /// Cause.
        source: kube::Error,
    },
}

/// The RFC 6902 patch that sets `caBundle` to `ca_pem` on every webhook of `configuration`
/// whose bundle differs, or `None` when all already have it. Each change is preceded by a
/// `test` of the webhook's name at that index, so a list reordered since it was read makes the
/// whole patch fail instead of changing the wrong entry.
pub fn patch(configuration: &MutatingWebhookConfiguration, ca_pem: &str) -> Option<JsonPatch> {
    let wanted = ByteString(ca_pem.as_bytes().to_vec());
    let mut operations = Vec::new();
    for (index, webhook) in configuration.webhooks.iter().flatten().enumerate() {
        if webhook.client_config.ca_bundle.as_ref() == Some(&wanted) {
            continue;
        }
        let index = index.to_string();
        operations.push(PatchOperation::Test(TestOperation {
            path: PointerBuf::from_tokens(["webhooks", index.as_str(), "name"]),
            value: webhook.name.clone().into(),
        }));
        // `add` sets the member whether or not it exists (`replace` fails on a missing one).
        // `ByteString` serializes as the base64 the API expects.
        operations.push(PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["webhooks", index.as_str(), "clientConfig", "caBundle"]),
            value: base64(&wanted),
        }));
    }
    (!operations.is_empty()).then_some(JsonPatch(operations))
}

fn base64(bytes: &ByteString) -> serde_json::Value {
    // Serializing a byte string cannot fail; `Null` would be refused by the API server anyway.
    serde_json::to_value(bytes).unwrap_or_default()
}

/// Reads the configuration and patches it when needed; `true` when it changed something.
pub async fn sync(api: &Api<MutatingWebhookConfiguration>, name: &str, ca_pem: &str) -> Result<bool, Error> {
    let configuration = api.get_opt(name).await.context(GetSnafu { name })?.context(NotFoundSnafu { name })?;
    let Some(json_patch) = patch(&configuration, ca_pem) else {
        return Ok(false);
    };
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() };
    api.patch(name, &params, &Patch::<()>::Json(json_patch)).await.context(PatchSnafu { name })?;
    Ok(true)
}

/// Runs [`sync`] every `interval` until `shutdown`, setting `ready` after the first success:
/// before that the API server does not trust the serving certificate, so the webhook Service
/// must not route to this pod yet.
pub async fn keep_current(
    api: Api<MutatingWebhookConfiguration>,
    name: String,
    ca_pem: String,
    interval: Duration,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    loop {
        let wait = match sync(&api, &name, &ca_pem).await {
            Ok(changed) => {
                if changed {
                    tracing::info!(configuration = %name, "caBundle of the webhook configuration updated");
                }
                ready.store(true, Ordering::Relaxed);
                interval
            }
            Err(error) => {
                tracing::warn!(error = %snafu::Report::from_error(&error), "webhook caBundle not current");
                if ready.load(Ordering::Relaxed) { interval } else { FIRST_RETRY.min(interval) }
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use http::{Method, Request, Response};
    use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, WebhookClientConfig};
    use kube::client::Body;
    use serde_json::json;

    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    /// `CA` in base64, as the API stores it.
    const CA_BASE64: &str = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=";

    fn configuration(bundles: &[Option<&str>]) -> MutatingWebhookConfiguration {
        MutatingWebhookConfiguration {
            webhooks: Some(
                bundles
                    .iter()
                    .enumerate()
                    .map(|(i, bundle)| MutatingWebhook {
                        name: format!("hook{i}.nacos.rs"),
                        client_config: WebhookClientConfig {
                            ca_bundle: bundle.map(|b| ByteString(b.as_bytes().to_vec())),
                            ..WebhookClientConfig::default()
                        },
                        ..MutatingWebhook::default()
                    })
                    .collect(),
            ),
            ..MutatingWebhookConfiguration::default()
        }
    }

    #[test]
    fn empty_and_stale_bundles_are_set_with_a_name_guard() {
        let patch = patch(&configuration(&[None, Some(CA), Some("old")]), CA).unwrap();
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            json!([
                { "op": "test", "path": "/webhooks/0/name", "value": "hook0.nacos.rs" },
                { "op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": CA_BASE64 },
                { "op": "test", "path": "/webhooks/2/name", "value": "hook2.nacos.rs" },
                { "op": "add", "path": "/webhooks/2/clientConfig/caBundle", "value": CA_BASE64 },
            ])
        );
    }

    #[test]
    fn current_bundles_need_no_patch() {
        assert!(patch(&configuration(&[Some(CA), Some(CA)]), CA).is_none());
        assert!(patch(&configuration(&[]), CA).is_none());
    }

    const NAME: &str = "nacos-operator";
    const URI: &str = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/nacos-operator";

    /// An API server answering each expected `(method, uri)` with `(status, body)` in order, and
    /// returning the request bodies it received.
    fn api_server(
        script: Vec<(Method, String, u16, serde_json::Value)>,
    ) -> (Api<MutatingWebhookConfiguration>, tokio::task::JoinHandle<Vec<serde_json::Value>>) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let api = Api::all(kube::Client::new(service, "default"));
        let task = tokio::spawn(async move {
            let mut bodies = Vec::new();
            for (method, uri, status, reply) in script {
                let (request, send) = handle.next_request().await.expect("a request");
                assert_eq!((request.method(), request.uri().to_string()), (&method, uri));
                if method == Method::PATCH {
                    assert_eq!(request.headers()["content-type"], "application/json-patch+json");
                }
                let bytes = request.into_body().collect_bytes().await.unwrap();
                bodies.push(if bytes.is_empty() { json!(null) } else { serde_json::from_slice(&bytes).unwrap() });
                let body = Body::from(serde_json::to_vec(&reply).unwrap());
                send.send_response(Response::builder().status(status).body(body).unwrap());
            }
            bodies
        });
        (api, task)
    }

    fn named(mut configuration: MutatingWebhookConfiguration) -> serde_json::Value {
        configuration.metadata.name = Some(NAME.into());
        serde_json::to_value(configuration).unwrap()
    }

    #[tokio::test]
    async fn sync_reads_then_patches_a_stale_bundle() {
        let patch_uri = format!("{URI}?&fieldManager={FIELD_MANAGER}");
        let (api, server) = api_server(vec![
            (Method::GET, URI.into(), 200, named(configuration(&[Some("old")]))),
            (Method::PATCH, patch_uri, 200, named(configuration(&[Some(CA)]))),
        ]);
        assert!(sync(&api, NAME, CA).await.unwrap());
        let bodies = server.await.unwrap();
        assert_eq!(
            bodies[1],
            json!([
                { "op": "test", "path": "/webhooks/0/name", "value": "hook0.nacos.rs" },
                { "op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": CA_BASE64 },
            ])
        );
    }

    #[tokio::test]
    async fn sync_of_a_current_bundle_only_reads() {
        let (api, server) = api_server(vec![(Method::GET, URI.into(), 200, named(configuration(&[Some(CA)])))]);
        assert!(!sync(&api, NAME, CA).await.unwrap());
        assert_eq!(server.await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn missing_configuration_is_a_clear_error() {
        let status =
            json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404 });
        let (api, server) = api_server(vec![(Method::GET, URI.into(), 404, status)]);
        let error = sync(&api, NAME, CA).await.unwrap_err();
        assert!(matches!(error, Error::NotFound { .. }), "{error}");
        assert!(error.to_string().contains("--webhook-configuration"), "{error}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn keeper_reports_ready_after_the_first_successful_sync() {
        let (api, server) = api_server(vec![
            (Method::GET, URI.into(), 500, json!({ "kind": "Status", "code": 500 })),
            (Method::GET, URI.into(), 200, named(configuration(&[Some(CA)]))),
        ]);
        let ready = Arc::new(AtomicBool::new(false));
        let shutdown = CancellationToken::new();
        let keeper = tokio::spawn(keep_current(
            api,
            NAME.into(),
            CA.into(),
            Duration::from_secs(3600),
            ready.clone(),
            shutdown.clone(),
        ));
        // The failed first attempt leaves it unready; the retry comes after FIRST_RETRY.
        server.await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while !ready.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("ready after the successful sync");
        shutdown.cancel();
        keeper.await.unwrap();
    }

    #[test]
    fn patch_applied_to_the_object_makes_it_current() {
        let before = configuration(&[None, Some("old")]);
        let mut document = serde_json::to_value(&before).unwrap();
        json_patch::patch(&mut document, &patch(&before, CA).unwrap().0).unwrap();
        let after: MutatingWebhookConfiguration = serde_json::from_value(document).unwrap();
        assert!(patch(&after, CA).is_none(), "{after:?}");
    }
}
