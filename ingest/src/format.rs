//! Input formats and their detection, one message at a time.
//!
//! Detection never guesses between two formats that both fit: Avro is recognised by its
//! framing bytes, JSON by its top-level keys, and anything else is rejected with the reason
//! (never decoded as the "closest" format). The common cases cost a few byte comparisons:
//! Avro by its first two bytes, and a Hubble exporter line or a canonical record by its
//! first key (`{"flow":…`, `{"event_id":…`). Only when the first key decides nothing are all
//! top-level keys read (values skipped) before the real decode.
//!
//! Adding a format (Calico, NetObserv) means a variant here, its key rules in
//! `classify_keys`, and a module that decodes it.

use std::fmt;
use std::str::FromStr;

use flowlake_runtime::Rejection;
use flowlake_schemas::codec::{CONFLUENT_MAGIC, SINGLE_OBJECT_MARKER};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::reject;

/// A raw input format ingest can decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Cilium Hubble flows as JSON: `hubble observe -o json|jsonpb` and exporter files
    /// (`{"flow":{…},"node_name":…,"time":…}`), or the bare flow of the old `-o json`.
    Hubble,
    /// flowlake's own `FlowEvent` as JSON.
    CanonicalJson,
    /// flowlake's own `FlowEvent` as Avro, single-object encoding or Confluent framing.
    CanonicalAvro,
}

impl Format {
    /// Every format, in a fixed order (metric handles are registered in this order).
    pub const ALL: [Format; 3] = [Format::Hubble, Format::CanonicalJson, Format::CanonicalAvro];

    /// Stable name: used in configuration, the `flowlake.format` header, metrics and
    /// `FlowEvent::source_format`.
    pub const fn name(self) -> &'static str {
        match self {
            Format::Hubble => "hubble",
            Format::CanonicalJson => "canonical-json",
            Format::CanonicalAvro => "canonical-avro",
        }
    }

    /// The format called `name`, if any.
    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Position in [`Format::ALL`].
    pub const fn index(self) -> usize {
        match self {
            Format::Hubble => 0,
            Format::CanonicalJson => 1,
            Format::CanonicalAvro => 2,
        }
    }

    /// The known names, comma-separated, for error messages.
    pub fn known_names() -> String {
        Format::ALL.map(Format::name).join(", ")
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A format name that names no format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown format {name:?}: expected one of {}", Format::known_names())]
pub struct UnknownFormatName {
    /// The name given.
    pub name: String,
}

impl FromStr for Format {
    type Err = UnknownFormatName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::from_name(s).ok_or_else(|| UnknownFormatName { name: s.to_owned() })
    }
}

/// How many of the keys of an unrecognised object a rejection names.
const KEYS_NAMED_IN_REJECTION: usize = 6;

/// Keys only a Hubble flow (or a Hubble `GetFlowsResponse`) has at its top level; the
/// lowerCamelCase ones are the same fields under protobuf's default JSON names.
const HUBBLE_KEYS: &[&str] = &[
    "flow",
    "verdict",
    "IP",
    "l4",
    "Type",
    "event_type",
    "eventType",
    "is_reply",
    "isReply",
    "traffic_direction",
    "trafficDirection",
    "drop_reason_desc",
    "dropReasonDesc",
    "trace_observation_point",
    "Summary",
    "ethernet",
    "lost_events",
    "agent_event",
    "debug_event",
    "node_status",
];

/// Keys a bare Hubble flow shares with other shapes: two of them together say Hubble only
/// when nothing more specific did.
const HUBBLE_WEAK_KEYS: &[&str] = &["source", "destination", "time", "node_name", "nodeName"];

/// Keys that name the canonical record on their own.
const CANONICAL_KEYS: &[&str] = &["event_id", "cluster_id", "source_format"];

/// Canonical keys that other flow formats use as well (Calico Enterprise has `start_time`).
const CANONICAL_WEAK_KEYS: &[&str] = &["start_time", "end_time", "src_ip", "dst_ip"];

/// Keys of formats flowlake knows of but does not decode yet, so that such a record is
/// rejected by name instead of being half-read as a canonical one.
const NOT_YET_SUPPORTED: &[(&str, &str)] = &[
    ("Key", "a Calico Goldmane flow"),
    ("source_name_aggr", "a Calico Enterprise flow log"),
    ("dest_name_aggr", "a Calico Enterprise flow log"),
    ("SrcAddr", "a NetObserv (flowlogs-pipeline) record"),
    ("TimeFlowStartMs", "a NetObserv (flowlogs-pipeline) record"),
];

/// Detects the format of one message. Empty messages are rejected before this is called.
pub fn detect(payload: &[u8]) -> Result<Format, Rejection> {
    if payload.starts_with(&SINGLE_OBJECT_MARKER) || payload.first() == Some(&CONFLUENT_MAGIC) {
        return Ok(Format::CanonicalAvro);
    }
    if let Some(key) = first_key(payload) {
        if HUBBLE_KEYS.contains(&key) {
            return Ok(Format::Hubble);
        }
        if CANONICAL_KEYS.contains(&key) {
            return Ok(Format::CanonicalJson);
        }
    }
    let mut de = serde_json::Deserializer::from_slice(payload);
    let shape = de
        .deserialize_any(ShapeVisitor)
        .and_then(|shape| de.end().map(|()| shape))
        .map_err(|e| not_json(payload, &e))?;
    match shape {
        Shape::Object(keys) => classify_keys(&keys),
        Shape::Other(kind) => Err(Rejection::new(
            reject::UNKNOWN_FORMAT,
            format!("a JSON {kind}, not an object: each message must hold one flow record"),
        )),
    }
}

/// Decides the format of a JSON object from all its top-level keys.
fn classify_keys(keys: &[String]) -> Result<Format, Rejection> {
    let has = |set: &[&str]| keys.iter().any(|k| set.contains(&k.as_str()));
    if has(HUBBLE_KEYS) {
        return Ok(Format::Hubble);
    }
    if has(CANONICAL_KEYS) {
        return Ok(Format::CanonicalJson);
    }
    if let Some((_, what)) = NOT_YET_SUPPORTED
        .iter()
        .find(|(key, _)| keys.iter().any(|k| k == key))
    {
        return Err(Rejection::new(
            reject::UNKNOWN_FORMAT,
            format!(
                "looks like {what}, which this version of flowlake does not decode (keys: {})",
                name_keys(keys)
            ),
        ));
    }
    if has(CANONICAL_WEAK_KEYS) {
        return Ok(Format::CanonicalJson);
    }
    let weak_hubble = keys
        .iter()
        .filter(|k| HUBBLE_WEAK_KEYS.contains(&k.as_str()))
        .count();
    if weak_hubble >= 2 {
        return Ok(Format::Hubble);
    }
    Err(Rejection::new(
        reject::UNKNOWN_FORMAT,
        format!(
            "JSON object matches no known format ({}); keys: {}",
            Format::known_names(),
            name_keys(keys)
        ),
    ))
}

fn name_keys(keys: &[String]) -> String {
    if keys.is_empty() {
        return "none (empty object)".to_owned();
    }
    let mut named: Vec<String> = keys
        .iter()
        .take(KEYS_NAMED_IN_REJECTION)
        .map(|k| format!("{k:?}"))
        .collect();
    if keys.len() > KEYS_NAMED_IN_REJECTION {
        named.push(format!("… ({} in all)", keys.len()));
    }
    named.join(", ")
}

/// The first key of a JSON object, read without a parser: `{`, whitespace, a quoted key
/// without escapes. None when the message does not start that way (the full scan decides).
fn first_key(payload: &[u8]) -> Option<&str> {
    let rest = skip_ws(payload);
    let rest = skip_ws(rest.strip_prefix(b"{")?);
    let rest = rest.strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    if rest[end] != b'"' {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()
}

fn skip_ws(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// The rejection for a message that is not (complete) JSON. `hubble observe` without
/// `-o json` prints one line per flow in a compact text form, a common first mistake, so
/// that one gets its own hint.
pub(crate) fn not_json(payload: &[u8], err: &serde_json::Error) -> Rejection {
    if looks_like_hubble_compact(payload) {
        return Rejection::new(
            reject::NOT_JSON,
            "looks like `hubble observe` compact text output; run hubble with -o json",
        );
    }
    Rejection::new(reject::NOT_JSON, format!("not JSON: {err}"))
}

/// Verdict words `hubble observe` prints in its compact output.
const HUBBLE_VERDICTS: &[&str] = &[
    "FORWARDED",
    "DROPPED",
    "REDIRECTED",
    "TRACED",
    "TRANSLATED",
    "AUDIT",
    "ERROR",
];

/// `May  4 13:23:40.501: default/tiefighter:42690 -> default/deathstar-…:80 http-request FORWARDED (…)`:
/// an arrow between two endpoints and a verdict word.
fn looks_like_hubble_compact(payload: &[u8]) -> bool {
    let line = payload.split(|&b| b == b'\n').next().unwrap_or_default();
    let text = String::from_utf8_lossy(line);
    let arrow = [" -> ", " <- ", " <> ", " => "]
        .iter()
        .any(|a| text.contains(a));
    arrow
        && text
            .split_ascii_whitespace()
            .any(|word| HUBBLE_VERDICTS.contains(&word))
}

/// What the top level of a JSON document is.
enum Shape {
    /// An object, with its keys in order.
    Object(Vec<String>),
    /// Something else: "array", "string", ...
    Other(&'static str),
}

/// Reads the top-level keys of an object and skips every value.
struct ShapeVisitor;

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut keys = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value::<IgnoredAny>()?;
            keys.push(key);
        }
        Ok(Shape::Object(keys))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Shape::Other("array"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Shape, E> {
        Ok(Shape::Other("string"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Shape, E> {
        Ok(Shape::Other("boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Shape, E> {
        Ok(Shape::Other("number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Shape, E> {
        Ok(Shape::Other("number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Shape, E> {
        Ok(Shape::Other("number"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Shape, E> {
        Ok(Shape::Other("null"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class_and_message(payload: &[u8]) -> (&'static str, String) {
        match detect(payload) {
            Ok(format) => ("ok", format.name().to_owned()),
            Err(r) => (r.class, r.message),
        }
    }

    #[test]
    fn names_round_trip() {
        for format in Format::ALL {
            assert_eq!(format.name().parse::<Format>(), Ok(format));
            assert_eq!(Format::ALL[format.index()], format);
        }
        assert_eq!(
            "calico".parse::<Format>().map_err(|e| e.to_string()),
            Err(
                "unknown format \"calico\": expected one of hubble, canonical-json, canonical-avro"
                    .to_owned()
            )
        );
    }

    #[test]
    fn avro_by_framing_bytes() {
        assert_eq!(detect(&[0xC3, 0x01, 9, 9]), Ok(Format::CanonicalAvro));
        assert_eq!(detect(&[0x00, 0, 0, 0, 1]), Ok(Format::CanonicalAvro));
        // 0xC3 alone is not the marker (and not JSON either).
        assert_eq!(class_and_message(&[0xC3, 0x02]).0, reject::NOT_JSON);
    }

    #[test]
    fn json_by_keys() {
        let cases: &[(&str, Format)] = &[
            (
                r#"{"flow":{},"node_name":"n","time":"2021-06-16T16:52:13Z"}"#,
                Format::Hubble,
            ),
            (
                r#"  {"time":"2021-06-16T16:52:13Z","verdict":"DROPPED"}"#,
                Format::Hubble,
            ),
            (
                r#"{"time":"t","source":{},"destination":{}}"#,
                Format::Hubble,
            ),
            (r#"{"time":"t","isReply":true}"#, Format::Hubble),
            (r#"{"lost_events":{},"node_name":"n"}"#, Format::Hubble),
            (
                r#"{"event_id":"e","cluster_id":"c"}"#,
                Format::CanonicalJson,
            ),
            (
                r#"{"start_time":1,"cluster_id":"c"}"#,
                Format::CanonicalJson,
            ),
            (r#"{ "start_time" : 1 }"#, Format::CanonicalJson),
            // An escaped first key falls back to the full scan.
            (r#"{"\u0066low":{}}"#, Format::Hubble),
        ];
        for (json, format) in cases {
            assert_eq!(detect(json.as_bytes()), Ok(*format), "{json}");
        }
    }

    #[test]
    fn unknown_objects_name_their_keys() {
        assert_eq!(
            class_and_message(br#"{"a":1,"b":{"c":2},"d":[],"e":1,"f":1,"g":1,"h":1}"#),
            (
                reject::UNKNOWN_FORMAT,
                "JSON object matches no known format (hubble, canonical-json, canonical-avro); \
                 keys: \"a\", \"b\", \"d\", \"e\", \"f\", \"g\", … (7 in all)"
                    .to_owned()
            )
        );
        assert_eq!(
            class_and_message(b"{}").1,
            "JSON object matches no known format (hubble, canonical-json, canonical-avro); \
             keys: none (empty object)"
        );
        assert_eq!(
            class_and_message(br#"[{"flow":{}}]"#),
            (
                reject::UNKNOWN_FORMAT,
                "a JSON array, not an object: each message must hold one flow record".to_owned()
            )
        );
        let (class, message) = class_and_message(
            br#"{"start_time":1597086541,"source_ip":null,"source_name_aggr":"pub"}"#,
        );
        assert_eq!(class, reject::UNKNOWN_FORMAT);
        assert!(
            message.starts_with("looks like a Calico Enterprise flow log"),
            "{message}"
        );
    }

    #[test]
    fn text_is_not_json() {
        let (class, message) = class_and_message(b"hello world");
        assert_eq!(class, reject::NOT_JSON);
        assert_eq!(message, "not JSON: expected value at line 1 column 1");
        // Truncated: detected by the full scan. (A truncated `{"flow":…` is detected as
        // Hubble by its first key and rejected by the decoder, see hubble.rs.)
        assert_eq!(class_and_message(br#"{"time":"2021-"#).0, reject::NOT_JSON);
        assert_eq!(
            class_and_message(br#"{"a":1} trailing"#).0,
            reject::NOT_JSON
        );
    }

    #[test]
    fn hubble_compact_text_gets_a_hint() {
        let line = b"Dec  6 10:01:02.123: default/a:1234 -> kube-system/coredns:53 to-endpoint FORWARDED (UDP)";
        assert_eq!(
            class_and_message(line),
            (
                reject::NOT_JSON,
                "looks like `hubble observe` compact text output; run hubble with -o json"
                    .to_owned()
            )
        );
        // An arrow without a verdict is just text.
        assert_eq!(
            class_and_message(b"a -> b").1,
            "not JSON: expected value at line 1 column 1"
        );
    }
}
