//! Config HTTP Open API v1 (`/nacos/v1/cs/...`, spec §7.1–§7.4): get/publish/delete with the
//! Nacos headers, search, beta, the long-poll listener, history and rollback.
//!
//! Beyond Nacos: a label gray rule (`grayLabels` header on publish, `grayLabels=true` on delete)
//! and the reader's labels in the `Config-Labels` header (the sidecar sends pod labels there or
//! as gRPC connection labels), so gray release works where client IPs mean nothing.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::on;
use serde_json::{Value, json};

use super::configs::{
    CONFIG_KEY, CONSISTENCY, NID, PAGE, PREVIOUS, PUBLISH, caller_ip, caller_labels, config_key, header,
    history_config_list, history_info, page_of, publish_from, read_consistency, source,
};
use super::error::{ApiError, V1};
use super::openapi::Ty::{Bool, Int, Str};
use super::openapi::{CONFIG_NAME, Guard, NAMESPACE, Param, Reply, Route, Table};
use crate::api::ApiState;
use crate::configs::{ConfigError, ConfigRead, Listening, Reader, archive};
use crate::model::{ConfigItem, ConfigKey, ConfigMeta, GrayKind, GrayRule};
use registry_proto::http::{Params, percent_decode};

type V1Result = Result<Response, V1>;

/// Separates fields of a `Listening-Configs` record.
const WORD_SEPARATOR: char = '\u{2}';
/// Ends a `Listening-Configs` record.
const LINE_SEPARATOR: char = '\u{1}';
/// Longest hold of a long-poll, whatever the client asks (ms).
const MAX_LONG_POLL_MS: u64 = 5 * 60 * 1000;
/// Most keys one long-poll may listen to.
const MAX_LISTEN_KEYS: usize = 10_000;

/// v1 config routes.
pub const TABLE: Table = Table {
    tag: "config v1",
    guard: Guard::ClientApi,
    routes: &[
        Route::get("/nacos/v1/cs/configs", "A config's content; or search, detail, beta, export", |m| {
            on(m, get_config)
        })
        .params(&[
            &[
                Param::opt("dataId", CONFIG_NAME, "Data id (required unless `search`)"),
                Param::opt("group", CONFIG_NAME, "Group (required unless `search`)"),
                Param::opt("tenant", NAMESPACE, "Namespace (default: public)"),
                Param::opt("search", Str, "`accurate` or `blur`: search instead of reading one config"),
                Param::opt("appName", Str, "Search: only this application"),
                Param::opt("config_tags", Str, "Search: only these comma-separated tags"),
                Param::opt("show", Str, "`all`: the config with its description"),
                Param::opt("beta", Bool, "The beta variant"),
                Param::opt("export", Bool, "A zip of the namespace's configs"),
                Param::opt("ids", Str, "Export: only these comma-separated ids"),
            ],
            PAGE,
            CONSISTENCY,
        ])
        .reply(Reply::Text),
        Route::post("/nacos/v1/cs/configs", "Publish a config (or a beta, or `import=true` a zip)", |m| on(m, publish))
            .params(&[CONFIG_KEY, PUBLISH]),
        Route::delete("/nacos/v1/cs/configs", "Delete a config, its beta, or `delType=ids` several", |m| on(m, delete))
            .params(&[
                CONFIG_KEY,
                &[
                    Param::opt("beta", Bool, "Stop the beta variant only"),
                    Param::opt("delType", Str, "`ids`: delete the configs with the given ids"),
                    Param::opt("ids", Str, "Comma-separated ids (with `delType=ids`)"),
                ],
            ]),
        Route::post("/nacos/v1/cs/configs/listener", "Which of the listened configs changed (long poll)", |m| {
            on(m, listener)
        })
        .params(&[&[Param::req(
            "Listening-Configs",
            Str,
            "`dataId^2group^2md5[^2tenant]^1` per config; the `Long-Pulling-Timeout` header holds the answer",
        )]])
        .reply(Reply::Text),
        Route::get("/nacos/v1/cs/history", "A config's history, or one entry by `nid`", |m| on(m, history)).params(&[
            CONFIG_KEY,
            &[Param::opt("nid", Int, "One entry")],
            PAGE,
        ]),
        Route::get("/nacos/v1/cs/history/previous", "The entry before a history entry", |m| on(m, history_previous))
            .params(&[PREVIOUS]),
        Route::get("/nacos/v1/cs/history/configs", "Configs of a namespace that have history", |m| {
            on(m, history_configs)
        })
        .params(&[&[Param::opt("tenant", NAMESPACE, "Namespace (default: public)")]]),
        Route::post("/nacos/v1/cs/history/rollback", "Roll a config back to a history entry", |m| on(m, rollback))
            .params(&[NID]),
    ],
};

fn content_type_of(config_type: &str) -> &'static str {
    match config_type {
        "json" => "application/json;charset=UTF-8",
        "xml" => "application/xml;charset=UTF-8",
        "html" => "text/html;charset=UTF-8",
        _ => "text/plain;charset=UTF-8",
    }
}

fn no_cache(headers: &mut HeaderMap) {
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(header::EXPIRES, HeaderValue::from_static("0"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache,no-store"));
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The plain GET answer: raw content plus Nacos' headers.
fn content_response(read: &ConfigRead) -> Response {
    let config_type = if read.item.meta.config_type.is_empty() { "text" } else { read.item.meta.config_type.as_str() };
    let mut resp = read.content.clone().into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type_of(config_type)));
    h.insert("Config-Type", header_value(config_type));
    h.insert("Content-MD5", header_value(&read.md5));
    let modified = std::time::UNIX_EPOCH + std::time::Duration::from_millis(read.item.modify_time);
    h.insert(header::LAST_MODIFIED, header_value(&httpdate::fmt_http_date(modified)));
    if !read.encrypted_data_key.is_empty() {
        h.insert("Encrypted-Data-Key", header_value(&read.encrypted_data_key));
    }
    if read.gray {
        h.insert("isBeta", HeaderValue::from_static("true"));
    }
    no_cache(h);
    resp
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain;charset=UTF-8")], "config data not exist\n")
        .into_response()
}

/// `show=all`: the page item plus times, author, description and tags.
fn all_info(key: &ConfigKey, item: &ConfigItem) -> Value {
    let mut v = page_item(key, item);
    v["createTime"] = json!(item.create_time);
    v["modifyTime"] = json!(item.modify_time);
    v["createUser"] = json!(item.source.user);
    v["createIp"] = json!(item.source.ip);
    v["desc"] = json!(item.meta.desc);
    v["configTags"] = json!(item.meta.tags);
    v
}

fn page_item(key: &ConfigKey, item: &ConfigItem) -> Value {
    json!({
        "id": item.id.to_string(),
        "dataId": key.data_id,
        "group": key.group,
        "content": item.content,
        "md5": item.md5,
        "encryptedDataKey": item.meta.encrypted_data_key,
        "tenant": key.tenant,
        "appName": item.meta.app_name,
        "type": item.meta.config_type,
    })
}

/// `GET ?export=true` / `?exportV2=true`: a zip of a namespace's configs (optionally one group,
/// one app, or the given `ids`), in Nacos' v2 export format.
fn export(s: &ApiState, p: &Params) -> V1Result {
    let tenant = p.opt_any(&["tenant", "namespaceId"]).unwrap_or_default();
    let ids: Option<Vec<u64>> = p.opt("ids").map(|raw| raw.split(',').filter_map(|i| i.trim().parse().ok()).collect());
    let configs: Vec<_> = s
        .configs
        .search(
            tenant,
            p.opt("dataId").unwrap_or_default(),
            p.opt("group").unwrap_or_default(),
            p.opt("appName").unwrap_or_default(),
            false,
        )
        .into_iter()
        .filter(|(_, i)| ids.as_ref().is_none_or(|ids| ids.contains(&i.id)))
        .collect();
    let bytes = archive::export(&configs).map_err(|e| ApiError::Internal(e.to_string()))?;
    let name = format!("nacos_config_export_{}.zip", registry_proto::clock::now_millis());
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment;filename={name}")),
        ],
        bytes,
    )
        .into_response())
}

/// `POST ?import=true`: publishes every config of an uploaded zip (multipart field `file`, or
/// the raw zip as the body) into the namespace. `policy`: `ABORT` (default: stop at the first
/// config that exists), `SKIP` (keep existing ones) or `OVERWRITE`.
async fn import(s: &ApiState, p: &Params) -> V1Result {
    let tenant = p.opt_any(&["namespace", "tenant", "namespaceId"]).unwrap_or_default().to_owned();
    let policy = p.opt("policy").unwrap_or("ABORT").to_ascii_uppercase();
    if !matches!(policy.as_str(), "ABORT" | "SKIP" | "OVERWRITE") {
        return Err(ApiError::bad_request(format!("unknown policy '{policy}' (ABORT | SKIP | OVERWRITE)")).into());
    }
    let zip = upload(p).await?;
    let entries = archive::import(&zip).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (mut succ, mut skipped, mut failed) = (0usize, Vec::new(), Vec::new());
    for e in entries {
        let pair = json!({ "dataId": e.data_id, "group": e.group });
        let Ok(key) = ConfigKey::new(&tenant, &e.group, &e.data_id) else {
            failed.push(pair);
            continue;
        };
        if s.configs.item(&key).is_some() {
            match policy.as_str() {
                "ABORT" => {
                    failed.push(pair);
                    break;
                }
                "SKIP" => {
                    skipped.push(pair);
                    continue;
                }
                _ => {}
            }
        }
        let meta =
            ConfigMeta { config_type: e.config_type, desc: e.desc, app_name: e.app_name, ..ConfigMeta::default() };
        match s.configs.publish(key, e.content, meta, None, source(p)).await {
            Ok(()) => succ += 1,
            Err(ConfigError::Unavailable(m)) => return Err(ApiError::from(ConfigError::Unavailable(m)).into()),
            Err(_) => failed.push(pair),
        }
    }
    Ok(Json(json!({
        "code": 200,
        "message": "import ok",
        "data": { "succCount": succ, "skipCount": skipped.len(), "failData": failed, "skipData": skipped },
    }))
    .into_response())
}

/// The uploaded bytes: multipart field `file`, or the raw body.
async fn upload(p: &Params) -> Result<bytes::Bytes, ApiError> {
    let content_type = p.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Ok(boundary) = multer::parse_boundary(content_type) else {
        if p.body.is_empty() {
            return Err(ApiError::missing("file"));
        }
        return Ok(p.body.clone());
    };
    let body = p.body.clone();
    let stream = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    while let Some(field) =
        multipart.next_field().await.map_err(|e| ApiError::bad_request(format!("bad multipart body: {e}")))?
    {
        if field.name() == Some("file") {
            return field.bytes().await.map_err(|e| ApiError::bad_request(format!("bad multipart body: {e}")));
        }
    }
    Err(ApiError::missing("file"))
}

async fn get_config(State(s): State<ApiState>, p: Params) -> V1Result {
    read_consistency(&s, &p).await?;
    if p.bool_or(&["export"], false)? || p.bool_or(&["exportV2"], false)? {
        return export(&s, &p);
    }
    if let Some(mode) = p.opt("search") {
        let blur = mode == "blur";
        let tenant = p.opt_any(&["tenant", "namespaceId"]).unwrap_or_default();
        let found = s.configs.search(
            tenant,
            p.opt("dataId").unwrap_or_default(),
            p.opt("group").unwrap_or_default(),
            p.opt("appName").unwrap_or_default(),
            blur,
        );
        let wanted_tags: Vec<&str> = p
            .opt_any(&["config_tags", "configTags"])
            .map(|t| t.split(',').map(str::trim).filter(|t| !t.is_empty()).collect())
            .unwrap_or_default();
        let items: Vec<Value> = found
            .iter()
            .filter(|(_, i)| wanted_tags.is_empty() || i.meta.tags.split(',').any(|t| wanted_tags.contains(&t.trim())))
            .map(|(k, i)| page_item(k, i))
            .collect();
        let page = page_of(&items, p.num("pageNo")?.unwrap_or(1), p.num("pageSize")?.unwrap_or(100));
        return Ok(Json(page).into_response());
    }
    let key = config_key(&p)?;
    if p.opt("show") == Some("all") {
        let Some(item) = s.configs.item(&key) else { return Ok(not_found()) };
        return Ok(Json(all_info(&key, &item)).into_response());
    }
    if p.bool_or(&["beta"], false)? {
        let Some(item) = s.configs.item(&key) else { return Ok(not_found()) };
        let beta = item.gray.iter().find(|g| g.rule.kind() == GrayKind::Beta);
        let data = beta.map(|g| {
            let ips = match &g.rule {
                GrayRule::BetaIps(ips) => ips.join(","),
                GrayRule::Labels(_) => String::new(),
            };
            json!({ "dataId": key.data_id, "group": key.group, "tenant": key.tenant, "content": g.content,
                    "md5": g.md5, "betaIps": ips, "encryptedDataKey": g.encrypted_data_key })
        });
        return Ok(Json(json!({ "code": 200, "message": "query beta ok", "data": data })).into_response());
    }
    if p.opt("tag").is_some() {
        return Err(
            ApiError::bad_request("tag variants are not supported; use beta (betaIps) or label gray rules").into()
        );
    }
    let ip = caller_ip(&p);
    let labels = caller_labels(&p)?;
    match s.configs.get(&key, Reader { ip: &ip, labels: &labels }) {
        Some(read) => Ok(content_response(&read)),
        None => Ok(not_found()),
    }
}

async fn publish(State(s): State<ApiState>, p: Params) -> V1Result {
    if p.bool_or(&["import"], false)? {
        return import(&s, &p).await;
    }
    publish_from(&s, &p).await?;
    Ok(Json(true).into_response())
}

async fn delete(State(s): State<ApiState>, p: Params) -> V1Result {
    if p.opt("delType") == Some("ids") {
        let ids: Vec<u64> = p
            .required("ids")?
            .split(',')
            .map(|i| i.trim().parse::<u64>().map_err(|_| ApiError::bad_request(format!("invalid id '{i}'"))))
            .collect::<Result<_, _>>()?;
        let all = s.configs.search(p.opt_any(&["tenant", "namespaceId"]).unwrap_or_default(), "", "", "", false);
        for (key, _) in all.into_iter().filter(|(_, i)| ids.contains(&i.id)) {
            s.configs.remove(key, source(&p)).await?;
        }
        return Ok(Json(json!({ "code": 200, "message": "delete ok", "data": true })).into_response());
    }
    let key = config_key(&p)?;
    if p.bool_or(&["beta"], false)? {
        s.configs.stop_gray(key, GrayKind::Beta).await?;
        return Ok(Json(json!({ "code": 200, "message": "stop beta ok", "data": true })).into_response());
    }
    if p.bool_or(&["grayLabels"], false)? {
        s.configs.stop_gray(key, GrayKind::Labels).await?;
        return Ok(Json(json!({ "code": 200, "message": "stop gray ok", "data": true })).into_response());
    }
    s.configs.remove(key, source(&p)).await?;
    Ok(Json(true).into_response())
}

/// A listened key as the client spelled it, and its canonical form.
#[derive(Debug)]
pub struct ListenRecord {
    data_id: String,
    group: String,
    tenant: String,
    listening: Listening,
}

/// Parses `Listening-Configs` (already decoded once by the form parser; decoded once more
/// here, as Nacos does): records `dataId^Bgroup^Bmd5[^Btenant]^A`. Public for the fuzz target.
pub fn parse_listening(raw: &str) -> Result<Vec<ListenRecord>, ApiError> {
    let decoded = percent_decode(raw.as_bytes())?;
    let mut out = Vec::new();
    for record in decoded.split(LINE_SEPARATOR).filter(|r| !r.is_empty()) {
        let fields: Vec<&str> = record.split(WORD_SEPARATOR).collect();
        let (data_id, group, md5, tenant) = match fields.as_slice() {
            [d, g, m] => (*d, *g, *m, ""),
            [d, g, m, t] => (*d, *g, *m, *t),
            f if f.len() > 4 => return Err(ApiError::bad_request("invalid protocol,too much key")),
            _ => return Err(ApiError::bad_request("invalid protocol: a record needs dataId, group and md5")),
        };
        let key = ConfigKey::new(tenant, group, data_id).map_err(ConfigError::from)?;
        out.push(ListenRecord {
            data_id: data_id.to_owned(),
            group: group.to_owned(),
            tenant: tenant.to_owned(),
            listening: Listening { key, md5: md5.to_owned() },
        });
        if out.len() > MAX_LISTEN_KEYS {
            return Err(ApiError::bad_request(format!("too many keys: at most {MAX_LISTEN_KEYS} per request")));
        }
    }
    Ok(out)
}

/// Java `URLEncoder` (UTF-8): unreserved `A-Za-z0-9.-*_` kept, space as `+`, the rest `%XX`.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The long-poll answer body: URL-encoded `dataId^Bgroup[^Btenant]^A` records and a line break.
fn changed_body(records: &[ListenRecord], changed: &[usize]) -> String {
    if changed.is_empty() {
        return String::new();
    }
    let mut raw = String::new();
    for &i in changed {
        let r = &records[i];
        raw.push_str(&r.data_id);
        raw.push(WORD_SEPARATOR);
        raw.push_str(&r.group);
        if !r.tenant.is_empty() {
            raw.push(WORD_SEPARATOR);
            raw.push_str(&r.tenant);
        }
        raw.push(LINE_SEPARATOR);
    }
    format!("{}\n", url_encode(&raw))
}

async fn listener(State(s): State<ApiState>, p: Params) -> V1Result {
    let raw = p.values_raw("Listening-Configs").ok_or(ApiError::missing("Listening-Configs"))?;
    let records = parse_listening(raw)?;
    let entries: Vec<Listening> = records.iter().map(|r| r.listening.clone()).collect();
    let ip = caller_ip(&p);
    let labels = caller_labels(&p)?;
    let reader = Reader { ip: &ip, labels: &labels };
    // Negative timeouts hold for the minimum, as in Nacos; absurd ones are capped.
    let timeout = header(&p, "Long-Pulling-Timeout").map(|v| {
        v.parse::<i64>()
            .map(|t| u64::try_from(t).unwrap_or(0).min(MAX_LONG_POLL_MS))
            .map_err(|_| ApiError::bad_request(format!("Long-Pulling-Timeout '{v}' is not a number")))
    });
    let changed = match timeout {
        None => s.configs.changed(&entries, reader),
        Some(t) => {
            let no_hangup =
                header(&p, "Long-Pulling-Timeout-No-Hangup").is_some_and(|v| v.eq_ignore_ascii_case("true"));
            s.configs.long_poll(&entries, reader, s.configs.hold_time(t?), no_hangup).await
        }
    };
    let mut resp = changed_body(&records, &changed).into_response();
    no_cache(resp.headers_mut());
    Ok(resp)
}

async fn history(State(s): State<ApiState>, p: Params) -> V1Result {
    if let Some(nid) = p.num::<u64>("nid")? {
        let key = config_key(&p)?;
        let entry = s.configs.history_entry(nid).filter(|h| h.key == key).ok_or(ConfigError::HistoryNotFound)?;
        return Ok(Json(history_info(&entry, None)).into_response());
    }
    let key = config_key(&p)?;
    let entries: Vec<Value> = s.configs.history(&key).iter().map(|h| history_info(h, None)).collect();
    let page_size = p.num::<usize>("pageSize")?.unwrap_or(100).min(500);
    Ok(Json(page_of(&entries, p.num("pageNo")?.unwrap_or(1), page_size)).into_response())
}

async fn history_previous(State(s): State<ApiState>, p: Params) -> V1Result {
    let id: u64 = p.required_num("id")?;
    let prev = s.configs.history_previous(id).ok_or(ConfigError::HistoryNotFound)?;
    Ok(Json(history_info(&prev, None)).into_response())
}

async fn history_configs(State(s): State<ApiState>, p: Params) -> V1Result {
    let tenant = p.opt_any(&["tenant", "namespaceId"]).unwrap_or_default();
    Ok(Json(history_config_list(&s, tenant)).into_response())
}

/// Beyond Nacos' API (its console republishes by hand): republish a history entry.
async fn rollback(State(s): State<ApiState>, p: Params) -> V1Result {
    let nid: u64 = p.required_num("nid")?;
    s.configs.rollback(nid, source(&p)).await?;
    Ok(Json(true).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_configs_parse_with_and_without_tenant() {
        let raw = "a\u{2}G\u{2}abc\u{1}b\u{2}G\u{2}\u{2}dev\u{1}";
        let recs = parse_listening(&url_encode(raw)).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!((recs[0].tenant.as_str(), recs[0].listening.md5.as_str()), ("", "abc"));
        assert_eq!((recs[1].tenant.as_str(), recs[1].listening.key.tenant.as_str()), ("dev", "dev"));
        assert!(parse_listening("a\u{2}b\u{2}c\u{2}d\u{2}e\u{1}").is_err());
        assert!(parse_listening("onlyone\u{1}").is_err());
    }

    #[test]
    fn changed_body_is_url_encoded_records_with_a_line_break() {
        let recs = parse_listening("a\u{2}G\u{2}x\u{1}b\u{2}G\u{2}y\u{2}dev\u{1}").unwrap();
        assert_eq!(changed_body(&recs, &[0, 1]), "a%02G%01b%02G%02dev%01\n");
        assert_eq!(changed_body(&recs, &[]), "");
    }

    #[test]
    fn url_encode_matches_java() {
        assert_eq!(url_encode("a b+c*~"), "a+b%2Bc*%7E");
    }
}
