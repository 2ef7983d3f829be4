//! Calico's opinion on one side of an edge, in the subset `whatif` supports.
//!
//! Order: tiers by the `order` of the `Tier` documents given (tier `default` at 1,000,000
//! when none is given, other tiers without a document last, then by name); within a tier,
//! policies by `order` (none = last) then name; within a policy, rules in order. The first
//! rule that matches decides: `Allow` and `Deny` end the evaluation, `Pass` skips to the
//! next tier, `Log` continues. A tier in which some policy applied but no rule matched
//! denies (Calico's end-of-tier deny). No applying policy in any tier: no opinion (the
//! pod's profile allows). Staged policies are evaluated as if enforced (that is the
//! question `whatif` answers); `stagedAction: Delete` proposes removal and is skipped.
//!
//! A rule whose match is uncertain, or that uses fields outside the subset, makes the
//! verdict uncertain when evaluation reaches it: first-match order cannot be guessed past it.

use std::collections::BTreeSet;

use super::context::{Ctx, Dir, Opinion, domain_matches};
use super::parse::{CalicoPolicy, CalicoRule, Entity, NetSet};
use crate::policy::model::Peer;
use crate::policy::selectors::{CalicoSelector, NamespaceView, PlainView};
use crate::policy::tri::Tri;

/// Calico's default tier order.
const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;

/// The opinion of the proposed Calico policies on side `dir`, None when none applies.
pub fn opinion(ctx: &Ctx<'_>, dir: Dir) -> Option<Opinion> {
    let policies = &ctx.proposed.calico;
    if policies.is_empty() {
        return None;
    }
    let tier_order = |t: &str| {
        ctx.proposed
            .tiers
            .get(t)
            .copied()
            .unwrap_or(if t == "default" {
                DEFAULT_TIER_ORDER
            } else {
                f64::MAX
            })
    };
    let mut tiers: Vec<&str> = policies
        .iter()
        .map(|p| p.tier.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    tiers.sort_by(|a, b| tier_order(a).total_cmp(&tier_order(b)).then(a.cmp(b)));
    let subject = ctx.subject(dir);
    for tier in tiers {
        let mut in_tier: Vec<&CalicoPolicy> = policies.iter().filter(|p| p.tier == tier).collect();
        in_tier.sort_by(|a, b| {
            a.order
                .unwrap_or(f64::MAX)
                .total_cmp(&b.order.unwrap_or(f64::MAX))
                .then(a.name.cmp(&b.name))
        });
        let mut applied = Tri::No;
        let mut passed = false;
        'policies: for policy in in_tier {
            let rules = match dir {
                Dir::Egress => policy.egress.as_ref(),
                Dir::Ingress => policy.ingress.as_ref(),
            };
            let Some(rules) = rules else { continue };
            let applies = applies_to(ctx, policy, subject);
            if applies == Tri::No {
                continue;
            }
            applied = applied.or(applies);
            for (i, rule) in rules.iter().enumerate() {
                let mut matched = rule_matches(ctx, policy, rule, dir);
                if rule.unsupported && matched != Tri::No {
                    matched = Tri::Maybe;
                }
                if matched == Tri::No || rule.action == "Log" {
                    continue;
                }
                let by = format!("{} {}[{i}] {}", policy.name, dir.name(), rule.action);
                if matched == Tri::Maybe || applies == Tri::Maybe {
                    return Some(Opinion {
                        allowed: Tri::Maybe,
                        by: format!("uncertain: {by}"),
                    });
                }
                match rule.action.as_str() {
                    "Allow" => {
                        return Some(Opinion {
                            allowed: Tri::Yes,
                            by,
                        });
                    }
                    "Pass" => {
                        passed = true;
                        break 'policies;
                    }
                    _ => {
                        return Some(Opinion {
                            allowed: Tri::No,
                            by,
                        });
                    }
                }
            }
        }
        if passed {
            continue;
        }
        match applied {
            Tri::Yes => {
                return Some(Opinion {
                    allowed: Tri::No,
                    by: format!(
                        "Calico tier {tier}: end-of-tier deny of {} ({})",
                        subject.display(),
                        dir.name()
                    ),
                });
            }
            Tri::Maybe => {
                return Some(Opinion {
                    allowed: Tri::Maybe,
                    by: format!(
                        "uncertain: does Calico tier {tier} apply to {}?",
                        subject.display()
                    ),
                });
            }
            Tri::No => {}
        }
    }
    None
}

/// Does the policy apply to the subject endpoint (a pod)?
fn applies_to(ctx: &Ctx<'_>, policy: &CalicoPolicy, subject: &Peer) -> Tri {
    if subject.kind != "pod" {
        return Tri::No;
    }
    let Some(ns) = subject.namespace.as_deref() else {
        return Tri::Maybe;
    };
    let scope = match (&policy.namespace, &policy.namespace_selector) {
        (Some(own), _) => Tri::from_bool(own == ns),
        (None, Some(selector)) => selector.evaluate(&NamespaceView(ns)),
        (None, None) => Tri::Yes,
    };
    let everything = policy.selector == CalicoSelector::All;
    scope.and(ctx.workload(subject, everything, |v| policy.selector.evaluate(v)))
}

fn rule_matches(ctx: &Ctx<'_>, policy: &CalicoPolicy, rule: &CalicoRule, dir: Dir) -> Tri {
    let protocol = match (rule.protocol, ctx.key.protocol) {
        (None, _) => Tri::Yes,
        (Some(_), None) => Tri::Maybe,
        (Some(want), Some(have)) => Tri::from_bool(want == have),
    };
    // The source entity describes the sender, the destination entity the receiver.
    let (src_dir, dst_dir) = match dir {
        Dir::Egress => (None, Some(Dir::Egress)),
        Dir::Ingress => (Some(Dir::Ingress), None),
    };
    protocol
        .and(entity(
            ctx,
            policy,
            &rule.source,
            &ctx.key.src,
            src_dir,
            false,
        ))
        .and(entity(
            ctx,
            policy,
            &rule.destination,
            &ctx.key.dst,
            dst_dir,
            true,
        ))
}

/// Does the entity rule hold for `peer`? `far` is the direction in which `peer` is the far
/// end (for address lookups); None when it is the subject itself.
fn entity(
    ctx: &Ctx<'_>,
    policy: &CalicoPolicy,
    e: &Entity,
    peer: &Peer,
    far: Option<Dir>,
    is_destination: bool,
) -> Tri {
    let mut result = if e.unsupported { Tri::Maybe } else { Tri::Yes };
    if e.selector.is_some() || e.namespace_selector.is_some() {
        result = result.and(selected(ctx, policy, e, peer, far));
    }
    if !e.nets.is_empty() {
        result = result.and(match far {
            Some(dir) => ctx.cidrs_hold(dir, &e.nets, &[]),
            None => Tri::Maybe,
        });
    }
    if !e.domains.is_empty() {
        result = result.and(match (peer.dns_name(), peer.is_external()) {
            (Some(name), _) => Tri::from_bool(e.domains.iter().any(|d| domain_matches(d, name))),
            (None, true) => Tri::Maybe,
            (None, false) => Tri::No,
        });
    }
    if !e.ports.is_empty() {
        result = result.and(if is_destination {
            Tri::any(
                e.ports
                    .iter()
                    .map(|p| ctx.port_number(p))
                    .collect::<Vec<_>>(),
            )
        } else {
            // Source ports are not in the lake.
            Tri::Maybe
        });
    }
    result
}

/// Selector and namespace selector of an entity rule against a peer.
fn selected(
    ctx: &Ctx<'_>,
    policy: &CalicoPolicy,
    e: &Entity,
    peer: &Peer,
    far: Option<Dir>,
) -> Tri {
    let namespace_ok = |ns: &str| match (&e.namespace_selector, &policy.namespace) {
        (Some(selector), _) => selector.evaluate(&NamespaceView(ns)),
        (None, Some(own)) => Tri::from_bool(own == ns),
        (None, None) => Tri::Yes,
    };
    if peer.is_external() {
        // Only network sets carry labels outside the cluster.
        let Some(selector) = &e.selector else {
            return Tri::No;
        };
        let in_scope = |set: &NetSet| match (&set.namespace, &policy.namespace) {
            (Some(set_ns), Some(own)) => e.namespace_selector.is_none() && set_ns == own,
            (None, _) => e.namespace_selector.is_some() || policy.namespace.is_none(),
            (Some(_), None) => false,
        };
        let answers: Vec<Tri> = ctx
            .proposed
            .sets
            .iter()
            .filter(|set| in_scope(set))
            .map(|set| {
                selector
                    .evaluate(&PlainView(&set.labels))
                    .and(set_holds(ctx, set, peer, far))
            })
            .collect();
        return Tri::any(answers);
    }
    let Some(ns) = peer.namespace.as_deref() else {
        return Tri::No;
    };
    let everything = e
        .selector
        .as_ref()
        .is_none_or(|s| *s == CalicoSelector::All);
    let labels = match peer.kind.as_str() {
        "pod" => ctx.workload(peer, everything, |v| {
            e.selector.as_ref().map_or(Tri::Yes, |s| s.evaluate(v))
        }),
        "service" | "unknown" if everything => Tri::Yes,
        "service" | "unknown" => Tri::Maybe,
        _ => Tri::No,
    };
    namespace_ok(ns).and(labels)
}

/// Does the network set hold the external peer (by DNS name or address)?
fn set_holds(ctx: &Ctx<'_>, set: &NetSet, peer: &Peer, far: Option<Dir>) -> Tri {
    let by_name = match peer.dns_name() {
        Some(name) => Tri::from_bool(set.domains.iter().any(|d| domain_matches(d, name))),
        None if set.domains.is_empty() => Tri::No,
        None => Tri::Maybe,
    };
    let by_address = match far {
        Some(dir) if !set.nets.is_empty() => ctx.cidrs_hold(dir, &set.nets, &[]),
        _ => Tri::No,
    };
    by_name.or(by_address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::{EdgeKey, Inventory};
    use crate::policy::whatif::eval::{Verdict, evaluate};
    use crate::policy::whatif::parse::{Proposed, load_text};

    fn pod(name: &str) -> Peer {
        Peer {
            kind: "pod".into(),
            namespace: Some("shop".into()),
            name: Some(name.into()),
        }
    }

    fn verdict(yaml: &str, dst: Peer, port: i32) -> Result<Verdict, String> {
        let mut inventory = Inventory::default();
        for app in ["web", "db"] {
            inventory.add_labels("c", &pod(app), [("app".to_owned(), app.to_owned())].into());
        }
        let mut proposed = Proposed::default();
        load_text(yaml, &mut proposed)?;
        let absent = proposed
            .sets
            .iter()
            .flat_map(|s| s.labels.keys().cloned())
            .collect();
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
            absent: &absent,
            proposed: &proposed,
        }))
    }

    const TIERS: &str = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100}\n---\n\
        apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: security.pass-shop}\n\
        spec: {tier: security, order: 10, selector: \"app == 'web'\", types: [Egress], egress: [{action: Deny, protocol: TCP, destination: {ports: [22]}}, {action: Pass}]}\n---\n\
        apiVersion: projectcalico.org/v3\nkind: StagedNetworkPolicy\nmetadata: {name: web, namespace: shop}\n\
        spec: {stagedAction: Set, selector: \"app == 'web'\", types: [Egress], egress: [\n\
          {action: Allow, protocol: TCP, destination: {selector: \"app == 'db'\", ports: [5432]}},\n\
          {action: Allow, protocol: TCP, destination: {selector: \"flowlake.io/egress-set == 'web'\", ports: [443]}}]}\n---\n\
        apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata: {name: web, namespace: shop, labels: {flowlake.io/egress-set: web}}\n\
        spec: {allowedEgressDomains: ['*.stripe.com']}\n";

    #[test]
    fn tiers_pass_and_first_match_decide() -> Result<(), String> {
        let stripe = Peer {
            kind: "external_public".into(),
            namespace: None,
            name: Some("api.stripe.com".into()),
        };
        let allowed = verdict(TIERS, pod("db"), 5432)?;
        assert_eq!(allowed.allowed, Tri::Yes, "{allowed:?}");
        assert!(
            allowed
                .by
                .contains("StagedNetworkPolicy shop/web egress[0] Allow"),
            "{allowed:?}"
        );
        let ssh = verdict(TIERS, pod("db"), 22)?;
        assert_eq!(ssh.allowed, Tri::No);
        assert!(
            ssh.by.contains("security.pass-shop egress[0] Deny"),
            "{ssh:?}"
        );
        let end_of_tier = verdict(TIERS, pod("db"), 5433)?;
        assert_eq!(end_of_tier.allowed, Tri::No);
        assert!(
            end_of_tier.by.contains("end-of-tier deny"),
            "{end_of_tier:?}"
        );
        assert_eq!(verdict(TIERS, stripe.clone(), 443)?.allowed, Tri::Yes);
        let other = Peer {
            name: Some("pastebin.com".into()),
            ..stripe
        };
        assert_eq!(verdict(TIERS, other, 443)?.allowed, Tri::No);
        Ok(())
    }

    #[test]
    fn domains_match_exactly_or_by_wildcard() {
        assert!(domain_matches("api.stripe.com", "API.stripe.com."));
        assert!(domain_matches("*.stripe.com", "api.stripe.com"));
        assert!(!domain_matches("*.stripe.com", "stripe.com"));
        assert!(!domain_matches("stripe.com", "api.stripe.com"));
    }
}
