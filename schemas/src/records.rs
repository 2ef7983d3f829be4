//! The records that flow between stages, mirroring `avro/*.avsc` field for field and in
//! order (the schema-aware Avro serializer writes fields in declaration order, and enum
//! variants by their index: the Rust order of every enum below is its Avro symbol order).
//! Tests in `codec.rs` check both against the schema files, so the two cannot drift.
//!
//! Every struct is `#[serde(default)]` so that canonical JSON written by hand may leave out
//! anything optional; Avro always carries every field.

use serde::{Deserialize, Serialize};

use crate::values::{Ip, Timestamp};

pub use crate::labels::Labels;

/// Which side of the flow observed it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Reporter {
    /// Not known.
    #[default]
    Unknown,
    /// The source's node (egress side).
    Src,
    /// The destination's node (ingress side).
    Dst,
}

/// Policy verdict.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Not known (e.g. an agent that reports no verdict).
    #[default]
    Unknown,
    /// Allowed.
    Allow,
    /// Denied (dropped by policy or otherwise).
    Deny,
    /// A policy tier passed the decision to the next one (Calico).
    Pass,
}

/// What an endpoint resolved to.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum EndpointKind {
    /// Nothing known.
    #[default]
    Unknown,
    /// A pod.
    Pod,
    /// A node (node address, or a hostNetwork pod).
    Node,
    /// A Service address (ClusterIP, LoadBalancer, external IP).
    Service,
    /// A host outside Kubernetes that the agent knows (host endpoint).
    Host,
    /// A user-defined network set (CIDR → name).
    NetworkSet,
    /// A public address outside the cluster.
    ExternalPublic,
    /// A private address (RFC 1918, RFC 6598, ULA, loopback, link-local) outside the cluster.
    ExternalPrivate,
}

/// How an endpoint's identity was found.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum EnrichmentStatus {
    /// Nothing known about the address.
    #[default]
    Miss,
    /// Kubernetes identity valid at the flow's time.
    Hit,
    /// Only identity from outside the flow's time was known.
    Stale,
    /// The agent's own identity hint was kept.
    Hint,
}

/// Kind of object an [`IdentityRecord`] describes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    /// A pod.
    #[default]
    Pod,
    /// A Service.
    Service,
    /// A node.
    Node,
    /// A namespace.
    Namespace,
    /// A network set.
    NetworkSet,
    /// A workload owner (ReplicaSet, Deployment, Job, ...).
    Owner,
}

/// A policy rule that matched a flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyHit {
    /// Policy kind as the agent names it.
    pub kind: String,
    /// Calico tier.
    pub tier: Option<String>,
    /// Namespace of a namespaced policy.
    pub namespace: Option<String>,
    /// Policy name.
    pub name: String,
    /// What the matching rule did.
    pub action: Action,
    /// Index of the matching rule.
    pub rule_index: Option<i32>,
}

/// Identity an agent already knew about an endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointHint {
    /// Agent's endpoint kind.
    pub kind: Option<String>,
    /// Namespace.
    pub namespace: Option<String>,
    /// Endpoint or pod name.
    pub name: Option<String>,
    /// Aggregated name.
    pub aggregated_name: Option<String>,
    /// Labels.
    pub labels: Labels,
    /// Owning workload kind.
    pub workload_kind: Option<String>,
    /// Owning workload name.
    pub workload_name: Option<String>,
    /// Service namespace.
    pub service_namespace: Option<String>,
    /// Service name.
    pub service_name: Option<String>,
}

/// The label-key prefix of Cilium's reserved identities (`reserved:world`, `reserved:host`).
pub const RESERVED_LABEL_PREFIX: &str = "reserved:";

impl EndpointHint {
    /// True when the labels carry Cilium's reserved identity `name` (see
    /// [`is_reserved_label`]).
    pub fn has_reserved(&self, name: &str) -> bool {
        self.labels
            .iter()
            .any(|(key, value)| is_reserved_label(key.as_bytes(), value.as_bytes(), name))
    }
}

/// True when the label `key`=`value` says Cilium's reserved identity `name`: key
/// `reserved:<name>`, or key `reserved` with value `<name>`, also in the dual-stack variants
/// `<name>-ipv4` / `<name>-ipv6` (`reserved:world-ipv4`). On bytes, because enrich's fast
/// path reads labels undecoded.
pub fn is_reserved_label(key: &[u8], value: &[u8], name: &str) -> bool {
    let name = name.as_bytes();
    let reserved = key
        .strip_prefix(RESERVED_LABEL_PREFIX.as_bytes())
        .or_else(|| (key == b"reserved").then_some(value));
    reserved.is_some_and(|r| {
        r == name
            || r.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(b"-ipv"))
    })
}

/// A DNS answer seen in a flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsObservation {
    /// Queried name, without the trailing dot.
    pub query: String,
    /// Answer addresses.
    pub ips: Vec<Ip>,
    /// Answer TTL in seconds.
    pub ttl: Option<i64>,
}

/// One normalised flow observation (ingest → enrich).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FlowEvent {
    /// Stable id: the source's uuid, or a hash of the source record's content.
    pub event_id: String,
    /// Cluster that reported the flow.
    pub cluster_id: String,
    /// Input format the event was decoded from.
    pub source_format: String,
    /// Node whose agent reported the flow.
    pub reporter_node: Option<String>,
    /// Observing side.
    pub reporter: Reporter,
    /// Start of the observation interval.
    pub start_time: Timestamp,
    /// End of the observation interval.
    pub end_time: Timestamp,
    /// Source address.
    pub src_ip: Option<Ip>,
    /// Destination address.
    pub dst_ip: Option<Ip>,
    /// Source port.
    pub src_port: Option<i32>,
    /// Destination port (ICMP type for ICMP).
    pub dst_port: Option<i32>,
    /// IANA protocol number.
    pub protocol: Option<i32>,
    /// Verdict.
    pub action: Action,
    /// Why the flow was dropped.
    pub drop_reason: Option<String>,
    /// Bytes source → destination.
    pub bytes_out: i64,
    /// Bytes destination → source.
    pub bytes_in: i64,
    /// Packets source → destination.
    pub packets_out: i64,
    /// Packets destination → source.
    pub packets_in: i64,
    /// Connections started in the interval.
    pub connections_started: i64,
    /// Connections completed in the interval.
    pub connections_completed: i64,
    /// Connections still open at `end_time`.
    pub connections_live: i64,
    /// Enforced policy rules that matched, in evaluation order.
    pub policies_enforced: Vec<PolicyHit>,
    /// Staged policy rules that matched.
    pub policies_pending: Vec<PolicyHit>,
    /// Source identity as the agent knew it.
    pub src_hint: Option<EndpointHint>,
    /// Destination identity as the agent knew it.
    pub dst_hint: Option<EndpointHint>,
    /// DNS names the agent associated with the destination.
    pub dst_dns_names: Vec<String>,
    /// DNS answer carried by this flow.
    pub dns: Option<DnsObservation>,
}

/// Kubernetes identity of one end of a flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Endpoint {
    /// What the address resolved to.
    pub kind: EndpointKind,
    /// Namespace.
    pub namespace: Option<String>,
    /// Pod, node, service or network-set name.
    pub name: Option<String>,
    /// Pod uid.
    pub pod_uid: Option<String>,
    /// Owning workload kind.
    pub workload_kind: Option<String>,
    /// Owning workload name.
    pub workload_name: Option<String>,
    /// Name to group by when the workload is unknown.
    pub aggregated_name: Option<String>,
    /// Pod service account.
    pub service_account: Option<String>,
    /// Labels.
    pub labels: Labels,
    /// Node.
    pub node: Option<String>,
    /// Service namespace.
    pub service_namespace: Option<String>,
    /// Service name.
    pub service_name: Option<String>,
    /// Network set containing the address.
    pub network_set: Option<String>,
    /// DNS names learned for the address.
    pub dns_names: Vec<String>,
    /// How the identity was found.
    pub status: EnrichmentStatus,
}

/// A flow with the identity of both ends (enrich → aggregate, sink).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EnrichedFlow {
    /// The flow as ingest produced it.
    pub flow: FlowEvent,
    /// Source identity.
    pub src: Endpoint,
    /// Destination identity.
    pub dst: Endpoint,
}

/// One flow-graph edge in one event-time window (aggregate → sink).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FlowEdge {
    /// Cluster.
    pub cluster_id: String,
    /// Window start (inclusive).
    pub window_start: Timestamp,
    /// Window end (exclusive).
    pub window_end: Timestamp,
    /// 0 = on time; > 0 = additive late correction.
    pub revision: i32,
    /// Source kind.
    pub src_kind: EndpointKind,
    /// Source namespace.
    pub src_namespace: Option<String>,
    /// Source workload.
    pub src_workload: Option<String>,
    /// Destination kind.
    pub dst_kind: EndpointKind,
    /// Destination namespace.
    pub dst_namespace: Option<String>,
    /// Destination workload, or network set / DNS name / public / private for external ones.
    pub dst_workload: Option<String>,
    /// Destination Service (namespace/name).
    pub dst_service: Option<String>,
    /// Destination port.
    pub dst_port: Option<i32>,
    /// IANA protocol number.
    pub protocol: Option<i32>,
    /// Verdict.
    pub action: Action,
    /// Observing side.
    pub reporter: Reporter,
    /// Deciding policy.
    pub policy: Option<String>,
    /// Flow records folded in.
    pub flows: i64,
    /// Connections started.
    pub connections_started: i64,
    /// Connections completed.
    pub connections_completed: i64,
    /// Bytes source → destination.
    pub bytes_out: i64,
    /// Bytes destination → source.
    pub bytes_in: i64,
    /// Packets source → destination.
    pub packets_out: i64,
    /// Packets destination → source.
    pub packets_in: i64,
    /// Earliest flow start.
    pub first_seen: Timestamp,
    /// Latest flow end.
    pub last_seen: Timestamp,
    /// Distinct source pods (bounded).
    pub distinct_src_pods: i64,
}

/// Controlling owner reference of an object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OwnerRef {
    /// Owner kind.
    pub kind: String,
    /// Owner name.
    pub name: String,
    /// Owner uid.
    pub uid: String,
}

/// One Kubernetes object's identity (`k8s.identity`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IdentityRecord {
    /// Cluster.
    pub cluster_id: String,
    /// Object kind.
    pub kind: IdentityKind,
    /// Object uid.
    pub uid: String,
    /// Namespace.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// Addresses.
    pub ips: Vec<Ip>,
    /// CIDRs (network sets).
    pub cidrs: Vec<String>,
    /// Labels.
    pub labels: Labels,
    /// Controlling owner.
    pub owner: Option<OwnerRef>,
    /// Pod uses the host network.
    pub host_network: bool,
    /// Node a pod runs on.
    pub node: Option<String>,
    /// Pod service account.
    pub service_account: Option<String>,
    /// Creation time.
    pub created_at: Option<Timestamp>,
    /// Deletion time; None while alive.
    pub deleted_at: Option<Timestamp>,
    /// When the publisher observed this state.
    pub observed_at: Timestamp,
}
