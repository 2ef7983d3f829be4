//! Avro framing for records on Kafka.
//!
//! Writers always use Avro **single-object encoding** (`C3 01`, the writer schema's 8-byte
//! CRC-64-AVRO fingerprint little-endian, then the datum): every message names its schema
//! without a registry. Readers accept single-object encoding and **Confluent framing**
//! (`00`, a 4-byte big-endian schema id, then the datum), and anything else is a typed
//! [`CodecError`], never a panic. A datum written with exactly our schema is read straight
//! into the Rust struct (apache-avro's schema-aware deserializer: no `types::Value`, about
//! 4× faster); one written with another known schema (an older or newer version) goes
//! through Avro schema resolution, so a reader with an added optional field reads old data.
//! A datum must consume the whole message: trailing bytes mean the message is not what its
//! header says, and are rejected.
//!
//! Data in our own schema is read and written by the hand-written layout in
//! [`crate::binary`] (byte-identical to apache-avro's, several times faster); apache-avro
//! does the schema resolution for other versions.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::rabin::Rabin;
use apache_avro::reader::datum::GenericDatumReader;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::binary::{AvroBinary, ReadError, Reader};
use crate::records::{EnrichedFlow, FlowEdge, FlowEvent, IdentityRecord};

/// First two bytes of an Avro single-object encoded message.
pub const SINGLE_OBJECT_MARKER: [u8; 2] = [0xC3, 0x01];
/// First byte of a Confluent Schema Registry framed message.
pub const CONFLUENT_MAGIC: u8 = 0;
const SINGLE_OBJECT_HEADER_LEN: usize = 10;
const CONFLUENT_HEADER_LEN: usize = 5;

/// Largest single allocation the Avro decoder may make for one string, bytes or array
/// length read from input. A corrupt length field must not make us allocate gigabytes;
/// no flow record comes near this size.
pub const MAX_AVRO_ALLOCATION_BYTES: usize = 16 * 1024 * 1024;

/// Why a message could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The message ended before its header or datum did.
    #[error("message truncated: {needed} bytes of header needed, {got} present")]
    Truncated {
        /// Bytes the header needs.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// The message starts with neither the single-object marker nor the Confluent magic byte.
    #[error(
        "not Avro: first byte 0x{first_byte:02x} is neither single-object encoding (C3 01) nor Confluent framing (00)"
    )]
    UnknownFraming {
        /// The first byte seen.
        first_byte: u8,
    },
    /// Single-object encoding names a schema fingerprint we do not know.
    #[error("unknown writer schema fingerprint {fingerprint:016x} for {record}")]
    UnknownFingerprint {
        /// The record type we tried to read.
        record: &'static str,
        /// The fingerprint in the message (little-endian u64).
        fingerprint: u64,
    },
    /// Confluent framing names a schema id that is not in the configured schema map.
    #[error("unknown Confluent schema id {id} for {record}: add it to the schema map")]
    UnknownSchemaId {
        /// The record type we tried to read.
        record: &'static str,
        /// Schema id in the message.
        id: u32,
    },
    /// The datum does not match its writer schema (corrupt or wrong data).
    #[error("malformed {record} datum: {source}")]
    Malformed {
        /// The record type we tried to read.
        record: &'static str,
        /// Decoder error.
        #[source]
        source: Box<apache_avro::Error>,
    },
    /// The datum does not match our own schema (corrupt or wrong data).
    #[error("malformed {record} datum: {source}")]
    MalformedDatum {
        /// The record type we tried to read.
        record: &'static str,
        /// Where reading stopped and why.
        #[source]
        source: ReadError,
    },
    /// The datum decoded but bytes were left over.
    #[error("{count} trailing bytes after the {record} datum")]
    TrailingBytes {
        /// The record type we read.
        record: &'static str,
        /// Bytes left over.
        count: usize,
    },
    /// A schema given to a codec does not parse.
    #[error("invalid Avro schema: {0}")]
    Schema(#[source] Box<apache_avro::Error>),
}

/// A record type with an Avro schema from `avro/`.
pub trait AvroRecord: Serialize + DeserializeOwned + AvroBinary {
    /// Fully qualified Avro name, e.g. `flowlake.FlowEvent`.
    const NAME: &'static str;
    /// The parsed schema.
    fn schema() -> &'static Schema;
}

fn parse_schema(name: &str, json: &str) -> Schema {
    // Settle the decoder's global allocation cap before any Avro work, so it is ours and
    // not apache-avro's 512 MiB default.
    apache_avro::util::max_allocation_bytes(MAX_AVRO_ALLOCATION_BYTES);
    match Schema::parse_str(json) {
        Ok(schema) => schema,
        // The schema files are compiled in and covered by tests: a parse failure is a
        // build defect, not a runtime condition.
        Err(e) => panic!("built-in schema {name} does not parse: {e}"),
    }
}

impl AvroRecord for FlowEvent {
    const NAME: &'static str = "flowlake.FlowEvent";
    fn schema() -> &'static Schema {
        static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
            parse_schema(
                "flowlake.FlowEvent",
                include_str!("../avro/flow_event.avsc"),
            )
        });
        &SCHEMA
    }
}

impl AvroRecord for EnrichedFlow {
    const NAME: &'static str = "flowlake.EnrichedFlow";
    fn schema() -> &'static Schema {
        static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
            parse_schema(
                "flowlake.EnrichedFlow",
                include_str!("../avro/enriched_flow.avsc"),
            )
        });
        &SCHEMA
    }
}

impl AvroRecord for FlowEdge {
    const NAME: &'static str = "flowlake.FlowEdge";
    fn schema() -> &'static Schema {
        static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
            parse_schema("flowlake.FlowEdge", include_str!("../avro/flow_edge.avsc"))
        });
        &SCHEMA
    }
}

impl AvroRecord for IdentityRecord {
    const NAME: &'static str = "flowlake.IdentityRecord";
    fn schema() -> &'static Schema {
        static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
            parse_schema(
                "flowlake.IdentityRecord",
                include_str!("../avro/identity_record.avsc"),
            )
        });
        &SCHEMA
    }
}

/// The CRC-64-AVRO fingerprint of a schema's parsing canonical form, as the little-endian
/// u64 that single-object encoding carries.
///
/// apache-avro 0.22 leaves logical-type primitives as `{"type":"long"}` in the parsing
/// canonical form, where the specification (and Java, fastavro) reduce them to `"long"`;
/// fingerprinting that form would make other implementations reject our messages. The form
/// of the re-parsed form is the specification's (the logical type is gone by then), so we
/// fingerprint that. The fastavro interop test pins the result.
pub fn fingerprint(schema: &Schema) -> u64 {
    let reparsed = Schema::parse_str(&schema.canonical_form());
    let bytes = match &reparsed {
        Ok(spec_form) => spec_form.fingerprint::<Rabin>().bytes,
        Err(_) => schema.fingerprint::<Rabin>().bytes,
    };
    let mut le = [0u8; 8];
    for (dst, src) in le.iter_mut().zip(bytes.iter()) {
        *dst = *src;
    }
    u64::from_le_bytes(le)
}

/// The schema a message was written with, by its framing.
enum WriterSchema<'c> {
    /// Exactly ours: read by the hand-written layout.
    Own,
    /// Another known version: read through schema resolution.
    Other(&'c Schema),
}

/// Encoder and decoder for one record type. Cheap to share: build one per stage.
pub struct AvroCodec<T: AvroRecord> {
    fingerprint: u64,
    /// Other writer schemas we can resolve from, by single-object fingerprint.
    known_writers: HashMap<u64, Schema>,
    /// Confluent schema ids → writer schema, or None when it is our own schema (decided
    /// once here: fingerprinting a schema per message would cost more than decoding it).
    confluent_ids: HashMap<u32, Option<Schema>>,
    record: PhantomData<fn() -> T>,
}

impl<T: AvroRecord> AvroCodec<T> {
    /// A codec for `T`'s built-in schema.
    pub fn new() -> Result<Self, CodecError> {
        let schema = T::schema();
        Ok(AvroCodec {
            fingerprint: fingerprint(schema),
            known_writers: HashMap::new(),
            confluent_ids: HashMap::new(),
            record: PhantomData,
        })
    }

    /// Also accept single-object data written with `writer_schema` (another version of `T`).
    pub fn with_writer_schema(mut self, writer_schema_json: &str) -> Result<Self, CodecError> {
        let schema =
            Schema::parse_str(writer_schema_json).map_err(|e| CodecError::Schema(Box::new(e)))?;
        self.known_writers.insert(fingerprint(&schema), schema);
        Ok(self)
    }

    /// Accept Confluent-framed data whose schema id is `id`.
    pub fn with_confluent_schema(
        mut self,
        id: u32,
        writer_schema_json: &str,
    ) -> Result<Self, CodecError> {
        self.add_confluent_schema(id, writer_schema_json)?;
        Ok(self)
    }

    /// Accept Confluent-framed data whose schema id is `id`, on a codec already in use (a
    /// schema learnt from a registry). On error the codec is unchanged.
    pub fn add_confluent_schema(
        &mut self,
        id: u32,
        writer_schema_json: &str,
    ) -> Result<(), CodecError> {
        let schema =
            Schema::parse_str(writer_schema_json).map_err(|e| CodecError::Schema(Box::new(e)))?;
        let writer = (fingerprint(&schema) != self.fingerprint).then_some(schema);
        self.confluent_ids.insert(id, writer);
        Ok(())
    }

    /// Whether Confluent-framed data with schema id `id` can be read.
    pub fn has_confluent_schema(&self, id: u32) -> bool {
        self.confluent_ids.contains_key(&id)
    }

    /// The fingerprint this codec writes.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Single-object encodes `record`, appending to `out`. Cannot fail: every value of the
    /// Rust record has an encoding in its schema (the layout is [`crate::binary`]'s).
    pub fn encode_into(&self, record: &T, out: &mut Vec<u8>) {
        self.encode_header(out);
        record.write_avro(out);
    }

    /// Appends the single-object header alone, for a datum the caller writes itself.
    pub fn encode_header(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&SINGLE_OBJECT_MARKER);
        out.extend_from_slice(&self.fingerprint.to_le_bytes());
    }

    /// Single-object encodes `record`.
    pub fn encode(&self, record: &T) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.encode_into(record, &mut out);
        out
    }

    /// The message's datum when its framing says it is written in exactly our schema
    /// (single-object with our fingerprint, or a Confluent id registered as our schema);
    /// None otherwise. The datum itself is not checked.
    pub fn own_datum<'m>(&self, message: &'m [u8]) -> Option<&'m [u8]> {
        match self.framing(message) {
            Ok((WriterSchema::Own, datum)) => Some(datum),
            _ => None,
        }
    }

    /// Decodes a single-object or Confluent framed message.
    pub fn decode(&self, message: &[u8]) -> Result<T, CodecError> {
        match self.framing(message)? {
            (WriterSchema::Own, datum) => self.read_own(datum),
            (WriterSchema::Other(writer), datum) => self.read_resolving(writer, datum),
        }
    }

    /// The writer schema a message's framing names, and its datum.
    fn framing<'m>(&self, message: &'m [u8]) -> Result<(WriterSchema<'_>, &'m [u8]), CodecError> {
        let Some(&first) = message.first() else {
            return Err(CodecError::Truncated { needed: 1, got: 0 });
        };
        if first == SINGLE_OBJECT_MARKER[0] && message.get(1) == Some(&SINGLE_OBJECT_MARKER[1]) {
            let (header, body) = split_header(message, SINGLE_OBJECT_HEADER_LEN)?;
            let mut fp = [0u8; 8];
            fp.copy_from_slice(&header[2..]);
            let fingerprint = u64::from_le_bytes(fp);
            if fingerprint == self.fingerprint {
                return Ok((WriterSchema::Own, body));
            }
            match self.known_writers.get(&fingerprint) {
                Some(writer) => Ok((WriterSchema::Other(writer), body)),
                None => Err(CodecError::UnknownFingerprint {
                    record: T::NAME,
                    fingerprint,
                }),
            }
        } else if first == CONFLUENT_MAGIC {
            let (header, body) = split_header(message, CONFLUENT_HEADER_LEN)?;
            let id = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
            match self.confluent_ids.get(&id) {
                Some(None) => Ok((WriterSchema::Own, body)),
                Some(Some(writer)) => Ok((WriterSchema::Other(writer), body)),
                None => Err(CodecError::UnknownSchemaId {
                    record: T::NAME,
                    id,
                }),
            }
        } else {
            Err(CodecError::UnknownFraming { first_byte: first })
        }
    }

    fn read_own(&self, body: &[u8]) -> Result<T, CodecError> {
        let mut reader = Reader::new(body);
        let record =
            T::read_avro(&mut reader, T::NAME).map_err(|source| CodecError::MalformedDatum {
                record: T::NAME,
                source,
            })?;
        ensure_consumed::<T>(reader.remaining())?;
        Ok(record)
    }

    fn read_resolving(&self, writer: &Schema, body: &[u8]) -> Result<T, CodecError> {
        let malformed = |e| CodecError::Malformed {
            record: T::NAME,
            source: Box::new(e),
        };
        let reader = GenericDatumReader::builder(writer)
            .reader_schema(T::schema())
            .human_readable(false)
            .build()
            .map_err(malformed)?;
        let mut cursor = body;
        let value = reader.read_value(&mut cursor).map_err(malformed)?;
        ensure_consumed::<T>(cursor)?;
        apache_avro::from_value::<T>(&value).map_err(malformed)
    }
}

fn split_header(message: &[u8], len: usize) -> Result<(&[u8], &[u8]), CodecError> {
    if message.len() < len {
        return Err(CodecError::Truncated {
            needed: len,
            got: message.len(),
        });
    }
    Ok(message.split_at(len))
}

fn ensure_consumed<T: AvroRecord>(rest: &[u8]) -> Result<(), CodecError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(CodecError::TrailingBytes {
            record: T::NAME,
            count: rest.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::*;
    use crate::samples;
    use crate::values::Timestamp;
    use apache_avro::types::Value;
    use proptest::prelude::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn round_trip<T: AvroRecord + PartialEq + std::fmt::Debug>(record: T) -> TestResult {
        let codec = AvroCodec::<T>::new()?;
        let bytes = codec.encode(&record);
        assert_eq!(bytes[..2], SINGLE_OBJECT_MARKER);
        assert_eq!(codec.decode(&bytes)?, record);
        assert_eq!(
            codec.own_datum(&bytes),
            Some(&bytes[SINGLE_OBJECT_HEADER_LEN..])
        );
        let mut other_writer = bytes.clone();
        other_writer[2] ^= 1;
        assert_eq!(codec.own_datum(&other_writer), None);
        // The same datum under Confluent framing, once its id is known.
        let mut confluent = vec![CONFLUENT_MAGIC, 0, 0, 0, 42];
        confluent.extend_from_slice(&bytes[SINGLE_OBJECT_HEADER_LEN..]);
        assert_eq!(codec.own_datum(&confluent), None);
        let codec = codec.with_confluent_schema(42, &T::schema().canonical_form())?;
        assert_eq!(codec.decode(&confluent)?, record);
        assert_eq!(
            codec.own_datum(&confluent),
            Some(&bytes[SINGLE_OBJECT_HEADER_LEN..])
        );
        Ok(())
    }

    #[test]
    fn every_record_round_trips() -> TestResult {
        round_trip(samples::flow_event())?;
        round_trip(FlowEvent::default())?;
        round_trip(samples::enriched_flow())?;
        round_trip(samples::flow_edge())?;
        round_trip(samples::identity_record())?;
        round_trip(IdentityRecord {
            deleted_at: Some(Timestamp::from_secs(5)),
            ..Default::default()
        })
    }

    #[test]
    fn framing_errors_are_typed() -> TestResult {
        let codec = AvroCodec::<FlowEvent>::new()?;
        assert!(matches!(
            codec.decode(&[]),
            Err(CodecError::Truncated { needed: 1, got: 0 })
        ));
        assert!(matches!(
            codec.decode(&[0xC3, 0x01, 1, 2]),
            Err(CodecError::Truncated { needed: 10, got: 4 })
        ));
        assert!(matches!(
            codec.decode(&[0, 0, 1]),
            Err(CodecError::Truncated { needed: 5, got: 3 })
        ));
        assert!(matches!(
            codec.decode(b"{\"flow\":1}"),
            Err(CodecError::UnknownFraming { first_byte: b'{' })
        ));
        assert!(matches!(
            codec.decode(&[0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0]),
            Err(CodecError::UnknownFingerprint {
                fingerprint: 0x0807_0605_0403_0201,
                ..
            })
        ));
        assert!(matches!(
            codec.decode(&[0, 0, 0, 1, 0, 2]),
            Err(CodecError::UnknownSchemaId { id: 256, .. })
        ));
        let mut bytes = codec.encode(&samples::flow_event());
        bytes.push(0);
        assert!(matches!(
            codec.decode(&bytes),
            Err(CodecError::TrailingBytes { count: 1, .. })
        ));
        bytes.truncate(bytes.len() - 10);
        let truncated = codec.decode(&bytes);
        assert!(
            matches!(truncated, Err(CodecError::MalformedDatum { .. })),
            "{truncated:?}"
        );
        Ok(())
    }

    /// A reader whose schema gained an optional field reads data written before it existed.
    #[test]
    fn reader_with_added_field_reads_old_data() -> TestResult {
        let mut old_json: serde_json::Value =
            serde_json::from_str(include_str!("../avro/flow_event.avsc"))?;
        let fields = old_json["fields"].as_array_mut().ok_or("no fields")?;
        fields.retain(|f| f["name"] != "dns" && f["name"] != "dst_dns_names");
        let old_schema = Schema::parse(&old_json)?;

        let event = samples::flow_event();
        let Value::Record(mut values) = apache_avro::to_value(&event)? else {
            return Err("not a record".into());
        };
        values.retain(|(name, _)| name != "dns" && name != "dst_dns_names");
        let old_writer =
            apache_avro::writer::datum::GenericDatumWriter::builder(&old_schema).build()?;
        let mut old_bytes = SINGLE_OBJECT_MARKER.to_vec();
        old_bytes.extend_from_slice(&fingerprint(&old_schema).to_le_bytes());
        let old_value = Value::Record(values).resolve(&old_schema)?;
        old_writer.write_value(&mut old_bytes, old_value)?;

        let strict = AvroCodec::<FlowEvent>::new()?;
        assert!(matches!(
            strict.decode(&old_bytes),
            Err(CodecError::UnknownFingerprint { .. })
        ));
        let codec = strict.with_writer_schema(&old_schema.canonical_form())?;
        let decoded = codec.decode(&old_bytes)?;
        assert_eq!(
            decoded,
            FlowEvent {
                dns: None,
                dst_dns_names: vec![],
                ..event
            }
        );
        Ok(())
    }

    fn find_enum<'a>(schema: &'a Schema, name: &str) -> Option<&'a [String]> {
        match schema {
            Schema::Enum(e) if e.name.name() == name => Some(&e.symbols),
            Schema::Record(r) => r.fields.iter().find_map(|f| find_enum(&f.schema, name)),
            Schema::Union(u) => u.variants().iter().find_map(|v| find_enum(v, name)),
            Schema::Array(a) => find_enum(&a.items, name),
            _ => None,
        }
    }

    fn names<T: Serialize>(variants: &[T]) -> Vec<String> {
        variants
            .iter()
            .filter_map(|v| serde_json::to_value(v).ok()?.as_str().map(str::to_owned))
            .collect()
    }

    /// Avro writes enums by index: the Rust variant order must be the schema's symbol order,
    /// in every schema file that defines the enum.
    #[test]
    fn enum_symbols_match_rust_variants() {
        use Action::*;
        use EndpointKind as K;
        let reporter = names(&[Reporter::Unknown, Reporter::Src, Reporter::Dst]);
        let action = names(&[Unknown, Allow, Deny, Pass]);
        let kind = names(&[
            K::Unknown,
            K::Pod,
            K::Node,
            K::Service,
            K::Host,
            K::NetworkSet,
            K::ExternalPublic,
            K::ExternalPrivate,
        ]);
        use EnrichmentStatus as S;
        let status = names(&[S::Miss, S::Hit, S::Stale, S::Hint]);
        use IdentityKind as I;
        let ident = names(&[
            I::Pod,
            I::Service,
            I::Node,
            I::Namespace,
            I::NetworkSet,
            I::Owner,
        ]);
        for schema in [
            FlowEvent::schema(),
            EnrichedFlow::schema(),
            FlowEdge::schema(),
        ] {
            assert_eq!(
                find_enum(schema, "Reporter").map(<[String]>::to_vec),
                Some(reporter.clone())
            );
            assert_eq!(
                find_enum(schema, "Action").map(<[String]>::to_vec),
                Some(action.clone())
            );
        }
        for schema in [EnrichedFlow::schema(), FlowEdge::schema()] {
            assert_eq!(
                find_enum(schema, "EndpointKind").map(<[String]>::to_vec),
                Some(kind.clone())
            );
        }
        assert_eq!(
            find_enum(EnrichedFlow::schema(), "EnrichmentStatus").map(<[String]>::to_vec),
            Some(status)
        );
        assert_eq!(
            find_enum(IdentityRecord::schema(), "IdentityKind").map(<[String]>::to_vec),
            Some(ident)
        );
    }

    /// enriched_flow.avsc embeds FlowEvent in full (so the file stands alone for other
    /// readers); it must be the same schema as flow_event.avsc.
    #[test]
    fn embedded_flow_event_matches_its_own_file() -> TestResult {
        let Schema::Record(enriched) = EnrichedFlow::schema() else {
            return Err("not a record".into());
        };
        let flow = enriched
            .fields
            .iter()
            .find(|f| f.name == "flow")
            .ok_or("no flow field")?;
        assert_eq!(
            flow.schema.canonical_form(),
            FlowEvent::schema().canonical_form()
        );
        Ok(())
    }

    proptest! {
        /// Arbitrary bytes behind a valid header decode to a value or a typed error, never a
        /// panic, and never an allocation beyond the configured cap.
        #[test]
        fn garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let codec = AvroCodec::<EnrichedFlow>::new().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut message = SINGLE_OBJECT_MARKER.to_vec();
            message.extend_from_slice(&codec.fingerprint().to_le_bytes());
            message.extend_from_slice(&body);
            let _ = codec.decode(&message);
            let _ = codec.decode(&body);
        }
    }
}
