//! The `[queues]` section: the bounds of the queues between the server's tasks that have no
//! section of their own to live in (docs/configuration.md, "Queues and their bounds"). Each
//! is shown in `/metrics` as `registry_queue_capacity{queue}` (the live queue's size where it
//! can tell, [`Capacities`]).

use registry_proto::tls::Backlog;
use serde::Deserialize;

/// Largest bound accepted: 2^24. The change-event broadcast allocates every slot at start
/// (~48 bytes each, so 768 MiB at this bound); beyond it a typo costs the whole machine.
pub const MAX_BOUND: usize = 1 << 24;

/// The `[queues]` section. Defaults are the bounds the server always had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueuesConfig {
    /// New subscriptions and acks → push engine; full: dropped and counted.
    pub push_control: usize,
    /// Acks → config notifier; full: dropped and counted.
    pub config_notify_control: usize,
    /// Change events, applier → push engine, config notifier, DNS cache, health checker; a
    /// reader that lags further resynchronises.
    pub change_events: usize,
    /// Writes waiting for the Raft batcher; full: the writer waits.
    pub raft_writes: usize,
    /// TLS handshakes in progress per listener; full: the listener stops accepting.
    pub tls_handshakes: usize,
    /// Handshaken TLS connections not yet taken by the server, per listener; full: the
    /// handshake task waits.
    pub tls_accepted: usize,
}

impl Default for QueuesConfig {
    fn default() -> Self {
        let backlog = Backlog::default();
        Self {
            push_control: 65_536,
            config_notify_control: 65_536,
            change_events: crate::consistency::apply::CHANGE_EVENT_CAPACITY,
            raft_writes: crate::consistency::raft::DEFAULT_WRITE_QUEUE,
            tls_handshakes: backlog.handshakes,
            tls_accepted: backlog.accepted,
        }
    }
}

impl QueuesConfig {
    /// Every bound with its key, in the order of the section.
    fn entries(&self) -> [(&'static str, usize); 6] {
        [
            ("push_control", self.push_control),
            ("config_notify_control", self.config_notify_control),
            ("change_events", self.change_events),
            ("raft_writes", self.raft_writes),
            ("tls_handshakes", self.tls_handshakes),
            ("tls_accepted", self.tls_accepted),
        ]
    }

    /// Refuses a bound of 0 (nothing could pass) or above [`MAX_BOUND`].
    pub fn check(&self) -> Result<(), String> {
        for (key, bound) in self.entries() {
            if bound == 0 || bound > MAX_BOUND {
                return Err(format!("queues.{key} is {bound}: it must be between 1 and {MAX_BOUND}"));
            }
        }
        Ok(())
    }

    /// The sizes of each TLS listener's queues.
    pub fn tls_backlog(&self) -> Backlog {
        Backlog { handshakes: self.tls_handshakes, accepted: self.tls_accepted }
    }
}

/// What `/metrics` shows as `registry_queue_capacity{queue}`: each bound under its
/// configuration key (`queues.raft_writes`, `grpc.outbound_queue`, ...), read from the queue
/// itself where it can tell, so a bound that did not reach its queue shows.
#[derive(Debug, Clone, Default)]
pub struct Capacities(Vec<(&'static str, usize)>);

impl Capacities {
    /// Adds `queue`'s bound.
    pub fn set(&mut self, queue: &'static str, capacity: usize) {
        self.0.push((queue, capacity));
    }

    /// Each queue's key and bound, in the order added.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, usize)> + '_ {
        self.0.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_former_constants_and_zero_or_absurd_bounds_are_refused() {
        let d = QueuesConfig::default();
        assert_eq!(d.entries().map(|(_, v)| v), [65_536, 65_536, 16_384, 4096, 256, 128]);
        assert_eq!(d.check(), Ok(()));
        let zero = QueuesConfig { raft_writes: 0, ..d };
        assert_eq!(zero.check(), Err(format!("queues.raft_writes is 0: it must be between 1 and {MAX_BOUND}")));
        let huge = QueuesConfig { change_events: MAX_BOUND + 1, ..d };
        assert!(huge.check().is_err_and(|m| m.starts_with("queues.change_events is 16777217")));
        let edges = QueuesConfig { push_control: 1, tls_accepted: MAX_BOUND, ..d };
        assert_eq!(edges.check(), Ok(()));
    }
}
