//! The PodDisruptionBudget (`policy/v1`): voluntary disruptions (node drains, cluster upgrades)
//! take at most `maxUnavailable` members at a time, 1 by default, so a drain never costs the
//! cluster its quorum. Clusters older than Kubernetes 1.21 serve only `policy/v1beta1`; the apply
//! step, not this builder, will deal with that.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{object_meta, selector_labels};
use crate::controller::validate::ValidatedCluster;

/// The budget, or `None` when the spec disables it.
pub(super) fn build(cluster: &ValidatedCluster) -> Option<PodDisruptionBudget> {
    let max_unavailable = cluster.pdb_max_unavailable?;
    Some(PodDisruptionBudget {
        metadata: object_meta(cluster, cluster.name.clone()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(max_unavailable)),
            selector: Some(LabelSelector { match_labels: Some(selector_labels(cluster)), ..LabelSelector::default() }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, CUSTOM_STORAGE_SCHEDULING, DEFAULTS};

    #[test]
    fn default_budget_allows_one_member_down_and_selects_the_members() {
        let resources = fixtures::built(DEFAULTS);
        let spec = resources.pod_disruption_budget.unwrap().spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec.min_available, None);
        let statefulset_selector = resources.stateful_set.spec.unwrap().selector;
        assert_eq!(spec.selector, Some(statefulset_selector));
    }

    #[test]
    fn five_members_may_allow_two_down() {
        let spec = fixtures::built(CUSTOM_STORAGE_SCHEDULING).pod_disruption_budget.unwrap().spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(2)));
    }

    #[test]
    fn budget_is_the_v1_kind() {
        let json = serde_json::to_value(fixtures::built(DEFAULTS).pod_disruption_budget.unwrap()).unwrap();
        assert_eq!(
            (json["apiVersion"].as_str(), json["kind"].as_str()),
            (Some("policy/v1"), Some("PodDisruptionBudget"))
        );
    }
}
