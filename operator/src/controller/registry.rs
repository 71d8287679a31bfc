//! The registry's membership admin API, as the operator uses it: read a member's Raft view, add a
//! learner, promote it, remove a member.
//!
//! Behind the [`RegistryAdmin`] trait so reconcile tests can script a fake registry; the real
//! implementation, [`HttpRegistry`], speaks HTTP to the members' HTTP port (members are
//! reached inside the cluster by their peer DNS names, see [`member_address`]), HTTPS trusting
//! the cluster's CA when that port serves TLS (`spec.tls.clientFacing`).
//!
//! Changes must be sent to the leader; a member that is not the leader answers 409 with the
//! leader's id ([`Error::NotLeader`]), any other 409 is a refusal the caller must not retry at
//! once ([`Error::Refused`]: a lagging learner, a removal that would lose quorum).
//!
//! With auth on, these routes need an administrator; the operator authenticates as a member,
//! sending the cluster's [`MemberIdentity`] header on every call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use registry_proto::contract::tls::ALPN_HTTP1;
use registry_proto::tls;
use reqwest::header::{HeaderName, HeaderValue};
use rustls::ClientConfig;
use serde::Deserialize;
use snafu::{ResultExt, Snafu};

use super::validate::ValidatedCluster;
use crate::crd::MemberRole;

/// One member in a Raft view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftMember {
    /// Node id: the StatefulSet ordinal + 1.
    pub id: u64,
    /// The member's cluster address as the registry knows it (`host:cluster port`).
    pub address: String,
    /// Its role.
    pub role: MemberRole,
}

impl RaftMember {
    /// Whether the member votes (leader, follower or candidate), as opposed to a learner.
    pub fn is_voter(&self) -> bool {
        self.role != MemberRole::Learner
    }
}

/// What one member reports about the Raft group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftView {
    /// The current leader's node id, if the member knows one.
    pub leader: Option<u64>,
    /// The members of the current membership, voters and learners.
    pub members: Vec<RaftMember>,
}

/// The member identity header of an auth-enabled cluster (`NACOS_AUTH_IDENTITY_KEY`:
/// `NACOS_AUTH_IDENTITY_VALUE`, read from its auth Secret): the registry treats a request
/// carrying it as an administrator's. Its `Debug` does not show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct MemberIdentity {
    name: HeaderName,
    value: HeaderValue,
}

impl MemberIdentity {
    /// The pair as stored in the Secret; `None` when it cannot be an HTTP header (a key that is
    /// no header name, a value with control characters such as a trailing newline).
    pub fn new(key: &[u8], value: &[u8]) -> Option<Self> {
        let name = HeaderName::from_bytes(key).ok()?;
        let mut value = HeaderValue::from_bytes(value).ok()?;
        value.set_sensitive(true);
        Some(Self { name, value })
    }

    /// The header as a name and a text value, for gRPC metadata; `None` when the value is not
    /// visible ASCII.
    pub fn as_pair(&self) -> Option<(String, String)> {
        Some((self.name.as_str().to_owned(), self.value.to_str().ok()?.to_owned()))
    }

    /// Whether the header carries `value`.
    #[cfg(test)]
    pub(crate) fn is(&self, key: &str, value: &str) -> bool {
        self.name == key && self.value == value
    }
}

impl std::fmt::Debug for MemberIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberIdentity").field("name", &self.name).field("value", &"<redacted>").finish()
    }
}

/// Why a call to the registry failed.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    /// The HTTP client could not be built.
    #[snafu(display("cannot build the HTTP client for the registry admin API"))]
    BuildClient {
        /// Cause.
        source: reqwest::Error,
    },
    /// The cluster's CA cannot be trusted (not PEM certificates, or refused by rustls).
    #[snafu(display("cannot trust the cluster's CA"))]
    Trust {
        /// Cause.
        source: registry_proto::tls::TlsError,
    },
    /// The member did not answer (not started yet, not resolvable, timed out).
    #[snafu(display("registry member {address} did not answer"))]
    Unreachable {
        /// The member's HTTP address.
        address: String,
        /// Cause.
        source: reqwest::Error,
    },
    /// The member is not the leader; changes go to `leader_id`.
    #[snafu(display("registry member {address} is not the leader (leader: {leader_id:?})"))]
    NotLeader {
        /// The member asked.
        address: String,
        /// The leader it knows of, if any.
        leader_id: Option<u64>,
    },
    /// The leader refused the change (lagging learner, quorum at risk, already done).
    #[snafu(display("registry member {address} refused the change: {message}"))]
    Refused {
        /// The member asked.
        address: String,
        /// The registry's explanation.
        message: String,
    },
    /// Any other answer.
    #[snafu(display("registry member {address} answered HTTP {status}: {body}"))]
    UnexpectedAnswer {
        /// The member asked.
        address: String,
        /// HTTP status.
        status: u16,
        /// Response body (truncated).
        body: String,
    },
}

/// Who the operator is to one registry cluster: its member identity when auth is on, nothing
/// when it is off.
pub type Identity<'a> = Option<&'a MemberIdentity>;

/// How the operator calls one registry cluster: as its [`Identity`], and over HTTPS trusting
/// `tls_ca` (the CA's PEM) when the members' client-facing ports use TLS, plain HTTP otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller<'a> {
    /// The member identity header, when auth is on.
    pub identity: Identity<'a>,
    /// The CA (PEM) the members' HTTPS certificates chain to, when they serve HTTPS.
    pub tls_ca: Option<&'a [u8]>,
}

/// The membership admin API of a registry cluster. Addresses are members' HTTP `host:port`;
/// every call is made as the cluster's [`Caller`].
pub trait RegistryAdmin: Send + Sync {
    /// The Raft view of the member at `member`.
    fn raft_view<'a>(&'a self, caller: Caller<'a>, member: &'a str) -> BoxFuture<'a, Result<RaftView, Error>>;
    /// Adds node `node_id`, reachable at HTTP `address`, as a learner; sent to `leader`.
    fn add_learner<'a>(
        &'a self,
        caller: Caller<'a>,
        leader: &'a str,
        node_id: u64,
        address: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>>;
    /// Promotes learner `node_id` to voter; sent to `leader`.
    fn promote<'a>(&'a self, caller: Caller<'a>, leader: &'a str, node_id: u64) -> BoxFuture<'a, Result<(), Error>>;
    /// Removes member `node_id`; sent to `leader`.
    fn remove<'a>(&'a self, caller: Caller<'a>, leader: &'a str, node_id: u64) -> BoxFuture<'a, Result<(), Error>>;
}

/// HTTP address of member `node_id` of `cluster`: its pod's peer DNS name and the HTTP port.
pub fn member_address(cluster: &ValidatedCluster, node_id: u64) -> String {
    format!("{}-{}.{}:{}", cluster.name, node_id.saturating_sub(1), cluster.peer_dns(), cluster.ports.http)
}

/// [`RegistryAdmin`] over HTTP, or HTTPS trusting the cluster's CA.
#[derive(Debug)]
pub struct HttpRegistry {
    client: reqwest::Client,
    /// HTTPS clients by the CA (PEM) they trust; CAs change rarely, so this stays small (and is
    /// emptied should it not).
    https: Mutex<HashMap<Vec<u8>, reqwest::Client>>,
    resolver: Option<MemberResolver>,
}

/// A resolver for member names other than the system's (see [`HttpRegistry::with_resolver`]).
#[derive(Clone)]
struct MemberResolver(Arc<dyn reqwest::dns::Resolve>);

impl std::fmt::Debug for MemberResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemberResolver")
    }
}

/// Most HTTPS clients kept before the cache is emptied.
const MAX_HTTPS_CLIENTS: usize = 64;

impl HttpRegistry {
    /// A client with short timeouts: a reconcile must not hang on a member that is down.
    pub fn new() -> Result<Self, Error> {
        Self::with(None)
    }

    /// [`Self::new`], resolving member names through `resolver` instead of the system's: for
    /// an operator that runs outside the cluster's DNS (the API-server test tier).
    pub fn with_resolver<R: reqwest::dns::Resolve + 'static>(resolver: Arc<R>) -> Result<Self, Error> {
        Self::with(Some(MemberResolver(resolver)))
    }

    fn with(resolver: Option<MemberResolver>) -> Result<Self, Error> {
        let client = Self::builder(resolver.as_ref()).build().context(BuildClientSnafu)?;
        Ok(Self { client, https: Mutex::default(), resolver })
    }

    fn builder(resolver: Option<&MemberResolver>) -> reqwest::ClientBuilder {
        let builder =
            reqwest::Client::builder().connect_timeout(Duration::from_secs(2)).timeout(Duration::from_secs(5));
        match resolver {
            Some(MemberResolver(resolver)) => builder.dns_resolver2(resolver.clone()),
            None => builder,
        }
    }

    /// The URL of `path` on `member` and the client to call it with, as `caller`.
    fn url(&self, caller: Caller<'_>, member: &str, path: &str) -> Result<(reqwest::Client, String), Error> {
        let Some(ca) = caller.tls_ca else {
            return Ok((self.client.clone(), format!("http://{member}{path}")));
        };
        let mut clients = self.https.lock().unwrap_or_else(PoisonError::into_inner);
        let client = match clients.get(ca) {
            Some(client) => client.clone(),
            None => {
                let client = Self::builder(self.resolver.as_ref())
                    .use_preconfigured_tls(ClientConfig::clone(
                        &*tls::client_config_trusting(ca, &[ALPN_HTTP1]).context(TrustSnafu)?,
                    ))
                    .build()
                    .context(BuildClientSnafu)?;
                if clients.len() >= MAX_HTTPS_CLIENTS {
                    clients.clear();
                }
                clients.insert(ca.to_vec(), client.clone());
                client
            }
        };
        Ok((client, format!("https://{member}{path}")))
    }

    /// `request` with the identity header, if any.
    fn authenticated(request: reqwest::RequestBuilder, identity: Identity<'_>) -> reqwest::RequestBuilder {
        match identity {
            Some(identity) => request.header(identity.name.clone(), identity.value.clone()),
            None => request,
        }
    }

    async fn change(&self, caller: Caller<'_>, request: reqwest::RequestBuilder, address: &str) -> Result<(), Error> {
        let request = Self::authenticated(request, caller.identity);
        let response = request.send().await.context(UnreachableSnafu { address })?;
        let status = response.status().as_u16();
        let body = response.text().await.context(UnreachableSnafu { address })?;
        classify_change(address, status, &body)
    }
}

/// The `{code, message, data}` envelope of the registry's v2 API.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    code: i64,
    data: Option<T>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireView {
    leader: Option<u64>,
    #[serde(default)]
    members: Vec<WireMember>,
}

#[derive(Debug, Deserialize)]
struct WireMember {
    id: u64,
    address: String,
    role: String,
}

/// Parses the body of `GET /nacos/v2/core/cluster/raft`.
pub(crate) fn parse_view(address: &str, status: u16, body: &str) -> Result<RaftView, Error> {
    let unexpected = || UnexpectedAnswerSnafu { address, status, body: truncate(body) };
    if status != 200 {
        return unexpected().fail();
    }
    let envelope: Envelope<WireView> = serde_json::from_str(body).ok().ok_or_else(|| unexpected().build())?;
    let Envelope { code: 0, data: Some(view) } = envelope else {
        return unexpected().fail();
    };
    let mut members = Vec::with_capacity(view.members.len());
    for m in view.members {
        let role = match m.role.as_str() {
            "leader" => MemberRole::Leader,
            "follower" => MemberRole::Follower,
            "candidate" => MemberRole::Candidate,
            "learner" => MemberRole::Learner,
            _ => return unexpected().fail(),
        };
        members.push(RaftMember { id: m.id, address: m.address, role });
    }
    members.sort_by_key(|m| m.id);
    Ok(RaftView { leader: view.leader, members })
}

/// Maps the answer to a membership change: 200 with code 0 is success; 409 names the leader
/// (`data.leaderId`) or carries a refusal.
pub(crate) fn classify_change(address: &str, status: u16, body: &str) -> Result<(), Error> {
    let envelope: Option<Envelope<serde_json::Value>> = serde_json::from_str(body).ok();
    match (status, envelope) {
        (200, Some(Envelope { code: 0, .. })) => Ok(()),
        (409, Some(Envelope { data: Some(data), .. })) if data.get("leaderId").is_some() => {
            NotLeaderSnafu { address, leader_id: data.get("leaderId").and_then(serde_json::Value::as_u64) }.fail()
        }
        (409, Some(Envelope { data, .. })) => {
            let message = match data {
                Some(serde_json::Value::String(text)) => text,
                Some(other) => other.to_string(),
                None => truncate(body),
            };
            RefusedSnafu { address, message }.fail()
        }
        _ => UnexpectedAnswerSnafu { address, status, body: truncate(body) }.fail(),
    }
}

fn truncate(body: &str) -> String {
    body.chars().take(300).collect()
}

impl RegistryAdmin for HttpRegistry {
    fn raft_view<'a>(&'a self, caller: Caller<'a>, member: &'a str) -> BoxFuture<'a, Result<RaftView, Error>> {
        Box::pin(async move {
            let (client, url) = self.url(caller, member, "/nacos/v2/core/cluster/raft")?;
            let request = Self::authenticated(client.get(url), caller.identity);
            let response = request.send().await.context(UnreachableSnafu { address: member })?;
            let status = response.status().as_u16();
            let body = response.text().await.context(UnreachableSnafu { address: member })?;
            parse_view(member, status, &body)
        })
    }

    fn add_learner<'a>(
        &'a self,
        caller: Caller<'a>,
        leader: &'a str,
        node_id: u64,
        address: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let (client, url) = self.url(caller, leader, "/nacos/v2/core/cluster/members")?;
            let id = node_id.to_string();
            let request = client.post(url).query(&[("nodeId", id.as_str()), ("address", address)]);
            self.change(caller, request, leader).await
        })
    }

    fn promote<'a>(&'a self, caller: Caller<'a>, leader: &'a str, node_id: u64) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let (client, url) = self.url(caller, leader, "/nacos/v2/core/cluster/members/promote")?;
            let request = client.post(url).query(&[("nodeId", node_id)]);
            self.change(caller, request, leader).await
        })
    }

    fn remove<'a>(&'a self, caller: Caller<'a>, leader: &'a str, node_id: u64) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let (client, url) = self.url(caller, leader, "/nacos/v2/core/cluster/members")?;
            let request = client.delete(url).query(&[("nodeId", node_id)]);
            self.change(caller, request, leader).await
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::extract::State;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::routing::{get, post};

    use super::*;

    const A: &str = "nacos-0.nacos-headless.registry.svc.cluster.local:8848";

    #[test]
    fn raft_view_is_parsed_and_sorted_by_id() {
        let body = r#"{"code":0,"message":"success","data":{"nodeId":1,"leader":1,"term":3,"lastApplied":9,
            "lastLog":9,"ready":true,"members":[{"id":2,"address":"b:9849","role":"learner"},
            {"id":1,"address":"a:9849","role":"leader"}]}}"#;
        let view = parse_view(A, 200, body).unwrap();
        assert_eq!(view.leader, Some(1));
        assert_eq!(
            view.members,
            [
                RaftMember { id: 1, address: "a:9849".into(), role: MemberRole::Leader },
                RaftMember { id: 2, address: "b:9849".into(), role: MemberRole::Learner },
            ]
        );
        assert!(!view.members[1].is_voter());
    }

    #[test]
    fn garbage_or_unknown_roles_are_unexpected_answers_not_panics() {
        for (status, body) in [
            (200, "not json"),
            (200, r#"{"code":30000,"data":null}"#),
            (200, r#"{"code":0,"data":{"leader":1,"members":[{"id":1,"address":"a","role":"king"}]}}"#),
            (503, r#"{"code":30000}"#),
        ] {
            assert!(matches!(parse_view(A, status, body), Err(Error::UnexpectedAnswer { .. })), "{status} {body}");
        }
    }

    #[test]
    fn change_answers_are_classified() {
        assert!(classify_change(A, 200, r#"{"code":0,"message":"success","data":"ok"}"#).is_ok());
        let not_leader =
            r#"{"code":23000,"message":"not the leader","data":{"leaderId":3,"leaderClusterAddress":"c"}}"#;
        assert!(matches!(classify_change(A, 409, not_leader), Err(Error::NotLeader { leader_id: Some(3), .. })));
        let refused = r#"{"code":23000,"message":"membership change refused","data":"node 4 is 500 entries behind"}"#;
        match classify_change(A, 409, refused) {
            Err(Error::Refused { message, .. }) => assert_eq!(message, "node 4 is 500 entries behind"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(matches!(classify_change(A, 503, "{}"), Err(Error::UnexpectedAnswer { status: 503, .. })));
    }

    type Calls = Arc<Mutex<Vec<String>>>;

    /// Answers like a registry follower whose leader is node 3, except that it accepts
    /// promotions and refuses removals; records `METHOD path?query [identity header]` of every
    /// call.
    async fn answer(State(calls): State<Calls>, method: Method, uri: Uri, headers: HeaderMap) -> (StatusCode, String) {
        let identity = headers.get("serverIdentity").and_then(|v| v.to_str().ok()).unwrap_or("-");
        calls.lock().unwrap().push(format!("{method} {uri} {identity}"));
        let body = match (method.as_str(), uri.path()) {
            ("GET", _) => {
                return (
                    StatusCode::OK,
                    r#"{"code":0,"message":"success","data":{"nodeId":1,"leader":3,"term":2,
                    "lastApplied":5,"lastLog":5,"ready":true,"members":[{"id":1,"address":"a:9849","role":"follower"},
                    {"id":3,"address":"c:9849","role":"leader"}]}}"#
                        .to_owned(),
                );
            }
            ("POST", "/nacos/v2/core/cluster/members") => {
                r#"{"code":23000,"message":"not the leader","data":{"leaderId":3}}"#
            }
            ("POST", _) => {
                return (StatusCode::OK, r#"{"code":0,"message":"success","data":"ok"}"#.to_owned());
            }
            _ => r#"{"code":23000,"message":"membership change refused","data":"would lose quorum"}"#,
        };
        (StatusCode::CONFLICT, body.to_owned())
    }

    #[tokio::test]
    async fn http_client_speaks_the_registry_admin_api() {
        let calls = Calls::default();
        let app = Router::new()
            .route("/nacos/v2/core/cluster/raft", get(answer))
            .route("/nacos/v2/core/cluster/members", post(answer).delete(answer))
            .route("/nacos/v2/core/cluster/members/promote", post(answer))
            .with_state(calls.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let member = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let registry = HttpRegistry::new().unwrap();
        let identity = MemberIdentity::new(b"serverIdentity", b"s3cret").unwrap();
        let id = Caller { identity: Some(&identity), tls_ca: None };

        let view = registry.raft_view(id, &member).await.unwrap();
        assert_eq!((view.leader, view.members.len()), (Some(3), 2));
        let added = registry.add_learner(id, &member, 4, "nacos-3.h:8848").await;
        assert!(matches!(added, Err(Error::NotLeader { leader_id: Some(3), .. })), "{added:?}");
        registry.promote(id, &member, 4).await.unwrap();
        let removed = registry.remove(id, &member, 5).await;
        assert!(
            matches!(&removed, Err(Error::Refused { message, .. }) if message == "would lose quorum"),
            "{removed:?}"
        );
        // Without auth, no identity header.
        registry.raft_view(Caller::default(), &member).await.unwrap();
        assert_eq!(
            *calls.lock().unwrap(),
            [
                "GET /nacos/v2/core/cluster/raft s3cret",
                "POST /nacos/v2/core/cluster/members?nodeId=4&address=nacos-3.h%3A8848 s3cret",
                "POST /nacos/v2/core/cluster/members/promote?nodeId=4 s3cret",
                "DELETE /nacos/v2/core/cluster/members?nodeId=5 s3cret",
                "GET /nacos/v2/core/cluster/raft -",
            ]
        );
        // Nobody listening: unreachable, not a panic.
        server.abort();
        let _ = server.await;
        assert!(matches!(registry.raft_view(Caller::default(), &member).await, Err(Error::Unreachable { .. })));
    }

    #[test]
    fn identity_debug_hides_the_value_and_unusable_pairs_are_refused() {
        let identity = MemberIdentity::new(b"serverIdentity", b"s3cret").unwrap();
        let shown = format!("{identity:?}");
        assert!(shown.contains("serveridentity") && !shown.contains("s3cret"), "{shown}");
        assert!(MemberIdentity::new(b"server identity", b"v").is_none());
        assert!(MemberIdentity::new(b"k", b"value\n").is_none());
    }
}
