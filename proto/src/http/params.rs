//! Request parameters the way Nacos (Spring `getParameter`) reads them: from the query string
//! AND from an `application/x-www-form-urlencoded` body, for every method (spec §3). Query
//! values win over body values of the same name, as Spring returns the first one.
//!
//! Decoding is strict: a parameter that is not valid UTF-8 after percent-decoding is refused
//! with 400 rather than silently mangled.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, Request};
use axum::http::header;

use crate::model::key::{DEFAULT_CLUSTER, DEFAULT_NAMESPACE};
use crate::model::{NameError, ServiceKey, metadata};

/// A parameter that cannot be read; servers map it to their error answer (v1 text, v2 envelope).
#[derive(Debug, thiserror::Error)]
pub enum ParamError {
    /// A required parameter is absent or blank.
    #[error("Parameter '{0}' is missing")]
    MissingParam(&'static str),
    /// A parameter is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The request body is larger than the configured limit.
    #[error("request body is larger than the configured limit")]
    PayloadTooLarge,
    /// A service, group or namespace name breaks the naming rules.
    #[error(transparent)]
    Name(#[from] NameError),
}

impl axum::response::IntoResponse for ParamError {
    /// As an extractor rejection there is no version context: the v1 form (status + text).
    fn into_response(self) -> axum::response::Response {
        let status = match self {
            Self::PayloadTooLarge => axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            _ => axum::http::StatusCode::BAD_REQUEST,
        };
        super::v1_error(status, self.to_string())
    }
}

/// Parameters of one request plus the caller facts handlers need.
#[derive(Debug, Clone, Default)]
pub struct Params {
    values: HashMap<String, String>,
    /// `User-Agent` header, empty when absent.
    pub user_agent: String,
    /// Peer address, when the server was started with connect info.
    pub remote: Option<SocketAddr>,
    /// Request headers (tags, timeouts, labels).
    pub headers: axum::http::HeaderMap,
    /// The body when it was not a form (uploads such as config imports).
    pub body: Bytes,
}

impl Params {
    /// Every parameter (query string and form), for forwarding the request as it came.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ParamError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let mut values = HashMap::new();
        if let Some(q) = req.uri().query() {
            decode_into(q.as_bytes(), &mut values)?;
        }
        let user_agent =
            req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|ct| ct.is_empty() || ct.to_ascii_lowercase().contains("x-www-form-urlencoded"));
        let remote = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        let headers = req.headers().clone();
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ParamError::PayloadTooLarge
            } else {
                ParamError::BadRequest(format!("cannot read request body: {e}"))
            }
        })?;
        if is_form && !body.is_empty() {
            decode_into(&body, &mut values)?;
        }
        let body = if is_form { Bytes::new() } else { body };
        Ok(Self { values, user_agent, remote, headers, body })
    }
}

/// Decodes `a=b&c=d` into `out`, keeping values already present.
fn decode_into(raw: &[u8], out: &mut HashMap<String, String>) -> Result<(), ParamError> {
    for pair in raw.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        let k = percent_decode(k)?;
        let v = percent_decode(v)?;
        out.entry(k).or_insert(v);
    }
    Ok(())
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XY` a byte; malformed
/// escapes are kept literally (as Java's lenient decoders do); the result must be UTF-8.
pub fn percent_decode(raw: &[u8]) -> Result<String, ParamError> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => bytes.push(b' '),
            b'%' if i + 2 < raw.len() => match (hex(raw[i + 1]), hex(raw[i + 2])) {
                (Some(h), Some(l)) => {
                    bytes.push(h << 4 | l);
                    i += 2;
                }
                _ => bytes.push(b'%'),
            },
            b => bytes.push(b),
        }
        i += 1;
    }
    String::from_utf8(bytes).map_err(|_| ParamError::BadRequest("request parameter is not valid UTF-8".into()))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Nacos' loose booleans: `true/t/yes/y/on/1` and `false/f/no/n/off/0`, any case.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "on" | "1" => Some(true),
        "false" | "f" | "no" | "n" | "off" | "0" => Some(false),
        _ => None,
    }
}

impl Params {
    /// Parameters of a query string and a form body, read as [`Params::from_request`] reads
    /// them (query values win), for callers that hold the raw request (the sidecar's proxy).
    pub fn decode(query: &[u8], form: &[u8]) -> Result<Self, ParamError> {
        let mut values = HashMap::new();
        decode_into(query, &mut values)?;
        decode_into(form, &mut values)?;
        Ok(Self { values, ..Self::default() })
    }

    /// Builds parameters from pairs (tests, internal callers).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self { values: pairs.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(), ..Self::default() }
    }

    /// A parameter, trimmed; `None` when absent or blank.
    pub fn opt(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// A parameter exactly as sent (not trimmed; may be blank). For content, where whitespace
    /// is data.
    pub fn values_raw(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// The first present of several alias names.
    pub fn opt_any(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|n| self.opt(n))
    }

    /// A required parameter.
    pub fn required(&self, name: &'static str) -> Result<&str, ParamError> {
        self.opt(name).ok_or(ParamError::MissingParam(name))
    }

    /// A loose boolean; `default` when absent; 400 when unparseable.
    pub fn bool_or(&self, names: &[&'static str], default: bool) -> Result<bool, ParamError> {
        for name in names {
            if let Some(v) = self.opt(name) {
                return parse_bool(v)
                    .ok_or_else(|| ParamError::BadRequest(format!("parameter '{name}' is not a boolean: '{v}'")));
            }
        }
        Ok(default)
    }

    /// A parsed number; `None` when absent; 400 when unparseable.
    pub fn num<T: std::str::FromStr>(&self, name: &'static str) -> Result<Option<T>, ParamError> {
        match self.opt(name) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ParamError::BadRequest(format!("parameter '{name}' is not a valid number: '{v}'"))),
        }
    }

    /// A required parsed number.
    pub fn required_num<T: std::str::FromStr>(&self, name: &'static str) -> Result<T, ParamError> {
        self.num(name)?.ok_or(ParamError::MissingParam(name))
    }

    /// The naming namespace (`namespaceId`, default `public`).
    pub fn namespace(&self) -> &str {
        self.opt("namespaceId").unwrap_or(DEFAULT_NAMESPACE)
    }

    /// The service key from `serviceName` (grouped or bare) + `groupName` + `namespaceId`,
    /// as the v1 grouped-name filter composes it.
    pub fn service_key(&self) -> Result<ServiceKey, ParamError> {
        let name = self.required("serviceName")?;
        Ok(ServiceKey::from_grouped(self.namespace(), name, self.opt("groupName"))?)
    }

    /// The cluster from `clusterName` or its legacy alias `cluster`, default `DEFAULT`.
    pub fn cluster(&self) -> String {
        self.opt_any(&["clusterName", "cluster"]).unwrap_or(DEFAULT_CLUSTER).to_owned()
    }

    /// Metadata as a JSON object string, or the legacy `k1=v1,k2=v2` form. `None` when absent.
    pub fn metadata(&self, name: &'static str) -> Result<Option<BTreeMap<String, String>>, ParamError> {
        self.opt(name).map(metadata::parse).transpose().map_err(|e| ParamError::BadRequest(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_wins_over_body_and_plus_is_space() {
        let mut m = HashMap::new();
        decode_into(b"a=1&b=x+y%21", &mut m).unwrap();
        decode_into(b"a=2&c=3", &mut m).unwrap();
        assert_eq!(m["a"], "1");
        assert_eq!(m["b"], "x y!");
        assert_eq!(m["c"], "3");
    }

    #[test]
    fn invalid_utf8_is_refused_and_bad_escapes_kept() {
        assert!(percent_decode(b"%ff%fe").is_err());
        assert_eq!(percent_decode(b"100%").unwrap(), "100%");
        assert_eq!(percent_decode(b"%zz").unwrap(), "%zz");
        assert_eq!(percent_decode(b"%e4%b8%ad").unwrap(), "中");
    }

    #[test]
    fn loose_booleans() {
        for t in ["True", "t", "YES", "y", "on", "1"] {
            assert_eq!(parse_bool(t), Some(true));
        }
        for f in ["False", "f", "no", "N", "off", "0"] {
            assert_eq!(parse_bool(f), Some(false));
        }
        assert_eq!(parse_bool("maybe"), None);
    }
}
