//! Namespace management as Nacos' console has it: v1 `/nacos/v1/console/namespaces` (list in a
//! `RestResult`, detail with `show=all`, id check with `checkNamespaceIdExist`, writes answer
//! `true`) and v2 `/nacos/v2/console/namespace` (`Result` envelope). Reads need a signed-in
//! user, writes an administrator, whatever `[auth] enabled` says.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::on;
use axum::{Json, extract::State};
use registry_proto::http::{Params, v1_error, v2_error, v2_ok};
use serde_json::{Value, json};

use super::guard::require;
use super::openapi::Ty::{Bool, Str};
use super::openapi::{Guard, NAMESPACE, Param, Route, Table};
use crate::api::ApiState;
use crate::auth::{Action, Resource};
use crate::namespaces::{NamespaceError, NamespaceInfo};

const V1: &str = "/nacos/v1/console/namespaces";
const V2: &str = "/nacos/v2/console/namespace";

/// Namespace routes (v1 and v2); every handler checks credentials.
pub const TABLE: Table = Table {
    tag: "namespaces",
    guard: Guard::None,
    routes: &[
        Route::get(V1, "Namespaces; or one (`show=all`), or whether an id exists", |m| on(m, v1_get)).checked().params(
            &[&[
                Param::opt("show", Str, "`all`: the namespace `namespaceId`"),
                Param::opt("namespaceId", NAMESPACE, "With `show=all`"),
                Param::opt("checkNamespaceIdExist", Bool, "Whether `customNamespaceId` exists"),
                Param::opt("customNamespaceId", Str, "With `checkNamespaceIdExist`"),
            ]],
        ),
        Route::post(V1, "Create a namespace", |m| on(m, v1_create)).checked().params(&[&[
            Param::opt("customNamespaceId", Str, "Id (default: a generated one)"),
            NAME,
            DESC,
        ]]),
        Route::put(V1, "Rename or describe a namespace", |m| on(m, v1_update)).checked().params(&[&[
            Param::req("namespace", Str, "Id"),
            Param::req("namespaceShowName", Str, "Name"),
            DESC,
        ]]),
        Route::delete(V1, "Delete an empty namespace", |m| on(m, v1_delete)).checked().params(&[&[ID]]),
        Route::get(V2, "One namespace", |m| on(m, v2_get)).checked().params(&[&[ID]]),
        Route::post(V2, "Create a namespace", |m| on(m, v2_create)).checked().params(&[&[
            Param::opt("namespaceId", NAMESPACE, "Id (default: a generated one)"),
            NAME,
            DESC,
        ]]),
        Route::put(V2, "Rename or describe a namespace", |m| on(m, v2_update)).checked().params(&[&[ID, NAME, DESC]]),
        Route::delete(V2, "Delete an empty namespace", |m| on(m, v2_delete)).checked().params(&[&[ID]]),
        Route::get("/nacos/v2/console/namespace/list", "Namespaces", |m| on(m, v2_list)).checked(),
    ],
};

const ID: Param = Param::req("namespaceId", NAMESPACE, "Id");
const NAME: Param = Param::req("namespaceName", Str, "Name");
const DESC: Param = Param::opt("namespaceDesc", Str, "Description");

/// Nacos' `Namespace` JSON.
fn to_json(n: &NamespaceInfo) -> Value {
    json!({
        "namespace": n.namespace.id,
        "namespaceShowName": n.namespace.name,
        "namespaceDesc": n.namespace.desc,
        "quota": n.namespace.quota,
        "configCount": n.config_count,
        "type": n.kind,
    })
}

fn v1_refusal(e: &NamespaceError) -> Response {
    let status = match e {
        NamespaceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        NamespaceError::NotFound(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    };
    v1_error(status, e.to_string())
}

/// v2 codes: 22000 illegal namespace, 22001 not exist, 22002 already exist (spec §3).
fn v2_refusal(e: &NamespaceError) -> Response {
    let (status, code, message) = match e {
        NamespaceError::Invalid(_) | NamespaceError::Public => (StatusCode::BAD_REQUEST, 22000, "illegal namespace"),
        NamespaceError::NotFound(_) => (StatusCode::NOT_FOUND, 22001, "namespace not exist"),
        NamespaceError::Exists(_) => (StatusCode::CONFLICT, 22002, "namespace already exist"),
        NamespaceError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, 30000, "server error"),
    };
    v2_error(status, code, message, e.to_string())
}

fn answer(r: Result<(), NamespaceError>, render: fn(&NamespaceError) -> Response, ok: fn() -> Response) -> Response {
    match r {
        Ok(()) => ok(),
        Err(e) => render(&e),
    }
}

fn v1_true() -> Response {
    Json(true).into_response()
}

fn v2_true() -> Response {
    v2_ok(true)
}

async fn v1_get(State(s): State<ApiState>, p: Params) -> Response {
    if let Err(r) = require(&s, &p, V1, &Resource::Console, Action::Read).await {
        return r;
    }
    if p.opt("checkNamespaceIdExist").is_some() {
        let id = p.opt("customNamespaceId").unwrap_or_default();
        return Json(!id.is_empty() && s.namespaces.exists(id)).into_response();
    }
    if p.opt("show") == Some("all") {
        let id = p.opt("namespaceId").unwrap_or_default();
        return match s.namespaces.get(id) {
            Some(n) => Json(to_json(&n)).into_response(),
            None => v1_refusal(&NamespaceError::NotFound(id.to_owned())),
        };
    }
    let list: Vec<Value> = s.namespaces.list().iter().map(to_json).collect();
    Json(json!({ "code": 200, "message": null, "data": list })).into_response()
}

/// Where the versions differ for writes: parameter names and answers.
struct Writes {
    path: &'static str,
    /// Id parameter of a create (v1 `customNamespaceId`), of an update (v1 `namespace`), and
    /// name parameter of an update (v1 `namespaceShowName`).
    create_id: &'static str,
    update_id: &'static str,
    update_name: &'static str,
    refusal: fn(&NamespaceError) -> Response,
    ok: fn() -> Response,
}

const V1_WRITES: Writes = Writes {
    path: V1,
    create_id: "customNamespaceId",
    update_id: "namespace",
    update_name: "namespaceShowName",
    refusal: v1_refusal,
    ok: v1_true,
};

const V2_WRITES: Writes = Writes {
    path: V2,
    create_id: "namespaceId",
    update_id: "namespaceId",
    update_name: "namespaceName",
    refusal: v2_refusal,
    ok: v2_true,
};

/// The three writes, each for an administrator.
async fn write(s: &ApiState, p: &Params, v: &Writes, op: Op) -> Response {
    if let Err(r) = require(s, p, v.path, &Resource::Admin, Action::Write).await {
        return r;
    }
    let param = |name| p.opt(name).unwrap_or_default();
    let desc = param("namespaceDesc");
    let r = match op {
        Op::Create => s.namespaces.create(p.opt(v.create_id), param("namespaceName"), desc).await.map(drop),
        Op::Update => s.namespaces.update(param(v.update_id), param(v.update_name), desc).await,
        Op::Delete => s.namespaces.delete(param("namespaceId")).await,
    };
    answer(r, v.refusal, v.ok)
}

#[derive(Clone, Copy)]
enum Op {
    Create,
    Update,
    Delete,
}

async fn v1_create(State(s): State<ApiState>, p: Params) -> Response {
    write(&s, &p, &V1_WRITES, Op::Create).await
}

async fn v1_update(State(s): State<ApiState>, p: Params) -> Response {
    write(&s, &p, &V1_WRITES, Op::Update).await
}

async fn v1_delete(State(s): State<ApiState>, p: Params) -> Response {
    write(&s, &p, &V1_WRITES, Op::Delete).await
}

async fn v2_get(State(s): State<ApiState>, p: Params) -> Response {
    if let Err(r) = require(&s, &p, V2, &Resource::Console, Action::Read).await {
        return r;
    }
    let id = p.opt("namespaceId").unwrap_or_default();
    match s.namespaces.get(id) {
        Some(n) => v2_ok(to_json(&n)),
        None => v2_refusal(&NamespaceError::NotFound(id.to_owned())),
    }
}

async fn v2_list(State(s): State<ApiState>, p: Params) -> Response {
    if let Err(r) = require(&s, &p, V2, &Resource::Console, Action::Read).await {
        return r;
    }
    v2_ok(s.namespaces.list().iter().map(to_json).collect::<Vec<_>>())
}

async fn v2_create(State(s): State<ApiState>, p: Params) -> Response {
    write(&s, &p, &V2_WRITES, Op::Create).await
}

async fn v2_update(State(s): State<ApiState>, p: Params) -> Response {
    write(&s, &p, &V2_WRITES, Op::Update).await
}

async fn v2_delete(State(s): State<ApiState>, p: Params) -> Response {
    write(&s, &p, &V2_WRITES, Op::Delete).await
}
