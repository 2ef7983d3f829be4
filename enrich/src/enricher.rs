//! Joining a flow's two endpoints with identity.
//!
//! Each end is resolved in order of trust, and the first answer wins:
//! 1. the identity table at the flow's start time (status `hit`);
//! 2. the agent's own hint, when it names something — a pod by namespace and name or by
//!    workload, a node, a host endpoint or a network set (status `hint`). A Hubble
//!    `reserved:world` hint names nothing: the agent only says "not mine";
//! 3. the address itself: `external_private` or `external_public` (status `miss`), or
//!    `unknown` when the agent gave no address either.
//!
//! Enrichment never fails: every flow comes out with both ends set.

use std::net::IpAddr;
use std::sync::Arc;

use flowlake_schemas::{
    Endpoint, EndpointHint, EndpointKind, EnrichedFlow, EnrichmentStatus, FlowEvent, Ip, Labels,
};

use crate::classify::{self, PRIVATE_AGGREGATED_NAME, PUBLIC_AGGREGATED_NAME};
use crate::table::{Identity, IdentityTable};

/// Prefix of Cilium's reserved identity labels (`reserved:world`, `reserved:host`, …).
const RESERVED_LABEL_PREFIX: &str = "reserved:";

/// Attaches identity to flows from one [`IdentityTable`].
#[derive(Clone, Debug)]
pub struct Enricher {
    table: Arc<IdentityTable>,
}

/// One end of a flow, as the agent reported it.
struct Side<'a> {
    ip: Option<Ip>,
    hint: Option<&'a EndpointHint>,
}

impl Enricher {
    /// An enricher over `table`.
    pub fn new(table: Arc<IdentityTable>) -> Self {
        Enricher { table }
    }

    /// The table in use.
    pub fn table(&self) -> &Arc<IdentityTable> {
        &self.table
    }

    /// Resolves both ends of `flow`.
    pub fn enrich(&self, flow: FlowEvent) -> EnrichedFlow {
        let src = self.resolve(
            &flow,
            Side {
                ip: flow.src_ip,
                hint: flow.src_hint.as_ref(),
            },
        );
        let mut dst = self.resolve(
            &flow,
            Side {
                ip: flow.dst_ip,
                hint: flow.dst_hint.as_ref(),
            },
        );
        dst.dns_names = flow.dst_dns_names.clone();
        EnrichedFlow { flow, src, dst }
    }

    fn resolve(&self, flow: &FlowEvent, side: Side<'_>) -> Endpoint {
        let ip = side.ip.map(|ip| ip.canonical().0);
        // The start of the observation interval: the address was held then.
        if let Some(ip) = ip
            && let Some(identity) = self.table.lookup(&flow.cluster_id, ip, flow.start_time)
        {
            let mut endpoint = hit_endpoint(identity);
            // A pod reached through a Service: the agent may know the Service, the table
            // (which maps addresses) cannot.
            if endpoint.service_name.is_none()
                && let Some(hint) = side.hint
                && hint.service_name.is_some()
            {
                endpoint.service_namespace = hint.service_namespace.clone();
                endpoint.service_name = hint.service_name.clone();
            }
            return endpoint;
        }
        if let Some(hint) = side.hint
            && let Some(endpoint) = hint_endpoint(hint, ip, flow.reporter_node.as_deref())
        {
            return endpoint;
        }
        match ip {
            Some(ip) => external_endpoint(ip),
            None => Endpoint {
                kind: EndpointKind::Unknown,
                status: EnrichmentStatus::Miss,
                ..Endpoint::default()
            },
        }
    }
}

/// The identity of a table entry.
fn hit_endpoint(identity: &Identity) -> Endpoint {
    match identity {
        Identity::Pod(pod) => Endpoint {
            kind: EndpointKind::Pod,
            namespace: Some(pod.workload.namespace.to_string()),
            name: Some(pod.name.to_string()),
            pod_uid: Some(pod.uid.to_string()),
            workload_kind: Some(pod.workload.kind.to_string()),
            workload_name: Some(pod.workload.name.to_string()),
            service_account: pod.workload.service_account.as_deref().map(str::to_owned),
            labels: Labels::clone(&pod.labels),
            node: pod.node.as_deref().map(str::to_owned),
            status: EnrichmentStatus::Hit,
            ..Endpoint::default()
        },
        Identity::Node(node) => Endpoint {
            kind: EndpointKind::Node,
            name: Some(node.name.to_string()),
            labels: Labels::clone(&node.labels),
            status: EnrichmentStatus::Hit,
            ..Endpoint::default()
        },
        Identity::Service(service) => Endpoint {
            kind: EndpointKind::Service,
            namespace: Some(service.namespace.to_string()),
            name: Some(service.name.to_string()),
            service_namespace: Some(service.namespace.to_string()),
            service_name: Some(service.name.to_string()),
            status: EnrichmentStatus::Hit,
            ..Endpoint::default()
        },
    }
}

/// An address nobody in the cluster holds.
fn external_endpoint(ip: IpAddr) -> Endpoint {
    let kind = classify::classify(ip);
    Endpoint {
        kind,
        aggregated_name: classify::aggregated_name(kind).map(str::to_owned),
        status: EnrichmentStatus::Miss,
        ..Endpoint::default()
    }
}

/// What the agent's hint says an endpoint is; None when it names nothing we can use.
fn hint_endpoint(
    hint: &EndpointHint,
    ip: Option<IpAddr>,
    reporter_node: Option<&str>,
) -> Option<Endpoint> {
    let kind = hint_kind(hint, ip)?;
    let mut endpoint = Endpoint {
        kind,
        namespace: hint.namespace.clone(),
        name: hint.name.clone(),
        workload_kind: hint.workload_kind.clone(),
        workload_name: hint.workload_name.clone(),
        aggregated_name: hint.aggregated_name.clone(),
        labels: hint.labels.clone(),
        service_namespace: hint.service_namespace.clone(),
        service_name: hint.service_name.clone(),
        status: EnrichmentStatus::Hint,
        ..Endpoint::default()
    };
    match kind {
        // Cilium's `reserved:host` is the node that observed the flow.
        EndpointKind::Node if endpoint.name.is_none() && has_reserved(hint, "host") => {
            endpoint.name = reporter_node.map(str::to_owned);
        }
        EndpointKind::NetworkSet => endpoint.network_set = hint.name.clone(),
        EndpointKind::Service if endpoint.service_name.is_none() => {
            endpoint.service_namespace = hint.namespace.clone();
            endpoint.service_name = hint.name.clone();
        }
        _ => {}
    }
    Some(endpoint)
}

/// The endpoint kind a hint names, if any.
fn hint_kind(hint: &EndpointHint, ip: Option<IpAddr>) -> Option<EndpointKind> {
    // Hubble: an address outside the cluster. The hint says nothing beyond that, and the
    // address says more (public or private), even when Hubble attached a pod name it
    // remembered for the address.
    if has_reserved(hint, "world") {
        return None;
    }
    let names_pod = (hint.namespace.is_some()
        && (hint.name.is_some() || hint.aggregated_name.is_some()))
        || hint.workload_name.is_some();
    let declared = hint.kind.as_deref().map(normalise_kind).unwrap_or_default();
    match declared.as_str() {
        // Hubble pods, Calico workload endpoints (flow logs `wep`, Goldmane
        // `WorkloadEndpoint`).
        "pod" | "wep" | "workloadendpoint" | "workload" => names_pod.then_some(EndpointKind::Pod),
        "node" | "remotenode" => Some(EndpointKind::Node),
        // Calico host endpoints: a host known to the agent, maybe outside Kubernetes.
        "host" | "hep" | "hostendpoint" => Some(EndpointKind::Host),
        "ns" | "networkset" | "globalnetworkset" => Some(EndpointKind::NetworkSet),
        "service" | "svc" => Some(EndpointKind::Service),
        // Calico `net`: an address outside every known set. Only without an address is the
        // agent's public/private grouping worth more than our own classification.
        "net" | "network" => match (ip, hint.aggregated_name.as_deref()) {
            (None, Some(PUBLIC_AGGREGATED_NAME)) => Some(EndpointKind::ExternalPublic),
            (None, Some(PRIVATE_AGGREGATED_NAME)) => Some(EndpointKind::ExternalPrivate),
            _ => None,
        },
        "reserved" => {
            if has_reserved(hint, "host") || has_reserved(hint, "remote-node") {
                Some(EndpointKind::Node)
            } else if names_pod {
                Some(EndpointKind::Pod)
            } else if hint
                .labels
                .keys()
                .any(|k| k.starts_with(RESERVED_LABEL_PREFIX))
            {
                // Cilium's own endpoints (health, ingress, init): in the cluster, not a pod
                // we can name.
                Some(EndpointKind::Unknown)
            } else {
                None
            }
        }
        _ => names_pod.then_some(EndpointKind::Pod),
    }
}

/// Lower case without separators: `WorkloadEndpoint`, `workload_endpoint` → `workloadendpoint`.
fn normalise_kind(kind: &str) -> String {
    kind.chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// True when the hint carries Cilium's `reserved:<name>` label (also the dual-stack
/// variants `reserved:world-ipv4` / `-ipv6`), as a key or as `reserved` = `<name>`.
fn has_reserved(hint: &EndpointHint, name: &str) -> bool {
    hint.labels.iter().any(|(key, value)| {
        let reserved = key
            .strip_prefix(RESERVED_LABEL_PREFIX)
            .or_else(|| (key == "reserved").then_some(value.as_str()));
        reserved.is_some_and(|r| {
            r == name
                || r.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with("-ipv"))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{hubble_table, table};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// One of each identity kind: a Deployment pod known through its ReplicaSet, a
    /// hostNetwork pod on a node without addresses of its own, a Service.
    const SNAPSHOT: &str = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"kind": "Pod",
         "metadata": {"name": "web-6b7f9c8d5-x2x9q", "namespace": "shop", "uid": "0b8c5f1e-uid",
                      "labels": {"app": "web", "pod-template-hash": "6b7f9c8d5"},
                      "ownerReferences": [{"kind": "ReplicaSet", "name": "web-6b7f9c8d5", "controller": true}]},
         "spec": {"nodeName": "node-a", "serviceAccountName": "web"},
         "status": {"phase": "Running", "podIP": "10.1.0.5"}},
        {"kind": "Pod",
         "metadata": {"name": "kube-proxy-7xq2p", "namespace": "kube-system", "uid": "kp-uid",
                      "ownerReferences": [{"kind": "DaemonSet", "name": "kube-proxy", "controller": true}]},
         "spec": {"nodeName": "node-a", "hostNetwork": true},
         "status": {"phase": "Running", "podIP": "192.168.0.10"}},
        {"kind": "Service",
         "metadata": {"name": "web", "namespace": "shop"},
         "spec": {"clusterIP": "10.96.5.5", "clusterIPs": ["10.96.5.5"]}},
        {"kind": "Node", "metadata": {"name": "node-a", "labels": {"zone": "eu-1a"}}}
    ]}"#;

    fn enricher(json: &str) -> Result<Enricher, crate::snapshot::SnapshotError> {
        Ok(Enricher::new(Arc::new(table("prod", json)?)))
    }

    /// A canonical-JSON flow between `src` and `dst` (null for an absent address), with
    /// `extra` fields spliced in.
    fn flow(src: &str, dst: &str, extra: &str) -> Result<FlowEvent, serde_json::Error> {
        let quote = |ip: &str| {
            if ip == "null" {
                ip.to_owned()
            } else {
                format!("\"{ip}\"")
            }
        };
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(", {extra}")
        };
        serde_json::from_str(&format!(
            r#"{{"event_id": "e1", "cluster_id": "prod", "source_format": "hubble",
                "reporter_node": "node-a", "reporter": "src",
                "start_time": "2024-03-01T12:00:00Z", "end_time": "2024-03-01T12:00:01Z",
                "src_ip": {}, "dst_ip": {}, "src_port": 40000, "dst_port": 80, "protocol": 6,
                "action": "allow"{extra}}}"#,
            quote(src),
            quote(dst)
        ))
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn some(text: &str) -> Option<String> {
        Some(text.to_owned())
    }

    #[test]
    fn pod_hit_names_the_deployment_and_service_hit_names_the_service() -> TestResult {
        let enricher = enricher(SNAPSHOT)?;
        let event = flow(
            "10.1.0.5",
            "10.96.5.5",
            r#""dst_dns_names": ["web.shop.svc.cluster.local"]"#,
        )?;
        let enriched = enricher.enrich(event.clone());
        assert_eq!(enriched.flow, event, "the flow passes through unchanged");
        assert_eq!(
            enriched.src,
            Endpoint {
                kind: EndpointKind::Pod,
                namespace: some("shop"),
                name: some("web-6b7f9c8d5-x2x9q"),
                pod_uid: some("0b8c5f1e-uid"),
                workload_kind: some("Deployment"),
                workload_name: some("web"),
                service_account: some("web"),
                labels: labels(&[("app", "web"), ("pod-template-hash", "6b7f9c8d5")]),
                node: some("node-a"),
                status: EnrichmentStatus::Hit,
                ..Endpoint::default()
            }
        );
        assert_eq!(
            enriched.dst,
            Endpoint {
                kind: EndpointKind::Service,
                namespace: some("shop"),
                name: some("web"),
                service_namespace: some("shop"),
                service_name: some("web"),
                dns_names: vec!["web.shop.svc.cluster.local".to_owned()],
                status: EnrichmentStatus::Hit,
                ..Endpoint::default()
            }
        );
        Ok(())
    }

    #[test]
    fn host_network_pod_address_is_its_node() -> TestResult {
        let enriched = enricher(SNAPSHOT)?.enrich(flow("192.168.0.10", "10.1.0.5", "")?);
        assert_eq!(
            enriched.src,
            Endpoint {
                kind: EndpointKind::Node,
                name: some("node-a"),
                labels: labels(&[("zone", "eu-1a")]),
                status: EnrichmentStatus::Hit,
                ..Endpoint::default()
            }
        );
        Ok(())
    }

    #[test]
    fn unknown_addresses_are_private_or_public() -> TestResult {
        let enriched = enricher(SNAPSHOT)?.enrich(flow("10.20.30.40", "8.8.8.8", "")?);
        assert_eq!(
            enriched.src,
            Endpoint {
                kind: EndpointKind::ExternalPrivate,
                aggregated_name: some("pvt"),
                status: EnrichmentStatus::Miss,
                ..Endpoint::default()
            }
        );
        assert_eq!(
            enriched.dst,
            Endpoint {
                kind: EndpointKind::ExternalPublic,
                aggregated_name: some("pub"),
                status: EnrichmentStatus::Miss,
                ..Endpoint::default()
            }
        );
        // Another cluster's table does not answer for this one.
        let mut elsewhere = flow("10.1.0.5", "10.96.5.5", "")?;
        elsewhere.cluster_id = "staging".into();
        let enriched = enricher(SNAPSHOT)?.enrich(elsewhere);
        assert_eq!(enriched.src.kind, EndpointKind::ExternalPrivate);
        assert_eq!(enriched.src.status, EnrichmentStatus::Miss);
        Ok(())
    }

    #[test]
    fn ipv4_mapped_ipv6_resolves_like_ipv4() -> TestResult {
        let enriched = enricher(SNAPSHOT)?.enrich(flow("::ffff:10.1.0.5", "::ffff:8.8.8.8", "")?);
        assert_eq!(enriched.src.kind, EndpointKind::Pod);
        assert_eq!(enriched.src.name, some("web-6b7f9c8d5-x2x9q"));
        assert_eq!(enriched.src.status, EnrichmentStatus::Hit);
        assert_eq!(enriched.dst.kind, EndpointKind::ExternalPublic);
        Ok(())
    }

    #[test]
    fn hint_is_kept_when_the_table_does_not_know_the_address() -> TestResult {
        let hint = r#""src_hint": {"kind": "pod", "namespace": "shop", "name": "cart-5c9d7b-abcde",
            "labels": {"app": "cart"}, "workload_kind": "Deployment", "workload_name": "cart"}"#;
        let enriched = enricher(SNAPSHOT)?.enrich(flow("10.1.0.99", "10.1.0.5", hint)?);
        assert_eq!(
            enriched.src,
            Endpoint {
                kind: EndpointKind::Pod,
                namespace: some("shop"),
                name: some("cart-5c9d7b-abcde"),
                workload_kind: some("Deployment"),
                workload_name: some("cart"),
                labels: labels(&[("app", "cart")]),
                status: EnrichmentStatus::Hint,
                ..Endpoint::default()
            }
        );
        // The table wins over a hint; a Service the hint names is added to the pod.
        let hint = r#""dst_hint": {"kind": "pod", "namespace": "other", "name": "stale-name",
            "service_namespace": "shop", "service_name": "web"}"#;
        let enriched = enricher(SNAPSHOT)?.enrich(flow("10.1.0.99", "10.1.0.5", hint)?);
        assert_eq!(enriched.dst.status, EnrichmentStatus::Hit);
        assert_eq!(enriched.dst.name, some("web-6b7f9c8d5-x2x9q"));
        assert_eq!(
            (enriched.dst.service_namespace, enriched.dst.service_name),
            (some("shop"), some("web"))
        );
        Ok(())
    }

    #[test]
    fn hubble_reserved_hints() -> TestResult {
        let enricher = enricher(SNAPSHOT)?;
        // reserved:world names nothing, even with a pod name Hubble remembered.
        for world in [
            r#"{"reserved:world": ""}"#,
            r#"{"reserved": "world"}"#,
            r#"{"reserved:world-ipv4": ""}"#,
        ] {
            let hint = format!(
                r#""dst_hint": {{"kind": "reserved", "namespace": "kube-system", "name": "kube-dns-b4f5c58c7-7qmtw", "labels": {world}}}"#
            );
            let enriched = enricher.enrich(flow("10.1.0.5", "10.156.3.6", &hint)?);
            assert_eq!(enriched.dst.kind, EndpointKind::ExternalPrivate, "{world}");
            assert_eq!(enriched.dst.status, EnrichmentStatus::Miss, "{world}");
            assert_eq!(enriched.dst.name, None, "{world}");
        }
        // reserved:host is the reporting node.
        let hint = r#""dst_hint": {"kind": "reserved", "labels": {"reserved:host": ""}}"#;
        let enriched = enricher.enrich(flow("10.1.0.5", "10.1.0.1", hint)?);
        assert_eq!(enriched.dst.kind, EndpointKind::Node);
        assert_eq!(enriched.dst.name, some("node-a"));
        assert_eq!(enriched.dst.status, EnrichmentStatus::Hint);
        // reserved:health is Cilium's, in the cluster but not nameable.
        let hint = r#""dst_hint": {"kind": "reserved", "labels": {"reserved:health": ""}}"#;
        let enriched = enricher.enrich(flow("10.1.0.5", "10.1.0.2", hint)?);
        assert_eq!(enriched.dst.kind, EndpointKind::Unknown);
        assert_eq!(enriched.dst.status, EnrichmentStatus::Hint);
        Ok(())
    }

    #[test]
    fn endpoints_without_an_address() -> TestResult {
        let enricher = enricher(SNAPSHOT)?;
        let enriched = enricher.enrich(flow("10.1.0.5", "null", "")?);
        assert_eq!(
            enriched.dst,
            Endpoint {
                kind: EndpointKind::Unknown,
                status: EnrichmentStatus::Miss,
                ..Endpoint::default()
            }
        );
        // Calico aggregates: a name-less pod group, and the public network.
        let hints = r#""src_hint": {"kind": "wep", "namespace": "shop", "aggregated_name": "cart-5c9d7b-*"},
                       "dst_hint": {"kind": "net", "aggregated_name": "pub"}"#;
        let enriched = enricher.enrich(flow("null", "null", hints)?);
        assert_eq!(enriched.src.kind, EndpointKind::Pod);
        assert_eq!(enriched.src.aggregated_name, some("cart-5c9d7b-*"));
        assert_eq!(enriched.src.status, EnrichmentStatus::Hint);
        assert_eq!(enriched.dst.kind, EndpointKind::ExternalPublic);
        assert_eq!(enriched.dst.aggregated_name, some("pub"));
        assert_eq!(enriched.dst.status, EnrichmentStatus::Hint);
        // A hint that names nothing leaves the endpoint unknown.
        let enriched = enricher.enrich(flow("null", "10.1.0.5", r#""src_hint": {"kind": "pod"}"#)?);
        assert_eq!(enriched.src.kind, EndpointKind::Unknown);
        assert_eq!(enriched.src.status, EnrichmentStatus::Miss);
        Ok(())
    }

    #[test]
    fn hubble_sample_flows_against_the_fixture() -> TestResult {
        let enricher = Enricher::new(Arc::new(hubble_table("prod")?));
        // hubble_otel_basic_10, line 1: reviews-v1 → reserved:host on the GKE node.
        let hints = r#""src_hint": {"kind": "pod", "namespace": "bookinfo", "name": "reviews-v1-545db77b95-s6jb8",
                                    "labels": {"app": "reviews", "version": "v1"}},
                       "dst_hint": {"kind": "reserved", "labels": {"reserved:host": ""}}"#;
        let enriched = enricher.enrich(flow("10.0.2.16", "10.0.2.1", hints)?);
        assert_eq!(enriched.src.kind, EndpointKind::Pod);
        assert_eq!(enriched.src.status, EnrichmentStatus::Hit);
        assert_eq!(enriched.src.workload_name, some("reviews-v1"));
        assert_eq!(enriched.dst.kind, EndpointKind::Node);
        assert_eq!(enriched.dst.status, EnrichmentStatus::Hit);
        assert_eq!(
            enriched.dst.name,
            some("gke-ilya-otel-demo-1-ilya-otel-demo-1-6114bb84-zr1l")
        );
        // hubble_otel_http_5: prometheus → reserved:world 10.128.0.4.
        let hints = r#""dst_hint": {"kind": "reserved", "labels": {"reserved:world": ""}}"#;
        let enriched = enricher.enrich(flow("10.156.2.7", "10.128.0.4", hints)?);
        assert_eq!(enriched.src.name, some("prometheus-6655946b9f-6xcpf"));
        assert_eq!(enriched.dst.kind, EndpointKind::ExternalPrivate);
        assert_eq!(enriched.dst.status, EnrichmentStatus::Miss);
        // cilium_docs_export_dropped: xwing → deathstar, and an IPv6 router solicitation.
        let enriched = enricher.enrich(flow("10.244.1.60", "10.244.1.5", "")?);
        assert_eq!(
            (enriched.src.workload_kind, enriched.src.workload_name),
            (some("Pod"), some("xwing"))
        );
        assert_eq!(
            (enriched.dst.workload_kind, enriched.dst.workload_name),
            (some("Deployment"), some("deathstar"))
        );
        let enriched = enricher.enrich(flow("fe80::64d8:8aff:fe72:fc14", "ff02::2", "")?);
        assert_eq!(enriched.src.kind, EndpointKind::ExternalPrivate);
        assert_eq!(enriched.dst.kind, EndpointKind::ExternalPrivate);
        // hubble_otel_basic_10: the public destination.
        let enriched = enricher.enrich(flow("10.0.2.13", "35.246.31.234", "")?);
        assert_eq!(enriched.dst.kind, EndpointKind::ExternalPublic);
        Ok(())
    }
}
