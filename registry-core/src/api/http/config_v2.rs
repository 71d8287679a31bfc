//! Config HTTP Open API v2 (`/nacos/v2/cs/...`, spec §7.5): v1's semantics with `namespaceId`
//! and the `{code, message, data}` envelope. Gray rules have their own endpoint here.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::Value;

use super::configs::{
    caller_ip, caller_labels, config_key, gray_rule, history_config_list, history_info, page_of, publish_from,
    read_consistency, source,
};
use super::error::{ApiError, V2, v2_ok};
use crate::api::ApiState;
use crate::configs::{ConfigError, Reader};
use crate::model::GrayKind;
use registry_proto::http::{ParamError, Params};

type V2Result = Result<Response, V2>;
type P = Result<Params, ParamError>;

/// v2 config routes.
pub fn routes() -> Router<ApiState> {
    let cs = Router::new()
        .route("/config", get(get_config).post(publish).delete(delete))
        .route("/config/gray", post(publish_gray).delete(stop_gray))
        .route("/history/list", get(history_list))
        .route("/history", get(history_one))
        .route("/history/previous", get(history_previous))
        .route("/history/configs", get(history_configs))
        .route("/history/rollback", post(rollback));
    Router::new().nest("/nacos/v2/cs", cs)
}

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
