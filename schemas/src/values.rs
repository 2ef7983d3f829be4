//! Value types shared by every record: [`Timestamp`] and [`Ip`].
//!
//! Both serialize in two shapes. In Avro (a non-human-readable serde format) a timestamp is
//! a `long` of microseconds (`timestamp-micros`) and an IP is `bytes` of length 4 or 16, as
//! the schemas require. In JSON (human-readable: the canonical JSON input format and
//! `flowlake decode` output) they are RFC 3339 strings and dotted/colon text, which is what
//! people type and read. The deserializers accept both shapes in JSON (integers are
//! microseconds) so hand-written canonical records can use either.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UTC instant with microsecond precision, stored as microseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// From microseconds since the epoch.
    pub const fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    /// From milliseconds since the epoch (saturating).
    pub const fn from_millis(millis: i64) -> Self {
        Timestamp(millis.saturating_mul(1_000))
    }

    /// From whole seconds since the epoch (saturating).
    pub const fn from_secs(secs: i64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000))
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// The current time.
    pub fn now() -> Self {
        Timestamp(Utc::now().timestamp_micros())
    }

    /// Parses RFC 3339 with 0 to 9 fractional digits (proto3 JSON writes any of them);
    /// sub-microsecond digits are truncated.
    pub fn parse_rfc3339(text: &str) -> Result<Self, chrono::ParseError> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| Timestamp(t.with_timezone(&Utc).timestamp_micros()))
    }

    /// As a chrono UTC date-time (None outside chrono's range).
    pub fn to_datetime(self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_micros(self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_datetime() {
            Some(t) => f.write_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true)),
            None => write!(f, "{}us", self.0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimestampVisitor;
        impl Visitor<'_> for TimestampVisitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp or integer microseconds since the epoch")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v)
                    .map(Timestamp)
                    .map_err(|_| E::custom("timestamp out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(v)
                    .map_err(|e| E::custom(format!("invalid RFC 3339 timestamp {v:?}: {e}")))
            }
        }
        if deserializer.is_human_readable() {
            deserializer.deserialize_any(TimestampVisitor)
        } else {
            deserializer.deserialize_i64(TimestampVisitor)
        }
    }
}

/// An IPv4 or IPv6 address; `bytes` (4 or 16) in Avro, text in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ip(pub IpAddr);

impl Ip {
    /// From 4 or 16 octets; None for any other length.
    pub fn from_octets(octets: &[u8]) -> Option<Ip> {
        match octets.len() {
            4 => <[u8; 4]>::try_from(octets)
                .ok()
                .map(|o| Ip(IpAddr::V4(Ipv4Addr::from(o)))),
            16 => <[u8; 16]>::try_from(octets)
                .ok()
                .map(|o| Ip(IpAddr::V6(Ipv6Addr::from(o)))),
            _ => None,
        }
    }

    /// The address in its canonical form: IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes IPv4,
    /// so that one host has one key whichever way an agent wrote it.
    pub fn canonical(self) -> Ip {
        Ip(self.0.to_canonical())
    }
}

impl fmt::Display for Ip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for Ip {
    type Err = std::net::AddrParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<IpAddr>().map(Ip)
    }
}

impl From<IpAddr> for Ip {
    fn from(ip: IpAddr) -> Self {
        Ip(ip)
    }
}

impl Serialize for Ip {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(&self.0)
        } else {
            match self.0 {
                IpAddr::V4(v4) => serializer.serialize_bytes(&v4.octets()),
                IpAddr::V6(v6) => serializer.serialize_bytes(&v6.octets()),
            }
        }
    }
}

impl<'de> Deserialize<'de> for Ip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IpVisitor;
        impl<'de> Visitor<'de> for IpVisitor {
            type Value = Ip;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an IP address (text, or 4 or 16 bytes)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ip, E> {
                v.parse::<IpAddr>()
                    .map(Ip)
                    .map_err(|_| E::custom(format!("invalid IP address {v:?}")))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Ip, E> {
                Ip::from_octets(v).ok_or_else(|| {
                    E::custom(format!("IP address must be 4 or 16 bytes, got {}", v.len()))
                })
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Ip, A::Error> {
                // Some serde paths hand bytes over as a sequence of u8.
                let mut octets = Vec::with_capacity(16);
                while let Some(b) = seq.next_element::<u8>()? {
                    if octets.len() == 16 {
                        return Err(de::Error::custom("IP address longer than 16 bytes"));
                    }
                    octets.push(b);
                }
                self.visit_bytes(&octets)
            }
        }
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(IpVisitor)
        } else {
            deserializer.deserialize_bytes(IpVisitor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_any_fraction_length() {
        let cases = [
            ("2021-06-16T19:06:13Z", 1_623_870_373_000_000),
            ("2021-06-16T19:06:13.5Z", 1_623_870_373_500_000),
            ("2021-06-16T19:06:13.567800Z", 1_623_870_373_567_800),
            ("2021-06-16T19:06:13.136834446Z", 1_623_870_373_136_834),
            ("2021-06-16T21:06:13.1+02:00", 1_623_870_373_100_000),
        ];
        for (text, micros) in cases {
            assert_eq!(
                Timestamp::parse_rfc3339(text).map(|t| t.0),
                Ok(micros),
                "{text}"
            );
        }
        assert!(Timestamp::parse_rfc3339("2021-06-16 19:06").is_err());
    }

    #[test]
    fn json_shapes() -> Result<(), serde_json::Error> {
        let t = Timestamp(1_623_870_373_567_800);
        assert_eq!(
            serde_json::to_string(&t)?,
            "\"2021-06-16T19:06:13.567800Z\""
        );
        assert_eq!(serde_json::from_str::<Timestamp>("1623870373567800")?, t);
        let ip: Ip = serde_json::from_str("\"fd00::1\"")?;
        assert_eq!(serde_json::to_string(&ip)?, "\"fd00::1\"");
        assert!(serde_json::from_str::<Ip>("\"10.0.0.300\"").is_err());
        Ok(())
    }

    #[test]
    fn mapped_ipv6_is_canonicalised() {
        let mapped: Ip = "::ffff:10.1.2.3"
            .parse()
            .unwrap_or(Ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
        assert_eq!(mapped.canonical().to_string(), "10.1.2.3");
    }
}
