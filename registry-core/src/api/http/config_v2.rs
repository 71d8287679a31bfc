//! Config HTTP Open API v2 (`/nacos/v2/cs/...`, spec §7.5): v1's semantics with `namespaceId`
//! and the `{code, message, data}` envelope. Gray rules have their own endpoint here.

use axum::extract::State;
use axum::response::Response;
use axum::routing::on;
use serde_json::Value;

use super::configs::{
    CONFIG_KEY_V2, CONSISTENCY, NID, PAGE, PREVIOUS, PUBLISH, caller_ip, caller_labels, config_key, gray_rule,
    history_config_list, history_info, page_of, publish_from, read_consistency, source,
};
use super::error::{ApiError, V2, v2_ok};
use super::openapi::Ty::Str;
use super::openapi::{Guard, NAMESPACE, Param, Route, Table};
use crate::api::ApiState;
use crate::configs::{ConfigError, Reader};
use crate::model::GrayKind;
use registry_proto::http::{ParamError, Params};

type V2Result = Result<Response, V2>;
type P = Result<Params, ParamError>;

/// v2 config routes.
pub const TABLE: Table = Table {
    tag: "config v2",
    guard: Guard::ClientApi,
    routes: &[
        Route::get("/nacos/v2/cs/config", "A config's content", |m| on(m, get_config))
            .params(&[CONFIG_KEY_V2, CONSISTENCY]),
        Route::post("/nacos/v2/cs/config", "Publish a config", |m| on(m, publish)).params(&[CONFIG_KEY_V2, PUBLISH]),
        Route::delete("/nacos/v2/cs/config", "Delete a config", |m| on(m, delete)).params(&[CONFIG_KEY_V2]),
        Route::post("/nacos/v2/cs/config/gray", "Publish a gray variant (beta IPs or labels)", |m| on(m, publish_gray))
            .params(&[
                CONFIG_KEY_V2,
                &[
                    Param::req("content", Str, "Content of the variant"),
                    Param::opt("betaIps", Str, "Comma-separated client IPs"),
                    Param::opt("grayLabels", Str, "Client labels, `k=v,...` or JSON"),
                    Param::opt("encryptedDataKey", Str, "Data key of encrypted content"),
                ],
            ]),
        Route::delete("/nacos/v2/cs/config/gray", "Stop a gray variant", |m| on(m, stop_gray))
            .params(&[CONFIG_KEY_V2, &[Param::opt("kind", Str, "`beta` (default) or `labels`")]]),
        Route::get("/nacos/v2/cs/history/list", "A config's history", |m| on(m, history_list))
            .params(&[CONFIG_KEY_V2, PAGE]),
        Route::get("/nacos/v2/cs/history", "One history entry", |m| on(m, history_one)).params(&[CONFIG_KEY_V2, NID]),
        Route::get("/nacos/v2/cs/history/previous", "The entry before a history entry", |m| on(m, history_previous))
            .params(&[PREVIOUS]),
        Route::get("/nacos/v2/cs/history/configs", "Configs of a namespace that have history", |m| {
            on(m, history_configs)
        })
        .params(&[&[Param::opt("namespaceId", NAMESPACE, "Namespace (default: public)")]]),
        Route::post("/nacos/v2/cs/history/rollback", "Roll a config back to a history entry", |m| on(m, rollback))
            .params(&[NID]),
    ],
};

async fn get_config(State(s): State<ApiState>, p: P) -> V2Result {
    let p = p?;
    read_consistency(&s, &p).await?;
    let key = config_key(&p)?;
    let ip = caller_ip(&p);
    let labels = caller_labels(&p)?;
    let read = s.configs.get(&key, Reader { ip: &ip, labels: &labels }).ok_or(ConfigError::NotFound)?;
    Ok(v2_ok(read.content))
}

async fn publish(State(s): State<ApiState>, p: P) -> V2Result {
    let p = p?;
    publish_from(&s, &p).await?;
    Ok(v2_ok(true))
}

async fn delete(State(s): State<ApiState>, p: P) -> V2Result {
    let p = p?;
    let key = config_key(&p)?;
    s.configs.remove(key, source(&p)).await?;
    Ok(v2_ok(true))
}

/// Publishes a gray variant: `betaIps` (comma list) or `grayLabels` (`k=v,...` or JSON).
async fn publish_gray(State(s): State<ApiState>, p: P) -> V2Result {
    let p = p?;
    let key = config_key(&p)?;
    let rule = gray_rule(&p)?.ok_or(ApiError::missing("betaIps"))?;
    let content = p.values_raw("content").ok_or(ApiError::missing("content"))?.to_owned();
    let edk = p.opt("encryptedDataKey").unwrap_or_default().to_owned();
    s.configs.publish_gray(key, rule, content, edk).await?;
    Ok(v2_ok(true))
}

/// Stops a gray variant: `kind` = `beta` (default) or `labels`.
async fn stop_gray(State(s): State<ApiState>, p: P) -> V2Result {
    let p = p?;
    let key = config_key(&p)?;
    let kind = match p.opt("kind").unwrap_or("beta") {
        "beta" => GrayKind::Beta,
        "labels" => GrayKind::Labels,
        other => return Err(ApiError::bad_request(format!("unknown gray kind '{other}' (beta | labels)")).into()),
    };
    s.configs.stop_gray(key, kind).await?;
    Ok(v2_ok(true))
}

async fn history_list(State(s): State<ApiState>, p: P) -> V2Result {
    let p = p?;
    let key = config_key(&p)?;
    let entries: Vec<Value> = s.configs.history(&key).iter().map(|h| history_info(h, None)).collect();
    let page_size = p.num::<usize>("pageSize")?.unwrap_or(100).min(500);
    Ok(v2_ok(page_of(&entries, p.num("pageNo")?.unwrap_or(1), page_size)))
}

async fn history_one(State(s): State<ApiState>, p: P) -> V2Result {
    let p = p?;
    let key = config_key(&p)?;
    let nid: u64 = p.required_num("nid")?;
    let entry = s.configs.history_entry(nid).filter(|h| h.key == key).ok_or(ConfigError::HistoryNotFound)?;
    Ok(v2_ok(history_info(&entry, None)))
}

async fn history_previous(State(s): State<ApiState>, p: P) -> V2Result {
    let p = p?;
    let id: u64 = p.required_num("id")?;
    let prev = s.configs.history_previous(id).ok_or(ConfigError::HistoryNotFound)?;
    Ok(v2_ok(history_info(&prev, None)))
}

async fn history_configs(State(s): State<ApiState>, p: P) -> V2Result {
    let p = p?;
    Ok(v2_ok(history_config_list(&s, p.opt_any(&["namespaceId", "tenant"]).unwrap_or_default())))
}

async fn rollback(State(s): State<ApiState>, p: P) -> V2Result {
    let p = p?;
    let nid: u64 = p.required_num("nid")?;
    s.configs.rollback(nid, source(&p)).await?;
    Ok(v2_ok(true))
}
