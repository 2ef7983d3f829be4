//! Canonical JSON: flowlake's own `FlowEvent` in the JSON shape of the schemas crate (see
//! [`super`] for the gaps filled).

use flowlake_runtime::Rejection;
use flowlake_schemas::{FlowEvent, Timestamp};

use super::fill_gaps;
use crate::formats::json;
use crate::formats::spec::{Detection, FormatSpec, KeyRule};

/// The format's name (`ingest.format`, the `flowlake.format` header, `source_format`).
pub const NAME: &str = "canonical-json";

/// Canonical JSON's registration in [`crate::formats::FORMATS`]: its own keys are tried
/// after every agent format's and Hubble's; its weak keys (one is enough) before Hubble's.
pub const SPEC: FormatSpec = FormatSpec {
    name: NAME,
    detection: Detection {
        framing: &[],
        keys: KeyRule {
            keys: KEYS,
            needed: 1,
            precedence: 50,
        },
        shared_keys: &[],
        weak_keys: KeyRule {
            keys: WEAK_KEYS,
            needed: 1,
            precedence: 10,
        },
    },
    decode: |payload, _| decode_json(payload),
};

/// Keys that name the canonical record on their own.
const KEYS: &[&str] = &["event_id", "cluster_id", "source_format"];

/// Canonical keys that other flow formats use as well (Calico Enterprise has `start_time`).
const WEAK_KEYS: &[&str] = &["start_time", "end_time", "src_ip", "dst_ip"];

/// Decodes canonical JSON.
pub fn decode_json(payload: &[u8]) -> Result<FlowEvent, Rejection> {
    let mut event: FlowEvent = json::parse(payload, "canonical flow record")?;
    if event.end_time == Timestamp::EPOCH {
        event.end_time = event.start_time;
    }
    fill_gaps(&mut event, payload, NAME);
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accepted;
    use crate::reject;
    use flowlake_schemas::Action;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

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
}
