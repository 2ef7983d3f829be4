//! A [`WorkloadPlan`] as Calico `projectcalico.org/v3` `StagedNetworkPolicy`
//! (`stagedAction: Set`, tier `default`) plus a `NetworkSet` per group of DNS names.
//!
//! Staged first, as Calico intends: the staged policy shows in flow logs what it would do
//! without enforcing anything; `calicoctl`/`kubectl` apply of the same spec as a
//! `NetworkPolicy` enforces it. Calico rules take one protocol, so a peer gets one rule per
//! protocol. External names go into `NetworkSet.spec.allowedEgressDomains` (Calico
//! Enterprise/Cloud), one set per (protocol, ports) group, matched by the rule's
//! destination selector `flowlake.io/egress-set == '<set>'`. Each rule's evidence is in its
//! `metadata.annotations["flowlake.io/evidence"]`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{PeerSpec, PortEvidence, RulePlan, WorkloadPlan, evidence_text};
use crate::policy::model::protocol_name;
use crate::policy::selectors::calico_expression;

/// Order of the recommended policies: before Calico's default of none (last).
const ORDER: f64 = 1000.0;

/// DNS names grouped by the exact (protocol, port) list they were reached on.
type DomainGroups = BTreeMap<Vec<(Option<i32>, Option<i32>)>, (Vec<String>, PortEvidence)>;

/// The staged policy and the network sets it refers to.
pub fn render(plan: &WorkloadPlan) -> Vec<Value> {
    let mut sets = DomainGroups::new();
    let mut egress = Vec::new();
    for rule in &plan.egress {
        match &rule.peer {
            PeerSpec::Domain { name, .. } => {
                let group = sets
                    .entry(rule.ports.keys().copied().collect())
                    .or_default();
                group.0.push(name.clone());
                for (port, e) in &rule.ports {
                    group.1.entry(*port).or_default().absorb(e);
                }
            }
            peer => egress.extend(rules(rule, destination(plan, peer), "destination")),
        }
    }
    let mut documents = Vec::new();
    for (i, (_, (names, ports))) in sets.into_iter().enumerate() {
        let set_name = format!("{}-egress-{i}", plan.policy_name());
        let rule = RulePlan {
            peer: PeerSpec::Addresses(vec![]),
            shown: names.join(", "),
            ports,
            implied: false,
        };
        let peer = json!({"selector": format!("flowlake.io/egress-set == '{set_name}'")});
        egress.extend(rules(&rule, peer, "destination"));
        documents.push(json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "NetworkSet",
            "metadata": {
                "name": set_name,
                "namespace": plan.namespace,
                "labels": {"flowlake.io/egress-set": set_name, "app.kubernetes.io/managed-by": "flowlake"},
            },
            "spec": {"allowedEgressDomains": names},
        }));
    }
    let ingress: Vec<Value> = plan
        .ingress
        .iter()
        .flat_map(|rule| rules(rule, destination(plan, &rule.peer), "source"))
        .collect();
    documents.insert(
        0,
        json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "StagedNetworkPolicy",
            "metadata": {
                "name": plan.policy_name(),
                "namespace": plan.namespace,
                "labels": {"app.kubernetes.io/managed-by": "flowlake"},
                "annotations": plan.annotations(),
            },
            "spec": {
                "stagedAction": "Set",
                "tier": "default",
                "order": ORDER,
                "selector": calico_expression(&plan.labels),
                "types": ["Ingress", "Egress"],
                "ingress": ingress,
                "egress": egress,
            }
        }),
    );
    documents
}

/// The entity rule (selector, namespaceSelector, nets) of a peer.
fn destination(plan: &WorkloadPlan, peer: &PeerSpec) -> Value {
    let ns = |ns: &str| format!("kubernetes.io/metadata.name == '{ns}'");
    match peer {
        PeerSpec::Workload { namespace, labels } if *namespace == plan.namespace => {
            json!({"selector": calico_expression(labels)})
        }
        PeerSpec::Workload { namespace, labels } => json!({
            "selector": calico_expression(labels),
            "namespaceSelector": ns(namespace),
        }),
        PeerSpec::Namespace(namespace) => json!({"namespaceSelector": ns(namespace)}),
        PeerSpec::Domain { cidrs, .. } | PeerSpec::Addresses(cidrs) | PeerSpec::Node(cidrs) => {
            json!({"nets": cidrs})
        }
    }
}

/// One Allow rule per protocol of the peer; `side` is `destination` (egress) or `source`
/// (ingress); ports always go on the destination.
fn rules(rule: &RulePlan, peer: Value, side: &str) -> Vec<Value> {
    let mut by_protocol: BTreeMap<Option<i32>, Vec<i32>> = BTreeMap::new();
    let mut any_port: Vec<Option<i32>> = Vec::new();
    for (protocol, port) in rule.ports.keys() {
        match (protocol, port) {
            (Some(6 | 17 | 132), Some(port)) => {
                by_protocol.entry(*protocol).or_default().push(*port)
            }
            _ => any_port.push(*protocol),
        }
    }
    for protocol in any_port {
        by_protocol.insert(protocol, Vec::new());
    }
    by_protocol
        .into_iter()
        .map(|(protocol, ports)| {
            let mut r = json!({
                "action": "Allow",
                "metadata": {"annotations": {
                    "flowlake.io/peer": rule.shown,
                    "flowlake.io/evidence": evidence_text(rule),
                }},
            });
            if let Some(p) = protocol {
                r["protocol"] = match p {
                    6 | 17 | 132 | 1 | 58 => json!(protocol_name(Some(p))),
                    n => json!(n),
                };
            }
            let mut dest = if side == "destination" {
                peer.clone()
            } else {
                json!({})
            };
            if !ports.is_empty() {
                dest["ports"] = json!(ports);
            }
            if side == "source" {
                r["source"] = peer.clone();
            }
            if dest.as_object().is_some_and(|o| !o.is_empty()) {
                r["destination"] = dest;
            }
            r
        })
        .collect()
}
