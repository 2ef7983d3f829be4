//! Cilium's opinion on one side of an edge, in the subset `whatif` supports:
//! `endpointSelector`; `toEndpoints`/`fromEndpoints` (a selector without a namespace label
//! means the policy's namespace), `toEntities`/`fromEntities` (`all`, `world`, `cluster`;
//! `host` with `remote-node` matches any node, either alone is uncertain), `toCIDR`/`toCIDRSet` (without `except`), `toFQDNs`
//! (`matchName`, `matchPattern` with `*`), `toPorts` (port, `endPort`, protocol or `ANY`),
//! and the `…Deny` lists.
//!
//! Semantics: an endpoint selected by a policy that has a section for the direction is in
//! default deny for it; it admits what some allow rule of those policies matches, unless a
//! deny rule matches (deny wins). A rule with ports but no peer matches every peer; an
//! empty rule `{}` matches nothing (it only switches default deny on).

use super::context::{Ctx, Dir, Opinion, domain_matches};
use super::parse::{CiliumPolicy, CiliumRule, CiliumSelector};
use crate::policy::model::Peer;
use crate::policy::tri::Tri;

/// The opinion of the proposed Cilium policies on side `dir`, None when none selects it.
pub fn opinion(ctx: &Ctx<'_>, dir: Dir) -> Option<Opinion> {
    let subject = ctx.subject(dir);
    let (mut selected, mut allowed, mut denied) = (Tri::No, Tri::No, Tri::No);
    let (mut allowed_by, mut denied_by, mut selecting) = (None, None, Vec::new());
    for policy in &ctx.proposed.cilium {
        let (rules, deny_rules) = match dir {
            Dir::Egress => (policy.egress.as_ref(), &policy.egress_deny),
            Dir::Ingress => (policy.ingress.as_ref(), &policy.ingress_deny),
        };
        let Some(rules) = rules else { continue };
        let sel = selects(ctx, policy, subject);
        if sel == Tri::No {
            continue;
        }
        selected = selected.or(sel);
        selecting.push(policy.name.clone());
        for (i, rule) in rules.iter().enumerate() {
            let m = sel.and(rule_matches(ctx, policy, rule, dir));
            if m > allowed {
                allowed = m;
                allowed_by = Some(format!("{} {}[{i}]", policy.name, dir.name()));
            }
        }
        for (i, rule) in deny_rules.iter().enumerate() {
            let m = sel.and(rule_matches(ctx, policy, rule, dir));
            if m > denied {
                denied = m;
                denied_by = Some(format!("{} {}Deny[{i}]", policy.name, dir.name()));
            }
        }
    }
    if selected == Tri::No {
        return None;
    }
    let result = denied.not().and(selected.not().or(allowed));
    let by = match (result, &denied_by, &allowed_by) {
        (Tri::No, Some(by), _) if denied == Tri::Yes => by.clone(),
        (Tri::No, _, _) => format!(
            "{} selects {} for {} and no rule allows it",
            selecting.join(", "),
            subject.display(),
            dir.name()
        ),
        (Tri::Yes, _, Some(by)) => by.clone(),
        (_, _, by) => format!(
            "uncertain: {}",
            by.clone()
                .or(denied_by.clone())
                .unwrap_or_else(|| selecting.join(", "))
        ),
    };
    Some(Opinion {
        allowed: result,
        by,
    })
}

fn selects(ctx: &Ctx<'_>, policy: &CiliumPolicy, subject: &Peer) -> Tri {
    if subject.kind != "pod" {
        return Tri::No;
    }
    endpoint(ctx, policy, &policy.selector, subject)
}

/// Does a Cilium endpoint selector select the pod `peer`?
fn endpoint(ctx: &Ctx<'_>, policy: &CiliumPolicy, selector: &CiliumSelector, peer: &Peer) -> Tri {
    let Some(ns) = peer.namespace.as_deref() else {
        return Tri::No;
    };
    let namespace = match (&selector.namespace, &policy.namespace) {
        (Some(want), _) => Tri::from_bool(want == ns),
        (None, Some(own)) => Tri::from_bool(own == ns),
        (None, None) => Tri::Yes,
    };
    let everything = selector.labels.is_empty();
    let labels = match peer.kind.as_str() {
        "pod" => ctx.workload(peer, everything, |v| selector.labels.matches(v)),
        "service" | "unknown" if everything => Tri::Yes,
        "service" | "unknown" => Tri::Maybe,
        _ => Tri::No,
    };
    namespace.and(labels)
}

fn rule_matches(ctx: &Ctx<'_>, policy: &CiliumPolicy, rule: &CiliumRule, dir: Dir) -> Tri {
    let far = ctx.far(dir);
    let has_peer = rule.endpoints.is_some()
        || !rule.entities.is_empty()
        || !rule.cidrs.is_empty()
        || !rule.fqdns.is_empty();
    let peer = if has_peer {
        let mut answers = Vec::new();
        if let Some(selectors) = &rule.endpoints {
            answers.extend(selectors.iter().map(|s| match far.kind.as_str() {
                "pod" | "service" | "unknown" => endpoint(ctx, policy, s, far),
                _ => Tri::No,
            }));
        }
        answers.extend(rule.entities.iter().map(|e| entity(e, far)));
        // `host` is the local node and `remote-node` every other: together, any node.
        let has = |e: &str| rule.entities.iter().any(|x| x == e);
        if has("host") && has("remote-node") && matches!(far.kind.as_str(), "node" | "host") {
            answers.push(Tri::Yes);
        }
        if !rule.cidrs.is_empty() {
            answers.push(ctx.cidrs_hold(dir, &rule.cidrs, &[]));
        }
        if !rule.fqdns.is_empty() {
            answers.push(match (far.dns_name(), far.is_external()) {
                (Some(name), _) => Tri::from_bool(rule.fqdns.iter().any(|(pattern, text)| {
                    if *pattern {
                        text == "*" || domain_matches(text, name)
                    } else {
                        domain_matches(text, name)
                    }
                })),
                (None, true) => Tri::Maybe,
                (None, false) => Tri::No,
            });
        }
        Tri::any(answers)
    } else if rule.ports.is_some() {
        Tri::Yes
    } else {
        Tri::No
    };
    let ports = match &rule.ports {
        None => Tri::Yes,
        Some(list) => Tri::any(list.iter().map(|p| ctx.port(p)).collect::<Vec<_>>()),
    };
    let unsupported = if rule.unsupported {
        Tri::Maybe
    } else {
        Tri::Yes
    };
    peer.and(ports).and(unsupported)
}

/// Does a Cilium entity name the peer?
fn entity(name: &str, peer: &Peer) -> Tri {
    match name {
        "all" => Tri::Yes,
        "world" | "world-ipv4" | "world-ipv6" => Tri::from_bool(peer.is_external()),
        "cluster" => Tri::from_bool(!peer.is_external()),
        "host" | "remote-node" => match peer.kind.as_str() {
            "node" | "host" => Tri::Maybe,
            _ => Tri::No,
        },
        _ => Tri::Maybe,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::{EdgeKey, Inventory};
    use crate::policy::whatif::eval::{Verdict, evaluate};
    use crate::policy::whatif::parse::{Proposed, load_text};
    use std::collections::BTreeSet;

    const POLICY: &str = r"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  endpointSelector: {matchLabels: {'k8s:app': web}}
  egress:
  - toFQDNs: [{matchPattern: '*.stripe.com'}]
    toPorts: [{ports: [{port: '443', protocol: TCP}]}]
  - toEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: '5432', protocol: ANY}]}]
  - toEntities: [world]
    toPorts: [{ports: [{port: '80', protocol: TCP}]}]
  egressDeny:
  - toEntities: [world]
    toPorts: [{ports: [{port: '80', protocol: TCP}]}]
";

    fn verdict(dst: Peer, port: i32) -> Result<Verdict, String> {
        let pod = |name: &str| Peer {
            kind: "pod".into(),
            namespace: Some("shop".into()),
            name: Some(name.into()),
        };
        let mut inventory = Inventory::default();
        for app in ["web", "db"] {
            inventory.add_labels("c", &pod(app), [("app".to_owned(), app.to_owned())].into());
        }
        let mut proposed = Proposed::default();
        load_text(POLICY, &mut proposed)?;
        let key = EdgeKey {
            cluster: "c".into(),
            src: pod("web"),
            dst,
            port: Some(port),
            protocol: Some(6),
            action: "allow".into(),
        };
        Ok(evaluate(&Ctx {
            inventory: &inventory,
            key: &key,
            addresses: None,
            absent: &BTreeSet::new(),
            proposed: &proposed,
        }))
    }

    #[test]
    fn fqdns_endpoints_and_deny_wins() -> Result<(), String> {
        let external = |name: &str| Peer {
            kind: "external_public".into(),
            namespace: None,
            name: Some(name.into()),
        };
        let db = Peer {
            kind: "pod".into(),
            namespace: Some("shop".into()),
            name: Some("db".into()),
        };
        assert_eq!(verdict(external("api.stripe.com"), 443)?.allowed, Tri::Yes);
        assert_eq!(verdict(external("pastebin.com"), 443)?.allowed, Tri::No);
        assert_eq!(verdict(db.clone(), 5432)?.allowed, Tri::Yes);
        assert_eq!(verdict(db, 5433)?.allowed, Tri::No);
        let denied = verdict(external("example.org"), 80)?;
        assert_eq!(denied.allowed, Tri::No);
        assert!(denied.by.contains("egressDeny[0]"), "{denied:?}");
        Ok(())
    }
}
