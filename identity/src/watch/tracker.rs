//! The last published state of every object of one watched resource, and the records a
//! watch event turns into.
//!
//! Invariants: a record is emitted only when what enrich uses changed (`observed_at`
//! aside), so a relist after `410 Gone` or a restart re-emits nothing that did not change;
//! every object that disappears emits exactly one deletion — from a `DELETED` event, or,
//! when it vanished while the watch was down, from the relist that no longer contains it.
//! A deletion is the object's last state with `deleted_at` set, so a reader that only sees
//! the compacted topic still knows which addresses the object held and until when.

use std::collections::{HashMap, HashSet};

use flowlake_schemas::{IdentityRecord, Timestamp};

use crate::objects_to_identity::Converted;

/// State of one watched resource (Pods, Services, …).
#[derive(Debug, Default)]
pub struct Tracker {
    /// Live objects by uid, as last emitted (or seeded).
    live: HashMap<String, IdentityRecord>,
    /// uids listed since the current (re)list began; `None` while watching.
    listing: Option<HashSet<String>>,
}

impl Tracker {
    /// Remembers `record` as already published (read back from the identity topic at
    /// start), so an unchanged object is not published again and one deleted while the
    /// publisher was down gets its deletion at the first list.
    pub fn seed(&mut self, record: IdentityRecord) {
        if record.deleted_at.is_none() {
            self.live.insert(record.uid.clone(), record);
        }
    }

    /// A (re)list begins.
    pub fn init(&mut self) {
        self.listing = Some(HashSet::new());
    }

    /// An object exists in this state: returns the record to emit when it changed.
    pub fn apply(&mut self, converted: Converted) -> Option<IdentityRecord> {
        let record = converted.record;
        if let Some(listed) = &mut self.listing {
            listed.insert(record.uid.clone());
        }
        match self.live.get(&record.uid) {
            Some(previous) if same_state(previous, &record) => None,
            _ => {
                self.live.insert(record.uid.clone(), record.clone());
                Some(record)
            }
        }
    }

    /// An object was deleted, observed at `at`: its deletion record. The pod is gone at the
    /// latest when its grace period ended, so an earlier requested deletion time wins.
    pub fn delete(&mut self, converted: Converted, at: Timestamp) -> IdentityRecord {
        let Converted {
            mut record,
            deletion_requested,
        } = converted;
        self.live.remove(&record.uid);
        if let Some(listed) = &mut self.listing {
            listed.remove(&record.uid);
        }
        let deleted_at = deletion_requested.map_or(at, |requested| requested.min(at));
        record.deleted_at = Some(deleted_at);
        record.observed_at = at;
        record
    }

    /// The (re)list is complete at `at`: deletion records, sorted by uid, for every object
    /// that was live before and is not in the new list. The watch was down when they went,
    /// so the list time is the latest they can have existed.
    pub fn init_done(&mut self, at: Timestamp) -> Vec<IdentityRecord> {
        let Some(listed) = self.listing.take() else {
            return Vec::new();
        };
        let mut gone: Vec<String> = self
            .live
            .keys()
            .filter(|uid| !listed.contains(*uid))
            .cloned()
            .collect();
        gone.sort_unstable();
        gone.into_iter()
            .filter_map(|uid| self.live.remove(&uid))
            .map(|mut record| {
                record.deleted_at = Some(at);
                record.observed_at = at;
                record
            })
            .collect()
    }

    /// Live objects.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// No live object.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

/// Equal in everything but the observation time.
fn same_state(a: &IdentityRecord, b: &IdentityRecord) -> bool {
    IdentityRecord {
        observed_at: b.observed_at,
        ..a.clone()
    } == *b
}

#[cfg(test)]
mod tests {
    use flowlake_schemas::{IdentityKind, Ip};

    use super::*;

    fn pod(uid: &str, ip: [u8; 4], observed: i64) -> Converted {
        Converted {
            record: IdentityRecord {
                cluster_id: "c".into(),
                kind: IdentityKind::Pod,
                uid: uid.into(),
                namespace: Some("ns".into()),
                name: format!("pod-{uid}"),
                ips: vec![Ip(ip.into())],
                observed_at: Timestamp::from_secs(observed),
                ..IdentityRecord::default()
            },
            deletion_requested: None,
        }
    }

    #[test]
    fn unchanged_objects_are_not_emitted_again() {
        let mut tracker = Tracker::default();
        tracker.init();
        assert!(tracker.apply(pod("a", [10, 0, 0, 1], 1)).is_some());
        assert!(tracker.init_done(Timestamp::from_secs(1)).is_empty());
        // The same state observed later (a MODIFIED that touched nothing we keep).
        assert_eq!(tracker.apply(pod("a", [10, 0, 0, 1], 5)), None);
        // A new address is a change.
        let changed = tracker.apply(pod("a", [10, 0, 0, 2], 6));
        assert_eq!(
            changed.map(|r| (r.ips, r.observed_at)),
            Some((vec![Ip([10, 0, 0, 2].into())], Timestamp::from_secs(6)))
        );
    }

    #[test]
    fn a_relist_deletes_exactly_what_vanished() {
        let mut tracker = Tracker::default();
        tracker.init();
        for uid in ["a", "b", "c"] {
            assert!(tracker.apply(pod(uid, [10, 0, 0, 1], 1)).is_some());
        }
        assert!(tracker.init_done(Timestamp::from_secs(1)).is_empty());
        // 410 Gone: the relist has a and c (unchanged) and a new d; b went meanwhile.
        tracker.init();
        assert_eq!(tracker.apply(pod("a", [10, 0, 0, 1], 9)), None);
        assert_eq!(tracker.apply(pod("c", [10, 0, 0, 1], 9)), None);
        assert!(tracker.apply(pod("d", [10, 0, 0, 4], 9)).is_some());
        let deleted = tracker.init_done(Timestamp::from_secs(9));
        assert_eq!(deleted.len(), 1);
        assert_eq!(deleted[0].uid, "b");
        assert_eq!(deleted[0].deleted_at, Some(Timestamp::from_secs(9)));
        assert_eq!(deleted[0].ips, vec![Ip([10, 0, 0, 1].into())]);
        assert_eq!(tracker.len(), 3);
    }

    #[test]
    fn a_deletion_ends_at_the_grace_period_at_the_latest() {
        let mut tracker = Tracker::default();
        let _ = tracker.apply(pod("a", [10, 0, 0, 1], 1));
        let mut last = pod("a", [10, 0, 0, 1], 100);
        last.deletion_requested = Some(Timestamp::from_secs(40));
        let record = tracker.delete(last, Timestamp::from_secs(100));
        assert_eq!(record.deleted_at, Some(Timestamp::from_secs(40)));
        assert!(tracker.is_empty());
        let record = tracker.delete(pod("b", [10, 0, 0, 2], 1), Timestamp::from_secs(7));
        assert_eq!(record.deleted_at, Some(Timestamp::from_secs(7)));
    }

    #[test]
    fn seeded_state_is_not_republished_and_vanished_seeds_are_deleted() {
        let mut tracker = Tracker::default();
        tracker.seed(pod("a", [10, 0, 0, 1], 1).record);
        tracker.seed(pod("gone", [10, 0, 0, 9], 1).record);
        let mut dead = pod("dead", [10, 0, 0, 8], 1).record;
        dead.deleted_at = Some(Timestamp::from_secs(1));
        tracker.seed(dead);
        tracker.init();
        assert_eq!(tracker.apply(pod("a", [10, 0, 0, 1], 50)), None);
        let deleted = tracker.init_done(Timestamp::from_secs(50));
        let uids: Vec<&str> = deleted.iter().map(|r| r.uid.as_str()).collect();
        assert_eq!(uids, ["gone"]);
    }
}
