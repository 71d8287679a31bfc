use std::time::SystemTime;

use axum::body::{Body, to_bytes};
use axum::http::Request;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionReview;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tower::ServiceExt;

use super::*;
use crate::fixtures;
use crate::webhook::cert;

/// Never answers, like an API server that hangs.
struct Hanging;

impl ClusterLookup for Hanging {
    fn cluster<'a>(&'a self, _: &'a ClusterRef) -> BoxFuture<'a, Result<Option<NacosCluster>, kube::Error>> {
        Box::pin(std::future::pending())
    }

    fn trusted_ca<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, kube::Error>> {
        Box::pin(std::future::pending())
    }
}

/// Answers from a fixed list, or fails every lookup like an unreachable API server; `ca` is
/// the `ca.crt` of the Secret `<cluster>-tls`.
struct Clusters {
    clusters: Option<Vec<NacosCluster>>,
    ca: Option<Vec<u8>>,
}

impl ClusterLookup for Clusters {
    fn cluster<'a>(&'a self, cluster: &'a ClusterRef) -> BoxFuture<'a, Result<Option<NacosCluster>, kube::Error>> {
        let answer = match &self.clusters {
            Some(clusters) => {
                Ok(clusters.iter().find(|c| c.metadata.name.as_deref() == Some(cluster.name.as_str())).cloned())
            }
            None => Err(kube::Error::Service("connection refused".into())),
        };
        Box::pin(async move { answer })
    }

    fn trusted_ca<'a>(
        &'a self,
        namespace: &'a str,
        secret: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, kube::Error>> {
        let answer = (namespace == "registry" && secret == "nacos-tls").then(|| self.ca.clone()).flatten();
        Box::pin(async move { Ok(answer) })
    }
}

fn state(clusters: Option<Vec<NacosCluster>>) -> AppState {
    AppState {
        settings: Arc::new(Settings { environment: fixtures::env(), default_cluster: None }),
        clusters: Arc::new(Clusters { clusters, ca: None }),
        ready: Arc::new(AtomicBool::new(false)),
    }
}

fn review_body() -> String {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "b5f0e4c1-1d1e-4a57-9d43-3c0e2f5a6b7c",
            "kind": { "group": "", "version": "v1", "kind": "Pod" },
            "resource": { "group": "", "version": "v1", "resource": "pods" },
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {},
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": { "name": "orders", "annotations": {
                    "nacos.rs/inject": "true", "nacos.rs/cluster": "registry/nacos",
                    "nacos.rs/service": "orders", "nacos.rs/port": "8080"
                } },
                "spec": { "containers": [{ "name": "orders", "image": "shop/orders:1.4" }] }
            },
            "oldObject": null
        }
    })
    .to_string()
}

async fn call(state: AppState, method: &str, uri: &str, body: impl Into<Body>) -> (StatusCode, Bytes) {
    let request = Request::builder().method(method).uri(uri).body(body.into()).unwrap();
    let response = router(state).oneshot(request).await.unwrap();
    let status = response.status();
    (status, to_bytes(response.into_body(), usize::MAX).await.unwrap())
}

fn response_of(body: &[u8]) -> Value {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body).unwrap();
    assert_eq!(review.types.kind, "AdmissionReview");
    assert_eq!(review.types.api_version, "admission.k8s.io/v1");
    let mut response = serde_json::to_value(review.response.unwrap()).unwrap();
    // kube serializes the patch bytes as a JSON array of numbers (Go decodes that into []byte);
    // turn them back into the JSON patch for the assertions.
    if let Some(bytes) = response.get("patch").cloned() {
        let bytes: Vec<u8> = serde_json::from_value(bytes).unwrap();
        response["patch"] = serde_json::from_slice(&bytes).unwrap();
    }
    response
}

#[tokio::test]
async fn mutate_answers_an_admission_review_with_the_patch() {
    let (status, body) =
        call(state(Some(vec![fixtures::cluster(fixtures::DEFAULTS)])), "POST", "/mutate", review_body()).await;
    assert_eq!(status, StatusCode::OK);
    let response = response_of(&body);
    assert_eq!(response["uid"], "b5f0e4c1-1d1e-4a57-9d43-3c0e2f5a6b7c");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    let ops = response["patch"].as_array().unwrap_or_else(|| panic!("no patch: {response}"));
    let container = ops.iter().find(|op| op["path"] == "/spec/containers/-").expect("the container is added");
    assert_eq!(container["value"]["name"], "nacos-sidecar", "{response}");
}

/// With client-facing TLS the handler reads the CA from the cluster's TLS Secret (in the
/// cluster's namespace) and the sidecar is given it; without that CA the pod is refused.
#[tokio::test]
async fn a_client_facing_tls_cluster_gives_the_sidecar_its_ca() {
    let cluster = fixtures::cluster("tls: { clientFacing: true }");
    let now = OffsetDateTime::from(SystemTime::now());
    let ca =
        crate::pki::Authority::generate("test CA", time::Duration::days(1), now).unwrap().ca_pem().as_bytes().to_vec();
    let with_ca = AppState {
        clusters: Arc::new(Clusters { clusters: Some(vec![cluster.clone()]), ca: Some(ca.clone()) }),
        ..state(None)
    };
    let (status, body) = call(with_ca, "POST", "/mutate", review_body()).await;
    assert_eq!(status, StatusCode::OK);
    let response = response_of(&body);
    assert_eq!(response["allowed"], true, "{response}");
    let ops = response["patch"].as_array().unwrap_or_else(|| panic!("no patch: {response}"));
    let annotation = ops.iter().find(|op| op["path"] == "/metadata/annotations/nacos.rs~1tls-ca");
    assert_eq!(annotation.map(|op| op["value"].clone()), Some(json!(String::from_utf8(ca).unwrap())), "{response}");

    let (status, body) = call(state(Some(vec![cluster])), "POST", "/mutate", review_body()).await;
    assert_eq!(status, StatusCode::OK);
    let response = response_of(&body);
    assert_eq!(response["allowed"], false, "{response}");
    assert!(
        response["status"]["message"].as_str().unwrap().contains("nacos-tls has no usable PEM ca.crt"),
        "{response}"
    );
}

#[tokio::test]
async fn malformed_body_is_a_bad_request() {
    for body in ["", "{", r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#] {
        let (status, text) = call(state(Some(vec![])), "POST", "/mutate", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
        assert!(String::from_utf8_lossy(&text).contains("AdmissionReview"), "{text:?}");
    }
}

#[tokio::test]
async fn denial_is_an_admission_review_with_a_message() {
    let (status, body) = call(state(Some(vec![])), "POST", "/mutate", review_body()).await;
    assert_eq!(status, StatusCode::OK);
    let response = response_of(&body);
    assert_eq!(response["allowed"], false);
    assert!(response["status"]["message"].as_str().unwrap().contains("not found"), "{response}");
}

#[tokio::test]
async fn unreadable_cluster_is_unavailable_so_the_failure_policy_decides() {
    let (status, text) = call(state(None), "POST", "/mutate", review_body()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&text).contains("registry/nacos"), "{text:?}");
}

#[tokio::test(start_paused = true)]
async fn hanging_cluster_lookup_is_unavailable_before_the_api_server_gives_up() {
    let state = AppState { clusters: Arc::new(Hanging), ..state(None) };
    let started = tokio::time::Instant::now();
    let (status, text) = call(state, "POST", "/mutate", review_body()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&text).contains("registry/nacos"), "{text:?}");
    assert_eq!(started.elapsed(), LOOKUP_TIMEOUT);
}

#[tokio::test]
async fn ready_only_once_the_ca_bundle_is_published() {
    let state = state(Some(vec![]));
    assert_eq!(call(state.clone(), "GET", "/readyz", Body::empty()).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(call(state.clone(), "GET", "/livez", Body::empty()).await.0, StatusCode::OK);
    state.ready.store(true, Ordering::Relaxed);
    assert_eq!(call(state, "GET", "/readyz", Body::empty()).await.0, StatusCode::OK);
}

/// The real server over TLS on loopback, called by a client that trusts only the generated CA
/// and expects the Service's name, as the API server does.
#[tokio::test]
async fn serves_over_tls_with_the_generated_certificate() {
    let now = OffsetDateTime::from(SystemTime::now());
    let authority = cert::authority("nacos-system", now).unwrap();
    let serving = cert::issue(&authority, &cert::dns_names("nacos-operator-webhook", "nacos-system"), now).unwrap();
    let handle = Handle::new();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(run(
        "127.0.0.1:0".parse().unwrap(),
        RustlsConfig::from_config(cert::server_config(&serving).unwrap()),
        router(state(Some(vec![fixtures::cluster(fixtures::DEFAULTS)]))),
        handle.clone(),
        shutdown.clone(),
    ));
    let address = tokio::time::timeout(Duration::from_secs(5), handle.listening()).await.unwrap().unwrap();

    let mut roots = RootCertStore::empty();
    roots.add(authority.ca_der().clone()).unwrap();
    let client = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(client));
    let name = ServerName::try_from("nacos-operator-webhook.nacos-system.svc").unwrap();
    let tcp = TcpStream::connect(address).await.unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let body = review_body();
    let request = format!(
        "POST /mutate HTTP/1.1\r\nhost: nacos-operator-webhook.nacos-system.svc\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // The server closes after the response (`connection: close`); a TLS close_notify may be
    // missing, which is fine for this check.
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains(r#""patchType":"JSONPatch""#), "{answer}");

    // A client expecting another name refuses the certificate.
    let tcp = TcpStream::connect(address).await.unwrap();
    let other = ServerName::try_from("nacos-operator-webhook.default.svc").unwrap();
    assert!(connector.connect(other, tcp).await.is_err());

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), server).await.unwrap().unwrap().unwrap();
}
