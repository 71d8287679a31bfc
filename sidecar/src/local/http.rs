//! The pod's Nacos HTTP Open API (v1/v2) on localhost: every request is passed to the first
//! registry member that answers, as it came; instance lists and config reads are remembered in
//! the failover cache and answered from it while no member answers. A request that cannot be
//! answered gets a clear 503 after a bounded wait, never a hang.
//!
//! HTTP registrations stay what they are in Nacos: v1 clients with heartbeats, passed through
//! (the SDK's beats keep them); apps that want the sidecar to own their instance use the gRPC
//! channel or the declared instance. Config requests carry the pod's labels
//! ([`LABELS_HEADER`]) unless the app sent its own, so label gray rules see the pod over HTTP
//! as they do over the sidecar's gRPC connection.

use std::collections::BTreeMap;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use registry_proto::contract::config::LABELS_HEADER;
use registry_proto::http::{Params, v1_error};
use registry_proto::model::ServiceKey;
use registry_proto::wire::ServiceInfo;

use crate::cache::{Cache, CachedConfig};
use crate::metrics::Stats;

/// Bound on one upstream HTTP request (a member that hangs is skipped within it).
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request body passed on (Nacos' default config size limit is 100 KiB).
const MAX_BODY: usize = 10 * 1024 * 1024;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct HttpApi {
    /// Base URLs of the members (`http://host:port`, or `https://`).
    members: Arc<Vec<String>>,
    client: reqwest::Client,
    cache: Arc<Cache>,
    stats: Arc<Stats>,
    /// The pod's labels as a [`LABELS_HEADER`] value (a JSON object); `None` without labels
    /// or when they cannot be a header value.
    labels: Option<header::HeaderValue>,
}

/// A read the cache can answer.
enum Cached {
    Instances(ServiceKey),
    Config((String, String, String)),
}

impl HttpApi {
    /// The API over the registry HTTP addresses `members` (`host:port`), over HTTPS with `tls`.
    pub fn new(
        members: Vec<String>,
        labels: &BTreeMap<String, String>,
        tls: Option<Arc<rustls::ClientConfig>>,
        cache: Arc<Cache>,
        stats: Arc<Stats>,
    ) -> Self {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let builder = reqwest::Client::builder().timeout(UPSTREAM_TIMEOUT);
        let builder = match tls {
            Some(config) => builder.use_preconfigured_tls(rustls::ClientConfig::clone(&config)),
            None => builder,
        };
        let client = builder.build().unwrap_or_else(|e| {
            tracing::error!(error = %e, "no HTTP client for the pass-through");
            reqwest::Client::default()
        });
        let members = members.into_iter().map(|m| format!("{scheme}://{m}")).collect();
        let labels = (!labels.is_empty())
            .then(|| serde_json::to_string(labels).ok())
            .flatten()
            .and_then(|json| header::HeaderValue::from_str(&json).ok());
        Self { members: Arc::new(members), client, cache, stats, labels }
    }

    /// The routes: everything goes through one pass-through handler.
    pub fn router(self) -> Router {
        Router::new().fallback(pass).with_state(self)
    }

    /// Sends the request to each member in turn until one answers.
    async fn upstream(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Option<(StatusCode, HeaderMap, Bytes)> {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        for member in self.members.iter() {
            let mut request = self.client.request(method.clone(), format!("{member}{path}")).body(body.clone());
            for name in [header::CONTENT_TYPE, header::USER_AGENT, header::ACCEPT] {
                if let Some(value) = headers.get(&name) {
                    request = request.header(name, value.clone());
                }
            }
            for (name, value) in headers {
                // Nacos request headers that carry meaning (tags, gray labels, long-poll timeouts).
                let n = name.as_str();
                if n.starts_with("long-pulling")
                    || n.starts_with("config")
                    || n == "vipserver-tag"
                    || n == "client-version"
                {
                    request = request.header(name.clone(), value.clone());
                }
            }
            let config = path.starts_with("/nacos/v1/cs/") || path.starts_with("/nacos/v2/cs/");
            if let Some(labels) = self.labels.as_ref().filter(|_| config && !headers.contains_key(LABELS_HEADER)) {
                request = request.header(LABELS_HEADER, labels.clone());
            }
            match request.send().await {
                Ok(response) => {
                    let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                    let mut out = HeaderMap::new();
                    let content_type = response.headers().get(reqwest::header::CONTENT_TYPE);
                    if let Some(ct) = content_type.and_then(|v| v.to_str().ok()).and_then(|ct| ct.parse().ok()) {
                        out.insert(header::CONTENT_TYPE, ct);
                    }
                    match response.bytes().await {
                        Ok(body) => return Some((status, out, body)),
                        Err(e) => tracing::debug!(%member, error = %e, "member's answer broke off"),
                    }
                }
                Err(e) => tracing::debug!(%member, error = %e, "member did not answer"),
            }
            self.stats.upstream_failures.fetch_add(1, Ordering::Relaxed);
        }
        None
    }
}

/// Which cached read a request is, if any (v1 and v2 instance lists, v1 and v2 config reads).
fn cached_read(method: &Method, uri: &Uri, params: &Params) -> Option<Cached> {
    if method != Method::GET {
        return None;
    }
    match uri.path() {
        "/nacos/v1/ns/instance/list" | "/nacos/v2/ns/instance/list"
            if params.opt_any(&["clusters", "clusterName"]).is_none_or(str::is_empty)
                && params.opt("healthyOnly").is_none_or(|h| h == "false") =>
        {
            params.service_key().ok().map(Cached::Instances)
        }
        "/nacos/v1/cs/configs" | "/nacos/v2/cs/config" if params.opt("show").is_none() => {
            let tenant = params.opt_any(&["tenant", "namespaceId"]).unwrap_or_default().to_owned();
            let group = params.opt("group")?.to_owned();
            Some(Cached::Config((tenant, group, params.opt("dataId")?.to_owned())))
        }
        _ => None,
    }
}

fn v2(uri: &Uri) -> bool {
    uri.path().starts_with("/nacos/v2/")
}

async fn pass(State(api): State<HttpApi>, request: Request) -> Response {
    api.stats.local_requests.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return v1_error(StatusCode::PAYLOAD_TOO_LARGE, "request body is larger than the configured limit".into());
    };
    let query = parts.uri.query().unwrap_or_default();
    let form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_none_or(|ct| ct.as_bytes().starts_with(b"application/x-www-form-urlencoded"));
    let pairs = Params::decode(query.as_bytes(), if form { &body } else { &[] });
    let read = pairs.ok().and_then(|params| cached_read(&parts.method, &parts.uri, &params));
    match api.upstream(&parts.method, &parts.uri, &parts.headers, &body).await {
        Some((status, headers, answer)) => {
            if status == StatusCode::OK {
                remember(&api.cache, read.as_ref(), &parts.uri, &answer);
            }
            (status, headers, Body::from(answer)).into_response()
        }
        None => match read.as_ref().and_then(|r| from_cache(&api.cache, r, &parts.uri)) {
            Some(answer) => {
                api.stats.cache_answers.fetch_add(1, Ordering::Relaxed);
                answer
            }
            None => v1_error(StatusCode::SERVICE_UNAVAILABLE, "registry unreachable and nothing cached".into()),
        },
    }
}

/// Keeps a successful read in the cache.
fn remember(cache: &Cache, read: Option<&Cached>, uri: &Uri, answer: &Bytes) {
    match read {
        Some(Cached::Instances(key)) => {
            let json: Option<serde_json::Value> = serde_json::from_slice(answer).ok();
            let info = if v2(uri) { json.and_then(|j| j.get("data").cloned()) } else { json };
            if let Some(Ok(mut info)) = info.map(serde_json::from_value::<ServiceInfo>) {
                // The cache holds the gRPC (bare name) form; HTTP answers carry the grouped one.
                info.name.clone_from(&key.service);
                cache.put_service(key, &info);
            }
        }
        Some(Cached::Config(id)) => {
            let content = if v2(uri) {
                let json: Option<serde_json::Value> = serde_json::from_slice(answer).ok();
                json.and_then(|j| j.get("data").and_then(|d| d.as_str().map(str::to_owned)))
            } else {
                String::from_utf8(answer.to_vec()).ok()
            };
            if let Some(content) = content {
                let md5 = registry_proto::model::md5_hex(&content);
                cache.put_config(id, &CachedConfig { content, md5 });
            }
        }
        None => {}
    }
}

/// The answer a member would have given, from the cache.
fn from_cache(cache: &Cache, read: &Cached, uri: &Uri) -> Option<Response> {
    match read {
        Cached::Instances(key) => {
            let mut info = cache.service(key)?;
            // HTTP answers carry the grouped name.
            info.name = key.grouped_name();
            let body = if v2(uri) {
                serde_json::json!({ "code": 0, "message": "success", "data": info })
            } else {
                serde_json::to_value(info).ok()?
            };
            Some(axum::Json(body).into_response())
        }
        Cached::Config(id) => {
            let config = cache.config(id)?;
            Some(if v2(uri) {
                axum::Json(serde_json::json!({ "code": 0, "message": "success", "data": config.content }))
                    .into_response()
            } else {
                ([(header::CONTENT_TYPE, "text/plain;charset=UTF-8")], config.content).into_response()
            })
        }
    }
}
