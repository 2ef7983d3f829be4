//! Cilium documents: `CiliumNetworkPolicy` and `CiliumClusterwideNetworkPolicy`. Label
//! source prefixes (`k8s:`, `any:`) are removed and the namespace label taken apart; peer
//! kinds outside the subset mark the rule `unsupported`.

use serde_json::Value;

use super::{Cidr, PortRule, PortSpec, Proposed, text};
use crate::policy::model::protocol_number;
use crate::policy::selectors::LabelSelector;

/// A CiliumNetworkPolicy (or the clusterwide kind).
#[derive(Clone, Debug)]
pub struct CiliumPolicy {
    /// `Kind namespace/name`.
    pub name: String,
    /// Namespace; None for clusterwide policies.
    pub namespace: Option<String>,
    /// `endpointSelector`.
    pub selector: CiliumSelector,
    /// `ingress`, when present.
    pub ingress: Option<Vec<CiliumRule>>,
    /// `ingressDeny`.
    pub ingress_deny: Vec<CiliumRule>,
    /// `egress`, when present.
    pub egress: Option<Vec<CiliumRule>>,
    /// `egressDeny`.
    pub egress_deny: Vec<CiliumRule>,
}

/// A Cilium endpoint selector, with its namespace label taken apart.
#[derive(Clone, Debug, Default)]
pub struct CiliumSelector {
    /// Pod labels (source prefixes `k8s:`/`any:` removed).
    pub labels: LabelSelector,
    /// `io.kubernetes.pod.namespace`, when the selector names one.
    pub namespace: Option<String>,
}

/// A Cilium rule (one direction).
#[derive(Clone, Debug, Default)]
pub struct CiliumRule {
    /// `toEndpoints`/`fromEndpoints`.
    pub endpoints: Option<Vec<CiliumSelector>>,
    /// `toEntities`/`fromEntities`.
    pub entities: Vec<String>,
    /// `toCIDR`, `toCIDRSet[].cidr` (and `from…`).
    pub cidrs: Vec<Cidr>,
    /// `toFQDNs`: (is a pattern, text).
    pub fqdns: Vec<(bool, String)>,
    /// `toPorts[].ports`; None for every port.
    pub ports: Option<Vec<PortRule>>,
    /// Uses fields outside the subset (toServices, toGroups, toRequires, except, icmps…).
    pub unsupported: bool,
}

/// Adds a CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy.
pub fn add(
    kind: &str,
    name: &str,
    namespace: Option<String>,
    spec: &Value,
    proposed: &mut Proposed,
) -> Result<(), String> {
    let namespace = if kind == "CiliumNetworkPolicy" {
        Some(namespace.unwrap_or_else(|| "default".into()))
    } else {
        None
    };
    let selector = selector(&spec["endpointSelector"])?;
    let rules = |key: &str, dir: &str| -> Result<Vec<CiliumRule>, String> {
        spec[key]
            .as_array()
            .map(|rs| rs.iter().map(|r| rule(r, dir)).collect())
            .unwrap_or(Ok(Vec::new()))
    };
    let present = |key: &str| spec.get(key).is_some_and(|v| !v.is_null());
    proposed.cilium.push(CiliumPolicy {
        name: format!(
            "{kind} {}{name}",
            namespace
                .as_ref()
                .map(|n| format!("{n}/"))
                .unwrap_or_default()
        ),
        namespace,
        selector,
        ingress: if present("ingress") || present("ingressDeny") {
            Some(rules("ingress", "from")?)
        } else {
            None
        },
        ingress_deny: rules("ingressDeny", "from")?,
        egress: if present("egress") || present("egressDeny") {
            Some(rules("egress", "to")?)
        } else {
            None
        },
        egress_deny: rules("egressDeny", "to")?,
    });
    Ok(())
}

fn selector(v: &Value) -> Result<CiliumSelector, String> {
    let strip = |k: &str| {
        k.strip_prefix("k8s:")
            .or_else(|| k.strip_prefix("any:"))
            .unwrap_or(k)
            .to_owned()
    };
    let mut cleaned = serde_json::json!({});
    let mut namespace = None;
    if let Some(labels) = v["matchLabels"].as_object() {
        let mut out = serde_json::Map::new();
        for (k, val) in labels {
            let k = strip(k);
            if k == "io.kubernetes.pod.namespace" {
                namespace = val.as_str().map(str::to_owned);
            } else {
                out.insert(k, val.clone());
            }
        }
        cleaned["matchLabels"] = Value::Object(out);
    }
    if let Some(exprs) = v["matchExpressions"].as_array() {
        let exprs: Vec<Value> = exprs
            .iter()
            .map(|e| {
                let mut e = e.clone();
                if let Some(k) = e["key"].as_str() {
                    e["key"] = Value::String(strip(k));
                }
                e
            })
            .collect();
        cleaned["matchExpressions"] = Value::Array(exprs);
    }
    Ok(CiliumSelector {
        labels: LabelSelector::parse(Some(&cleaned))?,
        namespace,
    })
}

fn rule(rule: &Value, dir: &str) -> Result<CiliumRule, String> {
    let key = |k: &str| format!("{dir}{k}");
    let mut out = CiliumRule::default();
    if let Some(eps) = rule[key("Endpoints")].as_array() {
        out.endpoints = Some(eps.iter().map(selector).collect::<Result<_, _>>()?);
    }
    out.entities = rule[key("Entities")]
        .as_array()
        .map(|e| e.iter().filter_map(text).collect())
        .unwrap_or_default();
    for c in rule[key("CIDR")].as_array().into_iter().flatten() {
        out.cidrs.push(
            c.as_str()
                .and_then(Cidr::parse)
                .ok_or("CIDR entry is not a CIDR")?,
        );
    }
    for c in rule[key("CIDRSet")].as_array().into_iter().flatten() {
        match c["cidr"].as_str().and_then(Cidr::parse) {
            Some(cidr) => out.cidrs.push(cidr),
            None => out.unsupported = true,
        }
        if c.get("except").is_some() {
            out.unsupported = true;
        }
    }
    for f in rule["toFQDNs"].as_array().into_iter().flatten() {
        if let Some(n) = f["matchName"].as_str() {
            out.fqdns.push((false, n.to_owned()));
        }
        if let Some(p) = f["matchPattern"].as_str() {
            out.fqdns.push((true, p.to_owned()));
        }
    }
    if let Some(to_ports) = rule["toPorts"].as_array() {
        let mut ports = Vec::new();
        for tp in to_ports {
            match tp["ports"].as_array() {
                Some(ps) => {
                    for p in ps {
                        let protocol = match p["protocol"].as_str().unwrap_or("ANY") {
                            "ANY" => None,
                            other => Some(
                                protocol_number(other)
                                    .ok_or_else(|| format!("protocol {other:?}"))?,
                            ),
                        };
                        ports.push(PortRule {
                            protocol,
                            port: PortSpec::parse(p.get("port"), p.get("endPort")),
                        });
                    }
                }
                None => ports.push(PortRule {
                    protocol: None,
                    port: PortSpec::Any,
                }),
            }
        }
        out.ports = Some(ports);
    }
    out.unsupported |= ["Services", "Groups", "Requires", "Nodes"]
        .iter()
        .any(|k| rule.get(key(k)).is_some_and(|x| !x.is_null()))
        || rule.get("icmps").is_some_and(|x| !x.is_null());
    Ok(out)
}
