//! The log store's group commit: what openraft may read before and after a flush, the order
//! and timing of the durability reports, truncation of the pending tail, and what a reopened
//! store holds.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use openraft::storage::RaftLogStorage;
use openraft::{EntryPayload, RaftLogReader};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::*;

/// Bound on waiting for the writer to report (generous: a loaded CI disk).
const REPORT_WAIT: Duration = Duration::from_secs(30);

fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
    Entry { log_id: openraft::testing::log_id(term, 1, index), payload: EntryPayload::Blank }
}

fn open(dir: &tempfile::TempDir) -> (Arc<Db>, LogStore) {
    let db = Arc::new(Db::open(dir.path()).expect("open db"));
    let store = LogStore::new(db.clone()).expect("start the log writer");
    (db, store)
}

/// `(term, index)` of each entry.
fn ids(entries: &[Entry<TypeConfig>]) -> Vec<(u64, u64)> {
    entries.iter().map(|e| (e.log_id.leader_id.term, e.log_id.index)).collect()
}

/// Whether the log table on disk (a fresh read transaction) holds `index`.
fn on_disk(db: &Db, index: u64) -> bool {
    db.read(|txn| Ok(txn.open_table(RAFT_LOG)?.get(index)?.is_some())).expect("read the log table")
}

/// One durability report: which append, its outcome, and whether its entries were on disk
/// when it was told.
type Report = (usize, Result<(), LogIoError>, bool);

/// A `Done` for append number `tag` of `indexes`, reporting to `reports`.
fn reporter(db: &Arc<Db>, tag: usize, indexes: Vec<u64>, reports: &UnboundedSender<Report>) -> Done {
    let (db, reports) = (db.clone(), reports.clone());
    Box::new(move |outcome| {
        let durable = indexes.iter().all(|i| on_disk(&db, *i));
        reports.send((tag, outcome, durable)).expect("test still listening");
    })
}

async fn next_report(reports: &mut UnboundedReceiver<Report>) -> Report {
    let report = tokio::time::timeout(REPORT_WAIT, reports.recv()).await.expect("the writer reports in time");
    report.expect("the writer reports")
}

/// Holds redb's single write lock on another thread until released, so the log writer's commit
/// waits in `begin_write` and appends pile up in its queue.
struct WriteLockHeld {
    release: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl WriteLockHeld {
    fn take(db: &Arc<Db>) -> Self {
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let db = db.clone();
        let thread = std::thread::spawn(move || {
            db.write(|_| {
                entered_tx.send(()).expect("test waits");
                // Released by the test, or by the test ending (sender dropped).
                let _ = release_rx.recv();
                Ok(())
            })
            .expect("empty transaction commits");
        });
        entered.recv_timeout(REPORT_WAIT).expect("write lock taken");
        Self { release, thread }
    }

    fn release(self) {
        self.release.send(()).expect("holder waits");
        self.thread.join().expect("holder ends");
    }
}

#[test]
fn index_bounds_normalise_every_range_kind() {
    assert_eq!(index_bounds(&(..)), Some((0, None)));
    assert_eq!(index_bounds(&(3..7)), Some((3, Some(7))));
    assert_eq!(index_bounds(&(3..=7)), Some((3, Some(8))));
    assert_eq!(index_bounds(&(3..)), Some((3, None)));
    assert_eq!(index_bounds(&(..=u64::MAX)), Some((0, None)));
    assert_eq!(index_bounds(&(5..5)), None);
    #[allow(clippy::reversed_empty_ranges, reason = "openraft may ask for an empty range")]
    let reversed = 7..3;
    assert_eq!(index_bounds(&reversed), None);
}

#[tokio::test]
async fn appends_queued_behind_a_busy_writer_are_readable_at_once_and_share_one_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, mut store) = open(&dir);
    let (reports_tx, mut reports) = unbounded_channel();

    let lock = WriteLockHeld::take(&db);
    let batches = [vec![1, 2], vec![3], vec![4, 5, 6]];
    for (tag, batch) in batches.iter().enumerate() {
        let entries = batch.iter().map(|i| entry(1, *i));
        store.writer.append(entries, reporter(&db, tag, batch.clone(), &reports_tx)).expect("queued");
    }

    // Readable although nothing is on disk and nobody was told it is durable.
    let all: Vec<(u64, u64)> = (1..=6).map(|i| (1, i)).collect();
    assert_eq!(ids(&store.try_get_log_entries(1..=6).await.expect("read")), all);
    assert_eq!(ids(&store.try_get_log_entries(2..4).await.expect("read")), vec![(1, 2), (1, 3)]);
    let state = store.get_log_state().await.expect("log state");
    assert_eq!(state.last_log_id.map(|l| l.index), Some(6));
    assert!(!(1..=6).any(|i| on_disk(&db, i)), "nothing written while the lock is held");
    assert!(reports.try_recv().is_err(), "no append reported before its commit");

    lock.release();
    for tag in 0..batches.len() {
        let (got, outcome, durable) = next_report(&mut reports).await;
        assert_eq!(got, tag, "reports come in append order");
        assert!(outcome.is_ok(), "append {tag}: {outcome:?}");
        assert!(durable, "append {tag} was reported before its entries were on disk");
    }
    let stats = store.stats();
    assert_eq!((stats.durable_commits(), stats.entries()), (1, 6), "one fsync for the three appends");
    assert_eq!(ids(&store.try_get_log_entries(..).await.expect("read")), all, "same entries, now from disk");
}

#[tokio::test]
async fn truncate_drops_pending_entries_at_once_and_stays_ordered_with_the_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, mut store) = open(&dir);
    let (reports_tx, mut reports) = unbounded_channel();

    let lock = WriteLockHeld::take(&db);
    store.writer.append((1..=5).map(|i| entry(1, i)), reporter(&db, 0, vec![], &reports_tx)).expect("queued");
    let cut = store.writer.truncate(3).expect("queued");
    assert_eq!(ids(&store.try_get_log_entries(..).await.expect("read")), vec![(1, 1), (1, 2)]);
    assert_eq!(store.get_log_state().await.expect("state").last_log_id.map(|l| l.index), Some(2));
    // A new leader's entries at the truncated indexes.
    store.writer.append([entry(2, 3), entry(2, 4)], reporter(&db, 1, vec![3, 4], &reports_tx)).expect("queued");
    let expected = vec![(1, 1), (1, 2), (2, 3), (2, 4)];
    assert_eq!(ids(&store.try_get_log_entries(..).await.expect("read")), expected);

    lock.release();
    cut.wait().await.expect("truncated");
    for tag in 0..2 {
        let (got, outcome, durable) = next_report(&mut reports).await;
        assert_eq!(got, tag);
        assert!(outcome.is_ok() && durable, "append {tag}: {outcome:?}, durable {durable}");
    }
    assert_eq!(ids(&store.try_get_log_entries(..).await.expect("read")), expected);
    assert!(!on_disk(&db, 5), "the truncated entry was written, then deleted in order");
    let on_disk_terms: Vec<(u64, u64)> =
        ids(&store.disk_entries(0, None).expect("disk")).into_iter().filter(|(_, i)| *i >= 3).collect();
    assert_eq!(on_disk_terms, vec![(2, 3), (2, 4)]);
}

#[tokio::test]
async fn a_reopened_store_holds_every_write_reported_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, mut store) = open(&dir);
    let (reports_tx, mut reports) = unbounded_channel();
    let vote = Vote::new_committed(3, 1);
    store.save_vote(&vote).await.expect("vote saved");
    let mut appended = 0;
    for (tag, batch) in [1..=4, 5..=5, 6..=9].into_iter().enumerate() {
        let indexes: Vec<u64> = batch.collect();
        appended += indexes.len();
        let entries: Vec<_> = indexes.iter().map(|i| entry(3, *i)).collect();
        store.writer.append(entries, reporter(&db, tag, indexes, &reports_tx)).expect("queued");
    }
    let committed = Some(openraft::testing::log_id(3, 1, 5));
    store.save_committed(committed).await.expect("queued");
    assert_eq!(store.read_committed().await.expect("read"), committed, "readable before its commit");

    // Dropping the last clone: the writer commits what is queued, reports it, and ends,
    // letting go of the database.
    let mut closed = db.closed();
    drop((store, db));
    for tag in 0..3 {
        let (got, outcome, durable) = next_report(&mut reports).await;
        assert!(got == tag && outcome.is_ok() && durable, "append {got}: {outcome:?}, durable {durable}");
    }
    let released = tokio::time::timeout(REPORT_WAIT, closed.changed()).await.expect("the writer ended in time");
    assert!(released.is_err(), "the database was closed, not changed");

    let (_db, mut store) = open(&dir);
    let entries = store.try_get_log_entries(..).await.expect("read");
    assert_eq!(ids(&entries), (1..=appended as u64).map(|i| (3, i)).collect::<Vec<_>>());
    assert_eq!(store.read_vote().await.expect("read"), Some(vote));
    assert_eq!(store.read_committed().await.expect("read"), committed);
}
