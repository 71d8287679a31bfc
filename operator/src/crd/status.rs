//! What the operator reports about a `NacosCluster`: phase, replica counts, Raft members and
//! leader, and the conditions `Available`, `Progressing` and `Degraded`.
//!
//! [`ConditionBuilder`] gathers what each source (the StatefulSet, the registry's membership
//! API, validation) says about each condition type and merges it with the previous status so a
//! condition's `lastTransitionTime` moves only when its `status` changes. A reason or message
//! may change without a transition. Pure: the caller passes the clock.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a `NacosCluster`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NacosClusterStatus {
    /// Lifecycle phase, a summary of the conditions for humans: `Pending`, `Creating`, `Running`,
    /// `Scaling` or `Degraded`. Automation should read the conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ClusterPhase>,

    /// Members the StatefulSet currently runs.
    #[serde(default)]
    pub replicas: i32,

    /// Members whose readiness probe passes (caught up with the leader).
    #[serde(default)]
    pub ready_replicas: i32,

    /// Raft members as the registry reports them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,

    /// Pod name of the current Raft leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,

    /// `Available`, `Progressing` and `Degraded`, each with a reason, a message and the time its
    /// status last changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<ClusterCondition>,

    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Lifecycle phase: `Pending`, `Creating`, `Running`, `Scaling` or `Degraded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ClusterPhase {
    // Variants carry no `///`: documented variants turn the schema into a `oneOf`.
    Pending,
    Creating,
    Running,
    Scaling,
    Degraded,
}

/// One Raft member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Stable member id: the StatefulSet ordinal + 1.
    pub node_id: u64,

    /// Address members reach it at (`<pod>.<headless service>:<cluster port>`).
    pub address: String,

    /// Raft role: `Leader`, `Follower`, `Candidate` or `Learner`.
    pub role: MemberRole,

    /// Pod running the member, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

/// Raft role of a member: `Leader`, `Follower`, `Candidate` or `Learner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MemberRole {
    // Variants carry no `///`: documented variants turn the schema into a `oneOf`.
    Leader,
    Follower,
    Candidate,
    Learner,
}

/// A condition of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterCondition {
    /// `Available`, `Progressing` or `Degraded`.
    #[serde(rename = "type")]
    pub type_: ConditionType,

    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,

    /// Machine-readable CamelCase reason for the status.
    pub reason: String,

    /// Human-readable details.
    pub message: String,

    /// When `status` last changed.
    pub last_transition_time: Time,
}

/// Kind of condition. `Available`: clients can be served (a quorum of members is ready).
/// `Progressing`: the operator is moving the cluster towards its spec (creating, scaling,
/// rolling out). `Degraded`: something needs attention (invalid spec, lost members, failing
/// steps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ConditionType {
    // Variants carry no `///`: documented variants turn the schema into a `oneOf`.
    Available,
    Progressing,
    Degraded,
}

impl ConditionType {
    /// Every type, in the order the status lists them.
    pub const ALL: [Self; 3] = [Self::Available, Self::Progressing, Self::Degraded];

    /// How bad `status` is for this type, for merging reports from several sources: the worst
    /// report wins. `Available=False` is bad; `Progressing=True` and `Degraded=True` are the
    /// reports that must not be hidden.
    fn severity(self, status: ConditionStatus) -> u8 {
        match (self, status) {
            (_, ConditionStatus::Unknown) => 1,
            (Self::Available, ConditionStatus::True) => 0,
            (Self::Available, ConditionStatus::False) => 2,
            (_, ConditionStatus::True) => 2,
            (_, ConditionStatus::False) => 0,
        }
    }
}

/// Status of a condition: `True`, `False` or `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    // Variants carry no `///`: documented variants turn the schema into a `oneOf`.
    True,
    False,
    Unknown,
}

/// What one source says about one condition type.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Report {
    status: ConditionStatus,
    reason: String,
    message: String,
}

/// Gathers condition reports, then merges them with the previous conditions.
///
/// Several sources may report the same type; the worst report wins, and among equally bad
/// reports the first. A type nobody reported keeps its previous condition, or is `Unknown`
/// if there was none, so the status always lists all three types.
#[derive(Debug, Clone, Default)]
pub struct ConditionBuilder {
    reports: BTreeMap<ConditionType, Report>,
}

impl ConditionBuilder {
    /// No reports yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one report about `type_`.
    pub fn report(
        mut self,
        type_: ConditionType,
        status: ConditionStatus,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let new = Report { status, reason: reason.into(), message: message.into() };
        match self.reports.get(&type_) {
            Some(old) if type_.severity(old.status) >= type_.severity(new.status) => {}
            _ => {
                self.reports.insert(type_, new);
            }
        }
        self
    }

    /// Shorthand for a report about `Available`.
    pub fn available(self, status: ConditionStatus, reason: impl Into<String>, message: impl Into<String>) -> Self {
        self.report(ConditionType::Available, status, reason, message)
    }

    /// Shorthand for a report about `Progressing`.
    pub fn progressing(self, status: ConditionStatus, reason: impl Into<String>, message: impl Into<String>) -> Self {
        self.report(ConditionType::Progressing, status, reason, message)
    }

    /// Shorthand for a report about `Degraded`.
    pub fn degraded(self, status: ConditionStatus, reason: impl Into<String>, message: impl Into<String>) -> Self {
        self.report(ConditionType::Degraded, status, reason, message)
    }

    /// The new conditions, one per type in [`ConditionType::ALL`] order. A reported condition
    /// keeps the previous `lastTransitionTime` when its status did not change, and gets `now`
    /// when it did (or is new).
    pub fn build(self, previous: &[ClusterCondition], now: &Time) -> Vec<ClusterCondition> {
        let mut reports = self.reports;
        ConditionType::ALL
            .into_iter()
            .map(|type_| {
                let old = previous.iter().find(|c| c.type_ == type_);
                match (reports.remove(&type_), old) {
                    (Some(report), old) => {
                        let last_transition_time = match old {
                            Some(old) if old.status == report.status => old.last_transition_time.clone(),
                            _ => now.clone(),
                        };
                        ClusterCondition {
                            type_,
                            status: report.status,
                            reason: report.reason,
                            message: report.message,
                            last_transition_time,
                        }
                    }
                    (None, Some(old)) => old.clone(),
                    (None, None) => ClusterCondition {
                        type_,
                        status: ConditionStatus::Unknown,
                        reason: "NotObserved".into(),
                        message: "nothing has reported on this condition yet".into(),
                        last_transition_time: now.clone(),
                    },
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use ConditionStatus::{False, True, Unknown};

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).unwrap())
    }

    fn find(conditions: &[ClusterCondition], type_: ConditionType) -> &ClusterCondition {
        conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn first_build_lists_every_type_with_unknown_for_the_unreported() {
        let conditions = ConditionBuilder::new().available(False, "Creating", "0/3 ready").build(&[], &at(100));
        let types: Vec<_> = conditions.iter().map(|c| c.type_).collect();
        assert_eq!(types, ConditionType::ALL);
        assert_eq!(find(&conditions, ConditionType::Available).status, False);
        assert_eq!(find(&conditions, ConditionType::Available).last_transition_time, at(100));
        let progressing = find(&conditions, ConditionType::Progressing);
        assert_eq!((progressing.status, progressing.reason.as_str()), (Unknown, "NotObserved"));
    }

    #[test]
    fn unchanged_status_keeps_the_transition_time_even_when_the_reason_changes() {
        let first = ConditionBuilder::new().available(False, "Creating", "0/3 ready").build(&[], &at(100));
        let second = ConditionBuilder::new().available(False, "WaitingForQuorum", "1/3 ready").build(&first, &at(200));
        let available = find(&second, ConditionType::Available);
        assert_eq!(available.last_transition_time, at(100));
        assert_eq!((available.reason.as_str(), available.message.as_str()), ("WaitingForQuorum", "1/3 ready"));
    }

    #[test]
    fn changed_status_moves_the_transition_time() {
        let first = ConditionBuilder::new().available(False, "Creating", "0/3 ready").build(&[], &at(100));
        let second = ConditionBuilder::new().available(True, "QuorumReady", "3/3 ready").build(&first, &at(200));
        assert_eq!(find(&second, ConditionType::Available).last_transition_time, at(200));
        assert_eq!(find(&second, ConditionType::Available).status, True);
    }

    #[test]
    fn unreported_type_keeps_its_previous_condition_untouched() {
        let first = ConditionBuilder::new().degraded(True, "InvalidSpec", "replicas is 0").build(&[], &at(100));
        let second = ConditionBuilder::new().available(True, "QuorumReady", "3/3").build(&first, &at(200));
        assert_eq!(find(&second, ConditionType::Degraded), find(&first, ConditionType::Degraded));
    }

    #[test]
    fn worst_report_wins_whatever_the_order() {
        for flip in [false, true] {
            let (a, b) = ((True, "StatefulSetReady"), (False, "NoLeader"));
            let (x, y) = if flip { (b, a) } else { (a, b) };
            let conditions = ConditionBuilder::new()
                .available(x.0, x.1, "")
                .available(y.0, y.1, "")
                .degraded(False, "Healthy", "")
                .degraded(True, "MemberLost", "")
                .degraded(Unknown, "Unreachable", "")
                .build(&[], &at(1));
            assert_eq!(find(&conditions, ConditionType::Available).reason, "NoLeader");
            assert_eq!(find(&conditions, ConditionType::Degraded).reason, "MemberLost");
        }
    }

    #[test]
    fn equally_bad_reports_keep_the_first() {
        let conditions = ConditionBuilder::new()
            .progressing(True, "Scaling", "3 -> 5")
            .progressing(True, "RollingOut", "new image")
            .build(&[], &at(1));
        assert_eq!(find(&conditions, ConditionType::Progressing).reason, "Scaling");
    }

    #[test]
    fn conditions_serialize_as_kubernetes_expects() {
        let conditions = ConditionBuilder::new().available(True, "QuorumReady", "3/3").build(&[], &at(0));
        let json = serde_json::to_value(&conditions[0]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "type": "Available",
                "status": "True",
                "reason": "QuorumReady",
                "message": "3/3",
                "lastTransitionTime": "1970-01-01T00:00:00Z",
            })
        );
    }
}
