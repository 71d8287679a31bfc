//! Step 5 of the pipeline: the status the operator reports, computed from what was applied
//! ([`Applied`]), what the registry said and what the membership step did, then written to the
//! status subresource by server-side apply.
//!
//! Computing is pure ([`applied_status`], [`blocked_status`]); conditions go through the
//! [`ConditionBuilder`], so a condition's `lastTransitionTime` moves only when its status
//! does. An unchanged status is not written at all: a no-op reconcile makes no status request.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use snafu::{ResultExt, Snafu};

use super::apply::Applied;
use super::build::MANAGER;
use super::membership::quorum;
use super::registry::RaftView;
use crate::crd::{
    ClusterPhase, ConditionBuilder,
    ConditionStatus::{False, True},
    MemberStatus, NacosCluster, NacosClusterStatus,
};

/// What the membership step of this reconcile did, for the conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipReport {
    /// Nothing to do: Raft members match the spec.
    Settled,
    /// A change was made (or is under way).
    Changing {
        /// CamelCase reason (`AddingMember`, `PromotingMember`, `RemovingMember`).
        reason: &'static str,
        /// What, for humans.
        message: String,
    },
    /// Nothing could be done yet (no registry answer, no leader, a learner still catching up).
    Waiting {
        /// CamelCase reason.
        reason: &'static str,
        /// Why, for humans.
        message: String,
    },
    /// The step was refused, by the operator's quorum check or by the registry.
    Refused {
        /// CamelCase reason.
        reason: &'static str,
        /// Why, for humans.
        message: String,
    },
}

/// A finding to surface as `Degraded=True` while the cluster is otherwise reconciled (spec
/// warnings such as an even member count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// CamelCase reason.
    pub reason: &'static str,
    /// Message.
    pub message: String,
}

/// Everything the status of a reconciled cluster is computed from.
#[derive(Debug, Clone)]
pub struct Observations<'a> {
    /// Members asked for.
    pub desired: i32,
    /// Name of the cluster (pods are `<name>-<ordinal>`).
    pub name: &'a str,
    /// `metadata.generation` reconciled.
    pub generation: Option<i64>,
    /// The Raft view, if a member answered.
    pub view: Option<&'a RaftView>,
    /// What the membership step did.
    pub membership: MembershipReport,
    /// Spec warnings.
    pub findings: Vec<Finding>,
}

/// Why the status could not be written.
#[derive(Debug, Snafu)]
pub enum Error {
    /// The status patch failed.
    #[snafu(display("cannot update the status of NacosCluster {name}"))]
    PatchStatus {
        /// The cluster.
        name: String,
        /// Cause.
        source: kube::Error,
    },
}

/// Status of a cluster whose objects were applied.
pub fn applied_status(
    previous: &NacosClusterStatus,
    applied: &Applied,
    observed: &Observations<'_>,
    now: &Time,
) -> NacosClusterStatus {
    let (replicas, ready, updated) = counts(applied.stateful_set());
    let desired = observed.desired;
    let voters = observed.view.map_or(0, |v| v.members.iter().filter(|m| m.is_voter()).count());
    let leader = observed.view.and_then(|v| v.leader);
    let creating = never_came_up(previous);
    let (available, reason, message) = match leader {
        Some(id) if i64::from(ready) >= quorum(voters as u64) as i64 && voters > 0 => (
            true,
            "QuorumReady",
            format!("{ready}/{replicas} members ready, {voters} voters, leader {}", pod(observed.name, id)),
        ),
        Some(_) => (
            false,
            "WaitingForQuorum",
            format!("{ready}/{replicas} members ready, {voters} voters: fewer than a quorum is ready"),
        ),
        None if observed.view.is_some() => (false, "NoLeader", "the registry reports no leader".to_owned()),
        None => (false, "RegistryUnreachable", format!("0 of {replicas} members answered")),
    };
    let mut conditions =
        ConditionBuilder::new().available(if available { True } else { False }, reason, message.clone());
    // Among equally bad `Degraded` reports the first wins: a refused step, then the spec's
    // warnings (the user's to fix, e.g. `EvenReplicas`), then a lost quorum (which `Available`
    // names as well).
    let mut degraded = false;
    if let MembershipReport::Refused { reason, message } = &observed.membership {
        degraded = true;
        conditions = conditions.degraded(True, *reason, message.clone());
    }
    for finding in &observed.findings {
        degraded = true;
        conditions = conditions.degraded(True, finding.reason, finding.message.clone());
    }
    // A cluster that was up and lost its quorum (or leader) needs attention; a new one is
    // merely not up yet.
    if !available && !creating {
        degraded = true;
        conditions = conditions.degraded(True, reason, message);
    }

    conditions = match &observed.membership {
        MembershipReport::Changing { reason, message } | MembershipReport::Waiting { reason, message } => {
            conditions.progressing(True, *reason, message.clone())
        }
        MembershipReport::Refused { reason, message } => conditions.progressing(True, *reason, message.clone()),
        MembershipReport::Settled if replicas != desired || ready != desired || updated != desired => {
            conditions.progressing(True, "RollingOut", format!("{ready}/{desired} members ready, {updated} up to date"))
        }
        MembershipReport::Settled => {
            conditions.progressing(False, "Settled", format!("{desired} members, all voters and ready"))
        }
    };
    if !degraded {
        conditions = conditions.degraded(False, "Healthy", "nothing needs attention");
    }
    let conditions = conditions.build(&previous.conditions, now);

    let phase = if creating && !(available && matches!(observed.membership, MembershipReport::Settled)) {
        // A new cluster is Creating until it first settles with a quorum, whatever is refused
        // meanwhile (the conditions say what): the phase remembers that it never came up.
        ClusterPhase::Creating
    } else if matches!(observed.membership, MembershipReport::Refused { .. }) {
        ClusterPhase::Degraded
    } else if matches!(observed.membership, MembershipReport::Changing { .. }) || replicas != desired {
        ClusterPhase::Scaling
    } else if available {
        ClusterPhase::Running
    } else {
        ClusterPhase::Degraded
    };

    NacosClusterStatus {
        phase: Some(phase),
        replicas,
        ready_replicas: ready,
        members: observed.view.map_or_else(
            || previous.members.clone(),
            |v| {
                v.members
                    .iter()
                    .map(|m| MemberStatus {
                        node_id: m.id,
                        address: m.address.clone(),
                        role: m.role,
                        pod: Some(pod(observed.name, m.id)),
                    })
                    .collect()
            },
        ),
        leader: match observed.view {
            Some(_) => leader.map(|id| pod(observed.name, id)),
            None => previous.leader.clone(),
        },
        conditions,
        observed_generation: observed.generation,
    }
}

/// Whether the cluster has never settled with a quorum: its phase is still `Pending` (nothing
/// applied yet) or `Creating`. Neither [`blocked_status`] nor a refused step changes that, so a
/// cluster that never came up reports the same conditions after a problem is fixed as before.
fn never_came_up(status: &NacosClusterStatus) -> bool {
    matches!(status.phase, None | Some(ClusterPhase::Pending | ClusterPhase::Creating))
}

/// Status of a cluster that was not reconciled because of `reason` (an invalid spec, a missing
/// Secret, a refused apply): `Degraded=True`, `Progressing=False`, `Available` and members as
/// last seen. The phase is `Degraded` for a cluster that had come up; one that never did stays
/// `Pending` (nothing applied yet) or `Creating`.
pub fn blocked_status(
    previous: &NacosClusterStatus,
    stateful_set: Option<&StatefulSet>,
    generation: Option<i64>,
    reason: &str,
    message: &str,
    now: &Time,
) -> NacosClusterStatus {
    let (replicas, ready, _) = stateful_set.map_or((0, 0, 0), counts);
    let conditions = ConditionBuilder::new()
        .degraded(True, reason, message)
        .progressing(False, reason, "the operator cannot proceed until this is fixed")
        .build(&previous.conditions, now);
    let phase =
        if never_came_up(previous) { previous.phase.unwrap_or(ClusterPhase::Pending) } else { ClusterPhase::Degraded };
    NacosClusterStatus {
        phase: Some(phase),
        replicas,
        ready_replicas: ready,
        conditions,
        observed_generation: generation,
        ..previous.clone()
    }
}

/// Writes `status` unless it equals the cluster's current status.
pub async fn patch_status(client: &Client, cluster: &NacosCluster, status: NacosClusterStatus) -> Result<(), Error> {
    if cluster.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<NacosCluster> = Api::namespaced(client.clone(), &cluster.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": "nacos.rs/v1alpha1",
        "kind": "NacosCluster",
        "status": status,
    });
    let name = cluster.name_any();
    api.patch_status(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(patch))
        .await
        .context(PatchStatusSnafu { name })?;
    Ok(())
}

/// `(replicas, readyReplicas, updatedReplicas)` of the StatefulSet's status.
fn counts(stateful_set: &StatefulSet) -> (i32, i32, i32) {
    stateful_set
        .status
        .as_ref()
        .map_or((0, 0, 0), |s| (s.replicas, s.ready_replicas.unwrap_or(0), s.updated_replicas.unwrap_or(0)))
}

/// Pod name of member `node_id`.
fn pod(name: &str, node_id: u64) -> String {
    format!("{name}-{}", node_id.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::StatefulSetStatus;
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::controller::registry::RaftMember;
    use crate::crd::{ConditionStatus, ConditionType, MemberRole};

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).unwrap())
    }

    fn applied(replicas: i32, ready: i32, updated: i32) -> Applied {
        Applied::for_tests(StatefulSet {
            status: Some(StatefulSetStatus {
                replicas,
                ready_replicas: Some(ready),
                updated_replicas: Some(updated),
                ..StatefulSetStatus::default()
            }),
            ..StatefulSet::default()
        })
    }

    fn view(voters: u64) -> RaftView {
        let members = (1..=voters)
            .map(|id| RaftMember {
                id,
                address: format!("m{id}"),
                role: if id == 2 { MemberRole::Leader } else { MemberRole::Follower },
            })
            .collect();
        RaftView { leader: Some(2), members }
    }

    fn observations<'a>(view: Option<&'a RaftView>, membership: MembershipReport) -> Observations<'a> {
        Observations { desired: 3, name: "nacos", generation: Some(4), view, membership, findings: Vec::new() }
    }

    fn get(status: &NacosClusterStatus, type_: ConditionType) -> (ConditionStatus, &str) {
        let c = status.conditions.iter().find(|c| c.type_ == type_).unwrap();
        (c.status, c.reason.as_str())
    }

    fn running() -> NacosClusterStatus {
        NacosClusterStatus { phase: Some(ClusterPhase::Running), ..NacosClusterStatus::default() }
    }

    #[test]
    fn a_rollout_with_a_ready_quorum_is_available_and_progressing() {
        let v = view(3);
        let status =
            applied_status(&running(), &applied(3, 2, 1), &observations(Some(&v), MembershipReport::Settled), &at(1));
        assert_eq!(get(&status, ConditionType::Available), (ConditionStatus::True, "QuorumReady"));
        assert_eq!(get(&status, ConditionType::Progressing), (ConditionStatus::True, "RollingOut"));
        assert_eq!(status.phase, Some(ClusterPhase::Running));
        assert_eq!((status.leader.as_deref(), status.observed_generation), (Some("nacos-1"), Some(4)));
        assert_eq!(status.members[1].pod.as_deref(), Some("nacos-1"));
    }

    #[test]
    fn fewer_ready_than_a_quorum_makes_a_running_cluster_unavailable_and_degraded() {
        let v = view(3);
        let status =
            applied_status(&running(), &applied(3, 1, 3), &observations(Some(&v), MembershipReport::Settled), &at(1));
        assert_eq!(get(&status, ConditionType::Available), (ConditionStatus::False, "WaitingForQuorum"));
        assert_eq!(get(&status, ConditionType::Degraded), (ConditionStatus::True, "WaitingForQuorum"));
        assert_eq!(status.phase, Some(ClusterPhase::Degraded));
    }

    #[test]
    fn without_a_view_the_last_members_and_leader_are_kept() {
        let v = view(3);
        let before =
            applied_status(&running(), &applied(3, 3, 3), &observations(Some(&v), MembershipReport::Settled), &at(1));
        let waiting = MembershipReport::Waiting { reason: "WaitingForRegistry", message: String::new() };
        let after = applied_status(&before, &applied(3, 3, 3), &observations(None, waiting), &at(2));
        assert_eq!((after.members.clone(), after.leader.clone()), (before.members.clone(), before.leader.clone()));
        assert_eq!(get(&after, ConditionType::Available), (ConditionStatus::False, "RegistryUnreachable"));
        assert_eq!(get(&after, ConditionType::Progressing), (ConditionStatus::True, "WaitingForRegistry"));
    }

    fn degraded(status: &NacosClusterStatus) -> (ConditionStatus, &str) {
        get(status, ConditionType::Degraded)
    }

    fn even_replicas() -> Finding {
        Finding { reason: "EvenReplicas", message: "4 members tolerate no more failures than 3".into() }
    }

    #[test]
    fn even_replicas_name_the_degraded_condition_of_a_new_and_of_a_running_cluster() {
        let waiting = || MembershipReport::Waiting { reason: "WaitingForRegistry", message: String::new() };
        let new = NacosClusterStatus::default();
        for previous in [new, running()] {
            let observed =
                Observations { desired: 4, findings: vec![even_replicas()], ..observations(None, waiting()) };
            let status = applied_status(&previous, &applied(4, 0, 4), &observed, &at(1));
            assert_eq!(degraded(&status), (ConditionStatus::True, "EvenReplicas"), "after {:?}", previous.phase);
            assert_eq!(get(&status, ConditionType::Available), (ConditionStatus::False, "RegistryUnreachable"));
        }
    }

    #[test]
    fn a_never_available_cluster_reports_the_same_after_an_invalid_spec_is_fixed() {
        let waiting = || MembershipReport::Waiting { reason: "WaitingForRegistry", message: "no answer".into() };
        for first in [
            NacosClusterStatus::default(),
            applied_status(&NacosClusterStatus::default(), &applied(3, 0, 3), &observations(None, waiting()), &at(1)),
        ] {
            let invalid = blocked_status(&first, None, Some(5), "InvalidReplicas", "spec.replicas is 0", &at(2));
            assert_eq!(degraded(&invalid), (ConditionStatus::True, "InvalidReplicas"));
            let fixed = applied_status(&invalid, &applied(3, 0, 3), &observations(None, waiting()), &at(3));
            let before = applied_status(&first, &applied(3, 0, 3), &observations(None, waiting()), &at(3));
            assert_eq!(degraded(&fixed), (ConditionStatus::False, "Healthy"));
            assert_eq!(degraded(&fixed), degraded(&before));
            assert_eq!(get(&fixed, ConditionType::Available), get(&before, ConditionType::Available));
            assert_eq!((fixed.phase, before.phase), (Some(ClusterPhase::Creating), Some(ClusterPhase::Creating)));
        }
    }

    #[test]
    fn an_invalid_spec_of_a_new_cluster_is_pending_and_of_a_running_one_degraded() {
        let new = blocked_status(&NacosClusterStatus::default(), None, Some(1), "InvalidReplicas", "0", &at(1));
        assert_eq!(new.phase, Some(ClusterPhase::Pending));
        let was_running = blocked_status(&running(), None, Some(2), "InvalidReplicas", "0", &at(1));
        assert_eq!(was_running.phase, Some(ClusterPhase::Degraded));
    }

    #[test]
    fn a_blocked_cluster_keeps_members_and_availability_as_last_seen() {
        let v = view(3);
        let before =
            applied_status(&running(), &applied(3, 3, 3), &observations(Some(&v), MembershipReport::Settled), &at(1));
        let blocked = blocked_status(&before, None, Some(5), "InvalidReplicas", "spec.replicas is 0", &at(2));
        assert_eq!(get(&blocked, ConditionType::Available), get(&before, ConditionType::Available));
        assert_eq!(get(&blocked, ConditionType::Degraded), (ConditionStatus::True, "InvalidReplicas"));
        assert_eq!((blocked.members, blocked.leader), (before.members, before.leader));
        assert_eq!((blocked.phase, blocked.observed_generation), (Some(ClusterPhase::Degraded), Some(5)));
    }
}
