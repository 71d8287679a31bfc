//! Copies whose owner stopped confirming them (it died, restarted, or is cut off): how long
//! they are kept, and which of their instances a live registration has taken over.
//!
//! A member that dies takes its gRPC connections with it. Their clients reconnect to a
//! survivor at once but redo their registrations on their own schedule: the Java SDK within
//! 3 s, nacos-sdk-python 2.x up to 30 s later. Until then the copies the survivors hold are
//! the only trace of those instances, so a copy must outlive every client's redo:
//! `expire_after_ms`, 3 minutes by default like Nacos' `nacos.naming.client.expired.time`.
//! Two consequences are settled here, with no new messages between members:
//!
//! - **The redo supersedes the copy.** The redo registers the same instances under the new
//!   connection, which its new member owns and replicates like any other client: that is the
//!   renewal, and it is what lasts. The index keeps one publication per client, so for a moment
//!   the instance is listed twice; once a copy is *unconfirmed* (its owner silent for three
//!   verify intervals), every member removes from it, locally, each instance (ip, port,
//!   cluster) that a live client also publishes in the same service. Every member holds the
//!   same data and applies the same rule, so they agree. A client that deregisters through its
//!   new connection is then gone at once instead of lingering in the copy for 3 minutes. (If it
//!   deregisters within the few seconds before the copy counts as unconfirmed, the copy keeps
//!   the instance until it expires: the price of not guessing which connections belong to one
//!   client.) Only gRPC copies are trimmed: nothing but replication ever writes them here,
//!   whereas a v1 client's copy turns into this member's own client on its next beat.
//! - **v1 heartbeat clients are not connections.** Their liveness is their beats, which reach
//!   whichever member owns them now, and Nacos removes a v1 instance without beats after its
//!   delete timeout (30 s unless `preserved.ip.delete.timeout` says otherwise). Their copies
//!   expire after that timeout, never later than `expire_after_ms`: a live v1 client has
//!   re-registered with its new owner long before.
//!
//! Pure functions over the naming data; [`super::Distro`] runs them on its verify ticks.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use crate::model::instance::DEFAULT_IP_DELETE_TIMEOUT_MS;
use crate::model::{ClientId, Instance, ServiceKey};
use crate::state::NamingData;

/// A client's whole publication, as replication carries it.
pub(super) type WholePublication = Vec<(ServiceKey, Vec<Instance>)>;

/// How long an unconfirmed copy of `client` is kept: `expire_after` for a gRPC connection; for
/// a v1 heartbeat client the longest delete timeout of its instances, at least `floor` (a copy
/// must never expire while its owner may still confirm it) and at most `expire_after`.
pub(super) fn grace(d: &NamingData, client: &ClientId, floor: Duration, expire_after: Duration) -> Duration {
    if !client.is_ip_port() {
        return expire_after;
    }
    let longest = d
        .services_of_client(client)
        .iter()
        .filter_map(|s| d.get(s)?.ephemeral.get(client))
        .flat_map(|p| p.iter().map(|i| i.ip_delete_timeout_ms()))
        .max()
        .unwrap_or(DEFAULT_IP_DELETE_TIMEOUT_MS);
    Duration::from_millis(longest).max(floor).min(expire_after)
}

/// What the last supersede pass looked at, so that a pass only scans services that changed
/// since (a dead member's copies can linger for minutes, and the scan holds the writer lock).
#[derive(Debug, Default)]
pub(super) struct Checked {
    /// The unconfirmed copies of the last pass; when they change, every service is due again.
    stale: HashSet<ClientId>,
    /// Revision of each service when it was last scanned.
    services: HashMap<ServiceKey, u64>,
}

/// The unconfirmed gRPC copies among `stale` that publish an instance some live client (any
/// client not in `stale`) also publishes in the same service, each with its whole publication
/// minus those instances (possibly nothing). Services unchanged since `checked` last saw them
/// are skipped.
pub(super) fn superseded(
    d: &NamingData,
    stale: &HashSet<ClientId>,
    checked: &mut Checked,
) -> Vec<(ClientId, WholePublication)> {
    if checked.stale != *stale {
        checked.stale.clone_from(stale);
        checked.services.clear();
    }
    let services: BTreeSet<ServiceKey> = stale.iter().flat_map(|c| d.services_of_client(c)).collect();
    // Per client, the services where it loses instances and what it keeps there.
    let mut trimmed: BTreeMap<ClientId, HashMap<ServiceKey, Vec<Instance>>> = BTreeMap::new();
    for service in services {
        let Some(record) = d.get(&service) else { continue };
        if checked.services.get(&service) == Some(&record.revision) {
            continue;
        }
        checked.services.insert(service.clone(), record.revision);
        let live: HashSet<(&str, u16, &str)> = record
            .ephemeral
            .iter()
            .filter(|(c, _)| !stale.contains(*c))
            .flat_map(|(_, p)| p.iter().map(|i| (i.ip.as_str(), i.port, i.cluster.as_str())))
            .collect();
        if live.is_empty() {
            continue;
        }
        for (client, publication) in record.ephemeral.iter().filter(|(c, _)| stale.contains(*c)) {
            let is_live = |i: &Instance| live.contains(&(i.ip.as_str(), i.port, i.cluster.as_str()));
            if publication.iter().any(|i| is_live(i)) {
                let kept = publication.iter().filter(|i| !is_live(i)).map(|i| (**i).clone()).collect();
                trimmed.entry(client.clone()).or_default().insert(service.clone(), kept);
            }
        }
    }
    trimmed
        .into_iter()
        .map(|(client, mut changed)| {
            let whole = d
                .publication_of(&client)
                .into_iter()
                .map(|(service, instances)| match changed.remove(&service) {
                    Some(kept) => (service, kept),
                    None => (service, instances),
                })
                .filter(|(_, instances)| !instances.is_empty())
                .collect();
            (client, whole)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn svc(name: &str) -> ServiceKey {
        ServiceKey::new("public", "DEFAULT_GROUP", name).unwrap()
    }

    fn inst(ip: &str) -> Arc<Instance> {
        Arc::new(Instance::new(ip, 80, "DEFAULT", true))
    }

    fn ips(publication: &WholePublication) -> Vec<(String, Vec<String>)> {
        publication
            .iter()
            .map(|(s, list)| (s.service.to_string(), list.iter().map(|i| i.ip.to_string()).collect()))
            .collect()
    }

    #[test]
    fn a_redone_registration_supersedes_the_same_instance_in_an_unconfirmed_copy() {
        let mut d = NamingData::default();
        let (dead, redone, other) = (ClientId::from("1_a_1"), ClientId::from("2_a_2"), ClientId::from("3_b_3"));
        d.set_ephemeral(&svc("orders"), &dead, vec![inst("10.0.0.1"), inst("10.0.0.2")]);
        d.set_ephemeral(&svc("users"), &dead, vec![inst("10.0.0.1")]);
        // The client redid one of its two instances in "orders"; someone else is in "users"
        // at another address.
        d.set_ephemeral(&svc("orders"), &redone, vec![inst("10.0.0.1")]);
        d.set_ephemeral(&svc("users"), &other, vec![inst("10.0.0.9")]);
        let stale = HashSet::from([dead.clone()]);
        let mut checked = Checked::default();
        let plan = superseded(&d, &stale, &mut checked);
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].0, dead);
        let mut got = ips(&plan[0].1);
        got.sort();
        assert_eq!(got, [("orders".into(), vec!["10.0.0.2".into()]), ("users".into(), vec!["10.0.0.1".into()])]);
        // Nothing changed: the next pass scans nothing.
        assert!(superseded(&d, &stale, &mut checked).is_empty());
        assert_eq!(checked.services.len(), 2);
    }

    #[test]
    fn a_fully_superseded_copy_keeps_nothing_and_other_clusters_or_ports_are_not_the_same_instance() {
        let mut d = NamingData::default();
        let (dead, redone) = (ClientId::from("1_a_1"), ClientId::from("2_a_2"));
        d.set_ephemeral(&svc("s"), &dead, vec![inst("10.0.0.1")]);
        let mut elsewhere = Instance::new("10.0.0.1", 80, "other-cluster", true);
        elsewhere.metadata.insert("k".into(), "v".into());
        d.set_ephemeral(
            &svc("s"),
            &redone,
            vec![Arc::new(elsewhere), Arc::new(Instance::new("10.0.0.1", 81, "DEFAULT", true))],
        );
        let stale = HashSet::from([dead.clone()]);
        assert!(superseded(&d, &stale, &mut Checked::default()).is_empty(), "same ip, other cluster/port: kept");
        // Now the very same instance, with other metadata (a redo may carry new metadata).
        let mut same = Instance::new("10.0.0.1", 80, "DEFAULT", true);
        same.weight = 2.0;
        d.set_ephemeral(&svc("s"), &redone, vec![Arc::new(same)]);
        let plan = superseded(&d, &stale, &mut Checked::default());
        assert_eq!(plan, vec![(dead, Vec::new())]);
    }

    #[test]
    fn unconfirmed_copies_do_not_supersede_each_other() {
        let mut d = NamingData::default();
        let (a, b) = (ClientId::from("1_a_1"), ClientId::from("2_b_2"));
        d.set_ephemeral(&svc("s"), &a, vec![inst("10.0.0.1")]);
        d.set_ephemeral(&svc("s"), &b, vec![inst("10.0.0.1")]);
        let stale = HashSet::from([a.clone(), b.clone()]);
        assert!(superseded(&d, &stale, &mut Checked::default()).is_empty());
        // A copy that becomes unconfirmed later is looked at even though the service did not
        // change: the set of unconfirmed copies did.
        let mut checked = Checked::default();
        let only_a = HashSet::from([a.clone()]);
        assert_eq!(superseded(&d, &only_a, &mut checked).len(), 1);
        let only_b = HashSet::from([b.clone()]);
        assert_eq!(superseded(&d, &only_b, &mut checked), vec![(b, Vec::new())]);
    }

    #[test]
    fn heartbeat_copies_expire_after_their_delete_timeout_within_bounds() {
        let mut d = NamingData::default();
        let floor = Duration::from_secs(6);
        let expire_after = Duration::from_secs(180);
        let conn = ClientId::from("1_a_1");
        assert_eq!(grace(&d, &conn, floor, expire_after), expire_after, "a connection: expire_after");
        let v1 = ClientId::ip_port("10.0.0.1", 80, true);
        d.set_ephemeral(&svc("s"), &v1, vec![inst("10.0.0.1")]);
        assert_eq!(grace(&d, &v1, floor, expire_after), Duration::from_secs(30), "Nacos' default delete timeout");
        let mut short = Instance::new("10.0.0.1", 80, "DEFAULT", true);
        short.metadata.insert("preserved.ip.delete.timeout".into(), "2000".into());
        d.set_ephemeral(&svc("s"), &v1, vec![Arc::new(short)]);
        assert_eq!(grace(&d, &v1, floor, expire_after), floor, "never before its owner could confirm it");
        let mut long = Instance::new("10.0.0.1", 80, "DEFAULT", true);
        long.metadata.insert("preserved.ip.delete.timeout".into(), "600000".into());
        d.set_ephemeral(&svc("t"), &v1, vec![Arc::new(long)]);
        assert_eq!(grace(&d, &v1, floor, expire_after), expire_after, "never after expire_after");
    }
}
