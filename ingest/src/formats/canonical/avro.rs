//! Canonical Avro: flowlake's own `FlowEvent` in single-object encoding (what ingest writes)
//! or Confluent framing (see [`super`] for the gaps filled).

use flowlake_runtime::Rejection;
use flowlake_schemas::codec::{CONFLUENT_MAGIC, SINGLE_OBJECT_MARKER};
use flowlake_schemas::{AvroCodec, FlowEvent};

use super::fill_gaps;
use crate::formats::spec::{Detection, FormatSpec, KeyRule};
use crate::reject;

/// The format's name (`ingest.format`, the `flowlake.format` header, `source_format`).
pub const NAME: &str = "canonical-avro";

/// Canonical Avro's registration in [`crate::formats::FORMATS`]: recognised by its framing
/// bytes, which no JSON text starts with.
pub const SPEC: FormatSpec = FormatSpec {
    name: NAME,
    detection: Detection {
        framing: &[&SINGLE_OBJECT_MARKER, &[CONFLUENT_MAGIC]],
        keys: KeyRule::NONE,
        shared_keys: &[],
        weak_keys: KeyRule::NONE,
    },
    decode: |payload, with| decode_avro(payload, with.avro),
};

/// Decodes canonical Avro (single-object encoding or Confluent framing).
pub fn decode_avro(payload: &[u8], codec: &AvroCodec<FlowEvent>) -> Result<FlowEvent, Rejection> {
    let mut event = codec
        .decode(payload)
        .map_err(|e| Rejection::new(reject::MALFORMED_AVRO, e.to_string()))?;
    fill_gaps(&mut event, payload, NAME);
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accepted;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn codec() -> Result<AvroCodec<FlowEvent>, Box<dyn std::error::Error>> {
        Ok(AvroCodec::<FlowEvent>::new()?)
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
}
