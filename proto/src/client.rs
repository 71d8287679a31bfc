//! The Nacos gRPC client, one implementation for every Rust caller: the sidecar's upstream, the
//! bench and the tests. [`Connection`] is one set-up SDK connection (unary calls plus the raw
//! bi-stream); [`Session`] keeps one connection to a server list alive (failover, reconnect with
//! backoff), answers server requests (push acks, detection, reset) and redoes everything it
//! holds (registrations, subscriptions, config listeners) on every new connection (spec §12).

mod connection;
mod session;

use std::net::SocketAddr;

pub use connection::{Connection, Setup, Unary};
pub use session::{Event, Session, SessionConfig};

/// Why a call or a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not a valid endpoint, or the TCP/HTTP/2 connect failed.
    #[error("connect failed: {0}")]
    Connect(#[from] tonic::transport::Error),
    /// The gRPC call itself failed (connection lost, stream reset).
    #[error("call failed: {0}")]
    Status(#[from] tonic::Status),
    /// The server answered with a failure (`ErrorResponse` or `resultCode` ≠ 200).
    #[error("server refused ({code}): {message}")]
    Rejected {
        /// Nacos `errorCode`.
        code: i64,
        /// Nacos `message`.
        message: String,
    },
    /// The server answered with another response type than the request calls for.
    #[error("expected {expected}, got {got}")]
    Unexpected {
        /// The response type the request calls for.
        expected: String,
        /// What came.
        got: String,
    },
    /// A response without a type.
    #[error("response without a type")]
    Untyped,
    /// A body that is not the JSON its type calls for.
    #[error("malformed body: {0}")]
    Json(#[from] serde_json::Error),
    /// The server did not answer within the request timeout.
    #[error("no answer within the request timeout")]
    Timeout,
    /// The server never registered the connection's setup.
    #[error("{0} never registered the connection")]
    NotRegistered(SocketAddr),
    /// No connection to any server (yet); what was asked is kept and redone on connect.
    #[error("not connected to any server")]
    NotConnected,
    /// The connection or the session is closed.
    #[error("closed")]
    Closed,
}
