//! Avro framing and datum decoding of the records stages read from Kafka: single-object
//! encoding and Confluent framing, for FlowEvent (flows.events) and EnrichedFlow
//! (flows.enriched). Never a panic, never an allocation past the codec's cap (libFuzzer's
//! -rss_limit_mb / -malloc_limit_mb catch those), and whatever decodes re-encodes to a
//! message that decodes to the same record.

#![no_main]

use flowlake_fuzz::CONFLUENT_ID;
use flowlake_schemas::{AvroCodec, AvroRecord, EnrichedFlow, FlowEvent};
use libfuzzer_sys::fuzz_target;
use std::fmt::Debug;

fn codec<T: AvroRecord>() -> AvroCodec<T> {
    let schema = T::schema().canonical_form();
    AvroCodec::<T>::new()
        .and_then(|c| c.with_confluent_schema(CONFLUENT_ID, &schema))
        .unwrap_or_else(|e| panic!("built-in codec for {}: {e}", T::NAME))
}

fn round_trip<T: AvroRecord + PartialEq + Debug>(codec: &AvroCodec<T>, data: &[u8]) {
    if let Ok(record) = codec.decode(data) {
        let bytes = codec.encode(&record);
        match codec.decode(&bytes) {
            Ok(back) => assert_eq!(back, record, "{} round trip changed the record", T::NAME),
            Err(e) => panic!("re-encoded {} does not decode: {e}", T::NAME),
        }
    }
}

thread_local! {
    static CODECS: (AvroCodec<FlowEvent>, AvroCodec<EnrichedFlow>) = (codec(), codec());
}

fuzz_target!(|data: &[u8]| {
    CODECS.with(|(events, enriched)| {
        round_trip(events, data);
        round_trip(enriched, data);
    });
});
