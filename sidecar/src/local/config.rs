//! Config requests of local clients: reads remembered for failover, listeners shared per config.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use registry_proto::nacos::Payload;
use registry_proto::server::Connection;
use registry_proto::wire::codes::CONFIG_NOT_FOUND;
use registry_proto::wire::config::{BatchListenRequest, ConfigRequest};
use registry_proto::wire::frame::{ok_response, payload};
use serde_json::{Value, json};

use super::{Local, Reject, parse, remove_member, unreachable};
use crate::cache::{CachedConfig, ConfigId};

fn id_of(tenant: Option<&str>, group: Option<&str>, data_id: Option<&str>) -> ConfigId {
    let text = |s: Option<&str>| s.unwrap_or_default().to_owned();
    (text(tenant), text(group), text(data_id))
}

impl Local {
    /// A config read: upstream, remembered; while the cluster is away, the remembered content.
    pub(super) async fn config_query(&self, body: &[u8]) -> Result<Payload, Reject> {
        let req: ConfigRequest = parse(body)?;
        let id = id_of(req.tenant.as_deref(), req.group.as_deref(), req.data_id.as_deref());
        let raw: Value = parse(body)?;
        match self.call(&id.0, "ConfigQueryRequest", &raw).await {
            Ok((answer, body)) => {
                let code = body.get("errorCode").and_then(Value::as_i64).unwrap_or(0);
                let text = |f: &str| body.get(f).and_then(Value::as_str).unwrap_or_default().to_owned();
                if answer == "ConfigQueryResponse" && body.get("resultCode").and_then(Value::as_i64) == Some(200) {
                    self.cache.put_config(&id, &CachedConfig { content: text("content"), md5: text("md5") });
                    // A redo after reconnect compares with what the client now holds.
                    if let Ok(session) = self.upstream.session(&id.0) {
                        session.config_held(&id.0, &id.1, &id.2, &text("md5"));
                    }
                } else if code == i64::from(CONFIG_NOT_FOUND) {
                    self.cache.remove_config(&id);
                }
                Ok(payload(&answer, &body))
            }
            Err(e) if unreachable(&e) => {
                let cached = self.cache.config(&id).ok_or_else(|| Reject::unavailable(&e))?;
                self.stats.cache_answers.fetch_add(1, Ordering::Relaxed);
                let (tenant, group, data_id) = id;
                Ok(ok_response(
                    "ConfigQueryResponse",
                    json!({ "content": cached.content, "md5": cached.md5, "dataId": data_id, "group": group,
                            "tenant": tenant, "contentType": "text", "encryptedDataKey": "", "beta": false,
                            "lastModified": 0 }),
                    None,
                ))
            }
            Err(e) => Err(Reject::from_upstream(&e)),
        }
    }

    /// Adds or removes local listeners; one upstream listener per config. The answer lists the
    /// configs whose MD5 differs from the client's: the cluster's view, or while it is away, the
    /// cache's.
    pub(super) async fn listen(&self, conn: &Arc<Connection>, body: &[u8]) -> Result<Payload, Reject> {
        let req: BatchListenRequest = parse(body)?;
        let conn_id = conn.meta.connection_id.clone();
        let mut changed = Vec::new();
        for ctx in &req.config_listen_contexts {
            let id = id_of(ctx.tenant.as_deref(), ctx.group.as_deref(), ctx.data_id.as_deref());
            let md5 = ctx.md5.clone().unwrap_or_default();
            let session = self.upstream.session(&id.0).map_err(|e| Reject::unavailable(&e))?;
            let (tenant, group, data_id) = id.clone();
            if req.listen {
                self.state().listeners.entry(id.clone()).or_default().insert(conn_id.clone(), Arc::clone(conn));
                let differs = match session.listen_config(&tenant, &group, &data_id, &md5).await {
                    Ok(differs) => differs,
                    Err(e) if unreachable(&e) => self.cache.config(&id).is_some_and(|c| c.md5 != md5),
                    Err(e) => return Err(self.failed(&e)),
                };
                if differs {
                    changed.push(json!({ "dataId": data_id, "group": group, "tenant": tenant }));
                }
            } else {
                let last = remove_member(&mut self.state().listeners, &id, &conn_id);
                if last {
                    let _ = session.unlisten_config(&tenant, &group, &data_id).await;
                }
            }
        }
        Ok(ok_response("ConfigChangeBatchListenResponse", json!({ "changedConfigs": changed }), None))
    }
}
