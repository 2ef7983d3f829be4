//! flowlake ingest: raw flow records from node agents → canonical [`FlowEvent`]s.
//!
//! [`decode`] is the whole per-message logic — size check, format detection (or the pinned
//! format), decoding, defaults, validation — shared by the ingest stage
//! ([`IngestProcessor`]) and by `flowlake decode`, so the CLI shows exactly what the stage
//! would do. A message either becomes one `FlowEvent` or one [`Rejection`] naming its class
//! and reason; nothing is dropped silently and no input stops the stage. A rejection made
//! after the format is known (detected or pinned) names that format, which the runtime
//! writes as the `flowlake.format` DLQ header.

pub mod formats;
pub mod metrics;
pub mod processor;
pub mod registry;
pub mod reject;
pub mod settings;
pub mod validate;

use std::time::Duration;

use flowlake_runtime::{ConfigError, Rejection};
use flowlake_schemas::{AvroCodec, AvroRecord, CodecError, FlowEvent, Timestamp};

pub use formats::Format;
pub use processor::IngestProcessor;
pub use settings::IngestSettings;

/// Why ingest could not be set up. Never retryable: it is a configuration or build defect.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The settings fail validation.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The built-in FlowEvent Avro codec could not be built (a build defect).
    #[error("cannot build the FlowEvent Avro codec: {0}")]
    Codec(#[from] CodecError),
}

impl IngestError {
    /// Whether retrying could help: never, the same settings fail the same way.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Everything [`decode`] needs besides the message.
pub struct DecodeContext {
    /// Cluster for records that name none.
    pub default_cluster_id: String,
    /// Decode every message as this format instead of detecting it.
    pub format: Option<Format>,
    /// Largest message accepted.
    pub max_message_bytes: usize,
    /// How far after `now` a flow may start.
    pub max_future_skew: Duration,
    /// The reference time for `max_future_skew`.
    pub now: Timestamp,
    /// Reads canonical Avro; learns Confluent schema ids from the registry as they appear.
    avro: AvroCodec<FlowEvent>,
}

impl DecodeContext {
    /// A context from validated settings, with `now` = the current time.
    pub fn new(settings: &IngestSettings) -> Result<Self, IngestError> {
        settings.validate()?;
        let schema = FlowEvent::schema().canonical_form();
        let mut avro = AvroCodec::<FlowEvent>::new()?;
        for id in &settings.confluent_schema_ids {
            avro = avro.with_confluent_schema(*id, &schema)?;
        }
        Ok(DecodeContext {
            default_cluster_id: settings.cluster_id.clone(),
            format: settings.pinned_format()?,
            max_message_bytes: settings.max_message_bytes,
            max_future_skew: settings.max_future_skew,
            now: Timestamp::now(),
            avro,
        })
    }

    /// The canonical Avro codec (also the one that writes `flows.events`).
    pub fn avro_codec(&self) -> &AvroCodec<FlowEvent> {
        &self.avro
    }

    /// Whether Confluent-framed canonical Avro with schema id `id` can be read.
    pub fn knows_confluent_schema(&self, id: u32) -> bool {
        self.avro.has_confluent_schema(id)
    }

    /// Reads Confluent-framed canonical Avro with schema id `id` from now on, written with
    /// `writer_schema_json` (a FlowEvent schema from the registry).
    pub fn add_confluent_schema(
        &mut self,
        id: u32,
        writer_schema_json: &str,
    ) -> Result<(), CodecError> {
        self.avro.add_confluent_schema(id, writer_schema_json)
    }
}

impl std::fmt::Debug for DecodeContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodeContext")
            .field("default_cluster_id", &self.default_cluster_id)
            .field("format", &self.format)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("max_future_skew", &self.max_future_skew)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// Decodes and validates one raw message.
pub fn decode(payload: &[u8], ctx: &DecodeContext) -> Result<(Format, FlowEvent), Rejection> {
    validate::check_message(payload, ctx.max_message_bytes)?;
    let format = match ctx.format {
        Some(format) => format,
        None => formats::detect::detect(payload)?,
    };
    decode_as(format, payload, ctx)
        .map(|event| (format, event))
        .map_err(|rejection| rejection.with_format(format.name()))
}

/// Decodes and validates one message of a known format.
fn decode_as(format: Format, payload: &[u8], ctx: &DecodeContext) -> Result<FlowEvent, Rejection> {
    let with = formats::Decoding {
        default_cluster_id: &ctx.default_cluster_id,
        avro: &ctx.avro,
    };
    let mut event = (format.spec().decode)(payload, &with)?;
    if event.cluster_id.is_empty() {
        event.cluster_id.clone_from(&ctx.default_cluster_id);
    }
    // One host, one key: IPv4-mapped IPv6 addresses become IPv4 whatever the format.
    event.src_ip = event.src_ip.map(|ip| ip.canonical());
    event.dst_ip = event.dst_ip.map(|ip| ip.canonical());
    validate::check_event(&event, ctx.max_future_skew, ctx.now)?;
    Ok(event)
}

/// In tests: a rejection as an error `?` can return (Rejection is data, not an Error).
#[cfg(test)]
pub(crate) fn accepted<T>(result: Result<T, Rejection>) -> Result<T, String> {
    result.map_err(|r| r.to_string())
}

/// Decoding helpers the format modules' tests share: one fixture message through
/// [`decode`], as ingest and `flowlake decode` run it.
#[cfg(test)]
pub(crate) mod test_decode {
    use super::*;
    use serde_json::Value;

    /// Error type of the helpers.
    pub(crate) type TestError = Box<dyn std::error::Error>;

    /// A context whose clock (2027-01-15) is after every fixture, so none is "in the future".
    pub(crate) fn ctx() -> Result<DecodeContext, TestError> {
        let mut ctx = DecodeContext::new(&IngestSettings::for_cluster("test-cluster"))?;
        ctx.now = Timestamp::from_secs(1_800_000_000);
        Ok(ctx)
    }

    /// The canonical JSON `flowlake decode` prints for `message`, which must be of the
    /// format called `format`.
    pub(crate) fn canonical(message: &str, format: &str) -> Result<Value, TestError> {
        let (detected, event) = accepted(decode(message.as_bytes(), &ctx()?))?;
        assert_eq!(detected.name(), format);
        Ok(serde_json::to_value(event)?)
    }

    /// The class and reason of `message`'s rejection; it must name `format` when given.
    pub(crate) fn rejection(
        message: &str,
        format: Option<&str>,
    ) -> Result<(&'static str, String), TestError> {
        match decode(message.as_bytes(), &ctx()?) {
            Ok((_, event)) => Err(format!("accepted: {event:?}").into()),
            Err(r) => {
                if let Some(format) = format {
                    assert_eq!(r.format, Some(format), "{r}");
                }
                Ok((r.class, r.message))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn ctx() -> Result<DecodeContext, IngestError> {
        let mut ctx = DecodeContext::new(&IngestSettings::for_cluster("test-cluster"))?;
        ctx.now = Timestamp::from_secs(1_700_000_000);
        Ok(ctx)
    }

    fn class(payload: &[u8], ctx: &DecodeContext) -> Option<&'static str> {
        decode(payload, ctx).err().map(|r| r.class)
    }

    #[test]
    fn context_needs_valid_settings() {
        assert!(matches!(
            DecodeContext::new(&IngestSettings::default()),
            Err(IngestError::Config(_))
        ));
    }

    #[test]
    fn every_format_goes_through_the_same_checks() -> TestResult {
        let ctx = ctx()?;
        let canonical = br#"{"start_time":"2023-11-14T22:00:00Z","src_ip":"::ffff:10.1.2.3"}"#;
        let (format, event) = accepted(decode(canonical, &ctx))?;
        assert_eq!(format, Format::named("canonical-json"));
        assert_eq!(
            event.cluster_id, "test-cluster",
            "default cluster filled in"
        );
        assert_eq!(
            event.src_ip.map(|ip| ip.to_string()).as_deref(),
            Some("10.1.2.3")
        );

        let avro = ctx.avro_codec().encode(&event);
        assert_eq!(
            accepted(decode(&avro, &ctx))?,
            (Format::named("canonical-avro"), event)
        );

        assert_eq!(class(b"", &ctx), Some(reject::EMPTY_MESSAGE));
        assert_eq!(class(b"  ", &ctx), Some(reject::NOT_JSON));
        let mut small = self::ctx()?;
        small.max_message_bytes = 10;
        assert_eq!(class(canonical, &small), Some(reject::MESSAGE_TOO_LARGE));
        let future = br#"{"start_time":"2023-11-14T22:23:21Z"}"#;
        assert_eq!(class(future, &ctx), Some(reject::FUTURE_TIME));
        let backwards =
            br#"{"start_time":"2023-11-14T22:00:00Z","end_time":"2023-11-14T21:00:00Z"}"#;
        assert_eq!(class(backwards, &ctx), Some(reject::INVALID_TIME));
        let port = br#"{"start_time":"2023-11-14T22:00:00Z","dst_port":70000}"#;
        assert_eq!(class(port, &ctx), Some(reject::INVALID_PORT));
        let negative = br#"{"start_time":"2023-11-14T22:00:00Z","bytes_in":-5}"#;
        assert_eq!(class(negative, &ctx), Some(reject::NEGATIVE_COUNTER));
        let no_start = br#"{"cluster_id":"c","end_time":"2023-11-14T22:00:00Z"}"#;
        assert_eq!(class(no_start, &ctx), Some(reject::MISSING_FIELD));
        Ok(())
    }

    #[test]
    fn a_pinned_format_is_not_detected() -> TestResult {
        let mut ctx = ctx()?;
        ctx.format = Some(Format::named("canonical-avro"));
        let canonical = br#"{"start_time":"2023-11-14T22:00:00Z"}"#;
        let err = decode(canonical, &ctx).err().map(|r| (r.class, r.message));
        assert_eq!(
            err,
            Some((
                reject::MALFORMED_AVRO,
                "not Avro: first byte 0x7b is neither single-object encoding (C3 01) nor \
                 Confluent framing (00)"
                    .to_owned()
            ))
        );
        ctx.format = Some(Format::named("hubble"));
        assert_eq!(class(canonical, &ctx), Some(reject::MISSING_FIELD));
        Ok(())
    }

    #[test]
    fn confluent_ids_come_from_settings() -> TestResult {
        let settings = IngestSettings {
            confluent_schema_ids: vec![42],
            ..IngestSettings::for_cluster("c")
        };
        let ctx = DecodeContext::new(&settings)?;
        let event = flowlake_schemas::samples::flow_event();
        let single = ctx.avro_codec().encode(&event);
        let mut confluent = vec![0, 0, 0, 0, 42];
        confluent.extend_from_slice(&single[10..]);
        assert_eq!(
            accepted(decode(&confluent, &ctx))?,
            (Format::named("canonical-avro"), event)
        );
        Ok(())
    }
}
