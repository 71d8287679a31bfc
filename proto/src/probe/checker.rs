//! The health checker of a Nacos cluster (`healthChecker` in cluster metadata, spec §13.4): the
//! JSON Nacos clients send and read, polymorphic on `type`. Plain data with serde, no feature,
//! so the server's model can store it and the probe runner can execute it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Which check runs against a persistent instance. Unknown fields are ignored, as Jackson does
/// in Nacos; an unknown `type` is an error.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum HealthChecker {
    /// TCP connect (Nacos' default).
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// `GET` on the instance.
    #[serde(rename = "HTTP")]
    Http(HttpChecker),
    /// A statement on a MySQL server; with the `read_only` query only a master is healthy.
    #[serde(rename = "MYSQL")]
    Mysql(MysqlChecker),
    /// No check: health is set by hand (`PUT /nacos/v1/ns/health/instance`).
    #[serde(rename = "NONE")]
    None,
}

/// The HTTP checker's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpChecker {
    /// Path requested, relative to `/` (Nacos resolves it as a URL against `http://ip:port`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub path: String,
    /// Extra request headers, `k1:v1|k2:v2`; see [`HttpChecker::header_pairs`].
    #[serde(default, deserialize_with = "null_as_default")]
    pub headers: String,
    /// Kept for the JSON's sake: Nacos' processor compares the status with 200 only, and so do we.
    #[serde(default = "http_ok")]
    pub expected_response_code: u16,
}

/// The MySQL checker's settings.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MysqlChecker {
    /// User to log in as.
    #[serde(default, deserialize_with = "null_as_default")]
    pub user: String,
    /// Its password.
    #[serde(default, deserialize_with = "null_as_default")]
    pub pwd: String,
    /// Statement executed; [`MysqlChecker::MASTER_CHECK`] also reads the answer.
    #[serde(default, deserialize_with = "null_as_default")]
    pub cmd: String,
}

// === impl HttpChecker ===

impl Default for HttpChecker {
    fn default() -> Self {
        Self { path: String::new(), headers: String::new(), expected_response_code: http_ok() }
    }
}

impl HttpChecker {
    /// The `headers` string as pairs, the way Nacos reads it: entries split on `|`, each split on
    /// `:` into exactly a name and a value (trimmed), others skipped; a repeated name keeps its
    /// last value. Entries that could not be written on an HTTP/1.1 header line as they are (a
    /// name that is not a token, a value with control characters) are skipped too.
    pub fn header_pairs(&self) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for entry in self.headers.split('|') {
            let mut parts: Vec<&str> = entry.split(':').collect();
            // Java's String.split drops trailing empty strings: `k:v:` is a pair, `k:` is not.
            while parts.last() == Some(&"") {
                parts.pop();
            }
            let [name, value] = parts[..] else { continue };
            let (name, value) = (name.trim(), value.trim());
            if name.is_empty() || !name.bytes().all(is_token_byte) || value.chars().any(char::is_control) {
                continue;
            }
            pairs.retain(|(existing, _)| !existing.eq_ignore_ascii_case(name));
            pairs.push((name.to_owned(), value.to_owned()));
        }
        pairs
    }
}

// === impl MysqlChecker ===

impl MysqlChecker {
    /// The statement Nacos recognises (byte for byte) as "is this the master": the second
    /// column of its first row is `ON` on a read-only replica.
    pub const MASTER_CHECK: &str = "show global variables where variable_name='read_only'";
}

/// The password stays out of logs.
impl fmt::Debug for MysqlChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlChecker").field("user", &self.user).field("pwd", &"***").field("cmd", &self.cmd).finish()
    }
}

const fn http_ok() -> u16 {
    200
}

/// Nacos serializes unset strings as `null`.
fn null_as_default<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.unwrap_or_default())
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(value: serde_json::Value) -> HealthChecker {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn nacos_json_shapes_parse_with_nacos_field_names() {
        assert_eq!(parse(json!({ "type": "TCP" })), HealthChecker::Tcp);
        assert_eq!(parse(json!({ "type": "NONE" })), HealthChecker::None);
        assert_eq!(
            parse(json!({ "type": "HTTP", "path": "/health", "headers": "a:1|b:2", "expectedResponseCode": 204 })),
            HealthChecker::Http(HttpChecker {
                path: "/health".into(),
                headers: "a:1|b:2".into(),
                expected_response_code: 204
            })
        );
        assert_eq!(
            parse(json!({ "type": "MYSQL", "user": "probe", "pwd": "pw", "cmd": MysqlChecker::MASTER_CHECK })),
            HealthChecker::Mysql(MysqlChecker {
                user: "probe".into(),
                pwd: "pw".into(),
                cmd: MysqlChecker::MASTER_CHECK.into()
            })
        );
    }

    #[test]
    fn missing_null_and_unknown_fields_are_tolerated() {
        assert_eq!(parse(json!({ "type": "TCP", "extra": 1 })), HealthChecker::Tcp);
        assert_eq!(
            parse(json!({ "type": "HTTP", "path": null, "future": true })),
            HealthChecker::Http(HttpChecker::default())
        );
        assert_eq!(parse(json!({ "type": "MYSQL", "user": null })), HealthChecker::Mysql(MysqlChecker::default()));
        assert!(serde_json::from_value::<HealthChecker>(json!({ "type": "GRPC" })).is_err());
        assert!(serde_json::from_value::<HealthChecker>(json!({ "path": "/" })).is_err());
    }

    #[test]
    fn serializes_as_nacos_does() {
        let json = |checker: &HealthChecker| serde_json::to_value(checker).unwrap();
        assert_eq!(json(&HealthChecker::default()), json!({ "type": "TCP" }));
        assert_eq!(
            json(&HealthChecker::Http(HttpChecker::default())),
            json!({ "type": "HTTP", "path": "", "headers": "", "expectedResponseCode": 200 })
        );
        let mysql = HealthChecker::Mysql(MysqlChecker { user: "u".into(), pwd: "p".into(), cmd: "c".into() });
        assert_eq!(json(&mysql), json!({ "type": "MYSQL", "user": "u", "pwd": "p", "cmd": "c" }));
        assert!(!format!("{mysql:?}").contains("\"p\""), "password in Debug output");
    }

    #[test]
    fn headers_string_is_read_like_nacos_and_unsafe_entries_are_dropped() {
        let pairs = |headers: &str| HttpChecker { headers: headers.into(), ..HttpChecker::default() }.header_pairs();
        let owned = |v: &[(&str, &str)]| v.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<Vec<_>>();
        assert_eq!(pairs(""), owned(&[]));
        assert_eq!(pairs(" X-A : 1 |X-B:two"), owned(&[("X-A", "1"), ("X-B", "two")]));
        assert_eq!(pairs("x:1|X:2"), owned(&[("X", "2")]));
        assert_eq!(pairs("k:v:"), owned(&[("k", "v")]));
        for skipped in ["novalue", "k:", "a:b:c", ":v", "bad name:v", "k:v\r\nX-Injected"] {
            assert_eq!(pairs(skipped), owned(&[]), "{skipped:?}");
        }
    }
}
