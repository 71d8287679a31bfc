//! Loopback helpers shared by the probes' tests.

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// A loopback port nothing listens on: bound to get a free number, then closed.
pub(crate) async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    drop(listener);
    target
}

/// A server that accepts connections and never writes a byte, so every answer times out. Its
/// task holds the connections open until the test's runtime ends.
pub(crate) async fn silent_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    target
}
