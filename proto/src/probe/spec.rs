//! The probe-spec grammar: which health probe a pod's sidecar runs. One type, two written forms,
//! so the writer and the reader cannot drift:
//!
//! ```text
//!  nacos.rs/probe annotation ──► ProbeSpec<PortRef> ──resolve(pod ports)──► ProbeSpec<u16>
//!  (app owner writes;            parse_annotation      (operator webhook)        │ env()
//!   `tcp`, `tcp:PORT`, `http:/PATH`,                                             ▼
//!   `http:PORT/PATH`, `mysql`, `mysql:PORT`, `none`) NACOS_SIDECAR_PROBE{,_PORT,_PATH}
//!                                                                                │ from_env
//!                                                                                ▼
//!                                                                  sidecar: ProbeSpec<u16>
//! ```
//!
//! Resolving a named container port needs the pod, so it stays in the operator; everything
//! else (the syntax, the env names and values) is here. The MySQL login is no part of the spec:
//! it never appears in an annotation or a plain env value (the webhook maps a Secret the pod
//! names to [`env::MYSQL_USER`] and [`env::MYSQL_PASSWORD`]).

use std::fmt;

use crate::contract::sidecar::env;

/// How the sidecar decides the instance is healthy. `P` is the port: a [`PortRef`] as written
/// in the annotation, a number once resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeSpec<P = u16> {
    /// TCP connect to the port (Nacos' TCP checker).
    Tcp {
        /// Port probed.
        port: P,
    },
    /// `GET path` on the port (Nacos' HTTP checker: only 200 is healthy).
    Http {
        /// Port probed.
        port: P,
        /// Path requested, starting with `/`.
        path: String,
    },
    /// Log in to a MySQL server on the port and run Nacos' master check: a read-only server
    /// (a replica) is unhealthy, a refused login or statement fails now.
    Mysql {
        /// Port probed.
        port: P,
    },
    /// No probe: healthy while the sidecar runs.
    None,
}

/// A port as the annotation names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRef {
    /// Not given: the instance's own port (`tcp`, `http:/PATH`).
    App,
    /// A port number (1–65535).
    Number(u16),
    /// The name of a container port, resolved against the pod.
    Name(String),
}

/// Why a probe spec cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The annotation is none of the accepted forms.
    #[error("{value:?} is not {ANNOTATION_FORMS}")]
    Annotation {
        /// The annotation's value.
        value: String,
    },
    /// An environment variable is missing or has a value the sidecar cannot use.
    #[error("{name}={value:?}: {reason}")]
    Env {
        /// Variable name.
        name: &'static str,
        /// Its value (empty when missing).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// The accepted annotation forms, as error messages name them.
pub const ANNOTATION_FORMS: &str = "tcp, tcp:PORT, http:/PATH, http:PORT/PATH, mysql, mysql:PORT or none";

/// `NACOS_SIDECAR_PROBE` values.
const TCP: &str = "tcp";
const HTTP: &str = "http";
const MYSQL: &str = "mysql";
const NONE: &str = "none";

impl ProbeSpec<PortRef> {
    /// Parses the `nacos.rs/probe` annotation (surrounding whitespace ignored).
    pub fn parse_annotation(value: &str) -> Result<Self, SpecError> {
        let invalid = || SpecError::Annotation { value: value.to_owned() };
        let trimmed = value.trim();
        let (kind, rest) = match trimmed.split_once(':') {
            Some((kind, rest)) => (kind, Some(rest)),
            None => (trimmed, None),
        };
        match (kind, rest) {
            (NONE, None) => Ok(Self::None),
            (TCP, None) => Ok(Self::Tcp { port: PortRef::App }),
            (TCP, Some(port)) => Ok(Self::Tcp { port: PortRef::parse(port).ok_or_else(invalid)? }),
            (MYSQL, None) => Ok(Self::Mysql { port: PortRef::App }),
            (MYSQL, Some(port)) => Ok(Self::Mysql { port: PortRef::parse(port).ok_or_else(invalid)? }),
            (HTTP, Some(rest)) => {
                let (port, path) = rest.split_at(rest.find('/').ok_or_else(invalid)?);
                let port = if port.is_empty() { PortRef::App } else { PortRef::parse(port).ok_or_else(invalid)? };
                Ok(Self::Http { port, path: valid_path(path).ok_or_else(invalid)?.to_owned() })
            }
            _ => Err(invalid()),
        }
    }

    /// The spec with its port resolved: `app` for [`PortRef::App`], `named` for a name; `None`
    /// when `named` knows no such port.
    pub fn resolve(self, app: u16, named: impl Fn(&str) -> Option<u16>) -> Option<ProbeSpec<u16>> {
        let port = |port: PortRef| match port {
            PortRef::App => Some(app),
            PortRef::Number(number) => Some(number),
            PortRef::Name(name) => named(&name).filter(|&number| number != 0),
        };
        Some(match self {
            Self::Tcp { port: p } => ProbeSpec::Tcp { port: port(p)? },
            Self::Http { port: p, path } => ProbeSpec::Http { port: port(p)?, path },
            Self::Mysql { port: p } => ProbeSpec::Mysql { port: port(p)? },
            Self::None => ProbeSpec::None,
        })
    }
}

impl PortRef {
    /// Digits are a number (0 and > 65535 rejected); anything else must be a Kubernetes port
    /// name (up to 15 of `a-z`, `0-9`, `-`), so a mistyped `mysql:user:password` is refused
    /// rather than taken for a name.
    fn parse(value: &str) -> Option<Self> {
        if value.bytes().all(|b| b.is_ascii_digit()) {
            return value.parse().ok().filter(|&n| n != 0).map(Self::Number);
        }
        let name_byte = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
        (value.len() <= 15 && value.bytes().all(name_byte)).then(|| Self::Name(value.to_owned()))
    }
}

impl ProbeSpec<u16> {
    /// The environment the webhook writes for the sidecar, in order.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Tcp { port } => vec![(env::PROBE, TCP.into()), (env::PROBE_PORT, port.to_string())],
            Self::Http { port, path } => {
                vec![(env::PROBE, HTTP.into()), (env::PROBE_PORT, port.to_string()), (env::PROBE_PATH, path.clone())]
            }
            Self::Mysql { port } => vec![(env::PROBE, MYSQL.into()), (env::PROBE_PORT, port.to_string())],
            Self::None => vec![(env::PROBE, NONE.into())],
        }
    }

    /// Reads what [`Self::env`] wrote. `get` looks a variable up (the process environment, or a
    /// map in tests). A missing `NACOS_SIDECAR_PROBE` means `tcp` and a missing port means
    /// `app_port`, so a sidecar started by hand needs only the instance's variables.
    pub fn from_env(get: impl Fn(&str) -> Option<String>, app_port: u16) -> Result<Self, SpecError> {
        let bad =
            |name, value: Option<String>, reason| SpecError::Env { name, value: value.unwrap_or_default(), reason };
        let port = || match get(env::PROBE_PORT) {
            None => Ok(app_port),
            Some(value) => match value.trim().parse::<u16>() {
                Ok(port) if port != 0 => Ok(port),
                _ => Err(bad(env::PROBE_PORT, Some(value), "not a port number (1-65535)")),
            },
        };
        match get(env::PROBE).as_deref().map(str::trim) {
            None | Some(TCP) => Ok(Self::Tcp { port: port()? }),
            Some(HTTP) => {
                let path = get(env::PROBE_PATH);
                match path.as_deref().and_then(valid_path) {
                    Some(valid) => Ok(Self::Http { port: port()?, path: valid.to_owned() }),
                    None => Err(bad(env::PROBE_PATH, path, "not a path starting with / without whitespace")),
                }
            }
            Some(MYSQL) => Ok(Self::Mysql { port: port()? }),
            Some(NONE) => Ok(Self::None),
            Some(_) => Err(bad(env::PROBE, get(env::PROBE), "not tcp, http, mysql or none")),
        }
    }
}

/// The annotation form, with the port always explicit (what `kubectl describe` would show).
impl fmt::Display for ProbeSpec<u16> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { port } => write!(f, "{TCP}:{port}"),
            Self::Http { port, path } => write!(f, "{HTTP}:{port}{path}"),
            Self::Mysql { port } => write!(f, "{MYSQL}:{port}"),
            Self::None => f.write_str(NONE),
        }
    }
}

/// A path the sidecar can put in a request line as is: starts with `/`, no whitespace or
/// control characters.
fn valid_path(path: &str) -> Option<&str> {
    (path.starts_with('/') && !path.chars().any(|c| c.is_whitespace() || c.is_control())).then_some(path)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn named(name: &str) -> Option<u16> {
        (name == "http").then_some(8080)
    }

    #[test]
    fn annotation_forms_resolve_against_app_and_named_ports() {
        let http = |port, path: &str| Some(ProbeSpec::Http { port, path: path.into() });
        for (value, expected) in [
            ("tcp", Some(ProbeSpec::Tcp { port: 9000 })),
            (" tcp ", Some(ProbeSpec::Tcp { port: 9000 })),
            ("tcp:7000", Some(ProbeSpec::Tcp { port: 7000 })),
            ("tcp:http", Some(ProbeSpec::Tcp { port: 8080 })),
            ("http:/healthz", http(9000, "/healthz")),
            ("http:8081/ready?deep=1", http(8081, "/ready?deep=1")),
            ("http:http/", http(8080, "/")),
            ("mysql", Some(ProbeSpec::Mysql { port: 9000 })),
            ("mysql:3306", Some(ProbeSpec::Mysql { port: 3306 })),
            ("mysql:http", Some(ProbeSpec::Mysql { port: 8080 })),
            ("none", Some(ProbeSpec::None)),
            ("tcp:grpc", None),
            ("mysql:db", None),
        ] {
            let parsed = ProbeSpec::parse_annotation(value).unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(parsed.resolve(9000, named), expected, "{value}");
        }
    }

    #[test]
    fn malformed_annotations_are_refused_with_the_accepted_forms() {
        for value in [
            "http:healthz",
            "http:",
            "http:/a b",
            "tcp:0",
            "tcp:70000",
            "tcp:",
            "none:1",
            "grpc",
            "",
            "TCP",
            "mysql:",
            "mysql:0",
            "mysql:/db",
            "mysql:user:pw",
        ] {
            let error = ProbeSpec::parse_annotation(value).unwrap_err();
            assert_eq!(error, SpecError::Annotation { value: value.into() });
            assert!(error.to_string().contains(ANNOTATION_FORMS), "{error}");
        }
    }

    #[test]
    fn env_form_round_trips_every_spec() {
        for spec in [
            ProbeSpec::Tcp { port: 7000 },
            ProbeSpec::Http { port: 8081, path: "/ready?x=1".into() },
            ProbeSpec::Mysql { port: 3306 },
            ProbeSpec::None,
        ] {
            let vars: HashMap<_, _> = spec.env().into_iter().collect();
            let read = ProbeSpec::from_env(|name| vars.get(name).cloned(), 1).unwrap();
            assert_eq!(read, spec, "{vars:?}");
        }
        assert_eq!(
            ProbeSpec::Http { port: 8081, path: "/h".into() }.env(),
            [(env::PROBE, "http".into()), (env::PROBE_PORT, "8081".into()), (env::PROBE_PATH, "/h".into())]
        );
    }

    #[test]
    fn env_defaults_to_tcp_on_the_app_port_and_refuses_bad_values() {
        let from = |vars: &[(&str, &str)]| {
            let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
            ProbeSpec::from_env(|name| vars.get(name).cloned(), 9000)
        };
        assert_eq!(from(&[]), Ok(ProbeSpec::Tcp { port: 9000 }));
        assert_eq!(
            from(&[(env::PROBE, "http"), (env::PROBE_PATH, "/")]),
            Ok(ProbeSpec::Http { port: 9000, path: "/".into() })
        );
        assert_eq!(from(&[(env::PROBE, "mysql")]), Ok(ProbeSpec::Mysql { port: 9000 }));
        for (vars, name) in [
            (&[(env::PROBE, "exec")][..], env::PROBE),
            (&[(env::PROBE, "tcp"), (env::PROBE_PORT, "0")], env::PROBE_PORT),
            (&[(env::PROBE, "mysql"), (env::PROBE_PORT, "db")], env::PROBE_PORT),
            (&[(env::PROBE, "tcp"), (env::PROBE_PORT, "http")], env::PROBE_PORT),
            (&[(env::PROBE, "http")], env::PROBE_PATH),
            (&[(env::PROBE, "http"), (env::PROBE_PATH, "healthz")], env::PROBE_PATH),
        ] {
            assert!(matches!(from(vars), Err(SpecError::Env { name: n, .. }) if n == name), "{vars:?}");
        }
    }

    #[test]
    fn display_is_the_explicit_annotation_form() {
        for value in ["tcp:7000", "http:8081/ready", "mysql:3306", "none"] {
            let spec = ProbeSpec::parse_annotation(value).unwrap().resolve(1, named).unwrap();
            assert_eq!(spec.to_string(), value);
        }
    }
}
