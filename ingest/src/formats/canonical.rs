//! flowlake's own record as input: `FlowEvent` as JSON, or as Avro.
//!
//! Canonical JSON is the JSON shape of the schemas crate: times as RFC 3339 text or integer
//! microseconds, IPs as text, anything optional may be left out. Canonical Avro is what
//! ingest itself writes (single-object encoding), or a FlowEvent schema in Confluent framing
//! for the schema ids configured in `ingest.confluent_schema_ids` or learnt from the Schema
//! Registry ([`crate::registry`], before decoding).
//!
//! The record is taken as written, with three gaps filled so that a hand-written record is
//! usable: an empty `event_id` becomes the hash of the message (as for Hubble), an empty
//! `source_format` becomes this format's name (a non-empty one is kept: a record replayed
//! from `flows.events` still says which agent it came from), and in JSON a missing
//! `end_time` becomes `start_time` (a point-in-time observation). `cluster_id` is filled
//! from the configured default by the caller, for every format.

use flowlake_runtime::Rejection;
use flowlake_schemas::{AvroCodec, FlowEvent, Timestamp};

use crate::format::Format;
use crate::{fields, json, reject};

/// Decodes canonical JSON.
pub fn decode_json(payload: &[u8]) -> Result<FlowEvent, Rejection> {
    let mut event: FlowEvent = json::parse(payload, "canonical flow record")?;
    if event.end_time == Timestamp::EPOCH {
        event.end_time = event.start_time;
    }
    fill_gaps(&mut event, payload, Format::CanonicalJson);
    Ok(event)
}

/// Decodes canonical Avro (single-object encoding or Confluent framing).
pub fn decode_avro(payload: &[u8], codec: &AvroCodec<FlowEvent>) -> Result<FlowEvent, Rejection> {
    let mut event = codec
        .decode(payload)
        .map_err(|e| Rejection::new(reject::MALFORMED_AVRO, e.to_string()))?;
    fill_gaps(&mut event, payload, Format::CanonicalAvro);
    Ok(event)
}

fn fill_gaps(event: &mut FlowEvent, payload: &[u8], format: Format) {
    if event.event_id.is_empty() {
        event.event_id = fields::content_hash(payload);
    }
    if event.source_format.is_empty() {
        event.source_format = format.name().to_owned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accepted;
    use flowlake_schemas::codec::{CONFLUENT_MAGIC, SINGLE_OBJECT_MARKER};
    use flowlake_schemas::{Action, EndpointHint, Ip, PolicyHit, Reporter};
    use proptest::prelude::*;
    use std::net::IpAddr;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn codec() -> Result<AvroCodec<FlowEvent>, Box<dyn std::error::Error>> {
        Ok(AvroCodec::<FlowEvent>::new()?)
    }

    #[test]
    fn hand_written_json_gets_its_gaps_filled() -> TestResult {
        let json = br#"{"cluster_id":"prod","start_time":"2024-05-01T10:00:00Z",
            "src_ip":"10.0.0.1","dst_ip":"fd00::2","dst_port":443,"protocol":6,
            "action":"deny","bytes_out":1200}"#;
        let event = accepted(decode_json(json))?;
        assert_eq!(
            event,
            FlowEvent {
                event_id: format!("{:032x}", xxhash_rust::xxh3::xxh3_128(json)),
                cluster_id: "prod".to_owned(),
                source_format: "canonical-json".to_owned(),
                start_time: Timestamp::from_secs(1_714_557_600),
                end_time: Timestamp::from_secs(1_714_557_600),
                src_ip: Some("10.0.0.1".parse()?),
                dst_ip: Some("fd00::2".parse()?),
                dst_port: Some(443),
                protocol: Some(6),
                action: Action::Deny,
                bytes_out: 1200,
                ..FlowEvent::default()
            }
        );
        // Integer times are microseconds; a given source_format is kept.
        let event = accepted(decode_json(
            br#"{"event_id":"e1","source_format":"hubble","start_time":5,"end_time":7}"#,
        ))?;
        assert_eq!(
            (event.event_id.as_str(), event.source_format.as_str()),
            ("e1", "hubble")
        );
        assert_eq!((event.start_time.0, event.end_time.0), (5, 7));
        Ok(())
    }

    #[test]
    fn json_errors_name_the_field() {
        let err = decode_json(br#"{"cluster_id":"c","src_ip":"10.0.0.300"}"#).err();
        assert_eq!(
            err.map(|r| (r.class, r.message)),
            Some((
                reject::INVALID_FIELD,
                "canonical flow record: field `src_ip`: invalid IP address \"10.0.0.300\" at line 1 column 39"
                    .to_owned()
            ))
        );
        let err = decode_json(br#"{"cluster_id":"c","action":"drop"}"#).err();
        assert_eq!(err.map(|r| r.class), Some(reject::INVALID_FIELD));
    }

    #[test]
    fn avro_single_object_and_confluent() -> TestResult {
        let event = flowlake_schemas::samples::flow_event();
        let bytes = codec()?.encode(&event);
        assert_eq!(bytes[..2], SINGLE_OBJECT_MARKER);
        assert_eq!(accepted(decode_avro(&bytes, &codec()?))?, event);

        let mut confluent = vec![CONFLUENT_MAGIC, 0, 0, 0, 7];
        confluent.extend_from_slice(&bytes[10..]);
        let err = decode_avro(&confluent, &codec()?).err();
        assert_eq!(
            err.map(|r| (r.class, r.message)),
            Some((
                reject::MALFORMED_AVRO,
                "unknown Confluent schema id 7 for flowlake.FlowEvent: add it to the schema map"
                    .to_owned()
            ))
        );
        let schema = <FlowEvent as flowlake_schemas::AvroRecord>::schema().canonical_form();
        let with_id = codec()?.with_confluent_schema(7, &schema)?;
        assert_eq!(accepted(decode_avro(&confluent, &with_id))?, event);
        Ok(())
    }

    #[test]
    fn malformed_avro_is_rejected_with_the_codec_message() -> TestResult {
        let mut bytes = codec()?.encode(&flowlake_schemas::samples::flow_event());
        bytes.truncate(bytes.len() - 5);
        let err = decode_avro(&bytes, &codec()?).err();
        assert_eq!(err.as_ref().map(|r| r.class), Some(reject::MALFORMED_AVRO));
        assert!(err.is_some_and(|r| r.message.starts_with("malformed flowlake.FlowEvent datum")),);
        Ok(())
    }

    fn arb_ip() -> impl Strategy<Value = Ip> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|o| Ip(IpAddr::from(o))),
            any::<[u8; 16]>().prop_map(|o| Ip(IpAddr::from(o))),
        ]
    }

    fn arb_event() -> impl Strategy<Value = FlowEvent> {
        // Times within chrono's printable range, so that JSON carries them as RFC 3339.
        let time = 0i64..4_102_444_800_000_000;
        (
            ("[a-z0-9-]{1,20}", "[a-z]{1,10}", time, 0i64..3_600_000_000),
            (
                proptest::option::of(arb_ip()),
                proptest::option::of(arb_ip()),
            ),
            (
                proptest::option::of(0i32..=65_535),
                proptest::option::of(0i32..=65_535),
                proptest::option::of(0i32..=255),
            ),
            (0usize..4, any::<u32>(), any::<u32>()),
            proptest::option::of(("[a-z]{1,8}", "[a-z]{1,8}", "[ -~]{0,12}")),
        )
            .prop_map(
                |(
                    (id, cluster, start, dur),
                    (src_ip, dst_ip),
                    (sp, dp, proto),
                    (act, bo, pi),
                    hint,
                )| {
                    FlowEvent {
                        event_id: id,
                        cluster_id: cluster,
                        source_format: "canonical-json".to_owned(),
                        reporter: Reporter::Dst,
                        start_time: Timestamp(start.max(1)),
                        end_time: Timestamp(start.max(1) + dur),
                        src_ip,
                        dst_ip,
                        src_port: sp,
                        dst_port: dp,
                        protocol: proto,
                        action: [Action::Unknown, Action::Allow, Action::Deny, Action::Pass][act],
                        bytes_out: i64::from(bo),
                        packets_in: i64::from(pi),
                        policies_enforced: vec![PolicyHit {
                            kind: "CiliumNetworkPolicy".to_owned(),
                            name: "p".to_owned(),
                            action: Action::Deny,
                            ..PolicyHit::default()
                        }],
                        src_hint: hint.map(|(ns, name, value)| EndpointHint {
                            namespace: Some(ns),
                            name: Some(name),
                            labels: [("app".to_owned(), value)].into(),
                            ..EndpointHint::default()
                        }),
                        ..FlowEvent::default()
                    }
                },
            )
    }

    proptest! {
        /// Canonical JSON and canonical Avro carry the same record: JSON → event → Avro →
        /// event → JSON gives back the event and the same JSON.
        #[test]
        fn json_and_avro_round_trip(event in arb_event()) {
            let fail = |e: &dyn std::fmt::Display| TestCaseError::fail(e.to_string());
            let codec = AvroCodec::<FlowEvent>::new().map_err(|e| fail(&e))?;
            let json = serde_json::to_vec(&event).map_err(|e| fail(&e))?;
            let from_json = decode_json(&json).map_err(|e| fail(&e))?;
            prop_assert_eq!(&from_json, &event);
            let avro = codec.encode(&from_json);
            let from_avro = decode_avro(&avro, &codec).map_err(|e| fail(&e))?;
            prop_assert_eq!(&from_avro, &event);
            prop_assert_eq!(serde_json::to_vec(&from_avro).map_err(|e| fail(&e))?, json);
        }
    }
}
