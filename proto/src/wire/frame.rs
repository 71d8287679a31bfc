//! The gRPC `Payload` framing: the body is the UTF-8 JSON of the message in `Any.value`,
//! `metadata.type` the Java simple class name. Responses always carry `resultCode`, `errorCode`
//! and `success` (spec §9.3, §16.5).

use std::collections::HashMap;

use prost_types::Any;
use serde_json::{Value, json};

use crate::nacos::{Metadata, Payload};

/// Frames a message: `type` in metadata, JSON in `Any.value`.
pub fn payload(kind: &str, body: &Value) -> Payload {
    raw_payload(kind, serde_json::to_vec(body).unwrap_or_default())
}

/// Frames an already encoded JSON body (a hot path encodes it once and sends it many times).
pub fn raw_payload(kind: &str, body: Vec<u8>) -> Payload {
    Payload {
        metadata: Some(Metadata { r#type: kind.to_owned(), headers: HashMap::new(), client_ip: String::new() }),
        body: Some(Any { type_url: String::new(), value: body }),
    }
}

/// A success response of type `kind` with extra fields.
pub fn ok_response(kind: &str, mut fields: Value, request_id: Option<&str>) -> Payload {
    if !fields.is_object() {
        fields = json!({});
    }
    fields["resultCode"] = json!(200);
    fields["errorCode"] = json!(0);
    fields["success"] = json!(true);
    if let Some(id) = request_id {
        fields["requestId"] = json!(id);
    }
    payload(kind, &fields)
}

/// A typed failure (`resultCode` 500, `errorCode` = `code`) of type `kind`.
pub fn failed_response(kind: &str, code: i32, message: &str, mut fields: Value) -> Payload {
    if !fields.is_object() {
        fields = json!({});
    }
    fields["resultCode"] = json!(500);
    fields["errorCode"] = json!(code);
    fields["success"] = json!(false);
    fields["message"] = json!(message);
    payload(kind, &fields)
}

/// `ErrorResponse`, which sets both codes to `code` (Nacos `ErrorResponse.build`).
pub fn error_response(code: i32, message: &str) -> Payload {
    payload("ErrorResponse", &json!({ "resultCode": code, "errorCode": code, "success": false, "message": message }))
}

/// The type and JSON body of a payload; `None` when the metadata or body is missing.
pub fn open(p: &Payload) -> Option<(&str, &[u8])> {
    let kind = p.metadata.as_ref().map(|m| m.r#type.as_str()).filter(|t| !t.is_empty())?;
    let body = p.body.as_ref().map_or(&b"{}"[..], |b| if b.value.is_empty() { &b"{}"[..] } else { &b.value[..] });
    Some((kind, body))
}

/// The type and decoded JSON of a payload (`Null` for a missing or undecodable body); `None`
/// when the payload names no type.
pub fn decode(p: &Payload) -> Option<(String, Value)> {
    let (kind, body) = open(p)?;
    Some((kind.to_owned(), serde_json::from_slice(body).unwrap_or(Value::Null)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_always_carry_codes() {
        let p = ok_response("InstanceResponse", json!({"type":"registerInstance"}), None);
        let v: Value = serde_json::from_slice(&p.body.unwrap().value).unwrap();
        assert_eq!(
            (v["resultCode"].as_i64(), v["errorCode"].as_i64(), v["success"].as_bool()),
            (Some(200), Some(0), Some(true))
        );
        let e = error_response(302, "x");
        let v: Value = serde_json::from_slice(&e.body.unwrap().value).unwrap();
        assert_eq!((v["resultCode"].as_i64(), v["errorCode"].as_i64()), (Some(302), Some(302)));
    }
}
