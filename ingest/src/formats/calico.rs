//! Calico flows: Goldmane (Calico OSS ≥ 3.30, [`goldmane`]) and Enterprise / Cloud flow
//! logs ([`enterprise`]), and what the two share.
//!
//! Both come from Felix's flow collector, so they share its conventions, which this module
//! holds in one place:
//! * Counters are relative to the *reporting* endpoint: `*_in` is what arrived at it,
//!   `*_out` what it sent. A flow reported by the destination therefore has its canonical
//!   `bytes_out` (source → destination) in `bytes_in`. Checked on the Enterprise docs
//!   record (`reporter: dst`, client → nginx:80): `bytes_in` 388 over 6 packets is the HTTP
//!   request, `bytes_out` 1113 over 5 packets is nginx's welcome page coming back.
//! * Protocols are names (`tcp`, `udp`, `icmp`, `icmp6`, `sctp`) or numbers.
//! * `-` (or an empty string) means "none": not namespaced, aggregated away, no service.
//! * Names are aggregated: a Goldmane workload name stands for all pods of one
//!   `generateName` (`longhorn-manager-*`), and `pub`/`pvt` name the public or private
//!   network outside every known endpoint.

pub mod enterprise;
pub mod goldmane;

use flowlake_runtime::Rejection;
use flowlake_schemas::{EndpointHint, Reporter};

use super::fields;
use crate::reject;

/// Protocol names Calico writes, with their IANA numbers.
const PROTOCOLS: &[(&str, i32)] = &[
    ("tcp", 6),
    ("udp", 17),
    ("icmp", 1),
    ("icmp6", 58),
    ("icmpv6", 58),
    ("sctp", 132),
];

/// The IANA number of a Calico protocol: a name (any case) or a number as text.
fn protocol(text: &str, field: &str) -> Result<i32, Rejection> {
    if let Some((_, number)) = PROTOCOLS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text))
    {
        return Ok(*number);
    }
    match text.parse::<i64>() {
        Ok(number) => fields::protocol(number, field),
        Err(_) => Err(Rejection::new(
            reject::INVALID_PROTOCOL,
            format!(
                "`{field}`: {text:?} is neither a protocol number nor one of tcp, udp, icmp, \
                 icmp6, sctp"
            ),
        )),
    }
}

/// Directional counters as Felix reports them, relative to the reporting endpoint.
struct Counters {
    bytes_in: i64,
    bytes_out: i64,
    packets_in: i64,
    packets_out: i64,
}

impl Counters {
    /// `(bytes_out, bytes_in, packets_out, packets_in)` oriented source → destination:
    /// swapped when the destination reported the flow.
    fn oriented(self, reporter: Reporter) -> (i64, i64, i64, i64) {
        let Counters {
            bytes_in,
            bytes_out,
            packets_in,
            packets_out,
        } = self;
        match reporter {
            Reporter::Dst => (bytes_in, bytes_out, packets_in, packets_out),
            Reporter::Src | Reporter::Unknown => (bytes_out, bytes_in, packets_out, packets_in),
        }
    }
}

/// A hint, or None when it says nothing.
fn some_hint(hint: EndpointHint) -> Option<EndpointHint> {
    (hint != EndpointHint::default()).then_some(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_by_name_or_number() {
        assert_eq!(protocol("tcp", "proto"), Ok(6));
        assert_eq!(protocol("UDP", "proto"), Ok(17));
        assert_eq!(protocol("icmp6", "proto"), Ok(58));
        assert_eq!(protocol("47", "proto"), Ok(47));
        assert_eq!(
            protocol("gre-ish", "Key.proto").map_err(|r| (r.class, r.message)),
            Err((
                reject::INVALID_PROTOCOL,
                "`Key.proto`: \"gre-ish\" is neither a protocol number nor one of tcp, udp, \
                 icmp, icmp6, sctp"
                    .to_owned()
            ))
        );
        assert_eq!(
            protocol("300", "proto").map_err(|r| r.class),
            Err(reject::INVALID_PROTOCOL)
        );
    }

    #[test]
    fn counters_are_oriented_by_the_reporter() {
        let counters = || Counters {
            bytes_in: 388,
            bytes_out: 1113,
            packets_in: 6,
            packets_out: 5,
        };
        assert_eq!(counters().oriented(Reporter::Dst), (388, 1113, 6, 5));
        assert_eq!(counters().oriented(Reporter::Src), (1113, 388, 5, 6));
        assert_eq!(counters().oriented(Reporter::Unknown), (1113, 388, 5, 6));
    }
}
