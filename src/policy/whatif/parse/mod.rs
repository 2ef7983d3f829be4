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
use crate::policy::selectors::LabelSelector;

mod calico;
mod cilium;

pub use calico::{CalicoPolicy, CalicoRule, Entity, NetSet};
pub use cilium::{CiliumPolicy, CiliumRule, CiliumSelector};

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
            calico::add(kind, name, namespace, labels, spec, proposed).map_err(within)?;
        }
        ("cilium.io", "CiliumNetworkPolicy" | "CiliumClusterwideNetworkPolicy") => {
            cilium::add(kind, name, namespace, spec, proposed).map_err(within)?;
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
