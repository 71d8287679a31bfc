//! Who a member is beyond its node id: the cluster it belongs to and the store it runs on.
//!
//! Raft assumes a voter never forgets its vote or what it acknowledged. A member restarted on an
//! empty data directory under a voter's id breaks that: it can complete a quorum for a write
//! only one real copy holds, or vote for a leader missing committed writes. Two ids guard it:
//!
//! - **Cluster id**: created by the member that bootstraps the cluster, carried in every
//!   member-to-member request (`x-registry-cluster`); a request with another cluster's id is
//!   refused. An empty store adopts the id of the first leader message it accepts.
//! - **Store id**: random, created with the store, sent with every answer (`x-registry-store`).
//!   The membership records per member the store that first answered for it ([`Member::store`],
//!   bound by the leader). An answer from a *voter* whose store differs is not counted: the
//!   network layer reports the voter unreachable, so it helps neither commit nor elect. A
//!   member that finds itself bound to another store stops campaigning and is not ready. The
//!   way back is the membership path: remove it, add it as a learner (which binds its new
//!   store), promote it once caught up. A learner's new store is simply bound again: learners
//!   never count toward a quorum.
//!
//! ```text
//!  leader ── AppendEntries/Vote (+cluster id) ──► member: other cluster? refuse
//!         ◄── answer (+store id) ─────────────── │
//!  store bound to another one and a voter? → unreachable (not counted), refusals_total + 1
//!  not bound yet (bootstrap, new learner)? → counted; the binder task binds it (SetNodes)
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tonic::metadata::MetadataMap;

use super::member::Member;
use super::{NodeId, TypeConfig};
use crate::storage::tables::{CLUSTER_ID_KEY, RAFT_STATE, STORE_ID_KEY};
use crate::storage::{Db, StorageError, encode, get_json};

/// Header naming the sending member.
pub(crate) const NODE_HEADER: &str = "x-registry-node";
/// Header carrying the sender's cluster id.
pub(crate) const CLUSTER_HEADER: &str = "x-registry-cluster";
/// Header carrying the answering (or sending) member's store id.
pub(crate) const STORE_HEADER: &str = "x-registry-store";

/// What the membership says of one member's store.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Binding {
    store: String,
    voter: bool,
}

/// Why an answer was not counted.
#[derive(Debug, thiserror::Error)]
#[error("node {target} answered from store {found:?}, but the membership binds it to store {bound}: not counted")]
pub(crate) struct ForeignStore {
    target: NodeId,
    found: String,
    bound: String,
}

/// This member's identity and its view of everyone's bound store. Shared (`Arc`) by the network
/// layer, the cluster services and the binder task.
#[derive(Debug)]
pub(crate) struct Identity {
    me: NodeId,
    store: String,
    cluster: RwLock<Option<String>>,
    /// Weak: the store must close when openraft stops (a restart reopens it).
    db: Weak<Db>,
    bindings: RwLock<BTreeMap<NodeId, Binding>>,
    /// Stores heard from members the membership does not bind to them yet; the leader binds.
    unbound: Mutex<BTreeMap<NodeId, String>>,
    unbound_added: tokio::sync::Notify,
    /// Whether the membership binds this member's id to another store.
    displaced: AtomicBool,
    refused_answers: AtomicU64,
    refused_requests: AtomicU64,
}

/// A fresh random id: 128 bits, hex.
fn random_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness (never seen on Linux): time and pid still differ between stores.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        bytes = (nanos ^ (u128::from(std::process::id()) << 96)).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Identity {
    /// Loads this store's ids, creating the store id on first open.
    pub(crate) fn open(me: NodeId, db: &Arc<Db>) -> Result<Arc<Self>, StorageError> {
        let (store, cluster) = db.write(|txn| {
            let mut table = txn.open_table(RAFT_STATE)?;
            let store: Option<String> = get_json(&table, STORE_ID_KEY)?;
            let cluster: Option<String> = get_json(&table, CLUSTER_ID_KEY)?;
            let store = match store {
                Some(s) => s,
                None => {
                    let s = random_id();
                    table.insert(STORE_ID_KEY, encode(|| "store id".into(), &s)?.as_slice())?;
                    s
                }
            };
            Ok((store, cluster))
        })?;
        Ok(Arc::new(Self {
            me,
            store,
            cluster: RwLock::new(cluster),
            db: Arc::downgrade(db),
            bindings: RwLock::default(),
            unbound: Mutex::default(),
            unbound_added: tokio::sync::Notify::new(),
            displaced: AtomicBool::new(false),
            refused_answers: AtomicU64::new(0),
            refused_requests: AtomicU64::new(0),
        }))
    }

    /// This member's node id.
    pub(crate) fn me(&self) -> NodeId {
        self.me
    }

    /// This store's id.
    pub(crate) fn store(&self) -> &str {
        &self.store
    }

    /// The cluster id, once known.
    pub(crate) fn cluster(&self) -> Option<String> {
        self.cluster.read().clone()
    }

    /// Gives this store a new cluster id (bootstrap, or a leader of a cluster created before
    /// cluster ids existed).
    pub(crate) fn create_cluster(&self) -> Result<String, StorageError> {
        let id = random_id();
        self.set_cluster(&id)?;
        tracing::info!(cluster = %id, "created the cluster id");
        Ok(id)
    }

    fn set_cluster(&self, id: &str) -> Result<(), StorageError> {
        if let Some(db) = self.db.upgrade() {
            let bytes = encode(|| "cluster id".into(), &id)?;
            db.write(|txn| {
                txn.open_table(RAFT_STATE)?.insert(CLUSTER_ID_KEY, bytes.as_slice())?;
                Ok(())
            })?;
        }
        *self.cluster.write() = Some(id.to_owned());
        Ok(())
    }

    /// A request stamped with this member's node id, cluster id and store id.
    pub(crate) fn stamped<T>(&self, body: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(body);
        let md = req.metadata_mut();
        insert(md, NODE_HEADER, &self.me.to_string());
        insert(md, STORE_HEADER, &self.store);
        if let Some(cluster) = self.cluster.read().as_deref() {
            insert(md, CLUSTER_HEADER, cluster);
        }
        req
    }

    /// An answer carrying this member's store and cluster ids.
    pub(crate) fn answer<T>(&self, body: T) -> tonic::Response<T> {
        let mut resp = tonic::Response::new(body);
        let md = resp.metadata_mut();
        insert(md, STORE_HEADER, &self.store);
        if let Some(cluster) = self.cluster.read().as_deref() {
            insert(md, CLUSTER_HEADER, cluster);
        }
        resp
    }

    /// Refuses a request from another cluster (both ids known and different).
    pub(crate) fn check_cluster(&self, sender: NodeId, md: &MetadataMap) -> Result<(), tonic::Status> {
        let theirs = md.get(CLUSTER_HEADER).and_then(|v| v.to_str().ok());
        match (self.cluster.read().as_deref(), theirs) {
            (Some(mine), Some(theirs)) if mine != theirs => {
                self.refused_requests.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(sender, theirs, mine, "cluster request from another cluster refused");
                Err(tonic::Status::permission_denied(format!(
                    "node {sender} belongs to cluster {theirs}, this member to cluster {mine}"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Adopts the cluster id of a leader message this member accepted, when it has none.
    pub(crate) fn adopt_cluster(&self, md: &MetadataMap) {
        if self.cluster.read().is_some() {
            return;
        }
        let Some(theirs) = md.get(CLUSTER_HEADER).and_then(|v| v.to_str().ok()) else { return };
        match self.set_cluster(theirs) {
            Ok(()) => tracing::info!(cluster = theirs, "joined the cluster"),
            Err(e) => tracing::warn!(error = %e, "could not store the cluster id"),
        }
    }

    /// Decides whether `target`'s answer counts: a voter answering from a store other than the
    /// one bound to it does not. An unbound member (or a learner with a new store) is noted for
    /// the leader to bind.
    pub(crate) fn check_answer(&self, target: NodeId, md: &MetadataMap) -> Result<(), ForeignStore> {
        let Some(found) = md.get(STORE_HEADER).and_then(|v| v.to_str().ok()) else {
            // A member running a version without store ids: nothing to compare.
            return Ok(());
        };
        let binding = self.bindings.read().get(&target).cloned();
        match binding {
            Some(b) if b.store == found => Ok(()),
            Some(b) if b.voter && !b.store.is_empty() => {
                let n = self.refused_answers.fetch_add(1, Ordering::Relaxed);
                let e = ForeignStore { target, found: found.to_owned(), bound: b.store };
                // Every answer is refused while it lasts: say it once, then now and then.
                if n.is_power_of_two() || n == 0 {
                    tracing::warn!(
                        node = target,
                        error = %e,
                        "a voter answers from another store (lost data dir?): remove it and add it back as a learner"
                    );
                }
                Err(e)
            }
            _ => {
                let mut unbound = self.unbound.lock();
                if unbound.get(&target).map(String::as_str) != Some(found) {
                    unbound.insert(target, found.to_owned());
                    self.unbound_added.notify_one();
                }
                Ok(())
            }
        }
    }

    /// Answers not counted because a voter answered from a foreign store, since start.
    pub(crate) fn refused_answers(&self) -> u64 {
        self.refused_answers.load(Ordering::Relaxed)
    }

    /// Requests refused because they came from another cluster, since start.
    pub(crate) fn refused_requests(&self) -> u64 {
        self.refused_requests.load(Ordering::Relaxed)
    }

    /// Whether the membership binds this member's id to another store: it must not vote or
    /// campaign until it is re-added.
    pub(crate) fn displaced(&self) -> bool {
        self.displaced.load(Ordering::Relaxed)
    }

    /// Takes the bindings of `membership` as the ones to check against. Returns whether this
    /// member is displaced.
    fn refresh(&self, membership: &openraft::Membership<NodeId, Member>) -> bool {
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        let bindings: BTreeMap<NodeId, Binding> = membership
            .nodes()
            .map(|(id, m)| (*id, Binding { store: m.store.clone(), voter: voters.contains(id) }))
            .collect();
        let displaced = bindings.get(&self.me).is_some_and(|b| !b.store.is_empty() && b.store != self.store);
        self.unbound.lock().retain(|id, store| bindings.get(id).is_some_and(|b| b.store != *store));
        *self.bindings.write() = bindings;
        self.displaced.store(displaced, Ordering::Relaxed);
        displaced
    }
}

fn insert(md: &mut MetadataMap, key: &'static str, value: &str) {
    if let Ok(v) = value.parse() {
        md.insert(key, v);
    }
}

/// Pause after a refused binding proposal (another membership change in flight) before trying again.
const BIND_RETRY: Duration = Duration::from_millis(300);

/// Keeps `identity` in step with the membership: refreshes bindings, stops this member from
/// campaigning while it is displaced, and on the leader binds the stores of unbound members and
/// gives a cluster without an id one. Ends when Raft stops.
pub(crate) fn spawn_binder(raft: openraft::Raft<TypeConfig>, identity: Arc<Identity>) {
    tokio::spawn(async move {
        let mut metrics = raft.metrics();
        let mut was_displaced = false;
        let mut next_attempt = tokio::time::Instant::now();
        loop {
            let (membership, leader, settled, stopped) = {
                let m = metrics.borrow_and_update();
                // One membership change at a time: bind only once the current one is applied
                // (and so committed), never racing an operator's add or promote.
                let settled = m.membership_config.log_id().as_ref() <= m.last_applied.as_ref();
                let leader = m.current_leader == Some(identity.me);
                (m.membership_config.membership().clone(), leader, settled, m.running_state.is_err())
            };
            if stopped {
                return;
            }
            let displaced = identity.refresh(&membership);
            if displaced != was_displaced {
                raft.runtime_config().elect(!displaced);
                if displaced {
                    tracing::error!(
                        node = identity.me,
                        store = identity.store(),
                        "the membership binds this node id to another store (was its data directory lost?): \
                         this member will not campaign and is not ready; remove it and add it back as a learner"
                    );
                } else {
                    tracing::info!(node = identity.me, "this member's store is the one the membership binds");
                }
                was_displaced = displaced;
            }
            if leader && settled && tokio::time::Instant::now() >= next_attempt {
                if membership.get_node(&identity.me).is_some_and(|m| m.store.is_empty()) {
                    identity.unbound.lock().insert(identity.me, identity.store.clone());
                }
                if identity.cluster().is_none()
                    && let Err(e) = identity.create_cluster()
                {
                    tracing::warn!(error = %e, "could not store a new cluster id");
                }
                if bind_unbound(&raft, &identity, &membership).await {
                    next_attempt = tokio::time::Instant::now() + BIND_RETRY;
                }
            }
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                () = identity.unbound_added.notified() => {}
            }
        }
    });
}

/// Proposes the stores heard from unbound members (and learners on a new store) as their
/// bindings, in one membership change. Returns whether to try again later.
async fn bind_unbound(
    raft: &openraft::Raft<TypeConfig>,
    identity: &Identity,
    membership: &openraft::Membership<NodeId, Member>,
) -> bool {
    let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
    let nodes: BTreeMap<NodeId, Member> = identity
        .unbound
        .lock()
        .iter()
        .filter_map(|(id, store)| {
            let current = membership.get_node(id)?;
            let bindable = current.store.is_empty() || !voters.contains(id);
            (bindable && current.store != *store).then(|| (*id, Member { store: store.clone(), ..current.clone() }))
        })
        .collect();
    if nodes.is_empty() {
        return false;
    }
    let ids: Vec<NodeId> = nodes.keys().copied().collect();
    match raft.change_membership(openraft::ChangeMembers::SetNodes(nodes), true).await {
        Ok(_) => {
            tracing::info!(nodes = ?ids, "bound members to the stores they answered from");
            false
        }
        Err(e) => {
            tracing::debug!(error = %e, "binding stores deferred");
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(me: NodeId) -> (tempfile::TempDir, Arc<Db>, Arc<Identity>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Arc::new(Db::open(dir.path()).expect("db"));
        let id = Identity::open(me, &db).expect("identity");
        (dir, db, id)
    }

    fn membership(nodes: &[(NodeId, &str, bool)]) -> openraft::Membership<NodeId, Member> {
        let voters: std::collections::BTreeSet<NodeId> = nodes.iter().filter(|n| n.2).map(|n| n.0).collect();
        let all: BTreeMap<NodeId, Member> = nodes
            .iter()
            .map(|(id, store, _)| (*id, Member { addr: format!("n{id}"), http: String::new(), store: (*store).into() }))
            .collect();
        openraft::Membership::new(vec![voters], all)
    }

    fn answer_from(store: &str) -> MetadataMap {
        let mut md = MetadataMap::new();
        insert(&mut md, STORE_HEADER, store);
        md
    }

    #[test]
    fn the_store_id_survives_a_reopen_and_differs_between_stores() {
        let (dir, db, first) = identity(1);
        let store = first.store().to_owned();
        drop(first);
        drop(db);
        let db = Arc::new(Db::open(dir.path()).expect("reopen"));
        assert_eq!(Identity::open(1, &db).expect("identity").store(), store);
        let (_other_dir, _other_db, other) = identity(1);
        assert_ne!(other.store(), store);
    }

    #[test]
    fn a_voter_answering_from_another_store_is_not_counted_and_a_learner_is_rebound() {
        let (_dir, _db, id) = identity(1);
        id.refresh(&membership(&[(1, id.store(), true), (2, "s2", true), (3, "s3", false)]));
        assert!(id.check_answer(2, &answer_from("s2")).is_ok());
        assert!(id.check_answer(2, &answer_from("fresh")).is_err());
        assert_eq!(id.refused_answers(), 1);
        assert!(id.check_answer(3, &answer_from("fresh")).is_ok(), "learners never count toward a quorum");
        assert_eq!(id.unbound.lock().get(&3).map(String::as_str), Some("fresh"));
    }

    #[test]
    fn unbound_voters_count_and_are_noted_for_binding() {
        let (_dir, _db, id) = identity(1);
        id.refresh(&membership(&[(1, "", true), (2, "", true)]));
        assert!(id.check_answer(2, &answer_from("s2")).is_ok());
        assert_eq!(id.unbound.lock().get(&2).map(String::as_str), Some("s2"));
        id.refresh(&membership(&[(1, "", true), (2, "s2", true)]));
        assert!(id.unbound.lock().is_empty(), "bound members leave the queue");
    }

    #[test]
    fn a_member_bound_to_another_store_is_displaced() {
        let (_dir, _db, id) = identity(3);
        assert!(id.refresh(&membership(&[(1, "s1", true), (3, "old", true)])));
        assert!(id.displaced());
        assert!(!id.refresh(&membership(&[(1, "s1", true), (3, "", false)])));
    }

    #[test]
    fn requests_from_another_cluster_are_refused_and_an_empty_store_adopts_the_first_it_hears() {
        let (_dir, _db, id) = identity(2);
        let mut md = MetadataMap::new();
        insert(&mut md, CLUSTER_HEADER, "c1");
        assert!(id.check_cluster(1, &md).is_ok(), "no id yet: nothing to compare");
        id.adopt_cluster(&md);
        assert_eq!(id.cluster().as_deref(), Some("c1"));
        let mut other = MetadataMap::new();
        insert(&mut other, CLUSTER_HEADER, "c2");
        assert!(id.check_cluster(1, &other).is_err());
        id.adopt_cluster(&other);
        assert_eq!(id.cluster().as_deref(), Some("c1"), "an id once held is kept");
        assert_eq!(id.refused_requests(), 1);
    }
}
