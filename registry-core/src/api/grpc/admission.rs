//! The gRPC side of the one auth check: with client auth on, every request must carry
//! credentials in its metadata headers (`accessToken`, or `username` + `password`, or the
//! server identity header) that permit the resource its body names. A refusal is the
//! request's own response type with `resultCode` 500 and `errorCode` 403, as Nacos'
//! `RemoteRequestAuthFilter` answers.

use std::collections::HashMap;
use std::sync::Arc;

use registry_proto::contract::auth::{ACCESS_TOKEN, PASSWORD, USERNAME};
use registry_proto::nacos::Payload;
use registry_proto::server::Connection;
use registry_proto::wire::codes::OVER_THRESHOLD;
use registry_proto::wire::frame::failed_response;
use serde_json::Value;

use crate::auth::{Action, Auth, Credentials, Resource};
use crate::limits::NamespaceRates;

/// Nacos' `NO_RIGHT`.
const NO_RIGHT: i32 = 403;

/// Admits or refuses one request.
pub(crate) async fn admit(
    auth: &Auth,
    conn: &Arc<Connection>,
    kind: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> Result<(), Payload> {
    if !auth.client_auth_enabled() {
        return Ok(());
    }
    let header = |name: &str| headers.get(name).filter(|v| !v.is_empty()).cloned();
    let credentials = Credentials {
        access_token: header(ACCESS_TOKEN),
        username: header(USERNAME),
        password: header(PASSWORD),
        server_identity: auth.identity_header().and_then(header),
        ip: conn.meta.remote_ip.parse().ok(),
    };
    let refuse =
        |e: &crate::auth::AuthError| failed_response(response_type(kind), NO_RIGHT, &e.to_string(), Value::Null);
    let identity = auth.authenticate(&credentials).await.map_err(|e| refuse(&e))?;
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let (resources, action) = resources(kind, &body);
    for resource in &resources {
        auth.authorize(&identity, resource, action).map_err(|e| refuse(&e))?;
    }
    Ok(())
}

/// The per-namespace rate (`[limits]`): the answer to a request over its namespace's budget
/// (its own response type, `OVER_THRESHOLD`: Nacos' TPS control answer), `None` within it.
pub(crate) fn over_rate(rates: &NamespaceRates, kind: &str, body: &[u8]) -> Option<Payload> {
    if !rates.enabled() {
        return None;
    }
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let namespace = ["namespace", "tenant"].iter().find_map(|f| body.get(*f).and_then(Value::as_str)).unwrap_or("");
    if rates.admit(namespace) {
        return None;
    }
    let message = format!("Tps Flow restricted: namespace over {} requests per second", rates.per_second());
    Some(failed_response(response_type(kind), OVER_THRESHOLD, &message, Value::Null))
}

/// The response type a request of `kind` is answered with.
fn response_type(kind: &str) -> &'static str {
    match kind {
        "InstanceRequest" | "PersistentInstanceRequest" => "InstanceResponse",
        "BatchInstanceRequest" => "BatchInstanceResponse",
        "ServiceQueryRequest" => "QueryServiceResponse",
        "SubscribeServiceRequest" => "SubscribeServiceResponse",
        "ServiceListRequest" => "ServiceListResponse",
        "ConfigQueryRequest" => "ConfigQueryResponse",
        "ConfigPublishRequest" => "ConfigPublishResponse",
        "ConfigRemoveRequest" => "ConfigRemoveResponse",
        "ConfigBatchListenRequest" => "ConfigChangeBatchListenResponse",
        _ => "ErrorResponse",
    }
}

/// What a request touches and how (Nacos' `@Secured` on each gRPC handler).
fn resources(kind: &str, body: &Value) -> (Vec<Resource>, Action) {
    let field = |v: &Value, name: &str| v.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    let naming = |v: &Value| Resource::naming(&field(v, "namespace"), &field(v, "groupName"), &field(v, "serviceName"));
    let config = |v: &Value| Resource::config(&field(v, "tenant"), &field(v, "group"), &field(v, "dataId"));
    match kind {
        "InstanceRequest" | "PersistentInstanceRequest" | "BatchInstanceRequest" => (vec![naming(body)], Action::Write),
        "ServiceQueryRequest" | "SubscribeServiceRequest" | "ServiceListRequest" => (vec![naming(body)], Action::Read),
        "ConfigQueryRequest" => (vec![config(body)], Action::Read),
        "ConfigPublishRequest" | "ConfigRemoveRequest" => (vec![config(body)], Action::Write),
        "ConfigBatchListenRequest" => {
            let contexts = body.get("configListenContexts").and_then(Value::as_array).cloned().unwrap_or_default();
            (contexts.iter().map(config).collect(), Action::Read)
        }
        // Anything else is refused by the handler as unknown; require an administrator.
        _ => (vec![Resource::Admin], Action::Write),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_name_their_resources() {
        let body = json!({"namespace": "dev", "groupName": "G", "serviceName": "orders"});
        assert_eq!(
            resources("InstanceRequest", &body),
            (vec![Resource::Data("dev:G:naming/orders".into())], Action::Write)
        );
        let body = json!({"configListenContexts": [{"dataId": "a", "group": "G", "tenant": ""}, {"dataId": "b", "group": "G", "tenant": "dev"}]});
        assert_eq!(
            resources("ConfigBatchListenRequest", &body).0,
            vec![Resource::Data("public:G:config/a".into()), Resource::Data("dev:G:config/b".into())]
        );
        assert_eq!(response_type("ConfigQueryRequest"), "ConfigQueryResponse");
    }
}
