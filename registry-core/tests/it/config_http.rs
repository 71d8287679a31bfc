//! The config center over the HTTP Open API, v1 and v2 (spec §2.1, §7, §13.6, §16 items 11–12),
//! driven with plain HTTP: publish/get/delete with Nacos' headers, search and paging, namespace
//! normalisation, the long-poll listener (immediate answers, wake-ups, timeouts, No-Hangup,
//! tenants), history and rollback, compare-and-swap, gray release by IP (beta) and by label (our
//! extension), durability across `kill -9`, and refusal of bad input.

use std::time::{Duration, Instant};

use reqwest::RequestBuilder;
use serde_json::Value;

use crate::harness::{Server, call, client, eventually, json, md5_hex, patience};

const CONFIGS: &str = "/nacos/v1/cs/configs";
const LISTENER: &str = "/nacos/v1/cs/configs/listener";
const HISTORY: &str = "/nacos/v1/cs/history";
const V2_CONFIG: &str = "/nacos/v2/cs/config";
const V2_GRAY: &str = "/nacos/v2/cs/config/gray";
const GROUP: &str = "DEFAULT_GROUP";
/// Server settings that make a held long-poll end after ≈ `Long-Pulling-Timeout` − 100 ms.
const SHORT_POLL: &str = "[configs]\nlong_poll_min_ms = 300\nlong_poll_margin_ms = 100\n";

// ---- helpers ----------------------------------------------------------------------------------

/// Java `URLEncoder` (UTF-8), written out here so the expected long-poll bodies do not come
/// from the server's own encoder.
fn java_url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => out.push(char::from(b)),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `POST /nacos/v1/cs/configs` with form fields; (status, body).
async fn publish_form(server: &Server, form: &[(&str, &str)]) -> (u16, String) {
    call(client().post(server.url(CONFIGS)).form(form)).await
}

/// Publishes `content` (default namespace, `DEFAULT_GROUP` unless `extra` says otherwise) and
/// asserts the v1 success body `true`.
async fn publish(server: &Server, data_id: &str, content: &str, extra: &[(&str, &str)]) {
    let mut form = vec![("dataId", data_id), ("content", content)];
    if !extra.iter().any(|(k, _)| *k == "group") {
        form.push(("group", GROUP));
    }
    form.extend_from_slice(extra);
    let (status, body) = publish_form(server, &form).await;
    assert_eq!((status, body.as_str()), (200, "true"), "publish {form:?}");
}

/// A plain v1 GET: (status, body, response headers).
async fn get_raw(req: RequestBuilder) -> (u16, String, reqwest::header::HeaderMap) {
    let resp = req.send().await.expect("GET config");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.text().await.expect("body"), headers)
}

fn get_req(server: &Server, data_id: &str, group: &str, tenant: Option<&str>) -> RequestBuilder {
    let mut q = vec![("dataId", data_id), ("group", group)];
    if let Some(t) = tenant {
        q.push(("tenant", t));
    }
    client().get(server.url(CONFIGS)).query(&q)
}

/// GET content (default group): (status, body).
async fn get(server: &Server, data_id: &str, tenant: Option<&str>) -> (u16, String) {
    call(get_req(server, data_id, GROUP, tenant)).await
}

/// Asserts a GET answers 200 with exactly `want`.
async fn expect_content(server: &Server, data_id: &str, tenant: Option<&str>, want: &str) {
    let (status, body) = get(server, data_id, tenant).await;
    assert_eq!((status, body.as_str()), (200, want), "GET {data_id} tenant={tenant:?}");
}

/// Asserts a GET answers Nacos' 404.
async fn expect_missing(server: &Server, data_id: &str, tenant: Option<&str>) {
    let (status, body) = get(server, data_id, tenant).await;
    assert_eq!((status, body.as_str()), (404, "config data not exist\n"), "GET {data_id} tenant={tenant:?}");
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// One `Listening-Configs` record without tenant.
fn rec(data_id: &str, group: &str, md5: &str) -> String {
    format!("{data_id}\u{2}{group}\u{2}{md5}\u{1}")
}

/// One `Listening-Configs` record with tenant.
fn rec_t(data_id: &str, group: &str, md5: &str, tenant: &str) -> String {
    format!("{data_id}\u{2}{group}\u{2}{md5}\u{2}{tenant}\u{1}")
}

/// The expected long-poll answer for changed keys `(dataId, group, tenant)`.
fn changed_body(keys: &[(&str, &str, &str)]) -> String {
    let mut raw = String::new();
    for (d, g, t) in keys {
        raw.push_str(d);
        raw.push('\u{2}');
        raw.push_str(g);
        if !t.is_empty() {
            raw.push('\u{2}');
            raw.push_str(t);
        }
        raw.push('\u{1}');
    }
    format!("{}\n", java_url_encode(&raw))
}

/// A long-poll request: `Listening-Configs` as a form field, the given headers.
fn listen_req(server: &Server, listening: &str, headers: &[(&str, &str)]) -> RequestBuilder {
    let mut req = client().post(server.url(LISTENER)).form(&[("Listening-Configs", listening)]);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req
}

/// Sends a long-poll and measures it: (status, body, elapsed, response headers).
async fn poll(req: RequestBuilder) -> (u16, String, Duration, reqwest::header::HeaderMap) {
    let started = Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(60) * patience(), req.send())
        .await
        .expect("long-poll answered within 60 s")
        .expect("long-poll request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.expect("long-poll body");
    (status, body, started.elapsed(), headers)
}

/// Spawns a long-poll; the task yields (status, body, instant it answered).
fn spawn_poll(req: RequestBuilder) -> tokio::task::JoinHandle<(u16, String, Instant)> {
    tokio::spawn(async move {
        let (status, body, _, _) = poll(req).await;
        (status, body, Instant::now())
    })
}

/// Awaits a spawned long-poll (bounded).
async fn join_poll(task: tokio::task::JoinHandle<(u16, String, Instant)>) -> (u16, String, Instant) {
    tokio::time::timeout(Duration::from_secs(60) * patience(), task)
        .await
        .expect("long-poll task finished")
        .expect("long-poll task did not panic")
}

/// Long-polls the server holds right now (past their MD5 comparison, waiting), from its
/// `/metrics` gauge: how a test knows a request is held instead of guessing from a sleep.
async fn held_polls(server: &Server) -> u64 {
    let (_, text) = call(client().get(server.url("/metrics"))).await;
    text.lines()
        .find_map(|l| l.strip_prefix("registry_config_long_polls_held ")?.trim().parse().ok())
        .expect("registry_config_long_polls_held in /metrics")
}

/// Waits (bounded) until the server holds exactly `n` long-polls: the spawned ones reached it
/// and found nothing changed, before the test changes anything.
async fn let_poll_settle(server: &Server, n: u64) {
    let held = eventually(Duration::from_secs(10), || async { (held_polls(server).await == n).then_some(()) }).await;
    assert!(held.is_some(), "expected {n} held long-polls, the server holds {}", held_polls(server).await);
}

/// A causal barrier for "this change did not answer that poll": holds one more poll on a key of
/// its own, publishes that key and waits for the answer. The one notifier task handles changes
/// in order, so every change made before the barrier has been delivered once it returns; the
/// polls that must stay held are then checked through the gauge, not after a quiet period.
async fn notifier_barrier(server: &Server) {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let key = format!("barrier-{}.yaml", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let before = held_polls(server).await;
    let task = spawn_poll(listen_req(server, &rec(&key, GROUP, ""), &[("Long-Pulling-Timeout", "30000")]));
    let_poll_settle(server, before + 1).await;
    publish(server, &key, "barrier", &[]).await;
    let (_, body, _) = join_poll(task).await;
    assert_eq!(body, changed_body(&[(key.as_str(), GROUP, "")]));
}

/// `GET /nacos/v1/cs/history?search=accurate` page items (default group, namespace).
async fn history_items(server: &Server, data_id: &str) -> Vec<Value> {
    let (status, body) = call(client().get(server.url(HISTORY)).query(&[
        ("search", "accurate"),
        ("dataId", data_id),
        ("group", GROUP),
        ("pageNo", "1"),
        ("pageSize", "100"),
    ]))
    .await;
    assert_eq!(status, 200, "history {data_id}: {body}");
    let page = json(&body);
    assert_page_shape(&page);
    page["pageItems"].as_array().cloned().unwrap_or_default()
}

fn assert_page_shape(page: &Value) {
    for field in ["totalCount", "pageNumber", "pagesAvailable"] {
        assert!(page[field].is_u64(), "page field {field} missing or not a number: {page}");
    }
    assert!(page["pageItems"].is_array(), "pageItems missing: {page}");
}

fn str_field<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_else(|| panic!("{field} is not a string in {v}"))
}

/// `id` of a JSON item (Nacos serialises ids as strings; accept numbers too).
fn id_of(v: &Value) -> String {
    match &v["id"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("id missing: {other} in {v}"),
    }
}

fn v2_envelope_ok(body: &str) -> Value {
    let v = json(body);
    assert_eq!((v["code"].as_i64(), v["message"].as_str()), (Some(0), Some("success")), "v2 envelope: {body}");
    v["data"].clone()
}

// ---- get / publish / delete -------------------------------------------------------------------

#[tokio::test]
async fn publish_get_delete_with_nacos_headers() {
    let server = Server::start();
    let content = "{\"name\":\"orders\",\"port\":8080}";
    publish(&server, "app.json", content, &[("type", "json")]).await;

    let (status, body, headers) = get_raw(get_req(&server, "app.json", GROUP, None)).await;
    assert_eq!((status, body.as_str()), (200, content));
    assert_eq!(header(&headers, "Content-MD5"), Some(md5_hex(content).as_str()));
    assert_eq!(header(&headers, "Config-Type"), Some("json"));
    assert_eq!(header(&headers, "Content-Type"), Some("application/json;charset=UTF-8"));
    assert_eq!(header(&headers, "Pragma"), Some("no-cache"));
    assert_eq!(header(&headers, "Expires"), Some("0"));
    assert_eq!(header(&headers, "Cache-Control"), Some("no-cache,no-store"));
    assert!(header(&headers, "Last-Modified").is_some(), "Last-Modified missing: {headers:?}");
    assert!(header(&headers, "isBeta").is_none(), "formal content must not say isBeta: {headers:?}");

    // Non-ASCII text: the MD5 is over the UTF-8 bytes, the type defaults to text; whitespace
    // inside content is data.
    let text = "名字=订单服务\n  port = 8080 \n";
    publish(&server, "app.properties", text, &[]).await;
    let (status, body, headers) = get_raw(get_req(&server, "app.properties", GROUP, None)).await;
    assert_eq!((status, body.as_str()), (200, text));
    assert_eq!(header(&headers, "Content-MD5"), Some(md5_hex(text).as_str()));
    assert_eq!(header(&headers, "Config-Type"), Some("text"));
    assert_eq!(header(&headers, "Content-Type"), Some("text/plain;charset=UTF-8"));

    // Other types map to their Content-Type; an unknown type is stored as text.
    publish(&server, "page.html", "<p>hi</p>", &[("type", "html")]).await;
    let (_, _, headers) = get_raw(get_req(&server, "page.html", GROUP, None)).await;
    assert_eq!(header(&headers, "Content-Type"), Some("text/html;charset=UTF-8"));
    publish(&server, "conf.xml", "<a/>", &[("type", "xml")]).await;
    let (_, _, headers) = get_raw(get_req(&server, "conf.xml", GROUP, None)).await;
    assert_eq!(header(&headers, "Content-Type"), Some("application/xml;charset=UTF-8"));
    publish(&server, "odd", "x=1", &[("type", "no-such-type")]).await;
    let (_, _, headers) = get_raw(get_req(&server, "odd", GROUP, None)).await;
    assert_eq!(header(&headers, "Config-Type"), Some("text"));

    // Parameters in the query string of a body-less POST work like form fields (spec §3).
    let (status, body) =
        call(client().post(server.url(CONFIGS)).query(&[("dataId", "q.yaml"), ("group", "G1"), ("content", "a: 1")]))
            .await;
    assert_eq!((status, body.as_str()), (200, "true"));
    let (status, body) = call(get_req(&server, "q.yaml", "G1", None)).await;
    assert_eq!((status, body.as_str()), (200, "a: 1"));

    // Characters that form encoding and URL decoding could mangle survive a round trip.
    let tricky = "a+b=c&d=%20%zz ü\r\n\u{2}\u{1}end";
    publish(&server, "tricky", tricky, &[]).await;
    let (_, body, headers) = get_raw(get_req(&server, "tricky", GROUP, None)).await;
    assert_eq!(body, tricky);
    assert_eq!(header(&headers, "Content-MD5"), Some(md5_hex(tricky).as_str()));

    // Updating replaces the content and the MD5.
    publish(&server, "app.json", "{\"name\":\"orders\",\"port\":9090}", &[("type", "json")]).await;
    let (_, _, headers) = get_raw(get_req(&server, "app.json", GROUP, None)).await;
    assert_eq!(header(&headers, "Content-MD5"), Some(md5_hex("{\"name\":\"orders\",\"port\":9090}").as_str()));

    // Missing → 404 with Nacos' body; a group is part of the identity.
    expect_missing(&server, "nope.yaml", None).await;
    let (status, body) = call(get_req(&server, "app.json", "OTHER_GROUP", None)).await;
    assert_eq!((status, body.as_str()), (404, "config data not exist\n"));

    // DELETE (parameters in the query) → true, then 404; deleting again is still `true`.
    let del = || client().delete(server.url(CONFIGS)).query(&[("dataId", "app.json"), ("group", GROUP)]);
    let (status, body) = call(del()).await;
    assert_eq!((status, body.as_str()), (200, "true"));
    expect_missing(&server, "app.json", None).await;
    let (status, body) = call(del()).await;
    assert_eq!((status, body.as_str()), (200, "true"), "deleting a missing config is not an error");
    expect_content(&server, "app.properties", None, text).await;
}

#[tokio::test]
async fn show_all_and_search_pages() {
    let server = Server::start();
    publish(
        &server,
        "app.yaml",
        "a: 1",
        &[("type", "yaml"), ("appName", "orders"), ("desc", "the app"), ("config_tags", "t1,t2")],
    )
    .await;
    publish(&server, "app.properties", "a=1", &[("type", "properties")]).await;
    publish(&server, "db.yaml", "db: 1", &[("type", "yaml")]).await;
    publish(&server, "cache.yaml", "c: 1", &[("group", "G2")]).await;
    publish(&server, "app.yaml", "dev: 1", &[("tenant", "dev")]).await;

    // show=all: the ConfigAllInfo fields.
    let (status, body) =
        call(client().get(server.url(CONFIGS)).query(&[("dataId", "app.yaml"), ("group", GROUP), ("show", "all")]))
            .await;
    assert_eq!(status, 200, "{body}");
    let all = json(&body);
    assert_eq!(str_field(&all, "dataId"), "app.yaml");
    assert_eq!(str_field(&all, "group"), GROUP);
    assert_eq!(str_field(&all, "content"), "a: 1");
    assert_eq!(str_field(&all, "md5"), md5_hex("a: 1"));
    assert_eq!(str_field(&all, "type"), "yaml");
    assert_eq!(str_field(&all, "appName"), "orders");
    assert_eq!(str_field(&all, "desc"), "the app");
    assert_eq!(str_field(&all, "configTags"), "t1,t2");
    assert_eq!(str_field(&all, "tenant"), "");
    assert!(!id_of(&all).is_empty());
    for field in ["createTime", "modifyTime"] {
        assert!(all[field].as_u64().is_some_and(|t| t > 0), "{field}: {all}");
    }
    let (status, body) =
        call(client().get(server.url(CONFIGS)).query(&[("dataId", "none"), ("group", GROUP), ("show", "all")])).await;
    assert_eq!(status, 404, "show=all of a missing config: {body}");

    let search = |query: Vec<(&'static str, &'static str)>| {
        let server = &server;
        async move {
            let (status, body) = call(client().get(server.url(CONFIGS)).query(&query)).await;
            assert_eq!(status, 200, "search {query:?}: {body}");
            let page = json(&body);
            assert_page_shape(&page);
            page
        }
    };
    let ids = |page: &Value| -> Vec<String> {
        let mut v: Vec<String> = page["pageItems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| format!("{}/{}", str_field(i, "group"), str_field(i, "dataId")))
            .collect();
        v.sort();
        v
    };

    // accurate: exact dataId + group.
    let page = search(vec![
        ("search", "accurate"),
        ("dataId", "app.yaml"),
        ("group", GROUP),
        ("pageNo", "1"),
        ("pageSize", "10"),
    ])
    .await;
    assert_eq!(page["totalCount"], 1, "{page}");
    assert_eq!(page["pageNumber"], 1);
    assert_eq!(page["pagesAvailable"], 1);
    let item = &page["pageItems"][0];
    assert_eq!((str_field(item, "content"), str_field(item, "md5")), ("a: 1", md5_hex("a: 1").as_str()));
    assert_eq!(str_field(item, "tenant"), "");
    assert_eq!(str_field(item, "type"), "yaml");

    // accurate with blank dataId and group lists the whole namespace (Python's get_configs).
    let page =
        search(vec![("search", "accurate"), ("dataId", ""), ("group", ""), ("pageNo", "1"), ("pageSize", "100")]).await;
    assert_eq!(
        ids(&page),
        ["DEFAULT_GROUP/app.properties", "DEFAULT_GROUP/app.yaml", "DEFAULT_GROUP/db.yaml", "G2/cache.yaml"]
    );
    assert_eq!(page["totalCount"], 4);

    // blur: `*` wildcards.
    let page =
        search(vec![("search", "blur"), ("dataId", "app.*"), ("group", ""), ("pageNo", "1"), ("pageSize", "10")]).await;
    assert_eq!(ids(&page), ["DEFAULT_GROUP/app.properties", "DEFAULT_GROUP/app.yaml"]);
    let page =
        search(vec![("search", "blur"), ("dataId", "*yaml"), ("group", ""), ("pageNo", "1"), ("pageSize", "10")]).await;
    assert_eq!(ids(&page), ["DEFAULT_GROUP/app.yaml", "DEFAULT_GROUP/db.yaml", "G2/cache.yaml"]);
    let page =
        search(vec![("search", "blur"), ("dataId", "*"), ("group", "G*"), ("pageNo", "1"), ("pageSize", "10")]).await;
    assert_eq!(ids(&page), ["G2/cache.yaml"]);

    // Paging: 4 items, 3 per page → page 2 has 1.
    let page =
        search(vec![("search", "blur"), ("dataId", "*"), ("group", ""), ("pageNo", "2"), ("pageSize", "3")]).await;
    assert_eq!(page["totalCount"], 4, "{page}");
    assert_eq!(page["pageNumber"], 2);
    assert_eq!(page["pagesAvailable"], 2);
    assert_eq!(page["pageItems"].as_array().unwrap().len(), 1);

    // tenant=dev is a separate namespace.
    let page = search(vec![
        ("search", "accurate"),
        ("dataId", ""),
        ("group", ""),
        ("tenant", "dev"),
        ("pageNo", "1"),
        ("pageSize", "10"),
    ])
    .await;
    assert_eq!(ids(&page), ["DEFAULT_GROUP/app.yaml"]);
    assert_eq!(str_field(&page["pageItems"][0], "content"), "dev: 1");
    assert_eq!(str_field(&page["pageItems"][0], "tenant"), "dev");

    // appName filters.
    let page = search(vec![
        ("search", "accurate"),
        ("dataId", ""),
        ("group", ""),
        ("appName", "orders"),
        ("pageNo", "1"),
        ("pageSize", "10"),
    ])
    .await;
    assert_eq!(ids(&page), ["DEFAULT_GROUP/app.yaml"]);
    assert_eq!(str_field(&page["pageItems"][0], "appName"), "orders");

    // DELETE delType=ids removes configs by their ids.
    let id = id_of(&all);
    let (status, body) =
        call(client().delete(server.url(CONFIGS)).query(&[("delType", "ids"), ("ids", id.as_str())])).await;
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    assert_eq!((v["code"].as_i64(), &v["data"]), (Some(200), &Value::Bool(true)), "{body}");
    expect_missing(&server, "app.yaml", None).await;
    expect_content(&server, "app.yaml", Some("dev"), "dev: 1").await;
}

#[tokio::test]
async fn search_filters_by_config_tags() {
    let server = Server::start();
    publish(&server, "tagged.yaml", "a: 1", &[("config_tags", "t1,t2")]).await;
    publish(&server, "other-tags.yaml", "b: 1", &[("config_tags", "t3")]).await;
    publish(&server, "untagged.yaml", "c: 1", &[]).await;
    // Nacos' search takes `config_tags` (comma list) and keeps configs carrying any of them.
    for (tags, want) in [
        ("t1", vec!["tagged.yaml"]),
        ("t2,t9", vec!["tagged.yaml"]),
        ("t1,t3", vec!["other-tags.yaml", "tagged.yaml"]),
        ("t9", vec![]),
    ] {
        for mode in ["accurate", "blur"] {
            let (status, body) = call(client().get(server.url(CONFIGS)).query(&[
                ("search", mode),
                ("dataId", ""),
                ("group", ""),
                ("config_tags", tags),
                ("pageNo", "1"),
                ("pageSize", "10"),
            ]))
            .await;
            assert_eq!(status, 200, "{body}");
            let mut got: Vec<String> = json(&body)["pageItems"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| str_field(i, "dataId").to_owned())
                .collect();
            got.sort();
            assert_eq!(got, want, "search={mode} config_tags={tags}: {body}");
        }
    }
}

#[tokio::test]
async fn default_namespace_spellings_address_one_config_and_dev_is_separate() {
    let server = Server::start();
    publish(&server, "ns.yaml", "v: empty-tenant", &[("tenant", "")]).await;
    expect_content(&server, "ns.yaml", None, "v: empty-tenant").await;
    expect_content(&server, "ns.yaml", Some(""), "v: empty-tenant").await;
    expect_content(&server, "ns.yaml", Some("public"), "v: empty-tenant").await;

    // Publishing under `public` updates the same config (spec §16 item 12: normalise).
    publish(&server, "ns.yaml", "v: public", &[("tenant", "public")]).await;
    expect_content(&server, "ns.yaml", None, "v: public").await;
    expect_content(&server, "ns.yaml", Some("public"), "v: public").await;
    // v2 with namespaceId=public and without namespaceId see the same.
    for q in [
        vec![("dataId", "ns.yaml"), ("group", GROUP), ("namespaceId", "public")],
        vec![("dataId", "ns.yaml"), ("group", GROUP)],
    ] {
        let (status, body) = call(client().get(server.url(V2_CONFIG)).query(&q)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(v2_envelope_ok(&body), "v: public");
    }

    // dev is separate in both directions.
    expect_missing(&server, "ns.yaml", Some("dev")).await;
    publish(&server, "ns.yaml", "v: dev", &[("tenant", "dev")]).await;
    expect_content(&server, "ns.yaml", Some("dev"), "v: dev").await;
    expect_content(&server, "ns.yaml", None, "v: public").await;
    let (status, body) =
        call(client().delete(server.url(CONFIGS)).query(&[("dataId", "ns.yaml"), ("group", GROUP), ("tenant", "dev")]))
            .await;
    assert_eq!((status, body.as_str()), (200, "true"));
    expect_missing(&server, "ns.yaml", Some("dev")).await;
    expect_content(&server, "ns.yaml", Some("public"), "v: public").await;

    // Deleting via `public` removes the default-namespace config.
    let (status, _) = call(client().delete(server.url(CONFIGS)).query(&[
        ("dataId", "ns.yaml"),
        ("group", GROUP),
        ("tenant", "public"),
    ]))
    .await;
    assert_eq!(status, 200);
    expect_missing(&server, "ns.yaml", None).await;
}

// ---- long-poll listener -----------------------------------------------------------------------

#[tokio::test]
async fn long_poll_answers_at_once_when_an_md5_differs() {
    let server = Server::start();
    publish(&server, "lp:a.b", "one", &[]).await;
    publish(&server, "same", "two", &[]).await;
    publish(&server, "lp.t", "dev-one", &[("tenant", "dev"), ("group", "G")]).await;

    // One stale key among up-to-date ones: only it is reported, URL-encoded like Java's
    // URLEncoder (`:` → %3A), with a line break; held requests would take 29.5 s.
    let listening = format!("{}{}", rec("lp:a.b", GROUP, "stale"), rec("same", GROUP, &md5_hex("two")));
    let (status, body, elapsed, headers) =
        poll(listen_req(&server, &listening, &[("Long-Pulling-Timeout", "30000")])).await;
    assert_eq!(status, 200);
    assert_eq!(body, changed_body(&[("lp:a.b", GROUP, "")]));
    assert_eq!(body, "lp%3Aa.b%02DEFAULT_GROUP%01\n");
    assert!(elapsed < Duration::from_secs(5), "answered after {elapsed:?}");
    assert_eq!(header(&headers, "Pragma"), Some("no-cache"));
    assert_eq!(header(&headers, "Cache-Control"), Some("no-cache,no-store"));

    // Empty md5 for an existing config = client has nothing = changed.
    let (_, body, elapsed, _) =
        poll(listen_req(&server, &rec("same", GROUP, ""), &[("Long-Pulling-Timeout", "30000")])).await;
    assert_eq!(body, changed_body(&[("same", GROUP, "")]));
    assert!(elapsed < Duration::from_secs(5));

    // 4-field record with a tenant: the tenant is echoed.
    let (_, body, elapsed, _) =
        poll(listen_req(&server, &rec_t("lp.t", "G", "stale", "dev"), &[("Long-Pulling-Timeout", "30000")])).await;
    assert_eq!(body, "lp.t%02G%02dev%01\n");
    assert!(elapsed < Duration::from_secs(5));

    // Python 1.x always sends the 4-field form; an empty tenant is the default namespace and
    // is not echoed.
    let (_, body, _, _) =
        poll(listen_req(&server, &rec_t("same", GROUP, "stale", ""), &[("Long-Pulling-Timeout", "30000")])).await;
    assert_eq!(body, changed_body(&[("same", GROUP, "")]));

    // Java clients URL-encode the value before form-encoding it: the server decodes twice.
    let pre_encoded = java_url_encode(&rec("lp:a.b", GROUP, "stale"));
    let (_, body, _, _) = poll(listen_req(&server, &pre_encoded, &[("Long-Pulling-Timeout", "30000")])).await;
    assert_eq!(body, changed_body(&[("lp:a.b", GROUP, "")]));

    // Without Long-Pulling-Timeout: answered at once, too (legacy short poll).
    let (status, body, elapsed, _) = poll(listen_req(&server, &rec("lp:a.b", GROUP, "stale"), &[])).await;
    assert_eq!((status, body.as_str()), (200, "lp%3Aa.b%02DEFAULT_GROUP%01\n"));
    assert!(elapsed < Duration::from_secs(5));
    let (status, body, _, _) = poll(listen_req(&server, &rec("same", GROUP, &md5_hex("two")), &[])).await;
    assert_eq!((status, body.as_str()), (200, ""));
}

#[tokio::test]
async fn held_long_poll_is_woken_by_a_publish() {
    let server = Server::start();
    publish(&server, "held.yaml", "v1", &[]).await;
    publish(&server, "other.yaml", "o1", &[]).await;

    let listening = format!("{}{}", rec("held.yaml", GROUP, &md5_hex("v1")), rec("other.yaml", GROUP, &md5_hex("o1")));
    let started = Instant::now();
    let task = spawn_poll(listen_req(&server, &listening, &[("Long-Pulling-Timeout", "30000")]));
    let_poll_settle(&server, 1).await;
    assert!(!task.is_finished(), "an up-to-date long-poll must be held");

    // Republishing identical content is not a change (MD5 unchanged) and must not wake it.
    publish(&server, "held.yaml", "v1", &[]).await;
    notifier_barrier(&server).await;
    assert!(!task.is_finished(), "publishing the same content must not answer the long-poll");
    assert_eq!(held_polls(&server).await, 1, "the long-poll is still held after the same content");

    let publish_at = Instant::now();
    publish(&server, "held.yaml", "v2", &[]).await;
    let (status, body, answered_at) = join_poll(task).await;
    assert_eq!((status, body.as_str()), (200, changed_body(&[("held.yaml", GROUP, "")]).as_str()));
    let after_publish = answered_at.saturating_duration_since(publish_at);
    assert!(after_publish < Duration::from_secs(1) * patience(), "woken {after_publish:?} after the publish");
    assert!(
        answered_at.saturating_duration_since(started) < Duration::from_secs(10) * patience(),
        "long-poll ran to its hold time instead of waking"
    );

    // A delete is a change too: the md5 becomes "".
    let task = spawn_poll(listen_req(
        &server,
        &rec("other.yaml", GROUP, &md5_hex("o1")),
        &[("Long-Pulling-Timeout", "30000")],
    ));
    let_poll_settle(&server, 1).await;
    assert!(!task.is_finished());
    let (status, _) =
        call(client().delete(server.url(CONFIGS)).query(&[("dataId", "other.yaml"), ("group", GROUP)])).await;
    assert_eq!(status, 200);
    let (_, body, _) = join_poll(task).await;
    assert_eq!(body, changed_body(&[("other.yaml", GROUP, "")]));
}

#[tokio::test]
async fn held_long_poll_times_out_with_an_empty_body() {
    let server = Server::start_with_config(Some(SHORT_POLL));
    publish(&server, "quiet.yaml", "q", &[]).await;
    // hold = max(300, 1000 − 100) = 900 ms.
    let (status, body, elapsed, _) =
        poll(listen_req(&server, &rec("quiet.yaml", GROUP, &md5_hex("q")), &[("Long-Pulling-Timeout", "1000")])).await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert!(elapsed >= Duration::from_millis(700), "answered too early: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5) * patience(), "held too long: {elapsed:?}");

    // The minimum applies to short client timeouts: hold = max(300, 200 − 100) = 300 ms.
    let (_, body, elapsed, _) =
        poll(listen_req(&server, &rec("quiet.yaml", GROUP, &md5_hex("q")), &[("Long-Pulling-Timeout", "200")])).await;
    assert_eq!(body, "");
    assert!(elapsed >= Duration::from_millis(250), "minimum hold not applied: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5) * patience());
}

#[tokio::test]
async fn no_hangup_answers_at_once_when_nothing_changed() {
    let server = Server::start();
    publish(&server, "nh.yaml", "n", &[]).await;
    let (status, body, elapsed, _) = poll(listen_req(
        &server,
        &rec("nh.yaml", GROUP, &md5_hex("n")),
        &[("Long-Pulling-Timeout", "30000"), ("Long-Pulling-Timeout-No-Hangup", "true")],
    ))
    .await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert!(elapsed < Duration::from_secs(3) * patience(), "No-Hangup request was held for {elapsed:?}");

    // With a change, No-Hangup still reports it.
    let (_, body, _, _) = poll(listen_req(
        &server,
        &rec("nh.yaml", GROUP, "old"),
        &[("Long-Pulling-Timeout", "30000"), ("Long-Pulling-Timeout-No-Hangup", "true")],
    ))
    .await;
    assert_eq!(body, changed_body(&[("nh.yaml", GROUP, "")]));
}

#[tokio::test]
async fn missing_config_with_empty_md5_is_up_to_date_until_published() {
    let server = Server::start_with_config(Some(SHORT_POLL));
    // Held to its timeout, not answered at once (spec §13.7).
    let (status, body, elapsed, _) =
        poll(listen_req(&server, &rec("later.yaml", GROUP, ""), &[("Long-Pulling-Timeout", "1000")])).await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert!(elapsed >= Duration::from_millis(700), "a missing config with md5 \"\" was reported: {elapsed:?}");

    // Creating it wakes the waiter.
    let task = spawn_poll(listen_req(&server, &rec("later.yaml", GROUP, ""), &[("Long-Pulling-Timeout", "30000")]));
    let_poll_settle(&server, 1).await;
    assert!(!task.is_finished());
    publish(&server, "later.yaml", "born", &[]).await;
    let (_, body, _) = join_poll(task).await;
    assert_eq!(body, changed_body(&[("later.yaml", GROUP, "")]));

    // A stale md5 for a missing config is a change (the client has something the server does not).
    let (_, body, elapsed, _) =
        poll(listen_req(&server, &rec("gone.yaml", GROUP, "abc"), &[("Long-Pulling-Timeout", "30000")])).await;
    assert_eq!(body, changed_body(&[("gone.yaml", GROUP, "")]));
    assert!(elapsed < Duration::from_secs(5));
}

#[tokio::test]
async fn long_poll_with_tenant_is_woken_only_by_its_namespace_and_echoes_the_tenant() {
    let server = Server::start();
    publish(&server, "t.yaml", "dev-1", &[("tenant", "dev")]).await;
    publish(&server, "t.yaml", "pub-1", &[]).await;

    let task = spawn_poll(listen_req(
        &server,
        &rec_t("t.yaml", GROUP, &md5_hex("dev-1"), "dev"),
        &[("Long-Pulling-Timeout", "30000")],
    ));
    let_poll_settle(&server, 1).await;
    publish(&server, "t.yaml", "pub-2", &[]).await;
    notifier_barrier(&server).await;
    assert!(!task.is_finished(), "a change in public must not answer a dev listener");
    assert_eq!(held_polls(&server).await, 1, "the dev listener is still held");

    let publish_at = Instant::now();
    publish(&server, "t.yaml", "dev-2", &[("tenant", "dev")]).await;
    let (status, body, answered_at) = join_poll(task).await;
    assert_eq!((status, body.as_str()), (200, "t.yaml%02DEFAULT_GROUP%02dev%01\n"));
    assert!(answered_at.saturating_duration_since(publish_at) < Duration::from_secs(1) * patience());

    // A listener spelling the default namespace `public` is woken by a publish with tenant ""
    // (one canonical namespace, spec §16 item 12) and gets its own spelling back.
    let task = spawn_poll(listen_req(
        &server,
        &rec_t("t.yaml", GROUP, &md5_hex("pub-2"), "public"),
        &[("Long-Pulling-Timeout", "30000")],
    ));
    let_poll_settle(&server, 1).await;
    assert!(!task.is_finished(), "`public` with the current md5 of the default namespace is up to date");
    publish(&server, "t.yaml", "pub-3", &[("tenant", "")]).await;
    let (_, body, _) = join_poll(task).await;
    assert_eq!(body, "t.yaml%02DEFAULT_GROUP%02public%01\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_publish_wakes_every_held_long_poll_of_the_key() {
    let server = Server::start();
    publish(&server, "fan.yaml", "v1", &[]).await;
    publish(&server, "bystander.yaml", "b1", &[]).await;
    let md5 = md5_hex("v1");
    let tasks: Vec<_> = (0..50)
        .map(|_| spawn_poll(listen_req(&server, &rec("fan.yaml", GROUP, &md5), &[("Long-Pulling-Timeout", "30000")])))
        .collect();
    let bystander = spawn_poll(listen_req(
        &server,
        &rec("bystander.yaml", GROUP, &md5_hex("b1")),
        &[("Long-Pulling-Timeout", "30000")],
    ));
    let_poll_settle(&server, 51).await;
    assert!(tasks.iter().all(|t| !t.is_finished()), "held polls answered before any change");

    let publish_at = Instant::now();
    publish(&server, "fan.yaml", "v2", &[]).await;
    for task in tasks {
        let (status, body, answered_at) = join_poll(task).await;
        assert_eq!((status, body.as_str()), (200, changed_body(&[("fan.yaml", GROUP, "")]).as_str()));
        let after = answered_at.saturating_duration_since(publish_at);
        assert!(after < Duration::from_secs(2) * patience(), "a waiter was answered {after:?} after the publish");
    }
    notifier_barrier(&server).await;
    assert!(!bystander.is_finished(), "a waiter on another key must stay held");
    assert_eq!(held_polls(&server).await, 1, "only the bystander is still held");
    bystander.abort();
}

// ---- history and rollback ---------------------------------------------------------------------

#[tokio::test]
async fn history_lists_previous_and_rollback() {
    let server = Server::start();
    publish(&server, "h.yaml", "c1", &[("appName", "orders"), ("src_user", "alice")]).await;
    publish(&server, "h.yaml", "c2", &[]).await;
    publish(&server, "h.yaml", "c3", &[]).await;
    publish(&server, "unrelated.yaml", "x", &[]).await;
    let (status, _) = call(client().delete(server.url(CONFIGS)).query(&[("dataId", "h.yaml"), ("group", GROUP)])).await;
    assert_eq!(status, 200);

    let items = history_items(&server, "h.yaml").await;
    let ops: Vec<&str> = items.iter().map(|i| str_field(i, "opType")).collect();
    assert_eq!(ops, ["D", "U", "U", "I"], "newest first: {items:?}");
    for item in &items {
        assert_eq!((str_field(item, "dataId"), str_field(item, "group")), ("h.yaml", GROUP));
        assert_eq!(str_field(item, "tenant"), "");
        assert_eq!(str_field(item, "md5"), md5_hex(str_field(item, "content")), "md5 of the recorded content");
        for f in ["srcIp", "srcUser", "appName", "encryptedDataKey"] {
            assert!(item[f].is_string(), "{f} missing in {item}");
        }
        for f in ["createdTime", "lastModifiedTime"] {
            assert!(item[f].is_number(), "{f} missing in {item}");
        }
        assert!(item.get("lastId").is_some(), "lastId missing in {item}");
    }
    let oldest = &items[3];
    assert_eq!(str_field(oldest, "content"), "c1");
    assert_eq!(str_field(oldest, "appName"), "orders");
    assert_eq!(str_field(&items[0], "content"), "c3", "a delete records the content it removed");
    assert_eq!(str_field(oldest, "srcIp"), "127.0.0.1");
    assert_eq!(str_field(oldest, "srcUser"), "alice");
    let ids: Vec<u64> = items.iter().map(|i| id_of(i).parse().expect("numeric history id")).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "ids must decrease newest → oldest: {ids:?}");

    // One entry by nid (must match dataId/group).
    let nid = id_of(oldest);
    let (status, body) =
        call(client().get(server.url(HISTORY)).query(&[("nid", nid.as_str()), ("dataId", "h.yaml"), ("group", GROUP)]))
            .await;
    assert_eq!(status, 200, "{body}");
    let one = json(&body);
    assert_eq!((str_field(&one, "opType"), str_field(&one, "content")), ("I", "c1"));
    assert_eq!(id_of(&one), nid);
    let (status, _) = call(client().get(server.url(HISTORY)).query(&[
        ("nid", nid.as_str()),
        ("dataId", "unrelated.yaml"),
        ("group", GROUP),
    ]))
    .await;
    assert_eq!(status, 404, "a nid of another config must not be shown");
    let (status, _) =
        call(client().get(server.url(HISTORY)).query(&[("nid", "999999"), ("dataId", "h.yaml"), ("group", GROUP)]))
            .await;
    assert_eq!(status, 404);

    // previous: the entry before the given one, for the same config.
    let newest = id_of(&items[0]);
    let (status, body) = call(client().get(server.url("/nacos/v1/cs/history/previous")).query(&[
        ("id", newest.as_str()),
        ("dataId", "h.yaml"),
        ("group", GROUP),
    ]))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(id_of(&json(&body)), id_of(&items[1]));
    let (status, _) = call(client().get(server.url("/nacos/v1/cs/history/previous")).query(&[
        ("id", nid.as_str()),
        ("dataId", "h.yaml"),
        ("group", GROUP),
    ]))
    .await;
    assert_eq!(status, 404, "the first entry has no previous one");

    // history/configs lists configs of the namespace that have history.
    let (status, body) = call(client().get(server.url("/nacos/v1/cs/history/configs")).query(&[("tenant", "")])).await;
    assert_eq!(status, 200, "{body}");
    let listed: Vec<String> =
        json(&body).as_array().unwrap().iter().map(|c| str_field(c, "dataId").to_owned()).collect();
    assert!(listed.contains(&"h.yaml".to_owned()) && listed.contains(&"unrelated.yaml".to_owned()), "{listed:?}");

    // Rollback to the first entry republishes c1: GET shows it and history grows by one.
    let (status, body) =
        call(client().post(server.url("/nacos/v1/cs/history/rollback")).query(&[("nid", nid.as_str())])).await;
    assert_eq!((status, body.as_str()), (200, "true"));
    expect_content(&server, "h.yaml", None, "c1").await;
    let after = history_items(&server, "h.yaml").await;
    assert_eq!(after.len(), 5, "{after:?}");
    assert_eq!(str_field(&after[0], "content"), "c1");
    assert_eq!(str_field(&after[0], "opType"), "I", "the config had been deleted: rollback re-inserts it");

    // v2 rollback to c2 (an update entry).
    let c2_entry = after.iter().find(|i| str_field(i, "content") == "c2").expect("c2 entry");
    let c2_id = id_of(c2_entry);
    let (status, body) =
        call(client().post(server.url("/nacos/v2/cs/history/rollback")).form(&[("nid", c2_id.as_str())])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(v2_envelope_ok(&body), true);
    expect_content(&server, "h.yaml", None, "c2").await;
    let after = history_items(&server, "h.yaml").await;
    assert_eq!(after.len(), 6);
    assert_eq!(str_field(&after[0], "opType"), "U");

    // Unknown nid → 404 (v1 plain, v2 envelope), nothing changes.
    let (status, _) =
        call(client().post(server.url("/nacos/v1/cs/history/rollback")).query(&[("nid", "987654")])).await;
    assert_eq!(status, 404);
    let (status, body) =
        call(client().post(server.url("/nacos/v2/cs/history/rollback")).query(&[("nid", "987654")])).await;
    assert_eq!(status, 404);
    assert_eq!(json(&body)["code"], 20004, "{body}");
    expect_content(&server, "h.yaml", None, "c2").await;
}

#[tokio::test]
async fn history_update_entries_record_the_replaced_content_as_nacos_does() {
    let server = Server::start();
    publish(&server, "hu.yaml", "c1", &[]).await;
    publish(&server, "hu.yaml", "c2", &[]).await;
    publish(&server, "hu.yaml", "c3", &[]).await;
    let (status, _) =
        call(client().delete(server.url(CONFIGS)).query(&[("dataId", "hu.yaml"), ("group", GROUP)])).await;
    assert_eq!(status, 200);
    let items = history_items(&server, "hu.yaml").await;
    let seen: Vec<(&str, &str)> = items.iter().map(|i| (str_field(i, "opType"), str_field(i, "content"))).collect();
    // Insert: the new content; update: the content before the update; delete: the deleted content.
    assert_eq!(seen, [("D", "c3"), ("U", "c2"), ("U", "c1"), ("I", "c1")]);
}

// ---- compare-and-swap -------------------------------------------------------------------------

#[tokio::test]
async fn cas_publish_succeeds_with_the_current_md5_and_fails_with_a_stale_one() {
    let server = Server::start();
    publish(&server, "cas.yaml", "v1", &[]).await;
    let current = md5_hex("v1");

    let (status, body) = call(client().post(server.url(CONFIGS)).header("casMd5", current.as_str()).form(&[
        ("dataId", "cas.yaml"),
        ("group", GROUP),
        ("content", "v2"),
    ]))
    .await;
    assert_eq!((status, body.as_str()), (200, "true"));
    expect_content(&server, "cas.yaml", None, "v2").await;

    // The md5 of v1 is stale now.
    let (status, body) = call(client().post(server.url(CONFIGS)).header("casMd5", current.as_str()).form(&[
        ("dataId", "cas.yaml"),
        ("group", GROUP),
        ("content", "v3"),
    ]))
    .await;
    assert_eq!(status, 500, "stale casMd5 must fail: {body}");
    assert!(body.contains("Cas publish fail"), "{body}");
    expect_content(&server, "cas.yaml", None, "v2").await;
    assert_eq!(history_items(&server, "cas.yaml").await.len(), 2, "a failed CAS must not add history");

    // v2 honours the header too: stale → error envelope, nothing stored.
    let (status, body) = call(client().post(server.url(V2_CONFIG)).header("casMd5", "0123456789abcdef").form(&[
        ("dataId", "cas.yaml"),
        ("group", GROUP),
        ("content", "v4"),
    ]))
    .await;
    assert_eq!(status, 500, "{body}");
    assert_ne!(json(&body)["code"], 0, "{body}");
    expect_content(&server, "cas.yaml", None, "v2").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_cas_publishes_with_the_same_md5_let_exactly_one_win() {
    let server = Server::start();
    publish(&server, "race.yaml", "v0", &[]).await;
    let base = md5_hex("v0");
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let req = client().post(server.url(CONFIGS)).header("casMd5", base.as_str()).form(&[
                ("dataId", "race.yaml"),
                ("group", GROUP),
                ("content", &format!("writer-{i}")),
            ]);
            tokio::spawn(async move { (i, call(req).await) })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (i, (status, body)) = tokio::time::timeout(Duration::from_secs(30) * patience(), task)
            .await
            .expect("CAS publish answered")
            .expect("task");
        match status {
            200 => winners.push(i),
            500 => assert!(body.contains("Cas publish fail"), "{body}"),
            other => panic!("writer {i}: unexpected {other} {body}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one CAS writer may win, winners: {winners:?}");
    expect_content(&server, "race.yaml", None, &format!("writer-{}", winners[0])).await;
    assert_eq!(history_items(&server, "race.yaml").await.len(), 2);
}

#[tokio::test]
async fn cas_publish_of_a_missing_config_creates_it_as_nacos_does() {
    let server = Server::start();
    let (status, body) =
        call(client().post(server.url(CONFIGS)).header("casMd5", md5_hex("anything").as_str()).form(&[
            ("dataId", "cas-new.yaml"),
            ("group", GROUP),
            ("content", "v1"),
        ]))
        .await;
    assert_eq!((status, body.as_str()), (200, "true"));
    expect_content(&server, "cas-new.yaml", None, "v1").await;
}

// ---- gray: beta by IP, labels -----------------------------------------------------------------

#[tokio::test]
async fn beta_by_ip_serves_listed_callers_and_stops() {
    let server = Server::start();
    publish(&server, "beta.yaml", "formal", &[]).await;

    // Beta for another IP: 127.0.0.1 still gets the formal content.
    let (status, body) = call(client().post(server.url(CONFIGS)).header("betaIps", "10.9.9.9").form(&[
        ("dataId", "beta.yaml"),
        ("group", GROUP),
        ("content", "beta-elsewhere"),
    ]))
    .await;
    assert_eq!((status, body.as_str()), (200, "true"));
    let (status, body, headers) = get_raw(get_req(&server, "beta.yaml", GROUP, None)).await;
    assert_eq!((status, body.as_str()), (200, "formal"));
    assert!(header(&headers, "isBeta").is_none(), "{headers:?}");
    // A caller behind a proxy reporting 10.9.9.9 gets the beta (X-Forwarded-For, as Nacos).
    let (_, body, headers) =
        get_raw(get_req(&server, "beta.yaml", GROUP, None).header("X-Forwarded-For", "10.9.9.9")).await;
    assert_eq!(body, "beta-elsewhere");
    assert_eq!(header(&headers, "isBeta"), Some("true"));

    // Beta for 127.0.0.1 (replaces the previous beta): this test's GET sees it, with its MD5.
    let (status, body) = call(client().post(server.url(CONFIGS)).header("betaIps", "127.0.0.1,10.0.0.1").form(&[
        ("dataId", "beta.yaml"),
        ("group", GROUP),
        ("content", "beta-here"),
    ]))
    .await;
    assert_eq!((status, body.as_str()), (200, "true"));
    let (status, body, headers) = get_raw(get_req(&server, "beta.yaml", GROUP, None)).await;
    assert_eq!((status, body.as_str()), (200, "beta-here"));
    assert_eq!(header(&headers, "isBeta"), Some("true"));
    assert_eq!(header(&headers, "Content-MD5"), Some(md5_hex("beta-here").as_str()));
    let (_, body) = call(get_req(&server, "beta.yaml", GROUP, None).header("X-Forwarded-For", "10.9.9.9")).await;
    assert_eq!(body, "formal", "the old beta IP list was replaced");

    // GET beta=true shows the beta variant.
    let (status, body) =
        call(client().get(server.url(CONFIGS)).query(&[("dataId", "beta.yaml"), ("group", GROUP), ("beta", "true")]))
            .await;
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    assert_eq!((v["code"].as_i64(), v["message"].as_str()), (Some(200), Some("query beta ok")), "{body}");
    assert_eq!(str_field(&v["data"], "content"), "beta-here");
    assert_eq!(str_field(&v["data"], "betaIps"), "127.0.0.1,10.0.0.1");

    // Long-poll from 127.0.0.1 with the formal md5 is answered at once (its md5 is the beta's).
    let (_, body, _, _) =
        poll(listen_req(&server, &rec("beta.yaml", GROUP, &md5_hex("formal")), &[("Long-Pulling-Timeout", "30000")]))
            .await;
    assert_eq!(body, changed_body(&[("beta.yaml", GROUP, "")]));

    // A formal update does not override the beta for listed callers.
    publish(&server, "beta.yaml", "formal-2", &[]).await;
    expect_content(&server, "beta.yaml", None, "beta-here").await;

    // Held with the beta md5; stopping the beta wakes it (its md5 becomes the formal one).
    let task = spawn_poll(listen_req(
        &server,
        &rec("beta.yaml", GROUP, &md5_hex("beta-here")),
        &[("Long-Pulling-Timeout", "30000")],
    ));
    let_poll_settle(&server, 1).await;
    assert!(!task.is_finished());
    let (status, body) = call(client().delete(server.url(CONFIGS)).query(&[
        ("dataId", "beta.yaml"),
        ("group", GROUP),
        ("beta", "true"),
    ]))
    .await;
    assert_eq!(status, 200);
    assert_eq!(json(&body), serde_json::json!({"code": 200, "message": "stop beta ok", "data": true}));
    let (_, body, _) = join_poll(task).await;
    assert_eq!(body, changed_body(&[("beta.yaml", GROUP, "")]));
    let (_, body, headers) = get_raw(get_req(&server, "beta.yaml", GROUP, None)).await;
    assert_eq!(body, "formal-2");
    assert!(header(&headers, "isBeta").is_none());

    // A beta for a config that does not exist is refused and creates nothing.
    let (status, _) = call(client().post(server.url(CONFIGS)).header("betaIps", "127.0.0.1").form(&[
        ("dataId", "nobeta.yaml"),
        ("group", GROUP),
        ("content", "b"),
    ]))
    .await;
    assert_eq!(status, 404);
    expect_missing(&server, "nobeta.yaml", None).await;
}

#[tokio::test]
async fn held_long_poll_is_woken_by_a_matching_beta() {
    let server = Server::start();
    publish(&server, "bw.yaml", "formal", &[]).await;
    let task = spawn_poll(listen_req(
        &server,
        &rec("bw.yaml", GROUP, &md5_hex("formal")),
        &[("Long-Pulling-Timeout", "30000")],
    ));
    let_poll_settle(&server, 1).await;
    let publish_at = Instant::now();
    let (status, _) = call(client().post(server.url(CONFIGS)).header("betaIps", "127.0.0.1").form(&[
        ("dataId", "bw.yaml"),
        ("group", GROUP),
        ("content", "beta"),
    ]))
    .await;
    assert_eq!(status, 200);
    let (_, body, answered_at) = join_poll(task).await;
    assert_eq!(body, changed_body(&[("bw.yaml", GROUP, "")]));
    assert!(answered_at.saturating_duration_since(publish_at) < Duration::from_secs(1) * patience());
}

#[tokio::test]
async fn label_gray_serves_matching_readers_and_wakes_their_long_polls() {
    let server = Server::start_with_config(Some(SHORT_POLL));
    // A label rule needs the formal config first.
    let (status, _) = call(client().post(server.url(CONFIGS)).header("grayLabels", "env=canary").form(&[
        ("dataId", "lbl.yaml"),
        ("group", GROUP),
        ("content", "gray"),
    ]))
    .await;
    assert_eq!(status, 404, "gray before the formal config exists");
    expect_missing(&server, "lbl.yaml", None).await;

    publish(&server, "lbl.yaml", "formal", &[]).await;
    let formal_md5 = md5_hex("formal");

    // A canary reader and a plain reader hold long-polls with the formal md5.
    let canary = spawn_poll(listen_req(
        &server,
        &rec("lbl.yaml", GROUP, &formal_md5),
        &[("Long-Pulling-Timeout", "30000"), ("Config-Labels", "env=canary")],
    ));
    let plain_started = Instant::now();
    let plain = spawn_poll(listen_req(
        &server,
        &rec("lbl.yaml", GROUP, &formal_md5),
        &[("Long-Pulling-Timeout", "3000"), ("Config-Labels", "env=prod")],
    ));
    let_poll_settle(&server, 2).await;
    assert!(!canary.is_finished());

    let publish_at = Instant::now();
    let (status, body) = call(client().post(server.url(CONFIGS)).header("grayLabels", "env=canary").form(&[
        ("dataId", "lbl.yaml"),
        ("group", GROUP),
        ("content", "gray"),
    ]))
    .await;
    assert_eq!((status, body.as_str()), (200, "true"));
    let (_, body, answered_at) = join_poll(canary).await;
    assert_eq!(body, changed_body(&[("lbl.yaml", GROUP, "")]));
    assert!(answered_at.saturating_duration_since(publish_at) < Duration::from_secs(1) * patience());
    // The prod reader's md5 did not change: held to its timeout (3000 − 100 ms), empty.
    let (_, body, answered_at) = join_poll(plain).await;
    assert_eq!(body, "", "a non-matching reader must not be told about the gray variant");
    assert!(
        answered_at.saturating_duration_since(plain_started) >= Duration::from_millis(2_500),
        "prod reader answered early"
    );

    // Readers: labels matching → gray; other labels or none → formal.
    let (status, body, headers) =
        get_raw(get_req(&server, "lbl.yaml", GROUP, None).header("Config-Labels", "env=canary,zone=a")).await;
    assert_eq!((status, body.as_str()), (200, "gray"));
    assert_eq!(header(&headers, "Content-MD5"), Some(md5_hex("gray").as_str()));
    let (_, body) = call(get_req(&server, "lbl.yaml", GROUP, None).header("Config-Labels", "env=prod")).await;
    assert_eq!(body, "formal");
    expect_content(&server, "lbl.yaml", None, "formal").await;

    // v2 GET honours the labels header as well.
    let (_, body) = call(
        client()
            .get(server.url(V2_CONFIG))
            .header("Config-Labels", "env=canary")
            .query(&[("dataId", "lbl.yaml"), ("group", GROUP)]),
    )
    .await;
    assert_eq!(v2_envelope_ok(&body), "gray");

    // Stopping the label rule: the canary reader's md5 returns to the formal one.
    let (status, body) = call(client().delete(server.url(CONFIGS)).query(&[
        ("dataId", "lbl.yaml"),
        ("group", GROUP),
        ("grayLabels", "true"),
    ]))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["data"], true, "{body}");
    let (_, body) = call(get_req(&server, "lbl.yaml", GROUP, None).header("Config-Labels", "env=canary")).await;
    assert_eq!(body, "formal");
    let (_, body, _, _) = poll(listen_req(
        &server,
        &rec("lbl.yaml", GROUP, &md5_hex("gray")),
        &[("Long-Pulling-Timeout", "30000"), ("Config-Labels", "env=canary")],
    ))
    .await;
    assert_eq!(body, changed_body(&[("lbl.yaml", GROUP, "")]));
}

#[tokio::test]
async fn v2_gray_endpoint_publishes_and_stops_beta_and_label_rules() {
    let server = Server::start();
    let form = |extra: &[(&'static str, &'static str)]| {
        let mut f = vec![("dataId", "g2.yaml"), ("group", GROUP), ("namespaceId", "dev")];
        f.extend_from_slice(extra);
        f
    };
    let (status, body) = call(client().post(server.url(V2_CONFIG)).form(&form(&[("content", "formal")]))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(v2_envelope_ok(&body), true);

    let (status, body) =
        call(client().post(server.url(V2_GRAY)).form(&form(&[("content", "beta"), ("betaIps", "127.0.0.1")]))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(v2_envelope_ok(&body), true);
    let (status, body) = call(
        client()
            .post(server.url(V2_GRAY))
            .form(&form(&[("content", "labelled"), ("grayLabels", "{\"env\":\"canary\"}")])),
    )
    .await;
    assert_eq!(status, 200, "grayLabels as JSON: {body}");

    // Beta (by IP) wins over labels for a caller matching both.
    let (_, body) = call(get_req(&server, "g2.yaml", GROUP, Some("dev")).header("Config-Labels", "env=canary")).await;
    assert_eq!(body, "beta");
    let (_, body) = call(
        get_req(&server, "g2.yaml", GROUP, Some("dev"))
            .header("Config-Labels", "env=canary")
            .header("X-Forwarded-For", "10.1.1.1"),
    )
    .await;
    assert_eq!(body, "labelled");

    let (status, body) = call(client().delete(server.url(V2_GRAY)).query(&form(&[("kind", "beta")]))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(v2_envelope_ok(&body), true);
    let (_, body) = call(get_req(&server, "g2.yaml", GROUP, Some("dev")).header("Config-Labels", "env=canary")).await;
    assert_eq!(body, "labelled");
    expect_content(&server, "g2.yaml", Some("dev"), "formal").await;

    let (status, body) = call(client().delete(server.url(V2_GRAY)).query(&form(&[("kind", "labels")]))).await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = call(get_req(&server, "g2.yaml", GROUP, Some("dev")).header("Config-Labels", "env=canary")).await;
    assert_eq!(body, "formal");

    // Bad input: unknown kind, no rule at all, gray of a missing config.
    let (status, body) = call(client().delete(server.url(V2_GRAY)).query(&form(&[("kind", "tag")]))).await;
    assert_eq!(status, 400, "{body}");
    assert_ne!(json(&body)["code"], 0);
    let (status, body) = call(client().post(server.url(V2_GRAY)).form(&form(&[("content", "x")]))).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(client().post(server.url(V2_GRAY)).form(&[
        ("dataId", "missing.yaml"),
        ("group", GROUP),
        ("content", "x"),
        ("betaIps", "127.0.0.1"),
    ]))
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(json(&body)["code"], 20004, "{body}");
}

// ---- durability -------------------------------------------------------------------------------

#[tokio::test]
async fn configs_history_and_gray_survive_kill9() {
    let mut server = Server::start();
    publish(&server, "d.json", "{\"v\":1}", &[("type", "json"), ("appName", "orders")]).await;
    publish(&server, "d.json", "{\"v\":2}", &[("type", "json"), ("appName", "orders")]).await;
    publish(&server, "d.yaml", "dev: true", &[("tenant", "dev")]).await;
    publish(&server, "gone.yaml", "bye", &[]).await;
    let (status, _) =
        call(client().delete(server.url(CONFIGS)).query(&[("dataId", "gone.yaml"), ("group", GROUP)])).await;
    assert_eq!(status, 200);
    let (status, _) = call(client().post(server.url(CONFIGS)).header("betaIps", "127.0.0.1").form(&[
        ("dataId", "d.yaml"),
        ("group", GROUP),
        ("tenant", "dev"),
        ("content", "dev: beta"),
    ]))
    .await;
    assert_eq!(status, 200);
    let history_before = history_items(&server, "d.json").await;
    let show_all = |server: &Server| {
        call(client().get(server.url(CONFIGS)).query(&[("dataId", "d.json"), ("group", GROUP), ("show", "all")]))
    };
    let (_, body) = show_all(&server).await;
    let all_before = json(&body);

    server.kill9();
    server.restart();

    let (status, body, headers) = get_raw(get_req(&server, "d.json", GROUP, None)).await;
    assert_eq!((status, body.as_str()), (200, "{\"v\":2}"));
    assert_eq!(header(&headers, "Content-MD5"), Some(md5_hex("{\"v\":2}").as_str()));
    assert_eq!(header(&headers, "Config-Type"), Some("json"));
    expect_missing(&server, "gone.yaml", None).await;
    expect_content(&server, "d.yaml", Some("dev"), "dev: beta").await;
    let (_, body) = call(get_req(&server, "d.yaml", GROUP, Some("dev")).header("X-Forwarded-For", "10.2.2.2")).await;
    assert_eq!(body, "dev: true");

    let (_, body) = show_all(&server).await;
    let all_after = json(&body);
    assert_eq!(all_after, all_before, "show=all (id, times, appName, type) must survive unchanged");

    let history_after = history_items(&server, "d.json").await;
    assert_eq!(history_after, history_before, "history must survive unchanged");
    let gone: Vec<String> =
        history_items(&server, "gone.yaml").await.iter().map(|i| str_field(i, "opType").to_owned()).collect();
    assert_eq!(gone, ["D", "I"]);

    // Still writable, and new history ids do not collide with old ones.
    publish(&server, "d.json", "{\"v\":3}", &[("type", "json")]).await;
    let items = history_items(&server, "d.json").await;
    assert_eq!(items.len(), 3);
    let ids: Vec<u64> = items.iter().map(|i| id_of(i).parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
}

// ---- bad input --------------------------------------------------------------------------------

#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_stored() {
    let server = Server::start_with_config(Some("[configs]\nmax_content_bytes = 1024\n"));

    for bad in ["a/b", "a b", "a?b", "中文", "a%b"] {
        let (status, body) = publish_form(&server, &[("dataId", bad), ("group", GROUP), ("content", "x")]).await;
        assert_eq!(status, 400, "dataId {bad:?}: {body}");
        let (status, _) = call(get_req(&server, bad, GROUP, None)).await;
        assert!(status == 400 || status == 404, "GET of refused dataId {bad:?}: {status}");
    }
    let (status, body) = publish_form(&server, &[("dataId", "ok"), ("group", "g/h"), ("content", "x")]).await;
    assert_eq!(status, 400, "bad group: {body}");
    let (status, body) =
        publish_form(&server, &[("dataId", "ok"), ("group", GROUP), ("tenant", "t/x"), ("content", "x")]).await;
    assert_eq!(status, 400, "bad tenant: {body}");
    let (status, body) = publish_form(&server, &[("group", GROUP), ("content", "x")]).await;
    assert_eq!(status, 400, "missing dataId: {body}");
    let (status, body) = publish_form(&server, &[("dataId", "ok"), ("content", "x")]).await;
    assert_eq!(status, 400, "missing group: {body}");
    // Metadata limits (spec §7.1): desc ≤ 128, at most 5 config_tags of ≤ 64 characters.
    let long_desc = "d".repeat(129);
    let (status, body) =
        publish_form(&server, &[("dataId", "meta"), ("group", GROUP), ("content", "x"), ("desc", &long_desc)]).await;
    assert_eq!(status, 400, "desc over 128: {body}");
    let (status, body) = publish_form(
        &server,
        &[("dataId", "meta"), ("group", GROUP), ("content", "x"), ("config_tags", "a,b,c,d,e,f")],
    )
    .await;
    assert_eq!(status, 400, "six tags: {body}");
    let long_tag = "t".repeat(65);
    let (status, body) =
        publish_form(&server, &[("dataId", "meta"), ("group", GROUP), ("content", "x"), ("config_tags", &long_tag)])
            .await;
    assert_eq!(status, 400, "tag over 64: {body}");
    expect_missing(&server, "meta", None).await;

    // Content size limit (1024 bytes): 2 KiB refused, exactly 1024 accepted.
    let big = "x".repeat(2048);
    let (status, body) = publish_form(&server, &[("dataId", "big"), ("group", GROUP), ("content", &big)]).await;
    assert_eq!(status, 400, "oversized content: {body}");
    expect_missing(&server, "big", None).await;
    let (status, body) = call(client().post(server.url(V2_CONFIG)).form(&[
        ("dataId", "big"),
        ("group", GROUP),
        ("content", big.as_str()),
    ]))
    .await;
    assert_eq!(status, 400, "{body}");
    assert_ne!(json(&body)["code"], 0, "{body}");
    expect_missing(&server, "big", None).await;
    let limit = "y".repeat(1024);
    publish(&server, "limit", &limit, &[]).await;
    expect_content(&server, "limit", None, &limit).await;

    // Blank or missing content.
    for blank in ["", "   ", "\n\t"] {
        let (status, body) = publish_form(&server, &[("dataId", "blank"), ("group", GROUP), ("content", blank)]).await;
        assert_eq!(status, 400, "blank content {blank:?}: {body}");
    }
    let (status, _) = publish_form(&server, &[("dataId", "blank"), ("group", GROUP)]).await;
    assert_eq!(status, 400, "missing content");
    expect_missing(&server, "blank", None).await;

    // Malformed Listening-Configs.
    for bad in [
        "a\u{2}b\u{2}c\u{2}d\u{2}e\u{1}".to_owned(),
        "a\u{2}b\u{1}".to_owned(),
        "only-one\u{1}".to_owned(),
        format!("{}{}", rec("fine", GROUP, ""), "x\u{2}y\u{1}"),
        rec("bad/id", GROUP, ""),
    ] {
        let (status, body, elapsed, _) = poll(listen_req(&server, &bad, &[("Long-Pulling-Timeout", "30000")])).await;
        assert_eq!(status, 400, "Listening-Configs {bad:?}: {body}");
        assert!(elapsed < Duration::from_secs(5));
    }
    let (status, _) = call(client().post(server.url(LISTENER)).header("Long-Pulling-Timeout", "30000")).await;
    assert_eq!(status, 400, "missing Listening-Configs");
    let too_many: String = (0..10_001).map(|i| rec(&format!("k{i}"), GROUP, "")).collect();
    let (status, _, _, _) = poll(listen_req(&server, &too_many, &[("Long-Pulling-Timeout", "30000")])).await;
    assert_eq!(status, 400, "more than 10 000 keys in one long-poll");
    let (status, _, _, _) =
        poll(listen_req(&server, &rec("limit", GROUP, ""), &[("Long-Pulling-Timeout", "soon")])).await;
    assert_eq!(status, 400, "non-numeric Long-Pulling-Timeout");

    // Unknown namespace: 404, not a crash.
    expect_missing(&server, "limit", Some("no-such-namespace")).await;

    // v2 errors are envelopes.
    let (status, body) =
        call(client().get(server.url(V2_CONFIG)).query(&[("dataId", "absent"), ("group", GROUP)])).await;
    assert_eq!(status, 404, "{body}");
    let v = json(&body);
    assert_eq!(v["code"], 20004, "{body}");
    assert_eq!(v["data"], "config data not exist", "{body}");
    let (status, body) = call(client().get(server.url(V2_CONFIG)).query(&[("group", GROUP)])).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(json(&body)["code"], 10000, "missing dataId: {body}");
    let (status, body) =
        call(client().post(server.url(V2_CONFIG)).form(&[("dataId", "a b"), ("group", GROUP), ("content", "x")])).await;
    assert_eq!(status, 400, "{body}");
    let code = json(&body)["code"].as_i64().unwrap_or(0);
    assert!(code == 20002 || code == 20008, "invalid dataId code {code}: {body}");
    let (status, body) =
        call(client().post(server.url(V2_CONFIG)).form(&[("dataId", "ok"), ("group", GROUP), ("content", " ")])).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(json(&body)["code"], 20002, "{body}");

    // The server is still up and stored nothing it refused.
    let (status, body) = call(client().get(server.url(CONFIGS)).query(&[
        ("search", "accurate"),
        ("dataId", ""),
        ("group", ""),
        ("pageNo", "1"),
        ("pageSize", "100"),
    ]))
    .await;
    assert_eq!(status, 200);
    let page = json(&body);
    assert_eq!(page["totalCount"], 1, "only `limit` was stored: {body}");
    expect_content(&server, "limit", None, &limit).await;
}

// ---- v2 ---------------------------------------------------------------------------------------

#[tokio::test]
async fn v2_config_crud_and_history_list() {
    let server = Server::start();
    let key = |ns: &'static str| vec![("dataId", "v2.yaml"), ("group", GROUP), ("namespaceId", ns)];

    let mut form = key("dev");
    form.extend([("content", "dev-1"), ("type", "yaml"), ("appName", "orders")]);
    let (status, body) = call(client().post(server.url(V2_CONFIG)).form(&form)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body), serde_json::json!({"code": 0, "message": "success", "data": true}));
    let mut form = key("dev");
    form.push(("content", "dev-2"));
    let (status, _) = call(client().post(server.url(V2_CONFIG)).form(&form)).await;
    assert_eq!(status, 200);

    let (status, body) = call(client().get(server.url(V2_CONFIG)).query(&key("dev"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(v2_envelope_ok(&body), "dev-2");
    // The v1 view of the same config (tenant = namespaceId).
    expect_content(&server, "v2.yaml", Some("dev"), "dev-2").await;
    // Another namespace does not see it.
    let (status, body) = call(client().get(server.url(V2_CONFIG)).query(&key("public"))).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(json(&body)["code"], 20004);

    // history/list: envelope around the page, newest first.
    let mut q = key("dev");
    q.extend([("pageNo", "1"), ("pageSize", "10")]);
    let (status, body) = call(client().get(server.url("/nacos/v2/cs/history/list")).query(&q)).await;
    assert_eq!(status, 200, "{body}");
    let page = v2_envelope_ok(&body);
    assert_page_shape(&page);
    assert_eq!(page["totalCount"], 2, "{page}");
    let items = page["pageItems"].as_array().unwrap();
    let ops: Vec<&str> = items.iter().map(|i| str_field(i, "opType")).collect();
    assert_eq!(ops, ["U", "I"]);
    assert_eq!(str_field(&items[1], "content"), "dev-1");
    assert_eq!(str_field(&items[0], "tenant"), "dev");

    // v2 history by nid and previous.
    let (newest, first) = (id_of(&items[0]), id_of(&items[1]));
    let mut q = key("dev");
    q.push(("nid", first.as_str()));
    let (status, body) = call(client().get(server.url("/nacos/v2/cs/history")).query(&q)).await;
    assert_eq!(status, 200, "{body}");
    let entry = v2_envelope_ok(&body);
    assert_eq!((str_field(&entry, "opType"), str_field(&entry, "content")), ("I", "dev-1"));
    let mut q = key("dev");
    q.push(("id", newest.as_str()));
    let (status, body) = call(client().get(server.url("/nacos/v2/cs/history/previous")).query(&q)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(id_of(&v2_envelope_ok(&body)), first);
    let (status, body) =
        call(client().get(server.url("/nacos/v2/cs/history/configs")).query(&[("namespaceId", "dev")])).await;
    assert_eq!(status, 200, "{body}");
    let configs = v2_envelope_ok(&body);
    assert_eq!(configs.as_array().map(Vec::len), Some(1), "{configs}");
    assert_eq!(str_field(&configs[0], "dataId"), "v2.yaml");

    // DELETE (query parameters) → data true, then 404 envelope.
    let (status, body) = call(client().delete(server.url(V2_CONFIG)).query(&key("dev"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(v2_envelope_ok(&body), true);
    let (status, body) = call(client().get(server.url(V2_CONFIG)).query(&key("dev"))).await;
    assert_eq!(status, 404, "{body}");
    let v = json(&body);
    assert_eq!(v["code"], 20004, "{body}");
    expect_missing(&server, "v2.yaml", Some("dev")).await;
}
