//! The route tables of the HTTP API and the OpenAPI 3 document made from them.
//!
//! Every module of the API declares its routes as one `const` [`Table`]: method, path, summary,
//! parameters, answer and access of each route, next to the handler that serves it. `router()`
//! builds the axum router from those tables and `GET /nacos/openapi.json` serves the document
//! made from the same tables, so a route cannot be served without being described, nor described
//! without being served. Handlers read parameters through `Params` (query string and form body
//! alike, as Nacos does); the document lists them as query parameters on GET and DELETE and as
//! an `application/x-www-form-urlencoded` body on the other methods, as Nacos' clients send them.

use std::sync::LazyLock;

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use registry_proto::contract::auth::ACCESS_TOKEN;
use serde_json::{Map, Value, json};

use crate::api::ApiState;

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/nacos/openapi.json";

/// HTTP method of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Put,
    Delete,
    Patch,
}

impl Verb {
    /// Lower case, as OpenAPI's path items name operations.
    pub fn name(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Post => "post",
            Self::Put => "put",
            Self::Delete => "delete",
            Self::Patch => "patch",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Self::Get => MethodFilter::GET,
            Self::Post => MethodFilter::POST,
            Self::Put => MethodFilter::PUT,
            Self::Delete => MethodFilter::DELETE,
            Self::Patch => MethodFilter::PATCH,
        }
    }

    /// Whether Nacos' clients send the parameters in a form body.
    fn has_form(self) -> bool {
        matches!(self, Self::Post | Self::Put | Self::Patch)
    }
}

/// Type of a parameter's value (every value travels as text; handlers parse it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Str,
    Int,
    Num,
    Bool,
    /// A string of this regular expression (the rules the name validators check).
    Pattern(&'static str),
    /// An IPv4 address.
    Ip,
    /// A TCP/UDP port.
    Port,
}

/// A namespace id (`registry_proto::model::key`).
pub const NAMESPACE: Ty = Ty::Pattern("^[A-Za-z0-9_-]{1,64}$");
/// A cluster name (`registry_proto::model::key::validate_cluster`).
pub const CLUSTER: Ty = Ty::Pattern("^[A-Za-z0-9-]{1,64}$");
/// A config's `dataId` or `group` (`registry_proto::model::config`).
pub const CONFIG_NAME: Ty = Ty::Pattern("^[A-Za-z0-9_.:-]{1,128}$");

/// One request parameter.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
    pub doc: &'static str,
}

impl Param {
    pub const fn req(name: &'static str, ty: Ty, doc: &'static str) -> Self {
        Self { name, ty, required: true, doc }
    }

    pub const fn opt(name: &'static str, ty: Ty, doc: &'static str) -> Self {
        Self { name, ty, required: false, doc }
    }
}

/// Content type of a successful answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// JSON (v1 shapes, or the v2 `{code, message, data}` envelope).
    Json,
    /// Plain text (v1 writes answer `ok`).
    Text,
    Html,
    /// Prometheus text exposition.
    Prometheus,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials (login, health, metrics, the console's files, this document).
    Open,
    /// Credentials when client auth is enabled (`[auth]`), checked by the table's [`Guard`].
    WhenAuthEnabled,
    /// Credentials always, checked by the handler (`guard::require`).
    Always,
}

/// The layer `router()` puts on a table's routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    None,
    /// `guard::client_api`: the naming and config permission the parameters name.
    ClientApi,
    /// `guard::cluster_admin`: administrators and members.
    ClusterAdmin,
}

/// Builds a route's handler for its method.
pub type Handler = fn(MethodFilter) -> MethodRouter<ApiState>;

/// One route: what the router serves and what the document says of it.
#[derive(Clone, Copy)]
pub struct Route {
    pub verb: Verb,
    pub path: &'static str,
    pub summary: &'static str,
    /// Groups of parameters (shared groups such as a service's key, then the route's own).
    pub params: &'static [&'static [Param]],
    pub reply: Reply,
    /// `None`: the table's.
    access: Option<Access>,
    handler: Handler,
}

impl Route {
    const fn new(verb: Verb, path: &'static str, summary: &'static str, handler: Handler) -> Self {
        Self { verb, path, summary, params: &[], reply: Reply::Json, access: None, handler }
    }

    pub const fn get(path: &'static str, summary: &'static str, handler: Handler) -> Self {
        Self::new(Verb::Get, path, summary, handler)
    }

    pub const fn post(path: &'static str, summary: &'static str, handler: Handler) -> Self {
        Self::new(Verb::Post, path, summary, handler)
    }

    pub const fn put(path: &'static str, summary: &'static str, handler: Handler) -> Self {
        Self::new(Verb::Put, path, summary, handler)
    }

    pub const fn delete(path: &'static str, summary: &'static str, handler: Handler) -> Self {
        Self::new(Verb::Delete, path, summary, handler)
    }

    pub const fn patch(path: &'static str, summary: &'static str, handler: Handler) -> Self {
        Self::new(Verb::Patch, path, summary, handler)
    }

    pub const fn params(mut self, params: &'static [&'static [Param]]) -> Self {
        self.params = params;
        self
    }

    pub const fn reply(mut self, reply: Reply) -> Self {
        self.reply = reply;
        self
    }

    /// Served without credentials whatever the table's access.
    pub const fn open(mut self) -> Self {
        self.access = Some(Access::Open);
        self
    }

    /// The handler checks credentials itself, always.
    pub const fn checked(mut self) -> Self {
        self.access = Some(Access::Always);
        self
    }

    /// Parameters in order, flattened.
    pub fn all_params(&self) -> impl Iterator<Item = &'static Param> {
        self.params.iter().flat_map(|group| group.iter())
    }
}

/// The routes of one module.
pub struct Table {
    /// The OpenAPI tag of its operations.
    pub tag: &'static str,
    pub guard: Guard,
    pub routes: &'static [Route],
}

impl Table {
    /// The access a route of this table has.
    pub fn access(&self, route: &Route) -> Access {
        route.access.unwrap_or(match self.guard {
            Guard::None => Access::Open,
            Guard::ClientApi | Guard::ClusterAdmin => Access::WhenAuthEnabled,
        })
    }

    /// The table's routes as a router (without its guard layer; `router()` adds it).
    pub fn router(&self) -> Router<ApiState> {
        self.routes.iter().fold(Router::new(), |r, route| r.route(route.path, (route.handler)(route.verb.filter())))
    }
}

/// This document's own route.
pub const TABLE: Table = Table {
    tag: "openapi",
    guard: Guard::None,
    routes: &[Route::get(OPENAPI_PATH, "This OpenAPI 3 document of the HTTP API", |m| on(m, serve))],
};

/// The document of every table `router()` serves, made once.
static DOCUMENT: LazyLock<Bytes> = LazyLock::new(|| Bytes::from(document(super::TABLES).to_string()));

async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT.clone()).into_response()
}

/// The names the document gives the accepted credentials (`guard::credentials` reads them).
const SCHEMES: [&str; 3] = ["accessTokenParam", "accessTokenHeader", "bearer"];

/// The OpenAPI 3 document of `tables`.
pub fn document(tables: &[Table]) -> Value {
    let mut paths = Map::new();
    for table in tables {
        for route in table.routes {
            let item = paths.entry(route.path).or_insert_with(|| json!({}));
            item[route.verb.name()] = operation(table, route);
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "registry HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The Nacos-compatible HTTP Open API of the registry (naming and config v1/v2, \
                namespaces, auth, console, cluster administration, metrics). Parameters are read from \
                the query string and from a form body alike. Failures answer as Nacos does: v1 paths \
                with the status and a plain-text message, v2 paths with `{code, message, data}`.",
        },
        "paths": paths,
        "components": { "securitySchemes": {
            "accessTokenParam": { "type": "apiKey", "in": "query", "name": ACCESS_TOKEN,
                "description": "The `accessToken` of `POST /nacos/v1/auth/login` (also read from a form body)." },
            "accessTokenHeader": { "type": "apiKey", "in": "header", "name": ACCESS_TOKEN },
            "bearer": { "type": "http", "scheme": "bearer" },
        }},
    })
}

fn operation(table: &Table, route: &Route) -> Value {
    let access = table.access(route);
    let mut op = json!({
        "operationId": operation_id(route),
        "summary": route.summary,
        "tags": [table.tag],
        "responses": responses(route, access),
    });
    let path_params: Vec<&str> =
        route.path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
    let mut parameters: Vec<Value> = path_params
        .iter()
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect();
    if route.verb.has_form() {
        if route.params.iter().any(|g| !g.is_empty()) {
            op["requestBody"] = form_body(route);
        }
    } else {
        parameters.extend(route.all_params().map(|p| {
            json!({ "name": p.name, "in": "query", "required": p.required, "description": p.doc, "schema": schema(p.ty) })
        }));
    }
    if !parameters.is_empty() {
        op["parameters"] = Value::Array(parameters);
    }
    let mut security: Vec<Value> = match access {
        Access::Open => Vec::new(),
        Access::WhenAuthEnabled | Access::Always => SCHEMES.iter().map(|s| json!({ *s: [] })).collect(),
    };
    if access == Access::WhenAuthEnabled {
        // Anonymous too: credentials are needed only with client auth enabled.
        security.push(json!({}));
    }
    op["security"] = Value::Array(security);
    op
}

/// `get_nacos_v1_ns_instance`: the method and the path, every other character `_`.
fn operation_id(route: &Route) -> String {
    let path: String = route.path.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("{}{path}", route.verb.name())
}

fn schema(ty: Ty) -> Value {
    match ty {
        Ty::Str => json!({ "type": "string" }),
        Ty::Int => json!({ "type": "integer" }),
        Ty::Num => json!({ "type": "number" }),
        Ty::Bool => json!({ "type": "boolean" }),
        Ty::Pattern(pattern) => json!({ "type": "string", "pattern": pattern }),
        Ty::Ip => json!({ "type": "string", "format": "ipv4" }),
        Ty::Port => json!({ "type": "integer", "minimum": 0, "maximum": 65535 }),
    }
}

fn form_body(route: &Route) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for p in route.all_params() {
        let mut s = schema(p.ty);
        s["description"] = json!(p.doc);
        properties.insert(p.name.to_owned(), s);
        if p.required {
            required.push(p.name);
        }
    }
    let mut schema = json!({ "type": "object", "properties": properties });
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    json!({
        "required": !required.is_empty(),
        "content": { "application/x-www-form-urlencoded": { "schema": schema } },
    })
}

fn responses(route: &Route, access: Access) -> Value {
    let (content_type, schema) = match route.reply {
        Reply::Json => ("application/json", json!({})),
        Reply::Text => ("text/plain", json!({ "type": "string" })),
        Reply::Html => ("text/html", json!({ "type": "string" })),
        Reply::Prometheus => ("text/plain", json!({ "type": "string" })),
    };
    let mut out = json!({
        "200": { "description": "Success", "content": { content_type: { "schema": schema } } },
    });
    if route.all_params().next().is_some() {
        out["400"] =
            json!({ "description": "A parameter is missing or malformed (v1: plain text; v2: {code, message, data})" });
    }
    if access != Access::Open {
        out["403"] = json!({ "description": "No or wrong credentials, or no permission for the resource" });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_route_is_documented_once_with_its_parameters() {
        let doc = document(crate::api::http::TABLES);
        let mut seen = BTreeSet::new();
        let mut ids = BTreeSet::new();
        for table in crate::api::http::TABLES {
            for route in table.routes {
                assert!(seen.insert((route.path, route.verb.name())), "{} {} is twice", route.verb.name(), route.path);
                let op = &doc["paths"][route.path][route.verb.name()];
                assert_eq!(op["summary"], route.summary, "{} {}", route.verb.name(), route.path);
                assert!(ids.insert(operation_id(route)), "{} of {} is not unique", operation_id(route), route.path);
                let mut names = BTreeSet::new();
                for p in route.all_params() {
                    assert!(names.insert(p.name), "{} lists {} twice", route.path, p.name);
                }
            }
        }
        let documented: usize =
            doc["paths"].as_object().map(|p| p.values().map(|i| i.as_object().map_or(0, Map::len)).sum()).unwrap_or(0);
        assert_eq!(documented, seen.len());
        assert!(seen.contains(&(OPENAPI_PATH, "get")));
    }

    #[test]
    fn guarded_tables_do_not_open_routes() {
        // A route of a guarded table is behind the layer: `.open()` there would document an
        // access the router does not give.
        for table in crate::api::http::TABLES.iter().filter(|t| t.guard != Guard::None) {
            for route in table.routes {
                assert_eq!(table.access(route), Access::WhenAuthEnabled, "{}", route.path);
            }
        }
    }
}
