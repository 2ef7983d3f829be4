//! A [`WorkloadPlan`] as a `networking.k8s.io/v1` NetworkPolicy.
//!
//! One policy per workload, `policyTypes: [Ingress, Egress]`, one rule per peer with every
//! port it used. Kubernetes ports carry TCP, UDP or SCTP only: a peer also reached over
//! another protocol (ICMP) gets a rule without ports, which allows every port — said in the
//! rule's evidence. External peers are `ipBlock`s of the observed addresses; the DNS name
//! behind each is in the `flowlake.io/egress-dns-names` annotation. Evidence per rule is
//! in `flowlake.io/evidence` (one line per rule: direction, index, peer, ports).

use serde_json::{Value, json};

use super::{PeerSpec, RulePlan, WorkloadPlan, evidence_text};
use crate::policy::model::protocol_name;

/// The policy document.
pub fn render(plan: &WorkloadPlan) -> Value {
    let mut evidence = Vec::new();
    let mut names = Vec::new();
    let mut egress = Vec::new();
    for rule in &plan.egress {
        for (i, r) in rules(plan, rule, "to").into_iter().enumerate() {
            evidence.push(format!(
                "egress[{}] to {}: {}{}",
                egress.len(),
                rule.shown,
                evidence_text(rule),
                if i > 0 {
                    " (all ports: protocol without ports)"
                } else {
                    ""
                }
            ));
            egress.push(r);
        }
        if let PeerSpec::Domain { name, cidrs } = &rule.peer {
            names.extend(cidrs.iter().map(|c| format!("{c} {name}")));
        }
    }
    let mut ingress = Vec::new();
    for rule in &plan.ingress {
        for (i, r) in rules(plan, rule, "from").into_iter().enumerate() {
            evidence.push(format!(
                "ingress[{}] from {}: {}{}",
                ingress.len(),
                rule.shown,
                evidence_text(rule),
                if i > 0 {
                    " (all ports: protocol without ports)"
                } else {
                    ""
                }
            ));
            ingress.push(r);
        }
    }
    let mut annotations = plan.annotations();
    annotations.insert(
        "flowlake.io/evidence".into(),
        Value::String(evidence.join("\n")),
    );
    if !names.is_empty() {
        annotations.insert(
            "flowlake.io/egress-dns-names".into(),
            Value::String(names.join("\n")),
        );
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": plan.policy_name(),
            "namespace": plan.namespace,
            "labels": {"app.kubernetes.io/managed-by": "flowlake"},
            "annotations": annotations,
        },
        "spec": {
            "podSelector": {"matchLabels": plan.labels},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        }
    })
}

/// The peers of a `to`/`from` list.
fn peers(plan: &WorkloadPlan, peer: &PeerSpec) -> Vec<Value> {
    let ns_selector = |ns: &str| json!({"matchLabels": {"kubernetes.io/metadata.name": ns}});
    match peer {
        PeerSpec::Workload { namespace, labels } if *namespace == plan.namespace => {
            vec![json!({"podSelector": {"matchLabels": labels}})]
        }
        PeerSpec::Workload { namespace, labels } => vec![json!({
            "namespaceSelector": ns_selector(namespace),
            "podSelector": {"matchLabels": labels},
        })],
        PeerSpec::Namespace(ns) => vec![json!({"namespaceSelector": ns_selector(ns)})],
        PeerSpec::Domain { cidrs, .. } | PeerSpec::Addresses(cidrs) | PeerSpec::Node(cidrs) => {
            cidrs
                .iter()
                .map(|c| json!({"ipBlock": {"cidr": c}}))
                .collect()
        }
    }
}

/// The rule(s) of one peer: one with the TCP/UDP/SCTP ports, one without ports if the
/// peer was also reached over another protocol.
fn rules(plan: &WorkloadPlan, rule: &RulePlan, side: &str) -> Vec<Value> {
    let mut ports = Vec::new();
    let mut other = false;
    for (protocol, port) in rule.ports.keys() {
        match protocol {
            Some(6 | 17 | 132) => {
                let mut entry = json!({"protocol": protocol_name(*protocol)});
                if let Some(port) = port {
                    entry["port"] = json!(port);
                }
                ports.push(entry);
            }
            _ => other = true,
        }
    }
    let peers = peers(plan, &rule.peer);
    let mut out = Vec::new();
    if !ports.is_empty() {
        out.push(json!({side: peers.clone(), "ports": ports}));
    }
    if other || out.is_empty() {
        out.push(json!({side: peers}));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{PortEvidence, RulePlan};
    use super::*;
    use crate::policy::lake::Window;
    use crate::policy::model::Evidence;

    #[test]
    fn domains_become_ip_blocks_named_in_an_annotation() {
        let mut ports = PortEvidence::new();
        ports.insert(
            (Some(6), Some(443)),
            Evidence {
                flows: 3,
                ..Default::default()
            },
        );
        let plan = WorkloadPlan {
            cluster: "c".into(),
            namespace: "shop".into(),
            name: "checkout".into(),
            labels: [("app".to_owned(), "checkout".to_owned())].into(),
            egress: vec![RulePlan {
                peer: PeerSpec::Domain {
                    name: "api.stripe.com".into(),
                    cidrs: vec!["54.187.216.72/32".into()],
                },
                shown: "api.stripe.com".into(),
                ports,
                implied: false,
            }],
            ingress: vec![],
            not_covered: vec![],
            window: Window { from: 0, to: 1 },
        };
        let doc = render(&plan);
        assert_eq!(
            doc["spec"]["egress"][0],
            json!({"to": [{"ipBlock": {"cidr": "54.187.216.72/32"}}], "ports": [{"protocol": "TCP", "port": 443}]})
        );
        assert_eq!(
            doc["metadata"]["annotations"]["flowlake.io/egress-dns-names"],
            "54.187.216.72/32 api.stripe.com"
        );
        assert_eq!(doc["spec"]["ingress"], json!([]));
        let evidence = doc["metadata"]["annotations"]["flowlake.io/evidence"]
            .as_str()
            .unwrap_or_default();
        assert!(
            evidence.starts_with("egress[0] to api.stripe.com: 443/TCP: 3 flows"),
            "{evidence}"
        );
    }
}
