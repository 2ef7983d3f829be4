//! `flowlake policy recommend`: least-privilege policy per workload from the allowed edges
//! of a window.
//!
//! For every pod workload of the chosen namespaces (system namespaces excluded), egress
//! rules by destination peer and ingress rules by source peer, each with the exact ports
//! and protocols seen and the evidence (flows, bytes, first and last seen). Both
//! directions are always listed in the policy's types, so a workload that received nothing
//! gets a default-deny ingress: least privilege is what the lake showed, nothing more.
//!
//! Peers, whatever the format ([`PeerSpec`]): a workload by its stable pod labels (the
//! labels every seen pod shares, minus controller-generated ones such as
//! `pod-template-hash`) in its namespace (`kubernetes.io/metadata.name`); a Service by its
//! namespace; an external destination by its DNS name where the lake knows one, else by the
//! observed addresses (/32, /128); a node by its addresses. A peer the lake cannot express
//! is reported on stderr and in the `flowlake.io/not-covered` annotation — `whatif` will
//! list its edges as newly denied.
//!
//! Determinism: workloads, peers and ports are walked in sorted order.

mod calico;
mod cilium;
mod kubernetes;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::PathBuf;

use serde_json::Value;

use super::PolicyError;
use super::lake::{LakeArgs, LakeReader, Window};
use super::model::{
    Edges, Evidence, Inventory, Labels, MAX_ADDRESSES, Peer, protocol_name, rfc3339,
};

/// Namespaces left out unless `--exclude-namespace` says otherwise.
const DEFAULT_EXCLUDED: &str =
    "kube-system,kube-public,kube-node-lease,calico-system,calico-apiserver,tigera-operator";

/// Label keys set by controllers per pod or per revision: never part of a selector.
const UNSTABLE_KEYS: [&str; 8] = [
    "pod-template-hash",
    "controller-revision-hash",
    "pod-template-generation",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "job-name",
    "controller-uid",
    "batch.kubernetes.io/",
];

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `networking.k8s.io/v1` NetworkPolicy.
    Kubernetes,
    /// `projectcalico.org/v3` StagedNetworkPolicy (stagedAction: Set) and NetworkSet.
    CalicoStaged,
    /// `cilium.io/v2` CiliumNetworkPolicy.
    Cilium,
}

/// Arguments of `flowlake policy recommend`.
#[derive(Debug, clap::Args)]
pub struct RecommendArgs {
    #[command(flatten)]
    lake: LakeArgs,
    /// Only workloads of this namespace (repeatable; default every namespace not excluded).
    #[arg(long = "namespace")]
    namespaces: Vec<String>,
    /// Namespaces never given policy (comma-separated or repeated; replaces the default).
    #[arg(long = "exclude-namespace", value_delimiter = ',', default_value = DEFAULT_EXCLUDED)]
    exclude: Vec<String>,
    /// Policy flavour.
    #[arg(long, value_enum, default_value = "kubernetes")]
    format: Format,
    /// Write one file per policy into this directory instead of one YAML stream on stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// How a peer is written in a rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeerSpec {
    /// Pods with these labels in this namespace.
    Workload {
        /// Namespace.
        namespace: String,
        /// Stable labels (never empty).
        labels: Labels,
    },
    /// Every pod of a namespace (Services, workloads without stable labels).
    Namespace(String),
    /// An external destination known by DNS name, and the addresses it had.
    Domain {
        /// DNS name.
        name: String,
        /// Observed addresses as /32 or /128.
        cidrs: Vec<String>,
    },
    /// Observed addresses (unnamed external peers).
    Addresses(Vec<String>),
    /// Cluster nodes (by address for Kubernetes and Calico, as entities for Cilium).
    Node(Vec<String>),
}

/// (protocol, port) → evidence.
pub type PortEvidence = BTreeMap<(Option<i32>, Option<i32>), Evidence>;

/// One rule: a peer and the ports it used.
#[derive(Clone, Debug)]
pub struct RulePlan {
    /// The peer as written.
    pub peer: PeerSpec,
    /// How people read the peer (`shop/catalog`, `api.stripe.com`).
    pub shown: String,
    /// Ports and their evidence.
    pub ports: PortEvidence,
    /// Added by flowlake rather than seen (the DNS rule of a workload that resolves names).
    pub implied: bool,
}

/// The policy of one workload.
#[derive(Clone, Debug)]
pub struct WorkloadPlan {
    /// Cluster.
    pub cluster: String,
    /// Namespace.
    pub namespace: String,
    /// Workload name.
    pub name: String,
    /// Stable labels that select its pods.
    pub labels: Labels,
    /// Egress rules.
    pub egress: Vec<RulePlan>,
    /// Ingress rules.
    pub ingress: Vec<RulePlan>,
    /// Peers that could not be expressed: (direction, peer, why).
    pub not_covered: Vec<String>,
    /// The window the evidence comes from.
    pub window: Window,
}

impl WorkloadPlan {
    /// `flowlake-<workload>`, cut to Kubernetes' 253-character name limit.
    pub fn policy_name(&self) -> String {
        let mut name = format!("flowlake-{}", self.name);
        name.truncate(253);
        name
    }

    /// True when some egress peer is known by DNS name (the workload resolves names).
    pub fn resolves_names(&self) -> bool {
        self.egress
            .iter()
            .any(|r| matches!(r.peer, PeerSpec::Domain { .. }))
    }

    /// The common annotations: where the evidence comes from, and what is not covered.
    pub fn annotations(&self) -> serde_json::Map<String, Value> {
        let mut a = serde_json::Map::new();
        a.insert(
            "flowlake.io/generated-from".into(),
            Value::String(format!(
                "flowlake lake, cluster {}, window {} to {}",
                self.cluster,
                rfc3339(self.window.from),
                rfc3339(self.window.to)
            )),
        );
        if !self.not_covered.is_empty() {
            a.insert(
                "flowlake.io/not-covered".into(),
                Value::String(self.not_covered.join("\n")),
            );
        }
        a
    }
}

/// `8080/TCP: 12 flows, 3400 bytes, 2026-…Z to 2026-…Z` for every port of a rule.
pub fn evidence_text(rule: &RulePlan) -> String {
    if rule.implied {
        return "not observed: added because the workload resolves DNS names".to_owned();
    }
    let widened = match &rule.peer {
        PeerSpec::Namespace(ns) => format!(
            " (peer widened to every pod of namespace {ns}: {} is a Service or has no stable labels)",
            rule.shown
        ),
        PeerSpec::Addresses(cidrs) if cidrs.iter().any(|c| c.ends_with("/0")) => format!(
            " (peer widened to any address: {} had more than {MAX_ADDRESSES} addresses)",
            rule.shown
        ),
        _ => String::new(),
    };
    let ports = rule
        .ports
        .iter()
        .map(|((protocol, port), e)| {
            let port = port.map_or_else(|| "any".to_owned(), |p| p.to_string());
            if e.flows == 0 {
                return format!(
                    "{port}/{}: not observed, added for DNS over TCP/UDP",
                    protocol_name(*protocol)
                );
            }
            format!(
                "{port}/{}: {} flows, {} bytes, {} to {}",
                protocol_name(*protocol),
                e.flows,
                e.bytes,
                rfc3339(e.first_seen),
                rfc3339(e.last_seen)
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    format!("{ports}{widened}")
}

/// Stable labels: the common ones minus controller-generated keys.
pub fn stable_labels(common: Labels) -> Labels {
    common
        .into_iter()
        .filter(|(k, _)| {
            !UNSTABLE_KEYS.iter().any(|u| {
                if u.ends_with('/') {
                    k.starts_with(u)
                } else {
                    k == u
                }
            })
        })
        .collect()
}

fn cidr(ip: &std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(_) => format!("{ip}/32"),
        std::net::IpAddr::V6(_) => format!("{ip}/128"),
    }
}

/// How `peer` (seen at the `far` end of an edge of `cluster`) is written, or why it cannot be.
fn peer_spec(
    inventory: &Inventory,
    cluster: &str,
    peer: &Peer,
    addresses: &BTreeSet<std::net::IpAddr>,
) -> Result<PeerSpec, String> {
    let cidrs = || addresses.iter().map(cidr).collect::<Vec<_>>();
    match peer.kind.as_str() {
        "pod" => {
            let (Some(ns), Some(name)) = (&peer.namespace, &peer.name) else {
                return Err("a pod without namespace or workload".into());
            };
            let labels = inventory
                .workload_labels(cluster, ns, name)
                .map(|sets| stable_labels(sets.common()))
                .unwrap_or_default();
            if labels.is_empty() {
                // Widened to the namespace: said in the annotation of the rule's policy.
                Ok(PeerSpec::Namespace(ns.clone()))
            } else {
                Ok(PeerSpec::Workload {
                    namespace: ns.clone(),
                    labels,
                })
            }
        }
        "service" | "unknown" if peer.namespace.is_some() => Ok(PeerSpec::Namespace(
            peer.namespace.clone().unwrap_or_default(),
        )),
        "node" | "host" if !addresses.is_empty() => Ok(PeerSpec::Node(cidrs())),
        _ if peer.is_external() => match peer.dns_name() {
            Some(name) => Ok(PeerSpec::Domain {
                name: name.to_owned(),
                cidrs: cidrs(),
            }),
            None if !addresses.is_empty() => Ok(PeerSpec::Addresses(cidrs())),
            None => Err("no address of it is in flows/".into()),
        },
        _ => Err("the lake has neither a workload nor an address for it".into()),
    }
}

/// Folds the allowed edges into one plan per workload of the chosen namespaces.
pub fn plan(
    edges: &Edges,
    inventory: &Inventory,
    namespaces: &[String],
    exclude: &[String],
    window: Window,
) -> (Vec<WorkloadPlan>, Vec<String>) {
    let in_scope = |peer: &Peer| {
        peer.is_workload()
            && peer.namespace.as_ref().is_some_and(|ns| {
                !exclude.contains(ns) && (namespaces.is_empty() || namespaces.contains(ns))
            })
    };
    type Side = BTreeMap<Peer, PortEvidence>;
    let mut sides: BTreeMap<(String, String, String), (Side, Side)> = BTreeMap::new();
    for (key, evidence) in edges.iter().filter(|(k, _)| k.action == "allow") {
        let port = (key.protocol, key.port);
        if in_scope(&key.src) {
            let id = workload_id(&key.cluster, &key.src);
            let ports = sides
                .entry(id)
                .or_default()
                .0
                .entry(key.dst.clone())
                .or_default();
            ports.entry(port).or_default().absorb(evidence);
        }
        if in_scope(&key.dst) {
            let id = workload_id(&key.cluster, &key.dst);
            let ports = sides
                .entry(id)
                .or_default()
                .1
                .entry(key.src.clone())
                .or_default();
            ports.entry(port).or_default().absorb(evidence);
        }
    }
    let mut plans = Vec::new();
    let mut warnings = Vec::new();
    for ((cluster, namespace, name), (egress, ingress)) in sides {
        let labels = inventory
            .workload_labels(&cluster, &namespace, &name)
            .map(|sets| stable_labels(sets.common()))
            .unwrap_or_default();
        if labels.is_empty() {
            warnings.push(format!(
                "{cluster}: {namespace}/{name}: skipped, no stable pod labels in flows/ to select it by"
            ));
            continue;
        }
        let mut plan = WorkloadPlan {
            cluster: cluster.clone(),
            namespace: namespace.clone(),
            name: name.clone(),
            labels,
            egress: Vec::new(),
            ingress: Vec::new(),
            not_covered: Vec::new(),
            window,
        };
        let me = Peer {
            kind: "pod".into(),
            namespace: Some(namespace.clone()),
            name: Some(name.clone()),
        };
        for (direction, side) in [("egress", egress), ("ingress", ingress)] {
            for (peer, ports) in side {
                let addresses = {
                    let (src, dst) = if direction == "egress" {
                        (&me, &peer)
                    } else {
                        (&peer, &me)
                    };
                    let key = (cluster.clone(), src.clone(), dst.clone());
                    inventory.addresses.get(&key).map(|a| {
                        let side = if direction == "egress" {
                            &a.dst
                        } else {
                            &a.src
                        };
                        (side.clone(), a.overflowed)
                    })
                };
                let (addresses, overflowed) = addresses.unwrap_or_default();
                let spec = match peer_spec(inventory, &cluster, &peer, &addresses) {
                    // More addresses than are kept: a list would leave some out.
                    Ok(PeerSpec::Addresses(_)) if overflowed => {
                        Ok(PeerSpec::Addresses(vec!["0.0.0.0/0".into(), "::/0".into()]))
                    }
                    other => other,
                };
                match spec {
                    Ok(spec) => {
                        let rule = RulePlan {
                            peer: spec,
                            shown: peer.display(),
                            ports,
                            implied: false,
                        };
                        if direction == "egress" {
                            plan.egress.push(rule);
                        } else {
                            plan.ingress.push(rule);
                        }
                    }
                    Err(why) => {
                        let line = format!("{direction} {}: {why}", peer.display());
                        warnings.push(format!("{cluster}: {namespace}/{name}: {line}"));
                        plan.not_covered.push(line);
                    }
                }
            }
        }
        add_dns_rule(&mut plan);
        plans.push(plan);
    }
    (plans, warnings)
}

fn workload_id(cluster: &str, peer: &Peer) -> (String, String, String) {
    (
        cluster.to_owned(),
        peer.namespace.clone().unwrap_or_default(),
        peer.name.clone().unwrap_or_default(),
    )
}

/// True when the rule reaches port 53 (a DNS server the lake saw the workload use).
pub fn is_dns_rule(rule: &RulePlan) -> bool {
    !matches!(rule.peer, PeerSpec::Domain { .. } | PeerSpec::Addresses(_))
        && rule.ports.keys().any(|(_, port)| *port == Some(53))
}

/// A workload that reached names resolved them: allow cluster DNS if the lake did not show it.
/// A DNS server the lake saw the workload use gets both 53/UDP and 53/TCP (resolvers fall
/// back to TCP for large answers, which a short window may not show).
fn add_dns_rule(plan: &mut WorkloadPlan) {
    if !plan.resolves_names() {
        return;
    }
    let mut seen = false;
    for rule in plan.egress.iter_mut().filter(|r| is_dns_rule(r)) {
        seen = true;
        for protocol in [17, 6] {
            rule.ports.entry((Some(protocol), Some(53))).or_default();
        }
    }
    if seen {
        return;
    }
    let mut ports = PortEvidence::new();
    ports.insert((Some(17), Some(53)), Evidence::default());
    ports.insert((Some(6), Some(53)), Evidence::default());
    plan.egress.push(RulePlan {
        peer: PeerSpec::Workload {
            namespace: "kube-system".into(),
            labels: [("k8s-app".to_owned(), "kube-dns".to_owned())].into(),
        },
        shown: "kube-system/kube-dns".into(),
        ports,
        implied: true,
    });
}

/// Runs the command.
pub async fn run(args: &RecommendArgs) -> Result<(), PolicyError> {
    let reader = LakeReader::open(&args.lake)?;
    let (edges, _) = reader.read_edges().await?;
    let inventory = reader.read_inventory().await?;
    let (plans, warnings) = plan(
        &edges,
        &inventory,
        &args.namespaces,
        &args.exclude,
        reader.window(),
    );
    for warning in &warnings {
        eprintln!("flowlake policy recommend: {warning}");
    }
    let mut documents: Vec<(String, String, Vec<Value>)> = Vec::new();
    for plan in &plans {
        let docs = match args.format {
            Format::Kubernetes => vec![kubernetes::render(plan)],
            Format::CalicoStaged => calico::render(plan),
            Format::Cilium => vec![cilium::render(plan)],
        };
        let file = format!(
            "{}.{}.{}.yaml",
            plan.cluster,
            plan.namespace,
            plan.policy_name()
        );
        documents.push((plan.cluster.clone(), file, docs));
    }
    if plans.is_empty() {
        eprintln!(
            "flowlake policy recommend: no allowed edges of a workload in scope in the window"
        );
    }
    write_out(args.out.as_ref(), &documents)
}

/// The documents as a YAML stream, each after a comment naming its cluster (the objects
/// themselves cannot say which cluster they are for).
fn yaml_stream(cluster: &str, docs: &[Value]) -> Result<String, PolicyError> {
    let mut text = String::new();
    for doc in docs {
        text.push_str(&format!("---\n# flowlake: for cluster {cluster}\n"));
        text.push_str(&serde_yaml::to_string(doc)?);
    }
    Ok(text)
}

fn write_out(
    out: Option<&PathBuf>,
    documents: &[(String, String, Vec<Value>)],
) -> Result<(), PolicyError> {
    let io = |what: String| move |source| PolicyError::Output { what, source };
    match out {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(io(dir.display().to_string()))?;
            for (cluster, file, docs) in documents {
                let path = dir.join(file.replace('/', "_"));
                std::fs::write(&path, yaml_stream(cluster, docs)?)
                    .map_err(io(path.display().to_string()))?;
            }
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            for (cluster, _, docs) in documents {
                stdout
                    .write_all(yaml_stream(cluster, docs)?.as_bytes())
                    .map_err(io("stdout".into()))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::policy::model::EdgeKey;

    fn peer(kind: &str, ns: Option<&str>, name: &str) -> Peer {
        Peer {
            kind: kind.into(),
            namespace: ns.map(str::to_owned),
            name: Some(name.into()),
        }
    }

    #[test]
    fn plans_skip_unlabelled_workloads_widen_overflowing_addresses_and_add_dns() {
        let web = peer("pod", Some("shop"), "web");
        let bare = peer("pod", Some("shop"), "bare");
        let stripe = peer("external_public", None, "api.stripe.com");
        let public = peer("external_public", None, "public");
        let mut inventory = Inventory::default();
        inventory.add_labels(
            "c",
            &web,
            [("app", "web"), ("pod-template-hash", "x")]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        for i in 0..=MAX_ADDRESSES {
            let ip = std::net::IpAddr::from([93, 184, 0, u8::try_from(i % 256).unwrap_or(0)]);
            inventory.add_addresses("c", &web, &public, None, Some(ip));
        }
        let mut edges = Edges::new();
        for (src, dst, port) in [
            (&web, &stripe, 443),
            (&web, &public, 80),
            (&bare, &web, 8080),
        ] {
            edges.insert(
                EdgeKey {
                    cluster: "c".into(),
                    src: src.clone(),
                    dst: dst.clone(),
                    port: Some(port),
                    protocol: Some(6),
                    action: "allow".into(),
                },
                Evidence {
                    flows: 1,
                    ..Evidence::default()
                },
            );
        }
        let window = Window { from: 0, to: 1 };
        let (plans, warnings) = plan(&edges, &inventory, &[], &[], window);
        assert_eq!(plans.len(), 1, "{plans:?}");
        assert!(warnings[0].contains("shop/bare: skipped"), "{warnings:?}");
        let web_plan = &plans[0];
        assert_eq!(
            web_plan.labels,
            [("app".to_owned(), "web".to_owned())].into()
        );
        let peers: Vec<&PeerSpec> = web_plan.egress.iter().map(|r| &r.peer).collect();
        assert!(
            matches!(peers[0], PeerSpec::Domain { name, cidrs } if name == "api.stripe.com" && cidrs.is_empty())
        );
        assert_eq!(
            peers[1],
            &PeerSpec::Addresses(vec!["0.0.0.0/0".into(), "::/0".into()])
        );
        assert!(evidence_text(&web_plan.egress[1]).contains("widened to any address"));
        assert!(
            web_plan.egress[2].implied,
            "the DNS rule of a workload that resolves names"
        );
        // Ingress from the unlabelled workload: widened to its namespace.
        assert_eq!(web_plan.ingress[0].peer, PeerSpec::Namespace("shop".into()));
    }

    #[test]
    fn controller_labels_are_dropped() {
        let labels: Labels = [
            ("app", "web"),
            ("pod-template-hash", "6d8f7c9b4"),
            ("batch.kubernetes.io/job-name", "x"),
            ("statefulset.kubernetes.io/pod-name", "db-0"),
            ("tier", "front"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let stable = stable_labels(labels);
        assert_eq!(
            stable.keys().map(String::as_str).collect::<Vec<_>>(),
            ["app", "tier"]
        );
    }
}
