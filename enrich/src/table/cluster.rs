//! One cluster's identities: a slab of objects, each holding its addresses for one
//! interval, indexed by address and by (kind, uid). Upserts, interval ends and pruning
//! happen here; which holder answers a lookup is decided here (see the module doc of
//! [`crate::table`] for the rules).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use flowlake_schemas::{EnrichmentStatus, IdentityKind, Labels, Timestamp};
use hashbrown::{DefaultHashBuilder, HashTable};

use crate::addresses::AddressIndex;
use crate::netsets::{Cidr, NetworkSet, PrefixMap};
use crate::slab::ChunkedSlab;
use crate::table::identity::{Found, Identity};
use crate::table::uid::Uid;
use crate::workload::OwnerLink;

/// Interval bound for "still holds it".
const STILL_HELD: i64 = i64::MAX;

/// How many objects a table holds, by kind, and what applying updates found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Pods (hostNetwork ones included), alive or remembered after deletion.
    pub pods: u64,
    /// Nodes.
    pub nodes: u64,
    /// Services.
    pub services: u64,
    /// Namespaces.
    pub namespaces: u64,
    /// ReplicaSets and Jobs (owners naming a workload).
    pub owners: u64,
    /// Network-set CIDRs from the API.
    pub network_sets: u64,
    /// Addresses with at least one holder.
    pub addresses: u64,
    /// Objects whose interval has ended, kept for late flows until pruned.
    pub ended: u64,
    /// Times an object claimed an address another live object held.
    pub conflicts: u64,
    /// Objects pruned after their retention.
    pub pruned: u64,
    /// Records ignored (a non-deleted record of a deleted uid; network-set CIDRs that do
    /// not parse).
    pub ignored: u64,
}

/// How strongly an object's claim on an address says it holds it; higher wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Claim {
    HostNetworkPod,
    Service,
    Node,
    Pod,
}

/// One object in the slab.
#[derive(Clone, Debug)]
struct Object {
    identity: Identity,
    uid: Uid,
    ips: Box<[IpAddr]>,
    /// Interval start, µs (inclusive).
    from: i64,
    /// Interval end, µs (exclusive).
    until: i64,
    kind: IdentityKind,
    claim: Claim,
}

impl Object {
    fn contains(&self, at: i64) -> bool {
        self.from <= at && at < self.until
    }

    /// How far `at` lies outside the interval.
    fn distance(&self, at: i64) -> u64 {
        if at < self.from {
            self.from.abs_diff(at)
        } else if at >= self.until {
            at.abs_diff(self.until)
        } else {
            0
        }
    }
}

/// A spec of one object, whichever source described it.
pub(super) struct Spec {
    pub(super) kind: IdentityKind,
    pub(super) uid: Uid,
    pub(super) ips: Vec<IpAddr>,
    pub(super) from: i64,
    pub(super) deleted_at: Option<i64>,
    pub(super) observed_at: i64,
    pub(super) claim: Claim,
    pub(super) identity: Identity,
}

/// One cluster's identities.
#[derive(Clone, Debug, Default)]
pub struct ClusterTable {
    objects: ChunkedSlab<Object>,
    free: Vec<u32>,
    by_uid: HashTable<u32>,
    hasher: DefaultHashBuilder,
    pub(super) by_ip: AddressIndex,
    /// (interval end, slab index) of ended objects, earliest first.
    ended: BinaryHeap<Reverse<(i64, u32)>>,
    pub(super) namespaces: HashMap<Arc<str>, Arc<Labels>>,
    pub(super) node_labels: HashMap<Arc<str>, Arc<Labels>>,
    pub(super) owners: HashMap<Box<str>, OwnerLink>,
    pub(super) network_sets: PrefixMap<Arc<NetworkSet>>,
    pub(super) network_set_cidrs: HashMap<Box<str>, Vec<Cidr>>,
    pub(super) stats: TableStats,
}

impl ClusterTable {
    /// The holder of `ip` at `at` (see the module doc for ties and `stale`).
    pub fn lookup(&self, ip: IpAddr, at: Timestamp) -> Option<Found<'_>> {
        let holders = self.by_ip.holders(ip.to_canonical());
        let at = at.as_micros();
        let object = |id: &u32| self.objects.get(*id as usize).and_then(Option::as_ref);
        let best = match holders {
            [] => return None,
            [id] => object(id)?,
            ids => {
                let containing = ids
                    .iter()
                    .filter_map(object)
                    .filter(|o| o.contains(at))
                    .max_by_key(|o| (o.claim, Reverse(o.until), o.from));
                match containing {
                    Some(o) => o,
                    None => ids
                        .iter()
                        .filter_map(object)
                        .min_by_key(|o| (o.distance(at), Reverse(o.claim), Reverse(o.from)))?,
                }
            }
        };
        let status = if best.contains(at) {
            EnrichmentStatus::Hit
        } else {
            EnrichmentStatus::Stale
        };
        Some(Found {
            identity: &best.identity,
            uid: &best.uid,
            status,
        })
    }

    /// Loads what the lookups of a flow's two addresses (canonical) and writing their
    /// endpoints read first: the index entries, the first holders, the names of pods whose
    /// name is not in place (see [`PodName`]). Nothing waits for the loads, so the next
    /// instructions (checking the rest of the record) run while they miss the cache, and
    /// the lookups find them there. Each level is loaded for both ends before the next, so
    /// the two ends' misses overlap. (Prefetch instructions issued a few records ahead
    /// were tried and were slower: BENCHMARKS.md, enrich.)
    #[inline]
    pub fn warm(&self, ips: [Option<IpAddr>; 2]) {
        let ids = ips.map(|ip| Some(*self.by_ip.holders(ip?).first()?));
        let objects = ids.map(|id| self.objects.get(id? as usize)?.as_ref());
        for object in objects.iter().flatten() {
            std::hint::black_box(object.from);
        }
        for object in objects.iter().flatten() {
            if let Identity::Pod(pod) = &object.identity {
                std::hint::black_box(pod.name.as_bytes().first().copied());
            }
        }
    }

    /// The network set (from `network_set` records) with the longest prefix containing
    /// `ip`, with that prefix's length.
    pub fn network_set(&self, ip: IpAddr) -> Option<(u8, &Arc<NetworkSet>)> {
        self.network_sets.longest_match(ip)
    }

    /// Labels of `namespace`, when a namespace object or record named it.
    pub fn namespace_labels(&self, namespace: &str) -> Option<&Labels> {
        self.namespaces.get(namespace).map(|labels| labels.as_ref())
    }

    /// Entry counts.
    pub fn stats(&self) -> &TableStats {
        &self.stats
    }

    fn uid_hash(&self, kind: IdentityKind, uid: &Uid) -> u64 {
        self.hasher.hash_one((kind as u8, uid))
    }

    fn find(&self, kind: IdentityKind, uid: &Uid) -> Option<u32> {
        let hash = self.uid_hash(kind, uid);
        self.by_uid
            .find(hash, |&id| {
                self.objects[id as usize]
                    .as_ref()
                    .is_some_and(|o| o.kind == kind && &o.uid == uid)
            })
            .copied()
    }

    fn count(&mut self, kind: IdentityKind, delta: i64) {
        let slot = match kind {
            IdentityKind::Pod => &mut self.stats.pods,
            IdentityKind::Node => &mut self.stats.nodes,
            IdentityKind::Service => &mut self.stats.services,
            _ => return,
        };
        *slot = slot.saturating_add_signed(delta);
    }

    /// Inserts or updates the object `spec` describes.
    pub(super) fn upsert(&mut self, spec: Spec) {
        match self.find(spec.kind, &spec.uid) {
            Some(id) => self.update(id, spec),
            None => self.insert(spec),
        }
    }

    fn insert(&mut self, spec: Spec) {
        let mut ips = spec.ips;
        for ip in &mut ips {
            *ip = ip.to_canonical();
        }
        ips.sort_unstable();
        ips.dedup();
        let until = spec.deleted_at.unwrap_or(STILL_HELD).max(spec.from);
        let object = Object {
            identity: spec.identity,
            uid: spec.uid,
            ips: ips.into_boxed_slice(),
            from: spec.from,
            until,
            kind: spec.kind,
            claim: spec.claim,
        };
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.objects.push_empty();
                // More than 4 billion objects in one cluster is not a deployment we serve.
                u32::try_from(self.objects.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let hash = self.uid_hash(object.kind, &object.uid);
        if until != STILL_HELD {
            self.ended.push(Reverse((until, id)));
            self.stats.ended += 1;
        }
        self.count(object.kind, 1);
        let ips = object.ips.clone();
        self.objects[id as usize] = Some(object);
        for &ip in ips.iter() {
            self.hold(ip, id, until == STILL_HELD);
        }
        let objects = &self.objects;
        let hasher = &self.hasher;
        self.by_uid.insert_unique(hash, id, |&other| {
            objects[other as usize]
                .as_ref()
                .map_or(0, |o| hasher.hash_one((o.kind as u8, &o.uid)))
        });
    }

    fn hold(&mut self, ip: IpAddr, id: u32, live: bool) {
        let identity = self.objects[id as usize].as_ref().map(|o| &o.identity);
        // A hostNetwork pod on its node's address is the node again, not a rival.
        if live
            && self.by_ip.holders(ip).iter().any(|&h| {
                self.objects[h as usize]
                    .as_ref()
                    .is_some_and(|o| o.until == STILL_HELD && Some(&o.identity) != identity)
            })
        {
            self.stats.conflicts += 1;
            tracing::debug!(%ip, "address claimed by two live objects");
        }
        self.by_ip.add(ip, id);
    }

    fn release(&mut self, ip: IpAddr, id: u32) {
        self.by_ip.remove(ip, id);
    }

    fn end(&mut self, id: u32, at: i64) {
        if let Some(object) = self.objects[id as usize].as_mut()
            && object.until == STILL_HELD
        {
            object.until = at.max(object.from);
            self.ended.push(Reverse((object.until, id)));
            self.stats.ended += 1;
        }
    }

    fn update(&mut self, id: u32, spec: Spec) {
        let Some(object) = self.objects[id as usize].as_mut() else {
            return;
        };
        if object.until != STILL_HELD {
            // A deletion is final for a uid; an older state arriving late changes nothing.
            if spec.deleted_at.is_none() {
                self.stats.ignored += 1;
            }
            return;
        }
        if let Some(deleted_at) = spec.deleted_at {
            self.end(id, deleted_at);
            return;
        }
        let mut ips = spec.ips;
        for ip in &mut ips {
            *ip = ip.to_canonical();
        }
        ips.sort_unstable();
        ips.dedup();
        object.identity = spec.identity;
        object.claim = spec.claim;
        object.from = spec.from.min(object.from);
        if ips.is_empty() && !object.ips.is_empty() {
            // A finished pod released its addresses; flows before now are still its.
            self.end(id, spec.observed_at);
            return;
        }
        let old = std::mem::take(&mut object.ips);
        object.ips = ips.clone().into_boxed_slice();
        for ip in old.iter().filter(|ip| !ips.contains(ip)) {
            self.release(*ip, id);
        }
        for ip in ips.iter().filter(|ip| !old.contains(ip)) {
            self.hold(*ip, id, true);
        }
    }

    /// Forgets objects whose interval ended before `horizon`. Returns how many.
    pub(super) fn prune(&mut self, horizon: Timestamp) -> u64 {
        let mut pruned = 0;
        while let Some(&Reverse((until, id))) = self.ended.peek() {
            if until >= horizon.as_micros() {
                break;
            }
            self.ended.pop();
            let matches = self.objects[id as usize]
                .as_ref()
                .is_some_and(|o| o.until == until);
            if !matches {
                continue;
            }
            let Some(object) = self.objects[id as usize].take() else {
                continue;
            };
            for &ip in object.ips.iter() {
                self.release(ip, id);
            }
            let hash = self.uid_hash(object.kind, &object.uid);
            if let Ok(entry) = self.by_uid.find_entry(hash, |&other| other == id) {
                entry.remove();
            }
            self.count(object.kind, -1);
            self.stats.ended = self.stats.ended.saturating_sub(1);
            self.free.push(id);
            pruned += 1;
        }
        self.stats.pruned += pruned;
        pruned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_stays_small() {
        // The per-pod memory budget (≤ 300 bytes, see the module doc and BENCHMARKS.md)
        // leaves this much for the slab object (with the pod's name in place, see
        // `PodName`); the rest is the address index (8 bytes an IPv4 entry), the tables'
        // slack and the uid index.
        let object = std::mem::size_of::<Option<Object>>();
        assert!(object <= 144, "{object} bytes");
    }
}
