//! Field conversions shared by the agent decoders (Calico Goldmane, Calico Enterprise,
//! NetObserv): addresses, ports, protocol numbers, epoch times, counters and labels.
//!
//! Each conversion either returns the canonical value or a rejection whose class says which
//! rule broke and whose message names the field as the agent wrote it, so that a user can
//! find it in the raw message. None of them allocates on success except for the owned
//! strings of the final record.

use flowlake_runtime::Rejection;
use flowlake_schemas::{Ip, Labels, Timestamp};

use crate::reject;

/// The event id of a record that carries none: the xxh3-128 hash (hex) of the raw message,
/// so that a replayed message gets the same id (as for Hubble flows without a uuid).
pub(crate) fn content_hash(payload: &[u8]) -> String {
    // Written by hand: `format!("{:032x}")` went through the formatting machinery and
    // was ~3 % of decoding a Hubble flow, most of which have no uuid.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = xxhash_rust::xxh3::xxh3_128(payload);
    let mut digits = [0u8; 32];
    for (index, digit) in digits.iter_mut().enumerate() {
        *digit = HEX[((hash >> ((31 - index) * 4)) & 0xf) as usize];
    }
    // ASCII by construction: the check cannot fail and costs nothing at 32 bytes.
    String::from_utf8_lossy(&digits).into_owned()
}

/// An address; absent or empty text is no address.
pub(crate) fn ip(text: Option<&str>, field: &str) -> Result<Option<Ip>, Rejection> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    text.parse::<Ip>()
        .map(|ip| Some(ip.canonical()))
        .map_err(|_| {
            Rejection::new(
                reject::INVALID_IP,
                format!("`{field}`: {text:?} is not an IP address"),
            )
        })
}

/// A TCP/UDP/SCTP port.
pub(crate) fn port(value: i64, field: &str) -> Result<i32, Rejection> {
    match i32::try_from(value) {
        Ok(port) if (0..=65_535).contains(&port) => Ok(port),
        _ => Err(Rejection::new(
            reject::INVALID_PORT,
            format!("`{field}`: {value} is outside 0..=65535"),
        )),
    }
}

/// An IANA protocol number.
pub(crate) fn protocol(value: i64, field: &str) -> Result<i32, Rejection> {
    match i32::try_from(value) {
        Ok(protocol) if (0..=255).contains(&protocol) => Ok(protocol),
        _ => Err(Rejection::new(
            reject::INVALID_PROTOCOL,
            format!("`{field}`: {value} is outside 0..=255"),
        )),
    }
}

/// A time in whole seconds since the Unix epoch.
pub(crate) fn unix_seconds(value: i64, field: &str) -> Result<Timestamp, Rejection> {
    not_negative_time(value, field).map(Timestamp::from_secs)
}

/// A time in milliseconds since the Unix epoch.
pub(crate) fn unix_millis(value: i64, field: &str) -> Result<Timestamp, Rejection> {
    not_negative_time(value, field).map(Timestamp::from_millis)
}

fn not_negative_time(value: i64, field: &str) -> Result<i64, Rejection> {
    if value < 0 {
        return Err(Rejection::new(
            reject::INVALID_TIME,
            format!("`{field}`: {value} is before the Unix epoch"),
        ));
    }
    Ok(value)
}

/// A byte, packet or connection counter. Checked here rather than only by
/// `validate::check_event` so that the message names the agent's field (`bytes_in` of a
/// destination-reported Calico flow is the canonical `bytes_out`).
pub(crate) fn counter(value: i64, field: &str) -> Result<i64, Rejection> {
    if value < 0 {
        return Err(Rejection::new(
            reject::NEGATIVE_COUNTER,
            format!("`{field}`: {value} is negative"),
        ));
    }
    Ok(value)
}

/// Kubernetes labels written as `key=value` strings; a string without `=` is a key with an
/// empty value.
pub(crate) fn labels<'s>(pairs: impl IntoIterator<Item = &'s str>) -> Labels {
    pairs
        .into_iter()
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .collect()
}

/// Text an agent uses for "nothing here": absent, empty, or Calico's `-`.
pub(crate) fn text(value: Option<&str>) -> Option<String> {
    value
        .filter(|t| !t.is_empty() && *t != "-")
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class<T: std::fmt::Debug>(result: Result<T, Rejection>) -> Option<(&'static str, String)> {
        result.err().map(|r| (r.class, r.message))
    }

    #[test]
    fn conversions_name_the_field() {
        assert_eq!(
            class(ip(Some("10.0.0.300"), "SrcAddr")),
            Some((
                reject::INVALID_IP,
                "`SrcAddr`: \"10.0.0.300\" is not an IP address".to_owned()
            ))
        );
        assert_eq!(ip(None, "x"), Ok(None));
        assert_eq!(ip(Some(""), "x"), Ok(None));
        assert_eq!(
            ip(Some("::ffff:10.1.2.3"), "x").map(|ip| ip.map(|i| i.to_string())),
            Ok(Some("10.1.2.3".to_owned()))
        );
        assert_eq!(
            class(port(65_536, "DstPort")),
            Some((
                reject::INVALID_PORT,
                "`DstPort`: 65536 is outside 0..=65535".to_owned()
            ))
        );
        assert_eq!(
            class(protocol(256, "Proto")).map(|c| c.0),
            Some(reject::INVALID_PROTOCOL)
        );
        assert_eq!(
            class(unix_seconds(-1, "start_time")),
            Some((
                reject::INVALID_TIME,
                "`start_time`: -1 is before the Unix epoch".to_owned()
            ))
        );
        assert_eq!(unix_millis(1_500, "t"), Ok(Timestamp(1_500_000)));
        assert_eq!(
            class(counter(-2, "bytes_in")),
            Some((
                reject::NEGATIVE_COUNTER,
                "`bytes_in`: -2 is negative".to_owned()
            ))
        );
    }

    #[test]
    fn content_hashes_are_32_hex_digits_of_xxh3_128() {
        for payload in [&b""[..], b"{}", b"a flow"] {
            let hash = xxhash_rust::xxh3::xxh3_128(payload);
            assert_eq!(content_hash(payload), format!("{hash:032x}"));
        }
    }

    #[test]
    fn labels_and_placeholders() {
        let labels = labels(["app=web", "a=b=c", "flag"]);
        assert_eq!(
            labels.iter().collect::<Vec<_>>(),
            [("a", "b=c"), ("app", "web"), ("flag", "")]
        );
        assert_eq!(text(Some("-")), None);
        assert_eq!(text(Some("")), None);
        assert_eq!(text(Some("x")), Some("x".to_owned()));
    }
}
