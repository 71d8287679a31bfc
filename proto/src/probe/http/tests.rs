use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;

use super::*;
use crate::probe::outcome::Outcome;
use crate::probe::test_util::{closed_port, silent_server};

/// A small real HTTP server: answers by path and records every request head it got.
struct Server {
    target: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Server {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let recorded = heads.clone();
        let target = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, recorded.clone()));
            }
        });
        Self { target, heads }
    }

    async fn check(&self, path: &str, headers: &str) -> Result<(), Failure> {
        let checker = HttpChecker { path: path.into(), headers: headers.into(), ..HttpChecker::default() };
        check(self.target, &checker).await
    }

    fn last_head(&self) -> String {
        self.heads.lock().unwrap().last().cloned().unwrap()
    }
}

async fn serve(mut stream: TcpStream, heads: Arc<Mutex<Vec<String>>>) {
    let mut head = Vec::new();
    let mut buffer = [0; 1024];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => head.extend_from_slice(&buffer[..read]),
        }
    }
    let head = String::from_utf8(head).unwrap();
    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
    heads.lock().unwrap().push(head);
    let answer: &[u8] = match path.as_str() {
        "/ok" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "/busy" => b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
        "/moved" => b"HTTP/1.1 302 Found\r\nLocation: /ok\r\nContent-Length: 0\r\n\r\n",
        "/created" => b"HTTP/1.0 201 Created\r\n\r\n",
        "/error" => b"HTTP/1.1 500 Internal Server Error\r\n\r\n",
        "/hangup" => b"",
        "/garbage" => b"SSH-2.0-OpenSSH\r\n",
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
    };
    let _ = stream.write_all(answer).await;
}

#[tokio::test]
async fn status_200_is_ok() {
    let server = Server::start().await;
    server.check("/ok", "").await.unwrap();
    assert!(server.last_head().starts_with("GET /ok HTTP/1.1\r\n"), "{}", server.last_head());
}

#[tokio::test]
async fn statuses_503_and_302_fail_and_others_fail_now() {
    let server = Server::start().await;
    for (path, status, outcome) in [
        ("/busy", 503, Outcome::Fail),
        ("/moved", 302, Outcome::Fail),
        ("/missing", 404, Outcome::FailNow),
        ("/created", 201, Outcome::FailNow),
        ("/error", 500, Outcome::FailNow),
    ] {
        let failure = server.check(path, "").await.unwrap_err();
        assert!(matches!(failure, Failure::Status(s) if s == status), "{path}: {failure}");
        assert_eq!(failure.outcome(), outcome, "{path}");
    }
}

#[tokio::test]
async fn checker_headers_are_sent_and_override_defaults() {
    let server = Server::start().await;
    server.check("ok", "X-Probe: yes|User-Agent:probe-test|broken").await.unwrap();
    let head = server.last_head();
    let lines: Vec<&str> = head.lines().collect();
    assert_eq!(lines[0], "GET /ok HTTP/1.1", "a path without a leading slash is resolved against /");
    assert!(lines.contains(&"X-Probe: yes"), "{head}");
    assert!(lines.contains(&"User-Agent: probe-test"), "{head}");
    assert!(!head.contains("VIPServer"), "the default user agent was overridden: {head}");
    assert!(lines.contains(&format!("Host: {}", server.target).as_str()), "{head}");
    assert!(!head.contains("broken"), "{head}");
}

#[tokio::test]
async fn refused_connection_fails_now() {
    let checker = HttpChecker { path: "/ok".into(), ..HttpChecker::default() };
    let failure = check(closed_port().await, &checker).await.unwrap_err();
    assert!(matches!(failure, Failure::Refused), "{failure}");
    assert_eq!(failure.outcome(), Outcome::FailNow);
}

#[tokio::test]
async fn silent_server_times_out_and_fails() {
    let checker = HttpChecker { path: "/ok".into(), ..HttpChecker::default() };
    let started = tokio::time::Instant::now();
    let failure = check(silent_server().await, &checker).await.unwrap_err();
    assert!(matches!(failure, Failure::Timeout(_)), "{failure}");
    assert_eq!(failure.outcome(), Outcome::Fail);
    assert!(started.elapsed() >= RESPONSE_TIMEOUT, "gave up after {:?}", started.elapsed());
}

#[tokio::test]
async fn answers_that_are_not_http_fail() {
    let server = Server::start().await;
    for path in ["/hangup", "/garbage"] {
        let failure = server.check(path, "").await.unwrap_err();
        assert!(matches!(failure, Failure::Protocol(_)), "{path}: {failure}");
        assert_eq!(failure.outcome(), Outcome::Fail, "{path}");
    }
}

#[test]
fn request_line_resolves_the_path_like_nacos_and_refuses_unsafe_paths() {
    let target: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let first_line = |path: &str| {
        let checker = HttpChecker { path: path.into(), ..HttpChecker::default() };
        request(target, &checker).map(|bytes| String::from_utf8(bytes).unwrap().lines().next().unwrap().to_owned())
    };
    assert_eq!(first_line("").unwrap(), "GET / HTTP/1.1");
    assert_eq!(first_line("/a?b=1").unwrap(), "GET /a?b=1 HTTP/1.1");
    assert_eq!(first_line("health").unwrap(), "GET /health HTTP/1.1");
    for unsafe_path in ["/a b", "/a\r\nX: y"] {
        assert!(matches!(first_line(unsafe_path), Err(Failure::Invalid(_))), "{unsafe_path:?}");
    }
}

#[test]
fn status_lines_are_parsed_strictly() {
    assert_eq!(parse_status(b"HTTP/1.1 200 OK\r").unwrap(), 200);
    assert_eq!(parse_status(b"HTTP/1.0 503").unwrap(), 503);
    for bad in [&b"HTTP/2 200 OK"[..], b"HTTP/1.1 20 OK", b"HTTP/1.1 abc", b"", b"\xff\xfe"] {
        assert!(parse_status(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
}
