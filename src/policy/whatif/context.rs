//! The vocabulary every policy flavour's evaluator shares: the edge under evaluation
//! ([`Ctx`]), the direction seen from a policy's subject ([`Dir`]) and one layer's answer
//! for one side ([`Opinion`]). The flavours ([`super::eval`] for Kubernetes, [`super::calico`],
//! [`super::cilium`]) depend on it; it depends on none of them.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::parse::{Cidr, PortRule, PortSpec, Proposed};
use crate::policy::model::{EdgeAddresses, EdgeKey, Inventory, Peer};
use crate::policy::selectors::{LabelView, on_workload};
use crate::policy::tri::Tri;

/// A direction of traffic seen from the policy's subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// The source sends.
    Egress,
    /// The destination receives.
    Ingress,
}

impl Dir {
    /// `egress` / `ingress`.
    pub fn name(self) -> &'static str {
        match self {
            Dir::Egress => "egress",
            Dir::Ingress => "ingress",
        }
    }
}

/// One layer's answer for one side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opinion {
    /// Allowed?
    pub allowed: Tri,
    /// The policy and rule that decide, or why nothing does.
    pub by: String,
}

/// What an edge is evaluated against.
pub struct Ctx<'a> {
    /// Labels and addresses from the lake.
    pub inventory: &'a Inventory,
    /// The edge.
    pub key: &'a EdgeKey,
    /// Addresses behind its ends.
    pub addresses: Option<&'a EdgeAddresses>,
    /// Network-set label keys: absent on pods.
    pub absent: &'a BTreeSet<String>,
    /// The proposed policies.
    pub proposed: &'a Proposed,
}

impl Ctx<'_> {
    /// The subject of a direction (source for egress).
    pub fn subject(&self, dir: Dir) -> &Peer {
        match dir {
            Dir::Egress => &self.key.src,
            Dir::Ingress => &self.key.dst,
        }
    }

    /// The far end of a direction (destination for egress).
    pub fn far(&self, dir: Dir) -> &Peer {
        match dir {
            Dir::Egress => &self.key.dst,
            Dir::Ingress => &self.key.src,
        }
    }

    /// A label predicate on a pod workload peer (`Yes` for an always-true predicate).
    pub fn workload(
        &self,
        peer: &Peer,
        everything: bool,
        predicate: impl Fn(&dyn LabelView) -> Tri,
    ) -> Tri {
        if everything {
            return Tri::Yes;
        }
        match (&peer.namespace, &peer.name) {
            (Some(ns), Some(name)) if peer.kind == "pod" => on_workload(
                self.inventory,
                &self.key.cluster,
                (ns, name),
                self.absent,
                predicate,
            ),
            _ => Tri::Maybe,
        }
    }

    /// Does the address block list (minus `except`) hold the far end of `dir`?
    pub fn cidrs_hold(&self, dir: Dir, include: &[Cidr], except: &[Cidr]) -> Tri {
        let peer = self.far(dir);
        if peer.kind == "pod" || peer.kind == "service" {
            let private = include.iter().any(overlaps_private);
            return if private { Tri::Maybe } else { Tri::No };
        }
        // Blocks holding every address of both families hold whatever the lake did not keep.
        let whole = |v4: bool| {
            include
                .iter()
                .any(|c| c.prefix() == 0 && c.base().is_ipv4() == v4)
        };
        let everything = except.is_empty() && whole(true) && whole(false);
        let Some(addresses) = self.addresses else {
            return if everything { Tri::Yes } else { Tri::Maybe };
        };
        let set = match dir {
            Dir::Egress => &addresses.dst,
            Dir::Ingress => &addresses.src,
        };
        if set.is_empty() {
            return if everything { Tri::Yes } else { Tri::Maybe };
        }
        if everything {
            return Tri::Yes;
        }
        let inside = |ip: &IpAddr| {
            include.iter().any(|c| c.contains(ip)) && !except.iter().any(|c| c.contains(ip))
        };
        let held = set.iter().filter(|ip| inside(ip)).count();
        if held == set.len() && !addresses.overflowed {
            Tri::Yes
        } else if held == 0 && !addresses.overflowed {
            Tri::No
        } else {
            Tri::Maybe
        }
    }

    /// Does the edge's port and protocol satisfy `rule`?
    pub fn port(&self, rule: &PortRule) -> Tri {
        let protocol = match (rule.protocol, self.key.protocol) {
            (None, _) => Tri::Yes,
            (Some(_), None) => Tri::Maybe,
            (Some(want), Some(have)) => Tri::from_bool(want == have),
        };
        protocol.and(self.port_number(&rule.port))
    }

    /// Does the edge's destination port satisfy `spec`?
    pub fn port_number(&self, spec: &PortSpec) -> Tri {
        match (spec, self.key.port) {
            (PortSpec::Any, _) => Tri::Yes,
            (PortSpec::Named(_), _) | (_, None) => Tri::Maybe,
            (PortSpec::Range(first, last), Some(port)) => {
                Tri::from_bool((*first..=*last).contains(&port))
            }
        }
    }
}

/// True when the block overlaps address space pods use (RFC 1918, RFC 6598, ULA).
fn overlaps_private(cidr: &Cidr) -> bool {
    const PRIVATE: [&str; 5] = [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "fc00::/7",
    ];
    PRIVATE.iter().filter_map(|p| Cidr::parse(p)).any(|p| {
        // Two blocks overlap when the shorter one holds the other's base address.
        let (short, long) = if p.prefix() <= cidr.prefix() {
            (p, *cidr)
        } else {
            (*cidr, p)
        };
        short.contains(&long.base())
    })
}

/// `*.example.com` matches one or more labels in front of `example.com`; otherwise exact
/// (case-insensitive, trailing dot ignored).
pub fn domain_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => name.len() > suffix.len() + 1 && name.ends_with(&format!(".{suffix}")),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_space_overlap() {
        let parse = |s| Cidr::parse(s).unwrap_or_else(|| panic!("{s}"));
        assert!(overlaps_private(&parse("0.0.0.0/0")));
        assert!(overlaps_private(&parse("10.244.1.0/24")));
        assert!(!overlaps_private(&parse("54.187.216.72/32")));
    }
}
