//! Shared set-up of the fuzz targets: the decode contexts ingest builds from its default
//! settings, and the properties every accepted record must have.
//!
//! A target panics — and libFuzzer reports the input — when ingest itself panics, or when
//! a record ingest accepted breaks one of these invariants:
//! - its Avro encoding decodes back to the same record;
//! - its canonical JSON (what `flowlake decode` prints) decodes back, as canonical JSON, to
//!   the same record.

use flowlake_ingest::{DecodeContext, Format, IngestSettings};
use flowlake_schemas::{FlowEvent, Timestamp};

/// Confluent schema id under which the fuzz contexts know the FlowEvent schema, so that
/// Confluent framing reaches the datum decoder.
pub const CONFLUENT_ID: u32 = 1;

/// A context as ingest builds it from its defaults, detecting formats, with a fixed clock
/// (2023-11-14T22:13:20Z) so that a finding replays the same way later.
pub fn context() -> DecodeContext {
    let settings = IngestSettings {
        confluent_schema_ids: vec![CONFLUENT_ID],
        ..IngestSettings::for_cluster("fuzz")
    };
    match DecodeContext::new(&settings) {
        Ok(mut ctx) => {
            ctx.now = Timestamp::from_secs(1_700_000_000);
            ctx
        }
        Err(e) => panic!("default ingest settings are invalid: {e}"),
    }
}

/// Checks the invariants of an accepted record (see the crate documentation).
pub fn check_accepted(ctx: &DecodeContext, json_ctx: &DecodeContext, event: &FlowEvent) {
    let avro = ctx.avro_codec().encode(event);
    match ctx.avro_codec().decode(&avro) {
        Ok(back) => assert_eq!(&back, event, "Avro round trip changed the record"),
        Err(e) => panic!("our own Avro does not decode: {e}\n{event:?}"),
    }
    let json = match serde_json::to_vec(event) {
        Ok(json) => json,
        Err(e) => panic!("accepted record does not serialize to JSON: {e}\n{event:?}"),
    };
    match flowlake_ingest::decode(&json, json_ctx) {
        Ok((_, back)) => assert_eq!(&back, event, "canonical JSON round trip changed the record"),
        Err(rejection) => panic!(
            "canonical JSON of an accepted record is rejected: {rejection}\n{}",
            String::from_utf8_lossy(&json)
        ),
    }
}

/// A context pinned to canonical JSON, for the JSON round trip.
pub fn json_context() -> DecodeContext {
    let mut ctx = context();
    ctx.format = Some(Format::named("canonical-json"));
    ctx
}
