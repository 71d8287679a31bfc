//! Which instances a query or a push returns (spec §2.5): cluster filter, enabled-only,
//! healthy-only, and the protect threshold. Pure functions over a list of instances, used by the
//! server for queries and pushes and by clients that select from a cached list.

use std::sync::Arc;

use crate::model::Instance;

/// The instances chosen for one caller.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    /// Hosts to return, in the view's stable order (shared with the view).
    pub hosts: Vec<Arc<Instance>>,
    /// True when the protect threshold fired and unhealthy hosts were returned as healthy.
    pub reach_protection_threshold: bool,
}

/// Splits a comma-separated cluster list, ignoring blanks. Empty means every cluster.
pub fn parse_clusters(clusters: &str) -> Vec<String> {
    clusters.split(',').map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned).collect()
}

/// Selects from a service's `instances` for a caller asking for `clusters` (empty = all),
/// keeping only enabled hosts, only healthy ones when `healthy_only`, then applying the protect
/// threshold: when the service has metadata (`protect_threshold` is `Some`) and
/// healthy/returned ≤ threshold, every returned host is shown as healthy. The ratio's
/// denominator is the already-filtered list, as in Nacos; an empty list never triggers
/// protection.
pub fn select<'a>(
    instances: impl IntoIterator<Item = &'a Arc<Instance>>,
    protect_threshold: Option<f64>,
    clusters: &[String],
    healthy_only: bool,
) -> Selection {
    let mut healthy_count = 0usize;
    let mut hosts: Vec<Arc<Instance>> = Vec::new();
    for i in instances {
        if !i.enabled || !(clusters.is_empty() || clusters.iter().any(|c| *c == i.cluster)) {
            continue;
        }
        if i.healthy {
            healthy_count += 1;
        }
        if !healthy_only || i.healthy {
            hosts.push(Arc::clone(i));
        }
    }
    let Some(threshold) = protect_threshold else {
        return Selection { hosts, reach_protection_threshold: false };
    };
    let threshold = threshold.max(0.0);
    if hosts.is_empty() || (healthy_count as f64 / hosts.len() as f64) > threshold {
        return Selection { hosts, reach_protection_threshold: false };
    }
    for h in &mut hosts {
        if !h.healthy {
            Arc::make_mut(h).healthy = true;
        }
    }
    Selection { hosts, reach_protection_threshold: true }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service's instances and its protect threshold (`None`: no metadata).
    struct View(Vec<Arc<Instance>>, Option<f64>);

    fn view(instances: Vec<Instance>, threshold: Option<f64>) -> View {
        View(instances.into_iter().map(Arc::new).collect(), threshold)
    }

    fn select(view: Option<&View>, clusters: &[String], healthy_only: bool) -> Selection {
        view.map_or_else(Selection::default, |v| super::select(&v.0, v.1, clusters, healthy_only))
    }

    fn inst(ip: &str, cluster: &str, healthy: bool, enabled: bool) -> Instance {
        let mut i = Instance::new(ip, 80, cluster, true);
        i.healthy = healthy;
        i.enabled = enabled;
        i
    }

    #[test]
    fn disabled_hosts_and_other_clusters_are_dropped() {
        let v = view(vec![inst("1", "A", true, true), inst("2", "B", true, true), inst("3", "A", true, false)], None);
        let s = select(Some(&v), &["A".into()], false);
        assert_eq!(s.hosts.iter().map(|h| h.ip.as_str()).collect::<Vec<_>>(), ["1"]);
    }

    #[test]
    fn no_metadata_means_no_protection() {
        let v = view(vec![inst("1", "A", false, true)], None);
        let s = select(Some(&v), &[], false);
        assert!(!s.reach_protection_threshold);
        assert!(!s.hosts[0].healthy);
    }

    #[test]
    fn zero_threshold_with_all_unhealthy_returns_all_as_healthy() {
        let v = view(vec![inst("1", "A", false, true), inst("2", "A", false, true)], Some(0.0));
        let s = select(Some(&v), &[], false);
        assert!(s.reach_protection_threshold);
        assert!(s.hosts.iter().all(|h| h.healthy));
    }

    #[test]
    fn threshold_compares_with_less_or_equal() {
        let hosts = vec![inst("1", "A", true, true), inst("2", "A", false, true)];
        assert!(select(Some(&view(hosts.clone(), Some(0.5))), &[], false).reach_protection_threshold);
        assert!(!select(Some(&view(hosts, Some(0.49))), &[], false).reach_protection_threshold);
    }

    #[test]
    fn healthy_only_with_no_healthy_host_returns_nothing() {
        let v = view(vec![inst("1", "A", false, true)], Some(0.8));
        let s = select(Some(&v), &[], true);
        assert!(s.hosts.is_empty());
        assert!(!s.reach_protection_threshold);
    }
}
