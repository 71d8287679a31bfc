//! The IO around [`membership::decide`](super::membership::decide): read the Raft view from a
//! member, and carry out the one membership step the plan names, on the leader.

use super::membership::Step;
use super::registry::{self, Caller, RaftView, RegistryAdmin, member_address};
use super::update_status::MembershipReport;
use super::validate::ValidatedCluster;

/// The Raft view of the cluster, asked of members `1..=members` in order until one answers; a
/// member that names another leader is checked against that leader's own view (a partitioned
/// member's view may be stale). `None` when nobody answers. Every call is made as `caller`.
pub async fn observe(
    registry: &dyn RegistryAdmin,
    caller: Caller<'_>,
    cluster: &ValidatedCluster,
    members: u64,
) -> Option<RaftView> {
    for id in 1..=members {
        let address = member_address(cluster, id);
        match registry.raft_view(caller, &address).await {
            Ok(view) => {
                if let Some(leader) = view.leader.filter(|leader| *leader != id)
                    && let Ok(leader_view) = registry.raft_view(caller, &member_address(cluster, leader)).await
                {
                    return Some(leader_view);
                }
                return Some(view);
            }
            Err(error) => tracing::debug!(cluster = %cluster.name, member = id, %error, "no Raft view"),
        }
    }
    None
}

/// Carries out `step` against the leader named in `view`, as `caller`.
pub async fn execute(
    registry: &dyn RegistryAdmin,
    caller: Caller<'_>,
    cluster: &ValidatedCluster,
    view: Option<&RaftView>,
    step: &Step,
) -> MembershipReport {
    let (node_id, change) = match step {
        Step::Settled => return MembershipReport::Settled,
        Step::Wait { reason, message } => return MembershipReport::Waiting { reason, message: message.clone() },
        Step::Refuse { reason, message } => return MembershipReport::Refused { reason, message: message.clone() },
        Step::AddLearner { node_id } => (*node_id, Change::Add),
        Step::Promote { node_id } => (*node_id, Change::Promote),
        Step::Remove { node_id } => (*node_id, Change::Remove),
    };
    // `decide` only plans a change with a view that names a leader.
    let Some(mut leader) = view.and_then(|v| v.leader) else {
        return MembershipReport::Waiting { reason: "WaitingForLeader", message: "no Raft leader known".into() };
    };
    // One retry: the leader may have changed since the view was read.
    let mut result = send(registry, caller, cluster, leader, node_id, change).await;
    if let Err(registry::Error::NotLeader { leader_id: Some(new_leader), .. }) = &result {
        leader = *new_leader;
        result = send(registry, caller, cluster, leader, node_id, change).await;
    }
    match (result, change) {
        (Ok(()), Change::Add) => MembershipReport::Changing {
            reason: "AddingMember",
            message: format!("member {node_id} added as a learner; it is promoted once it caught up"),
        },
        (Ok(()), Change::Promote) => MembershipReport::Changing {
            reason: "PromotingMember",
            message: format!("member {node_id} promoted to voter"),
        },
        (Ok(()), Change::Remove) => MembershipReport::Changing {
            reason: "RemovingMember",
            message: format!("member {node_id} removed from Raft; its pod goes next"),
        },
        (Err(registry::Error::Refused { message, .. }), Change::Promote) => MembershipReport::Waiting {
            reason: "LearnerCatchingUp",
            message: format!("member {node_id} is not promoted yet: {message}"),
        },
        (Err(registry::Error::Refused { message, .. }), Change::Remove) => MembershipReport::Refused {
            reason: "RemovalRefused",
            message: format!("the registry refused to remove member {node_id}: {message}"),
        },
        (Err(error), _) => MembershipReport::Waiting {
            reason: "RegistryUnavailable",
            message: format!("cannot {} member {node_id} yet: {error}", change.verb()),
        },
    }
}

/// A membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Add,
    Promote,
    Remove,
}

impl Change {
    fn verb(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Promote => "promote",
            Self::Remove => "remove",
        }
    }
}

async fn send(
    registry: &dyn RegistryAdmin,
    caller: Caller<'_>,
    cluster: &ValidatedCluster,
    leader: u64,
    node_id: u64,
    change: Change,
) -> Result<(), registry::Error> {
    let leader = member_address(cluster, leader);
    match change {
        Change::Add => registry.add_learner(caller, &leader, node_id, &member_address(cluster, node_id)).await,
        Change::Promote => registry.promote(caller, &leader, node_id).await,
        Change::Remove => registry.remove(caller, &leader, node_id).await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures_util::future::BoxFuture;

    use super::*;
    use crate::controller::registry::{Caller, Error, RaftMember};
    use crate::crd::MemberRole;
    use crate::fixtures;

    /// Node 3 (pod `nacos-2`) leads: a change sent to another member is redirected with the
    /// leader's id, as a registry follower answers. Promotions are refused as lagging.
    #[derive(Default)]
    struct Redirecting {
        calls: Mutex<Vec<String>>,
    }

    impl Redirecting {
        fn call(&self, call: String) {
            self.calls.lock().unwrap().push(call);
        }
    }

    impl RegistryAdmin for Redirecting {
        fn raft_view<'a>(&'a self, _: Caller<'a>, member: &'a str) -> BoxFuture<'a, Result<RaftView, Error>> {
            self.call(format!("view {}", &member[..7]));
            let view = RaftView {
                leader: Some(3),
                members: vec![RaftMember { id: 3, address: "c".into(), role: MemberRole::Leader }],
            };
            Box::pin(async move { Ok(view) })
        }

        fn add_learner<'a>(
            &'a self,
            _: Caller<'a>,
            leader: &'a str,
            node_id: u64,
            _: &'a str,
        ) -> BoxFuture<'a, Result<(), Error>> {
            self.call(format!("add {node_id} at {}", &leader[..7]));
            let result = if leader.starts_with("nacos-2.") {
                Ok(())
            } else {
                Err(Error::NotLeader { address: leader.to_owned(), leader_id: Some(3) })
            };
            Box::pin(async move { result })
        }

        fn promote<'a>(&'a self, _: Caller<'a>, leader: &'a str, node_id: u64) -> BoxFuture<'a, Result<(), Error>> {
            self.call(format!("promote {node_id} at {}", &leader[..7]));
            let message = format!("node {node_id} is 500 entries behind");
            Box::pin(async move { Err(Error::Refused { address: String::new(), message }) })
        }

        fn remove<'a>(&'a self, _: Caller<'a>, _: &'a str, _: u64) -> BoxFuture<'a, Result<(), Error>> {
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn a_member_that_names_another_leader_is_checked_against_the_leader() {
        let registry = Redirecting::default();
        let cluster = fixtures::validated(fixtures::DEFAULTS);
        let view = observe(&registry, Caller::default(), &cluster, 3).await.unwrap();
        assert_eq!(view.leader, Some(3));
        assert_eq!(*registry.calls.lock().unwrap(), ["view nacos-0", "view nacos-2"]);
    }

    #[tokio::test]
    async fn a_change_sent_to_a_former_leader_is_retried_once_at_the_named_leader() {
        let registry = Redirecting::default();
        let cluster = fixtures::validated(fixtures::DEFAULTS);
        let stale = RaftView { leader: Some(1), members: Vec::new() };
        let report =
            execute(&registry, Caller::default(), &cluster, Some(&stale), &Step::AddLearner { node_id: 4 }).await;
        assert!(matches!(report, MembershipReport::Changing { reason: "AddingMember", .. }), "{report:?}");
        assert_eq!(*registry.calls.lock().unwrap(), ["add 4 at nacos-0", "add 4 at nacos-2"]);
    }

    #[tokio::test]
    async fn a_lagging_learner_is_waited_for_not_reported_as_a_failure() {
        let registry = Redirecting::default();
        let cluster = fixtures::validated(fixtures::DEFAULTS);
        let view = RaftView { leader: Some(3), members: Vec::new() };
        let report = execute(&registry, Caller::default(), &cluster, Some(&view), &Step::Promote { node_id: 4 }).await;
        match report {
            MembershipReport::Waiting { reason, message } => {
                assert_eq!(reason, "LearnerCatchingUp");
                assert!(message.contains("500 entries behind"), "{message}");
            }
            other => panic!("expected to wait, got {other:?}"),
        }
    }
}
