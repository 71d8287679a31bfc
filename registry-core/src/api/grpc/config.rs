//! gRPC config handlers (spec §11). A missing config is a typed `ConfigQueryResponse` with
//! errorCode 300 (clients treat it as "absent"), never an `ErrorResponse`; `tenant` is echoed
//! as the client spelled it (null → ""), and `tag` is never sent (Go decodes it as a bool).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use registry_proto::nacos::Payload;
use serde_json::{Value, json};

use super::GrpcState;
use crate::configs::{ConfigError, Listening, Reader};
use crate::model::{ConfigKey, ConfigMeta, GrayRule, Source};
use registry_proto::server::Connection;
use registry_proto::wire::codes::{CONFIG_NOT_FOUND, ERR_BAD_GATEWAY};
use registry_proto::wire::config::{BatchListenRequest, ConfigRequest};
use registry_proto::wire::frame::{error_response, failed_response, ok_response};

fn labels_of(conn: &Connection) -> BTreeMap<String, String> {
    conn.meta.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn addition(map: &HashMap<String, Value>, key: &str) -> String {
    match map.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn code_of(e: &ConfigError) -> i32 {
    match e {
        ConfigError::Unavailable(_) | ConfigError::CasConflict => 500,
        ConfigError::NotFound | ConfigError::HistoryNotFound => 404,
        _ => 400,
    }
}

/// Handles a config request of type `kind`; `None` when the type is not a config type.
pub async fn handle(state: &GrpcState, conn: &Arc<Connection>, kind: &str, body: &[u8]) -> Option<Payload> {
    let response = match kind {
        "ConfigQueryRequest" => match serde_json::from_slice::<ConfigRequest>(body) {
            Ok(r) => query(state, conn, r).await,
            Err(e) => bad_body(&e),
        },
        "ConfigPublishRequest" => match serde_json::from_slice::<ConfigRequest>(body) {
            Ok(r) => publish(state, conn, r).await,
            Err(e) => bad_body(&e),
        },
        "ConfigRemoveRequest" => match serde_json::from_slice::<ConfigRequest>(body) {
            Ok(r) => remove(state, conn, r).await,
            Err(e) => bad_body(&e),
        },
        "ConfigBatchListenRequest" => match serde_json::from_slice::<BatchListenRequest>(body) {
            Ok(r) => batch_listen(state, conn, r),
            Err(e) => bad_body(&e),
        },
        _ => return None,
    };
    Some(response)
}

fn bad_body(e: &serde_json::Error) -> Payload {
    error_response(ERR_BAD_GATEWAY, &format!("malformed request body: {e}"))
}

fn key_of(r: &ConfigRequest) -> Result<ConfigKey, ConfigError> {
    Ok(ConfigKey::new(
        r.tenant.as_deref().unwrap_or_default(),
        r.group.as_deref().unwrap_or_default(),
        r.data_id.as_deref().unwrap_or_default(),
    )?)
}

async fn query(state: &GrpcState, conn: &Connection, r: ConfigRequest) -> Payload {
    const KIND: &str = "ConfigQueryResponse";
    let absent = json!({ "content": "", "md5": "", "lastModified": 0, "beta": false, "contentType": "text" });
    if r.headers.get("consistency").and_then(Value::as_str) == Some("linearizable")
        && let Err(e) = state.configs.read_barrier().await
    {
        return failed_response(KIND, code_of(&e), &e.to_string(), absent);
    }
    if r.tag.as_deref().is_some_and(|t| !t.is_empty()) {
        return failed_response(KIND, 400, "tag variants are not supported; use beta or label gray rules", absent);
    }
    let key = match key_of(&r) {
        Ok(k) => k,
        Err(e) => return failed_response(KIND, code_of(&e), &e.to_string(), absent),
    };
    let labels = labels_of(conn);
    match state.configs.get(&key, Reader { ip: &conn.meta.client_ip, labels: &labels }) {
        Some(read) => {
            let content_type = if read.item.meta.config_type.is_empty() {
                "text".to_owned()
            } else {
                read.item.meta.config_type.clone()
            };
            ok_response(
                KIND,
                json!({
                    "content": read.content,
                    "encryptedDataKey": read.encrypted_data_key,
                    "contentType": content_type,
                    "md5": read.md5,
                    "lastModified": read.item.modify_time,
                    "beta": read.gray,
                }),
                None,
            )
        }
        None => failed_response(KIND, CONFIG_NOT_FOUND, "config data not exist", absent),
    }
}

async fn publish(state: &GrpcState, conn: &Connection, r: ConfigRequest) -> Payload {
    const KIND: &str = "ConfigPublishResponse";
    let key = match key_of(&r) {
        Ok(k) => k,
        Err(e) => return failed_response(KIND, code_of(&e), &e.to_string(), json!({})),
    };
    let a = &r.addition_map;
    if !addition(a, "tag").is_empty() {
        return failed_response(KIND, 400, "tag variants are not supported; use beta or label gray rules", json!({}));
    }
    let content = r.content.clone().unwrap_or_default();
    let meta = ConfigMeta {
        config_type: Some(addition(a, "type")).filter(|t| !t.is_empty()).unwrap_or_else(|| "text".into()),
        desc: addition(a, "desc"),
        tags: addition(a, "config_tags"),
        app_name: addition(a, "appName"),
        encrypted_data_key: addition(a, "encryptedDataKey"),
    };
    let beta_ips = addition(a, "betaIps");
    let gray_labels = addition(a, "grayLabels");
    let result = if !beta_ips.is_empty() {
        let ips = beta_ips.split(',').map(str::trim).filter(|i| !i.is_empty()).map(str::to_owned).collect();
        state.configs.publish_gray(key, GrayRule::BetaIps(ips), content, meta.encrypted_data_key).await
    } else if !gray_labels.is_empty() {
        match registry_proto::model::metadata::parse(&gray_labels) {
            Ok(labels) => {
                state.configs.publish_gray(key, GrayRule::Labels(labels), content, meta.encrypted_data_key).await
            }
            Err(e) => return failed_response(KIND, 400, &e.to_string(), json!({})),
        }
    } else {
        let source = Source { user: addition(a, "src_user"), ip: conn.meta.client_ip.clone() };
        let cas = r.cas_md5.clone().filter(|m| !m.trim().is_empty());
        state.configs.publish(key, content, meta, cas, source).await
    };
    match result {
        Ok(()) => ok_response(KIND, json!({}), None),
        Err(e) => failed_response(KIND, code_of(&e), &e.to_string(), json!({})),
    }
}

async fn remove(state: &GrpcState, conn: &Connection, r: ConfigRequest) -> Payload {
    const KIND: &str = "ConfigRemoveResponse";
    let key = match key_of(&r) {
        Ok(k) => k,
        Err(e) => return failed_response(KIND, code_of(&e), &e.to_string(), json!({})),
    };
    let source = Source { user: String::new(), ip: conn.meta.client_ip.clone() };
    match state.configs.remove(key, source).await {
        Ok(()) => ok_response(KIND, json!({}), None),
        Err(e) => failed_response(KIND, code_of(&e), &e.to_string(), json!({})),
    }
}

fn batch_listen(state: &GrpcState, conn: &Arc<Connection>, r: BatchListenRequest) -> Payload {
    const KIND: &str = "ConfigChangeBatchListenResponse";
    let labels = labels_of(conn);
    let reader = Reader { ip: &conn.meta.client_ip, labels: &labels };
    let mut changed = Vec::new();
    for ctx in r.config_listen_contexts {
        let (data_id, group) = (ctx.data_id.unwrap_or_default(), ctx.group.unwrap_or_default());
        let tenant = ctx.tenant.unwrap_or_default();
        let key = match ConfigKey::new(&tenant, &group, &data_id) {
            Ok(k) => k,
            Err(e) => return failed_response(KIND, 400, &e.to_string(), json!({ "changedConfigs": [] })),
        };
        if !r.listen {
            state.config_notify.unlisten(&key, &conn.meta.connection_id);
            continue;
        }
        let sink: Arc<dyn crate::push::PushSink> = conn.clone();
        state.config_notify.listen(key.clone(), &data_id, &group, &tenant, sink);
        let listening = Listening { key, md5: ctx.md5.unwrap_or_default() };
        if !state.configs.changed(std::slice::from_ref(&listening), reader).is_empty() {
            changed.push(json!({ "dataId": data_id, "group": group, "tenant": tenant }));
        }
    }
    ok_response(KIND, json!({ "changedConfigs": changed }), None)
}
