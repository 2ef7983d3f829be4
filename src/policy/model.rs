//! What the policy commands know about a lake, folded so that memory grows with the number
//! of distinct edges and workloads, never with the number of rows read.
//!
//! * [`Edges`]: every `edges/` row of the time window, summed by [`EdgeKey`] (cluster,
//!   source, destination, port, protocol, observed action): flows, bytes, first/last seen.
//! * [`Inventory`]: from `flows/`, each workload's label sets (distinct sets, capped) and
//!   the addresses behind every non-pod peer of an edge (capped), which is what a selector
//!   or a CIDR is evaluated against. A workload the flows never showed has no label sets:
//!   selectors on it are uncertain, not false.
//!
//! Peers are named exactly as aggregate names the ends of an edge ([`Peer::from_endpoint`]
//! copies its rule), so a flow row and an edge row meet on the same key.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

/// Distinct label sets remembered per workload; beyond it the workload is marked varied.
pub const MAX_LABEL_SETS: usize = 16;
/// Addresses remembered per peer of an edge; beyond it CIDR questions become uncertain.
pub const MAX_ADDRESSES: usize = 64;

/// A label set (sorted).
pub type Labels = BTreeMap<String, String>;

/// One end of an edge: endpoint kind (`pod`, `node`, `service`, `host`, `network_set`,
/// `external_public`, `external_private`, `unknown`), namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Peer {
    /// Endpoint kind as the lake writes it.
    pub kind: String,
    /// Namespace (pods, services, namespaced network sets).
    pub namespace: Option<String>,
    /// Workload, node, service, network set or DNS name; `public`/`private` for unnamed
    /// external addresses.
    pub name: Option<String>,
}

/// The endpoint columns of one side of a `flows/` row, as far as peers need them.
#[derive(Debug, Default)]
pub struct EndpointColumns<'a> {
    /// `*_kind`.
    pub kind: &'a str,
    /// `*_namespace`.
    pub namespace: Option<&'a str>,
    /// `*_name`.
    pub name: Option<&'a str>,
    /// `*_workload_name`.
    pub workload_name: Option<&'a str>,
    /// `*_aggregated_name`.
    pub aggregated_name: Option<&'a str>,
    /// `*_node`.
    pub node: Option<&'a str>,
    /// `*_service_namespace`.
    pub service_namespace: Option<&'a str>,
    /// `*_service_name`.
    pub service_name: Option<&'a str>,
    /// `*_network_set`.
    pub network_set: Option<&'a str>,
    /// First of `*_dns_names`.
    pub first_dns_name: Option<&'a str>,
}

impl Peer {
    /// The peer aggregate would key this endpoint by (aggregate's `endpoint_names`).
    pub fn from_endpoint(e: &EndpointColumns<'_>) -> Peer {
        let own = |s: Option<&str>| s.map(str::to_owned);
        let (namespace, name) = match e.kind {
            "pod" => (
                own(e.namespace),
                own(e.workload_name.or(e.aggregated_name).or(e.name)),
            ),
            "node" => (None, own(e.node.or(e.name))),
            "service" => (
                own(e.namespace.or(e.service_namespace)),
                own(e.service_name.or(e.name)),
            ),
            "host" => (None, own(e.name.or(e.node))),
            "network_set" => (
                own(e.namespace),
                own(e.network_set.or(e.name).or(e.first_dns_name)),
            ),
            "external_public" => (
                None,
                own(e.network_set.or(e.first_dns_name).or(Some("public"))),
            ),
            "external_private" => (
                None,
                own(e.network_set.or(e.first_dns_name).or(Some("private"))),
            ),
            _ => (own(e.namespace), own(e.workload_name.or(e.aggregated_name))),
        };
        Peer {
            kind: e.kind.to_owned(),
            namespace,
            name,
        }
    }

    /// True for endpoints outside the cluster (external addresses and network sets).
    pub fn is_external(&self) -> bool {
        matches!(
            self.kind.as_str(),
            "external_public" | "external_private" | "network_set"
        )
    }

    /// True for a pod workload with a namespace and a name.
    pub fn is_workload(&self) -> bool {
        self.kind == "pod" && self.namespace.is_some() && self.name.is_some()
    }

    /// The DNS name of an external peer, when the lake named it by one.
    pub fn dns_name(&self) -> Option<&str> {
        let name = self.name.as_deref()?;
        let dns_like = self.is_external()
            && name.contains('.')
            && name.parse::<IpAddr>().is_err()
            && name.chars().any(|c| c.is_ascii_alphabetic());
        dns_like.then_some(name)
    }

    /// `namespace/name`, the bare name, or the kind: how people read the peer.
    pub fn display(&self) -> String {
        match (&self.namespace, &self.name) {
            (Some(ns), Some(name)) => format!("{ns}/{name}"),
            (None, Some(name)) => name.clone(),
            (Some(ns), None) => format!("{ns}/?"),
            (None, None) => format!("({})", self.kind),
        }
    }
}

/// The workload of a pod peer: (cluster, namespace, workload).
pub type WorkloadId = (String, String, String);

/// Key of a folded edge.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EdgeKey {
    /// Cluster.
    pub cluster: String,
    /// Source.
    pub src: Peer,
    /// Destination.
    pub dst: Peer,
    /// Destination port (ICMP type for ICMP), when known.
    pub port: Option<i32>,
    /// IANA protocol number, when known.
    pub protocol: Option<i32>,
    /// Observed action: `allow`, `deny`, `pass` or `unknown`.
    pub action: String,
}

/// What the lake saw of one edge: the evidence behind a rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evidence {
    /// Flows.
    pub flows: i64,
    /// Bytes both ways.
    pub bytes: i64,
    /// First seen, µs since the epoch.
    pub first_seen: i64,
    /// Last seen, µs since the epoch.
    pub last_seen: i64,
    /// The deciding policy the agent reported (smallest name when several).
    pub policy: Option<String>,
}

impl Evidence {
    /// Adds another row's (or edge's) evidence.
    pub fn absorb(&mut self, other: &Evidence) {
        if self.flows == 0 && self.first_seen == 0 && self.last_seen == 0 {
            self.first_seen = other.first_seen;
            self.last_seen = other.last_seen;
        } else {
            self.first_seen = self.first_seen.min(other.first_seen);
            self.last_seen = self.last_seen.max(other.last_seen);
        }
        self.flows = self.flows.saturating_add(other.flows);
        self.bytes = self.bytes.saturating_add(other.bytes);
        if let Some(p) = &other.policy
            && self.policy.as_ref().is_none_or(|mine| p < mine)
        {
            self.policy = Some(p.clone());
        }
    }
}

/// Edges of the window, summed by key.
pub type Edges = BTreeMap<EdgeKey, Evidence>;

/// Label sets seen for one workload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSets {
    /// Distinct label sets (at most [`MAX_LABEL_SETS`]).
    pub sets: BTreeSet<Labels>,
    /// More distinct sets were seen than are kept.
    pub overflowed: bool,
}

impl LabelSets {
    fn add(&mut self, labels: Labels) {
        if self.sets.contains(&labels) {
            return;
        }
        if self.sets.len() >= MAX_LABEL_SETS {
            self.overflowed = true;
        } else {
            self.sets.insert(labels);
        }
    }

    /// Labels every seen pod of the workload carries with the same value.
    pub fn common(&self) -> Labels {
        let mut sets = self.sets.iter();
        let Some(first) = sets.next() else {
            return Labels::new();
        };
        let mut common = first.clone();
        for set in sets {
            common.retain(|k, v| set.get(k) == Some(v));
        }
        common
    }
}

/// Addresses seen behind the two ends of one edge (only non-pod ends are recorded).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EdgeAddresses {
    /// Source addresses.
    pub src: BTreeSet<IpAddr>,
    /// Destination addresses.
    pub dst: BTreeSet<IpAddr>,
    /// More addresses were seen than are kept.
    pub overflowed: bool,
}

/// Labels and addresses, from the `flows/` dataset.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Label sets per workload.
    pub labels: HashMap<WorkloadId, LabelSets>,
    /// Every label key seen on any pod of a cluster.
    pub label_keys: HashMap<String, BTreeSet<String>>,
    /// Addresses per (cluster, source, destination).
    pub addresses: HashMap<(String, Peer, Peer), EdgeAddresses>,
    /// Rows of `flows/` read.
    pub rows: u64,
}

impl Inventory {
    /// Records that `peer` in `cluster` was seen with `labels`.
    pub fn add_labels(&mut self, cluster: &str, peer: &Peer, labels: Labels) {
        let (Some(ns), Some(name)) = (&peer.namespace, &peer.name) else {
            return;
        };
        if peer.kind != "pod" {
            return;
        }
        let keys = self.label_keys.entry(cluster.to_owned()).or_default();
        for key in labels.keys() {
            if !keys.contains(key) {
                keys.insert(key.clone());
            }
        }
        self.labels
            .entry((cluster.to_owned(), ns.clone(), name.clone()))
            .or_default()
            .add(labels);
    }

    /// Records the addresses behind the non-pod ends of the edge `src → dst`.
    pub fn add_addresses(
        &mut self,
        cluster: &str,
        src: &Peer,
        dst: &Peer,
        src_ip: Option<IpAddr>,
        dst_ip: Option<IpAddr>,
    ) {
        let src_ip = src_ip.filter(|_| src.kind != "pod");
        let dst_ip = dst_ip.filter(|_| dst.kind != "pod");
        if src_ip.is_none() && dst_ip.is_none() {
            return;
        }
        let entry = self
            .addresses
            .entry((cluster.to_owned(), src.clone(), dst.clone()))
            .or_default();
        for (set, ip) in [(&mut entry.src, src_ip), (&mut entry.dst, dst_ip)] {
            if let Some(ip) = ip
                && !set.contains(&ip)
            {
                if set.len() >= MAX_ADDRESSES {
                    entry.overflowed = true;
                } else {
                    set.insert(ip);
                }
            }
        }
    }

    /// The label sets of a workload, if the flows showed it.
    pub fn workload_labels(
        &self,
        cluster: &str,
        namespace: &str,
        name: &str,
    ) -> Option<&LabelSets> {
        self.labels
            .get(&(cluster.to_owned(), namespace.to_owned(), name.to_owned()))
    }

    /// True when some pod of `cluster` carried label `key`.
    pub fn cluster_has_key(&self, cluster: &str, key: &str) -> bool {
        self.label_keys
            .get(cluster)
            .is_some_and(|keys| keys.contains(key))
    }

    /// Addresses behind the ends of an edge.
    pub fn edge_addresses(&self, key: &EdgeKey) -> Option<&EdgeAddresses> {
        self.addresses
            .get(&(key.cluster.clone(), key.src.clone(), key.dst.clone()))
    }
}

/// `TCP`, `UDP`, `SCTP`, `ICMP`, `ICMPv6`, or the number.
pub fn protocol_name(protocol: Option<i32>) -> String {
    match protocol {
        Some(6) => "TCP".to_owned(),
        Some(17) => "UDP".to_owned(),
        Some(132) => "SCTP".to_owned(),
        Some(1) => "ICMP".to_owned(),
        Some(58) => "ICMPv6".to_owned(),
        Some(n) => n.to_string(),
        None => "any".to_owned(),
    }
}

/// The protocol number of a name (`TCP`, `udp`, `17`).
pub fn protocol_number(name: &str) -> Option<i32> {
    match name.to_ascii_uppercase().as_str() {
        "TCP" => Some(6),
        "UDP" => Some(17),
        "SCTP" => Some(132),
        "ICMP" => Some(1),
        "ICMPV6" => Some(58),
        other => other.parse().ok(),
    }
}

/// RFC 3339 (UTC, seconds) of µs since the epoch.
pub fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| micros.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn peers_are_named_like_aggregate_names_them() {
        let pod = EndpointColumns {
            kind: "pod",
            namespace: Some("shop"),
            name: Some("checkout-5f4c8d7f9-q8w4n"),
            workload_name: Some("checkout"),
            ..Default::default()
        };
        assert_eq!(Peer::from_endpoint(&pod).display(), "shop/checkout");
        let named = EndpointColumns {
            kind: "external_public",
            first_dns_name: Some("api.stripe.com"),
            ..Default::default()
        };
        let peer = Peer::from_endpoint(&named);
        assert_eq!(peer.dns_name(), Some("api.stripe.com"));
        let bare = EndpointColumns {
            kind: "external_public",
            ..Default::default()
        };
        let peer = Peer::from_endpoint(&bare);
        assert_eq!(peer.name.as_deref(), Some("public"));
        assert_eq!(peer.dns_name(), None);
    }

    #[test]
    fn label_sets_keep_what_every_pod_shares() {
        let mut sets = LabelSets::default();
        sets.add(labels(&[("app", "web"), ("pod-template-hash", "a")]));
        sets.add(labels(&[("app", "web"), ("pod-template-hash", "b")]));
        assert_eq!(sets.common(), labels(&[("app", "web")]));
        for i in 0..40 {
            sets.add(labels(&[("n", &i.to_string())]));
        }
        assert!(sets.overflowed);
        assert_eq!(sets.sets.len(), MAX_LABEL_SETS);
    }

    #[test]
    fn evidence_adds_up() {
        let mut e = Evidence::default();
        e.absorb(&Evidence {
            flows: 2,
            bytes: 10,
            first_seen: 50,
            last_seen: 60,
            policy: Some("b".into()),
        });
        e.absorb(&Evidence {
            flows: 3,
            bytes: 1,
            first_seen: 40,
            last_seen: 55,
            policy: Some("a".into()),
        });
        assert_eq!(
            e,
            Evidence {
                flows: 5,
                bytes: 11,
                first_seen: 40,
                last_seen: 60,
                policy: Some("a".into())
            }
        );
    }
}
