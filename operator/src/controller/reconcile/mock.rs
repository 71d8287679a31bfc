//! Test doubles for reconcile tests: a scripted API server (controller-rs' `ApiServerVerifier`
//! idea over `tower_test::mock::pair`) and a fake registry admin API. Both write to one
//! [`Timeline`], so a test can assert the order of Kubernetes requests and membership calls.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

use crate::controller::registry::{self, Caller, MemberIdentity, RaftMember, RaftView, RegistryAdmin};
use crate::crd::MemberRole;

/// Every request, in order: `"PATCH /api/v1/…"` for the API server, `"registry …"` for the
/// registry.
pub(crate) type Timeline = Arc<Mutex<Vec<String>>>;

fn push(timeline: &Timeline, entry: String) {
    timeline.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(entry);
}

/// Builds the answer to a request from its JSON body.
type Answer = Box<dyn FnOnce(Value) -> (u16, Value) + Send>;

/// One expected API server request and its answer.
pub(crate) struct Expect {
    method: Method,
    uri: String,
    answer: Answer,
}

impl Expect {
    /// `method uri`, answered by `answer(request body)`.
    pub(crate) fn new(method: Method, uri: &str, answer: impl FnOnce(Value) -> (u16, Value) + Send + 'static) -> Self {
        Self { method, uri: uri.to_owned(), answer: Box::new(answer) }
    }

    /// A GET answered with `status` and `body`.
    pub(crate) fn get(uri: &str, status: u16, body: Value) -> Self {
        Self::new(Method::GET, uri, move |_| (status, body))
    }

    /// A server-side apply answered with the applied object, as the API server would.
    pub(crate) fn apply(uri: &str) -> Self {
        Self::new(Method::PATCH, uri, |body| (200, body))
    }

    /// A server-side apply answered with an API error.
    pub(crate) fn apply_fails(uri: &str, status: u16) -> Self {
        Self::new(Method::PATCH, uri, move |_| (status, api_error(status)))
    }

    /// The StatefulSet's apply, answered with a status of `ready` ready pods.
    pub(crate) fn apply_statefulset(uri: &str, ready: i32) -> Self {
        Self::new(Method::PATCH, uri, move |mut body| {
            let replicas = body["spec"]["replicas"].as_i64().unwrap_or(0);
            body["status"] = json!({ "replicas": replicas, "readyReplicas": ready, "updatedReplicas": replicas });
            (200, body)
        })
    }

    /// An event creation; `check` sees the event (reason, note, type).
    pub(crate) fn event(uri: &str, check: impl FnOnce(&Value) + Send + 'static) -> Self {
        Self::new(Method::POST, uri, move |body| {
            check(&body);
            (201, body)
        })
    }

    /// A status patch; `check` sees the patch body.
    pub(crate) fn status(uri: &str, check: impl FnOnce(&Value) + Send + 'static) -> Self {
        Self::new(Method::PATCH, uri, move |mut body| {
            check(&body);
            body["metadata"] = json!({ "name": "nacos", "namespace": "registry" });
            body["spec"] = json!({});
            (200, body)
        })
    }
}

/// The body of an API server error (`metav1.Status`).
pub(crate) fn api_error(code: u16) -> Value {
    let reason = match code {
        404 => "NotFound",
        409 => "Conflict",
        _ => "InternalError",
    };
    json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason, "reason": reason, "code": code })
}

/// A `kube::Client` whose requests are answered by `script`, in order. The returned task fails
/// (when joined) on an unexpected request, a wrong method or URI, or a request missing once
/// the client was dropped.
pub(crate) fn client(script: Vec<Expect>, timeline: Timeline) -> (kube::Client, tokio::task::JoinHandle<()>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let task = tokio::spawn(async move {
        let mut script = VecDeque::from(script);
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().clone();
            let uri = request.uri().to_string();
            let bytes = request.into_body().collect_bytes().await.unwrap_or_default();
            let body =
                if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
            // StatefulSet applies show their replicas: the order of scale steps is the point.
            match body["spec"]["replicas"].as_i64() {
                Some(replicas) if uri.contains("/statefulsets/") => {
                    push(&timeline, format!("{method} {uri} replicas={replicas}"));
                }
                _ => push(&timeline, format!("{method} {uri}")),
            }
            let expect = script.pop_front().unwrap_or_else(|| panic!("unexpected request {method} {uri}"));
            assert_eq!((&method, uri.as_str()), (&expect.method, expect.uri.as_str()), "request out of script");
            let (status, reply) = (expect.answer)(body);
            let response =
                Response::builder().status(status).body(Body::from(serde_json::to_vec(&reply).unwrap_or_default()));
            send.send_response(response.unwrap_or_else(|e| panic!("bad mock response: {e}")));
        }
        let missing: Vec<String> = script.iter().map(|e| format!("{} {}", e.method, e.uri)).collect();
        assert!(missing.is_empty(), "requests the reconcile did not make: {missing:#?}");
    });
    (client, task)
}

/// A registry whose Raft group is a map the tests set up; records every call and the identity
/// it carried.
pub(crate) struct FakeRegistry {
    state: Mutex<FakeState>,
    timeline: Timeline,
}

#[derive(Debug, Default)]
struct FakeState {
    leader: Option<u64>,
    members: BTreeMap<u64, MemberRole>,
    /// Answer every call with "unreachable".
    down: bool,
    /// Refuse removals with this message.
    refuse_remove: Option<String>,
    /// The identity of every call, in order.
    identities: Vec<Option<MemberIdentity>>,
    /// The CA each call trusted (HTTPS), in order.
    tls_cas: Vec<Option<Vec<u8>>>,
}

impl FakeRegistry {
    /// A group led by `leader` with `members` (id, role).
    pub(crate) fn new(leader: Option<u64>, members: &[(u64, MemberRole)], timeline: Timeline) -> Self {
        let state = FakeState { leader, members: members.iter().copied().collect(), ..FakeState::default() };
        Self { state: Mutex::new(state), timeline }
    }

    /// A registry no member of which answers.
    pub(crate) fn down(timeline: Timeline) -> Self {
        Self { state: Mutex::new(FakeState { down: true, ..FakeState::default() }), timeline }
    }

    /// Refuse removals as the registry does when quorum would be lost.
    pub(crate) fn refusing_removals(self, message: &str) -> Self {
        self.lock().refuse_remove = Some(message.to_owned());
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The identity each call carried, in order.
    pub(crate) fn identities(&self) -> Vec<Option<MemberIdentity>> {
        self.lock().identities.clone()
    }

    /// The CA each call trusted, in order (`None`: plain HTTP).
    pub(crate) fn tls_cas(&self) -> Vec<Option<Vec<u8>>> {
        self.lock().tls_cas.clone()
    }

    fn record(&self, caller: Caller<'_>, call: String) {
        let mut state = self.lock();
        state.identities.push(caller.identity.cloned());
        state.tls_cas.push(caller.tls_ca.map(<[u8]>::to_vec));
        drop(state);
        push(&self.timeline, format!("registry {call}"));
    }
}

/// The pod name in a member address (`nacos-0.nacos-headless…:8848` → `nacos-0`).
fn pod(address: &str) -> &str {
    address.split('.').next().unwrap_or(address)
}

fn down_error(address: &str) -> registry::Error {
    registry::Error::UnexpectedAnswer { address: address.to_owned(), status: 503, body: "down".into() }
}

impl RegistryAdmin for FakeRegistry {
    fn raft_view<'a>(
        &'a self,
        caller: Caller<'a>,
        member: &'a str,
    ) -> BoxFuture<'a, Result<RaftView, registry::Error>> {
        self.record(caller, format!("view @{}", pod(member)));
        let state = self.lock();
        let result = if state.down {
            Err(down_error(member))
        } else {
            let members = state
                .members
                .iter()
                .map(|(id, role)| RaftMember { id: *id, address: format!("m{id}:9849"), role: *role })
                .collect();
            Ok(RaftView { leader: state.leader, members })
        };
        Box::pin(async move { result })
    }

    fn add_learner<'a>(
        &'a self,
        caller: Caller<'a>,
        leader: &'a str,
        node_id: u64,
        address: &'a str,
    ) -> BoxFuture<'a, Result<(), registry::Error>> {
        self.record(caller, format!("add {node_id} ({}) @{}", pod(address), pod(leader)));
        self.lock().members.insert(node_id, MemberRole::Learner);
        Box::pin(async { Ok(()) })
    }

    fn promote<'a>(
        &'a self,
        caller: Caller<'a>,
        leader: &'a str,
        node_id: u64,
    ) -> BoxFuture<'a, Result<(), registry::Error>> {
        self.record(caller, format!("promote {node_id} @{}", pod(leader)));
        self.lock().members.insert(node_id, MemberRole::Follower);
        Box::pin(async { Ok(()) })
    }

    fn remove<'a>(
        &'a self,
        caller: Caller<'a>,
        leader: &'a str,
        node_id: u64,
    ) -> BoxFuture<'a, Result<(), registry::Error>> {
        self.record(caller, format!("remove {node_id} @{}", pod(leader)));
        let mut state = self.lock();
        let result = match &state.refuse_remove {
            Some(message) => Err(registry::Error::Refused { address: leader.to_owned(), message: message.clone() }),
            None => {
                state.members.remove(&node_id);
                Ok(())
            }
        };
        Box::pin(async move { result })
    }
}
