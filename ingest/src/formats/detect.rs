//! Input formats and their detection, one message at a time.
//!
//! Detection never guesses between two formats that both fit: Avro is recognised by its
//! framing bytes, JSON by its top-level keys, and anything else is rejected with the reason
//! (never decoded as the "closest" format). The common cases cost a few byte comparisons:
//! Avro by its first two bytes, and a JSON record by its first key when that key belongs to
//! one format only (`{"flow":…` Hubble, `{"Key":…` Goldmane, `{"event_id":…` canonical,
//! `{"SrcAddr":…` NetObserv). Only when the first key decides nothing are all top-level
//! keys read (values skipped) before the real decode.
//!
//! Key rules, in the order they are tried (`classify_keys`): a legacy goflow2 record is
//! rejected by name; `Key` (an object in every Goldmane flow, protojson or emitter) says
//! Goldmane; PascalCase NetObserv keys (`SrcAddr`, `TimeFlowStartMs`, `Proto`, …) say
//! NetObserv; Calico Enterprise keys (`source_name_aggr`, `source_ip`, `num_flows`, …) say
//! Enterprise; then Hubble's keys, the canonical record's, and Hubble's weak keys. The
//! agent formats go first because their keys never occur at the top level of a Hubble or
//! canonical record, while some of Hubble's (`Type`) do occur in goflow2 records. Text
//! that is no JSON gets a hint when it looks like `hubble observe` compact output or
//! Antrea's flow-aggregator CSV and table output.
//!
//! Adding a format means a variant here, its key rules in `classify_keys`, and a module
//! that decodes it.

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
    /// Calico Goldmane flows: the gRPC API's protojson and the emitter's JSON (`{"Key":…}`).
    CalicoGoldmane,
    /// Calico Enterprise / Calico Cloud flow logs (the Elasticsearch documents).
    CalicoEnterprise,
    /// NetObserv / flowlogs-pipeline records (Kafka, stdout, or Loki lines).
    NetObserv,
    /// flowlake's own `FlowEvent` as JSON.
    CanonicalJson,
    /// flowlake's own `FlowEvent` as Avro, single-object encoding or Confluent framing.
    CanonicalAvro,
}

impl Format {
    /// Every format, in a fixed order (metric handles are registered in this order).
    pub const ALL: [Format; 6] = [
        Format::Hubble,
        Format::CalicoGoldmane,
        Format::CalicoEnterprise,
        Format::NetObserv,
        Format::CanonicalJson,
        Format::CanonicalAvro,
    ];

    /// Stable name: used in configuration, the `flowlake.format` header, metrics and
    /// `FlowEvent::source_format`.
    pub const fn name(self) -> &'static str {
        match self {
            Format::Hubble => "hubble",
            Format::CanonicalJson => "canonical-json",
            Format::CanonicalAvro => "canonical-avro",
            Format::CalicoGoldmane => "calico-goldmane",
            Format::CalicoEnterprise => "calico-enterprise",
            Format::NetObserv => "netobserv",
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
            Format::CalicoGoldmane => 1,
            Format::CalicoEnterprise => 2,
            Format::NetObserv => 3,
            Format::CanonicalJson => 4,
            Format::CanonicalAvro => 5,
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

/// The top-level key of every Goldmane flow (the proto field is called `Key`).
const GOLDMANE_KEY: &str = "Key";

/// Keys of a NetObserv (flowlogs-pipeline) record; PascalCase, so no other format has them
/// at its top level.
const NETOBSERV_KEYS: &[&str] = &[
    "SrcAddr",
    "DstAddr",
    "SrcPort",
    "DstPort",
    "Proto",
    "TimeFlowStartMs",
    "TimeFlowEndMs",
    "TimeReceived",
    "TimeFlowRttNs",
    "Bytes",
    "Packets",
    "Etype",
    "AgentIP",
    "SrcMac",
    "DstMac",
    "IfDirection",
    "IfDirections",
    "Interface",
    "Interfaces",
    "FlowDirection",
    "SrcK8S_Name",
    "DstK8S_Name",
    "SrcK8S_Namespace",
    "DstK8S_Namespace",
    "SrcK8S_OwnerType",
    "DstK8S_OwnerType",
    "SrcK8S_HostIP",
    "DstK8S_HostIP",
    "K8S_ClusterName",
    "PktDropPackets",
    "NetworkEvents",
];

/// Keys of a Calico Enterprise flow log that neither the canonical record nor a Goldmane
/// flow has at its top level (`source_labels` is Goldmane's too, `start_time` canonical).
const ENTERPRISE_KEYS: &[&str] = &[
    "source_name_aggr",
    "dest_name_aggr",
    "source_ip",
    "dest_ip",
    "source_name",
    "dest_name",
    "source_namespace",
    "dest_namespace",
    "source_type",
    "dest_type",
    "source_port",
    "dest_port",
    "num_flows",
    "num_flows_started",
    "num_flows_completed",
    "dest_service_name",
    "@timestamp",
];

/// Keys of one format that another format has too (Hubble's `Type` is a goflow2 field):
/// as a first key they decide nothing, the full scan does.
const SHARED_FIRST_KEYS: &[&str] = &["Type"];

/// Keys of the legacy goflow2 / goflow-kube record, which shares `SrcAddr`, `Proto`, … with
/// NetObserv but has `TimeFlowStart` (seconds, often 0) instead of `TimeFlowStartMs`.
const LEGACY_GOFLOW2_KEYS: &[&str] = &["SamplerAddress", "TimeFlowStart"];

/// Keys of formats flowlake knows of but does not decode, so that such a record is
/// rejected by name instead of being half-read as another format.
const NOT_SUPPORTED: &[(&str, &str)] = &[
    ("flowStartSeconds", "an Antrea Flow Aggregator record"),
    ("sourceIPv4Address", "an Antrea Flow Aggregator record"),
    ("sourceIPv6Address", "an Antrea Flow Aggregator record"),
];

/// Detects the format of one message. Empty messages are rejected before this is called.
pub fn detect(payload: &[u8]) -> Result<Format, Rejection> {
    if payload.starts_with(&SINGLE_OBJECT_MARKER) || payload.first() == Some(&CONFLUENT_MAGIC) {
        return Ok(Format::CanonicalAvro);
    }
    if let Some(key) = first_key(payload).filter(|k| !SHARED_FIRST_KEYS.contains(k)) {
        if HUBBLE_KEYS.contains(&key) {
            return Ok(Format::Hubble);
        }
        if CANONICAL_KEYS.contains(&key) {
            return Ok(Format::CanonicalJson);
        }
        if key == GOLDMANE_KEY {
            return Ok(Format::CalicoGoldmane);
        }
        if NETOBSERV_KEYS.contains(&key) {
            return Ok(Format::NetObserv);
        }
        if ENTERPRISE_KEYS.contains(&key) {
            return Ok(Format::CalicoEnterprise);
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
    let has_key = |key: &str| keys.iter().any(|k| k == key);
    if has(LEGACY_GOFLOW2_KEYS) && !has_key("TimeFlowStartMs") {
        return Err(Rejection::new(
            reject::UNKNOWN_FORMAT,
            crate::netobserv::LEGACY_GOFLOW2,
        ));
    }
    if has_key(GOLDMANE_KEY) {
        return Ok(Format::CalicoGoldmane);
    }
    if has(NETOBSERV_KEYS) {
        return Ok(Format::NetObserv);
    }
    if has(ENTERPRISE_KEYS) {
        return Ok(Format::CalicoEnterprise);
    }
    if has(HUBBLE_KEYS) {
        return Ok(Format::Hubble);
    }
    if has(CANONICAL_KEYS) {
        return Ok(Format::CanonicalJson);
    }
    // A Loki query response (what NetObserv's console reads) wraps the records it holds.
    if has_key("status") && has_key("data") {
        return Err(Rejection::new(
            reject::UNKNOWN_FORMAT,
            "looks like a Loki query API response (keys \"status\", \"data\"), not a flow \
             record: send each line of data.result[].values[][1] (the NetObserv records) as \
             its own message",
        ));
    }
    if let Some((_, what)) = NOT_SUPPORTED.iter().find(|(key, _)| has_key(key)) {
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
    if looks_like_antrea_text(payload) {
        return Rejection::new(
            reject::UNKNOWN_FORMAT,
            "looks like Antrea flow aggregator CSV/table output (flow-logger or S3 CSV, or \
             `antctl get flowrecords` table), which flowlake does not decode",
        );
    }
    Rejection::new(reject::NOT_JSON, format!("not JSON: {err}"))
}

/// Fields in a line of the Flow Aggregator's CSV outputs (flow logger: 30, S3: 50+).
const ANTREA_CSV_MIN_FIELDS: usize = 25;

/// Antrea's Flow Aggregator text outputs: a CSV line of the flow logger or the S3
/// uploader (start and end as Unix seconds, then many fields), or the `antctl get
/// flowrecords` table (its header, or a row starting with two addresses and three numbers).
fn looks_like_antrea_text(payload: &[u8]) -> bool {
    let line = payload.split(|&b| b == b'\n').next().unwrap_or_default();
    let Ok(text) = std::str::from_utf8(line) else {
        return false;
    };
    let is_number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let is_ip = |s: &str| s.parse::<std::net::IpAddr>().is_ok();
    let csv: Vec<&str> = text.split(',').collect();
    if csv.len() >= ANTREA_CSV_MIN_FIELDS && is_number(csv[0]) && is_number(csv[1]) {
        return true;
    }
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    match words[..] {
        ["SRC_IP", "DST_IP", ..] => true,
        [src, dst, sport, dport, proto, ..] => {
            is_ip(src) && is_ip(dst) && is_number(sport) && is_number(dport) && is_number(proto)
        }
        _ => false,
    }
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
                "unknown format \"calico\": expected one of hubble, calico-goldmane, \
                 calico-enterprise, netobserv, canonical-json, canonical-avro"
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
            (r#"{"Key":{},"start_time":1}"#, Format::CalicoGoldmane),
            (r#"{"startTime":"1","Key":{}}"#, Format::CalicoGoldmane),
            // Goldmane's top level shares `source_labels` with Enterprise: `Key` decides.
            (r#"{"source_labels":[],"Key":{}}"#, Format::CalicoGoldmane),
            (r#"{"SrcAddr":"10.0.0.1"}"#, Format::NetObserv),
            (r#"{"Flags":16,"TimeFlowStartMs":1}"#, Format::NetObserv),
            // goflow2's `Type` is also a Hubble key; NetObserv keys are tried first.
            (
                r#"{"Type":4,"SrcAddr":"10.0.0.1","TimeFlowStartMs":1}"#,
                Format::NetObserv,
            ),
            (r#"{"source_name_aggr":"pub"}"#, Format::CalicoEnterprise),
            (
                r#"{"start_time":1597166083,"reporter":"dst","dest_name_aggr":"x-*"}"#,
                Format::CalicoEnterprise,
            ),
            (
                r#"{"@timestamp":1597166383000,"action":"allow"}"#,
                Format::CalicoEnterprise,
            ),
            // Without a key of its own, an Enterprise-looking record is canonical.
            (
                r#"{"start_time":1597166083,"reporter":"dst"}"#,
                Format::CanonicalJson,
            ),
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
                "JSON object matches no known format (hubble, calico-goldmane, calico-enterprise, \
                 netobserv, canonical-json, canonical-avro); keys: \"a\", \"b\", \"d\", \"e\", \
                 \"f\", \"g\", … (7 in all)"
                    .to_owned()
            )
        );
        assert_eq!(
            class_and_message(b"{}").1,
            "JSON object matches no known format (hubble, calico-goldmane, calico-enterprise, \
             netobserv, canonical-json, canonical-avro); keys: none (empty object)"
        );
        assert_eq!(
            class_and_message(br#"[{"flow":{}}]"#),
            (
                reject::UNKNOWN_FORMAT,
                "a JSON array, not an object: each message must hold one flow record".to_owned()
            )
        );
        assert_eq!(
            class_and_message(br#"{"flowStartSeconds":1635546867,"protocolIdentifier":17}"#),
            (
                reject::UNKNOWN_FORMAT,
                "looks like an Antrea Flow Aggregator record, which this version of flowlake \
                 does not decode (keys: \"flowStartSeconds\", \"protocolIdentifier\")"
                    .to_owned()
            )
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
    fn legacy_goflow2_is_named() {
        let (class, message) = class_and_message(
            br#"{"BiFlowDirection":0,"SrcAddr":"10.0.0.1","Type":4,"TimeFlowStart":0}"#,
        );
        assert_eq!(class, reject::UNKNOWN_FORMAT);
        assert_eq!(message, crate::netobserv::LEGACY_GOFLOW2);
    }

    #[test]
    fn antrea_text_gets_a_hint() {
        let antrea = (
            reject::UNKNOWN_FORMAT,
            "looks like Antrea flow aggregator CSV/table output (flow-logger or S3 CSV, or \
             `antctl get flowrecords` table), which flowlake does not decode"
                .to_owned(),
        );
        for (name, text) in [
            (
                "antctl_get_flowrecords_table.txt",
                include_str!("../../../tests/fixtures/antrea/antctl_get_flowrecords_table.txt"),
            ),
            (
                "flowaggregator_flowlogger_lines.txt",
                include_str!("../../../tests/fixtures/antrea/flowaggregator_flowlogger_lines.txt"),
            ),
            (
                "flowaggregator_s3_csv_records_with_placeholders.csv",
                include_str!(
                    "../../../tests/fixtures/antrea/flowaggregator_s3_csv_records_with_placeholders.csv"
                ),
            ),
        ] {
            let lines: Vec<&str> = text.lines().collect();
            assert!(lines.len() >= 2, "{name}");
            for line in lines {
                assert_eq!(class_and_message(line.as_bytes()), antrea, "{name}: {line}");
            }
        }
        // Plain CSV with few fields is just not JSON.
        assert_eq!(class_and_message(b"1,2,3").0, reject::NOT_JSON);
        assert_eq!(
            class_and_message(b"10.0.0.1 10.0.0.2 x 1 2").0,
            reject::NOT_JSON
        );
    }

    /// `antctl get flowrecords -o json` prints an array; each element is an Antrea record,
    /// which flowlake does not decode.
    #[test]
    fn loki_responses_are_named() {
        let response = include_bytes!(
            "../../../tests/fixtures/netobserv/console_mock_loki_query_range_flow_records.json"
        );
        let (class, message) = class_and_message(response);
        assert_eq!(class, reject::UNKNOWN_FORMAT);
        assert!(
            message.starts_with("looks like a Loki query API response"),
            "{message}"
        );
    }

    #[test]
    fn antrea_json_is_named() -> Result<(), serde_json::Error> {
        let text = include_str!("../../../tests/fixtures/antrea/antctl_get_flowrecords.json");
        assert_eq!(
            class_and_message(text.as_bytes()).1,
            "a JSON array, not an object: each message must hold one flow record"
        );
        let records: Vec<serde_json::Value> = serde_json::from_str(text)?;
        assert_eq!(records.len(), 1);
        for record in records {
            let (class, message) = class_and_message(&serde_json::to_vec(&record)?);
            assert_eq!(class, reject::UNKNOWN_FORMAT);
            assert!(
                message.starts_with(
                    "looks like an Antrea Flow Aggregator record, which this version of \
                     flowlake does not decode"
                ),
                "{message}"
            );
        }
        Ok(())
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
