//! Fully populated sample records, for tests and benchmarks across the workspace: every
//! optional field set, so a codec that loses a field shows it.

use crate::records::*;
use crate::values::{Ip, Timestamp};

fn ip(text: &str) -> Option<Ip> {
    text.parse().ok()
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A denied TCP flow from a pod to a public API, with hints, policies and a DNS answer.
pub fn flow_event() -> FlowEvent {
    FlowEvent {
        event_id: "3f1c2a9e-sample".into(),
        cluster_id: "prod-eu-1".into(),
        source_format: "hubble".into(),
        reporter_node: Some("node-a".into()),
        reporter: Reporter::Src,
        start_time: Timestamp::from_micros(1_700_000_000_123_456),
        end_time: Timestamp::from_micros(1_700_000_001_000_000),
        src_ip: ip("10.244.1.17"),
        dst_ip: ip("2606:4700::6810:84e5"),
        src_port: Some(43_512),
        dst_port: Some(443),
        protocol: Some(6),
        action: Action::Deny,
        drop_reason: Some("POLICY_DENIED".into()),
        bytes_out: 74,
        bytes_in: 0,
        packets_out: 1,
        packets_in: 0,
        connections_started: 1,
        connections_completed: 0,
        connections_live: 0,
        policies_enforced: vec![PolicyHit {
            kind: "CalicoNetworkPolicy".into(),
            tier: Some("security".into()),
            namespace: Some("shop".into()),
            name: "deny-egress".into(),
            action: Action::Deny,
            rule_index: Some(2),
        }],
        policies_pending: vec![PolicyHit {
            kind: "StagedNetworkPolicy".into(),
            tier: None,
            namespace: Some("shop".into()),
            name: "allow-payments".into(),
            action: Action::Allow,
            rule_index: None,
        }],
        src_hint: Some(EndpointHint {
            kind: Some("pod".into()),
            namespace: Some("shop".into()),
            name: Some("checkout-7d9f8b6c5-x2x9q".into()),
            aggregated_name: Some("checkout-7d9f8b6c5-*".into()),
            labels: labels(&[("app", "checkout"), ("tier", "backend")]),
            workload_kind: Some("Deployment".into()),
            workload_name: Some("checkout".into()),
            service_namespace: None,
            service_name: None,
        }),
        dst_hint: None,
        dst_dns_names: vec!["api.stripe.com".into()],
        dns: Some(DnsObservation {
            query: "api.stripe.com".into(),
            ips: vec![
                "2606:4700::6810:84e5"
                    .parse()
                    .unwrap_or(Ip(std::net::Ipv4Addr::LOCALHOST.into())),
                Ip(std::net::Ipv4Addr::new(104, 16, 132, 229).into()),
            ],
            ttl: Some(300),
        }),
    }
}

/// [`flow_event`] with both ends resolved.
pub fn enriched_flow() -> EnrichedFlow {
    EnrichedFlow {
        flow: flow_event(),
        src: Endpoint {
            kind: EndpointKind::Pod,
            namespace: Some("shop".into()),
            name: Some("checkout-7d9f8b6c5-x2x9q".into()),
            pod_uid: Some("5b1e0c55-uid".into()),
            workload_kind: Some("Deployment".into()),
            workload_name: Some("checkout".into()),
            aggregated_name: Some("checkout-7d9f8b6c5-*".into()),
            service_account: Some("checkout".into()),
            labels: labels(&[("app", "checkout")]),
            node: Some("node-a".into()),
            service_namespace: None,
            service_name: None,
            network_set: None,
            dns_names: vec![],
            status: EnrichmentStatus::Hit,
        },
        dst: Endpoint {
            kind: EndpointKind::ExternalPublic,
            namespace: None,
            name: None,
            pod_uid: None,
            workload_kind: None,
            workload_name: None,
            aggregated_name: Some("pub".into()),
            service_account: None,
            labels: Labels::new(),
            node: None,
            service_namespace: None,
            service_name: None,
            network_set: Some("stripe".into()),
            dns_names: vec!["api.stripe.com".into()],
            status: EnrichmentStatus::Miss,
        },
    }
}

/// One edge of [`enriched_flow`]'s window.
pub fn flow_edge() -> FlowEdge {
    FlowEdge {
        cluster_id: "prod-eu-1".into(),
        window_start: Timestamp::from_secs(1_699_999_980),
        window_end: Timestamp::from_secs(1_700_000_040),
        revision: 1,
        src_kind: EndpointKind::Pod,
        src_namespace: Some("shop".into()),
        src_workload: Some("checkout".into()),
        dst_kind: EndpointKind::ExternalPublic,
        dst_namespace: None,
        dst_workload: Some("api.stripe.com".into()),
        dst_service: None,
        dst_port: Some(443),
        protocol: Some(6),
        action: Action::Deny,
        reporter: Reporter::Src,
        policy: Some("security/shop/deny-egress".into()),
        flows: 3,
        connections_started: 3,
        connections_completed: 0,
        bytes_out: 222,
        bytes_in: 0,
        packets_out: 3,
        packets_in: 0,
        first_seen: Timestamp::from_micros(1_700_000_000_123_456),
        last_seen: Timestamp::from_micros(1_700_000_001_000_000),
        distinct_src_pods: 2,
    }
}

/// A pod's identity.
pub fn identity_record() -> IdentityRecord {
    IdentityRecord {
        cluster_id: "prod-eu-1".into(),
        kind: IdentityKind::Pod,
        uid: "5b1e0c55-uid".into(),
        namespace: Some("shop".into()),
        name: "checkout-7d9f8b6c5-x2x9q".into(),
        ips: vec![Ip(std::net::Ipv4Addr::new(10, 244, 1, 17).into())],
        cidrs: vec![],
        labels: labels(&[("app", "checkout")]),
        owner: Some(OwnerRef {
            kind: "ReplicaSet".into(),
            name: "checkout-7d9f8b6c5".into(),
            uid: "rs-uid".into(),
        }),
        host_network: false,
        node: Some("node-a".into()),
        service_account: Some("checkout".into()),
        created_at: Some(Timestamp::from_secs(1_699_990_000)),
        deleted_at: None,
        observed_at: Timestamp::from_secs(1_700_000_000),
    }
}
