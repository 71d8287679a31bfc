//! Membership on scale: the pure decision of what to do next, given the replicas asked for, the
//! StatefulSet as it is and the Raft members the registry reports.
//!
//! Rules (one membership change per reconcile; the controller requeues after each):
//! - Member `k` is pod ordinal `k - 1`. Member 1 bootstraps a single-voter group on first
//!   start; every other member, on creation too, is added by the operator.
//! - Scale down first removes members from Raft, highest id first, one at a time, and only then
//!   lets the StatefulSet drop their pods: the StatefulSet keeps at least as many replicas as
//!   the highest member still in Raft.
//! - Scale up grows the StatefulSet first, then adds each missing member as a learner and
//!   promotes learners once they caught up (the registry refuses while they lag).
//! - A voter is removed only while the voters that remain have a ready quorum (counted
//!   pessimistically: the removed member might be one of the ready pods); otherwise the step
//!   is refused with a reason, and the registry double-checks reachability itself.
//! - Without a Raft view (members not up yet) or a leader, nothing changes in Raft and the
//!   StatefulSet never shrinks.

use super::registry::RaftView;

/// What the controller knows when it decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed<'a> {
    /// Members asked for (`spec.replicas`, at least 1).
    pub desired: u64,
    /// `spec.replicas` of the existing StatefulSet, `None` before it exists.
    pub statefulset_replicas: Option<u64>,
    /// Ready pods of the StatefulSet.
    pub ready_replicas: u64,
    /// The Raft view of a reachable member, `None` when no member answered.
    pub view: Option<&'a RaftView>,
}

/// The decision: replicas for the StatefulSet and the one membership step to take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `spec.replicas` to apply to the StatefulSet.
    pub statefulset_replicas: u64,
    /// The next membership step.
    pub step: Step,
}

/// One membership step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Raft members are exactly `1..=desired`, all voters.
    Settled,
    /// Add member `node_id` as a learner.
    AddLearner {
        /// The new member.
        node_id: u64,
    },
    /// Promote learner `node_id` to voter.
    Promote {
        /// The learner.
        node_id: u64,
    },
    /// Remove member `node_id` from Raft.
    Remove {
        /// The member going away.
        node_id: u64,
    },
    /// Nothing can be done yet; try again shortly.
    Wait {
        /// CamelCase reason for the `Progressing` condition.
        reason: &'static str,
        /// Why, for humans.
        message: String,
    },
    /// The next step would put quorum at risk; it is refused until the cluster is healthier.
    Refuse {
        /// CamelCase reason for the `Degraded` and `Progressing` conditions.
        reason: &'static str,
        /// Why, for humans.
        message: String,
    },
}

/// Members needed for a quorum of `voters`.
pub fn quorum(voters: u64) -> u64 {
    voters / 2 + 1
}

/// Decides the StatefulSet's replicas and the next membership step.
pub fn decide(observed: &Observed<'_>) -> Plan {
    let desired = observed.desired.max(1);
    let current = observed.statefulset_replicas.unwrap_or(desired);
    let Some(view) = observed.view else {
        // Without a view nobody can say which members are still in Raft: never shrink.
        return Plan {
            statefulset_replicas: desired.max(current),
            step: Step::Wait {
                reason: "WaitingForRegistry",
                message: "no registry member answered yet; membership changes wait for one".into(),
            },
        };
    };
    let highest = view.members.iter().map(|m| m.id).max().unwrap_or(0);
    // Keep the pods of members still in Raft; `min(current)` ignores ids the StatefulSet never ran.
    let statefulset_replicas = desired.max(highest.min(current));
    let step = next_step(desired, observed.ready_replicas, view);
    Plan { statefulset_replicas, step }
}

fn next_step(desired: u64, ready: u64, view: &RaftView) -> Step {
    if view.leader.is_none() {
        return Step::Wait {
            reason: "WaitingForLeader",
            message: "the registry reports no Raft leader; membership changes wait for an election".into(),
        };
    }
    // Scale down first, highest id first.
    if let Some(member) = view.members.iter().filter(|m| m.id > desired).max_by_key(|m| m.id) {
        if !member.is_voter() {
            return Step::Remove { node_id: member.id };
        }
        let voters = view.members.iter().filter(|m| m.is_voter()).count() as u64;
        let remaining = voters.saturating_sub(1);
        let ready_remaining = ready.saturating_sub(1);
        if remaining == 0 || ready_remaining < quorum(remaining) {
            return Step::Refuse {
                reason: "ScaleDownWouldLoseQuorum",
                message: format!(
                    "removing member {} would leave {remaining} voters of which possibly only {ready_remaining} are \
                     ready, fewer than their quorum of {}; waiting for more members to be ready",
                    member.id,
                    quorum(remaining)
                ),
            };
        }
        return Step::Remove { node_id: member.id };
    }
    // Scale up (and initial creation): add every missing member, then promote learners.
    if let Some(node_id) = (1..=desired).find(|id| !view.members.iter().any(|m| m.id == *id)) {
        return Step::AddLearner { node_id };
    }
    if let Some(member) = view.members.iter().find(|m| !m.is_voter()) {
        return Step::Promote { node_id: member.id };
    }
    Step::Settled
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::registry::RaftMember;
    use crate::crd::MemberRole::{self, Follower, Leader, Learner};

    fn view(leader: Option<u64>, members: &[(u64, MemberRole)]) -> RaftView {
        RaftView {
            leader,
            members: members
                .iter()
                .map(|(id, role)| RaftMember { id: *id, address: format!("m{id}"), role: *role })
                .collect(),
        }
    }

    fn decide_with(desired: u64, sts: Option<u64>, ready: u64, view: Option<&RaftView>) -> Plan {
        decide(&Observed { desired, statefulset_replicas: sts, ready_replicas: ready, view })
    }

    #[test]
    fn creation_without_a_view_creates_every_pod_and_waits() {
        let plan = decide_with(3, None, 0, None);
        assert_eq!(plan.statefulset_replicas, 3);
        assert!(matches!(plan.step, Step::Wait { reason: "WaitingForRegistry", .. }));
    }

    #[test]
    fn creation_adds_the_other_members_as_learners_then_promotes_them() {
        let v = view(Some(1), &[(1, Leader)]);
        assert_eq!(decide_with(3, Some(3), 1, Some(&v)).step, Step::AddLearner { node_id: 2 });
        let v = view(Some(1), &[(1, Leader), (2, Learner)]);
        assert_eq!(decide_with(3, Some(3), 2, Some(&v)).step, Step::AddLearner { node_id: 3 });
        let v = view(Some(1), &[(1, Leader), (2, Learner), (3, Learner)]);
        assert_eq!(decide_with(3, Some(3), 3, Some(&v)).step, Step::Promote { node_id: 2 });
        let v = view(Some(1), &[(1, Leader), (2, Follower), (3, Learner)]);
        assert_eq!(decide_with(3, Some(3), 3, Some(&v)).step, Step::Promote { node_id: 3 });
        let v = view(Some(1), &[(1, Leader), (2, Follower), (3, Follower)]);
        assert_eq!(decide_with(3, Some(3), 3, Some(&v)), Plan { statefulset_replicas: 3, step: Step::Settled });
    }

    #[test]
    fn scale_up_grows_the_statefulset_before_adding_members() {
        let v = view(Some(1), &[(1, Leader), (2, Follower), (3, Follower)]);
        let plan = decide_with(5, Some(3), 3, Some(&v));
        assert_eq!(plan, Plan { statefulset_replicas: 5, step: Step::AddLearner { node_id: 4 } });
    }

    #[test]
    fn scale_down_removes_the_highest_member_before_the_statefulset_shrinks() {
        let five = [(1, Leader), (2, Follower), (3, Follower), (4, Follower), (5, Follower)];
        let plan = decide_with(3, Some(5), 5, Some(&view(Some(1), &five)));
        assert_eq!(plan, Plan { statefulset_replicas: 5, step: Step::Remove { node_id: 5 } });
        // Member 5 is gone from Raft: its pod may go, then member 4 is removed.
        let plan = decide_with(3, Some(5), 5, Some(&view(Some(1), &five[..4])));
        assert_eq!(plan, Plan { statefulset_replicas: 4, step: Step::Remove { node_id: 4 } });
        let plan = decide_with(3, Some(4), 4, Some(&view(Some(1), &five[..3])));
        assert_eq!(plan, Plan { statefulset_replicas: 3, step: Step::Settled });
    }

    #[test]
    fn scale_down_may_remove_the_leader() {
        let v = view(Some(3), &[(1, Follower), (2, Follower), (3, Leader)]);
        assert_eq!(decide_with(2, Some(3), 3, Some(&v)).step, Step::Remove { node_id: 3 });
    }

    #[test]
    fn scale_down_is_refused_when_the_remaining_voters_may_lack_a_ready_quorum() {
        let five = view(Some(1), &[(1, Leader), (2, Follower), (3, Follower), (4, Follower), (5, Follower)]);
        // 4 voters would remain (quorum 3); with 3 ready pods, possibly only 2 of them are ready.
        let plan = decide_with(3, Some(5), 3, Some(&five));
        assert_eq!(plan.statefulset_replicas, 5);
        assert!(matches!(plan.step, Step::Refuse { reason: "ScaleDownWouldLoseQuorum", .. }), "{plan:?}");
        // With 4 ready, at least 3 of the remaining 4 are ready.
        assert_eq!(decide_with(3, Some(5), 4, Some(&five)).step, Step::Remove { node_id: 5 });
    }

    #[test]
    fn a_learner_above_the_desired_count_is_removed_without_a_quorum_check() {
        let v = view(Some(1), &[(1, Leader), (2, Follower), (3, Follower), (4, Learner)]);
        assert_eq!(decide_with(3, Some(4), 0, Some(&v)).step, Step::Remove { node_id: 4 });
    }

    #[test]
    fn without_a_view_or_a_leader_the_statefulset_never_shrinks() {
        let plan = decide_with(3, Some(5), 5, None);
        assert_eq!(plan.statefulset_replicas, 5);
        let v = view(None, &[(1, Follower), (2, Follower), (3, Follower), (4, Follower), (5, Follower)]);
        let plan = decide_with(3, Some(5), 5, Some(&v));
        assert_eq!(plan.statefulset_replicas, 5);
        assert!(matches!(plan.step, Step::Wait { reason: "WaitingForLeader", .. }));
    }

    #[test]
    fn unknown_high_ids_do_not_grow_the_statefulset() {
        let v = view(Some(1), &[(1, Leader), (2, Follower), (3, Follower), (9, Learner)]);
        let plan = decide_with(3, Some(3), 3, Some(&v));
        assert_eq!(plan, Plan { statefulset_replicas: 3, step: Step::Remove { node_id: 9 } });
    }

    #[test]
    fn quorum_is_a_strict_majority() {
        assert_eq!([1, 2, 3, 4, 5].map(quorum), [1, 2, 2, 3, 3]);
    }
}
