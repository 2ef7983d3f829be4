//! Evaluates one historical edge under the proposed policies.
//!
//! An edge is allowed when its source may send it (egress side, if the source is a pod)
//! and its destination may receive it (ingress side, if the destination is a pod or a
//! Service). Each flavour present in the files gives an opinion per side, or none when
//! none of its policies selects the endpoint; a side is allowed when every opinion allows
//! it (several enforcement layers stacked: a packet passes only what all of them pass).
//!
//! Kubernetes semantics: for a direction, a pod selected by some policy of that direction
//! admits only what some rule of those policies allows (`allowed = ¬selected ∨ allowed by
//! a selecting policy`, in three-valued logic). Calico's and Cilium's subsets are in
//! [`super::calico`] and [`super::cilium`].
//!
//! What the lake cannot know is `Maybe`: labels of a workload flows never showed, a label
//! key no pod carried, named ports, an external peer without recorded addresses, the
//! backends of a Service. Addresses of pods are not in the lake: a CIDR is taken to miss
//! pods unless it overlaps private address space (RFC 1918, RFC 6598, ULA), where pods
//! live — then it is `Maybe`.

pub use super::context::{Ctx, Dir, Opinion};
use super::parse::{K8sPeer, K8sPolicy, K8sRule};
use crate::policy::model::Peer;
use crate::policy::selectors::{LabelSelector, NamespaceView};
use crate::policy::tri::Tri;

/// The verdict on an edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Allowed under the proposed policies?
    pub allowed: Tri,
    /// What decides.
    pub by: String,
}

/// Evaluates an edge: every flavour's opinion on both sides.
pub fn evaluate(ctx: &Ctx<'_>) -> Verdict {
    let mut allowed = Tri::Yes;
    let mut deciding: Vec<String> = Vec::new();
    let mut allowing: Vec<String> = Vec::new();
    for dir in [Dir::Egress, Dir::Ingress] {
        let opinions = [
            kubernetes(ctx, dir),
            super::calico::opinion(ctx, dir),
            super::cilium::opinion(ctx, dir),
        ];
        for opinion in opinions.into_iter().flatten() {
            allowed = allowed.and(opinion.allowed);
            if opinion.allowed == Tri::Yes {
                allowing.push(opinion.by);
            } else {
                deciding.push(opinion.by);
            }
        }
    }
    let by = if allowed == Tri::Yes {
        if allowing.is_empty() {
            "no proposed policy selects either end".to_owned()
        } else {
            allowing.join("; ")
        }
    } else {
        deciding.join("; ")
    };
    Verdict { allowed, by }
}

/// The Kubernetes NetworkPolicy opinion on one side, None when no policy selects it.
fn kubernetes(ctx: &Ctx<'_>, dir: Dir) -> Option<Opinion> {
    let subject = ctx.subject(dir);
    let mut selected = Tri::No;
    let mut allowed = Tri::No;
    let mut allowed_by = None;
    let mut selecting = Vec::new();
    for policy in &ctx.proposed.k8s {
        let rules = match dir {
            Dir::Egress => policy.egress.as_ref(),
            Dir::Ingress => policy.ingress.as_ref(),
        };
        let Some(rules) = rules else { continue };
        let sel = k8s_selects(ctx, policy, subject);
        if sel == Tri::No {
            continue;
        }
        selected = selected.or(sel);
        selecting.push(policy.name.clone());
        for (i, rule) in rules.iter().enumerate() {
            let m = sel.and(k8s_rule(ctx, policy, rule, dir));
            if m > allowed {
                allowed = m;
                allowed_by = Some(format!("NetworkPolicy {} {}[{i}]", policy.name, dir.name()));
            }
        }
    }
    if selected == Tri::No {
        return None;
    }
    let result = selected.not().or(allowed);
    let by = match (result, allowed_by) {
        (Tri::Yes, Some(by)) => by,
        (Tri::Maybe, Some(by)) => format!("uncertain: {by}"),
        (Tri::No, _) => format!(
            "NetworkPolicy {} selects {} for {} and no rule allows it",
            selecting.join(", "),
            subject.display(),
            dir.name()
        ),
        (_, None) => format!(
            "uncertain: does NetworkPolicy {} select {}?",
            selecting.join(", "),
            subject.display()
        ),
    };
    Some(Opinion {
        allowed: result,
        by,
    })
}

/// Does `policy` select the subject pod?
fn k8s_selects(ctx: &Ctx<'_>, policy: &K8sPolicy, subject: &Peer) -> Tri {
    let in_namespace =
        Tri::from_bool(subject.namespace.as_deref() == Some(policy.namespace.as_str()));
    match subject.kind.as_str() {
        "pod" => in_namespace.and(ctx.workload(subject, policy.pod_selector.is_empty(), |v| {
            policy.pod_selector.matches(v)
        })),
        // The Service's backends are pods the lake did not name.
        "service" if policy.pod_selector.is_empty() => in_namespace,
        "service" => in_namespace.and(Tri::Maybe),
        _ => Tri::No,
    }
}

fn k8s_rule(ctx: &Ctx<'_>, policy: &K8sPolicy, rule: &K8sRule, dir: Dir) -> Tri {
    let peers = if rule.peers.is_empty() {
        Tri::Yes
    } else {
        Tri::any(
            rule.peers
                .iter()
                .map(|p| k8s_peer(ctx, policy, p, dir))
                .collect::<Vec<_>>(),
        )
    };
    let ports = if rule.ports.is_empty() {
        Tri::Yes
    } else {
        Tri::any(rule.ports.iter().map(|p| ctx.port(p)).collect::<Vec<_>>())
    };
    peers.and(ports)
}

fn k8s_peer(ctx: &Ctx<'_>, policy: &K8sPolicy, peer: &K8sPeer, dir: Dir) -> Tri {
    let far = ctx.far(dir);
    match peer {
        K8sPeer::IpBlock { cidr, except } => {
            ctx.cidrs_hold(dir, std::slice::from_ref(cidr), except)
        }
        K8sPeer::Selectors { pods, namespaces } => {
            let Some(ns) = far.namespace.as_deref() else {
                return Tri::No;
            };
            if !matches!(far.kind.as_str(), "pod" | "service" | "unknown") {
                return Tri::No;
            }
            let ns_ok = match namespaces {
                None => Tri::from_bool(ns == policy.namespace),
                Some(selector) => selector.matches(&NamespaceView(ns)),
            };
            let everything = pods.as_ref().is_none_or(LabelSelector::is_empty);
            let pods_ok = if far.kind == "pod" {
                ctx.workload(far, everything, |v| {
                    pods.as_ref().map_or(Tri::Yes, |s| s.matches(v))
                })
            } else if everything {
                Tri::Yes
            } else {
                Tri::Maybe
            };
            ns_ok.and(pods_ok)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::policy::model::{EdgeKey, Inventory, Labels};
    use crate::policy::whatif::parse::{Proposed, load_text};

    fn pod(ns: &str, name: &str) -> Peer {
        Peer {
            kind: "pod".into(),
            namespace: Some(ns.into()),
            name: Some(name.into()),
        }
    }

    fn labels(app: &str) -> Labels {
        [("app".to_owned(), app.to_owned())].into()
    }

    #[test]
    fn kubernetes_default_deny_and_allow() -> Result<(), String> {
        let mut inventory = Inventory::default();
        inventory.add_labels("c", &pod("shop", "web"), labels("web"));
        inventory.add_labels("c", &pod("shop", "db"), labels("db"));
        let mut proposed = Proposed::default();
        load_text(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: shop}\n\
             spec: {podSelector: {matchLabels: {app: web}}, policyTypes: [Egress], egress: [{to: [{podSelector: {matchLabels: {app: db}}}], ports: [{port: 5432}]}]}\n",
            &mut proposed,
        )?;
        let absent = BTreeSet::new();
        let verdict = |dst: Peer, port: i32| {
            let key = EdgeKey {
                cluster: "c".into(),
                src: pod("shop", "web"),
                dst,
                port: Some(port),
                protocol: Some(6),
                action: "allow".into(),
            };
            evaluate(&Ctx {
                inventory: &inventory,
                key: &key,
                addresses: None,
                absent: &absent,
                proposed: &proposed,
            })
        };
        assert_eq!(verdict(pod("shop", "db"), 5432).allowed, Tri::Yes);
        let denied = verdict(pod("shop", "db"), 5433);
        assert_eq!(denied.allowed, Tri::No, "{denied:?}");
        assert!(
            denied.by.contains("shop/web selects shop/web for egress"),
            "{}",
            denied.by
        );
        assert_eq!(verdict(pod("shop", "ghost"), 5432).allowed, Tri::Maybe);
        Ok(())
    }
}
