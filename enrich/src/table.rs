//! The identity table: (cluster, IP) → the pod, node or Service that holds the address.
//!
//! Invariant: a table is immutable once built, so lookups take no lock; a newer view of a
//! cluster is a new table swapped in behind an `Arc`. It knows nothing of where identity
//! came from: [`IdentityTableBuilder`] takes plain [`Snapshot`] objects, whichever source
//! produced them. Keys are canonical (IPv4-mapped IPv6 is stored and looked up as IPv4) and
//! scoped by cluster, because clusters may reuse pod CIDRs.
//!
//! When two objects claim one address, the one most likely to hold it now wins: a running
//! pod, then a terminating pod, a node address, a Service address, a hostNetwork pod's node,
//! and last a finished pod (whose IP the kubelet has released); among pods of equal standing
//! the newest. Claims are counted as conflicts.
//!
//! Memory (target ≤ 300 bytes per pod): an entry is 96 bytes inline, about 150 with the
//! hash table's slack; what pods share is stored once and reference-counted — one string
//! per namespace, node, workload kind and name, one label map per distinct label set, one
//! [`Workload`] per (namespace, owner, service account). A pod's own heap is its name and
//! uid (about 100 bytes with allocator overhead), so a pod costs about 250 bytes.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use flowlake_schemas::{Labels, Timestamp};

use crate::settings::EnrichSettings;
use crate::snapshot::{OwnerObject, PodObject, Snapshot, SnapshotError};

/// Label the Deployment controller puts on a ReplicaSet's pods; its value is the suffix of
/// the ReplicaSet name.
const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// The CronJob controller names Jobs `<cronjob>-<scheduled time>`, in minutes since the
/// epoch (seconds before Kubernetes 1.21): at least 8 digits for any date after 1990. A
/// shorter numeric suffix (`migrate-2`) is a hand-named Job, not a CronJob's.
const MIN_CRON_JOB_SUFFIX_DIGITS: usize = 8;

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

/// A pod that holds an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodIdentity {
    /// Pod name.
    pub name: Box<str>,
    /// Pod uid.
    pub uid: Box<str>,
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
    /// Node labels (empty when the node object was not in the snapshot).
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

/// How many entries a table holds, by kind, and what building it found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Addresses held by pods.
    pub pods: u64,
    /// Addresses held by nodes (node addresses and hostNetwork pods).
    pub nodes: u64,
    /// Addresses held by Services.
    pub services: u64,
    /// Namespaces.
    pub namespaces: u64,
    /// Addresses claimed by more than one object (the winner is kept, see the module doc).
    pub conflicts: u64,
}

/// One cluster's identities.
#[derive(Debug, Default)]
struct ClusterIdentities {
    by_ip: HashMap<IpAddr, Identity>,
    namespaces: HashMap<Arc<str>, Arc<Labels>>,
}

/// Identity of every known address, by cluster. Immutable; see the module doc.
#[derive(Debug, Default)]
pub struct IdentityTable {
    clusters: HashMap<Box<str>, ClusterIdentities>,
    stats: TableStats,
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

    /// The identity holding `ip` in `cluster` at `at`.
    pub fn lookup(&self, cluster: &str, ip: IpAddr, at: Timestamp) -> Option<&Identity> {
        // A snapshot describes one instant, so its entries answer for any time. The as-of
        // table keeps a validity interval per entry and will choose by `at`.
        let _ = at;
        self.clusters.get(cluster)?.by_ip.get(&ip.to_canonical())
    }

    /// Labels of `namespace` in `cluster`, when the namespace was in a snapshot.
    pub fn namespace_labels(&self, cluster: &str, namespace: &str) -> Option<&Labels> {
        self.clusters
            .get(cluster)?
            .namespaces
            .get(namespace)
            .map(|labels| labels.as_ref())
    }

    /// Entry counts.
    pub fn stats(&self) -> &TableStats {
        &self.stats
    }

    /// Clusters with at least one snapshot, sorted.
    pub fn clusters(&self) -> Vec<&str> {
        let mut clusters: Vec<&str> = self.clusters.keys().map(|c| c.as_ref()).collect();
        clusters.sort_unstable();
        clusters
    }
}

/// Collects snapshots per cluster and builds an [`IdentityTable`]. Owners are resolved when
/// the table is built, so a cluster's pods and ReplicaSets may come from different files.
#[derive(Debug, Default)]
pub struct IdentityTableBuilder {
    clusters: BTreeMap<String, Snapshot>,
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
        let mut interner = Interner::default();
        let mut stats = TableStats::default();
        let mut clusters = HashMap::with_capacity(self.clusters.len());
        for (cluster_id, snapshot) in self.clusters {
            let identities = build_cluster(&cluster_id, snapshot, &mut interner, &mut stats);
            for identity in identities.by_ip.values() {
                match identity {
                    Identity::Pod(_) => stats.pods += 1,
                    Identity::Node(_) => stats.nodes += 1,
                    Identity::Service(_) => stats.services += 1,
                }
            }
            stats.namespaces += identities.namespaces.len() as u64;
            clusters.insert(cluster_id.into_boxed_str(), identities);
        }
        IdentityTable { clusters, stats }
    }
}

/// How strongly an object's claim on an address says it holds it now; higher wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Claim {
    FinishedPod,
    HostNetworkPod,
    Service,
    Node,
    TerminatingPod,
    Pod,
}

struct Candidate {
    claim: Claim,
    created_at: Option<Timestamp>,
    identity: Identity,
}

fn build_cluster(
    cluster_id: &str,
    snapshot: Snapshot,
    interner: &mut Interner,
    stats: &mut TableStats,
) -> ClusterIdentities {
    let Snapshot {
        pods,
        services,
        nodes,
        namespaces,
        owners,
        skipped: _,
    } = snapshot;
    let owners_by_name: HashMap<(&str, &str, &str), &OwnerObject> = owners
        .iter()
        .map(|o| ((o.kind.as_str(), o.namespace.as_str(), o.name.as_str()), o))
        .collect();
    let mut claims: HashMap<IpAddr, Candidate> = HashMap::with_capacity(pods.len());
    let mut claim = |ip: IpAddr, candidate: Candidate| {
        insert_claim(cluster_id, &mut claims, ip, candidate, &mut stats.conflicts);
    };

    let mut node_identities: HashMap<String, NodeIdentity> = HashMap::with_capacity(nodes.len());
    for node in nodes {
        let identity = NodeIdentity {
            name: interner.string(&node.name),
            labels: interner.labels(node.labels),
        };
        for ip in node.ips {
            claim(
                ip,
                candidate(Claim::Node, None, Identity::Node(identity.clone())),
            );
        }
        node_identities.insert(node.name, identity);
    }

    for service in services {
        let identity = ServiceIdentity {
            namespace: interner.string(&service.namespace),
            name: interner.string(&service.name),
        };
        for ip in service.ips {
            claim(
                ip,
                candidate(Claim::Service, None, Identity::Service(identity.clone())),
            );
        }
    }

    for pod in pods {
        if pod.host_network {
            // The address is the node's; the pod does not own it.
            let Some(node_name) = &pod.node_name else {
                continue;
            };
            let identity = match node_identities.get(node_name) {
                Some(node) => node.clone(),
                None => NodeIdentity {
                    name: interner.string(node_name),
                    labels: interner.labels(Labels::new()),
                },
            };
            for &ip in &pod.ips {
                claim(
                    ip,
                    candidate(
                        Claim::HostNetworkPod,
                        None,
                        Identity::Node(identity.clone()),
                    ),
                );
            }
            continue;
        }
        let (workload_kind, workload_name) = workload_of(&pod, &owners_by_name);
        let workload = Workload {
            namespace: interner.string(&pod.namespace),
            kind: interner.string(workload_kind),
            name: interner.string(workload_name),
            service_account: pod.service_account.as_deref().map(|s| interner.string(s)),
        };
        let workload = interner.workload(workload);
        let standing = if pod.finished {
            Claim::FinishedPod
        } else if pod.deleted_at.is_some() {
            Claim::TerminatingPod
        } else {
            Claim::Pod
        };
        let identity = PodIdentity {
            name: pod.name.into_boxed_str(),
            uid: pod.uid.into_boxed_str(),
            node: pod.node_name.as_deref().map(|n| interner.string(n)),
            labels: interner.labels(pod.labels),
            workload,
        };
        for ip in pod.ips {
            claim(
                ip,
                candidate(standing, pod.created_at, Identity::Pod(identity.clone())),
            );
        }
    }

    let mut by_ip: HashMap<IpAddr, Identity> = claims
        .into_iter()
        .map(|(ip, candidate)| (ip, candidate.identity))
        .collect();
    by_ip.shrink_to_fit();
    let namespaces = namespaces
        .into_iter()
        .map(|ns| (interner.string(&ns.name), interner.labels(ns.labels)))
        .collect();
    ClusterIdentities { by_ip, namespaces }
}

fn candidate(claim: Claim, created_at: Option<Timestamp>, identity: Identity) -> Candidate {
    Candidate {
        claim,
        created_at,
        identity,
    }
}

fn insert_claim(
    cluster_id: &str,
    claims: &mut HashMap<IpAddr, Candidate>,
    ip: IpAddr,
    new: Candidate,
    conflicts: &mut u64,
) {
    match claims.entry(ip.to_canonical()) {
        Entry::Vacant(slot) => {
            slot.insert(new);
        }
        Entry::Occupied(mut slot) => {
            let current = slot.get_mut();
            if current.identity == new.identity {
                // The same object again (a node's hostNetwork pods, a repeated address).
                current.claim = current.claim.max(new.claim);
                return;
            }
            *conflicts += 1;
            let replace = (new.claim, new.created_at) > (current.claim, current.created_at);
            let (kept, dropped) = if replace {
                (&new.identity, &current.identity)
            } else {
                (&current.identity, &new.identity)
            };
            tracing::debug!(cluster = cluster_id, %ip, %kept, %dropped, "address claimed twice");
            if replace {
                *current = new;
            }
        }
    }
}

/// The workload kind and name of a pod, from its controlling owner.
fn workload_of<'a>(
    pod: &'a PodObject,
    owners: &HashMap<(&str, &str, &str), &'a OwnerObject>,
) -> (&'a str, &'a str) {
    let Some(owner) = &pod.controller else {
        return ("Pod", &pod.name);
    };
    let listed = owners.get(&(
        owner.kind.as_str(),
        pod.namespace.as_str(),
        owner.name.as_str(),
    ));
    match owner.kind.as_str() {
        // A mirror pod (static pod) is owned by its Node, which is not a workload.
        "Node" => ("Pod", &pod.name),
        "ReplicaSet" | "Job" => {
            if let Some(listed) = listed {
                // The owner is in the snapshot: its own controller (if any) is the workload.
                return match &listed.controller {
                    Some(top) if owner.kind == "ReplicaSet" || top.kind == "CronJob" => {
                        (&top.kind, &top.name)
                    }
                    _ => (&owner.kind, &owner.name),
                };
            }
            let inferred = if owner.kind == "ReplicaSet" {
                deployment_of(&owner.name, &pod.labels).map(|d| ("Deployment", d))
            } else {
                cron_job_of(&owner.name).map(|c| ("CronJob", c))
            };
            inferred.unwrap_or((&owner.kind, &owner.name))
        }
        _ => (&owner.kind, &owner.name),
    }
}

/// `reviews-v1` for ReplicaSet `reviews-v1-545db77b95` when the pod's `pod-template-hash`
/// label is `545db77b95` (the Deployment controller's naming).
fn deployment_of<'a>(replica_set: &'a str, labels: &Labels) -> Option<&'a str> {
    let (deployment, hash) = replica_set.rsplit_once('-')?;
    let hash_matches = labels
        .get(POD_TEMPLATE_HASH_LABEL)
        .is_some_and(|label| label == hash);
    (hash_matches && !deployment.is_empty()).then_some(deployment)
}

/// `backup` for Job `backup-28734120` (the CronJob controller's naming).
fn cron_job_of(job: &str) -> Option<&str> {
    let (cron_job, suffix) = job.rsplit_once('-')?;
    let scheduled =
        suffix.len() >= MIN_CRON_JOB_SUFFIX_DIGITS && suffix.bytes().all(|b| b.is_ascii_digit());
    (scheduled && !cron_job.is_empty()).then_some(cron_job)
}

/// Shares equal strings, label sets and workloads while a table is built.
#[derive(Default)]
struct Interner {
    strings: HashSet<Arc<str>>,
    labels: HashSet<Arc<Labels>>,
    workloads: HashSet<Arc<Workload>>,
}

impl Interner {
    fn string(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.strings.get(text) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(text);
        self.strings.insert(Arc::clone(&shared));
        shared
    }

    fn labels(&mut self, labels: Labels) -> Arc<Labels> {
        if let Some(shared) = self.labels.get(&labels) {
            return Arc::clone(shared);
        }
        let shared = Arc::new(labels);
        self.labels.insert(Arc::clone(&shared));
        shared
    }

    fn workload(&mut self, workload: Workload) -> Arc<Workload> {
        if let Some(shared) = self.workloads.get(&workload) {
            return Arc::clone(shared);
        }
        let shared = Arc::new(workload);
        self.workloads.insert(Arc::clone(&shared));
        shared
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use proptest::prelude::*;

    use super::*;
    use crate::settings::SnapshotSource;
    use crate::snapshot::{NodeObject, ServiceObject};
    use crate::test_support::{hubble_fixture, hubble_table, table};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const AT: Timestamp = Timestamp::from_secs(1_700_000_000);

    fn ip(text: &str) -> IpAddr {
        text.parse()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    fn pod_at<'t>(table: &'t IdentityTable, cluster: &str, addr: &str) -> Option<&'t PodIdentity> {
        match table.lookup(cluster, ip(addr), AT) {
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
        assert_eq!(&*web.uid, "uid-web-6b7f9c8d5-abcde");
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
        // The per-pod memory budget (≤ 300 bytes, see the module doc) leaves this much for
        // the inline entry; the rest is the hash table's slack and the pod's name and uid.
        let entry = std::mem::size_of::<(IpAddr, Identity)>();
        assert!(entry <= 96, "{entry} bytes");
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
        match table.lookup("c", ip("192.168.0.10"), AT) {
            Some(Identity::Node(node)) => {
                assert_eq!(&*node.name, "n1");
                assert_eq!(node.labels.get("zone").map(String::as_str), Some("a"));
            }
            other => panic!("expected node n1, got {other:?}"),
        }
        // Node n2 is not in the snapshot: its name still comes from the pod.
        match table.lookup("c", ip("192.168.0.11"), AT) {
            Some(Identity::Node(node)) => {
                assert_eq!(&*node.name, "n2");
                assert!(node.labels.is_empty());
            }
            other => panic!("expected node n2, got {other:?}"),
        }
        assert_eq!(table.stats().pods, 0);
        assert_eq!(table.stats().nodes, 2);
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
            r#""uid": "uid-old", "creationTimestamp": "2024-01-01T00:00:00Z""#,
        );
        let newer = pod_json("new", "10.0.0.2", "", "", "").replace(
            r#""uid": "uid-new""#,
            r#""uid": "uid-new", "creationTimestamp": "2024-01-02T00:00:00Z""#,
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
        assert_eq!(
            reviews.labels.get("app").map(String::as_str),
            Some("reviews")
        );

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
            match table.lookup(c, ip(addr), AT) {
                Some(Identity::Node(n)) => assert_eq!(&*n.name, node, "{addr}"),
                other => panic!("{addr}: expected node {node}, got {other:?}"),
            }
        }
        match table.lookup(c, ip("10.96.0.10"), AT) {
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
            *table.stats(),
            TableStats {
                pods: 22,
                nodes: 6,
                services: 2,
                namespaces: 5,
                conflicts: 0
            }
        );
        assert_eq!(
            table
                .namespace_labels(c, "bookinfo")
                .and_then(|l| l.get("istio-injection"))
                .map(String::as_str),
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
                    .map(|id| id.to_string())
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
