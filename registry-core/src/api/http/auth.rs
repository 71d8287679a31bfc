//! Nacos' auth endpoints (`/nacos/v1/auth/...`): login (also at `/v1/auth/users/login`, as the
//! controller is mapped twice), and user, role and permission management for administrators
//! (a user may change its own password). Answers as Nacos' `UserController`,
//! `RoleController` and `PermissionController`: `{code:200, message:null, data:"... ok!"}`
//! for changes, `Page` objects for lists, 400 with the message for refused changes.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::on;
use axum::{Json, extract::State};
use registry_proto::contract::auth::{PASSWORD, USERNAME};
use registry_proto::http::{Params, v1_error};
use serde_json::{Value, json};

use super::error::{ApiError, V1};
use super::guard::{refusal, require};
use super::openapi::Ty::{Int, Str};
use super::openapi::{Guard, Param, Route, Table};
use crate::api::ApiState;
use crate::auth::password;
use crate::auth::{Action, AuthError, Identity, Resource};
use crate::consistency::AuthCommand;
use crate::state::accounts::ADMIN_ROLE;

const USERS: &str = "/nacos/v1/auth/users";
const ROLES: &str = "/nacos/v1/auth/roles";
const PERMISSIONS: &str = "/nacos/v1/auth/permissions";

/// Login and the user, role and permission administration (handlers check credentials).
pub const TABLE: Table = Table {
    tag: "auth",
    guard: Guard::None,
    routes: &[
        Route::post("/nacos/v1/auth/login", "Log in: `accessToken`, `tokenTtl`, `globalAdmin`", |m| on(m, login))
            .params(&[LOGIN]),
        Route::post("/nacos/v1/auth/users/login", "Log in (Nacos' older path)", |m| on(m, login)).params(&[LOGIN]),
        Route::get(USERS, "Users", |m| on(m, list_users)).checked().params(&[&[USER_FILTER, BLUR], PAGE]),
        Route::post(USERS, "Create a user", |m| on(m, create_user))
            .checked()
            .params(&[&[USER, Param::req(PASSWORD, Str, "Password")]]),
        Route::put(USERS, "Change a user's password", |m| on(m, update_user))
            .checked()
            .params(&[&[USER, Param::req("newPassword", Str, "New password")]]),
        Route::delete(USERS, "Delete a user", |m| on(m, delete_user)).checked().params(&[&[USER]]),
        Route::get("/nacos/v1/auth/users/search", "User names containing `username`", |m| on(m, search_users))
            .checked()
            .params(&[&[USER_FILTER]]),
        Route::get(ROLES, "Role bindings", |m| on(m, list_roles))
            .checked()
            .params(&[&[USER_FILTER, ROLE_FILTER, BLUR], PAGE]),
        Route::post(ROLES, "Bind a role to a user", |m| on(m, bind_role)).checked().params(&[&[ROLE, USER]]),
        Route::delete(ROLES, "Unbind a role (from one user, or from all)", |m| on(m, unbind_role))
            .checked()
            .params(&[&[ROLE, USER_FILTER]]),
        Route::get("/nacos/v1/auth/roles/search", "Role names containing `role`", |m| on(m, search_roles))
            .checked()
            .params(&[&[ROLE_FILTER]]),
        Route::get(PERMISSIONS, "Permissions", |m| on(m, list_permissions))
            .checked()
            .params(&[&[ROLE_FILTER, BLUR], PAGE]),
        Route::post(PERMISSIONS, "Grant a role a permission", |m| on(m, add_permission))
            .checked()
            .params(&[PERMISSION]),
        Route::delete(PERMISSIONS, "Revoke a permission", |m| on(m, remove_permission)).checked().params(&[PERMISSION]),
    ],
};

const LOGIN: &[Param] = &[Param::req(USERNAME, Str, "User name"), Param::req(PASSWORD, Str, "Password")];
const USER: Param = Param::req(USERNAME, Str, "User name");
const USER_FILTER: Param = Param::opt(USERNAME, Str, "User name");
const ROLE: Param = Param::req("role", Str, "Role");
const ROLE_FILTER: Param = Param::opt("role", Str, "Role");
const BLUR: Param = Param::opt("search", Str, "`blur`: filters match substrings; otherwise equality");
const PAGE: &[Param] = &[Param::opt("pageNo", Int, "Page, from 1"), Param::opt("pageSize", Int, "Items per page")];
const PERMISSION: &[Param] = &[
    ROLE,
    Param::req("resource", Str, "`namespace:group:type` (`*` matches anything)"),
    Param::req("action", Str, "`r`, `w` or `rw`"),
];

/// `200 {code:200, message:null, data}`, Nacos' `RestResult`.
fn ok(data: &str) -> Response {
    Json(json!({ "code": 200, "message": null, "data": data })).into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    v1_error(StatusCode::BAD_REQUEST, message.into())
}

/// A required parameter; a missing one answers 400 through the shared error mapping.
fn required<'a>(p: &'a Params, name: &'static str) -> Result<&'a str, V1> {
    Ok(p.required(name)?)
}

/// Nacos' `Page`: 1-based `pageNo`, `pageSize` (default 100).
fn page(p: &Params, items: Vec<Value>) -> Response {
    let size = p.num::<usize>("pageSize").ok().flatten().filter(|s| *s > 0).unwrap_or(100);
    let number = p.num::<usize>("pageNo").ok().flatten().filter(|n| *n > 0).unwrap_or(1);
    let total = items.len();
    let page: Vec<Value> = items.into_iter().skip((number - 1).saturating_mul(size)).take(size).collect();
    Json(json!({
        "totalCount": total,
        "pageNumber": number,
        "pagesAvailable": total.div_ceil(size),
        "pageItems": page,
    }))
    .into_response()
}

/// Whether `value` passes the `search` mode: `blur` matches a substring, otherwise equality;
/// an absent filter matches everything.
fn filter(p: &Params, name: &str, value: &str) -> bool {
    match p.opt(name) {
        None => true,
        Some(want) if p.opt("search") == Some("blur") => value.contains(want.trim_matches('*')),
        Some(want) => value == want,
    }
}

async fn login(State(s): State<ApiState>, p: Params) -> Response {
    let username = p.opt(USERNAME).unwrap_or_default();
    let password = p.values_raw(PASSWORD).unwrap_or_default();
    match s.auth.login(username, password, p.remote.map(|r| r.ip())).await {
        Ok(l) => {
            let body = json!({
                "accessToken": l.access_token,
                "tokenTtl": l.token_ttl,
                "globalAdmin": l.global_admin,
                "username": l.username,
            });
            ([(header::AUTHORIZATION, format!("Bearer {}", l.access_token))], Json(body)).into_response()
        }
        Err(e) => refusal("/nacos/v1/auth/login", &e),
    }
}

async fn admin(s: &ApiState, p: &Params, path: &str, action: Action) -> Result<Identity, Response> {
    require(s, p, path, &Resource::Admin, action).await
}

fn rejected(path: &str, e: AuthError) -> Response {
    refusal(path, &e)
}

/// Applies an account change: `done` on success, the refusal otherwise.
async fn change(s: &ApiState, path: &str, cmd: AuthCommand, done: &str) -> Response {
    match s.auth.submit(cmd).await {
        Ok(()) => ok(done),
        Err(e) => rejected(path, e),
    }
}

async fn list_users(State(s): State<ApiState>, p: Params) -> Response {
    if let Err(r) = admin(&s, &p, USERS, Action::Read).await {
        return r;
    }
    let items = s
        .auth
        .accounts()
        .read(|a| a.users.keys().filter(|u| filter(&p, USERNAME, u)).map(|u| json!({ "username": u })).collect());
    page(&p, items)
}

async fn search_users(State(s): State<ApiState>, p: Params) -> Response {
    if let Err(r) = admin(&s, &p, USERS, Action::Read).await {
        return r;
    }
    let want = p.opt(USERNAME).unwrap_or_default().to_owned();
    let names: Vec<String> =
        s.auth.accounts().read(|a| a.users.keys().filter(|u| u.contains(&want)).cloned().collect());
    Json(names).into_response()
}

async fn create_user(State(s): State<ApiState>, p: Params) -> Response {
    if let Err(r) = admin(&s, &p, USERS, Action::Write).await {
        return r;
    }
    let (username, password) = match (required(&p, USERNAME), required(&p, PASSWORD)) {
        (Ok(u), Ok(pw)) => (u.to_owned(), pw.to_owned()),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    let password_hash = match password::hash(&password).await {
        Ok(h) => h,
        Err(e) => return rejected(USERS, e.into()),
    };
    change(&s, USERS, AuthCommand::CreateUser { username, password_hash }, "create user ok!").await
}

/// An administrator may change anyone's password, a user only its own.
async fn update_user(State(s): State<ApiState>, p: Params) -> Response {
    let (username, new_password) = match (required(&p, USERNAME), required(&p, "newPassword")) {
        (Ok(u), Ok(pw)) => (u.to_owned(), pw.to_owned()),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    let caller = match s.auth.authenticate(&super::guard::credentials(&s.auth, &p)).await {
        Ok(c) => c,
        Err(e) => return refusal(USERS, &e),
    };
    if caller != Identity::User(username.clone())
        && let Err(e) = s.auth.authorize(&caller, &Resource::Admin, Action::Write)
    {
        return refusal(USERS, &e);
    }
    let password_hash = match password::hash(&new_password).await {
        Ok(h) => h,
        Err(e) => return rejected(USERS, e.into()),
    };
    change(&s, USERS, AuthCommand::UpdatePassword { username, password_hash }, "update user ok!").await
}

async fn delete_user(State(s): State<ApiState>, p: Params) -> Response {
    if let Err(r) = admin(&s, &p, USERS, Action::Write).await {
        return r;
    }
    let username = match required(&p, USERNAME) {
        Ok(u) => u.to_owned(),
        Err(r) => return r.into_response(),
    };
    change(&s, USERS, AuthCommand::DeleteUser { username }, "delete user ok!").await
}

async fn list_roles(State(s): State<ApiState>, p: Params) -> Response {
    if let Err(r) = admin(&s, &p, ROLES, Action::Read).await {
        return r;
    }
    let items = s.auth.accounts().read(|a| {
        a.roles
            .iter()
            .filter(|b| filter(&p, USERNAME, &b.username) && filter(&p, "role", &b.role))
            .map(|b| json!({ "role": b.role, "username": b.username }))
            .collect()
    });
    page(&p, items)
}

async fn search_roles(State(s): State<ApiState>, p: Params) -> Response {
    if let Err(r) = admin(&s, &p, ROLES, Action::Read).await {
        return r;
    }
    let want = p.opt("role").unwrap_or_default().to_owned();
    let mut names: Vec<String> =
        s.auth.accounts().read(|a| a.roles.iter().filter(|b| b.role.contains(&want)).map(|b| b.role.clone()).collect());
    names.dedup();
    Json(names).into_response()
}

async fn bind_role(State(s): State<ApiState>, p: Params) -> Response {
    if let Err(r) = admin(&s, &p, ROLES, Action::Write).await {
        return r;
    }
    let (role, username) = match (required(&p, "role"), required(&p, USERNAME)) {
        (Ok(r), Ok(u)) => (r.to_owned(), u.to_owned()),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    if role == ADMIN_ROLE {
        return bad_request(format!("role '{ADMIN_ROLE}' is not permitted to create!"));
    }
    change(&s, ROLES, AuthCommand::BindRole { role, username }, "add role ok!").await
}

async fn unbind_role(State(s): State<ApiState>, p: Params) -> Response {
    if let Err(r) = admin(&s, &p, ROLES, Action::Write).await {
        return r;
    }
    let role = match required(&p, "role") {
        Ok(r) => r.to_owned(),
        Err(r) => return r.into_response(),
    };
    if role == ADMIN_ROLE {
        return bad_request(format!("role '{ADMIN_ROLE}' cannot be deleted"));
    }
    let username = p.opt(USERNAME).map(str::to_owned);
    let answer = match &username {
        Some(u) => format!("delete role of user {u} ok!"),
        None => "delete role ok!".to_owned(),
    };
    change(&s, ROLES, AuthCommand::UnbindRole { role, username }, &answer).await
}

async fn list_permissions(State(s): State<ApiState>, p: Params) -> Response {
    if let Err(r) = admin(&s, &p, PERMISSIONS, Action::Read).await {
        return r;
    }
    let items = s.auth.accounts().read(|a| {
        a.permissions
            .iter()
            .filter(|x| filter(&p, "role", &x.role))
            .map(|x| json!({ "role": x.role, "resource": x.resource, "action": x.action }))
            .collect()
    });
    page(&p, items)
}

fn permission_params(p: &Params) -> Result<(String, String, String), V1> {
    let role = required(p, "role")?.to_owned();
    let resource = required(p, "resource")?.to_owned();
    let action = required(p, "action")?.to_owned();
    if !matches!(action.as_str(), "r" | "w" | "rw") {
        return Err(V1(ApiError::bad_request(format!("action must be r, w or rw, not '{action}'"))));
    }
    Ok((role, resource, action))
}

async fn add_permission(State(s): State<ApiState>, p: Params) -> Response {
    if let Err(r) = admin(&s, &p, PERMISSIONS, Action::Write).await {
        return r;
    }
    let (role, resource, action) = match permission_params(&p) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    change(&s, PERMISSIONS, AuthCommand::AddPermission { role, resource, action }, "add permission ok!").await
}

async fn remove_permission(State(s): State<ApiState>, p: Params) -> Response {
    if let Err(r) = admin(&s, &p, PERMISSIONS, Action::Write).await {
        return r;
    }
    let (role, resource, action) = match permission_params(&p) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    change(&s, PERMISSIONS, AuthCommand::RemovePermission { role, resource, action }, "delete permission ok!").await
}
