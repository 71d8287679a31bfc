//! Config request decoding and answer bodies shared by the v1 and v2 routes (`config_v1.rs`,
//! `config_v2.rs`): the key, the caller (IP, labels, source), read consistency, publish with
//! gray rules and compare-and-swap, Nacos' `Page` and the history bodies. The routes only wrap
//! these in their envelope (v1 plain, v2 `{code, message, data}`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::error::ApiError;
use super::openapi::Ty::{Int, Str};
use super::openapi::{CONFIG_NAME, NAMESPACE, Param};
use crate::api::ApiState;
use crate::configs::ConfigError;
use crate::model::{ConfigKey, ConfigMeta, GrayRule, HistoryEntry, Source};
use registry_proto::contract::config::LABELS_HEADER;
use registry_proto::http::Params;
use registry_proto::model::metadata::parse as parse_metadata;

/// A config: `dataId`, `group`, `tenant` (the namespace).
pub(super) const CONFIG_KEY: &[Param] = &[
    Param::req("dataId", CONFIG_NAME, "Data id"),
    Param::req("group", CONFIG_NAME, "Group"),
    Param::opt("tenant", NAMESPACE, "Namespace (default: public)"),
];

/// A config on v2 paths, whose namespace parameter is `namespaceId`.
pub(super) const CONFIG_KEY_V2: &[Param] = &[
    Param::req("dataId", CONFIG_NAME, "Data id"),
    Param::req("group", CONFIG_NAME, "Group"),
    Param::opt("namespaceId", NAMESPACE, "Namespace (default: public)"),
];

/// A publish: the content, its description and an optional gray rule or compare-and-swap.
pub(super) const PUBLISH: &[Param] = &[
    Param::req("content", Str, "Content"),
    Param::opt("type", Str, "Format (text, json, yaml, properties, xml, html)"),
    Param::opt("desc", Str, "Description"),
    Param::opt("config_tags", Str, "Comma-separated tags"),
    Param::opt("appName", Str, "Application"),
    Param::opt("encryptedDataKey", Str, "Data key of encrypted content"),
    Param::opt("betaIps", Str, "Publish as beta to these comma-separated client IPs"),
    Param::opt("grayLabels", Str, "Publish as gray to clients with these labels (`k=v,...`)"),
    Param::opt("casMd5", Str, "Publish only if the current content has this MD5"),
    Param::opt("src_user", Str, "Who publishes (history)"),
];

/// A history entry by id.
pub(super) const NID: &[Param] = &[Param::req("nid", Int, "History entry id")];

/// The entry before a history entry.
pub(super) const PREVIOUS: &[Param] = &[Param::req("id", Int, "History entry id")];

/// Nacos' paging, 1-based.
pub(super) const PAGE: &[Param] =
    &[Param::opt("pageNo", Int, "Page, from 1"), Param::opt("pageSize", Int, "Items per page")];

/// Read consistency of config reads.
pub(super) const CONSISTENCY: &[Param] =
    &[Param::opt("consistency", Str, "`local` (default) or `linearizable` (after a Raft read barrier)")];

/// The config key from `dataId`, `group` and `tenant` (or `namespaceId`).
pub(super) fn config_key(p: &Params) -> Result<ConfigKey, ApiError> {
    let data_id = p.required("dataId")?;
    let group = p.required("group")?;
    let tenant = p.opt_any(&["tenant", "namespaceId"]).unwrap_or_default();
    Ok(ConfigKey::new(tenant, group, data_id).map_err(ConfigError::from)?)
}

/// Honours `consistency=linearizable` (a ReadIndex barrier before the read, see
/// `ConfigService::read_barrier`); `consistency=local` or none reads local state at once.
pub(super) async fn read_consistency(s: &ApiState, p: &Params) -> Result<(), ApiError> {
    match p.opt("consistency") {
        None | Some("local") => Ok(()),
        Some("linearizable") => Ok(s.configs.read_barrier().await?),
        Some(other) => Err(ApiError::bad_request(format!("consistency '{other}' is not one of: local, linearizable"))),
    }
}

/// The caller's IP: `X-Forwarded-For` / `X-Real-IP` first (proxies), else the peer address.
pub(super) fn caller_ip(p: &Params) -> String {
    let header =
        |name: &str| p.headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    if let Some(xff) = header("x-forwarded-for") {
        return xff.split(',').next().unwrap_or_default().trim().to_owned();
    }
    if let Some(real) = header("x-real-ip") {
        return real.to_owned();
    }
    p.remote.map(|r| r.ip().to_string()).unwrap_or_default()
}

/// The caller's labels from the [`LABELS_HEADER`] header.
pub(super) fn caller_labels(p: &Params) -> Result<BTreeMap<String, String>, ApiError> {
    match p.headers.get(LABELS_HEADER).and_then(|v| v.to_str().ok()) {
        Some(raw) if !raw.trim().is_empty() => Ok(parse_metadata(raw)?),
        _ => Ok(BTreeMap::new()),
    }
}

/// Who made a change: `src_user` and the caller's IP.
pub(super) fn source(p: &Params) -> Source {
    Source { user: p.opt_any(&["src_user", "srcUser"]).unwrap_or_default().to_owned(), ip: caller_ip(p) }
}

/// Nacos' `Page`: `{totalCount, pageNumber, pagesAvailable, pageItems}`.
pub(super) fn page_of<T: Clone + serde::Serialize>(items: &[T], page_no: usize, page_size: usize) -> Value {
    let page_no = page_no.max(1);
    let page_size = page_size.max(1);
    let pages = items.len().div_ceil(page_size);
    let slice: Vec<T> = items.iter().skip((page_no - 1).saturating_mul(page_size)).take(page_size).cloned().collect();
    json!({ "totalCount": items.len(), "pageNumber": page_no, "pagesAvailable": pages, "pageItems": slice })
}

/// Publish metadata from `type`, `desc`, `config_tags`, `appName` and `encryptedDataKey`.
fn meta_from(p: &Params) -> ConfigMeta {
    ConfigMeta {
        config_type: p.opt("type").unwrap_or("text").to_owned(),
        desc: p.opt("desc").unwrap_or_default().to_owned(),
        tags: p.opt_any(&["config_tags", "configTags"]).unwrap_or_default().to_owned(),
        app_name: p.opt("appName").unwrap_or_default().to_owned(),
        encrypted_data_key: p.opt("encryptedDataKey").unwrap_or_default().to_owned(),
    }
}

/// A non-blank request header.
pub(super) fn header<'a>(p: &'a Params, name: &str) -> Option<&'a str> {
    p.headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// Gray rule from the `betaIps` or `grayLabels` header (or parameter), if any.
pub(super) fn gray_rule(p: &Params) -> Result<Option<GrayRule>, ApiError> {
    if let Some(ips) = header(p, "betaIps").or_else(|| p.opt("betaIps")) {
        let ips: Vec<String> = ips.split(',').map(str::trim).filter(|i| !i.is_empty()).map(str::to_owned).collect();
        return Ok(Some(GrayRule::BetaIps(ips)));
    }
    if let Some(labels) = header(p, "grayLabels").or_else(|| p.opt("grayLabels")) {
        return Ok(Some(GrayRule::Labels(parse_metadata(labels)?)));
    }
    Ok(None)
}

/// Publishes; with a gray header, publishes the gray variant; with `casMd5`, compare-and-swap.
pub(super) async fn publish_from(s: &ApiState, p: &Params) -> Result<(), ApiError> {
    let key = config_key(p)?;
    if p.opt("tag").is_some() {
        return Err(ApiError::bad_request("tag variants are not supported; use beta (betaIps) or label gray rules"));
    }
    let content = p.values_raw("content").ok_or(ApiError::missing("content"))?.to_owned();
    let meta = meta_from(p);
    if let Some(rule) = gray_rule(p)? {
        s.configs.publish_gray(key, rule, content, meta.encrypted_data_key).await?;
        return Ok(());
    }
    let cas = header(p, "casMd5").or_else(|| p.opt("casMd5")).map(str::to_owned);
    s.configs.publish(key, content, meta, cas, source(p)).await?;
    Ok(())
}

/// One history entry as Nacos' `ConfigHistoryInfo` (`lastId` -1 when not given).
pub(super) fn history_info(h: &HistoryEntry, last_id: Option<u64>) -> Value {
    json!({
        "id": h.id.to_string(),
        "lastId": last_id.map_or(-1, |i| i as i64),
        "dataId": h.key.data_id,
        "group": h.key.group,
        "tenant": h.key.tenant,
        "appName": h.app_name,
        "md5": h.md5,
        "content": h.content,
        "srcIp": h.source.ip,
        "srcUser": h.source.user,
        "opType": h.op.code(),
        "createdTime": h.time,
        "lastModifiedTime": h.time,
        "encryptedDataKey": h.encrypted_data_key,
    })
}

/// Configs of a namespace that have history, as `[{dataId, group, tenant}]`.
pub(super) fn history_config_list(s: &ApiState, tenant: &str) -> Vec<Value> {
    s.configs
        .history_configs(tenant)
        .into_iter()
        .map(|k| json!({ "dataId": k.data_id, "group": k.group, "tenant": k.tenant }))
        .collect()
}
