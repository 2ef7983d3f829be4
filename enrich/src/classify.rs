//! Addresses outside the identity table: public or private.
//!
//! An address is `external_private` when it cannot be an Internet host: RFC 1918, RFC 6598
//! shared address space (100.64/10, carrier-grade NAT and some cloud pod ranges), IPv6 unique
//! local (fc00::/7), loopback, link-local (169.254/16, fe80::/10), and also unspecified,
//! broadcast and multicast addresses (router solicitations to ff02::2 never leave the link).
//! Everything else is `external_public`. IPv4-mapped IPv6 is canonicalised first, so
//! `::ffff:10.1.2.3` is private like `10.1.2.3`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use flowlake_schemas::EndpointKind;

/// `aggregated_name` of a public external endpoint (Calico's name for the group).
pub const PUBLIC_AGGREGATED_NAME: &str = "pub";
/// `aggregated_name` of a private external endpoint.
pub const PRIVATE_AGGREGATED_NAME: &str = "pvt";

/// `ExternalPrivate` or `ExternalPublic` for an address that no cluster object holds.
pub fn classify(ip: IpAddr) -> EndpointKind {
    if is_private(ip) {
        EndpointKind::ExternalPrivate
    } else {
        EndpointKind::ExternalPublic
    }
}

/// True for addresses that are not on the public Internet (see the module doc).
pub fn is_private(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => is_private_v6(v6),
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    // RFC 6598 shared address space: 100.64.0.0/10.
    let shared = a == 100 && (b & 0b1100_0000) == 64;
    ip.is_private()
        || shared
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    ip.is_unique_local()
        || ip.is_loopback()
        || ip.is_unicast_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
}

/// The `aggregated_name` for an external endpoint of `kind`.
pub fn aggregated_name(kind: EndpointKind) -> Option<&'static str> {
    match kind {
        EndpointKind::ExternalPublic => Some(PUBLIC_AGGREGATED_NAME),
        EndpointKind::ExternalPrivate => Some(PRIVATE_AGGREGATED_NAME),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> EndpointKind {
        match text.parse::<IpAddr>() {
            Ok(ip) => classify(ip),
            Err(_) => EndpointKind::Unknown,
        }
    }

    #[test]
    fn private_ranges() {
        for ip in [
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.251",
            "fc00::1",
            "fd12:3456::1",
            "::1",
            "fe80::64d8:8aff:fe72:fc14",
            "::",
            "ff02::2",
            "::ffff:10.1.2.3",
            "::ffff:192.168.0.1",
        ] {
            assert_eq!(kind(ip), EndpointKind::ExternalPrivate, "{ip}");
        }
    }

    #[test]
    fn public_addresses_including_range_edges() {
        for ip in [
            "8.8.8.8",
            "35.246.31.234",
            "172.15.255.255",
            "172.32.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "11.0.0.1",
            "192.169.0.1",
            "169.255.0.1",
            "2001:4860:4860::8888",
            "fec0::1",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(kind(ip), EndpointKind::ExternalPublic, "{ip}");
        }
    }

    proptest::proptest! {
        /// One host, one answer, however an agent wrote its address.
        #[test]
        fn mapped_ipv6_classifies_like_its_ipv4(octets in proptest::prelude::any::<[u8; 4]>()) {
            let v4 = Ipv4Addr::from(octets);
            proptest::prop_assert_eq!(
                classify(IpAddr::V4(v4)),
                classify(IpAddr::V6(v4.to_ipv6_mapped()))
            );
        }
    }

    #[test]
    fn aggregated_names() {
        assert_eq!(aggregated_name(EndpointKind::ExternalPublic), Some("pub"));
        assert_eq!(aggregated_name(EndpointKind::ExternalPrivate), Some("pvt"));
        assert_eq!(aggregated_name(EndpointKind::Pod), None);
    }
}
