//! Probe targets on loopback the tests control, shared by the server's active checks
//! (`health_check.rs`) and the sidecar's probe (`sidecar.rs`), so both are checked against the
//! same targets and the same steps.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A TCP listener on loopback that accepts and drops connections until stopped (or dropped:
/// the task then outlives it only until the test's runtime ends).
pub(crate) struct Listener {
    pub(crate) addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Listener {
    pub(crate) async fn start(addr: &str) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        });
        Self { addr, accept }
    }

    /// Closes the port: connections are refused from now on.
    pub(crate) async fn stop(self) -> SocketAddr {
        self.accept.abort();
        let _ = self.accept.await;
        self.addr
    }
}

/// A loopback port nothing listens on.
pub(crate) async fn closed_port() -> SocketAddr {
    Listener::start("127.0.0.1:0").await.stop().await
}

/// An HTTP server answering every request with the current `status`, counting the answers it
/// gave by status (`answered(status)`).
pub(crate) struct HttpTarget {
    pub(crate) addr: SocketAddr,
    status: Arc<AtomicU16>,
    answered: Arc<[AtomicU64; 600]>,
    accept: JoinHandle<()>,
}

impl HttpTarget {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let status = Arc::new(AtomicU16::new(200));
        let answered: Arc<[AtomicU64; 600]> = Arc::new(std::array::from_fn(|_| AtomicU64::new(0)));
        let (s, a) = (Arc::clone(&status), Arc::clone(&answered));
        let accept = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (status, answered) = (Arc::clone(&s), Arc::clone(&a));
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let code = status.load(Ordering::SeqCst);
                    let answer = format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    if stream.write_all(answer.as_bytes()).await.is_ok() {
                        answered[usize::from(code)].fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        Self { addr, status, answered, accept }
    }

    pub(crate) fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub(crate) fn answered(&self, status: u16) -> u64 {
        self.answered[usize::from(status)].load(Ordering::SeqCst)
    }

    /// Closes the port (the listener goes with its task).
    pub(crate) async fn close(self) {
        self.accept.abort();
        let _ = self.accept.await;
    }
}

/// The HTTP steps of Nacos' status rules, on a target the checker (server or sidecar) sees
/// healthy: 503 three times in a row flips it, 404 flips it at once, a closed port (refused)
/// too; 200 in between brings it back. `wait_health(healthy, step)` waits until the registry
/// lists the instance with `healthy` and fails the test (naming `step`) at its deadline.
pub(crate) async fn http_status_steps<F, Fut>(target: HttpTarget, mut wait_health: F)
where
    F: FnMut(bool, &'static str) -> Fut,
    Fut: Future<Output = ()>,
{
    // 503 is a plain failure: three in a row before the flip.
    target.answer(503);
    wait_health(false, "503").await;
    assert!(target.answered(503) >= 3, "flipped after {} answers of 503", target.answered(503));
    target.answer(200);
    wait_health(true, "200 again").await;

    // Any other status fails now: flipped by the first (observed before a third, at the latest).
    target.answer(404);
    wait_health(false, "404").await;
    assert!(target.answered(404) <= 2, "flipped only after {} answers of 404", target.answered(404));
    target.answer(200);
    wait_health(true, "200 after 404").await;

    // Nothing listening: refused, fail now.
    target.close().await;
    wait_health(false, "server closed").await;
}
