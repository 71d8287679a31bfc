//! The HTTP side of the Nacos Open API that every server of it shares (registry, sidecar):
//! parameters read the way Nacos' Spring controllers read them, and the v1/v2 answer shapes.

mod params;

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
pub use params::{ParamError, Params, parse_bool, percent_decode};

/// The v1 failure: the status carries the Nacos code, the body is the plain-text message.
pub fn v1_error(status: StatusCode, message: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain;charset=UTF-8")], message).into_response()
}

/// The v2 failure: `{code, message, data}` with the detailed code, its abstract and the detail.
pub fn v2_error(status: StatusCode, code: u32, message: &str, data: impl serde::Serialize) -> Response {
    (status, Json(serde_json::json!({ "code": code, "message": message, "data": data }))).into_response()
}

/// The v2 success envelope around `data`.
pub fn v2_ok<T: serde::Serialize>(data: T) -> Response {
    Json(serde_json::json!({ "code": 0, "message": "success", "data": data })).into_response()
}
