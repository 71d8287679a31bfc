//! Starting and stopping a node. Start opens the store and openraft, then either bootstraps a
//! new cluster (empty store, and this is the lowest configured member or standalone) or waits
//! to be replicated to (empty store, another member bootstraps) or replays its own store. A
//! member restarted on existing data keeps announcing its addresses until the membership has
//! them. Shutdown returns once the store is released, so a restart can reopen it at once.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::batch::Batcher;
use super::identity::{self, Identity};
use super::lease::Lease;
use super::log_store::LogStore;
use super::network::{GrpcNetwork, cluster_client};
use super::state_machine::StateMachine;
use super::{Member, NodeId, RaftConfig, RaftError, RaftNode, TypeConfig};
use crate::cluster::Cluster;
use crate::consistency::apply::Applier;
use crate::storage::Db;

/// How long `shutdown` waits for openraft's background tasks to release the database.
const DB_RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

impl RaftNode {
    /// Opens the store under data_dir and starts openraft. On an empty store (no vote, no log)
    /// the lowest configured member, or a standalone node, initializes the cluster with the
    /// configured members; existing data is never initialized over.
    pub async fn start(config: RaftConfig, data_dir: &Path, applier: Arc<Applier>) -> Result<Self, RaftError> {
        let raft_config = Arc::new(config.openraft_config()?);
        let db = Arc::new(Db::open(data_dir)?);
        let identity = Identity::open(config.node_id, &db)?;
        let log_store = LogStore::new(db.clone()).map_err(RaftError::LogWriter)?;
        let log_stats = log_store.stats();
        let state_machine = StateMachine::open(db.clone(), applier)?;
        let snapshot_installs = state_machine.installs();
        let pristine = log_store.is_pristine()? && state_machine.last_applied().is_none();
        // Ready once applied this far again. A standalone node commits every entry of its own
        // log (they are all its own), so it waits for the last one; a member waits for the
        // committed index it saved (its log's tail may be truncated by a new leader).
        let ready_floor = if config.standalone {
            log_store.last_log_index()?.max(log_store.committed()?.map(|c| c.index))
        } else {
            log_store.committed()?.map(|c| c.index)
        };
        let db_path = db.path().to_path_buf();
        let db_closed = db.closed();
        drop(db);

        let cluster = Arc::clone(&config.cluster);
        let network = GrpcNetwork { identity: identity.clone(), cluster: Arc::clone(&cluster) };
        let raft = openraft::Raft::new(config.node_id, raft_config, network, log_store, state_machine)
            .await
            .map_err(|e| RaftError::Fatal(Box::new(e)))?;
        cluster.observe(raft.metrics());
        let configured = cluster.configured();
        let bootstraps = configured.keys().next().is_none_or(|lowest| *lowest == config.node_id);
        if pristine && bootstraps {
            let mut members: BTreeMap<NodeId, Member> = if configured.is_empty() {
                BTreeMap::from([(config.node_id, Member::at(cluster.own()))])
            } else {
                configured.iter().map(|(id, addr)| (*id, Member::at(addr))).collect()
            };
            // The others' stores are bound by the first leader as they answer (`identity.rs`).
            if let Some(own) = members.get_mut(&config.node_id) {
                own.store = identity.store().to_owned();
            }
            identity.create_cluster()?;
            tracing::info!(
                node_id = config.node_id,
                members = members.len(),
                path = %db_path.display(),
                "initialising a new raft cluster"
            );
            raft.initialize(members).await.map_err(|e| RaftError::Init(Box::new(e)))?;
        } else if pristine {
            tracing::info!(
                node_id = config.node_id,
                "empty store: waiting for the lowest member to bootstrap the cluster"
            );
        } else {
            tracing::info!(
                node_id = config.node_id,
                path = %db_path.display(),
                ?ready_floor,
                "raft restarted on existing data"
            );
        }
        let initial = Arc::new(configured.keys().copied().collect());
        if !configured.is_empty() && !pristine {
            spawn_rejoin(raft.clone(), identity.clone(), Arc::clone(&cluster));
        }
        identity::spawn_binder(raft.clone(), identity.clone());
        let lease = Lease::new(raft.metrics(), config.node_id, config.leader_lease);
        Ok(Self {
            ready_floor,
            db_closed,
            me: config.node_id,
            initial,
            cluster,
            batcher: Batcher::spawn(raft.clone(), lease.clone(), config.write_queue),
            log_stats,
            identity,
            lease,
            write_timeout: config.write_timeout,
            quorum_failures: Arc::default(),
            snapshot_installs,
            raft,
        })
    }

    /// Shuts openraft down (flushes nothing extra: every acknowledged write is already durable).
    ///
    /// Returns once the database file is released (bounded), so the same data directory can be
    /// opened again right away.
    pub async fn shutdown(&self) -> Result<(), RaftError> {
        self.raft.shutdown().await.map_err(RaftError::Shutdown)?;
        // openraft stops its state-machine task (and any snapshot build) just after the core;
        // they hold the store until then, and the log writer commits what is queued first.
        let mut closed = self.db_closed.clone();
        if tokio::time::timeout(DB_RELEASE_TIMEOUT, closed.changed()).await.is_err() {
            tracing::warn!("raft stopped but its store is still open; reopening it will fail until released");
        }
        Ok(())
    }
}

/// After a restart, keeps telling the leader this member's addresses until the membership has
/// them (a pod that comes back with a new IP rejoins as itself; a membership written before HTTP
/// addresses were recorded learns this member's). Bounded: gives up after ten minutes.
fn spawn_rejoin(raft: openraft::Raft<TypeConfig>, identity: Arc<Identity>, cluster: Arc<Cluster>) {
    let (me, address, http_address) = (cluster.me(), cluster.own().cluster.clone(), cluster.own().http.clone());
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let m = raft.metrics().borrow().clone();
            if m.running_state.is_err() {
                return;
            }
            let membership = m.membership_config.membership();
            let mine = membership.nodes().find(|(n, _)| **n == me).map(|(_, n)| (n.addr.clone(), n.http.clone()));
            if mine.is_some_and(|(a, h)| a == address && h == http_address) {
                return;
            }
            // Leading already (elected by members it can reach, which cannot reach it back):
            // no one else can record the move, so record it here.
            if m.current_leader == Some(me) {
                match super::membership::record_move(&raft, me, me, address.clone(), Some(http_address.clone())).await {
                    Ok(_) => tracing::info!(node = me, %address, "recorded this member's new address as leader"),
                    Err(e) => tracing::debug!(node = me, error = %e, "recording this member's address failed"),
                }
                continue;
            }
            // The leader cannot reach us at our old address, so we may not know who leads: ask
            // everyone; only the leader accepts.
            let targets: Vec<(NodeId, String)> = match m.current_leader.filter(|l| *l != me) {
                Some(l) => {
                    membership.nodes().filter(|(n, _)| **n == l).map(|(n, node)| (*n, node.addr.clone())).collect()
                }
                None => {
                    membership.nodes().filter(|(n, _)| **n != me).map(|(n, node)| (*n, node.addr.clone())).collect()
                }
            };
            for (id, target) in targets {
                let Ok(channel) = cluster.channel(id, &target) else { continue };
                let mut req = identity.stamped(registry_proto::cluster::RejoinRequest {
                    address: address.clone(),
                    http_address: http_address.clone(),
                });
                req.set_timeout(Duration::from_secs(5));
                match cluster_client(channel).rejoin(req).await {
                    Ok(_) => tracing::info!(node = me, %address, leader = %target, "announced this member's address"),
                    Err(status) => tracing::debug!(node = me, %status, "rejoin announcement not accepted"),
                }
            }
        }
    });
}
