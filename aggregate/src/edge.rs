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
    Action, Endpoint, EndpointKind, EnrichedFlow, FlowEdge, PolicyHit, Reporter, Timestamp,
};
use serde::{Deserialize, Serialize};

/// Everything that identifies a flow-graph edge within a window.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

/// A flow split into the parts the window state keeps.
#[derive(Debug)]
pub struct Folded {
    /// Edge key.
    pub key: EdgeKey,
    /// The flow's contribution, without its source pod (kept apart so that folding into
    /// an existing edge allocates nothing).
    pub value: EdgeValue,
    /// Hash of the source pod, when the source is a pod.
    pub src_pod: Option<u64>,
}

impl Folded {
    /// Splits `flow` into its edge key and values, moving strings out instead of copying.
    pub fn from_flow(flow: EnrichedFlow) -> Folded {
        let EnrichedFlow { flow, src, dst } = flow;
        let src_pod = pod_identity(&src).map(hash_pod);
        let policy = flow.policies_enforced.last().and_then(policy_name);
        let dst_service = service_name(&dst);
        let src_kind = src.kind;
        let (src_namespace, src_workload) = endpoint_names(src_kind, src);
        let dst_kind = dst.kind;
        let (dst_namespace, dst_workload) = endpoint_names(dst_kind, dst);
        let key = EdgeKey {
            cluster_id: flow.cluster_id,
            src_kind,
            src_namespace,
            src_workload,
            dst_kind,
            dst_namespace,
            dst_workload,
            dst_service,
            dst_port: flow.dst_port,
            protocol: flow.protocol,
            action: flow.action,
            reporter: flow.reporter,
            policy,
        };
        let value = EdgeValue {
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
        };
        Folded {
            key,
            value,
            src_pod,
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

/// (namespace, workload) of an endpoint, by kind; consumes the endpoint's strings.
fn endpoint_names(kind: EndpointKind, endpoint: Endpoint) -> (Option<String>, Option<String>) {
    let Endpoint {
        namespace,
        name,
        workload_name,
        aggregated_name,
        node,
        service_namespace,
        service_name,
        network_set,
        mut dns_names,
        ..
    } = endpoint;
    let first_dns = || (!dns_names.is_empty()).then(|| dns_names.swap_remove(0));
    match kind {
        EndpointKind::Pod => (namespace, workload_name.or(aggregated_name).or(name)),
        // A node's `name` may be a hostNetwork pod's name; the node field is the node.
        EndpointKind::Node => (None, node.or(name)),
        EndpointKind::Service => (namespace.or(service_namespace), service_name.or(name)),
        EndpointKind::Host => (None, name.or(node)),
        // Network sets may be namespaced (Calico NetworkSet vs GlobalNetworkSet).
        EndpointKind::NetworkSet => (namespace, network_set.or(name).or_else(first_dns)),
        EndpointKind::ExternalPublic => (
            None,
            network_set
                .or_else(first_dns)
                .or_else(|| Some("public".to_owned())),
        ),
        EndpointKind::ExternalPrivate => (
            None,
            network_set
                .or_else(first_dns)
                .or_else(|| Some("private".to_owned())),
        ),
        // Unknown endpoints may carry a name that is an address or a pod: only workload-level
        // names are safe to key on.
        EndpointKind::Unknown => (namespace, workload_name.or(aggregated_name)),
    }
}

/// `namespace/name` of the destination Service, when the destination is or fronts one.
fn service_name(endpoint: &Endpoint) -> Option<String> {
    let name = match (&endpoint.service_name, endpoint.kind) {
        (Some(name), _) => name,
        (None, EndpointKind::Service) => endpoint.name.as_ref()?,
        (None, _) => return None,
    };
    let namespace = endpoint
        .service_namespace
        .as_ref()
        .or(endpoint.namespace.as_ref());
    Some(match namespace {
        Some(namespace) => format!("{namespace}/{name}"),
        None => name.clone(),
    })
}

/// `tier/namespace/name` of a policy hit, absent or empty parts left out.
fn policy_name(hit: &PolicyHit) -> Option<String> {
    let parts: Vec<&str> = [
        hit.tier.as_deref(),
        hit.namespace.as_deref(),
        Some(hit.name.as_str()),
    ]
    .into_iter()
    .flatten()
    .filter(|part| !part.is_empty())
    .collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The pod identity counted by `distinct_src_pods`: its uid, else its name; only pods.
fn pod_identity(endpoint: &Endpoint) -> Option<&str> {
    if endpoint.kind != EndpointKind::Pod {
        return None;
    }
    endpoint.pod_uid.as_deref().or(endpoint.name.as_deref())
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
    use flowlake_schemas::samples;

    use super::*;

    fn folded(flow: EnrichedFlow) -> EdgeKey {
        Folded::from_flow(flow).key
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
            let folded = Folded::from_flow(flow);
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
