//! Distro: AP replication of ephemeral data between members (spec §14.2), independent of Raft.
//!
//! ```text
//!  local ephemeral write ──► apply.rs (here) ──► ledger: owned[client] = new revision
//!                                                   │ mark dirty for every peer
//!                                                   ▼
//!  per-peer task: wait a few ms (batch) ──► Sync(batch of whole clients) ──► peer: newer? →
//!     failure: keep dirty, back off, retry          apply.rs (SyncClient / RemoveClient) → push
//!
//!  every verify interval: Verify(digest of owned clients) ──► peer renews matching copies,
//!     answers the clients it lacks or holds stale ──► they are marked dirty for that peer;
//!     copies the owner (in its current run) no longer lists are dropped; copies nobody
//!     renews lose what live clients republished (orphans.rs) and expire (grace)
//!  start: Snapshot from a peer (every client it holds) before this member reports ready;
//!     the copies of this member's own earlier run (a restart) are copies here too
//! ```
//!
//! The unit of replication is a client with its whole publication (a gRPC connection, or a v1
//! `ip:port` client), owned by the member where it was written. Revisions are the owner's
//! wall-clock microseconds (strictly increasing), so applying is idempotent and order-free: a
//! receiver keeps whatever is newest. The membership (who the peers are) is the last applied
//! Raft membership, which needs no leader, so all of this keeps working without a Raft quorum.
//!
//! v1 HTTP (`ip:port`) clients are owned by the member their tag hashes to among the healthy
//! members ([`Distro::responsible_peer`], Nacos' rule); the HTTP layer forwards their writes and
//! beats there. Whatever lands elsewhere anyway (a forward that failed, views of health that
//! briefly differ) still has exactly one owner: the member where the client last wrote.

mod ledger;
mod orphans;
mod service;
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use md5::{Digest as _, Md5};
use parking_lot::Mutex;
use registry_proto::cluster::DistroMessage;
use registry_proto::cluster::distro_client::DistroClient;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::apply::Applier;
use super::command::{Command, NamingCommand};
use super::raft::network::MAX_CLUSTER_MESSAGE;
use super::raft::{NodeId, RaftNode};
use crate::model::{ClientId, ServiceKey};
use ledger::{Ledger, Verdict};
pub use service::DistroService;
use wire::{ClientBatch, ClientData, Digest, InspectRequest, ServiceDigest, Want};

/// Tunables of Distro (`[distro]`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistroConfig {
    /// Changes are gathered this long before a batch goes to a peer (ms).
    pub sync_batch_ms: u64,
    /// Longest back-off between retries to an unreachable peer (ms).
    pub sync_retry_max_ms: u64,
    /// How often an owner sends each peer the digest of what it owns (ms). Nacos: 5 000.
    pub verify_interval_ms: u64,
    /// A copy of a gRPC client its owner has not confirmed for this long is removed (ms); at
    /// least three verify intervals. Nacos: 180 000 (`nacos.naming.client.expired.time`).
    /// When a member dies, its clients reconnect to a survivor at once but redo their
    /// registrations on their own schedule (Java every 3 s, nacos-sdk-python 2.x every 30 s):
    /// until then these copies are what keeps their instances listed, so this must outlast the
    /// slowest client's redo. The redo supersedes the copy's instances as soon as the copy is
    /// unconfirmed (three verify intervals), so a long value keeps no duplicates and no
    /// deregistered instance alive. Copies of v1 heartbeat clients expire after their
    /// instances' delete timeout (30 s) instead, never later than this (see `orphans.rs`).
    pub expire_after_ms: u64,
    /// How long a starting member keeps trying to load a snapshot from its peers (ms).
    pub load_timeout_ms: u64,
}

impl Default for DistroConfig {
    fn default() -> Self {
        Self {
            sync_batch_ms: 2,
            sync_retry_max_ms: 2_000,
            verify_interval_ms: 2_000,
            expire_after_ms: 180_000,
            load_timeout_ms: 30_000,
        }
    }
}

/// Longest wait for a Distro RPC.
const RPC_TIMEOUT: Duration = Duration::from_secs(3);

/// Dirty clients waiting to be sent to one peer.
#[derive(Debug, Default)]
struct Outbox {
    dirty: Mutex<HashSet<ClientId>>,
    wake: Notify,
}

/// One member's Distro: its ledger, its outboxes and its background tasks.
pub struct Distro {
    me: NodeId,
    applier: Arc<Applier>,
    raft: RaftNode,
    config: DistroConfig,
    ledger: Mutex<Ledger>,
    outboxes: Mutex<HashMap<NodeId, Arc<Outbox>>>,
    /// Whether the startup snapshot was loaded (or there was nobody to load it from).
    loaded: AtomicBool,
    /// Whether a peer's snapshot was applied at start, unlike `loaded`, which a member also
    /// reaches when no peer answered in time: the metric that tells the two apart.
    snapshot_from_peer: AtomicBool,
    /// Copies removed because their owner stopped confirming them, by kind of client.
    expired: ExpiredCopies,
    /// Batches to a peer that failed (kept and resent with back-off): shows a test that a
    /// paused member really missed a send, instead of a sleep hoping so.
    sync_failures: AtomicU64,
    /// A standalone node replicates nothing: its writes skip all bookkeeping.
    standalone: AtomicBool,
    /// Since when some peer's view has differed from ours (verify found differences).
    disagree_since: Mutex<Option<Instant>>,
    /// What the last pass over unconfirmed copies looked at (see [`Self::supersede`]).
    checked: Mutex<orphans::Checked>,
    shutdown: CancellationToken,
    /// This value itself, for the tasks it spawns.
    weak: std::sync::Weak<Self>,
}

impl std::fmt::Debug for Distro {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Distro").field("me", &self.me).finish_non_exhaustive()
    }
}

/// The client an ephemeral command changes, and whether it removes the client.
fn client_of(cmd: &NamingCommand) -> Option<(&ClientId, bool)> {
    match cmd {
        NamingCommand::PublishEphemeral { client, .. }
        | NamingCommand::UnpublishEphemeral { client, .. }
        | NamingCommand::SetEphemeralHealth { client, .. } => Some((client, false)),
        NamingCommand::RemoveClient { client } => Some((client, true)),
        _ => None,
    }
}

impl Distro {
    /// Distro for this member; `start` runs it.
    pub fn new(applier: Arc<Applier>, raft: RaftNode, config: DistroConfig, shutdown: CancellationToken) -> Arc<Self> {
        Arc::new_cyclic(|weak| Self {
            weak: weak.clone(),
            me: raft.node_id(),
            applier,
            raft,
            config,
            ledger: Mutex::new(Ledger::default()),
            outboxes: Mutex::new(HashMap::new()),
            loaded: AtomicBool::new(false),
            snapshot_from_peer: AtomicBool::new(false),
            expired: ExpiredCopies::default(),
            sync_failures: AtomicU64::new(0),
            standalone: AtomicBool::new(false),
            disagree_since: Mutex::new(None),
            checked: Mutex::new(orphans::Checked::default()),
            shutdown,
        })
    }

    /// Starts the background work: the startup snapshot load, then verify and expiry rounds.
    /// A standalone node has no peers: it is loaded at once and its rounds are no-ops.
    pub fn start(self: &Arc<Self>, standalone: bool) {
        if standalone {
            self.standalone.store(true, Ordering::Release);
            self.loaded.store(true, Ordering::Release);
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            this.load_snapshot().await;
            this.loaded.store(true, Ordering::Release);
            let mut verify = tokio::time::interval(Duration::from_millis(this.config.verify_interval_ms.max(1)));
            verify.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = this.shutdown.cancelled() => return,
                    _ = verify.tick() => {}
                }
                this.expire();
                this.supersede();
                this.verify_round().await;
            }
        });
    }

    /// Whether this node runs standalone (no peers: nothing to replicate).
    pub fn is_standalone(&self) -> bool {
        self.standalone.load(Ordering::Acquire)
    }

    /// Whether the startup snapshot is in (readiness).
    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Whether this member applied a peer's snapshot when it started (false: standalone, or no
    /// peer answered within `load_timeout_ms` and it started from local data only).
    pub fn snapshot_loaded_from_peer(&self) -> bool {
        self.snapshot_from_peer.load(Ordering::Acquire)
    }

    /// Batches to peers that failed since start (each is resent).
    pub fn sync_failures(&self) -> u64 {
        self.sync_failures.load(Ordering::Relaxed)
    }

    /// How many copies expired since start: (gRPC connections, v1 heartbeat clients). Their
    /// owner stopped confirming them (it died, restarted or is cut off) for their whole grace.
    pub fn copies_expired(&self) -> (u64, u64) {
        (self.expired.grpc.load(Ordering::Relaxed), self.expired.v1.load(Ordering::Relaxed))
    }

    /// Seconds since some peer's view last started to differ from ours (0: all agree).
    pub fn disagreement_seconds(&self) -> f64 {
        self.disagree_since.lock().map_or(0.0, |since| since.elapsed().as_secs_f64())
    }

    /// Whether this member owns `client` (a standalone node owns every client).
    pub fn owns(&self, client: &ClientId) -> bool {
        self.standalone.load(Ordering::Acquire) || self.ledger.lock().owned.contains_key(client)
    }

    /// The member responsible for a v1 client tag (`ip:port`) when that is another member,
    /// with its cluster address: Nacos' `abs(hash(tag) % i32::MAX) % n` over the healthy members
    /// (this one and the peers that answered a member call within three verify intervals, see
    /// `cluster.rs`) sorted by id. `None` when it is this member, or standalone.
    pub fn responsible_peer(&self, tag: &str) -> Option<(NodeId, String)> {
        if self.standalone.load(Ordering::Acquire) {
            return None;
        }
        let cluster = self.raft.cluster();
        let mut members: Vec<(NodeId, Option<String>)> = self
            .raft
            .peers()
            .into_iter()
            .filter(|(id, _)| cluster.healthy(*id))
            .map(|(id, addr)| (id, Some(addr)))
            .collect();
        members.push((self.me, None));
        members.sort_by_key(|(id, _)| *id);
        let index = (java_string_hash(tag) % i32::MAX).unsigned_abs() as usize % members.len();
        let (id, addr) = members.swap_remove(index);
        addr.map(|a| (id, a))
    }

    /// Three verify intervals: a peer that has not answered for this long is not counted as
    /// healthy, and a copy its owner has not confirmed for this long is unconfirmed.
    fn unconfirmed_after(&self) -> Duration {
        Duration::from_millis(self.config.verify_interval_ms.saturating_mul(3))
    }

    /// How many clients this member owns and holds as copies.
    pub fn counts(&self) -> (usize, usize) {
        let ledger = self.ledger.lock();
        (ledger.owned.len(), ledger.copies.len())
    }

    /// Hook after a local ephemeral write was applied: this member owns the client; every peer
    /// gets its new state.
    pub fn local_change(&self, cmd: &Command) {
        if self.standalone.load(Ordering::Acquire) {
            return;
        }
        let Command::Naming(cmd) = cmd else { return };
        let Some((client, removed)) = client_of(cmd) else { return };
        // Owned here even with nobody to tell yet (a member not yet in a membership): a later
        // verify round brings the peers up to date.
        self.ledger.lock().changed_here(self.me, client, removed);
        for (peer, _) in self.raft.peers() {
            self.mark_dirty(peer, std::iter::once(client.clone()));
        }
    }

    fn mark_dirty(&self, peer: NodeId, clients: impl IntoIterator<Item = ClientId>) {
        let outbox = {
            let mut outboxes = self.outboxes.lock();
            match outboxes.get(&peer) {
                Some(o) => Arc::clone(o),
                None => {
                    let o = Arc::new(Outbox::default());
                    outboxes.insert(peer, Arc::clone(&o));
                    self.spawn_sender(peer, Arc::clone(&o));
                    o
                }
            }
        };
        outbox.dirty.lock().extend(clients);
        outbox.wake.notify_one();
    }

    /// The per-peer sender: batches dirty clients, sends them, retries with back-off.
    fn spawn_sender(&self, peer: NodeId, outbox: Arc<Outbox>) {
        let Some(this) = self.self_arc() else { return };
        tokio::spawn(async move {
            let batch_wait = Duration::from_millis(this.config.sync_batch_ms);
            let max_backoff = Duration::from_millis(this.config.sync_retry_max_ms.max(10));
            let mut backoff = Duration::from_millis(10);
            loop {
                tokio::select! {
                    () = this.shutdown.cancelled() => return,
                    () = outbox.wake.notified() => {}
                }
                if !batch_wait.is_zero() {
                    tokio::time::sleep(batch_wait).await;
                }
                let clients: Vec<ClientId> = outbox.dirty.lock().drain().collect();
                if clients.is_empty() {
                    continue;
                }
                if !this.raft.peers().iter().any(|(id, _)| *id == peer) {
                    this.outboxes.lock().remove(&peer);
                    return;
                }
                let batch = this.batch_of(&clients);
                match this.call(peer, Rpc::Sync, &batch).await {
                    Ok(_) => backoff = Duration::from_millis(10),
                    Err(e) => {
                        tracing::debug!(peer, error = %e, clients = clients.len(), "distro sync failed; retrying");
                        this.sync_failures.fetch_add(1, Ordering::Relaxed);
                        outbox.dirty.lock().extend(clients);
                        tokio::select! {
                            () = this.shutdown.cancelled() => return,
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(max_backoff);
                        outbox.wake.notify_one();
                    }
                }
            }
        });
    }

    /// The current state of `clients` as this member has them (own clients and tombstones).
    fn batch_of(&self, clients: &[ClientId]) -> ClientBatch {
        let ledger = self.ledger.lock();
        let naming = self.applier.naming();
        let clients = clients
            .iter()
            .filter_map(|client| {
                if let Some(revision) = ledger.owned.get(client) {
                    let publication = naming.read_data(|d| d.publication_of(client));
                    return Some(ClientData {
                        client: client.clone(),
                        owner: self.me,
                        revision: *revision,
                        publication: Some(publication),
                        unconfirmed_ms: 0,
                    });
                }
                // Not the tombstone of an expired copy of this member's earlier run: those
                // clients are not this run's to remove everywhere.
                let tomb =
                    ledger.tombstones.get(client).filter(|t| t.owner == self.me && !ledger.earlier_run(t.revision))?;
                Some(ClientData {
                    client: client.clone(),
                    owner: self.me,
                    revision: tomb.revision,
                    publication: None,
                    unconfirmed_ms: 0,
                })
            })
            .collect();
        ClientBatch { clients }
    }

    /// Applies replicated clients (a sync, or a snapshot when `from_snapshot`). Returns how
    /// many changed this member's state.
    fn receive(&self, sender: NodeId, batch: ClientBatch, from_snapshot: bool) -> usize {
        let now = Instant::now();
        let mut applied = 0;
        let mut ledger = self.ledger.lock();
        for data in batch.clients {
            // A member speaks only for its own clients; a snapshot relays everyone's, this
            // member's earlier run's included (see `Ledger::admits`).
            if !ledger.admits(self.me, sender, data.owner, data.revision, from_snapshot) {
                tracing::debug!(sender, owner = data.owner, client = %data.client, "distro data for another owner ignored");
                continue;
            }
            if ledger.judge(&data.client, data.owner, data.revision, now) != Verdict::Apply {
                continue;
            }
            let present = data.publication.is_some();
            let cmd = match data.publication {
                Some(publication) => NamingCommand::SyncClient { client: data.client.clone(), publication },
                None => NamingCommand::RemoveClient { client: data.client.clone() },
            };
            if let Err(e) = self.applier.apply(&Command::Naming(cmd)) {
                tracing::warn!(client = %data.client, error = %e, "replicated client refused by the state");
                continue;
            }
            let unconfirmed = Duration::from_millis(data.unconfirmed_ms);
            ledger.record_unconfirmed(&data.client, data.owner, data.revision, present, now, unconfirmed);
            applied += 1;
        }
        applied
    }

    /// Handles an owner's digest: renews, drops what it no longer has, answers what is wanted.
    fn on_digest(&self, sender: NodeId, digest: &Digest) -> Want {
        if digest.owner != sender || digest.owner == self.me {
            return Want::default();
        }
        let (want, gone) = self.ledger.lock().compare(digest, Instant::now());
        self.remove_copies(&gone, Removal::OwnerDropped);
        self.note_agreement(want.is_empty() && gone.is_empty());
        Want { clients: want }
    }

    /// Removes copies locally (not replicated: they are someone else's).
    fn remove_copies(&self, clients: &[ClientId], why: Removal) {
        let now = Instant::now();
        for client in clients {
            let mut ledger = self.ledger.lock();
            let Some(copy) = ledger.copies.get(client).copied() else { continue };
            if let Err(e) = self.applier.apply(&Command::Naming(NamingCommand::RemoveClient { client: client.clone() }))
            {
                tracing::warn!(%client, error = %e, "removing a copy failed");
            }
            // An expired copy's tombstone sits one revision below the copy: should its owner
            // turn out to be alive and still list the client (a long partition), the next
            // verify fetches it again instead of the tombstone refusing it.
            let revision = match why {
                Removal::OwnerDropped => copy.revision,
                Removal::Expired => copy.revision.saturating_sub(1),
            };
            ledger.record(client, copy.owner, revision, false, now);
        }
    }

    /// Removes copies whose owner has not confirmed them for their grace period: gRPC
    /// clients after `expire_after_ms`, v1 heartbeat clients after their delete timeout.
    fn expire(&self) {
        let now = Instant::now();
        let expire_after = Duration::from_millis(self.config.expire_after_ms);
        let floor = self.unconfirmed_after().min(expire_after);
        let expired: Vec<ClientId> = {
            let mut ledger = self.ledger.lock();
            ledger.forget_tombstones(expire_after * 2, now);
            let quiet = ledger.unrenewed(floor, now);
            if quiet.is_empty() {
                return;
            }
            self.applier.naming().read_data(|d| {
                quiet
                    .into_iter()
                    .filter(|(client, silent)| *silent >= orphans::grace(d, client, floor, expire_after))
                    .map(|(client, _)| client)
                    .collect()
            })
        };
        if !expired.is_empty() {
            tracing::info!(clients = expired.len(), "distro copies expired: their owner stopped confirming them");
            self.remove_copies(&expired, Removal::Expired);
            self.expired.count(&expired);
        }
    }

    /// Removes from unconfirmed gRPC copies the instances a live client publishes too (their
    /// client redid its registration through another member), locally on every member alike;
    /// see `orphans.rs`. The ledger lock is held throughout: a sync of the same client from
    /// its owner cannot interleave between reading the copy and writing it back.
    fn supersede(&self) {
        let now = Instant::now();
        let window = self.unconfirmed_after();
        let mut ledger = self.ledger.lock();
        let stale: HashSet<ClientId> = ledger
            .copies
            .iter()
            .filter(|(c, m)| !c.is_ip_port() && now.saturating_duration_since(m.renewed) >= window)
            .map(|(c, _)| c.clone())
            .collect();
        let mut checked = self.checked.lock();
        if stale.is_empty() {
            // Nothing to look at (the usual case); forget what earlier passes scanned.
            *checked = orphans::Checked::default();
            return;
        }
        let plan = self.applier.naming().read_data(|d| orphans::superseded(d, &stale, &mut checked));
        drop(checked);
        for (client, publication) in plan {
            let instances: usize = publication.iter().map(|(_, list)| list.len()).sum();
            let cmd = NamingCommand::SyncClient { client: client.clone(), publication };
            if let Err(e) = self.applier.apply(&Command::Naming(cmd)) {
                tracing::warn!(%client, error = %e, "trimming a superseded copy failed");
                continue;
            }
            ledger.step_back(&client);
            tracing::info!(%client, kept = instances, "unconfirmed distro copy: instances republished by a live client removed from it");
        }
    }

    /// Tells every peer what this member owns; queues what they lack.
    async fn verify_round(&self) {
        let digest = self.ledger.lock().digest(self.me);
        let mut all_agree = true;
        for (peer, _) in self.raft.peers() {
            match self.call(peer, Rpc::Verify, &digest).await {
                Ok(bytes) => match serde_json::from_slice::<Want>(&bytes) {
                    Ok(want) if !want.clients.is_empty() => {
                        all_agree = false;
                        tracing::debug!(peer, clients = want.clients.len(), "peer lacks clients: resending");
                        self.mark_dirty(peer, want.clients);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(peer, error = %e, "undecodable verify answer"),
                },
                Err(e) => {
                    all_agree = false;
                    tracing::debug!(peer, error = %e, "distro verify failed");
                }
            }
        }
        self.note_agreement(all_agree);
    }

    fn note_agreement(&self, agree: bool) {
        let mut since = self.disagree_since.lock();
        match (agree, *since) {
            (true, _) => *since = None,
            (false, None) => *since = Some(Instant::now()),
            (false, Some(_)) => {}
        }
    }

    /// Pulls every client a peer holds, trying peers in turn until one answers (bounded).
    async fn load_snapshot(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.config.load_timeout_ms);
        while tokio::time::Instant::now() < deadline && !self.shutdown.is_cancelled() {
            for (peer, _) in self.raft.peers() {
                match self.call(peer, Rpc::Snapshot, &()).await {
                    Ok(bytes) => match serde_json::from_slice::<ClientBatch>(&bytes) {
                        Ok(batch) => {
                            let total = batch.clients.len();
                            let applied = self.receive(peer, batch, true);
                            self.snapshot_from_peer.store(true, Ordering::Release);
                            tracing::info!(peer, total, applied, "distro snapshot loaded");
                            return;
                        }
                        Err(e) => tracing::warn!(peer, error = %e, "undecodable distro snapshot"),
                    },
                    Err(e) => tracing::debug!(peer, error = %e, "distro snapshot not available"),
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        tracing::warn!("no peer answered with a distro snapshot; starting from local data only");
    }

    /// Every client this member holds (own and copies), for a peer's snapshot; copies with how
    /// long they have gone unconfirmed, so they age on the peer as they do here.
    fn snapshot(&self) -> ClientBatch {
        let now = Instant::now();
        let ledger = self.ledger.lock();
        let naming = self.applier.naming();
        let clients = naming.read_data(|d| {
            let own = ledger.owned.iter().map(|(c, r)| (c, self.me, *r, Duration::ZERO));
            let copies =
                ledger.copies.iter().map(|(c, m)| (c, m.owner, m.revision, now.saturating_duration_since(m.renewed)));
            own.chain(copies)
                .map(|(client, owner, revision, unconfirmed)| ClientData {
                    client: client.clone(),
                    owner,
                    revision,
                    publication: Some(d.publication_of(client)),
                    unconfirmed_ms: u64::try_from(unconfirmed.as_millis()).unwrap_or(u64::MAX),
                })
                .collect()
        });
        ClientBatch { clients }
    }

    /// What this member serves for `service`.
    pub fn inspect(&self, service: &ServiceKey) -> ServiceDigest {
        let mut instances: Vec<String> = self
            .applier
            .naming()
            .view(service)
            .map(|v| {
                v.instances()
                    .iter()
                    .map(|i| {
                        format!(
                            "{}:{}:{} healthy={} enabled={} weight={}",
                            i.ip, i.port, i.cluster, i.healthy, i.enabled, i.weight
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        instances.sort();
        let mut md5 = Md5::new();
        for line in &instances {
            md5.update(line.as_bytes());
            md5.update(b"\n");
        }
        ServiceDigest { node_id: self.me, digest: hex(&md5.finalize()), instances }
    }

    /// A digest of every ephemeral publication this member serves (equal on members that agree).
    pub fn digest_all(&self) -> (String, usize) {
        self.applier.naming().read_data(|d| {
            let mut clients: Vec<&ClientId> = d.ephemeral_clients().collect();
            clients.sort();
            let mut md5 = Md5::new();
            for client in &clients {
                md5.update(client.0.as_bytes());
                for (service, instances) in d.publication_of(client) {
                    md5.update(service.to_string().as_bytes());
                    for i in instances {
                        md5.update(format!("|{}:{}:{}:{}:{}", i.ip, i.port, i.cluster, i.healthy, i.weight).as_bytes());
                    }
                }
                md5.update(b"\n");
            }
            (hex(&md5.finalize()), clients.len())
        })
    }

    /// Every member's view of `service`: this member's and each peer's (bounded wait).
    pub async fn inspect_all(&self, service: &ServiceKey) -> Vec<Result<ServiceDigest, (NodeId, String)>> {
        let mut out = vec![Ok(self.inspect(service))];
        let request = InspectRequest { service: service.clone() };
        for (peer, _) in self.raft.peers() {
            let answer = match self.call(peer, Rpc::Inspect, &request).await {
                Ok(bytes) => serde_json::from_slice::<ServiceDigest>(&bytes).map_err(|e| (peer, e.to_string())),
                Err(e) => Err((peer, e)),
            };
            out.push(answer);
        }
        out
    }

    async fn call<T: serde::Serialize>(&self, peer: NodeId, rpc: Rpc, body: &T) -> Result<Vec<u8>, String> {
        let json = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        let mut client = DistroClient::new(self.raft.cluster().channel_of(peer)?)
            .max_decoding_message_size(MAX_CLUSTER_MESSAGE)
            .max_encoding_message_size(MAX_CLUSTER_MESSAGE);
        let mut request = self.raft.stamped(DistroMessage { json });
        request.set_timeout(RPC_TIMEOUT);
        let reply = match rpc {
            Rpc::Sync => client.sync(request).await,
            Rpc::Verify => client.verify(request).await,
            Rpc::Snapshot => client.snapshot(request).await,
            Rpc::Inspect => client.inspect(request).await,
        };
        let cluster = self.raft.cluster();
        let json = reply.map(|r| r.into_inner().json).map_err(|s| {
            cluster.failed(peer);
            format!("{:?}: {}", s.code(), s.message())
        })?;
        cluster.answered(peer);
        Ok(json)
    }

    fn self_arc(&self) -> Option<Arc<Self>> {
        self.weak.upgrade()
    }
}

/// Counters of expired copies, split by kind because their grace differs (`orphans::grace`):
/// a gRPC copy lasts `expire_after_ms`, a v1 copy its instances' delete timeout.
#[derive(Debug, Default)]
struct ExpiredCopies {
    grpc: AtomicU64,
    v1: AtomicU64,
}

impl ExpiredCopies {
    fn count(&self, clients: &[ClientId]) {
        let v1 = clients.iter().filter(|c| c.is_ip_port()).count() as u64;
        self.v1.fetch_add(v1, Ordering::Relaxed);
        self.grpc.fetch_add(clients.len() as u64 - v1, Ordering::Relaxed);
    }
}

/// Why a copy is removed locally.
#[derive(Debug, Clone, Copy)]
enum Removal {
    /// Its owner's digest no longer lists it: the owner removed the client.
    OwnerDropped,
    /// Its owner stopped confirming it for its whole grace period.
    Expired,
}

/// Which Distro RPC.
#[derive(Debug, Clone, Copy)]
enum Rpc {
    Sync,
    Verify,
    Snapshot,
    Inspect,
}

/// Java's `String.hashCode` (over UTF-16 units), which Nacos' responsibility hash uses.
fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::{ExpiredCopies, java_string_hash};
    use crate::model::ClientId;

    #[test]
    fn expired_copies_are_counted_by_kind_of_client() {
        let expired = ExpiredCopies::default();
        expired.count(&[ClientId::from("1_127.0.0.1_5000"), ClientId::ip_port("10.0.0.1", 80, true)]);
        expired.count(&[ClientId::from("2_127.0.0.1_5001")]);
        assert_eq!(expired.grpc.load(Ordering::Relaxed), 2);
        assert_eq!(expired.v1.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_responsibility_hash_is_javas_string_hash() {
        // Values of "x".hashCode() in Java.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("10.0.0.1:8080"), -1_643_343_804);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
    }
}
