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

pub mod avro;
pub mod json;

use flowlake_schemas::FlowEvent;

use super::fields;

/// Fills the gaps of a record read as canonical format `name` from `payload`.
fn fill_gaps(event: &mut FlowEvent, payload: &[u8], name: &str) {
    if event.event_id.is_empty() {
        event.event_id = fields::content_hash(payload);
    }
    if event.source_format.is_empty() {
        event.source_format = name.to_owned();
    }
}

#[cfg(test)]
mod tests {
    use super::avro::decode_avro;
    use super::json::decode_json;
    use flowlake_schemas::{
        Action, AvroCodec, EndpointHint, FlowEvent, Ip, PolicyHit, Reporter, Timestamp,
    };
    use proptest::prelude::*;
    use std::net::IpAddr;

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
