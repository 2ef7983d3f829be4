//! Reads proposed policy files into the subset `whatif` evaluates.
//!
//! Accepted documents (YAML streams, `kind: List` included; a directory means its `*.yaml`
//! and `*.yml` files in name order): Kubernetes `NetworkPolicy`; Calico
//! (`projectcalico.org/v3`, also `crd.projectcalico.org/v1`) `NetworkPolicy`,
//! `StagedNetworkPolicy`, `GlobalNetworkPolicy`, `StagedGlobalNetworkPolicy`, `NetworkSet`,
//! `GlobalNetworkSet`, `Tier`; Cilium `CiliumNetworkPolicy` and
//! `CiliumClusterwideNetworkPolicy`. Any other kind is an error naming the document.
//! Fields outside the subset are not errors: they make the rule *unsupported*, and an edge
//! such a rule could decide is reported as uncertain, never guessed.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use serde_json::Value;

use crate::policy::PolicyError;
use crate::policy::model::{Labels, protocol_number};
use crate::policy::selectors::{CalicoSelector, LabelSelector};

/// An address block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::/n` or a bare address.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let a = text.parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// True when `ip` lies in the block.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(*ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(*ip) & mask
            }
            _ => false,
        }
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The first address of the block.
    pub fn base(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
    }
}

/// A port condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortSpec {
    /// Every port.
    Any,
    /// A port or a range `[first, last]`.
    Range(i32, i32),
    /// A named container port: the lake cannot resolve it.
    Named(String),
}

impl PortSpec {
    fn parse(value: Option<&Value>, end: Option<&Value>) -> PortSpec {
        match value {
            None | Some(Value::Null) => PortSpec::Any,
            Some(Value::Number(n)) => {
                let first = n.as_i64().and_then(|n| i32::try_from(n).ok()).unwrap_or(-1);
                let last = end
                    .and_then(Value::as_i64)
                    .and_then(|n| i32::try_from(n).ok())
                    .unwrap_or(first);
                if first == 0 {
                    PortSpec::Any
                } else {
                    PortSpec::Range(first, last)
                }
            }
            Some(Value::String(s)) => {
                if let Some((a, b)) = s.split_once(':')
                    && let (Ok(a), Ok(b)) = (a.parse(), b.parse())
                {
                    return PortSpec::Range(a, b);
                }
                match s.parse::<i32>() {
                    Ok(0) => PortSpec::Any,
                    Ok(n) => {
                        let last = end
                            .and_then(Value::as_i64)
                            .and_then(|n| i32::try_from(n).ok())
                            .unwrap_or(n);
                        PortSpec::Range(n, last)
                    }
                    Err(_) => PortSpec::Named(s.clone()),
                }
            }
            Some(other) => PortSpec::Named(other.to_string()),
        }
    }
}

/// A (protocol, port) condition; `protocol` None means any protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRule {
    /// IANA number, None for any.
    pub protocol: Option<i32>,
    /// The port(s).
    pub port: PortSpec,
}

/// A Kubernetes NetworkPolicy.
#[derive(Clone, Debug)]
pub struct K8sPolicy {
    /// `namespace/name`.
    pub name: String,
    /// Namespace (default `default`, as kubectl would apply it).
    pub namespace: String,
    /// `spec.podSelector`.
    pub pod_selector: LabelSelector,
    /// Ingress rules, None when the policy does not enforce ingress.
    pub ingress: Option<Vec<K8sRule>>,
    /// Egress rules, None when the policy does not enforce egress.
    pub egress: Option<Vec<K8sRule>>,
}

/// A NetworkPolicy rule: empty `peers` or `ports` means every peer or port.
#[derive(Clone, Debug, Default)]
pub struct K8sRule {
    /// `to`/`from`.
    pub peers: Vec<K8sPeer>,
    /// `ports`.
    pub ports: Vec<PortRule>,
}

/// A NetworkPolicyPeer.
#[derive(Clone, Debug)]
pub enum K8sPeer {
    /// `podSelector` and/or `namespaceSelector`.
    Selectors {
        /// `podSelector`.
        pods: Option<LabelSelector>,
        /// `namespaceSelector`.
        namespaces: Option<LabelSelector>,
    },
    /// `ipBlock`.
    IpBlock {
        /// `cidr`.
        cidr: Cidr,
        /// `except`.
        except: Vec<Cidr>,
    },
}

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

/// Everything the policy files held.
#[derive(Debug, Default)]
pub struct Proposed {
    /// Kubernetes policies.
    pub k8s: Vec<K8sPolicy>,
    /// Calico policies.
    pub calico: Vec<CalicoPolicy>,
    /// Calico tiers: name → order.
    pub tiers: BTreeMap<String, f64>,
    /// Calico network sets.
    pub sets: Vec<NetSet>,
    /// Cilium policies.
    pub cilium: Vec<CiliumPolicy>,
}

impl Proposed {
    /// Number of policies read.
    pub fn policies(&self) -> usize {
        self.k8s.len() + self.calico.len() + self.cilium.len()
    }
}

/// Reads every file (or directory of files).
pub fn load(paths: &[std::path::PathBuf]) -> Result<Proposed, PolicyError> {
    let mut proposed = Proposed::default();
    for path in paths {
        let mut files = Vec::new();
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|e| file_error(path, e.to_string()))?;
            for entry in entries.flatten() {
                let p = entry.path();
                if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                    files.push(p);
                }
            }
            files.sort();
        } else {
            files.push(path.clone());
        }
        for file in files {
            let text =
                std::fs::read_to_string(&file).map_err(|e| file_error(&file, e.to_string()))?;
            load_text(&text, &mut proposed).map_err(|m| file_error(&file, m))?;
        }
    }
    Ok(proposed)
}

fn file_error(path: &Path, message: String) -> PolicyError {
    PolicyError::PolicyFile {
        file: path.display().to_string(),
        message,
    }
}

/// Adds the documents of one YAML stream.
pub fn load_text(text: &str, proposed: &mut Proposed) -> Result<(), String> {
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value: Value = serde::Deserialize::deserialize(document)
            .map_err(|e| format!("document {}: {e}", i + 1))?;
        if value.is_null() {
            continue;
        }
        let items = if value["kind"] == "List" {
            value["items"].as_array().cloned().unwrap_or_default()
        } else {
            vec![value]
        };
        for item in items {
            add(&item, proposed).map_err(|e| format!("document {}: {e}", i + 1))?;
        }
    }
    Ok(())
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

fn add(doc: &Value, proposed: &mut Proposed) -> Result<(), String> {
    let api = doc["apiVersion"].as_str().unwrap_or_default();
    let kind = doc["kind"].as_str().unwrap_or_default();
    let name = doc["metadata"]["name"].as_str().unwrap_or("(unnamed)");
    let namespace = text(&doc["metadata"]["namespace"]);
    let spec = &doc["spec"];
    let group = api.split('/').next().unwrap_or_default();
    let within = |e: String| format!("{kind} {name}: {e}");
    match (group, kind) {
        ("networking.k8s.io", "NetworkPolicy") => {
            let namespace = namespace.unwrap_or_else(|| "default".into());
            let types: Vec<&str> = spec["policyTypes"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            // Without policyTypes: Ingress always, Egress when egress rules are present.
            let ingress_on = types.contains(&"Ingress") || types.is_empty();
            let egress_on =
                types.contains(&"Egress") || (types.is_empty() && !spec["egress"].is_null());
            let rules = |key: &str, peer_key: &str| -> Result<Vec<K8sRule>, String> {
                spec[key]
                    .as_array()
                    .map(|rs| rs.iter().map(|r| k8s_rule(r, peer_key)).collect())
                    .unwrap_or(Ok(Vec::new()))
            };
            proposed.k8s.push(K8sPolicy {
                name: format!("{namespace}/{name}"),
                pod_selector: LabelSelector::parse(spec.get("podSelector")).map_err(within)?,
                ingress: if ingress_on {
                    Some(rules("ingress", "from").map_err(within)?)
                } else {
                    None
                },
                egress: if egress_on {
                    Some(rules("egress", "to").map_err(within)?)
                } else {
                    None
                },
                namespace,
            });
        }
        ("projectcalico.org" | "crd.projectcalico.org", _) => {
            let labels: Labels = doc["metadata"]["labels"]
                .as_object()
                .map(|l| {
                    l.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                        .collect()
                })
                .unwrap_or_default();
            add_calico(kind, name, namespace, labels, spec, proposed).map_err(within)?;
        }
        ("cilium.io", "CiliumNetworkPolicy" | "CiliumClusterwideNetworkPolicy") => {
            let namespace = if kind == "CiliumNetworkPolicy" {
                Some(namespace.unwrap_or_else(|| "default".into()))
            } else {
                None
            };
            let selector = cilium_selector(&spec["endpointSelector"]).map_err(within)?;
            let rules = |key: &str, dir: &str| -> Result<Vec<CiliumRule>, String> {
                spec[key]
                    .as_array()
                    .map(|rs| rs.iter().map(|r| cilium_rule(r, dir)).collect())
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
                    Some(rules("ingress", "from").map_err(within)?)
                } else {
                    None
                },
                ingress_deny: rules("ingressDeny", "from").map_err(within)?,
                egress: if present("egress") || present("egressDeny") {
                    Some(rules("egress", "to").map_err(within)?)
                } else {
                    None
                },
                egress_deny: rules("egressDeny", "to").map_err(within)?,
            });
        }
        _ => return Err(format!("{api} {kind} {name} is not a policy whatif reads")),
    }
    Ok(())
}

fn ports_of(list: &Value) -> Vec<PortRule> {
    list.as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| PortRule {
                    protocol: Some(
                        p["protocol"]
                            .as_str()
                            .and_then(protocol_number)
                            .unwrap_or(6),
                    ),
                    port: PortSpec::parse(p.get("port"), p.get("endPort")),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn k8s_rule(rule: &Value, peer_key: &str) -> Result<K8sRule, String> {
    let mut out = K8sRule {
        ports: ports_of(&rule["ports"]),
        ..K8sRule::default()
    };
    for peer in rule[peer_key].as_array().into_iter().flatten() {
        if let Some(block) = peer.get("ipBlock").filter(|v| !v.is_null()) {
            let cidr = block["cidr"]
                .as_str()
                .and_then(Cidr::parse)
                .ok_or("ipBlock.cidr is not a CIDR")?;
            let except = block["except"]
                .as_array()
                .map(|e| {
                    e.iter()
                        .filter_map(|c| c.as_str().and_then(Cidr::parse))
                        .collect()
                })
                .unwrap_or_default();
            out.peers.push(K8sPeer::IpBlock { cidr, except });
        } else {
            let selector = |key: &str| -> Result<Option<LabelSelector>, String> {
                match peer.get(key).filter(|v| !v.is_null()) {
                    Some(v) => LabelSelector::parse(Some(v)).map(Some),
                    None => Ok(None),
                }
            };
            out.peers.push(K8sPeer::Selectors {
                pods: selector("podSelector")?,
                namespaces: selector("namespaceSelector")?,
            });
        }
    }
    Ok(out)
}

fn calico_selector(v: &Value) -> Result<Option<CalicoSelector>, String> {
    match v.as_str() {
        Some(s) => CalicoSelector::parse(s).map(Some),
        None => Ok(None),
    }
}

fn add_calico(
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
                    .map(|rs| rs.iter().map(calico_rule).collect())
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
                selector: calico_selector(&spec["selector"])?.unwrap_or(CalicoSelector::All),
                namespace_selector: calico_selector(&spec["namespaceSelector"])?,
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

fn calico_entity(v: &Value) -> Result<Entity, String> {
    let mut entity = Entity {
        selector: calico_selector(&v["selector"])?,
        namespace_selector: calico_selector(&v["namespaceSelector"])?,
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

fn calico_rule(rule: &Value) -> Result<CalicoRule, String> {
    let protocol = match &rule["protocol"] {
        Value::String(s) => Some(protocol_number(s).ok_or_else(|| format!("protocol {s:?}"))?),
        Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
        _ => None,
    };
    Ok(CalicoRule {
        action: rule["action"].as_str().unwrap_or("Allow").to_owned(),
        protocol,
        source: calico_entity(&rule["source"])?,
        destination: calico_entity(&rule["destination"])?,
        unsupported: ["notProtocol", "http", "icmp", "notICMP", "ipVersion"]
            .iter()
            .any(|k| rule.get(*k).is_some_and(|x| !x.is_null())),
    })
}

fn cilium_selector(v: &Value) -> Result<CiliumSelector, String> {
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

fn cilium_rule(rule: &Value, dir: &str) -> Result<CiliumRule, String> {
    let key = |k: &str| format!("{dir}{k}");
    let mut out = CiliumRule::default();
    if let Some(eps) = rule[key("Endpoints")].as_array() {
        out.endpoints = Some(eps.iter().map(cilium_selector).collect::<Result<_, _>>()?);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_contain_their_addresses() {
        let net = Cidr::parse("10.0.0.0/8");
        assert!(
            net.is_some_and(|n| n.contains(&"10.1.2.3".parse().unwrap_or(IpAddr::from([0; 4]))))
        );
        assert!(
            net.is_some_and(|n| !n.contains(&"11.0.0.1".parse().unwrap_or(IpAddr::from([0; 4]))))
        );
        assert!(Cidr::parse("0.0.0.0/0").is_some_and(|n| n.prefix() == 0));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("::/0").is_some());
    }

    #[test]
    fn documents_of_every_flavour_are_read() -> Result<(), String> {
        let mut p = Proposed::default();
        load_text(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: shop}\nspec: {podSelector: {}, policyTypes: [Egress]}\n---\n\
             apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: {selector: \"app == 'x'\", types: [Egress], egress: [{action: Deny, protocol: UDP, destination: {ports: [53]}}]}\n---\n\
             apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: c, namespace: shop}\nspec: {endpointSelector: {matchLabels: {'k8s:app': web}}, egress: [{toFQDNs: [{matchName: api.stripe.com}], toPorts: [{ports: [{port: '443', protocol: TCP}]}]}]}\n",
            &mut p,
        )?;
        assert_eq!(p.policies(), 3);
        assert!(p.k8s[0].ingress.is_none() && p.k8s[0].egress.as_ref().is_some_and(Vec::is_empty));
        assert_eq!(
            p.calico[0].egress.as_ref().map(|r| r[0].protocol),
            Some(Some(17))
        );
        assert_eq!(
            p.cilium[0]
                .selector
                .labels
                .match_labels
                .get("app")
                .map(String::as_str),
            Some("web")
        );
        assert!(load_text("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n", &mut p).is_err());
        Ok(())
    }
}
