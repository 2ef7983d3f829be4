//! A [`WorkloadPlan`] as a `cilium.io/v2` CiliumNetworkPolicy.
//!
//! Peers: workloads by `toEndpoints`/`fromEndpoints` with the pod labels and
//! `k8s:io.kubernetes.pod.namespace`; external names by `toFQDNs.matchName`; unnamed
//! addresses by `toCIDR`/`fromCIDR`; nodes by the `host` and `remote-node` entities.
//! `toFQDNs` only works when Cilium's DNS proxy sees the lookups, so a workload with name
//! egress gets the DNS visibility rule: its port-53 rule (to the DNS server the lake saw, or
//! to `kube-system` `k8s-app=kube-dns` when it saw none) carries `rules.dns` with
//! `matchPattern: "*"` on port 53 `ANY`. A direction without rules is `[{}]`, Cilium's
//! default deny for it. Evidence: the `flowlake.io/evidence` annotation, one line per rule.

use serde_json::{Value, json};

use super::{PeerSpec, RulePlan, WorkloadPlan, evidence_text, is_dns_rule};
use crate::policy::model::protocol_name;

/// The label Cilium gives every endpoint for its namespace.
pub const NAMESPACE_LABEL: &str = "k8s:io.kubernetes.pod.namespace";

/// The policy document.
pub fn render(plan: &WorkloadPlan) -> Value {
    let dns_visibility = plan.resolves_names();
    let mut evidence = Vec::new();
    let mut egress = Vec::new();
    for rule in &plan.egress {
        let mut r = peer(&rule.peer, "to");
        let dns = dns_visibility && is_dns_rule(rule);
        if let Some(ports) = to_ports(rule, dns) {
            r["toPorts"] = ports;
        }
        evidence.push(format!(
            "egress[{}] to {}: {}",
            egress.len(),
            rule.shown,
            evidence_text(rule)
        ));
        egress.push(r);
    }
    let mut ingress = Vec::new();
    for rule in &plan.ingress {
        let mut r = peer(&rule.peer, "from");
        if let Some(ports) = to_ports(rule, false) {
            r["toPorts"] = ports;
        }
        evidence.push(format!(
            "ingress[{}] from {}: {}",
            ingress.len(),
            rule.shown,
            evidence_text(rule)
        ));
        ingress.push(r);
    }
    // `[{}]`: the direction is enforced and nothing is allowed.
    for rules in [&mut egress, &mut ingress] {
        if rules.is_empty() {
            rules.push(json!({}));
        }
    }
    let mut annotations = plan.annotations();
    annotations.insert(
        "flowlake.io/evidence".into(),
        Value::String(evidence.join("\n")),
    );
    json!({
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {
            "name": plan.policy_name(),
            "namespace": plan.namespace,
            "labels": {"app.kubernetes.io/managed-by": "flowlake"},
            "annotations": annotations,
        },
        "spec": {
            "description": format!("flowlake: least privilege for {}/{} from observed flows", plan.namespace, plan.name),
            "endpointSelector": {"matchLabels": plan.labels},
            "ingress": ingress,
            "egress": egress,
        }
    })
}

/// The peer part of a rule; `side` is `to` or `from`.
fn peer(spec: &PeerSpec, side: &str) -> Value {
    match spec {
        PeerSpec::Workload { namespace, labels } => {
            let mut labels = json!(labels);
            labels[NAMESPACE_LABEL] = json!(namespace);
            json!({format!("{side}Endpoints"): [{"matchLabels": labels}]})
        }
        PeerSpec::Namespace(namespace) => {
            json!({format!("{side}Endpoints"): [{"matchLabels": {NAMESPACE_LABEL: namespace}}]})
        }
        PeerSpec::Domain { name, cidrs } if side == "to" => {
            let _ = cidrs;
            json!({"toFQDNs": [{"matchName": name}]})
        }
        PeerSpec::Domain { cidrs, .. } | PeerSpec::Addresses(cidrs) => {
            json!({format!("{side}CIDR"): cidrs})
        }
        PeerSpec::Node(_) => json!({format!("{side}Entities"): ["host", "remote-node"]}),
    }
}

/// `toPorts` of a rule (None: every port); `dns` adds the DNS visibility rule on port 53.
fn to_ports(rule: &RulePlan, dns: bool) -> Option<Value> {
    let mut ports = Vec::new();
    for (protocol, port) in rule.ports.keys() {
        match (protocol, port) {
            (Some(6 | 17 | 132), Some(53)) if dns => {}
            (Some(6 | 17 | 132), Some(port)) => ports.push(json!({
                "port": port.to_string(),
                "protocol": protocol_name(*protocol),
            })),
            // ICMP and unknown protocols: no L4 restriction can be written for them here.
            _ => return None,
        }
    }
    let mut entries = Vec::new();
    if !ports.is_empty() {
        entries.push(json!({"ports": ports}));
    }
    if dns {
        entries.push(json!({
            "ports": [{"port": "53", "protocol": "ANY"}],
            "rules": {"dns": [{"matchPattern": "*"}]},
        }));
    }
    Some(json!(entries))
}

#[cfg(test)]
mod tests {
    use super::super::PortEvidence;
    use super::*;
    use crate::policy::lake::Window;
    use crate::policy::model::Evidence;

    #[test]
    fn fqdn_egress_brings_the_dns_visibility_rule() {
        let mut https = PortEvidence::new();
        https.insert((Some(6), Some(443)), Evidence::default());
        let mut dns = PortEvidence::new();
        dns.insert((Some(17), Some(53)), Evidence::default());
        let plan = WorkloadPlan {
            cluster: "c".into(),
            namespace: "shop".into(),
            name: "checkout".into(),
            labels: [("app".to_owned(), "checkout".to_owned())].into(),
            egress: vec![
                RulePlan {
                    peer: PeerSpec::Domain {
                        name: "api.stripe.com".into(),
                        cidrs: vec![],
                    },
                    shown: "api.stripe.com".into(),
                    ports: https,
                    implied: false,
                },
                RulePlan {
                    peer: PeerSpec::Workload {
                        namespace: "kube-system".into(),
                        labels: [("app".to_owned(), "kube-dns".to_owned())].into(),
                    },
                    shown: "kube-system/coredns".into(),
                    ports: dns,
                    implied: false,
                },
            ],
            ingress: vec![],
            not_covered: vec![],
            window: Window { from: 0, to: 1 },
        };
        let doc = render(&plan);
        assert_eq!(
            doc["spec"]["egress"][0],
            json!({"toFQDNs": [{"matchName": "api.stripe.com"}], "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}]})
        );
        assert_eq!(
            doc["spec"]["egress"][1]["toPorts"],
            json!([{"ports": [{"port": "53", "protocol": "ANY"}], "rules": {"dns": [{"matchPattern": "*"}]}}])
        );
        assert_eq!(doc["spec"]["ingress"], json!([{}]));
    }
}
