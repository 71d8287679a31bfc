//! Who owns which ephemeral client, at which revision: the bookkeeping behind replication.
//!
//! Pure data, no I/O: [`super::Distro`] holds it under a mutex and decides what to send and
//! apply from its answers.

use crate::state::FastMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::wire::Digest;
use crate::consistency::raft::NodeId;
use crate::model::ClientId;

/// A client held on behalf of another member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CopyMeta {
    /// Its owner.
    pub(crate) owner: NodeId,
    /// The owner's revision this copy is at.
    pub(crate) revision: u64,
    /// When the owner last confirmed it (sync or verify); unconfirmed copies expire.
    pub(crate) renewed: Instant,
}

/// A client that is gone, remembered for a while so an older copy arriving late is refused.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tombstone {
    pub(crate) owner: NodeId,
    pub(crate) revision: u64,
    pub(crate) at: Instant,
}

/// What to do with a replicated client that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Newer than anything held: apply it.
    Apply,
    /// Not newer: ignore (already confirmed as renewed where it matched).
    Stale,
    /// This member owns the client at a newer revision: ignore.
    OwnedHere,
}

/// The ledger of one member.
#[derive(Debug)]
pub(crate) struct Ledger {
    /// Clients this member owns, by revision.
    pub(crate) owned: FastMap<ClientId, u64>,
    /// Clients owned elsewhere.
    pub(crate) copies: FastMap<ClientId, CopyMeta>,
    /// Recently removed clients.
    pub(crate) tombstones: FastMap<ClientId, Tombstone>,
    /// Last revision handed out by this member.
    clock: u64,
    /// When this run of the member started, on the revision clock: every revision it hands out
    /// is at least this, every revision of its previous runs is below it. Sent in digests so
    /// that peers can tell "the owner removed this client" (drop the copy) from "the owner
    /// restarted and forgot it" (keep the copy until its client redoes elsewhere or it expires).
    since: u64,
}

impl Default for Ledger {
    fn default() -> Self {
        Self {
            owned: FastMap::default(),
            copies: FastMap::default(),
            tombstones: FastMap::default(),
            clock: 0,
            since: now_micros(),
        }
    }
}

/// Microseconds since the epoch.
fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

impl Ledger {
    /// A new revision: the wall clock in µs, strictly above the last one, so revisions keep
    /// increasing across this member's restarts (a restarted owner's data is never "older").
    pub(crate) fn next_revision(&mut self) -> u64 {
        self.clock = now_micros().max(self.clock + 1);
        self.clock
    }

    /// A local write changed `client`: this member owns it from now on.
    pub(crate) fn changed_here(&mut self, me: NodeId, client: &ClientId, removed: bool) -> u64 {
        let revision = self.next_revision();
        self.copies.remove(client);
        if removed {
            self.owned.remove(client);
            self.tombstones.insert(client.clone(), Tombstone { owner: me, revision, at: Instant::now() });
        } else {
            self.owned.insert(client.clone(), revision);
            self.tombstones.remove(client);
        }
        revision
    }

    /// Whether `revision` of this member's own clients comes from one of its earlier runs
    /// (before this process started): a client this member no longer owns or watches.
    pub(crate) fn earlier_run(&self, revision: u64) -> bool {
        revision < self.since
    }

    /// Whether replicated data about a client of `owner` at `revision` may be applied here
    /// (`me` receives it from `sender`; `from_snapshot`: in a startup snapshot).
    ///
    /// A sync speaks only for the sender's own clients. A snapshot relays everyone's,
    /// including this member's own earlier run's (a restart: same id, its connections gone):
    /// every other member holds those as copies of a silent owner, and so must this one, or
    /// it lists fewer instances than they do until the clients redo or the copies expire.
    /// They become copies like any other (expired, superseded, never renewed, owned or
    /// replicated as this member's own). Data about this run's clients is never taken from
    /// anyone: this member is their owner.
    pub(crate) fn admits(&self, me: NodeId, sender: NodeId, owner: NodeId, revision: u64, from_snapshot: bool) -> bool {
        if owner == me {
            return from_snapshot && self.earlier_run(revision);
        }
        from_snapshot || owner == sender
    }

    /// Judges a replicated client from `owner` at `revision`; renews a matching copy.
    pub(crate) fn judge(&mut self, client: &ClientId, owner: NodeId, revision: u64, now: Instant) -> Verdict {
        if self.owned.get(client).is_some_and(|r| *r >= revision) {
            return Verdict::OwnedHere;
        }
        let held = self
            .copies
            .get(client)
            .map(|c| c.revision)
            .into_iter()
            .chain(self.tombstones.get(client).map(|t| t.revision))
            .max();
        if held.is_some_and(|h| h >= revision) {
            if let Some(copy) = self.copies.get_mut(client).filter(|c| c.owner == owner && c.revision == revision) {
                copy.renewed = now;
            }
            return Verdict::Stale;
        }
        Verdict::Apply
    }

    /// Records an applied replicated client (`present = false`: a tombstone). Ownership moves
    /// to `owner` if this member thought it owned an older revision.
    pub(crate) fn record(&mut self, client: &ClientId, owner: NodeId, revision: u64, present: bool, now: Instant) {
        self.record_unconfirmed(client, owner, revision, present, now, Duration::ZERO);
    }

    /// [`Self::record`] for a copy its owner last confirmed `unconfirmed` before `now` (relayed
    /// by a snapshot): it expires and counts as unconfirmed when the sender's copy does.
    pub(crate) fn record_unconfirmed(
        &mut self,
        client: &ClientId,
        owner: NodeId,
        revision: u64,
        present: bool,
        now: Instant,
        unconfirmed: Duration,
    ) {
        self.owned.remove(client);
        if present {
            let renewed = now.checked_sub(unconfirmed).unwrap_or(now);
            self.copies.insert(client.clone(), CopyMeta { owner, revision, renewed });
            self.tombstones.remove(client);
        } else {
            self.copies.remove(client);
            self.tombstones.insert(client.clone(), Tombstone { owner, revision, at: now });
        }
    }

    /// The digest of what this member owns.
    pub(crate) fn digest(&self, me: NodeId) -> Digest {
        let mut clients: Vec<(ClientId, u64)> = self.owned.iter().map(|(c, r)| (c.clone(), *r)).collect();
        clients.sort();
        Digest { owner: me, as_of: self.clock, since: self.since, clients }
    }

    /// Compares an owner's digest with the copies held: renews matching copies, returns the
    /// clients to ask for (missing or stale here) and the copies the owner no longer has (to
    /// drop: not newer than the digest, so not created after it was taken).
    ///
    /// Copies from an earlier run of the owner (revision below the digest's `since`) are not
    /// dropped even though the digest does not list them: the owner restarted and lost its
    /// connections, and their clients are about to redo their registrations elsewhere (a
    /// Python client after up to 30 s). They stay, unrenewed, until a live registration
    /// supersedes them or they expire, exactly as if the owner had stayed down.
    pub(crate) fn compare(&mut self, digest: &Digest, now: Instant) -> (Vec<ClientId>, Vec<ClientId>) {
        let mut want = Vec::new();
        let listed: std::collections::HashSet<&ClientId> = digest.clients.iter().map(|(c, _)| c).collect();
        for (client, revision) in &digest.clients {
            match self.judge(client, digest.owner, *revision, now) {
                Verdict::Apply => want.push(client.clone()),
                Verdict::Stale | Verdict::OwnedHere => {}
            }
        }
        let gone: Vec<ClientId> = self
            .copies
            .iter()
            .filter(|(c, m)| {
                m.owner == digest.owner
                    && m.revision >= digest.since
                    && m.revision <= digest.as_of
                    && !listed.contains(c)
            })
            .map(|(c, _)| c.clone())
            .collect();
        (want, gone)
    }

    /// Copies their owner has not confirmed for at least `silent` (it is gone or cut off),
    /// with how long each has gone unconfirmed.
    pub(crate) fn unrenewed(&self, silent: Duration, now: Instant) -> Vec<(ClientId, Duration)> {
        self.copies
            .iter()
            .map(|(c, m)| (c, now.saturating_duration_since(m.renewed)))
            .filter(|(_, quiet)| *quiet >= silent)
            .map(|(c, quiet)| (c.clone(), quiet))
            .collect()
    }

    /// Forgets tombstones older than `age`.
    pub(crate) fn forget_tombstones(&mut self, age: Duration, now: Instant) {
        self.tombstones.retain(|_, t| now.saturating_duration_since(t.at) < age);
    }

    /// Marks a copy as one revision behind its owner after this member changed it locally
    /// (removed superseded instances): should the owner turn out to be alive and still
    /// list the client at its revision, the next verify asks for it again in full.
    pub(crate) fn step_back(&mut self, client: &ClientId) {
        if let Some(copy) = self.copies.get_mut(client) {
            copy.revision = copy.revision.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(name: &str) -> ClientId {
        ClientId::from(name)
    }

    #[test]
    fn revisions_increase_even_when_the_clock_does_not() {
        let mut l = Ledger::default();
        let a = l.next_revision();
        let b = l.next_revision();
        assert!(b > a);
        l.clock = u64::MAX - 10;
        assert_eq!(l.next_revision(), u64::MAX - 9);
    }

    #[test]
    fn newer_data_applies_older_or_equal_is_stale_and_renews() {
        let (mut l, now) = (Ledger::default(), Instant::now());
        let c = client("conn-1");
        assert_eq!(l.judge(&c, 2, 10, now), Verdict::Apply);
        l.record(&c, 2, 10, true, now);
        assert_eq!(l.judge(&c, 2, 9, now), Verdict::Stale);
        let later = now + Duration::from_secs(5);
        assert_eq!(l.judge(&c, 2, 10, later), Verdict::Stale);
        assert_eq!(l.copies[&c].renewed, later, "a matching revision renews the copy");
        assert_eq!(l.judge(&c, 2, 11, later), Verdict::Apply);
        // A tombstone refuses older data arriving late.
        l.record(&c, 2, 12, false, later);
        assert_eq!(l.judge(&c, 2, 11, later), Verdict::Stale);
        assert!(!l.copies.contains_key(&c));
    }

    #[test]
    fn a_local_write_takes_ownership_and_newer_remote_data_takes_it_back() {
        let (mut l, now) = (Ledger::default(), Instant::now());
        let c = client("10.0.0.1:80#true");
        l.record(&c, 2, 5, true, now);
        let mine = l.changed_here(1, &c, false);
        assert!(l.owned.contains_key(&c) && !l.copies.contains_key(&c));
        assert_eq!(l.judge(&c, 2, mine - 1, now), Verdict::OwnedHere);
        assert_eq!(l.judge(&c, 2, mine + 1, now), Verdict::Apply);
        l.record(&c, 2, mine + 1, true, now);
        assert!(!l.owned.contains_key(&c), "ownership moved to member 2");
    }

    #[test]
    fn a_digest_asks_for_missing_and_stale_and_drops_what_the_owner_no_longer_has() {
        let (mut l, now) = (Ledger::default(), Instant::now());
        for (name, rev) in [("a", 10), ("b", 10), ("gone", 10), ("fresh", 99)] {
            l.record(&client(name), 3, rev, true, now);
        }
        l.record(&client("other-owner"), 4, 1, true, now);
        let digest = Digest {
            owner: 3,
            as_of: 50,
            since: 0,
            clients: vec![(client("a"), 10), (client("b"), 20), (client("new"), 30)],
        };
        let (mut want, mut gone) = l.compare(&digest, now);
        want.sort();
        gone.sort();
        assert_eq!(want, vec![client("b"), client("new")]);
        // `fresh` is newer than the digest (created after it was taken): kept.
        assert_eq!(gone, vec![client("gone")]);
    }

    #[test]
    fn a_restarted_owner_does_not_drop_the_copies_of_its_earlier_run() {
        let (mut l, now) = (Ledger::default(), Instant::now());
        // Revisions 10 and 20 from the owner's earlier run, 120 from its current one.
        for (name, rev) in [("before-restart", 10), ("also-before", 20), ("removed-since", 120)] {
            l.record(&client(name), 3, rev, true, now);
        }
        let later = now + Duration::from_secs(4);
        let digest = Digest { owner: 3, as_of: 150, since: 100, clients: vec![(client("also-before"), 20)] };
        let (want, gone) = l.compare(&digest, later);
        assert!(want.is_empty());
        assert_eq!(gone, vec![client("removed-since")], "only what the current run removed is dropped");
        assert!(l.copies.contains_key(&client("before-restart")), "kept until superseded or expired");
        assert_eq!(l.copies[&client("before-restart")].renewed, now, "kept, but not renewed");
        assert_eq!(l.copies[&client("also-before")].renewed, later, "listed: renewed");
    }

    #[test]
    fn only_a_snapshot_brings_this_members_own_clients_and_only_those_of_its_earlier_runs() {
        let (mut l, now) = (Ledger::default(), Instant::now());
        let (me, peer, other) = (1, 2, 3);
        let (before, after) = (l.since - 1, l.since + 1);
        // A restart: the peers' copies of this member's previous run are copies here too.
        assert!(l.admits(me, peer, me, before, true), "earlier run, from a snapshot");
        assert!(!l.admits(me, peer, me, after, true), "this run's clients are its own to decide");
        assert!(!l.admits(me, peer, me, before, false), "a sync speaks for its sender only");
        assert!(l.admits(me, peer, other, after, true) && l.admits(me, peer, peer, after, false));
        assert!(!l.admits(me, peer, other, after, false));
        // Admitted, it is a copy like a dead member's: not owned, not in this member's digest,
        // unconfirmed as long as the peer's copy was, and nothing renews it.
        let c = client("1_10.0.0.1_5000");
        let silent = Duration::from_secs(7);
        assert_eq!(l.judge(&c, me, before, now), Verdict::Apply);
        l.record_unconfirmed(&c, me, before, true, now, silent);
        assert!(!l.owned.contains_key(&c) && l.copies[&c].owner == me);
        assert!(l.digest(me).clients.is_empty());
        assert_eq!(l.unrenewed(Duration::from_secs(6), now), vec![(c, silent)]);
    }

    #[test]
    fn unrenewed_copies_are_reported_with_their_silence() {
        let (mut l, now) = (Ledger::default(), Instant::now());
        l.record(&client("old"), 2, 1, true, now);
        l.record(&client("renewed"), 2, 1, true, now + Duration::from_secs(20));
        let quiet = l.unrenewed(Duration::from_secs(30), now + Duration::from_secs(31));
        assert_eq!(quiet, vec![(client("old"), Duration::from_secs(31))]);
        assert_eq!(l.unrenewed(Duration::from_secs(5), now + Duration::from_secs(31)).len(), 2);
    }

    #[test]
    fn a_copy_stepped_back_is_asked_for_again_when_its_owner_lists_it() {
        let (mut l, now) = (Ledger::default(), Instant::now());
        let c = client("conn-1");
        l.record(&c, 2, 10, true, now);
        l.step_back(&c);
        assert_eq!(l.copies[&c].revision, 9);
        let digest = Digest { owner: 2, as_of: 10, since: 0, clients: vec![(c.clone(), 10)] };
        assert_eq!(l.compare(&digest, now).0, vec![c]);
    }

    #[test]
    fn old_tombstones_are_forgotten() {
        let (mut l, now) = (Ledger::default(), Instant::now());
        l.record(&client("a"), 2, 5, false, now);
        l.record(&client("b"), 2, 5, false, now + Duration::from_secs(50));
        l.forget_tombstones(Duration::from_secs(60), now + Duration::from_secs(61));
        assert_eq!(l.tombstones.keys().cloned().collect::<Vec<_>>(), vec![client("b")]);
    }
}
