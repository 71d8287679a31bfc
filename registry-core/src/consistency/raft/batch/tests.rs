//! The batch encoding (old single-command entries included) and the batcher's merging of
//! writes that queue while an entry is in flight.

use std::time::Duration;

use openraft::error::ForwardToLeader;
use parking_lot::Mutex;

use super::*;
use crate::consistency::command::{ApplyError, ConfigCommand};
use crate::consistency::raft::DEFAULT_WRITE_QUEUE;
use crate::model::{ConfigKey, Source};

/// Bound on waiting for the batcher task to get somewhere.
const WAIT: Duration = Duration::from_secs(30);

fn purge(before_ms: u64) -> Command {
    Command::Config(ConfigCommand::PurgeHistory { before_ms })
}

fn remove(data_id: &str) -> Command {
    let key = ConfigKey::new("", "DEFAULT_GROUP", data_id).expect("valid key");
    Command::Config(ConfigCommand::Remove { key, source: Source::default(), at_ms: 1 })
}

#[test]
fn an_entry_written_before_batching_decodes_as_a_batch_of_one() {
    let cmd = remove("app.yaml");
    let single = serde_json::to_vec(&cmd).expect("encode one command");
    let batch: CommandBatch = serde_json::from_slice(&single).expect("decode an old entry");
    assert_eq!(batch.commands(), std::slice::from_ref(&cmd));
}

#[test]
fn a_batch_round_trips_as_a_list() {
    let batch = CommandBatch::from(vec![remove("a"), purge(7), remove("b")]);
    let bytes = serde_json::to_vec(&batch).expect("encode");
    assert!(bytes.starts_with(b"["), "a JSON list: {}", String::from_utf8_lossy(&bytes));
    assert_eq!(serde_json::from_slice::<CommandBatch>(&bytes).expect("decode"), batch);
    assert!(serde_json::from_slice::<CommandBatch>(b"42").is_err(), "neither a list nor a command");
}

/// A stand-in for openraft: records every batch; the first one waits for `release`. Refuses
/// `PurgeHistory { before_ms: 0 }` with a CAS conflict, to tell results apart.
struct FakeRaft {
    batches: Mutex<Vec<Vec<Command>>>,
    first_started: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl FakeRaft {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            batches: Mutex::new(Vec::new()),
            first_started: tokio::sync::Notify::new(),
            release: tokio::sync::Notify::new(),
        })
    }

    async fn propose(&self, batch: CommandBatch) -> Result<Vec<CommandResult>, ProposeError> {
        let first = {
            let mut batches = self.batches.lock();
            batches.push(batch.commands().to_vec());
            batches.len() == 1
        };
        if first {
            self.first_started.notify_one();
            self.release.notified().await;
        }
        Ok(batch
            .commands()
            .iter()
            .map(|c| match c {
                Command::Config(ConfigCommand::PurgeHistory { before_ms: 0 }) => Err(ApplyError::CasConflict),
                _ => Ok(()),
            })
            .collect())
    }
}

fn batcher_over(fake: &Arc<FakeRaft>) -> Batcher {
    let fake = fake.clone();
    Batcher::spawn_with(DEFAULT_WRITE_QUEUE, move |batch| {
        let fake = fake.clone();
        async move { fake.propose(batch).await }
    })
}

/// Waits (bounded) until `n` writes sit in the batcher's queue.
async fn until_queued(batcher: &Batcher, n: usize) {
    let queued = async {
        while DEFAULT_WRITE_QUEUE - batcher.queue.capacity() < n {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(WAIT, queued).await.expect("writes queued");
}

#[tokio::test]
async fn writes_queued_while_an_entry_is_in_flight_form_the_next_entry_and_keep_their_own_results() {
    let fake = FakeRaft::new();
    let batcher = batcher_over(&fake);

    let lone = tokio::spawn({
        let b = batcher.clone();
        async move { b.write(purge(100)).await }
    });
    tokio::time::timeout(WAIT, fake.first_started.notified()).await.expect("first entry proposed");
    let commands: Vec<Command> = (1..=5).map(|i| purge(if i == 3 { 0 } else { i })).collect();
    let mut waiting = Vec::new();
    for cmd in commands.clone() {
        let b = batcher.clone();
        waiting.push(tokio::spawn(async move { b.write(cmd).await }));
        // One at a time, so the queue order is the spawn order.
        until_queued(&batcher, waiting.len()).await;
    }
    fake.release.notify_one();

    assert!(matches!(lone.await.expect("task"), Ok(Ok(()))));
    for (i, task) in waiting.into_iter().enumerate() {
        let result = task.await.expect("task").expect("committed");
        if i == 2 {
            assert_eq!(result, Err(ApplyError::CasConflict), "the refused command gets its own refusal");
        } else {
            assert_eq!(result, Ok(()), "write {i}");
        }
    }
    assert_eq!(*fake.batches.lock(), vec![vec![purge(100)], commands], "one entry for the five queued writes");
    assert_eq!((batcher.stats().proposals(), batcher.stats().commands()), (2, 6));
}

#[tokio::test]
async fn a_failed_proposal_fails_every_write_of_its_batch() {
    let forward = ForwardToLeader { leader_id: Some(2), leader_node: None };
    let not_leader =
        ProposeError::Raft(Box::new(openraft::error::RaftError::APIError(ClientWriteError::ForwardToLeader(forward))));
    let batcher = Batcher::spawn_with(DEFAULT_WRITE_QUEUE, {
        let not_leader = not_leader.clone();
        move |_| {
            let e = not_leader.clone();
            async move { Err(e) }
        }
    });
    let writes: Vec<_> = (0..3)
        .map(|i| {
            let b = batcher.clone();
            tokio::spawn(async move { b.write(purge(i)).await })
        })
        .collect();
    for write in writes {
        assert_eq!(write.await.expect("task"), Err(not_leader.clone()));
    }
}
