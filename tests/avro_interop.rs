//! Cross-implementation check of the Avro contract: fastavro (Python, written by others)
//! decodes the single-object messages our codec writes — checking the schema fingerprint
//! in the header against its own Parsing Canonical Form — and gets the same values.

mod support;

use apache_avro::types::Value as Avro;
use flowlake_schemas::{AvroCodec, AvroRecord, samples};
use serde_json::{Value, json};

/// The value fastavro prints for an Avro value: unions unwrapped, enums as symbols,
/// bytes as hex, timestamps as raw integers.
fn raw_json(value: &Avro) -> Value {
    match value {
        Avro::Null => Value::Null,
        Avro::Boolean(b) => json!(b),
        Avro::Int(i) => json!(i),
        Avro::Long(l) | Avro::TimestampMicros(l) => json!(l),
        Avro::String(s) | Avro::Enum(_, s) => json!(s),
        Avro::Bytes(b) => json!(b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        Avro::Union(_, inner) => raw_json(inner),
        Avro::Array(items) => Value::Array(items.iter().map(raw_json).collect()),
        Avro::Map(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), raw_json(v))).collect())
        }
        Avro::Record(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), raw_json(v)))
                .collect(),
        ),
        other => panic!("unexpected Avro value in a flowlake record: {other:?}"),
    }
}

fn check<T: AvroRecord + Clone>(record: T, schema_file: &str) {
    let codec = AvroCodec::<T>::new().unwrap_or_else(|e| panic!("{e}"));
    let message = codec.encode(&record);
    let hex: String = message.iter().map(|b| format!("{b:02x}")).collect();
    let schema = support::repo_root().join("schemas/avro").join(schema_file);
    let out = support::run_python_stdin(
        "fastavro_decode.py",
        &[
            "--schema",
            schema.to_str().unwrap_or_default(),
            "--single-object",
        ],
        format!("{hex}\n").as_bytes(),
    );
    let decoded: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let value = apache_avro::to_value(&record).unwrap_or_else(|e| panic!("{e}"));
    let expected = raw_json(&value.resolve(T::schema()).unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(decoded, expected, "{}", T::NAME);
}

#[test]
fn fastavro_reads_every_record_we_write() {
    check(samples::flow_event(), "flow_event.avsc");
    check(samples::enriched_flow(), "enriched_flow.avsc");
    check(samples::flow_edge(), "flow_edge.avsc");
    check(samples::identity_record(), "identity_record.avsc");
    check(flowlake_schemas::FlowEvent::default(), "flow_event.avsc");
}
