//! The flow-graph edge: which flows are folded together ([`EdgeKey`]) and what is summed
//! ([`EdgeValue`]).
//!
//! Invariant: the key names workloads, never individual pods or addresses, so the number of
//! edges grows with the number of workloads and not with pod churn or traffic. A pod is
//! named by its workload (falling back to its aggregated name, then its name, for bare
//! pods); a node or Service by its own name; an external destination by its network set,
//! else its first DNS name, else `public`/`private`. Pod identity survives only as the
//! bounded `distinct_src_pods` count. Values are additive, so rows with equal keys and
//! windows (from different input partitions, or corrections) are summed downstream.

use std::hash::{DefaultHasher, Hash, Hasher};

use flowlake_schemas::{
    Action, Endpoint, EndpointKind, EnrichedFlow, FlowEdge, Reporter, Timestamp,
};
use serde::{Deserialize, Serialize};

/// Everything that identifies a flow-graph edge within a window.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EdgeKey {
    /// Cluster.
    pub cluster_id: String,
    /// Source endpoint kind.
    pub src_kind: EndpointKind,
    /// Source namespace (None for cluster-scoped and external endpoints).
    pub src_namespace: Option<String>,
    /// Source workload name (see the module doc).
    pub src_workload: Option<String>,
    /// Destination endpoint kind.
    pub dst_kind: EndpointKind,
    /// Destination namespace.
    pub dst_namespace: Option<String>,
    /// Destination workload, or network set / DNS name / `public` / `private`.
    pub dst_workload: Option<String>,
    /// Destination Service as `namespace/name`.
    pub dst_service: Option<String>,
    /// Destination port.
    pub dst_port: Option<i32>,
    /// IANA protocol number.
    pub protocol: Option<i32>,
    /// Verdict.
    pub action: Action,
    /// Observing side.
    pub reporter: Reporter,
    /// Deciding policy as `tier/namespace/name`, absent parts left out.
    pub policy: Option<String>,
}

/// The additive values of one edge in one window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeValue {
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
    /// Sorted 64-bit hashes of the distinct source pods seen, at most the configured bound.
    /// Hashes rather than uids keep an edge at 8 bytes per pod; two uids colliding among
    /// 64 has a probability below 1e-16.
    src_pods: Vec<u64>,
}

/// A flow split into the parts the window state keeps, its key borrowed from the flow (or
/// the message it is read from): folding into an existing edge copies no string.
#[derive(Debug)]
pub struct Folded<'a> {
    /// Edge key.
    pub key: EdgeKeyRef<'a>,
    /// The flow's contribution, without its source pod (kept apart so that folding into
    /// an existing edge allocates nothing).
    pub value: EdgeValue,
    /// Hash of the source pod, when the source is a pod.
    pub src_pod: Option<u64>,
}

impl<'a> Folded<'a> {
    /// Splits a decoded `flow`.
    pub fn from_flow(flow: &'a EnrichedFlow) -> Folded<'a> {
        let f = &flow.flow;
        let policy = f
            .policies_enforced
            .last()
            .and_then(|hit| policy_name(hit.tier.as_deref(), hit.namespace.as_deref(), &hit.name));
        let parts = FlowParts {
            cluster_id: &f.cluster_id,
            reporter: f.reporter,
            action: f.action,
            dst_port: f.dst_port,
            protocol: f.protocol,
            policy,
            connections_started: f.connections_started,
            connections_completed: f.connections_completed,
            bytes_out: f.bytes_out,
            bytes_in: f.bytes_in,
            packets_out: f.packets_out,
            packets_in: f.packets_in,
            start_time: f.start_time,
            end_time: f.end_time,
        };
        Folded::new(
            parts,
            EndpointParts::from(&flow.src),
            EndpointParts::from(&flow.dst),
        )
    }

    /// Splits a flow from its parts: the one place the key is derived from a flow.
    pub fn new(flow: FlowParts<'a>, src: EndpointParts<'a>, dst: EndpointParts<'a>) -> Folded<'a> {
        let (src_namespace, src_workload) = src.names();
        let (dst_namespace, dst_workload) = dst.names();
        Folded {
            key: EdgeKeyRef {
                cluster_id: flow.cluster_id,
                src_kind: src.kind,
                src_namespace,
                src_workload,
                dst_kind: dst.kind,
                dst_namespace,
                dst_workload,
                dst_service: dst.service(),
                dst_port: flow.dst_port,
                protocol: flow.protocol,
                action: flow.action,
                reporter: flow.reporter,
                policy: flow.policy,
            },
            value: EdgeValue {
                flows: 1,
                connections_started: flow.connections_started,
                connections_completed: flow.connections_completed,
                bytes_out: flow.bytes_out,
                bytes_in: flow.bytes_in,
                packets_out: flow.packets_out,
                packets_in: flow.packets_in,
                first_seen: flow.start_time,
                last_seen: flow.end_time,
                src_pods: Vec::new(),
            },
            src_pod: src.pod_identity().map(hash_pod),
        }
    }
}

/// What the key and value take of a flow's own fields.
#[derive(Debug)]
pub struct FlowParts<'a> {
    /// `cluster_id`.
    pub cluster_id: &'a str,
    /// `reporter`.
    pub reporter: Reporter,
    /// `action`.
    pub action: Action,
    /// `dst_port`.
    pub dst_port: Option<i32>,
    /// `protocol`.
    pub protocol: Option<i32>,
    /// The deciding policy: the last of `policies_enforced`, by [`policy_name`].
    pub policy: Option<Joined<'a>>,
    /// `connections_started`.
    pub connections_started: i64,
    /// `connections_completed`.
    pub connections_completed: i64,
    /// `bytes_out`.
    pub bytes_out: i64,
    /// `bytes_in`.
    pub bytes_in: i64,
    /// `packets_out`.
    pub packets_out: i64,
    /// `packets_in`.
    pub packets_in: i64,
    /// `start_time`.
    pub start_time: Timestamp,
    /// `end_time`.
    pub end_time: Timestamp,
}

/// What the key takes of an endpoint.
#[derive(Clone, Copy, Debug)]
pub struct EndpointParts<'a> {
    /// `kind`.
    pub kind: EndpointKind,
    /// `namespace`.
    pub namespace: Option<&'a str>,
    /// `name`.
    pub name: Option<&'a str>,
    /// `pod_uid`.
    pub pod_uid: Option<&'a str>,
    /// `workload_name`.
    pub workload_name: Option<&'a str>,
    /// `aggregated_name`.
    pub aggregated_name: Option<&'a str>,
    /// `node`.
    pub node: Option<&'a str>,
    /// `service_namespace`.
    pub service_namespace: Option<&'a str>,
    /// `service_name`.
    pub service_name: Option<&'a str>,
    /// `network_set`.
    pub network_set: Option<&'a str>,
    /// The first of `dns_names`.
    pub first_dns_name: Option<&'a str>,
}

impl<'a> From<&'a Endpoint> for EndpointParts<'a> {
    fn from(e: &'a Endpoint) -> Self {
        EndpointParts {
            kind: e.kind,
            namespace: e.namespace.as_deref(),
            name: e.name.as_deref(),
            pod_uid: e.pod_uid.as_deref(),
            workload_name: e.workload_name.as_deref(),
            aggregated_name: e.aggregated_name.as_deref(),
            node: e.node.as_deref(),
            service_namespace: e.service_namespace.as_deref(),
            service_name: e.service_name.as_deref(),
            network_set: e.network_set.as_deref(),
            first_dns_name: e.dns_names.first().map(String::as_str),
        }
    }
}

impl<'a> EndpointParts<'a> {
    /// (namespace, workload) of the endpoint, by kind.
    fn names(&self) -> (Option<&'a str>, Option<&'a str>) {
        let e = self;
        match e.kind {
            EndpointKind::Pod => (
                e.namespace,
                e.workload_name.or(e.aggregated_name).or(e.name),
            ),
            // A node's `name` may be a hostNetwork pod's name; the node field is the node.
            EndpointKind::Node => (None, e.node.or(e.name)),
            EndpointKind::Service => (
                e.namespace.or(e.service_namespace),
                e.service_name.or(e.name),
            ),
            EndpointKind::Host => (None, e.name.or(e.node)),
            // Network sets may be namespaced (Calico NetworkSet vs GlobalNetworkSet).
            EndpointKind::NetworkSet => {
                (e.namespace, e.network_set.or(e.name).or(e.first_dns_name))
            }
            EndpointKind::ExternalPublic => {
                (None, e.network_set.or(e.first_dns_name).or(Some("public")))
            }
            EndpointKind::ExternalPrivate => {
                (None, e.network_set.or(e.first_dns_name).or(Some("private")))
            }
            // Unknown endpoints may carry a name that is an address or a pod: only
            // workload-level names are safe to key on.
            EndpointKind::Unknown => (e.namespace, e.workload_name.or(e.aggregated_name)),
        }
    }

    /// `namespace/name` of the Service the endpoint is or fronts.
    fn service(&self) -> Option<Joined<'a>> {
        let name = match (self.service_name, self.kind) {
            (Some(name), _) => name,
            (None, EndpointKind::Service) => self.name?,
            (None, _) => return None,
        };
        Some(match self.service_namespace.or(self.namespace) {
            Some(namespace) => Joined::of(&[namespace, name]),
            None => Joined::of(&[name]),
        })
    }

    /// The pod identity counted by `distinct_src_pods`: its uid, else its name; only pods.
    fn pod_identity(&self) -> Option<&'a str> {
        if self.kind != EndpointKind::Pod {
            return None;
        }
        self.pod_uid.or(self.name)
    }
}

/// `tier/namespace/name` of a policy hit, absent or empty parts left out.
pub fn policy_name<'a>(
    tier: Option<&'a str>,
    namespace: Option<&'a str>,
    name: &'a str,
) -> Option<Joined<'a>> {
    let mut parts = [""; 3];
    let mut len = 0;
    for part in [tier, namespace, Some(name)].into_iter().flatten() {
        if !part.is_empty() {
            parts[len] = part;
            len += 1;
        }
    }
    (len > 0).then(|| Joined::of(&parts[..len]))
}

/// A key string made of up to three parts joined with `/` (a Service's `namespace/name`, a
/// policy's `tier/namespace/name`), kept as the parts so building a key copies nothing;
/// equal to the owned key's string when the joined text is.
#[derive(Clone, Copy, Debug)]
pub struct Joined<'a> {
    parts: [&'a str; 3],
    len: usize,
}

impl<'a> Joined<'a> {
    /// `parts` (one to three) joined with `/`.
    fn of(parts: &[&'a str]) -> Self {
        let mut joined = Joined {
            parts: [""; 3],
            len: parts.len().min(3),
        };
        joined.parts[..joined.len].copy_from_slice(&parts[..joined.len]);
        joined
    }

    fn parts(&self) -> &[&'a str] {
        &self.parts[..self.len]
    }

    /// True when the joined text is `text`.
    fn is(&self, text: &str) -> bool {
        let mut rest = text;
        for (i, part) in self.parts().iter().enumerate() {
            if i > 0 {
                match rest.strip_prefix('/') {
                    Some(r) => rest = r,
                    None => return false,
                }
            }
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        }
        rest.is_empty()
    }

    fn to_owned_string(self) -> String {
        self.parts().join("/")
    }
}

/// [`EdgeKey`] with borrowed strings: what a flow's fields make, looked up in the window
/// state without building the owned key (built only for a new edge).
#[derive(Clone, Copy, Debug)]
pub struct EdgeKeyRef<'a> {
    /// Cluster.
    pub cluster_id: &'a str,
    /// Source endpoint kind.
    pub src_kind: EndpointKind,
    /// Source namespace.
    pub src_namespace: Option<&'a str>,
    /// Source workload name.
    pub src_workload: Option<&'a str>,
    /// Destination endpoint kind.
    pub dst_kind: EndpointKind,
    /// Destination namespace.
    pub dst_namespace: Option<&'a str>,
    /// Destination workload.
    pub dst_workload: Option<&'a str>,
    /// Destination Service.
    pub dst_service: Option<Joined<'a>>,
    /// Destination port.
    pub dst_port: Option<i32>,
    /// IANA protocol number.
    pub protocol: Option<i32>,
    /// Verdict.
    pub action: Action,
    /// Observing side.
    pub reporter: Reporter,
    /// Deciding policy.
    pub policy: Option<Joined<'a>>,
}

/// Hashes every field but the two joined ones (Service, policy): a joined string would
/// have to hash its parts exactly as the owned string hashes its bytes, and leaving them
/// out only merges the hash of edges that differ in nothing else. Equality compares all.
impl Hash for EdgeKeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.cluster_id.hash(state);
        self.src_kind.hash(state);
        self.src_namespace.hash(state);
        self.src_workload.hash(state);
        self.dst_kind.hash(state);
        self.dst_namespace.hash(state);
        self.dst_workload.hash(state);
        self.dst_port.hash(state);
        self.protocol.hash(state);
        self.action.hash(state);
        self.reporter.hash(state);
    }
}

/// The same hash as the key's borrowed form, so either finds the other in a map.
impl Hash for EdgeKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_ref().hash(state);
    }
}

impl hashbrown::Equivalent<EdgeKey> for EdgeKeyRef<'_> {
    fn equivalent(&self, key: &EdgeKey) -> bool {
        fn joined(a: Option<Joined<'_>>, b: &Option<String>) -> bool {
            match (a, b) {
                (None, None) => true,
                (Some(a), Some(b)) => a.is(b),
                _ => false,
            }
        }
        self.cluster_id == key.cluster_id
            && self.src_kind == key.src_kind
            && self.src_namespace == key.src_namespace.as_deref()
            && self.src_workload == key.src_workload.as_deref()
            && self.dst_kind == key.dst_kind
            && self.dst_namespace == key.dst_namespace.as_deref()
            && self.dst_workload == key.dst_workload.as_deref()
            && self.dst_port == key.dst_port
            && self.protocol == key.protocol
            && self.action == key.action
            && self.reporter == key.reporter
            && joined(self.dst_service, &key.dst_service)
            && joined(self.policy, &key.policy)
    }
}

impl From<&EdgeKeyRef<'_>> for EdgeKey {
    fn from(key: &EdgeKeyRef<'_>) -> Self {
        EdgeKey {
            cluster_id: key.cluster_id.to_owned(),
            src_kind: key.src_kind,
            src_namespace: key.src_namespace.map(str::to_owned),
            src_workload: key.src_workload.map(str::to_owned),
            dst_kind: key.dst_kind,
            dst_namespace: key.dst_namespace.map(str::to_owned),
            dst_workload: key.dst_workload.map(str::to_owned),
            dst_service: key.dst_service.map(Joined::to_owned_string),
            dst_port: key.dst_port,
            protocol: key.protocol,
            action: key.action,
            reporter: key.reporter,
            policy: key.policy.map(Joined::to_owned_string),
        }
    }
}

impl EdgeKey {
    /// The key with borrowed strings.
    pub fn as_ref(&self) -> EdgeKeyRef<'_> {
        fn whole(s: &Option<String>) -> Option<Joined<'_>> {
            s.as_deref().map(|s| Joined::of(&[s]))
        }
        EdgeKeyRef {
            cluster_id: &self.cluster_id,
            src_kind: self.src_kind,
            src_namespace: self.src_namespace.as_deref(),
            src_workload: self.src_workload.as_deref(),
            dst_kind: self.dst_kind,
            dst_namespace: self.dst_namespace.as_deref(),
            dst_workload: self.dst_workload.as_deref(),
            dst_service: whole(&self.dst_service),
            dst_port: self.dst_port,
            protocol: self.protocol,
            action: self.action,
            reporter: self.reporter,
            policy: whole(&self.policy),
        }
    }
}

impl EdgeValue {
    /// Adds `other` in; the distinct-pod set stops growing at `max_pods`.
    pub fn merge(&mut self, other: &EdgeValue, max_pods: usize) {
        // Saturating: the counters come from input, and a corrupt record must not panic
        // the stage or wrap a total negative.
        self.flows = self.flows.saturating_add(other.flows);
        self.connections_started = self
            .connections_started
            .saturating_add(other.connections_started);
        self.connections_completed = self
            .connections_completed
            .saturating_add(other.connections_completed);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
        self.bytes_in = self.bytes_in.saturating_add(other.bytes_in);
        self.packets_out = self.packets_out.saturating_add(other.packets_out);
        self.packets_in = self.packets_in.saturating_add(other.packets_in);
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
        for pod in &other.src_pods {
            if self.src_pods.len() >= max_pods {
                break;
            }
            self.add_pod(*pod, max_pods);
        }
    }

    /// Adds one source pod to the distinct set, unless the set is at `max_pods`.
    pub fn add_pod(&mut self, pod: u64, max_pods: usize) {
        if self.src_pods.len() >= max_pods {
            return;
        }
        if let Err(at) = self.src_pods.binary_search(&pod) {
            self.src_pods.insert(at, pod);
        }
    }

    /// Distinct source pods seen: exact up to the configured bound, a lower bound beyond.
    pub fn distinct_src_pods(&self) -> i64 {
        i64::try_from(self.src_pods.len()).unwrap_or(i64::MAX)
    }

    /// A value holding `other` alone, truncating its pod set to `max_pods`.
    pub fn first(mut other: EdgeValue, max_pods: usize) -> EdgeValue {
        other.src_pods.truncate(max_pods);
        other
    }
}

/// The output record of one edge in window `[start, end)`.
pub fn to_flow_edge(
    key: &EdgeKey,
    value: &EdgeValue,
    window: (Timestamp, Timestamp),
    revision: i32,
) -> FlowEdge {
    FlowEdge {
        cluster_id: key.cluster_id.clone(),
        window_start: window.0,
        window_end: window.1,
        revision,
        src_kind: key.src_kind,
        src_namespace: key.src_namespace.clone(),
        src_workload: key.src_workload.clone(),
        dst_kind: key.dst_kind,
        dst_namespace: key.dst_namespace.clone(),
        dst_workload: key.dst_workload.clone(),
        dst_service: key.dst_service.clone(),
        dst_port: key.dst_port,
        protocol: key.protocol,
        action: key.action,
        reporter: key.reporter,
        policy: key.policy.clone(),
        flows: value.flows,
        connections_started: value.connections_started,
        connections_completed: value.connections_completed,
        bytes_out: value.bytes_out,
        bytes_in: value.bytes_in,
        packets_out: value.packets_out,
        packets_in: value.packets_in,
        first_seen: value.first_seen,
        last_seen: value.last_seen,
        distinct_src_pods: value.distinct_src_pods(),
    }
}

/// The Kafka key of an edge: `cluster_id/src_namespace/src_workload`, so that all edges of
/// one source land on one partition of `flows.edges`.
pub fn kafka_key(edge: &FlowEdge) -> Vec<u8> {
    let namespace = edge.src_namespace.as_deref().unwrap_or("");
    let workload = edge.src_workload.as_deref().unwrap_or("");
    format!("{}/{namespace}/{workload}", edge.cluster_id).into_bytes()
}

/// True for destinations outside the cluster: the external egress metrics count these.
pub fn is_external(kind: EndpointKind) -> bool {
    matches!(
        kind,
        EndpointKind::ExternalPublic | EndpointKind::ExternalPrivate | EndpointKind::NetworkSet
    )
}

/// A deterministic 64-bit hash (std's SipHash with fixed keys): equal in every run of the
/// same build, which is what replay needs; nothing stores it.
fn hash_pod(identity: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    identity.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use flowlake_schemas::{PolicyHit, samples};

    use super::*;

    fn folded(flow: EnrichedFlow) -> EdgeKey {
        EdgeKey::from(&Folded::from_flow(&flow).key)
    }

    #[test]
    fn sample_flow_is_keyed_by_workloads() {
        let key = folded(samples::enriched_flow());
        assert_eq!(
            key,
            EdgeKey {
                cluster_id: "prod-eu-1".into(),
                src_kind: EndpointKind::Pod,
                src_namespace: Some("shop".into()),
                src_workload: Some("checkout".into()),
                dst_kind: EndpointKind::ExternalPublic,
                dst_namespace: None,
                dst_workload: Some("stripe".into()),
                dst_service: None,
                dst_port: Some(443),
                protocol: Some(6),
                action: Action::Deny,
                reporter: Reporter::Src,
                policy: Some("security/shop/deny-egress".into()),
            }
        );
    }

    #[test]
    fn workload_fallbacks() {
        let mut flow = samples::enriched_flow();
        flow.src.workload_name = None;
        assert_eq!(
            folded(flow.clone()).src_workload.as_deref(),
            Some("checkout-7d9f8b6c5-*")
        );
        flow.src.aggregated_name = None;
        assert_eq!(
            folded(flow.clone()).src_workload.as_deref(),
            Some("checkout-7d9f8b6c5-x2x9q")
        );

        flow.dst.network_set = None;
        assert_eq!(
            folded(flow.clone()).dst_workload.as_deref(),
            Some("api.stripe.com")
        );
        flow.dst.dns_names.clear();
        assert_eq!(folded(flow.clone()).dst_workload.as_deref(), Some("public"));
        flow.dst.kind = EndpointKind::ExternalPrivate;
        assert_eq!(
            folded(flow.clone()).dst_workload.as_deref(),
            Some("private")
        );

        flow.dst = Endpoint {
            kind: EndpointKind::Node,
            name: Some("hostnet-pod-abc".into()),
            node: Some("node-b".into()),
            namespace: Some("kube-system".into()),
            ..Default::default()
        };
        let key = folded(flow.clone());
        assert_eq!(
            (key.dst_namespace, key.dst_workload.as_deref()),
            (None, Some("node-b"))
        );
    }

    #[test]
    fn services_are_named_namespace_slash_name() {
        let mut flow = samples::enriched_flow();
        flow.dst = Endpoint {
            kind: EndpointKind::Service,
            namespace: Some("payments".into()),
            name: Some("api".into()),
            ..Default::default()
        };
        let key = folded(flow.clone());
        assert_eq!(key.dst_service.as_deref(), Some("payments/api"));
        assert_eq!(key.dst_workload.as_deref(), Some("api"));
        assert_eq!(key.dst_namespace.as_deref(), Some("payments"));

        // A pod reached through a Service keeps its workload and names the Service.
        flow.dst = Endpoint {
            kind: EndpointKind::Pod,
            namespace: Some("payments".into()),
            name: Some("api-5f6d-abcde".into()),
            workload_name: Some("api".into()),
            service_namespace: Some("payments".into()),
            service_name: Some("api-svc".into()),
            ..Default::default()
        };
        let key = folded(flow);
        assert_eq!(key.dst_service.as_deref(), Some("payments/api-svc"));
        assert_eq!(key.dst_workload.as_deref(), Some("api"));
    }

    #[test]
    fn unknown_endpoints_never_key_on_names_or_addresses() {
        let mut flow = samples::enriched_flow();
        flow.src = Endpoint {
            kind: EndpointKind::Unknown,
            name: Some("10.0.0.7".into()),
            ..Default::default()
        };
        let key = folded(flow);
        assert_eq!(key.src_workload, None);
    }

    #[test]
    fn policy_is_the_last_enforced_hit() {
        let mut flow = samples::enriched_flow();
        flow.flow.policies_enforced.push(PolicyHit {
            kind: "KubernetesNetworkPolicy".into(),
            tier: None,
            namespace: Some("shop".into()),
            name: "default-deny".into(),
            ..Default::default()
        });
        assert_eq!(
            folded(flow.clone()).policy.as_deref(),
            Some("shop/default-deny")
        );
        flow.flow.policies_enforced.clear();
        assert_eq!(folded(flow).policy, None);
    }

    #[test]
    fn distinct_pods_stop_at_the_bound() {
        // A flow's value with its source pod in, as a window holds it.
        let value = |flow: EnrichedFlow| {
            let folded = Folded::from_flow(&flow);
            let mut value = folded.value;
            if let Some(pod) = folded.src_pod {
                value.add_pod(pod, 4);
            }
            value
        };
        let mut total = value(samples::enriched_flow());
        for i in 0..10 {
            let mut flow = samples::enriched_flow();
            flow.src.pod_uid = Some(format!("uid-{i}"));
            total.merge(&value(flow), 4);
        }
        assert_eq!(total.flows, 11);
        assert_eq!(total.distinct_src_pods(), 4);

        let mut exact = value(samples::enriched_flow());
        exact.merge(&value(samples::enriched_flow()), 4);
        assert_eq!(exact.distinct_src_pods(), 1);
    }

    #[test]
    fn kafka_key_groups_by_source() {
        let edge = samples::flow_edge();
        assert_eq!(kafka_key(&edge), b"prod-eu-1/shop/checkout".to_vec());
    }
}
