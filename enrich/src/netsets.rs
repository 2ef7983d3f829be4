//! Network sets: user-defined CIDR → name, longest prefix wins.
//!
//! Two sources feed them: `[enrich.network_sets]` in the config (applies to every cluster)
//! and `network_set` identity records (Calico NetworkSet / GlobalNetworkSet, per cluster).
//! Both are [`PrefixMap`]s: one hash map per prefix length, probed from the longest length
//! present to the shortest, so a lookup costs one hash probe per distinct length and
//! allocates nothing. With the config and the cluster's own sets both matching, the
//! longer prefix wins; on equal length the config wins (it is the operator's explicit
//! choice).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use flowlake_schemas::Labels;

/// An address block: network address and prefix length. Host bits are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// Network address (canonical: IPv4-mapped IPv6 is stored as IPv4).
    pub addr: IpAddr,
    /// Prefix length (0–32 for IPv4, 0–128 for IPv6).
    pub len: u8,
}

/// Why a CIDR does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The address part is not an IP address.
    #[error("{0:?} is not an address or a CIDR (expected e.g. 54.187.0.0/16)")]
    Address(String),
    /// The prefix length is not a number within the family's range.
    #[error("{0:?} has an invalid prefix length (0-32 for IPv4, 0-128 for IPv6)")]
    Length(String),
    /// Bits beyond the prefix are set: the block is probably not what was meant.
    #[error("{text:?} has host bits set: the network is {network}")]
    HostBits {
        /// The text given.
        text: String,
        /// The network it would be.
        network: String,
    },
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let parsed: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| CidrError::Address(text.to_owned()))?;
        let max = if parsed.is_ipv4() { 32 } else { 128 };
        let len = match len {
            Some(len) => len
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&l| l <= max)
                .ok_or_else(|| CidrError::Length(text.to_owned()))?,
            None => max,
        };
        // A mapped IPv4 CIDR (::ffff:10.0.0.0/104) is an IPv4 one.
        let (addr, len) = match parsed {
            IpAddr::V6(v6) if len >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), len - 96),
                None => (parsed, len),
            },
            _ => (parsed, len),
        };
        let cidr = Cidr {
            addr: mask(addr, len),
            len,
        };
        if cidr.addr != addr {
            return Err(CidrError::HostBits {
                text: text.to_owned(),
                network: cidr.to_string(),
            });
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => IpAddr::V4(mask_v4(u32::from(v4), len).into()),
        IpAddr::V6(v6) => IpAddr::V6(mask_v6(u128::from(v6), len).into()),
    }
}

fn mask_v4(bits: u32, len: u8) -> u32 {
    match len {
        0 => 0,
        l => bits & (u32::MAX << (32 - u32::from(l.min(32)))),
    }
}

fn mask_v6(bits: u128, len: u8) -> u128 {
    match len {
        0 => 0,
        l => bits & (u128::MAX << (128 - u32::from(l.min(128)))),
    }
}

/// A named network set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkSet {
    /// Set name (`network_set` on the endpoint).
    pub name: Arc<str>,
    /// Namespace of a namespaced (Calico `NetworkSet`) set; None for global and config sets.
    pub namespace: Option<Arc<str>>,
    /// Labels of the set object (empty for config sets).
    pub labels: Arc<Labels>,
}

/// Longest-prefix match from CIDRs to values: one map per prefix length (see the module
/// doc).
#[derive(Clone, Debug)]
pub struct PrefixMap<V> {
    /// By prefix length, longest first.
    v4: Vec<(u8, HashMap<u32, V>)>,
    v6: Vec<(u8, HashMap<u128, V>)>,
}

impl<V> Default for PrefixMap<V> {
    fn default() -> Self {
        PrefixMap {
            v4: Vec::new(),
            v6: Vec::new(),
        }
    }
}

impl<V> PrefixMap<V> {
    /// Maps `cidr` to `value`, returning the value it replaces.
    pub fn insert(&mut self, cidr: Cidr, value: V) -> Option<V> {
        match cidr.addr {
            IpAddr::V4(v4) => level(&mut self.v4, cidr.len).insert(u32::from(v4), value),
            IpAddr::V6(v6) => level(&mut self.v6, cidr.len).insert(u128::from(v6), value),
        }
    }

    /// Removes `cidr`.
    pub fn remove(&mut self, cidr: Cidr) -> Option<V> {
        let removed = match cidr.addr {
            IpAddr::V4(v4) => remove_at(&mut self.v4, cidr.len, u32::from(v4)),
            IpAddr::V6(v6) => remove_at(&mut self.v6, cidr.len, u128::from(v6)),
        };
        self.v4.retain(|(_, m)| !m.is_empty());
        self.v6.retain(|(_, m)| !m.is_empty());
        removed
    }

    /// The value of the longest prefix containing `ip`, with that prefix's length.
    pub fn longest_match(&self, ip: IpAddr) -> Option<(u8, &V)> {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                self.v4
                    .iter()
                    .find_map(|(len, map)| map.get(&mask_v4(bits, *len)).map(|value| (*len, value)))
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                self.v6
                    .iter()
                    .find_map(|(len, map)| map.get(&mask_v6(bits, *len)).map(|value| (*len, value)))
            }
        }
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.v4.iter().map(|(_, m)| m.len()).sum::<usize>()
            + self.v6.iter().map(|(_, m)| m.len()).sum::<usize>()
    }

    /// True when no prefix is mapped.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

/// The map of prefix length `len`, created in longest-first order when missing.
fn level<K, V>(levels: &mut Vec<(u8, HashMap<K, V>)>, len: u8) -> &mut HashMap<K, V> {
    let at = match levels.binary_search_by(|(l, _)| len.cmp(l)) {
        Ok(at) => at,
        Err(at) => {
            levels.insert(at, (len, HashMap::new()));
            at
        }
    };
    &mut levels[at].1
}

fn remove_at<K: std::hash::Hash + Eq, V>(
    levels: &mut [(u8, HashMap<K, V>)],
    len: u8,
    key: K,
) -> Option<V> {
    levels
        .iter_mut()
        .find(|(l, _)| *l == len)
        .and_then(|(_, map)| map.remove(&key))
}

/// The network sets of the config file, by CIDR. Built once at start-up from
/// `[enrich.network_sets]` (already validated).
pub fn from_config(
    sets: &std::collections::BTreeMap<String, Vec<String>>,
) -> Result<PrefixMap<Arc<NetworkSet>>, (String, CidrError)> {
    let mut map = PrefixMap::default();
    let empty = Arc::new(Labels::new());
    for (name, cidrs) in sets {
        let set = Arc::new(NetworkSet {
            name: Arc::from(name.as_str()),
            namespace: None,
            labels: Arc::clone(&empty),
        });
        for (i, text) in cidrs.iter().enumerate() {
            let cidr: Cidr = text
                .parse()
                .map_err(|e| (format!("enrich.network_sets.{name}[{i}]"), e))?;
            map.insert(cidr, Arc::clone(&set));
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap_or(Cidr {
            addr: IpAddr::from([255, 255, 255, 255]),
            len: 0,
        })
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn parses_and_rejects_cidrs() {
        assert_eq!(cidr("54.187.0.0/16").to_string(), "54.187.0.0/16");
        assert_eq!(cidr("10.0.0.1").to_string(), "10.0.0.1/32");
        assert_eq!(cidr("2001:db8::/32").to_string(), "2001:db8::/32");
        assert_eq!(cidr("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(
            "54.187.1.0/16".parse::<Cidr>(),
            Err(CidrError::HostBits {
                text: "54.187.1.0/16".into(),
                network: "54.187.0.0/16".into()
            })
        );
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::Length("10.0.0.0/33".into()))
        );
        assert_eq!(
            "stripe/16".parse::<Cidr>(),
            Err(CidrError::Address("stripe/16".into()))
        );
    }

    #[test]
    fn longest_prefix_wins_whatever_the_insertion_order() {
        let entries = [
            ("0.0.0.0/0", "internet"),
            ("54.187.0.0/16", "stripe"),
            ("54.187.200.0/24", "stripe-webhooks"),
            ("2600:1f00::/24", "aws-v6"),
        ];
        for reversed in [false, true] {
            let mut map = PrefixMap::default();
            let mut ordered: Vec<_> = entries.to_vec();
            if reversed {
                ordered.reverse();
            }
            for (c, name) in ordered {
                map.insert(cidr(c), name);
            }
            let at = |a: &str| map.longest_match(ip(a)).map(|(_, v)| *v);
            assert_eq!(at("54.187.200.9"), Some("stripe-webhooks"));
            assert_eq!(at("54.187.201.9"), Some("stripe"));
            assert_eq!(at("::ffff:54.187.1.1"), Some("stripe"));
            assert_eq!(at("8.8.8.8"), Some("internet"));
            assert_eq!(at("2600:1f00::1"), Some("aws-v6"));
            assert_eq!(at("2a00::1"), None);
            assert_eq!(map.len(), 4);
        }
        let mut map = PrefixMap::default();
        map.insert(cidr("54.187.0.0/16"), "stripe");
        map.insert(cidr("54.187.200.0/24"), "hooks");
        assert_eq!(map.remove(cidr("54.187.200.0/24")), Some("hooks"));
        assert_eq!(map.longest_match(ip("54.187.200.9")), Some((16, &"stripe")));
        assert_eq!(map.remove(cidr("54.187.0.0/16")), Some("stripe"));
        assert!(map.is_empty());
    }

    #[test]
    fn config_sets_name_the_bad_field() {
        let mut sets = std::collections::BTreeMap::new();
        sets.insert(
            "stripe".to_owned(),
            vec!["54.187.0.0/16".to_owned(), "54.187.300.0/24".to_owned()],
        );
        match from_config(&sets) {
            Err((field, CidrError::Address(_))) => {
                assert_eq!(field, "enrich.network_sets.stripe[1]")
            }
            other => panic!("expected an address error, got {other:?}"),
        }
    }
}
