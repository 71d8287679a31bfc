//! Where server→client messages for one connection go. The push engines (naming pushes, config
//! notifications) only know this trait; the SDK channel's connections implement it with their
//! bounded outbound queue.

/// Why a push could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The connection's queue is full: it is not reading.
    #[error("outbound queue full")]
    Full,
    /// The connection is gone.
    #[error("connection closed")]
    Closed,
}

/// Where pushes for one connection go (implemented by [`super::Connection`]).
pub trait PushSink: Send + Sync {
    /// The connection id.
    fn id(&self) -> &str;
    /// Queues a server→client message of type `kind` whose JSON body is `body`.
    fn try_send(&self, kind: &str, body: Vec<u8>) -> Result<(), SinkError>;
    /// Closes the connection so that its client reconnects and redoes its subscriptions.
    fn close(&self, reason: &str);
}
