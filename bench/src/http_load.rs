//! Closed-loop HTTP load: `concurrency` workers, each with its own keep-alive connection, send
//! requests back to back until `count` requests are done or the deadline passes.
//!
//! The client is deliberately lean, because a general-purpose client cost more CPU per request
//! than the servers under test and so measured itself: each worker owns one `TcpStream`, writes
//! a request encoded into a reused buffer (only the parameters that differ between requests are
//! formatted; a request that never changes is encoded once) and reads the answer with the
//! minimal parser in [`response`]. Non-2xx answers count as errors; a connection the server
//! closes, or one that fails, is replaced by a new one for the next request.

mod response;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::report::LoadResult;

/// Time a worker waits for one answer beyond the run's deadline before giving up on the run.
const ANSWER_GRACE: Duration = Duration::from_secs(10);

/// HTTP method, which also decides where the parameters go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Parameters in the query string.
    Get,
    /// Parameters in the query string, empty body.
    Put,
    /// Parameters as an `application/x-www-form-urlencoded` body.
    Post,
}

/// Writes the already URL-encoded parameters of request `i` (`a=1&b=2`) into a reused buffer.
pub type WriteParams = Arc<dyn Fn(usize, &mut String) + Send + Sync>;

/// Parameters of the requests of a run.
#[derive(Clone)]
pub enum Params {
    /// The same for every request, so the request is encoded once per worker.
    Fixed(String),
    /// Different per request.
    PerRequest(WriteParams),
}

/// What every request of a run looks like: method, path and parameters.
#[derive(Clone)]
pub struct RequestShape {
    /// Method.
    pub method: Method,
    /// Absolute path, without query.
    pub path: String,
    /// Query-string or form-body parameters.
    pub params: Params,
}

impl RequestShape {
    /// Writes request `i` for `host` into `out` (cleared first); `params` is scratch space.
    pub fn encode(&self, host: &str, i: usize, params: &mut String, out: &mut Vec<u8>) {
        params.clear();
        match &self.params {
            Params::Fixed(p) => params.push_str(p),
            Params::PerRequest(write) => write(i, params),
        }
        out.clear();
        match self.method {
            Method::Get | Method::Put => {
                let method = if self.method == Method::Get { "GET" } else { "PUT" };
                out.extend_from_slice(method.as_bytes());
                out.push(b' ');
                out.extend_from_slice(self.path.as_bytes());
                if !params.is_empty() {
                    out.push(b'?');
                    out.extend_from_slice(params.as_bytes());
                }
                out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
                out.extend_from_slice(host.as_bytes());
                if self.method == Method::Put {
                    out.extend_from_slice(b"\r\nContent-Length: 0");
                }
                out.extend_from_slice(b"\r\n\r\n");
            }
            Method::Post => {
                out.extend_from_slice(b"POST ");
                out.extend_from_slice(self.path.as_bytes());
                out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
                out.extend_from_slice(host.as_bytes());
                out.extend_from_slice(b"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ");
                // Formatting into a String cannot fail.
                let mut len = String::new();
                let _ = write!(len, "{}\r\n\r\n", params.len());
                out.extend_from_slice(len.as_bytes());
                out.extend_from_slice(params.as_bytes());
            }
        }
    }
}

/// Limits of one run.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Concurrent connections (one worker each).
    pub concurrency: usize,
    /// Requests in all.
    pub count: usize,
    /// No request starts after this much time.
    pub deadline: Duration,
}

/// Runs the load against `addr`.
pub async fn run(addr: SocketAddr, load: Load, shape: RequestShape) -> anyhow::Result<LoadResult> {
    let shape = Arc::new(shape);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let cpu0 = crate::process_cpu();
    let mut workers = Vec::with_capacity(load.concurrency.max(1));
    for _ in 0..load.concurrency.max(1) {
        let (next, shape) = (Arc::clone(&next), Arc::clone(&shape));
        workers.push(tokio::spawn(async move { worker(addr, &shape, &next, load, start).await }));
    }
    let mut histogram = crate::report::latency_histogram();
    let mut errors = 0;
    for w in workers {
        let (h, e) = w.await?;
        histogram.add(h)?;
        errors += e;
    }
    let elapsed = start.elapsed();
    Ok(LoadResult { histogram, errors, elapsed, cpu: crate::process_cpu().saturating_sub(cpu0) })
}

/// One closed-loop worker: takes request numbers from `next` until the count or the deadline
/// is reached; returns its latencies (µs) and error count.
async fn worker(
    addr: SocketAddr,
    shape: &RequestShape,
    next: &AtomicUsize,
    load: Load,
    start: Instant,
) -> (Histogram<u64>, u64) {
    let mut h = crate::report::latency_histogram();
    let mut errors = 0u64;
    let host = addr.to_string();
    let (mut params, mut request) = (String::new(), Vec::new());
    let fixed = matches!(shape.params, Params::Fixed(_));
    if fixed {
        shape.encode(&host, 0, &mut params, &mut request);
    }
    // An answer that never comes must not hold the run past its deadline.
    let give_up = tokio::time::Instant::from_std(start + load.deadline + ANSWER_GRACE);
    let mut conn = Connection { addr, stream: None, rx: Vec::with_capacity(16 * 1024) };
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= load.count || start.elapsed() > load.deadline {
            break;
        }
        if !fixed {
            shape.encode(&host, i, &mut params, &mut request);
        }
        let t0 = Instant::now();
        match tokio::time::timeout_at(give_up, conn.exchange(&request)).await {
            Ok(Ok(status)) if (200..300).contains(&status) => {
                let _ = h.record((t0.elapsed().as_micros() as u64).max(1));
            }
            Ok(Ok(_)) => errors += 1,
            Ok(Err(_)) => {
                errors += 1;
                conn.reset();
            }
            Err(_) => {
                errors += 1;
                break;
            }
        }
    }
    (h, errors)
}

/// A keep-alive connection and the bytes read from it but not yet consumed.
struct Connection {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    rx: Vec<u8>,
}

impl Connection {
    /// Drops the connection (and any unread bytes); the next exchange connects anew.
    fn reset(&mut self) {
        self.stream = None;
        self.rx.clear();
    }

    /// Sends one request and reads its answer; returns the status.
    async fn exchange(&mut self, request: &[u8]) -> std::io::Result<u16> {
        let stream = match &mut self.stream {
            Some(s) => s,
            None => {
                let s = TcpStream::connect(self.addr).await?;
                s.set_nodelay(true)?;
                self.rx.clear();
                self.stream.insert(s)
            }
        };
        stream.write_all(request).await?;
        let mut eof = false;
        loop {
            let parsed = response::parse(&self.rx, eof).map_err(std::io::Error::other)?;
            if let Some(r) = parsed {
                self.rx.drain(..r.len);
                if r.close {
                    self.reset();
                }
                return Ok(r.status);
            }
            self.rx.reserve(4096);
            eof = stream.read_buf(&mut self.rx).await? == 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn get(params: Params) -> RequestShape {
        RequestShape { method: Method::Get, path: "/p".into(), params }
    }

    #[test]
    fn requests_are_encoded_with_their_parameters() {
        let (mut params, mut out) = (String::new(), Vec::new());
        get(Params::Fixed("a=1".into())).encode("127.0.0.1:1", 0, &mut params, &mut out);
        assert_eq!(out, b"GET /p?a=1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n");
        let put = RequestShape {
            method: Method::Put,
            path: "/b".into(),
            params: Params::PerRequest(Arc::new(|i, p: &mut String| {
                let _ = write!(p, "i={i}");
            })),
        };
        put.encode("h", 7, &mut params, &mut out);
        assert_eq!(out, b"PUT /b?i=7 HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
        let post = RequestShape { method: Method::Post, ..put };
        post.encode("h", 12, &mut params, &mut out);
        assert_eq!(
            out,
            b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 4\r\n\r\ni=12"
        );
    }

    /// Serves each connection: request 1 in 4 gets a 500, every 5th answer closes the
    /// connection, answers alternate between Content-Length and chunked framing and are
    /// written in two pieces.
    async fn flaky_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let served = Arc::clone(&served);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut pending = Vec::new();
                    loop {
                        let Ok(n) = s.read(&mut buf).await else { return };
                        if n == 0 {
                            return;
                        }
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            pending.drain(..end + 4);
                            let k = served.fetch_add(1, Ordering::Relaxed);
                            let status = if k % 4 == 3 { "500 Oops" } else { "200 OK" };
                            let close = if k % 5 == 4 { "Connection: close\r\n" } else { "" };
                            let answer = if k.is_multiple_of(2) {
                                format!("HTTP/1.1 {status}\r\n{close}Content-Length: 2\r\n\r\nok")
                            } else {
                                format!(
                                    "HTTP/1.1 {status}\r\n{close}Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
                                )
                            };
                            let (a, b) = answer.as_bytes().split_at(answer.len() / 2);
                            if s.write_all(a).await.is_err() || s.write_all(b).await.is_err() {
                                return;
                            }
                            if !close.is_empty() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn load_reconnects_after_close_and_counts_non_2xx_as_errors() {
        let addr = flaky_server().await;
        let load = Load { concurrency: 1, count: 40, deadline: Duration::from_secs(10) };
        let r = run(addr, load, get(Params::Fixed(String::new()))).await.unwrap();
        assert_eq!(r.errors, 10, "every 4th of 40 answers is a 500");
        assert_eq!(r.histogram.len(), 30);
    }

    #[tokio::test]
    async fn a_closed_port_yields_errors_not_a_hang() {
        let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let load = Load { concurrency: 2, count: 6, deadline: Duration::from_secs(5) };
        let r = run(addr, load, get(Params::Fixed(String::new()))).await.unwrap();
        assert_eq!((r.errors, r.histogram.len()), (6, 0));
    }
}
