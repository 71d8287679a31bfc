//! The HTTP operations of the throughput runs: what each one prepares on the server and the
//! request it then sends over and over. The URLs, parameters and bodies are the ones earlier
//! versions of the tool sent through reqwest (a test checks them byte for byte against reqwest's
//! encoding), so results stay comparable across versions.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::http_load::{Method, Params, RequestShape};

/// HTTP operations for throughput runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HttpOp {
    /// `POST /nacos/v1/ns/instance` (ephemeral; distinct instances).
    Register,
    /// `GET /nacos/v1/ns/instance/list` of a service with 10 instances.
    List,
    /// `PUT /nacos/v1/ns/instance/beat` (light beats of registered instances).
    Beat,
    /// `POST /nacos/v1/cs/configs` (distinct configs; durable on our server).
    ConfigPublish,
    /// `GET /nacos/v1/cs/configs` of one config.
    ConfigGet,
}

/// Instances registered before a beat run, and beaten in turn.
const BEAT_INSTANCES: usize = 1000;

/// The request of `op`; `run` (the tool's PID in practice) keeps names apart between runs.
pub fn shape(op: HttpOp, run: u32) -> RequestShape {
    // Formatting into a String cannot fail, hence the ignored results below.
    let (method, path, params) = match op {
        HttpOp::Register => (
            Method::Post,
            "/nacos/v1/ns/instance",
            per_request(move |i, p| {
                let _ = write!(
                    p,
                    "serviceName=bench-reg-{run}-{}&ip=10.{}.{}.{}&port=8080",
                    i % 100,
                    (i >> 16) & 255,
                    (i >> 8) & 255,
                    i & 255
                );
            }),
        ),
        HttpOp::List => {
            (Method::Get, "/nacos/v1/ns/instance/list", Params::Fixed(format!("serviceName=bench-list-{run}")))
        }
        HttpOp::Beat => (
            Method::Put,
            "/nacos/v1/ns/instance/beat",
            per_request(move |i, p| {
                let i = i % BEAT_INSTANCES;
                let _ = write!(p, "serviceName=bench-beat-{run}&ip=10.1.{}.{}&port=80", i / 250, i % 250);
            }),
        ),
        HttpOp::ConfigPublish => (
            Method::Post,
            "/nacos/v1/cs/configs",
            // The content is `key: value-{i}\nother: 1234567890`, form-encoded.
            per_request(move |i, p| {
                let _ = write!(
                    p,
                    "dataId=bench-pub-{run}-{i}&group=DEFAULT_GROUP&content=key%3A+value-{i}%0Aother%3A+1234567890"
                );
            }),
        ),
        HttpOp::ConfigGet => {
            (Method::Get, "/nacos/v1/cs/configs", Params::Fixed(format!("dataId=bench-get-{run}&group=DEFAULT_GROUP")))
        }
    };
    RequestShape { method, path: path.to_owned(), params }
}

fn per_request(write: impl Fn(usize, &mut String) + Send + Sync + 'static) -> Params {
    Params::PerRequest(Arc::new(write))
}

/// Creates what a read or beat run needs on the server (instances to list or beat, the config
/// to read); writes need nothing.
pub async fn prepare(http: SocketAddr, op: HttpOp, run: u32) -> anyhow::Result<()> {
    let base = format!("http://{http}");
    let c = reqwest::Client::new();
    let register = |service: String, ip: String| {
        c.post(format!("{base}/nacos/v1/ns/instance")).form(&[
            ("serviceName", service),
            ("ip", ip),
            ("port", "80".into()),
        ])
    };
    match op {
        HttpOp::Register | HttpOp::ConfigPublish => {}
        HttpOp::List => {
            for i in 0..10 {
                register(format!("bench-list-{run}"), format!("10.0.0.{i}")).send().await?.error_for_status()?;
            }
        }
        HttpOp::Beat => {
            for i in 0..BEAT_INSTANCES {
                let ip = format!("10.1.{}.{}", i / 250, i % 250);
                register(format!("bench-beat-{run}"), ip).send().await?.error_for_status()?;
            }
        }
        HttpOp::ConfigGet => {
            c.post(format!("{base}/nacos/v1/cs/configs"))
                .form(&[
                    ("dataId", format!("bench-get-{run}")),
                    ("group", "DEFAULT_GROUP".into()),
                    ("content", "k: v".repeat(64)),
                ])
                .send()
                .await?
                .error_for_status()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the earlier reqwest-based tool sent for request `i` (its `prepare`, verbatim).
    fn reqwest_request(op: HttpOp, run: u32, i: usize) -> reqwest::Request {
        let base = "http://127.0.0.1:8848";
        let c = reqwest::Client::new();
        let b = match op {
            HttpOp::Register => {
                let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
                c.post(format!("{base}/nacos/v1/ns/instance")).form(&[
                    ("serviceName", format!("bench-reg-{run}-{}", i % 100)),
                    ("ip", ip),
                    ("port", "8080".into()),
                ])
            }
            HttpOp::List => c
                .get(format!("{base}/nacos/v1/ns/instance/list"))
                .query(&[("serviceName", format!("bench-list-{run}"))]),
            HttpOp::Beat => {
                let i = i % 1000;
                c.put(format!("{base}/nacos/v1/ns/instance/beat")).query(&[
                    ("serviceName", format!("bench-beat-{run}")),
                    ("ip", format!("10.1.{}.{}", i / 250, i % 250)),
                    ("port", "80".into()),
                ])
            }
            HttpOp::ConfigPublish => c.post(format!("{base}/nacos/v1/cs/configs")).form(&[
                ("dataId", format!("bench-pub-{run}-{i}")),
                ("group", "DEFAULT_GROUP".into()),
                ("content", format!("key: value-{i}\nother: 1234567890")),
            ]),
            HttpOp::ConfigGet => c
                .get(format!("{base}/nacos/v1/cs/configs"))
                .query(&[("dataId", format!("bench-get-{run}")), ("group", "DEFAULT_GROUP".into())]),
        };
        b.build().unwrap()
    }

    #[test]
    fn requests_match_what_the_reqwest_based_tool_sent() {
        use clap::ValueEnum;
        let (mut params, mut out) = (String::new(), Vec::new());
        for op in HttpOp::value_variants() {
            for i in [0, 1, 99, 257, 1001, 70_000, 999_999] {
                let want = reqwest_request(*op, 4242, i);
                shape(*op, 4242).encode("127.0.0.1:8848", i, &mut params, &mut out);
                let text = String::from_utf8(out.clone()).unwrap();
                let (head, body) = text.split_once("\r\n\r\n").unwrap();
                let request_line = head.lines().next().unwrap();
                let target = &want.url().as_str()["http://127.0.0.1:8848".len()..];
                assert_eq!(request_line, format!("{} {target} HTTP/1.1", want.method()), "{op:?} {i}");
                let want_body = want.body().and_then(|b| b.as_bytes()).unwrap_or_default();
                assert_eq!(body.as_bytes(), want_body, "{op:?} {i}");
                if !want_body.is_empty() {
                    assert!(head.contains("Content-Type: application/x-www-form-urlencoded"), "{op:?}");
                }
            }
        }
    }
}
