//! Calico documents: `NetworkPolicy`, `StagedNetworkPolicy`, `GlobalNetworkPolicy`,
//! `StagedGlobalNetworkPolicy`, `NetworkSet`, `GlobalNetworkSet`, `Tier`. Fields outside the
//! subset mark a rule or entity `unsupported` (its edges become uncertain).

use serde_json::Value;

use super::{Cidr, PortSpec, Proposed, text};
use crate::policy::model::{Labels, protocol_number};
use crate::policy::selectors::CalicoSelector;

/// A Calico policy (namespaced or global, staged or not).
#[derive(Clone, Debug)]
pub struct CalicoPolicy {
    /// `Kind namespace/name`.
    pub name: String,
    /// Namespace; None for global policies.
    pub namespace: Option<String>,
    /// Tier (`default` when unset).
    pub tier: String,
    /// `order`; None is last.
    pub order: Option<f64>,
    /// `selector`.
    pub selector: CalicoSelector,
    /// `namespaceSelector` of a global policy.
    pub namespace_selector: Option<CalicoSelector>,
    /// Ingress rules when the policy applies to ingress.
    pub ingress: Option<Vec<CalicoRule>>,
    /// Egress rules when the policy applies to egress.
    pub egress: Option<Vec<CalicoRule>>,
}

/// A Calico rule.
#[derive(Clone, Debug)]
pub struct CalicoRule {
    /// `Allow`, `Deny`, `Pass` or `Log`.
    pub action: String,
    /// `protocol`.
    pub protocol: Option<i32>,
    /// `source`.
    pub source: Entity,
    /// `destination`.
    pub destination: Entity,
    /// Uses fields outside the subset (notProtocol, http, icmp, ipVersion…).
    pub unsupported: bool,
}

/// A Calico EntityRule.
#[derive(Clone, Debug, Default)]
pub struct Entity {
    /// `selector`.
    pub selector: Option<CalicoSelector>,
    /// `namespaceSelector`.
    pub namespace_selector: Option<CalicoSelector>,
    /// `nets`.
    pub nets: Vec<Cidr>,
    /// `ports`.
    pub ports: Vec<PortSpec>,
    /// `domains`.
    pub domains: Vec<String>,
    /// Uses notSelector, notNets, notPorts, services, serviceAccounts.
    pub unsupported: bool,
}

/// A Calico NetworkSet or GlobalNetworkSet.
#[derive(Clone, Debug)]
pub struct NetSet {
    /// Namespace; None for global sets.
    pub namespace: Option<String>,
    /// Labels.
    pub labels: Labels,
    /// `nets`.
    pub nets: Vec<Cidr>,
    /// `allowedEgressDomains`.
    pub domains: Vec<String>,
}

fn selector(v: &Value) -> Result<Option<CalicoSelector>, String> {
    match v.as_str() {
        Some(s) => CalicoSelector::parse(s).map(Some),
        None => Ok(None),
    }
}

/// Adds a Calico document (policy, network set or tier).
pub fn add(
    kind: &str,
    name: &str,
    namespace: Option<String>,
    labels: Labels,
    spec: &Value,
    proposed: &mut Proposed,
) -> Result<(), String> {
    let global = kind.contains("Global");
    match kind {
        "Tier" => {
            let order = spec["order"].as_f64().unwrap_or(f64::MAX);
            proposed.tiers.insert(name.to_owned(), order);
        }
        "NetworkSet" | "GlobalNetworkSet" => {
            proposed.sets.push(NetSet {
                namespace: if global {
                    None
                } else {
                    Some(namespace.unwrap_or_else(|| "default".into()))
                },
                labels,
                nets: spec["nets"]
                    .as_array()
                    .map(|n| {
                        n.iter()
                            .filter_map(|c| c.as_str().and_then(Cidr::parse))
                            .collect()
                    })
                    .unwrap_or_default(),
                domains: spec["allowedEgressDomains"]
                    .as_array()
                    .map(|d| d.iter().filter_map(text).collect())
                    .unwrap_or_default(),
            });
        }
        "NetworkPolicy"
        | "StagedNetworkPolicy"
        | "GlobalNetworkPolicy"
        | "StagedGlobalNetworkPolicy" => {
            // A staged deletion proposes to remove the policy: nothing to evaluate.
            if spec["stagedAction"] == "Delete" {
                return Ok(());
            }
            let types: Vec<&str> = spec["types"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let ingress_on = types.contains(&"Ingress") || (types.is_empty());
            let egress_on =
                types.contains(&"Egress") || (types.is_empty() && !spec["egress"].is_null());
            let rules = |key: &str| -> Result<Vec<CalicoRule>, String> {
                spec[key]
                    .as_array()
                    .map(|rs| rs.iter().map(rule).collect())
                    .unwrap_or(Ok(Vec::new()))
            };
            let namespace = if global {
                None
            } else {
                Some(namespace.unwrap_or_else(|| "default".into()))
            };
            proposed.calico.push(CalicoPolicy {
                name: format!(
                    "{kind} {}{name}",
                    namespace
                        .as_ref()
                        .map(|n| format!("{n}/"))
                        .unwrap_or_default()
                ),
                namespace,
                tier: spec["tier"].as_str().unwrap_or("default").to_owned(),
                order: spec["order"].as_f64(),
                selector: selector(&spec["selector"])?.unwrap_or(CalicoSelector::All),
                namespace_selector: selector(&spec["namespaceSelector"])?,
                ingress: if ingress_on {
                    Some(rules("ingress")?)
                } else {
                    None
                },
                egress: if egress_on {
                    Some(rules("egress")?)
                } else {
                    None
                },
            });
        }
        other => return Err(format!("Calico kind {other} is not read by whatif")),
    }
    Ok(())
}

fn entity(v: &Value) -> Result<Entity, String> {
    let mut entity = Entity {
        selector: selector(&v["selector"])?,
        namespace_selector: selector(&v["namespaceSelector"])?,
        ..Entity::default()
    };
    for n in v["nets"].as_array().into_iter().flatten() {
        entity.nets.push(
            n.as_str()
                .and_then(Cidr::parse)
                .ok_or("nets entry is not a CIDR")?,
        );
    }
    if let Some(n) = v["net"].as_str() {
        entity.nets.push(Cidr::parse(n).ok_or("net is not a CIDR")?);
    }
    entity.ports = v["ports"]
        .as_array()
        .map(|ps| ps.iter().map(|p| PortSpec::parse(Some(p), None)).collect())
        .unwrap_or_default();
    entity.domains = v["domains"]
        .as_array()
        .map(|d| d.iter().filter_map(text).collect())
        .unwrap_or_default();
    entity.unsupported = [
        "notSelector",
        "notNets",
        "notNet",
        "notPorts",
        "services",
        "serviceAccounts",
    ]
    .iter()
    .any(|k| v.get(*k).is_some_and(|x| !x.is_null()));
    Ok(entity)
}

fn rule(rule: &Value) -> Result<CalicoRule, String> {
    let protocol = match &rule["protocol"] {
        Value::String(s) => Some(protocol_number(s).ok_or_else(|| format!("protocol {s:?}"))?),
        Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
        _ => None,
    };
    Ok(CalicoRule {
        action: rule["action"].as_str().unwrap_or("Allow").to_owned(),
        protocol,
        source: entity(&rule["source"])?,
        destination: entity(&rule["destination"])?,
        unsupported: ["notProtocol", "http", "icmp", "notICMP", "ipVersion"]
            .iter()
            .any(|k| rule.get(*k).is_some_and(|x| !x.is_null())),
    })
}
