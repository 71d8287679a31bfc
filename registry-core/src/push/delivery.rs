//! Acknowledged server → client requests over gRPC connections, shared by naming pushes
//! (`NotifySubscriberRequest`) and config change notifications (`ConfigChangeNotifyRequest`):
//! request ids, the pending-ack table keyed by (connection, requestId), and the slow-consumer
//! rule. A connection whose bounded queue is full, or that never acknowledges, is closed rather
//! than buffered for: its client reconnects and resyncs, which costs less than unbounded memory.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tokio::time::Duration;

use super::conn_subscribers::{PushSink, SinkError};
use super::pending::{Due, PendingAcks, RetryPolicy};

/// Why the delivery closes a connection, as told to the transport (logged there).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CloseReasons {
    /// Its outbound queue was full.
    pub(crate) slow: &'static str,
    /// A request used up its retries.
    pub(crate) unacked: &'static str,
}

/// Request ids and pending acks of one kind of request. Owned by the notifier task.
pub(crate) struct ConnDelivery<T> {
    pending: PendingAcks<(String, String), T>,
    next_request_id: u64,
    reasons: CloseReasons,
}

impl<T> ConnDelivery<T> {
    /// A delivery applying `policy`, tracking at most `capacity` unacknowledged requests.
    pub(crate) fn new(policy: RetryPolicy, capacity: usize, reasons: CloseReasons) -> Self {
        Self { pending: PendingAcks::new(policy, capacity), next_request_id: 1, reasons }
    }

    /// A fresh request id; the client echoes it in its response, which is the ack.
    pub(crate) fn next_request_id(&mut self) -> String {
        let id = self.next_request_id;
        self.next_request_id += 1;
        id.to_string()
    }

    /// Queues request `request_id` (attempt `attempt`) on `sink` and awaits its ack. A full
    /// queue closes the connection; the error tells the caller to log it and forget it.
    pub(crate) fn send(
        &mut self,
        sink: &dyn PushSink,
        kind: &str,
        request_id: String,
        body: Vec<u8>,
        payload: T,
        attempt: u32,
    ) -> Result<(), SinkError> {
        let result = sink.try_send(kind, body);
        match result {
            Ok(()) => self.pending.track((sink.id().to_owned(), request_id), payload, attempt),
            Err(SinkError::Full) => sink.close(self.reasons.slow),
            Err(SinkError::Closed) => {}
        }
        result
    }

    /// Closes a connection that left a request unacknowledged through every retry.
    pub(crate) fn give_up(&self, sink: &dyn PushSink) {
        sink.close(self.reasons.unacked);
    }

    /// Removes a request (acknowledged, or superseded); returns its payload if it was pending.
    pub(crate) fn remove(&mut self, conn: String, request_id: String) -> Option<T> {
        self.pending.remove(&(conn, request_id))
    }

    /// Requests whose ack is overdue, with their connection and what to do.
    pub(crate) fn take_due(&mut self) -> Vec<(String, Due<T>)> {
        self.pending.take_due().into_iter().map(|((conn, _), due)| (conn, due)).collect()
    }

    /// Forgets every pending request of a connection that went away.
    pub(crate) fn forget_connection(&mut self, conn: &str) {
        self.pending.retain(|(c, _)| c != conn);
    }

    /// How often overdue requests should be looked for.
    pub(crate) fn check_every(&self) -> Duration {
        self.pending.policy().check_every()
    }

    /// Requests awaiting an ack.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }
}

/// Request handlers' messages (new subscriptions, acks) to a delivery task (the push engine,
/// the config notifier): bounded (`[queues] push_control`, `config_notify_control`), dropped
/// and counted when full. The task handles each in memory, so the queue fills only if it
/// stalls or clients flood responses: a dropped ack means a resend, a dropped
/// new-subscription note a missed first push (the subscriber got the state in its subscribe
/// answer).
#[derive(Debug)]
pub(crate) struct ControlQueue<T> {
    tx: mpsc::Sender<T>,
    dropped: AtomicU64,
}

impl<T> ControlQueue<T> {
    /// A queue of `capacity` messages (at least 1) and its receiving end.
    pub(crate) fn new(capacity: usize) -> (Self, mpsc::Receiver<T>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx, dropped: AtomicU64::new(0) }, rx)
    }

    /// Most messages that wait at once.
    pub(crate) fn capacity(&self) -> usize {
        self.tx.max_capacity()
    }

    /// Queues `message`, or drops and counts it when the queue is full (a closed queue means
    /// the task stopped at shutdown: nothing to count).
    pub(crate) fn send(&self, message: T) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(message) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Messages dropped because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parking_lot::Mutex;

    use super::*;
    use crate::push::pending::Backoff;

    /// A sink that records what was queued and whether it was closed.
    struct Recorder {
        full: bool,
        sent: Mutex<Vec<String>>,
        closed: Mutex<Option<String>>,
    }

    impl PushSink for Recorder {
        fn id(&self) -> &str {
            "c1"
        }
        fn try_send(&self, kind: &str, _body: Vec<u8>) -> Result<(), SinkError> {
            if self.full {
                return Err(SinkError::Full);
            }
            self.sent.lock().push(kind.to_owned());
            Ok(())
        }
        fn close(&self, reason: &str) {
            *self.closed.lock() = Some(reason.to_owned());
        }
    }

    fn sink(full: bool) -> Arc<Recorder> {
        Arc::new(Recorder { full, sent: Mutex::default(), closed: Mutex::default() })
    }

    fn delivery() -> ConnDelivery<&'static str> {
        let policy = RetryPolicy { timeout: Duration::from_secs(1), max_retries: 1, backoff: Backoff::Doubling };
        ConnDelivery::new(policy, 100, CloseReasons { slow: "slow", unacked: "unacked" })
    }

    #[tokio::test(start_paused = true)]
    async fn ack_by_connection_and_request_id_removes_the_pending_request() {
        let (mut d, s) = (delivery(), sink(false));
        let id = d.next_request_id();
        d.send(&*s, "K", id.clone(), Vec::new(), "p", 0).unwrap();
        assert_eq!(*s.sent.lock(), ["K"]);
        assert_eq!(d.remove("other".into(), id.clone()), None, "an ack from another connection does not count");
        assert_eq!(d.remove("c1".into(), id), Some("p"));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(d.take_due().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn resend_doubles_the_wait_then_gives_up() {
        let (mut d, s) = (delivery(), sink(false));
        let id = d.next_request_id();
        d.send(&*s, "K", id, Vec::new(), "p", 0).unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(d.take_due(), vec![("c1".to_owned(), Due::Resend { payload: "p", attempt: 1 })]);
        let id = d.next_request_id();
        d.send(&*s, "K", id, Vec::new(), "p", 1).unwrap();
        tokio::time::advance(Duration::from_millis(1_999)).await;
        assert!(d.take_due().is_empty(), "the resend waits twice the timeout");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(d.take_due(), vec![("c1".to_owned(), Due::GiveUp("p"))]);
        d.give_up(&*s);
        assert_eq!(s.closed.lock().as_deref(), Some("unacked"));
    }

    #[test]
    fn full_queue_closes_the_connection_and_tracks_nothing() {
        let (mut d, s) = (delivery(), sink(true));
        let id = d.next_request_id();
        assert_eq!(d.send(&*s, "K", id, Vec::new(), "p", 0), Err(SinkError::Full));
        assert_eq!(s.closed.lock().as_deref(), Some("slow"));
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn a_full_control_queue_drops_and_counts_what_does_not_fit() {
        let (queue, mut rx) = ControlQueue::new(2);
        for n in 0..5 {
            queue.send(n);
        }
        assert_eq!(queue.dropped(), 3);
        assert_eq!((rx.try_recv(), rx.try_recv()), (Ok(0), Ok(1)), "the first messages are kept, in order");
        queue.send(5);
        assert_eq!((rx.try_recv(), queue.dropped()), (Ok(5), 3), "room again once the task took some");
        drop(rx);
        queue.send(6);
        assert_eq!(queue.dropped(), 3, "a stopped task is not an overflow");
    }
}
