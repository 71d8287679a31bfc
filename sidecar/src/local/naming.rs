//! Naming requests of local clients: publications merged per service into the sidecar's own
//! upstream publication, subscriptions shared per service, queries answered from the pushed
//! cache where possible.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use registry_proto::client::ClientError;
use registry_proto::model::ServiceKey;
use registry_proto::nacos::Payload;
use registry_proto::select::parse_clusters;
use registry_proto::server::Connection;
use registry_proto::wire::ServiceInfo;
use registry_proto::wire::frame::ok_response;
use registry_proto::wire::naming::{
    BatchInstanceRequest, InstanceRequest, ServiceQueryRequest, SubscribeServiceRequest, WireInstance,
};
use serde_json::json;

use super::{Local, Owner, Reject, Subscriber, parse, remove_member, unreachable};

/// `info` as a subscriber to `clusters` (comma-separated, empty = all) sees it.
pub(super) fn filtered(info: &ServiceInfo, clusters: &str) -> ServiceInfo {
    let wanted = parse_clusters(clusters);
    let mut out = info.clone();
    out.clusters = clusters.to_owned();
    if !wanted.is_empty() {
        out.hosts.retain(|h| wanted.contains(&h.cluster_name));
    }
    out
}

fn validated(wire: &WireInstance) -> Result<(), Reject> {
    let instance = wire.clone().into_instance(true).map_err(Reject::invalid)?;
    instance.validate().map_err(Reject::invalid)
}

impl Local {
    pub(super) async fn instance(&self, conn: &Arc<Connection>, body: &[u8]) -> Result<Payload, Reject> {
        let req: InstanceRequest = parse(body)?;
        let key = req.base.service_key().map_err(Reject::invalid)?;
        let kind = req.kind.unwrap_or_default();
        let owner = Owner::Conn(conn.meta.connection_id.clone());
        match kind.as_str() {
            "registerInstance" => {
                let wire = req.instance.ok_or_else(|| Reject::invalid("instance is required"))?;
                validated(&wire)?;
                self.set_publication(&key, owner, vec![wire]).await?;
            }
            "deregisterInstance" => self.set_publication(&key, owner, Vec::new()).await?,
            other => return Err(Reject::invalid(format!("Unsupported request type {other}"))),
        }
        Ok(ok_response("InstanceResponse", json!({ "type": kind }), None))
    }

    pub(super) async fn batch(&self, conn: &Arc<Connection>, body: &[u8]) -> Result<Payload, Reject> {
        let req: BatchInstanceRequest = parse(body)?;
        let key = req.base.service_key().map_err(Reject::invalid)?;
        let kind = req.kind.unwrap_or_default();
        if kind != "batchRegisterInstance" {
            return Err(Reject::invalid(format!("Unsupported request type {kind}")));
        }
        for wire in &req.instances {
            validated(wire)?;
        }
        self.set_publication(&key, Owner::Conn(conn.meta.connection_id.clone()), req.instances).await?;
        Ok(ok_response("BatchInstanceResponse", json!({ "type": kind }), None))
    }

    /// Replaces what `owner` publishes in `key` (empty: withdraws) and publishes the union.
    /// A refusal by the cluster restores the owner's previous publication.
    pub(crate) async fn set_publication(
        &self,
        key: &ServiceKey,
        owner: Owner,
        instances: Vec<WireInstance>,
    ) -> Result<(), Reject> {
        let previous = {
            let mut state = self.state();
            let owners = state.publications.entry(key.clone()).or_default();
            let previous =
                if instances.is_empty() { owners.remove(&owner) } else { owners.insert(owner.clone(), instances) };
            if owners.is_empty() {
                state.publications.remove(key);
            }
            previous
        };
        let published = self.publish(key).await;
        if published.is_err() {
            {
                let mut state = self.state();
                let owners = state.publications.entry(key.clone()).or_default();
                match previous {
                    Some(previous) => owners.insert(owner, previous),
                    None => owners.remove(&owner),
                };
                if owners.is_empty() {
                    state.publications.remove(key);
                }
            }
            let _ = self.publish(key).await;
        }
        published
    }

    /// Publishes the union of every owner's instances in `key` as the sidecar's own. An
    /// unreachable cluster is not an error: the session redoes the publication on reconnect.
    pub(super) async fn publish(&self, key: &ServiceKey) -> Result<(), Reject> {
        let _serial = self.publishing.lock().await;
        let union: Vec<WireInstance> =
            self.state().publications.get(key).map(|o| o.values().flatten().cloned().collect()).unwrap_or_default();
        let session = self.upstream.session(&key.namespace).map_err(|e| Reject::unavailable(&e))?;
        let sent = match union.as_slice() {
            [] => session.deregister(key, WireInstance::default()).await,
            [one] => session.register(key, one.clone()).await,
            _ => session.batch_register(key, union).await,
        };
        match sent {
            Ok(()) => Ok(()),
            Err(e) if unreachable(&e) => {
                self.stats.upstream_deferred.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(service = %key, error = %e, "publication kept; redone when the cluster answers");
                Ok(())
            }
            Err(e) => Err(self.failed(&e)),
        }
    }

    pub(super) async fn subscribe(&self, conn: &Arc<Connection>, body: &[u8]) -> Result<Payload, Reject> {
        let req: SubscribeServiceRequest = parse(body)?;
        let key = req.base.service_key().map_err(Reject::invalid)?;
        let clusters = req.clusters.unwrap_or_default();
        let id = conn.meta.connection_id.clone();
        if !req.subscribe {
            let last = remove_member(&mut self.state().subscribers, &key, &id);
            if last {
                self.unsubscribe_upstream(&key).await;
            }
            let info = self.cache.service(&key).unwrap_or_else(|| empty(&key));
            return Ok(ok_response(
                "SubscribeServiceResponse",
                json!({ "serviceInfo": filtered(&info, &clusters) }),
                None,
            ));
        }
        let first = {
            let mut state = self.state();
            let subs = state.subscribers.entry(key.clone()).or_default();
            let first = subs.is_empty();
            subs.insert(id, Subscriber { clusters: clusters.clone(), conn: Arc::clone(conn) });
            first
        };
        let cached = self.cache.service(&key);
        let info = match (first, cached) {
            (false, Some(info)) => info,
            (_, cached) => {
                let session = self.upstream.session(&key.namespace).map_err(|e| Reject::unavailable(&e))?;
                match session.subscribe(&key, "").await {
                    Ok(info) => {
                        self.cache.put_service(&key, &info);
                        info
                    }
                    Err(e) if unreachable(&e) => {
                        self.stats.upstream_failures.fetch_add(1, Ordering::Relaxed);
                        self.stats.cache_answers.fetch_add(1, Ordering::Relaxed);
                        cached.ok_or_else(|| Reject::unavailable(&e))?
                    }
                    Err(e) => return Err(self.failed(&e)),
                }
            }
        };
        Ok(ok_response("SubscribeServiceResponse", json!({ "serviceInfo": filtered(&info, &clusters) }), None))
    }

    pub(super) async fn unsubscribe_upstream(&self, key: &ServiceKey) {
        if self.state().resolved.contains(key) {
            return;
        }
        if let Ok(session) = self.upstream.session(&key.namespace) {
            let _ = session.unsubscribe(key).await;
        }
    }

    /// Whether pushes keep the cached instances of `key` current (a local subscriber or the
    /// DNS resolver subscribed to it).
    pub(crate) fn follows(&self, key: &ServiceKey) -> bool {
        let state = self.state();
        state.resolved.contains(key) || state.subscribers.contains_key(key)
    }

    /// Subscribes upstream to `key` for the DNS resolver, once: the cache then follows its
    /// pushes. `Ok(false)` when the service has no instance (nothing kept, unsubscribed again
    /// unless a local client holds it) or `limit` resolved services are already followed.
    pub(crate) async fn resolve_subscribe(&self, key: &ServiceKey, limit: usize) -> Result<bool, ClientError> {
        {
            let mut state = self.state();
            if state.resolved.contains(key) {
                return Ok(true);
            }
            if state.resolved.len() >= limit {
                tracing::debug!(service = %key, limit, "dns: not following another service");
                return Ok(false);
            }
            state.resolved.insert(key.clone());
        }
        let subscribed = match self.upstream.session(&key.namespace) {
            Ok(session) => session.subscribe(key, "").await.map(|info| (session, info)),
            Err(e) => Err(e),
        };
        match subscribed {
            Ok((_, info)) if !info.hosts.is_empty() => {
                self.cache.put_service(key, &info);
                Ok(true)
            }
            other => {
                let held_locally = {
                    let mut state = self.state();
                    state.resolved.remove(key);
                    state.subscribers.contains_key(key)
                };
                match other {
                    Ok((session, _)) => {
                        if !held_locally {
                            self.cache.remove_service(key);
                            let _ = session.unsubscribe(key).await;
                        }
                        Ok(false)
                    }
                    Err(e) => {
                        self.stats.upstream_failures.fetch_add(1, Ordering::Relaxed);
                        Err(e)
                    }
                }
            }
        }
    }

    /// A query: from the cache when the service is subscribed (pushes keep it current), else
    /// upstream, else (cluster away) the cache.
    pub(super) async fn query(&self, body: &[u8]) -> Result<Payload, Reject> {
        let req: ServiceQueryRequest = parse(body)?;
        let key = req.base.service_key().map_err(Reject::invalid)?;
        let clusters = req.cluster.clone().unwrap_or_default();
        let subscribed = self.state().subscribers.contains_key(&key);
        if subscribed && let Some(info) = self.cache.service(&key) {
            self.stats.cache_answers.fetch_add(1, Ordering::Relaxed);
            return Ok(answer_query(&info, &clusters, req.healthy_only));
        }
        let raw: serde_json::Value = parse(body)?;
        match self.call(&key.namespace, "ServiceQueryRequest", &raw).await {
            Ok((answer, body)) => {
                // A full list (all clusters, healthy or not) is what the cache holds.
                if clusters.is_empty() && !req.healthy_only && answer == "QueryServiceResponse" {
                    let info = body.get("serviceInfo").cloned().map(serde_json::from_value::<ServiceInfo>);
                    if let Some(Ok(info)) = info {
                        self.cache.put_service(&key, &info);
                    }
                }
                Ok(registry_proto::wire::frame::payload(&answer, &body))
            }
            Err(e) if unreachable(&e) => {
                let info = self.cache.service(&key).ok_or_else(|| Reject::unavailable(&e))?;
                self.stats.cache_answers.fetch_add(1, Ordering::Relaxed);
                Ok(answer_query(&info, &clusters, req.healthy_only))
            }
            Err(e) => Err(Reject::from_upstream(&e)),
        }
    }
}

/// A `QueryServiceResponse` from a cached full list.
fn answer_query(info: &ServiceInfo, clusters: &str, healthy_only: bool) -> Payload {
    let mut info = filtered(info, clusters);
    if healthy_only {
        info.hosts.retain(|h| h.healthy);
    }
    ok_response("QueryServiceResponse", json!({ "serviceInfo": info }), None)
}

/// The answer for a service nothing is known about.
fn empty(key: &ServiceKey) -> ServiceInfo {
    ServiceInfo::build(key, "", &registry_proto::select::Selection::default(), registry_proto::wire::NameForm::Bare)
}
