//! The TCP probe: connected within 500 ms is healthy (spec §13.4). The connection is closed at
//! once; nothing is sent. Also the connect step of the HTTP probe.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::timeout;

use super::outcome::Failure;

/// How long a connect may take (Nacos' `CONNECT_TIMEOUT_MS`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Connects to `target` and closes again.
pub(crate) async fn check(target: SocketAddr) -> Result<(), Failure> {
    connect(target).await.map(drop)
}

/// A connection to `target`, or why not: refused (nothing listens: fail now), timed out or any
/// other error (fail).
pub(crate) async fn connect(target: SocketAddr) -> Result<TcpStream, Failure> {
    classify(timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await.ok())
}

/// `None`: the connect timed out.
fn classify<T>(connected: Option<io::Result<T>>) -> Result<T, Failure> {
    match connected {
        None => Err(Failure::Timeout("TCP connect")),
        Some(Ok(stream)) => Ok(stream),
        Some(Err(error)) if error.kind() == io::ErrorKind::ConnectionRefused => Err(Failure::Refused),
        Some(Err(error)) => Err(Failure::Io(error)),
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;
    use crate::probe::outcome::Outcome;
    use crate::probe::test_util::closed_port;

    #[tokio::test]
    async fn open_port_is_ok() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        check(listener.local_addr().unwrap()).await.unwrap();
    }

    #[tokio::test]
    async fn closed_port_fails_now() {
        let target = closed_port().await;
        let failure = check(target).await.unwrap_err();
        assert!(matches!(failure, Failure::Refused), "{failure}");
        assert_eq!(failure.outcome(), Outcome::FailNow);
    }

    /// A connect that hangs cannot be made deterministic on loopback (a full accept backlog
    /// drops SYNs only sometimes), so the timeout branch is tested at the seam: `None` is what
    /// `tokio::time::timeout` yields after 500 ms.
    #[test]
    fn connect_timeout_and_other_errors_fail_but_not_now() {
        let timed_out = classify::<()>(None).unwrap_err();
        assert!(matches!(timed_out, Failure::Timeout(_)), "{timed_out}");
        assert_eq!(timed_out.outcome(), Outcome::Fail);
        let unreachable = classify::<()>(Some(Err(io::ErrorKind::HostUnreachable.into()))).unwrap_err();
        assert_eq!(unreachable.outcome(), Outcome::Fail);
        let refused = classify::<()>(Some(Err(io::ErrorKind::ConnectionRefused.into()))).unwrap_err();
        assert_eq!(refused.outcome(), Outcome::FailNow);
    }
}
