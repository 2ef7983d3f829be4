//! Detection of the format of one message, by the rules the formats declare.
//!
//! Detection never guesses between two formats that both fit: a binary format is
//! recognised by its framing bytes, a JSON one by its top-level keys, and anything else is
//! rejected with the reason (never decoded as the "closest" format). The common cases cost a
//! few byte comparisons: Avro by its first two bytes, and a JSON record by its first key
//! when that key is a strong key of one format (`{"flow":…` Hubble, `{"Key":…` Goldmane,
//! `{"event_id":…` canonical, `{"SrcAddr":…` NetObserv). Only when the first key decides
//! nothing are all top-level keys read (values skipped) before the real decode.
//!
//! The full scan, in this order: an unsupported format that shares keys with a supported
//! one is rejected by name (legacy goflow2); the formats' strong keys, by precedence; other
//! unsupported shapes, by name (Loki responses, Antrea records); the formats' weak keys, by
//! precedence. The agent formats' strong keys come first because they never occur at the
//! top level of a Hubble or canonical record, while some of Hubble's (`Type`) do occur in
//! goflow2 records. Text that is no JSON gets a hint when it looks like `hubble observe`
//! compact output or Antrea's flow-aggregator CSV and table output.

use std::fmt;

use flowlake_runtime::Rejection;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::spec::KeyRule;
use super::unsupported::{self, name_keys, not_json};
use super::{FORMATS, Format};
use crate::reject;

/// Formats by the precedence of their strong keys.
const BY_KEYS: [Format; FORMATS.len()] = by_precedence(false);
/// Formats by the precedence of their weak keys.
const BY_WEAK_KEYS: [Format; FORMATS.len()] = by_precedence(true);

/// Detects the format of one message. Empty messages are rejected before this is called.
pub fn detect(payload: &[u8]) -> Result<Format, Rejection> {
    for format in Format::ALL {
        let framing = format.spec().detection.framing;
        if framing.iter().any(|bytes| payload.starts_with(bytes)) {
            return Ok(format);
        }
    }
    if let Some(key) = first_key(payload) {
        let owner = Format::ALL
            .into_iter()
            .find(|f| f.spec().detection.keys.keys.contains(&key));
        if let Some(format) = owner
            && !format.spec().detection.shared_keys.contains(&key)
        {
            return Ok(format);
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
    if let Some(rejection) = unsupported::shadowing_a_format(keys) {
        return Err(rejection);
    }
    let rule = |f: &Format| -> &KeyRule { &f.spec().detection.keys };
    if let Some(format) = BY_KEYS.iter().find(|f| rule(f).matches(keys)) {
        return Ok(*format);
    }
    if let Some(rejection) = unsupported::named_object(keys) {
        return Err(rejection);
    }
    let weak = |f: &Format| -> &KeyRule { &f.spec().detection.weak_keys };
    if let Some(format) = BY_WEAK_KEYS.iter().find(|f| weak(f).matches(keys)) {
        return Ok(*format);
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

/// [`Format::ALL`] sorted by the precedence of their strong or `weak` key rules (stable:
/// equal precedences keep the list's order).
const fn by_precedence(weak: bool) -> [Format; FORMATS.len()] {
    const fn precedence(format: Format, weak: bool) -> u8 {
        let detection = &format.spec().detection;
        if weak {
            detection.weak_keys.precedence
        } else {
            detection.keys.precedence
        }
    }
    let mut order = Format::ALL;
    let mut i = 1;
    while i < order.len() {
        let mut j = i;
        while j > 0 && precedence(order[j - 1], weak) > precedence(order[j], weak) {
            let before = order[j - 1];
            order[j - 1] = order[j];
            order[j] = before;
            j -= 1;
        }
        i += 1;
    }
    order
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
    fn avro_by_framing_bytes() {
        assert_eq!(
            detect(&[0xC3, 0x01, 9, 9]),
            Ok(Format::named("canonical-avro"))
        );
        assert_eq!(
            detect(&[0x00, 0, 0, 0, 1]),
            Ok(Format::named("canonical-avro"))
        );
        // 0xC3 alone is not the marker (and not JSON either).
        assert_eq!(class_and_message(&[0xC3, 0x02]).0, reject::NOT_JSON);
    }

    #[test]
    fn json_by_keys() {
        let cases: &[(&str, Format)] = &[
            (
                r#"{"flow":{},"node_name":"n","time":"2021-06-16T16:52:13Z"}"#,
                Format::named("hubble"),
            ),
            (
                r#"  {"time":"2021-06-16T16:52:13Z","verdict":"DROPPED"}"#,
                Format::named("hubble"),
            ),
            (
                r#"{"time":"t","source":{},"destination":{}}"#,
                Format::named("hubble"),
            ),
            (r#"{"time":"t","isReply":true}"#, Format::named("hubble")),
            (
                r#"{"lost_events":{},"node_name":"n"}"#,
                Format::named("hubble"),
            ),
            (
                r#"{"event_id":"e","cluster_id":"c"}"#,
                Format::named("canonical-json"),
            ),
            (
                r#"{"start_time":1,"cluster_id":"c"}"#,
                Format::named("canonical-json"),
            ),
            (r#"{ "start_time" : 1 }"#, Format::named("canonical-json")),
            // An escaped first key falls back to the full scan.
            (r#"{"\u0066low":{}}"#, Format::named("hubble")),
            (
                r#"{"Key":{},"start_time":1}"#,
                Format::named("calico-goldmane"),
            ),
            (
                r#"{"startTime":"1","Key":{}}"#,
                Format::named("calico-goldmane"),
            ),
            // Goldmane's top level shares `source_labels` with Enterprise: `Key` decides.
            (
                r#"{"source_labels":[],"Key":{}}"#,
                Format::named("calico-goldmane"),
            ),
            (r#"{"SrcAddr":"10.0.0.1"}"#, Format::named("netobserv")),
            (
                r#"{"Flags":16,"TimeFlowStartMs":1}"#,
                Format::named("netobserv"),
            ),
            // goflow2's `Type` is also a Hubble key; NetObserv keys are tried first.
            (
                r#"{"Type":4,"SrcAddr":"10.0.0.1","TimeFlowStartMs":1}"#,
                Format::named("netobserv"),
            ),
            (
                r#"{"source_name_aggr":"pub"}"#,
                Format::named("calico-enterprise"),
            ),
            (
                r#"{"start_time":1597166083,"reporter":"dst","dest_name_aggr":"x-*"}"#,
                Format::named("calico-enterprise"),
            ),
            (
                r#"{"@timestamp":1597166383000,"action":"allow"}"#,
                Format::named("calico-enterprise"),
            ),
            // Without a key of its own, an Enterprise-looking record is canonical.
            (
                r#"{"start_time":1597166083,"reporter":"dst"}"#,
                Format::named("canonical-json"),
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
        assert_eq!(message, unsupported::LEGACY_GOFLOW2);
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
