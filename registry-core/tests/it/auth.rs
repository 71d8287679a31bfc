//! Authentication and authorization end to end (spec §8), on real `registry` processes: every
//! protected endpoint family refuses without credentials and accepts with the right permission
//! over HTTP and gRPC; the crates.io `nacos-sdk` logs in with a user name and password and works
//! for naming and config; tokens under another secret or past their lifetime are refused;
//! repeated bad logins are refused; namespaces and accounts survive restarts (from a Raft
//! snapshot) and replicate through a 3-member cluster. With client auth off (the default), the
//! rest of the suite runs unchanged without credentials.

use std::time::Duration;

use nacos_sdk::api::config::ConfigServiceBuilder;
use nacos_sdk::api::naming::{NamingServiceBuilder, ServiceInstance};
use nacos_sdk::api::props::ClientProps;
use registry_core::auth::token::Signer;
use registry_proto::client::{ClientError, Connection, Setup};
use registry_proto::model::ServiceKey;
use registry_proto::wire::naming::WireInstance;
use serde_json::Value;

use crate::cluster::Cluster;
use crate::grpc_sdk::bounded;
use crate::harness::{Server, call, client, eventually, json};

/// 35 bytes, base64: HS256.
const SECRET: &str = "cmVnaXN0cnktaXQtc2VjcmV0LTAxMjM0NTY3ODlhYmNkZWY=";
pub(crate) const ADMIN_PASSWORD: &str = "admin-secret";
const IDENTITY_KEY: &str = "serverIdentity";
const IDENTITY_VALUE: &str = "member-secret";

/// Client auth on, a known secret, admin password and member identity.
pub(crate) fn auth_config(extra: &str) -> String {
    format!(
        "[auth]\nenabled = true\ntoken_secret = \"{SECRET}\"\nadmin_password = \"{ADMIN_PASSWORD}\"\n\
         identity_key = \"{IDENTITY_KEY}\"\nidentity_value = \"{IDENTITY_VALUE}\"\n{extra}"
    )
}

/// `POST /nacos/v1/auth/login` (form, as the Java client sends the password).
async fn login_answer(server: &Server, user: &str, password: &str) -> (u16, String) {
    call(client().post(server.url("/nacos/v1/auth/login")).query(&[("username", user)]).form(&[("password", password)]))
        .await
}

pub(crate) async fn login(server: &Server, user: &str, password: &str) -> String {
    let (status, body) = login_answer(server, user, password).await;
    assert_eq!(status, 200, "login of {user}: {body}");
    let v = json(&body);
    assert_eq!(v["username"], user);
    assert!(v["tokenTtl"].as_u64().is_some_and(|t| t > 0), "{body}");
    v["accessToken"].as_str().expect("accessToken").to_owned()
}

/// Status and body of `method path` with `params` (query) and an optional token.
async fn send(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    params: &[(&str, &str)],
    token: Option<&str>,
) -> (u16, String) {
    let mut q: Vec<(&str, &str)> = params.to_vec();
    if let Some(t) = token {
        q.push(("accessToken", t));
    }
    call(client().request(method, server.url(path)).query(&q)).await
}

/// Administrator actions through the management API, asserting success.
async fn admin_post(server: &Server, admin: &str, path: &str, params: &[(&str, &str)]) {
    let (status, body) = send(server, reqwest::Method::POST, path, params, Some(admin)).await;
    assert_eq!(status, 200, "POST {path} {params:?}: {body}");
}

/// A user `name` in role `role` with `permissions` (resource, action).
pub(crate) async fn user_with(server: &Server, admin: &str, name: &str, role: &str, permissions: &[(&str, &str)]) {
    admin_post(server, admin, "/nacos/v1/auth/users", &[("username", name), ("password", "pw-of-user")]).await;
    admin_post(server, admin, "/nacos/v1/auth/roles", &[("role", role), ("username", name)]).await;
    for (resource, action) in permissions {
        admin_post(
            server,
            admin,
            "/nacos/v1/auth/permissions",
            &[("role", role), ("resource", resource), ("action", action)],
        )
        .await;
    }
}

const GET: reqwest::Method = reqwest::Method::GET;
const POST: reqwest::Method = reqwest::Method::POST;

/// Without a configured password the administrator's is generated into a file only this user
/// can read, in the data directory, and never printed; a restart keeps it (created once, ever).
#[tokio::test]
async fn a_generated_administrator_password_goes_to_a_private_file_not_to_the_log() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut server = Server::start_with_config(Some("[auth]\nenabled = true\n"));
    let file = server.data_dir().join("admin-password");
    let password = std::fs::read_to_string(&file).expect("the generated password's file").trim().to_owned();
    assert!(password.len() >= 16, "{password:?}");
    let mode = std::fs::metadata(&file).expect("file").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "readable by the server's user only");
    login(&server, "nacos", &password).await;
    let output = server.output();
    assert!(output.contains("created the administrator 'nacos' with a generated password"), "{output}");
    assert!(!output.contains(&password), "the password is not in the log");

    server.kill9();
    server.restart();
    let again = std::fs::read_to_string(&file).expect("kept").trim().to_owned();
    assert_eq!(again, password, "not generated again");
    login(&server, "nacos", &password).await;
    assert_eq!(login_answer(&server, "nacos", "nacos").await.0, 403, "no default password");
}

#[tokio::test]
async fn with_client_auth_off_client_apis_stay_open_and_the_console_needs_a_login() {
    let server = Server::start_with_config(Some(&format!("[auth]\nadmin_password = \"{ADMIN_PASSWORD}\"\n")));
    let instance = [("serviceName", "open"), ("ip", "10.0.0.1"), ("port", "80")];
    assert_eq!(send(&server, POST, "/nacos/v1/ns/instance", &instance, None).await, (200, "ok".into()));
    let (status, body) = send(&server, GET, "/nacos/v1/console/namespaces", &[], None).await;
    assert_eq!((status, body.as_str()), (403, "user not found!"));
    // Standalone without a configured secret: development mode signs with a random one.
    let admin = login(&server, "nacos", ADMIN_PASSWORD).await;
    let (status, body) = send(&server, GET, "/nacos/v1/console/namespaces", &[], Some(&admin)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["data"][0]["namespace"], "public");
    let (status, _) = send(&server, GET, "/nacos/v1/auth/users", &[], None).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn every_protected_http_family_refuses_without_credentials_and_accepts_with_the_permission() {
    let server = Server::start_with_config(Some(&auth_config("")));
    let admin = login(&server, "nacos", ADMIN_PASSWORD).await;
    user_with(&server, &admin, "dev", "devs", &[("public:*:config/*", "rw"), ("public:*:naming/*", "r")]).await;
    let dev = login(&server, "dev", "pw-of-user").await;

    // Naming v1/v2: nothing without credentials; reads with `r`; writes need `w`.
    let instance = [("serviceName", "orders"), ("ip", "10.0.0.1"), ("port", "80")];
    assert_eq!(send(&server, POST, "/nacos/v1/ns/instance", &instance, None).await, (403, "user not found!".into()));
    assert_eq!(
        send(&server, POST, "/nacos/v1/ns/instance", &instance, Some(&dev)).await,
        (403, "authorization failed!".into())
    );
    let list = [("serviceName", "orders")];
    assert_eq!(send(&server, GET, "/nacos/v1/ns/instance/list", &list, Some(&dev)).await.0, 200);
    let (status, body) = send(&server, GET, "/nacos/v2/ns/instance/list", &list, None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(json(&body)["data"], "user not found!");
    assert_eq!(send(&server, GET, "/nacos/v2/ns/instance/list", &list, Some(&dev)).await.0, 200);
    admin_post(
        &server,
        &admin,
        "/nacos/v1/auth/permissions",
        &[("role", "devs"), ("resource", "public:*:naming/*"), ("action", "rw")],
    )
    .await;
    assert_eq!(send(&server, POST, "/nacos/v1/ns/instance", &instance, Some(&dev)).await, (200, "ok".into()));

    // Config v1/v2: the token as a parameter, as `Authorization: Bearer`, or user + password.
    let cfg = [("dataId", "app.yaml"), ("group", "G"), ("content", "a: 1")];
    assert_eq!(send(&server, POST, "/nacos/v1/cs/configs", &cfg, None).await.0, 403);
    assert_eq!(send(&server, POST, "/nacos/v1/cs/configs", &cfg, Some(&dev)).await, (200, "true".into()));
    let read = [("dataId", "app.yaml"), ("group", "G")];
    assert_eq!(send(&server, GET, "/nacos/v2/cs/config", &read, None).await.0, 403);
    let (status, body) = call(client().get(server.url("/nacos/v2/cs/config")).query(&read).bearer_auth(&dev)).await;
    assert_eq!((status, json(&body)["data"].as_str()), (200, Some("a: 1")), "{body}");
    let npm_style = [("dataId", "app.yaml"), ("group", "G"), ("username", "dev"), ("password", "pw-of-user")];
    assert_eq!(send(&server, GET, "/nacos/v1/cs/configs", &npm_style, None).await, (200, "a: 1".into()));
    let wrong = [("dataId", "app.yaml"), ("group", "G"), ("username", "dev"), ("password", "nope")];
    assert_eq!(send(&server, GET, "/nacos/v1/cs/configs", &wrong, None).await.0, 403);

    // Cluster administration: administrators and members only; metrics and health stay open.
    let raft = "/nacos/v2/core/cluster/raft";
    assert_eq!(send(&server, GET, raft, &[], None).await.0, 403);
    assert_eq!(send(&server, GET, raft, &[], Some(&dev)).await.0, 403);
    assert_eq!(send(&server, GET, raft, &[], Some(&admin)).await.0, 200);
    let (status, _) = call(client().get(server.url(raft)).header(IDENTITY_KEY, IDENTITY_VALUE)).await;
    assert_eq!(status, 200, "the member identity header is accepted");
    let (status, _) = call(client().get(server.url(raft)).header(IDENTITY_KEY, "guess")).await;
    assert_eq!(status, 403);
    assert_eq!(send(&server, GET, "/metrics", &[], None).await.0, 200);
    assert_eq!(send(&server, GET, "/nacos/actuator/prometheus", &[], None).await.0, 200);
    assert_eq!(send(&server, GET, "/nacos/v1/console/health/readiness", &[], None).await.0, 200);
    // The web console's pages load without a login (they ask for one); its data does not.
    assert_eq!(send(&server, GET, "/nacos/", &[], None).await.0, 200);
    let cluster = "/nacos/v1/console/cluster";
    assert_eq!(send(&server, GET, cluster, &[], None).await.0, 403);
    let (status, body) = send(&server, GET, cluster, &[], Some(&dev)).await;
    assert_eq!((status, json(&body)["data"]["members"].as_array().map(Vec::len)), (200, Some(1)), "{body}");

    // Console: any signed-in user reads namespaces; administrators change them and accounts.
    let ns = "/nacos/v1/console/namespaces";
    assert_eq!(send(&server, GET, ns, &[], None).await.0, 403);
    assert_eq!(send(&server, GET, ns, &[], Some(&dev)).await.0, 200);
    let create = [("customNamespaceId", "dev"), ("namespaceName", "Dev")];
    assert_eq!(send(&server, POST, ns, &create, Some(&dev)).await, (403, "authorization failed!".into()));
    assert_eq!(send(&server, POST, ns, &create, Some(&admin)).await, (200, "true".into()));
    for path in ["/nacos/v1/auth/users", "/nacos/v1/auth/roles", "/nacos/v1/auth/permissions"] {
        assert_eq!(send(&server, GET, path, &[], None).await.0, 403, "{path}");
        assert_eq!(send(&server, GET, path, &[], Some(&dev)).await.0, 403, "{path}");
        let (status, body) = send(&server, GET, path, &[("pageNo", "1"), ("pageSize", "10")], Some(&admin)).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(json(&body)["totalCount"].as_u64().is_some_and(|n| n >= 1), "{path}: {body}");
    }
    // A user may change its own password, not another's.
    let mine = [("username", "dev"), ("newPassword", "new-pw")];
    assert_eq!(send(&server, reqwest::Method::PUT, "/nacos/v1/auth/users", &mine, Some(&dev)).await.0, 200);
    let theirs = [("username", "nacos"), ("newPassword", "taken")];
    assert_eq!(send(&server, reqwest::Method::PUT, "/nacos/v1/auth/users", &theirs, Some(&dev)).await.0, 403);
    login(&server, "dev", "new-pw").await;
    let (status, body) =
        send(&server, reqwest::Method::DELETE, "/nacos/v1/auth/users", &[("username", "nacos")], Some(&admin)).await;
    assert_eq!((status, body.as_str()), (400, "cannot delete admin: nacos"));
    // A deleted user's token stops working.
    let gone = [("username", "dev")];
    assert_eq!(send(&server, reqwest::Method::DELETE, "/nacos/v1/auth/users", &gone, Some(&admin)).await.0, 200);
    assert_eq!(send(&server, GET, "/nacos/v1/cs/configs", &read, Some(&dev)).await, (403, "user not found!".into()));
}

#[tokio::test]
async fn tokens_under_another_secret_or_past_their_lifetime_are_refused() {
    let server = Server::start_with_config(Some(&auth_config("token_ttl_seconds = 1\n")));
    let read = [("dataId", "x"), ("group", "G")];
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let forged = Signer::from_bytes(vec![7; 32]).unwrap().issue("nacos", now, 3600);
    assert_eq!(send(&server, GET, "/nacos/v1/cs/configs", &read, Some(&forged)).await, (403, "token invalid!".into()));
    let tampered = format!("{}x", login(&server, "nacos", ADMIN_PASSWORD).await);
    assert_eq!(send(&server, GET, "/nacos/v1/cs/configs", &read, Some(&tampered)).await.1, "token invalid!");
    // A real token of this server, once its one-second lifetime is over.
    let token = login(&server, "nacos", ADMIN_PASSWORD).await;
    let expired = eventually(Duration::from_secs(5), || async {
        let (status, body) = send(&server, GET, "/nacos/v1/cs/configs", &read, Some(&token)).await;
        (status == 403).then_some(body)
    })
    .await
    .expect("the token expires");
    assert_eq!(expired, "token expired!");
}

#[tokio::test]
async fn repeated_bad_logins_are_refused_even_with_the_right_password() {
    let server = Server::start_with_config(Some(&auth_config("login_max_failures = 3\nlogin_window_seconds = 600\n")));
    for _ in 0..3 {
        assert_eq!(login_answer(&server, "nacos", "wrong").await, (403, "user not found!".into()));
    }
    let (status, body) = login_answer(&server, "nacos", ADMIN_PASSWORD).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("too many failed login attempts"), "{body}");
    // Password checks on requests count the same way.
    let npm_style = [("dataId", "x"), ("group", "G"), ("username", "nacos"), ("password", ADMIN_PASSWORD)];
    assert_eq!(send(&server, GET, "/nacos/v1/cs/configs", &npm_style, None).await.0, 403);
    // Other users are not locked out.
    assert_eq!(login_answer(&server, "someone", "wrong").await.0, 403);
}

fn grpc_instance() -> WireInstance {
    WireInstance { ip: Some("10.0.0.9".into()), port: 8080, ..WireInstance::default() }
}

/// Fails unless `r` is a 403 refusal with `message`.
fn refused(r: Result<(), ClientError>, message: &str) {
    match r {
        Err(ClientError::Rejected { code, message: m }) => assert_eq!((code, m.as_str()), (403, message)),
        other => panic!("expected a 403 refusal ({message}), got {other:?}"),
    }
}

/// A raw `ServiceQueryRequest` for `grpc-orders`: the response type and body.
async fn query(conn: &Connection) -> (String, Value) {
    let body = serde_json::json!({"namespace": "public", "groupName": "DEFAULT_GROUP", "serviceName": "grpc-orders"});
    conn.unary().call("ServiceQueryRequest", &body).await.expect("an answer")
}

async fn grpc_with(server: &Server, token: Option<&str>) -> Connection {
    let mut setup = Setup::new("it-auth", "naming");
    if let Some(token) = token {
        setup.headers.insert(registry_proto::contract::auth::ACCESS_TOKEN.to_owned(), token.to_owned());
    }
    Connection::connect(server.grpc, &setup).await.expect("grpc connect")
}

#[tokio::test]
async fn grpc_requests_need_a_token_that_permits_them() {
    let server = Server::start_with_config(Some(&auth_config("")));
    let admin = login(&server, "nacos", ADMIN_PASSWORD).await;
    user_with(&server, &admin, "reader", "readers", &[("public:*:*", "r")]).await;
    let reader = login(&server, "reader", "pw-of-user").await;
    let service = ServiceKey::new("public", "DEFAULT_GROUP", "grpc-orders").unwrap();

    let anonymous = grpc_with(&server, None).await;
    refused(anonymous.unary().register(&service, &grpc_instance()).await, "user not found!");
    // The refusal is the request's own response type, as Nacos answers.
    let (kind, body) = query(&anonymous).await;
    assert_eq!(
        (kind.as_str(), body["resultCode"].as_i64(), body["errorCode"].as_i64()),
        ("QueryServiceResponse", Some(500), Some(403))
    );

    let read_only = grpc_with(&server, Some(&reader)).await;
    refused(read_only.unary().register(&service, &grpc_instance()).await, "authorization failed!");
    let (kind, body) = query(&read_only).await;
    assert_eq!((kind.as_str(), body["resultCode"].as_i64()), ("QueryServiceResponse", Some(200)), "{body}");

    let admin_conn = grpc_with(&server, Some(&admin)).await;
    admin_conn.unary().register(&service, &grpc_instance()).await.expect("the administrator registers");
    let (_, body) =
        send(&server, GET, "/nacos/v1/ns/instance/list", &[("serviceName", "grpc-orders")], Some(&reader)).await;
    assert_eq!(json(&body)["hosts"][0]["ip"], "10.0.0.9", "{body}");
}

fn sdk_props(server: &Server, cache: &std::path::Path, password: &str) -> ClientProps {
    crate::config_sdk::props(server.http.port(), server.grpc.port(), cache)
        .auth_username("nacos")
        .auth_password(password)
}

#[tokio::test]
async fn nacos_sdk_with_username_and_password_works_end_to_end() {
    let server = Server::start_with_config(Some(&auth_config("")));
    let cache = tempfile::tempdir().unwrap();
    let naming = bounded(
        "naming build",
        NamingServiceBuilder::new(sdk_props(&server, cache.path(), ADMIN_PASSWORD)).enable_auth_plugin_http().build(),
    )
    .await
    .expect("naming client");
    let instance = ServiceInstance { ip: "10.0.0.7".into(), port: 9000, ..Default::default() };
    bounded("register", naming.register_instance("sdk-auth".into(), None, instance)).await.expect("register");
    let found = eventually(Duration::from_secs(10), || async {
        let all = naming.get_all_instances("sdk-auth".into(), None, Vec::new(), false).await.ok()?;
        (all.len() == 1).then_some(all)
    })
    .await
    .expect("the SDK sees its instance");
    assert_eq!(found[0].ip, "10.0.0.7");

    let config = bounded(
        "config build",
        ConfigServiceBuilder::new(sdk_props(&server, cache.path(), ADMIN_PASSWORD)).enable_auth_plugin_http().build(),
    )
    .await
    .expect("config client");
    let published = bounded("publish", config.publish_config("sdk.yaml".into(), "G".into(), "k: v".into(), None)).await;
    assert!(published.expect("publish"), "published");
    let got = bounded("get", config.get_config("sdk.yaml".into(), "G".into())).await.expect("get");
    assert_eq!(got.content(), "k: v");

    // The same client with a wrong password is refused by the server.
    let wrong = tempfile::tempdir().unwrap();
    let bad = bounded(
        "config build",
        ConfigServiceBuilder::new(sdk_props(&server, wrong.path(), "wrong")).enable_auth_plugin_http().build(),
    )
    .await;
    if let Ok(bad) = bad {
        let r = bounded("publish", bad.publish_config("sdk.yaml".into(), "G".into(), "evil".into(), None)).await;
        assert!(!matches!(r, Ok(true)), "a client without a valid login must not publish: {r:?}");
    }
    let (_, body) = send(
        &server,
        GET,
        "/nacos/v1/cs/configs",
        &[("dataId", "sdk.yaml"), ("group", "G")],
        Some(&login(&server, "nacos", ADMIN_PASSWORD).await),
    )
    .await;
    assert_eq!(body, "k: v");
}

/// The namespace list as `server` answers it: (id, name, desc, configCount, type).
async fn namespaces(server: &Server, token: &str) -> Vec<(String, String, String, u64, u64)> {
    let (status, body) = send(server, GET, "/nacos/v1/console/namespaces", &[], Some(token)).await;
    assert_eq!(status, 200, "{body}");
    json(&body)["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|n: &Value| {
            (
                n["namespace"].as_str().unwrap_or_default().to_owned(),
                n["namespaceShowName"].as_str().unwrap_or_default().to_owned(),
                n["namespaceDesc"].as_str().unwrap_or_default().to_owned(),
                n["configCount"].as_u64().unwrap_or(u64::MAX),
                n["type"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

#[tokio::test]
async fn namespace_crud_over_v1_and_v2_survives_a_restart_from_a_snapshot() {
    // Snapshot after every few entries and keep no log behind it: after the restart the
    // namespaces and accounts can only come from the snapshot.
    let raft = "[raft]\nsnapshot_after_logs = 3\nkeep_logs_after_snapshot = 0\n";
    let mut server = Server::start_with_config(Some(&format!("{}{raft}", auth_config(""))));
    let admin = login(&server, "nacos", ADMIN_PASSWORD).await;
    let v1 = "/nacos/v1/console/namespaces";
    let v2 = "/nacos/v2/console/namespace";
    let create = [("customNamespaceId", "dev"), ("namespaceName", "Dev"), ("namespaceDesc", "for devs")];
    assert_eq!(send(&server, POST, v1, &create, Some(&admin)).await, (200, "true".into()));
    assert_eq!(send(&server, POST, v1, &create, Some(&admin)).await.0, 400, "the id is taken");
    let (status, body) =
        send(&server, POST, v2, &[("namespaceId", "test"), ("namespaceName", "Test")], Some(&admin)).await;
    assert_eq!((status, json(&body)["data"].as_bool()), (200, Some(true)), "{body}");
    let (status, body) =
        send(&server, POST, v2, &[("namespaceId", "test"), ("namespaceName", "Test")], Some(&admin)).await;
    assert_eq!((status, json(&body)["code"].as_u64()), (409, Some(22002)), "{body}");
    assert_eq!(
        send(&server, POST, v1, &[("customNamespaceId", "bad id!"), ("namespaceName", "x")], Some(&admin)).await.0,
        400
    );
    // Without an id, a UUID is made.
    assert_eq!(send(&server, POST, v1, &[("namespaceName", "Generated")], Some(&admin)).await.0, 200);
    // Configs count per namespace (client APIs never check that a namespace exists).
    let cfg = [("dataId", "a"), ("group", "G"), ("content", "x"), ("tenant", "dev")];
    assert_eq!(send(&server, POST, "/nacos/v1/cs/configs", &cfg, Some(&admin)).await.0, 200);
    let cfg = [("dataId", "a"), ("group", "G"), ("content", "x"), ("tenant", "never-created")];
    assert_eq!(send(&server, POST, "/nacos/v1/cs/configs", &cfg, Some(&admin)).await.0, 200);
    let put = [("namespace", "test"), ("namespaceShowName", "Testing"), ("namespaceDesc", "renamed")];
    assert_eq!(send(&server, reqwest::Method::PUT, v1, &put, Some(&admin)).await, (200, "true".into()));
    assert_eq!(send(&server, reqwest::Method::DELETE, v1, &[("namespaceId", "public")], Some(&admin)).await.0, 400);
    user_with(&server, &admin, "keeper", "keepers", &[("dev:*:*", "rw")]).await;

    let list = namespaces(&server, &admin).await;
    assert_eq!(list.len(), 4, "{list:?}");
    assert_eq!(list[0], ("public".into(), "public".into(), "Public Namespace".into(), 0, 0));
    assert!(list.contains(&("dev".into(), "Dev".into(), "for devs".into(), 1, 2)), "{list:?}");
    assert!(list.contains(&("test".into(), "Testing".into(), "renamed".into(), 0, 2)), "{list:?}");
    let check = [("checkNamespaceIdExist", "true"), ("customNamespaceId", "dev")];
    assert_eq!(send(&server, GET, v1, &check, Some(&admin)).await.1, "true");
    let (_, body) = send(&server, GET, v2, &[("namespaceId", "dev")], Some(&admin)).await;
    assert_eq!(json(&body)["data"]["namespaceShowName"], "Dev", "{body}");
    let (status, body) = send(&server, GET, v2, &[("namespaceId", "nope")], Some(&admin)).await;
    assert_eq!((status, json(&body)["code"].as_u64()), (404, Some(22001)), "{body}");
    assert_eq!(send(&server, reqwest::Method::DELETE, v2, &[("namespaceId", "test")], Some(&admin)).await.0, 200);
    let before = namespaces(&server, &admin).await;
    assert_eq!(before.len(), 3);

    server.kill9();
    server.restart();
    let admin = login(&server, "nacos", ADMIN_PASSWORD).await;
    assert_eq!(namespaces(&server, &admin).await, before);
    let keeper = login(&server, "keeper", "pw-of-user").await;
    let read = [("dataId", "a"), ("group", "G"), ("tenant", "dev")];
    assert_eq!(send(&server, GET, "/nacos/v1/cs/configs", &read, Some(&keeper)).await, (200, "x".into()));
}

/// Whether `member` lists user `name`, asked with the member identity.
async fn has_user(member: &Server, name: &str) -> Option<()> {
    let users = client().get(member.url("/nacos/v1/auth/users")).query(&[("username", name)]);
    let (status, body) = call(users.header(IDENTITY_KEY, IDENTITY_VALUE)).await;
    (status == 200 && json(&body)["totalCount"] == 1).then_some(())
}

/// Every member proposes a generated password; exactly one creation takes effect, and exactly
/// that member keeps its password file: the password in it logs in on every member, and the
/// others' files are gone.
#[tokio::test]
async fn in_a_cluster_only_the_member_whose_generated_password_won_keeps_its_file() {
    let config = format!(
        "[auth]\nenabled = true\ntoken_secret = \"{SECRET}\"\nidentity_key = \"{IDENTITY_KEY}\"\n\
         identity_value = \"{IDENTITY_VALUE}\"\n"
    );
    let cluster = Cluster::start(3, Some(&config));
    let created = eventually(Duration::from_secs(30), || has_user(&cluster.members[0], "nacos")).await;
    assert!(created.is_some(), "the administrator was created");
    let files = || cluster.members.iter().map(|m| m.data_dir().join("admin-password")).collect::<Vec<_>>();
    // The losers remove theirs once they see the creation applied.
    let kept = eventually(Duration::from_secs(30), || async {
        let kept: Vec<String> = files().iter().filter_map(|f| std::fs::read_to_string(f).ok()).collect();
        (kept.len() == 1).then(|| kept[0].trim().to_owned())
    })
    .await;
    let Some(password) = kept else {
        panic!("one file kept: {:?}", files().iter().map(|f| f.exists()).collect::<Vec<_>>());
    };
    for member in &cluster.members {
        login(member, "nacos", &password).await;
    }
}

#[tokio::test]
async fn namespaces_and_accounts_replicate_through_a_three_member_cluster() {
    let cluster = Cluster::start(3, Some(&auth_config("")));
    let [a, b, c] = [&cluster.members[0], &cluster.members[1], &cluster.members[2]];
    // The administrator is created once a leader exists. Wait for it through the member
    // identity (polling logins would trip the login limit).
    let created = eventually(Duration::from_secs(30), || has_user(a, "nacos")).await;
    assert!(created.is_some(), "the administrator was created");
    let admin = login(a, "nacos", ADMIN_PASSWORD).await;
    let create = [("customNamespaceId", "shared"), ("namespaceName", "Shared")];
    assert_eq!(send(a, POST, "/nacos/v1/console/namespaces", &create, Some(&admin)).await, (200, "true".into()));
    // A token from one member is good on every member (one secret).
    user_with(b, &admin, "ops", "operators", &[("shared:*:*", "rw")]).await;
    for member in [a, b, c] {
        let seen = eventually(Duration::from_secs(10), || async {
            namespaces(member, &admin).await.iter().any(|n| n.0 == "shared").then_some(())
        })
        .await;
        assert!(seen.is_some(), "namespace replicated to {}", member.http);
    }
    assert!(eventually(Duration::from_secs(10), || has_user(c, "ops")).await.is_some(), "user replicated");
    let ops = login(c, "ops", "pw-of-user").await;
    // Each member applies the account changes when it learns they committed.
    let cfg = [("dataId", "x"), ("group", "G"), ("content", "1"), ("tenant", "shared")];
    let published = eventually(Duration::from_secs(10), || async {
        (send(a, POST, "/nacos/v1/cs/configs", &cfg, Some(&ops)).await == (200, "true".into())).then_some(())
    })
    .await;
    assert!(published.is_some(), "the user's permission reached the first member");
    let other = [("dataId", "x"), ("group", "G"), ("content", "1")];
    assert_eq!(send(b, POST, "/nacos/v1/cs/configs", &other, Some(&ops)).await.0, 403);
    // v1 ephemeral writes forwarded to the responsible member (most of these, by the hash of
    // their ip:port) carry the credentials along, here a bearer header.
    for port in 8001..=8006 {
        let port = port.to_string();
        let instance = [("serviceName", "fwd"), ("ip", "10.1.0.1"), ("port", port.as_str()), ("namespaceId", "shared")];
        let (status, body) =
            call(client().post(c.url("/nacos/v1/ns/instance")).query(&instance).bearer_auth(&ops)).await;
        assert_eq!((status, body.as_str()), (200, "ok"), "port {port}");
    }
}
