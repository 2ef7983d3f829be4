//! The identity table: (cluster, IP) → the pod, node or Service that held the address at
//! a given time (an as-of join).
//!
//! Protocol: every source — snapshot files, the live watch, the `k8s.identity` topic —
//! reaches the table as upserts of one object at a time ([`IdentityTable::apply`] for an
//! [`IdentityRecord`], [`IdentityTableBuilder`] for snapshots), keyed by (cluster, kind,
//! uid). The table is owned by one processor and changed only between batches, so lookups
//! take no lock.
//!
//! Invariants:
//! - Each object holds its addresses for one interval, `[created_at (or first observed_at),
//!   deleted_at)`; snapshot objects from `creationTimestamp` (or −∞) to +∞. A record with
//!   `deleted_at` ends the interval and a deletion is final for a uid (uids are never
//!   reused): a later non-deleted record of it is ignored. A pod whose addresses go away
//!   while it exists (phase `Succeeded`/`Failed`: the kubelet released them) ends its
//!   interval at that record's `observed_at`. Labels and names are the object's latest.
//! - Per (cluster, IP) the table keeps every holder whose interval has not been pruned.
//!   [`ClusterTable::lookup`] answers with the holder whose interval contains the flow's
//!   time (`hit`). When several do (a record of the old holder's deletion has not arrived
//!   yet, a Service and a pod on one address), the strongest claim wins — a running pod,
//!   a terminating pod, a node, a Service, a hostNetwork pod's node, a finished pod — then
//!   the holder whose interval ends first (two pods cannot hold one address at once, so a
//!   pod known to have released it later held it earlier), then the newest.
//! - When no interval contains the time but the address had holders, the answer is the
//!   holder nearest in time, marked `stale`: the endpoint says who had the address just
//!   before or after, and that it was not them at the flow's time. It is never reported as
//!   a `hit`.
//! - Ended intervals are pruned once they end before the cluster's event-time horizon
//!   (see [`IdentityTable::prune`]); until then late flows still resolve to them.
//! - Keys are canonical (IPv4-mapped IPv6 is stored and looked up as IPv4) and scoped by
//!   cluster, because clusters may reuse pod CIDRs.
//!
//! Memory (target ≤ 300 bytes per pod, measured in BENCHMARKS.md): an object lives once in
//! a slab (its identity, interval, addresses and uid; a Kubernetes uuid is kept as 16
//! bytes), the address index maps an IPv4 address to a slab index in 8 bytes (module
//! `addresses`), the uid index is a raw hash table of slab indices hashed by the object's
//! own uid. What pods share is stored once and
//! reference-counted: one string per namespace, node, workload kind and name, one label
//! map per distinct label set, one [`Workload`] per (namespace, owner, service account).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::Arc;

use flowlake_identity::{Snapshot, SnapshotError};
use flowlake_schemas::{
    EnrichmentStatus, IdentityKind, IdentityRecord, Labels, OwnerRef, Timestamp,
};
use hashbrown::{DefaultHashBuilder, HashTable};

use crate::addresses::AddressIndex;
use crate::netsets::{Cidr, NetworkSet, PrefixMap};
use crate::pod_name::PodName;
use crate::settings::EnrichSettings;
use crate::slab::ChunkedSlab;
use crate::workload::{Interner, OwnerLink, owner_key, workload_of};

/// Interval bound for "since ever" (a snapshot object without `creationTimestamp`).
const SINCE_EVER: i64 = i64::MIN;
/// Interval bound for "still holds it".
const STILL_HELD: i64 = i64::MAX;
/// Pruned objects between two sweeps of the interner.
const INTERNER_SWEEP_EVERY: u64 = 4_096;

/// What the pods of one workload share.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Workload {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Workload kind: `Deployment`, `StatefulSet`, `DaemonSet`, `CronJob`, `Job`,
    /// `ReplicaSet` (no Deployment known), another controller's kind, or `Pod` for a pod
    /// without a controller.
    pub kind: Arc<str>,
    /// Workload name (the pod's own name for kind `Pod`).
    pub name: Arc<str>,
    /// Service account of the pods.
    pub service_account: Option<Arc<str>>,
}

/// A Kubernetes object uid: a uuid in 16 bytes, or any other text as given.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Uid {
    /// A lowercase hyphenated uuid (what the API server assigns).
    Uuid([u8; 16]),
    /// Anything else (test fixtures, `namespace/name` for objects without a uid).
    Text(Box<str>),
}

impl Uid {
    /// Parses `text`, keeping it compact when it is a canonical uuid.
    pub fn new(text: &str) -> Uid {
        parse_uuid(text).map_or_else(|| Uid::Text(text.into()), Uid::Uuid)
    }

    /// Calls `with_text` with the uid as text, formatting a uuid on the stack (the hot
    /// path writes a pod's uid into every record it enriches; `to_string` would allocate
    /// and go through `fmt` for each of the 16 bytes).
    pub fn with_text<R>(&self, with_text: impl FnOnce(&str) -> R) -> R {
        match self {
            Uid::Text(text) => with_text(text),
            Uid::Uuid(bytes) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let mut text = [b'-'; 36];
                let mut at = 0;
                for (i, byte) in bytes.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        at += 1;
                    }
                    text[at] = HEX[usize::from(byte >> 4)];
                    text[at + 1] = HEX[usize::from(byte & 0x0f)];
                    at += 2;
                }
                // Only ASCII hex digits and hyphens were written.
                with_text(std::str::from_utf8(&text).unwrap_or_default())
            }
        }
    }
}

fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 || [8, 13, 18, 23].iter().any(|&i| bytes[i] != b'-') {
        return None;
    }
    let mut out = [0u8; 16];
    let mut nibbles = bytes.iter().filter(|&&b| b != b'-');
    for byte in &mut out {
        let mut value = 0u8;
        for _ in 0..2 {
            let digit = match nibbles.next()? {
                d @ b'0'..=b'9' => d - b'0',
                d @ b'a'..=b'f' => d - b'a' + 10,
                // Upper case would not print back the same: keep it as text.
                _ => return None,
            };
            value = value << 4 | digit;
        }
        *byte = value;
    }
    Some(out)
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uid::Text(text) => f.write_str(text),
            Uid::Uuid(bytes) => {
                for (i, byte) in bytes.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }
    }
}

impl PartialEq<str> for Uid {
    fn eq(&self, other: &str) -> bool {
        match self {
            Uid::Text(text) => &**text == other,
            Uid::Uuid(bytes) => parse_uuid(other).as_ref() == Some(bytes),
        }
    }
}

/// A pod that holds an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodIdentity {
    /// Pod name (in place: see [`PodName`]).
    pub name: PodName,
    /// Node the pod runs on.
    pub node: Option<Arc<str>>,
    /// Pod labels (shared with every pod that has the same set).
    pub labels: Arc<Labels>,
    /// Namespace, owner and service account.
    pub workload: Arc<Workload>,
}

/// A node address (or a hostNetwork pod's, which is its node's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIdentity {
    /// Node name.
    pub name: Arc<str>,
    /// Node labels (empty when the node object was not known when the address was added).
    pub labels: Arc<Labels>,
}

/// A Service address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceIdentity {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Service name.
    pub name: Arc<str>,
}

/// What an address belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// A pod IP.
    Pod(PodIdentity),
    /// A node address.
    Node(NodeIdentity),
    /// A ClusterIP, external IP or load-balancer IP.
    Service(ServiceIdentity),
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Pod(pod) => write!(f, "pod {}/{}", pod.workload.namespace, pod.name),
            Identity::Node(node) => write!(f, "node {}", node.name),
            Identity::Service(service) => {
                write!(f, "service {}/{}", service.namespace, service.name)
            }
        }
    }
}

/// The answer of a lookup: the holder and whether it held the address at the time asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found<'a> {
    /// The holder's identity.
    pub identity: &'a Identity,
    /// The holder's uid (a pod's is the endpoint's `pod_uid`).
    pub uid: &'a Uid,
    /// `Hit` when the holder held the address at the time asked, `Stale` when it is only
    /// the nearest holder in time.
    pub status: EnrichmentStatus,
}

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
enum Claim {
    FinishedPod,
    HostNetworkPod,
    Service,
    Node,
    TerminatingPod,
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
struct Spec {
    kind: IdentityKind,
    uid: Uid,
    ips: Vec<IpAddr>,
    from: i64,
    deleted_at: Option<i64>,
    observed_at: i64,
    claim: Claim,
    identity: Identity,
}

/// One cluster's identities.
#[derive(Clone, Debug, Default)]
pub struct ClusterTable {
    objects: ChunkedSlab<Object>,
    free: Vec<u32>,
    by_uid: HashTable<u32>,
    hasher: DefaultHashBuilder,
    by_ip: AddressIndex,
    /// (interval end, slab index) of ended objects, earliest first.
    ended: BinaryHeap<Reverse<(i64, u32)>>,
    namespaces: HashMap<Arc<str>, Arc<Labels>>,
    node_labels: HashMap<Arc<str>, Arc<Labels>>,
    owners: HashMap<Box<str>, OwnerLink>,
    network_sets: PrefixMap<Arc<NetworkSet>>,
    network_set_cidrs: HashMap<Box<str>, Vec<Cidr>>,
    stats: TableStats,
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
    fn upsert(&mut self, spec: Spec) {
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
    fn prune(&mut self, horizon: Timestamp) -> u64 {
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

/// Identity of every known address, by cluster. See the module doc.
#[derive(Clone, Debug, Default)]
pub struct IdentityTable {
    /// Looked up by name for every flow: hashbrown's default hasher (foldhash) costs a
    /// fraction of std's SipHash on a short name.
    clusters: hashbrown::HashMap<Box<str>, ClusterTable>,
    interner: Interner,
    pruned_since_sweep: u64,
}

impl IdentityTable {
    /// A builder.
    pub fn builder() -> IdentityTableBuilder {
        IdentityTableBuilder::default()
    }

    /// Reads every configured snapshot and builds the table.
    pub fn load(settings: &EnrichSettings) -> Result<IdentityTable, SnapshotError> {
        let mut builder = IdentityTable::builder();
        for source in &settings.snapshots {
            let snapshot = Snapshot::read(&source.path)?;
            tracing::info!(
                cluster = %source.cluster_id,
                path = %source.path.display(),
                pods = snapshot.pods.len(),
                services = snapshot.services.len(),
                nodes = snapshot.nodes.len(),
                namespaces = snapshot.namespaces.len(),
                owners = snapshot.owners.len(),
                skipped = snapshot.skipped_total(),
                "read identity snapshot"
            );
            if !snapshot.skipped.is_empty() {
                tracing::debug!(path = %source.path.display(), skipped = ?snapshot.skipped, "skipped kinds enrich does not read");
            }
            builder.add_snapshot(&source.cluster_id, snapshot);
        }
        let table = builder.build();
        let stats = table.stats();
        tracing::info!(
            clusters = table.clusters.len(),
            pods = stats.pods,
            nodes = stats.nodes,
            services = stats.services,
            namespaces = stats.namespaces,
            conflicts = stats.conflicts,
            "identity table built"
        );
        Ok(table)
    }

    /// The holder of `ip` in `cluster` at `at`: `hit` when it held the address then,
    /// `stale` when it is only the nearest holder in time (see the module doc).
    pub fn lookup(&self, cluster: &str, ip: IpAddr, at: Timestamp) -> Option<Found<'_>> {
        self.clusters.get(cluster)?.lookup(ip, at)
    }

    /// One cluster's identities.
    pub fn cluster(&self, cluster: &str) -> Option<&ClusterTable> {
        self.clusters.get(cluster)
    }

    /// Labels of `namespace` in `cluster`, when the namespace is known.
    pub fn namespace_labels(&self, cluster: &str, namespace: &str) -> Option<&Labels> {
        self.clusters.get(cluster)?.namespace_labels(namespace)
    }

    /// Entry counts, summed over clusters.
    pub fn stats(&self) -> TableStats {
        let mut total = TableStats::default();
        for cluster in self.clusters.values() {
            let s = cluster.stats();
            total.pods += s.pods;
            total.nodes += s.nodes;
            total.services += s.services;
            total.namespaces += cluster.namespaces.len() as u64;
            total.owners += cluster.owners.len() as u64;
            total.network_sets += cluster.network_sets.len() as u64;
            total.addresses += cluster.by_ip.len() as u64;
            total.ended += s.ended;
            total.conflicts += s.conflicts;
            total.pruned += s.pruned;
            total.ignored += s.ignored;
        }
        total
    }

    /// Clusters with identities, sorted.
    pub fn clusters(&self) -> Vec<&str> {
        let mut clusters: Vec<&str> = self.clusters.keys().map(|c| c.as_ref()).collect();
        clusters.sort_unstable();
        clusters
    }

    /// Applies one identity record: upsert by (cluster, kind, uid); a record with
    /// `deleted_at` ends the object's interval (see the module doc).
    pub fn apply(&mut self, record: &IdentityRecord) {
        let interner = &mut self.interner;
        let cluster = {
            if !self.clusters.contains_key(record.cluster_id.as_str()) {
                self.clusters
                    .insert(record.cluster_id.as_str().into(), ClusterTable::default());
            }
            match self.clusters.get_mut(record.cluster_id.as_str()) {
                Some(cluster) => cluster,
                None => return,
            }
        };
        let uid = if record.uid.is_empty() {
            Uid::Text(
                format!(
                    "{}/{}",
                    record.namespace.as_deref().unwrap_or(""),
                    record.name
                )
                .into_boxed_str(),
            )
        } else {
            Uid::new(&record.uid)
        };
        let deleted_at = record.deleted_at.map(Timestamp::as_micros);
        let from = record.created_at.unwrap_or(record.observed_at).as_micros();
        let namespace = record.namespace.as_deref().unwrap_or_default();
        let ips: Vec<IpAddr> = record.ips.iter().map(|ip| ip.0).collect();
        let spec = |kind, claim, identity| Spec {
            kind,
            uid: uid.clone(),
            ips: ips.clone(),
            from,
            deleted_at,
            observed_at: record.observed_at.as_micros(),
            claim,
            identity,
        };
        match record.kind {
            IdentityKind::Pod => {
                let spec = if record.host_network {
                    let Some(node) = record.node.as_deref() else {
                        return;
                    };
                    let identity = node_identity(cluster, interner, node);
                    spec(
                        IdentityKind::Pod,
                        Claim::HostNetworkPod,
                        Identity::Node(identity),
                    )
                } else {
                    let identity = pod_identity(
                        cluster,
                        interner,
                        PodFields {
                            namespace,
                            name: &record.name,
                            owner: record.owner.as_ref(),
                            labels: &record.labels,
                            node: record.node.as_deref(),
                            service_account: record.service_account.as_deref(),
                        },
                    );
                    spec(IdentityKind::Pod, Claim::Pod, Identity::Pod(identity))
                };
                cluster.upsert(spec);
            }
            IdentityKind::Service => {
                let identity = ServiceIdentity {
                    namespace: interner.string(namespace),
                    name: interner.string(&record.name),
                };
                cluster.upsert(spec(
                    IdentityKind::Service,
                    Claim::Service,
                    Identity::Service(identity),
                ));
            }
            IdentityKind::Node => {
                let name = interner.string(&record.name);
                let labels = interner.labels(record.labels.clone());
                if deleted_at.is_some() {
                    cluster.node_labels.remove(&name);
                } else {
                    cluster
                        .node_labels
                        .insert(Arc::clone(&name), Arc::clone(&labels));
                }
                cluster.upsert(spec(
                    IdentityKind::Node,
                    Claim::Node,
                    Identity::Node(NodeIdentity { name, labels }),
                ));
            }
            IdentityKind::Namespace => {
                if deleted_at.is_some() {
                    cluster.namespaces.remove(record.name.as_str());
                } else {
                    let name = interner.string(&record.name);
                    let labels = interner.labels(record.labels.clone());
                    cluster.namespaces.insert(name, labels);
                }
            }
            IdentityKind::Owner => {
                let key = owner_key(&record.uid, namespace, &record.name);
                if deleted_at.is_some() {
                    cluster.owners.remove(&key);
                } else {
                    let controller = record
                        .owner
                        .as_ref()
                        .map(|o| (interner.string(&o.kind), interner.string(&o.name)));
                    cluster.owners.insert(key, OwnerLink { controller });
                }
            }
            IdentityKind::NetworkSet => apply_network_set(cluster, interner, record, deleted_at),
        }
    }

    /// Forgets, per cluster, objects whose interval ended before that cluster's horizon
    /// (`horizon(cluster)`; None keeps everything). Returns how many were pruned.
    pub fn prune(&mut self, mut horizon: impl FnMut(&str) -> Option<Timestamp>) -> u64 {
        let mut pruned = 0;
        for (name, cluster) in &mut self.clusters {
            if let Some(h) = horizon(name) {
                pruned += cluster.prune(h);
            }
        }
        self.pruned_since_sweep += pruned;
        if self.pruned_since_sweep >= INTERNER_SWEEP_EVERY {
            self.interner.collect();
            self.pruned_since_sweep = 0;
        }
        pruned
    }
}

/// The pod fields a [`PodIdentity`] is made of.
struct PodFields<'a> {
    namespace: &'a str,
    name: &'a str,
    owner: Option<&'a OwnerRef>,
    labels: &'a Labels,
    node: Option<&'a str>,
    service_account: Option<&'a str>,
}

fn pod_identity(
    cluster: &ClusterTable,
    interner: &mut Interner,
    pod: PodFields<'_>,
) -> PodIdentity {
    let (kind, name) = workload_of(
        pod.namespace,
        pod.name,
        pod.owner,
        pod.labels,
        &cluster.owners,
    );
    let workload = Workload {
        namespace: interner.string(pod.namespace),
        kind: interner.string(kind),
        name: interner.string(name),
        service_account: pod.service_account.map(|s| interner.string(s)),
    };
    PodIdentity {
        name: pod.name.into(),
        node: pod.node.map(|n| interner.string(n)),
        labels: interner.labels(pod.labels.clone()),
        workload: interner.workload(workload),
    }
}

fn node_identity(cluster: &ClusterTable, interner: &mut Interner, node: &str) -> NodeIdentity {
    let name = interner.string(node);
    let labels = match cluster.node_labels.get(&name) {
        Some(labels) => Arc::clone(labels),
        None => interner.labels(Labels::new()),
    };
    NodeIdentity { name, labels }
}

fn apply_network_set(
    cluster: &mut ClusterTable,
    interner: &mut Interner,
    record: &IdentityRecord,
    deleted_at: Option<i64>,
) {
    let key: Box<str> = owner_key(
        &record.uid,
        record.namespace.as_deref().unwrap_or_default(),
        &record.name,
    );
    if let Some(old) = cluster.network_set_cidrs.remove(&key) {
        for cidr in old {
            cluster.network_sets.remove(cidr);
        }
    }
    if deleted_at.is_some() {
        return;
    }
    let set = Arc::new(NetworkSet {
        name: interner.string(&record.name),
        namespace: record.namespace.as_deref().map(|n| interner.string(n)),
        labels: interner.labels(record.labels.clone()),
    });
    let mut cidrs = Vec::with_capacity(record.cidrs.len());
    for text in &record.cidrs {
        match text.parse::<Cidr>() {
            Ok(cidr) => {
                cluster.network_sets.insert(cidr, Arc::clone(&set));
                cidrs.push(cidr);
            }
            Err(e) => {
                cluster.stats.ignored += 1;
                tracing::warn!(cluster = %record.cluster_id, network_set = %record.name, error = %e, "network set CIDR ignored");
            }
        }
    }
    cluster.network_set_cidrs.insert(key, cidrs);
}

/// Collects snapshots per cluster and builds an [`IdentityTable`]. Owners are applied
/// first, so a cluster's pods and ReplicaSets may come from different files.
#[derive(Debug, Default)]
pub struct IdentityTableBuilder {
    clusters: std::collections::BTreeMap<String, Snapshot>,
}

impl IdentityTableBuilder {
    /// Adds the objects of one snapshot of `cluster_id`.
    pub fn add_snapshot(&mut self, cluster_id: &str, snapshot: Snapshot) {
        match self.clusters.get_mut(cluster_id) {
            Some(existing) => existing.merge(snapshot),
            None => {
                self.clusters.insert(cluster_id.to_owned(), snapshot);
            }
        }
    }

    /// Builds the table.
    pub fn build(self) -> IdentityTable {
        let mut table = IdentityTable::default();
        for (cluster_id, snapshot) in self.clusters {
            table.add_snapshot(&cluster_id, snapshot);
        }
        table
    }
}

impl IdentityTable {
    /// Adds one snapshot of `cluster_id`: its objects hold their addresses from their
    /// `creationTimestamp` (or since ever) on.
    pub fn add_snapshot(&mut self, cluster_id: &str, snapshot: Snapshot) {
        let Snapshot {
            pods,
            services,
            nodes,
            namespaces,
            owners,
            skipped: _,
        } = snapshot;
        let interner = &mut self.interner;
        if !self.clusters.contains_key(cluster_id) {
            self.clusters
                .insert(cluster_id.into(), ClusterTable::default());
        }
        let Some(cluster) = self.clusters.get_mut(cluster_id) else {
            return;
        };
        let uid_of = |uid: &str, namespace: &str, name: &str| {
            if uid.is_empty() {
                Uid::Text(format!("{namespace}/{name}").into_boxed_str())
            } else {
                Uid::new(uid)
            }
        };
        let spec = |kind, uid, ips, from: Option<Timestamp>, claim, identity| Spec {
            kind,
            uid,
            ips,
            from: from.map_or(SINCE_EVER, Timestamp::as_micros),
            deleted_at: None,
            observed_at: SINCE_EVER,
            claim,
            identity,
        };
        for owner in owners {
            let controller = owner
                .controller
                .as_ref()
                .map(|o| (interner.string(&o.kind), interner.string(&o.name)));
            cluster.owners.insert(
                owner_key(&owner.uid, &owner.namespace, &owner.name),
                OwnerLink { controller },
            );
        }
        for node in nodes {
            let name = interner.string(&node.name);
            let labels = interner.labels(node.labels);
            cluster
                .node_labels
                .insert(Arc::clone(&name), Arc::clone(&labels));
            let uid = uid_of(&node.uid, "", &node.name);
            let identity = Identity::Node(NodeIdentity { name, labels });
            cluster.upsert(spec(
                IdentityKind::Node,
                uid,
                node.ips,
                None,
                Claim::Node,
                identity,
            ));
        }
        for service in services {
            let identity = Identity::Service(ServiceIdentity {
                namespace: interner.string(&service.namespace),
                name: interner.string(&service.name),
            });
            let uid = uid_of(&service.uid, &service.namespace, &service.name);
            cluster.upsert(spec(
                IdentityKind::Service,
                uid,
                service.ips,
                None,
                Claim::Service,
                identity,
            ));
        }
        for pod in pods {
            let uid = uid_of(&pod.uid, &pod.namespace, &pod.name);
            let (claim, identity) = if pod.host_network {
                // The address is the node's; the pod does not own it.
                let Some(node_name) = &pod.node_name else {
                    continue;
                };
                let node = node_identity(cluster, interner, node_name);
                (Claim::HostNetworkPod, Identity::Node(node))
            } else {
                let claim = if pod.finished {
                    Claim::FinishedPod
                } else if pod.deleted_at.is_some() {
                    Claim::TerminatingPod
                } else {
                    Claim::Pod
                };
                let identity = pod_identity(
                    cluster,
                    interner,
                    PodFields {
                        namespace: &pod.namespace,
                        name: &pod.name,
                        owner: pod.controller.as_ref(),
                        labels: &pod.labels,
                        node: pod.node_name.as_deref(),
                        service_account: pod.service_account.as_deref(),
                    },
                );
                (claim, Identity::Pod(identity))
            };
            cluster.upsert(spec(
                IdentityKind::Pod,
                uid,
                pod.ips,
                pod.created_at,
                claim,
                identity,
            ));
        }
        for namespace in namespaces {
            let name = interner.string(&namespace.name);
            let labels = interner.labels(namespace.labels);
            cluster.namespaces.insert(name, labels);
        }
        cluster.by_ip.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::PathBuf;

    use flowlake_identity::{NodeObject, PodObject, ServiceObject};
    use proptest::prelude::*;

    use super::*;
    use crate::settings::SnapshotSource;
    use crate::test_support::{hubble_fixture, hubble_table, table};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const AT: Timestamp = Timestamp::from_secs(1_700_000_000);

    fn ip(text: &str) -> IpAddr {
        text.parse()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    fn pod_at<'t>(table: &'t IdentityTable, cluster: &str, addr: &str) -> Option<&'t PodIdentity> {
        match table.lookup(cluster, ip(addr), AT).map(|f| f.identity) {
            Some(Identity::Pod(pod)) => Some(pod),
            _ => None,
        }
    }

    fn workload_at(table: &IdentityTable, addr: &str) -> Option<(String, String)> {
        pod_at(table, "c", addr).map(|p| (p.workload.kind.to_string(), p.workload.name.to_string()))
    }

    fn pair(kind: &str, name: &str) -> Option<(String, String)> {
        Some((kind.to_owned(), name.to_owned()))
    }

    /// A pod item with an owner reference (or none when `owner_kind` is empty).
    fn pod_json(name: &str, addr: &str, owner_kind: &str, owner: &str, labels: &str) -> String {
        let owners = if owner_kind.is_empty() {
            String::new()
        } else {
            format!(
                r#", "ownerReferences": [{{"kind": "{owner_kind}", "name": "{owner}", "controller": true}}]"#
            )
        };
        format!(
            r#"{{"kind": "Pod", "metadata": {{"name": "{name}", "namespace": "ns", "uid": "uid-{name}",
                "labels": {{{labels}}}{owners}}},
                "spec": {{"nodeName": "n1", "serviceAccountName": "sa"}},
                "status": {{"phase": "Running", "podIP": "{addr}"}}}}"#
        )
    }

    fn list(items: &[String]) -> String {
        format!(r#"{{"kind": "List", "items": [{}]}}"#, items.join(","))
    }

    #[test]
    fn uid_text_is_its_display() {
        for text in [
            "0b8c5f1e-2d3c-4e5f-8a9b-0c1d2e3f4a5b",
            "kp-uid",
            "ns/name",
            "",
        ] {
            let uid = Uid::new(text);
            assert_eq!(uid.with_text(str::to_owned), text);
            assert_eq!(uid.with_text(str::to_owned), uid.to_string());
        }
        assert!(matches!(
            Uid::new("0b8c5f1e-2d3c-4e5f-8a9b-0c1d2e3f4a5b"),
            Uid::Uuid(_)
        ));
    }

    #[test]
    fn workloads_are_named_after_the_top_controller() -> TestResult {
        let items = [
            // ReplicaSet of a Deployment, known by the pod-template-hash label.
            pod_json("web-6b7f9c8d5-abcde", "10.0.0.1", "ReplicaSet", "web-6b7f9c8d5", r#""pod-template-hash": "6b7f9c8d5""#),
            // A bare ReplicaSet: no label says a Deployment made it.
            pod_json("rs-only-xk2p4", "10.0.0.2", "ReplicaSet", "rs-only", r#""app": "x""#),
            // A label that does not match the name proves nothing.
            pod_json("api-5d8f-aaaaa", "10.0.0.3", "ReplicaSet", "api-5d8f", r#""pod-template-hash": "0000""#),
            // The ReplicaSet item names its Deployment, whatever the labels.
            pod_json("pay-1a2b-bbbbb", "10.0.0.4", "ReplicaSet", "pay-1a2b", ""),
            // Jobs: CronJob by name when the Job item is absent...
            pod_json("backup-28734120-q8z2m", "10.0.0.5", "Job", "backup-28734120", ""),
            // ...but not for a short numeric suffix...
            pod_json("migrate-2-lm3nq", "10.0.0.6", "Job", "migrate-2", ""),
            // ...and the Job item decides when present.
            pod_json("report-28734120-zzzzz", "10.0.0.7", "Job", "report-28734120", ""),
            pod_json("nightly-x7-ppppp", "10.0.0.8", "Job", "nightly-x7", ""),
            pod_json("db-0", "10.0.0.9", "StatefulSet", "db", ""),
            pod_json("agent-7xq2p", "10.0.0.10", "DaemonSet", "agent", ""),
            pod_json("debug", "10.0.0.11", "", "", ""),
            pod_json("etcd-n1", "10.0.0.12", "Node", "n1", ""),
            r#"{"kind": "ReplicaSet", "metadata": {"name": "pay-1a2b", "namespace": "ns",
                "ownerReferences": [{"kind": "Deployment", "name": "payments", "controller": true}]}}"#.to_owned(),
            r#"{"kind": "Job", "metadata": {"name": "report-28734120", "namespace": "ns"}}"#.to_owned(),
            r#"{"kind": "Job", "metadata": {"name": "nightly-x7", "namespace": "ns",
                "ownerReferences": [{"kind": "CronJob", "name": "nightly", "controller": true}]}}"#.to_owned(),
        ];
        let table = table("c", &list(&items))?;
        assert_eq!(workload_at(&table, "10.0.0.1"), pair("Deployment", "web"));
        assert_eq!(
            workload_at(&table, "10.0.0.2"),
            pair("ReplicaSet", "rs-only")
        );
        assert_eq!(
            workload_at(&table, "10.0.0.3"),
            pair("ReplicaSet", "api-5d8f")
        );
        assert_eq!(
            workload_at(&table, "10.0.0.4"),
            pair("Deployment", "payments")
        );
        assert_eq!(workload_at(&table, "10.0.0.5"), pair("CronJob", "backup"));
        assert_eq!(workload_at(&table, "10.0.0.6"), pair("Job", "migrate-2"));
        assert_eq!(
            workload_at(&table, "10.0.0.7"),
            pair("Job", "report-28734120")
        );
        assert_eq!(workload_at(&table, "10.0.0.8"), pair("CronJob", "nightly"));
        assert_eq!(workload_at(&table, "10.0.0.9"), pair("StatefulSet", "db"));
        assert_eq!(workload_at(&table, "10.0.0.10"), pair("DaemonSet", "agent"));
        assert_eq!(workload_at(&table, "10.0.0.11"), pair("Pod", "debug"));
        assert_eq!(workload_at(&table, "10.0.0.12"), pair("Pod", "etcd-n1"));

        let web = pod_at(&table, "c", "10.0.0.1").ok_or("no pod at 10.0.0.1")?;
        assert_eq!(&*web.name, "web-6b7f9c8d5-abcde");
        let found = table.lookup("c", ip("10.0.0.1"), AT).ok_or("no 10.0.0.1")?;
        assert_eq!(found.uid.to_string(), "uid-web-6b7f9c8d5-abcde");
        assert_eq!(web.node.as_deref(), Some("n1"));
        assert_eq!(&*web.workload.namespace, "ns");
        assert_eq!(web.workload.service_account.as_deref(), Some("sa"));
        Ok(())
    }

    #[test]
    fn pods_of_one_workload_share_labels_and_workload() -> TestResult {
        let labels = r#""app": "web", "pod-template-hash": "6b7f9c8d5""#;
        let items = [
            pod_json(
                "web-6b7f9c8d5-aaaaa",
                "10.0.0.1",
                "ReplicaSet",
                "web-6b7f9c8d5",
                labels,
            ),
            pod_json(
                "web-6b7f9c8d5-bbbbb",
                "10.0.0.2",
                "ReplicaSet",
                "web-6b7f9c8d5",
                labels,
            ),
        ];
        let table = table("c", &list(&items))?;
        let a = pod_at(&table, "c", "10.0.0.1").ok_or("no pod a")?;
        let b = pod_at(&table, "c", "10.0.0.2").ok_or("no pod b")?;
        assert!(Arc::ptr_eq(&a.labels, &b.labels));
        assert!(Arc::ptr_eq(&a.workload, &b.workload));
        assert!(Arc::ptr_eq(&a.workload.namespace, &b.workload.namespace));
        Ok(())
    }

    #[test]
    fn an_entry_stays_small() {
        // The per-pod memory budget (≤ 300 bytes, see the module doc and BENCHMARKS.md)
        // leaves this much for the slab object (with the pod's name in place, see
        // `PodName`); the rest is the address index (8 bytes an IPv4 entry), the tables'
        // slack and the uid index.
        let object = std::mem::size_of::<Option<Object>>();
        assert!(object <= 144, "{object} bytes");
    }

    #[test]
    fn host_network_pods_resolve_to_their_node() -> TestResult {
        let mut host = pod_json(
            "kube-proxy-abcde",
            "192.168.0.10",
            "DaemonSet",
            "kube-proxy",
            "",
        );
        host = host.replace(
            r#""nodeName": "n1""#,
            r#""nodeName": "n1", "hostNetwork": true"#,
        );
        let mut orphan = pod_json(
            "exporter-zzzzz",
            "192.168.0.11",
            "DaemonSet",
            "exporter",
            "",
        );
        orphan = orphan.replace(
            r#""nodeName": "n1""#,
            r#""nodeName": "n2", "hostNetwork": true"#,
        );
        let node =
            r#"{"kind": "Node", "metadata": {"name": "n1", "labels": {"zone": "a"}}}"#.to_owned();
        let table = table("c", &list(&[host, orphan, node]))?;
        match table
            .lookup("c", ip("192.168.0.10"), AT)
            .map(|f| f.identity)
        {
            Some(Identity::Node(node)) => {
                assert_eq!(&*node.name, "n1");
                assert_eq!(node.labels.get("zone"), Some("a"));
            }
            other => panic!("expected node n1, got {other:?}"),
        }
        // Node n2 is not in the snapshot: its name still comes from the pod.
        match table
            .lookup("c", ip("192.168.0.11"), AT)
            .map(|f| f.identity)
        {
            Some(Identity::Node(node)) => {
                assert_eq!(&*node.name, "n2");
                assert!(node.labels.is_empty());
            }
            other => panic!("expected node n2, got {other:?}"),
        }
        // Two hostNetwork pods, one node object; both addresses resolve to nodes.
        assert_eq!(table.stats().pods, 2);
        assert_eq!(table.stats().nodes, 1);
        assert_eq!(table.stats().addresses, 2);
        Ok(())
    }

    #[test]
    fn a_live_pod_wins_over_a_finished_one_and_the_newest_wins_among_equals() -> TestResult {
        let finished = pod_json("job-1-aaaaa", "10.0.0.1", "", "", "")
            .replace(r#""phase": "Running""#, r#""phase": "Succeeded""#);
        let running = pod_json("web-bbbbb", "10.0.0.1", "", "", "");
        for items in [[finished.clone(), running.clone()], [running, finished]] {
            let table = table("c", &list(&items))?;
            assert_eq!(
                pod_at(&table, "c", "10.0.0.1").map(|p| &*p.name),
                Some("web-bbbbb")
            );
            assert_eq!(table.stats().conflicts, 1);
        }
        let older = pod_json("old", "10.0.0.2", "", "", "").replace(
            r#""uid": "uid-old""#,
            r#""uid": "uid-old", "creationTimestamp": "2023-01-01T00:00:00Z""#,
        );
        let newer = pod_json("new", "10.0.0.2", "", "", "").replace(
            r#""uid": "uid-new""#,
            r#""uid": "uid-new", "creationTimestamp": "2023-01-02T00:00:00Z""#,
        );
        let table = table("c", &list(&[newer, older]))?;
        assert_eq!(
            pod_at(&table, "c", "10.0.0.2").map(|p| &*p.name),
            Some("new")
        );
        Ok(())
    }

    #[test]
    fn clusters_are_separate_and_keys_canonical() -> TestResult {
        let mut builder = IdentityTable::builder();
        builder.add_snapshot(
            "a",
            crate::test_support::snapshot(&list(&[pod_json("pa", "10.0.0.1", "", "", "")]))?,
        );
        builder.add_snapshot(
            "b",
            crate::test_support::snapshot(&list(&[pod_json("pb", "10.0.0.1", "", "", "")]))?,
        );
        // A second file of cluster a adds to it.
        builder.add_snapshot(
            "a",
            crate::test_support::snapshot(&list(&[pod_json(
                "pa2",
                "::ffff:10.0.0.2",
                "",
                "",
                "",
            )]))?,
        );
        let table = builder.build();
        assert_eq!(
            pod_at(&table, "a", "10.0.0.1").map(|p| &*p.name),
            Some("pa")
        );
        assert_eq!(
            pod_at(&table, "b", "10.0.0.1").map(|p| &*p.name),
            Some("pb")
        );
        assert!(table.lookup("c", ip("10.0.0.1"), AT).is_none());
        // Stored and looked up canonically, whichever way either side wrote it.
        assert_eq!(
            pod_at(&table, "a", "10.0.0.2").map(|p| &*p.name),
            Some("pa2")
        );
        assert_eq!(
            pod_at(&table, "a", "::ffff:10.0.0.1").map(|p| &*p.name),
            Some("pa")
        );
        assert_eq!(table.clusters(), vec!["a", "b"]);
        assert_eq!(table.stats().pods, 3);
        Ok(())
    }

    #[test]
    fn hubble_fixture_resolves_the_sample_endpoints() -> TestResult {
        let table = hubble_table("kind-kind")?;
        let c = "kind-kind";

        // hubble_otel_basic_10: a Deployment pod on the observing GKE node.
        let reviews = pod_at(&table, c, "10.0.2.16").ok_or("reviews-v1")?;
        assert_eq!(&*reviews.name, "reviews-v1-545db77b95-s6jb8");
        assert_eq!(&*reviews.workload.namespace, "bookinfo");
        assert_eq!(
            (&*reviews.workload.kind, &*reviews.workload.name),
            ("Deployment", "reviews-v1")
        );
        assert_eq!(
            reviews.workload.service_account.as_deref(),
            Some("bookinfo-reviews")
        );
        assert_eq!(
            reviews.node.as_deref(),
            Some("gke-ilya-otel-demo-1-ilya-otel-demo-1-6114bb84-zr1l")
        );
        assert_eq!(reviews.labels.get("app"), Some("reviews"));

        // hubble_otel_http_5: shown as reserved:world with a pod name; the pod is known here.
        let kube_dns = pod_at(&table, c, "10.156.3.6").ok_or("kube-dns")?;
        assert_eq!(
            (&*kube_dns.workload.kind, &*kube_dns.workload.name),
            ("Deployment", "kube-dns")
        );
        assert_eq!(kube_dns.node, None);
        let node_local = pod_at(&table, c, "10.156.0.2").ok_or("node-local-dns")?;
        assert_eq!(
            (&*node_local.workload.kind, &*node_local.workload.name),
            ("DaemonSet", "node-local-dns")
        );

        // cilium_docs_export_dropped: a bare pod and a Deployment pod.
        let xwing = pod_at(&table, c, "10.244.1.60").ok_or("xwing")?;
        assert_eq!(
            (&*xwing.workload.kind, &*xwing.workload.name),
            ("Pod", "xwing")
        );
        let deathstar = pod_at(&table, c, "10.244.1.5").ok_or("deathstar")?;
        assert_eq!(
            (&*deathstar.workload.kind, &*deathstar.workload.name),
            ("Deployment", "deathstar")
        );

        // reserved:host / remote-node / health addresses are the nodes'. 172.19.0.3 is also
        // the hostNetwork kube-apiserver pod's, which must not take it.
        for (addr, node) in [
            ("172.19.0.3", "kind-control-plane"),
            ("10.244.0.148", "kind-control-plane"),
            ("10.244.0.160", "kind-control-plane"),
            ("10.244.1.29", "kind-worker"),
            ("10.244.1.204", "kind-worker"),
            (
                "10.0.2.1",
                "gke-ilya-otel-demo-1-ilya-otel-demo-1-6114bb84-zr1l",
            ),
        ] {
            match table.lookup(c, ip(addr), AT).map(|f| f.identity) {
                Some(Identity::Node(n)) => assert_eq!(&*n.name, node, "{addr}"),
                other => panic!("{addr}: expected node {node}, got {other:?}"),
            }
        }
        match table.lookup(c, ip("10.96.0.10"), AT).map(|f| f.identity) {
            Some(Identity::Service(s)) => {
                assert_eq!((&*s.namespace, &*s.name), ("kube-system", "kube-dns"))
            }
            other => panic!("expected kube-dns Service, got {other:?}"),
        }
        // reserved:world addresses are nobody's.
        for addr in [
            "35.246.31.234",
            "10.128.0.4",
            "fe80::64d8:8aff:fe72:fc14",
            "ff02::2",
        ] {
            assert!(table.lookup(c, ip(addr), AT).is_none(), "{addr}");
        }
        assert_eq!(
            table.stats(),
            TableStats {
                // 22 pods with their own address and the hostNetwork kube-apiserver pod.
                pods: 23,
                nodes: 6,
                services: 2,
                namespaces: 5,
                addresses: 30,
                conflicts: 0,
                ..TableStats::default()
            }
        );
        assert_eq!(
            table
                .namespace_labels(c, "bookinfo")
                .and_then(|l| l.get("istio-injection")),
            Some("enabled")
        );
        Ok(())
    }

    #[test]
    fn load_reads_every_configured_snapshot() -> TestResult {
        let dir = tempfile::tempdir()?;
        let extra = dir.path().join("extra.json");
        std::fs::write(&extra, list(&[pod_json("solo", "10.9.9.9", "", "", "")]))?;
        let settings = EnrichSettings {
            snapshots: vec![
                SnapshotSource {
                    cluster_id: "kind".into(),
                    path: hubble_fixture(),
                },
                SnapshotSource {
                    cluster_id: "other".into(),
                    path: extra,
                },
            ],
            ..EnrichSettings::default()
        };
        let table = IdentityTable::load(&settings)?;
        assert_eq!(table.clusters(), vec!["kind", "other"]);
        assert!(pod_at(&table, "kind", "10.0.2.16").is_some());
        assert!(pod_at(&table, "other", "10.0.2.16").is_none());
        assert!(pod_at(&table, "other", "10.9.9.9").is_some());

        let missing = EnrichSettings {
            snapshots: vec![SnapshotSource {
                cluster_id: "x".into(),
                path: PathBuf::from("/nonexistent.json"),
            }],
            ..EnrichSettings::default()
        };
        match IdentityTable::load(&missing) {
            Err(SnapshotError::Read { path, .. }) => {
                assert_eq!(path, PathBuf::from("/nonexistent.json"))
            }
            other => panic!("expected a read error, got {other:?}"),
        }
        Ok(())
    }

    /// An object claiming an address, for the order-independence property.
    #[derive(Clone, Debug)]
    enum Claimant {
        Pod {
            ip: u8,
            finished: bool,
            terminating: bool,
        },
        HostNetworkPod {
            ip: u8,
        },
        Node {
            ip: u8,
        },
        Service {
            ip: u8,
        },
    }

    fn claimant() -> impl Strategy<Value = Claimant> {
        prop_oneof![
            (0u8..6, any::<bool>(), any::<bool>()).prop_map(|(ip, finished, terminating)| {
                Claimant::Pod {
                    ip,
                    finished,
                    terminating,
                }
            }),
            (0u8..6).prop_map(|ip| Claimant::HostNetworkPod { ip }),
            (0u8..6).prop_map(|ip| Claimant::Node { ip }),
            (0u8..6).prop_map(|ip| Claimant::Service { ip }),
        ]
    }

    fn snapshot_of(claimants: &[(usize, Claimant)]) -> Snapshot {
        let mut snapshot = Snapshot::default();
        let addr = |ip: u8| IpAddr::from([10, 0, 0, ip]);
        for (id, claimant) in claimants {
            // Distinct creation times: ties between equal claims are broken by file order,
            // which is the one thing allowed to depend on order.
            let created_at = Some(Timestamp::from_secs(1_000 + *id as i64));
            match claimant {
                Claimant::Pod {
                    ip,
                    finished,
                    terminating,
                } => snapshot.pods.push(PodObject {
                    namespace: "ns".into(),
                    name: format!("pod-{id}"),
                    ips: vec![addr(*ip)],
                    finished: *finished,
                    deleted_at: terminating.then_some(Timestamp::from_secs(5_000)),
                    created_at,
                    ..PodObject::default()
                }),
                Claimant::HostNetworkPod { ip } => snapshot.pods.push(PodObject {
                    namespace: "ns".into(),
                    name: format!("host-{id}"),
                    node_name: Some(format!("node-{id}")),
                    host_network: true,
                    ips: vec![addr(*ip)],
                    created_at,
                    ..PodObject::default()
                }),
                Claimant::Node { ip } => snapshot.nodes.push(NodeObject {
                    name: format!("node-{id}"),
                    ips: vec![addr(*ip)],
                    ..NodeObject::default()
                }),
                Claimant::Service { ip } => snapshot.services.push(ServiceObject {
                    namespace: "ns".into(),
                    name: format!("svc-{id}"),
                    ips: vec![addr(*ip)],
                    ..ServiceObject::default()
                }),
            }
        }
        snapshot
    }

    fn resolved(table: &IdentityTable) -> Vec<Option<String>> {
        (0u8..6)
            .map(|i| {
                table
                    .lookup("c", IpAddr::from([10, 0, 0, i]), AT)
                    .map(|f| f.identity.to_string())
            })
            .collect()
    }

    proptest! {
        /// Which object wins an address does not depend on the order of the file, as long
        /// as pods are told apart by creation time and other kinds never tie.
        #[test]
        fn the_winner_of_an_address_does_not_depend_on_file_order(
            claimants in proptest::collection::vec(claimant(), 1..12),
            seed in any::<u64>(),
        ) {
            // Nodes and Services of equal standing would tie on one address: keep at most
            // one of each per address.
            let mut seen = HashSet::new();
            let claimants: Vec<(usize, Claimant)> = claimants
                .into_iter()
                .enumerate()
                .filter(|(_, c)| match c {
                    Claimant::Node { ip } => seen.insert(("node", *ip)),
                    Claimant::Service { ip } => seen.insert(("svc", *ip)),
                    Claimant::HostNetworkPod { ip } => seen.insert(("host", *ip)),
                    Claimant::Pod { .. } => true,
                })
                .collect();
            let mut shuffled = claimants.clone();
            // A deterministic shuffle from the seed.
            let n = shuffled.len();
            let mut state = seed;
            for i in (1..n).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (state >> 33) as usize % (i + 1));
            }
            let build = |items: &[(usize, Claimant)]| {
                let mut builder = IdentityTable::builder();
                builder.add_snapshot("c", snapshot_of(items));
                builder.build()
            };
            let (a, b) = (build(&claimants), build(&shuffled));
            prop_assert_eq!(resolved(&a), resolved(&b));
            prop_assert_eq!(a.stats(), b.stats());
        }
    }
}
