//! The ingest stage as a runtime [`Processor`]: one raw message in, one Avro `FlowEvent`
//! out — or a [`Rejection`], which the runtime sends to the dead-letter topic unchanged.
//!
//! Output is a pure function of the input message and its Kafka timestamp, so a replay of
//! a partition re-produces the same records in the same order (the runtime's de-duplication
//! by origin offset relies on that). In particular the future-time check compares a flow
//! with the message's Kafka timestamp, not with the wall clock, which is used only for
//! messages without one. The key keeps all flows of one source in one partition:
//! `{cluster_id}/{src_ip}`, else `{cluster_id}/{namespace}/{name}` of the source hint,
//! else `{cluster_id}/-`.
//!
//! Two exceptions to that purity, both dead-lettered rather than guessed: a Confluent schema
//! id learnt from the Schema Registry (see [`crate::registry`]; a failed lookup rejects the
//! message, which can be replayed from the DLQ), and a message whose schema id travels in a
//! `__value_schema_id` / `__key_schema_id` header, which is refused whatever its payload: its
//! payload has no id prefix, so reading it as Confluent framing would misread the datum.

use std::future::Future;
use std::time::{Instant, SystemTime};

use flowlake_runtime::{Input, Outputs, Processor, ProcessorError, Rejection};
use flowlake_schemas::codec::CONFLUENT_MAGIC;
use flowlake_schemas::{FlowEvent, Timestamp};

use crate::formats::{Format, canonical};
use crate::metrics::IngestMetrics;
use crate::registry::SchemaRegistry;
use crate::settings::IngestSettings;
use crate::{DecodeContext, IngestError, decode, reject};

/// The format whose Confluent framing may need a Schema Registry lookup before decoding.
const CANONICAL_AVRO: Format = Format::named(canonical::avro::NAME);

/// Header that pins the format of one message, overriding `ingest.format`.
pub const FORMAT_HEADER: &str = "flowlake.format";

/// Headers in which Confluent's newer serializers (`HeaderSchemaIdSerializer`) carry the
/// schema id (a GUID) instead of the payload prefix; flowlake does not read them.
pub const SCHEMA_ID_HEADERS: [&str; 2] = ["__value_schema_id", "__key_schema_id"];

/// Decodes raw flow messages and produces canonical `FlowEvent`s.
#[derive(Debug)]
pub struct IngestProcessor {
    ctx: DecodeContext,
    configured_format: Option<Format>,
    output_topic: String,
    metrics: IngestMetrics,
    /// Looks up unknown Confluent schema ids; None without `ingest.schema_registry_url`.
    registry: Option<SchemaRegistry>,
}

impl IngestProcessor {
    /// A processor producing to `output_topic`. Registers its metric handles with the
    /// recorder installed now, so install the recorder first.
    pub fn new(
        settings: &IngestSettings,
        output_topic: impl Into<String>,
    ) -> Result<Self, IngestError> {
        let ctx = DecodeContext::new(settings)?;
        Ok(IngestProcessor {
            configured_format: ctx.format,
            ctx,
            output_topic: output_topic.into(),
            metrics: IngestMetrics::register(),
            registry: settings
                .schema_registry_url
                .as_deref()
                .map(SchemaRegistry::new),
        })
    }

    fn process_payload(
        &mut self,
        input: &Input<'_>,
        out: &mut Outputs,
    ) -> Result<Format, Rejection> {
        reject_header_schema_id(input)?;
        let Some(payload) = input.payload else {
            return Err(Rejection::new(
                reject::EMPTY_MESSAGE,
                "message has no value (tombstone)",
            ));
        };
        self.ctx.format = pinned_format(input.header(FORMAT_HEADER), self.configured_format)?;
        self.ctx.now = input
            .timestamp_millis
            .filter(|millis| *millis > 0)
            .map_or_else(Timestamp::now, Timestamp::from_millis);
        self.resolve_schema_id(payload)?;
        let (format, event) = decode(payload, &self.ctx)?;
        let bytes = self.ctx.avro_codec().encode(&event);
        out.send(&self.output_topic, Some(partition_key(&event)), bytes);
        Ok(format)
    }

    /// Confluent-framed canonical Avro with a schema id the codec does not know: asks the
    /// registry (if one is configured) before decoding, so that `decode` stays pure.
    fn resolve_schema_id(&mut self, payload: &[u8]) -> Result<(), Rejection> {
        let Some(registry) = self.registry.as_mut() else {
            return Ok(());
        };
        // A payload that starts with the Confluent magic byte is detected as canonical Avro.
        if !matches!(self.ctx.format, None | Some(CANONICAL_AVRO)) {
            return Ok(());
        }
        let Some(id) = confluent_schema_id(payload) else {
            return Ok(());
        };
        registry
            .resolve(id, &mut self.ctx, Instant::now())
            .map_err(|r| r.with_format(canonical::avro::NAME))
    }
}

impl Processor for IngestProcessor {
    fn process(&mut self, input: &Input<'_>, out: &mut Outputs) -> Result<(), Rejection> {
        match self.process_payload(input, out) {
            Ok(format) => {
                self.metrics.record(format);
                Ok(())
            }
            Err(rejection) => {
                self.metrics.rejected(rejection.class);
                Err(rejection)
            }
        }
    }

    fn flush_due(
        &mut self,
        _now: SystemTime,
        _out: &mut Outputs,
    ) -> impl Future<Output = Result<(), ProcessorError>> + Send {
        self.metrics.flush();
        async { Ok(()) }
    }

    fn on_shutdown(
        &mut self,
        _out: &mut Outputs,
    ) -> impl Future<Output = Result<(), ProcessorError>> + Send {
        self.metrics.flush();
        async { Ok(()) }
    }
}

/// The schema id of Confluent framing (`00` + 4-byte big-endian id), if `payload` has one.
fn confluent_schema_id(payload: &[u8]) -> Option<u32> {
    match payload {
        [CONFLUENT_MAGIC, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// Refuses a message whose schema id is in a header, whatever its payload.
fn reject_header_schema_id(input: &Input<'_>) -> Result<(), Rejection> {
    match SCHEMA_ID_HEADERS
        .into_iter()
        .find(|name| input.header(name).is_some())
    {
        None => Ok(()),
        Some(name) => Err(Rejection::new(
            reject::UNSUPPORTED_FRAMING,
            format!(
                "header {name} carries the schema id (Confluent header framing); flowlake reads \
                 schema ids only from the payload: configure the producer to write the id in \
                 the payload (PrefixSchemaIdSerializer, the default)"
            ),
        )
        .with_format(canonical::avro::NAME)),
    }
}

/// The format a message is pinned to: its `flowlake.format` header, else the configured one.
fn pinned_format(
    header: Option<&[u8]>,
    configured: Option<Format>,
) -> Result<Option<Format>, Rejection> {
    let Some(value) = header else {
        return Ok(configured);
    };
    std::str::from_utf8(value)
        .ok()
        .and_then(Format::from_name)
        .map(Some)
        .ok_or_else(|| {
            Rejection::new(
                reject::UNKNOWN_FORMAT,
                format!(
                    "header {FORMAT_HEADER} = {:?} names no known format ({})",
                    String::from_utf8_lossy(value),
                    Format::known_names()
                ),
            )
        })
}

/// `{cluster_id}/{source}`: deterministic, so one source's flows stay in one partition.
fn partition_key(event: &FlowEvent) -> Vec<u8> {
    let source = match (&event.src_ip, &event.src_hint) {
        (Some(ip), _) => ip.to_string(),
        (None, Some(hint)) if hint.namespace.is_some() || hint.name.is_some() => format!(
            "{}/{}",
            hint.namespace.as_deref().unwrap_or("-"),
            hint.name.as_deref().unwrap_or("-")
        ),
        _ => "-".to_owned(),
    };
    format!("{}/{source}", event.cluster_id).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IngestError;
    use crate::accepted;
    use crate::metrics::test_recorder::TestRecorder;
    use crate::registry::tests::fake_registry;
    use flowlake_runtime::processor::BorrowedHeaders;
    use flowlake_schemas::{AvroCodec, EndpointHint};
    use rdkafka::message::{Header, OwnedHeaders};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const DROPPED: &[u8] =
        include_bytes!("../../tests/fixtures/hubble/cilium_docs_export_dropped.jsonl");

    fn line(n: usize) -> &'static [u8] {
        DROPPED.split(|&b| b == b'\n').nth(n).unwrap_or_default()
    }

    fn input<'a>(payload: &'a [u8], headers: Option<&'a BorrowedHeaders>) -> Input<'a> {
        Input {
            headers,
            // 2023-08-21T12:15:00Z, a few minutes after the fixture's flows.
            timestamp_millis: Some(1_692_620_100_000),
            ..Input::from_payload("flows.raw", 3, 17, payload)
        }
    }

    #[test]
    fn produces_avro_with_a_source_key() -> TestResult {
        let recorder = TestRecorder::default();
        let mut processor = metrics::with_local_recorder(&recorder, || {
            IngestProcessor::new(&IngestSettings::for_cluster("kind"), "flows.events")
        })?;
        let mut out = Outputs::default();
        accepted(processor.process(&input(line(1), None), &mut out))?;
        let rejection = processor.process(&input(b"not json", None), &mut out).err();
        assert_eq!(rejection.map(|r| r.class), Some(reject::NOT_JSON));

        let records = out.take();
        assert_eq!(records.len(), 1);
        assert_eq!(&*records[0].topic, "flows.events");
        assert_eq!(records[0].key.as_deref(), Some(&b"kind/10.244.1.60"[..]));
        let event = AvroCodec::<FlowEvent>::new()?.decode(&records[0].payload)?;
        assert_eq!(event.src_port, Some(44_916));
        assert_eq!(event.drop_reason.as_deref(), Some("POLICY_DENIED"));

        // Counted per batch: nothing reaches the counters before the flush.
        let hubble = r#"flowlake_ingest_records_total{format="hubble"}"#;
        let not_json = r#"flowlake_ingest_rejected_records_total{class="not_json"}"#;
        assert_eq!(recorder.counter(hubble), Some(0));
        block_on(processor.flush_due(SystemTime::now(), &mut out))?;
        assert_eq!(recorder.counter(hubble), Some(1));
        assert_eq!(recorder.counter(not_json), Some(1));
        Ok(())
    }

    #[test]
    fn the_header_pins_the_format() -> TestResult {
        let mut processor = IngestProcessor::new(&IngestSettings::for_cluster("kind"), "out")?;
        let mut out = Outputs::default();
        let as_avro = OwnedHeaders::new().insert(Header {
            key: FORMAT_HEADER,
            value: Some("canonical-avro"),
        });
        let err = processor
            .process(&input(line(1), Some(as_avro.as_borrowed())), &mut out)
            .err();
        assert_eq!(err.map(|r| r.class), Some(reject::MALFORMED_AVRO));

        let bogus = OwnedHeaders::new().insert(Header {
            key: FORMAT_HEADER,
            value: Some("calico"),
        });
        let err = processor
            .process(&input(line(1), Some(bogus.as_borrowed())), &mut out)
            .err();
        assert_eq!(
            err.map(|r| (r.class, r.message)),
            Some((
                reject::UNKNOWN_FORMAT,
                "header flowlake.format = \"calico\" names no known format (hubble, \
                 calico-goldmane, calico-enterprise, netobserv, canonical-json, canonical-avro)"
                    .to_owned()
            ))
        );

        let as_hubble = OwnedHeaders::new().insert(Header {
            key: FORMAT_HEADER,
            value: Some("hubble"),
        });
        accepted(processor.process(&input(line(0), Some(as_hubble.as_borrowed())), &mut out))?;
        assert_eq!(out.len(), 1);
        Ok(())
    }

    /// Every agent format can be pinned by header or by settings, and a rejection of a
    /// message whose format is known names it (the DLQ's `flowlake.format`).
    #[test]
    fn agent_formats_pin_and_rejections_name_the_format() -> TestResult {
        const GOLDMANE: &[u8] =
            include_bytes!("../../tests/fixtures/calico/goldmane_emitter_flows_transcribed.jsonl");
        const ENTERPRISE: &[u8] =
            include_bytes!("../../tests/fixtures/calico/enterprise_flowlog_whisker_ui_mock.json");
        const NETOBSERV: &[u8] =
            include_bytes!("../../tests/fixtures/netobserv/loki_lines_flow_records.jsonl");
        let first = |text: &'static [u8]| text.split(|&b| b == b'\n').next().unwrap_or_default();
        let cases = [
            ("calico-goldmane", first(GOLDMANE)),
            ("calico-enterprise", ENTERPRISE),
            ("netobserv", first(NETOBSERV)),
        ];
        let mut processor = IngestProcessor::new(&IngestSettings::for_cluster("kind"), "out")?;
        fn input_at<'a>(payload: &'a [u8], headers: Option<&'a BorrowedHeaders>) -> Input<'a> {
            Input {
                // 2026-01-01: after every fixture.
                timestamp_millis: Some(1_767_225_600_000),
                ..input(payload, headers)
            }
        }
        for (name, payload) in cases {
            let mut out = Outputs::default();
            accepted(processor.process(&input_at(payload, None), &mut out))?;
            let pinned = OwnedHeaders::new().insert(Header {
                key: FORMAT_HEADER,
                value: Some(name),
            });
            accepted(processor.process(&input_at(payload, Some(pinned.as_borrowed())), &mut out))?;
            let event = AvroCodec::<FlowEvent>::new()?.decode(&out.take()[1].payload)?;
            assert_eq!(event.source_format, name);
            // A Hubble line read as this format: rejected, and the rejection says as what.
            let err = processor
                .process(&input_at(line(1), Some(pinned.as_borrowed())), &mut out)
                .err();
            assert_eq!(err.and_then(|r| r.format), Some(name), "{name}");

            let settings = IngestSettings {
                format: Some(name.to_owned()),
                ..IngestSettings::for_cluster("kind")
            };
            let mut by_settings = IngestProcessor::new(&settings, "out")?;
            accepted(by_settings.process(&input_at(payload, None), &mut out))?;
            let err = by_settings
                .process(&input_at(line(1), None), &mut out)
                .err();
            assert_eq!(err.and_then(|r| r.format), Some(name), "{name}");
        }
        // Detected, then rejected: the detected format is named.
        let mut out = Outputs::default();
        let bad_ip = br#"{"TimeFlowStartMs":1708011866459,"SrcAddr":"10.0.0.999"}"#;
        let err = processor.process(&input_at(bad_ip, None), &mut out).err();
        assert_eq!(
            err.map(|r| (r.class, r.format)),
            Some((reject::INVALID_IP, Some("netobserv")))
        );
        // Not detected: no format to name.
        let err = processor.process(&input_at(b"{}", None), &mut out).err();
        assert_eq!(
            err.map(|r| (r.class, r.format)),
            Some((reject::UNKNOWN_FORMAT, None))
        );
        Ok(())
    }

    #[test]
    fn settings_pin_unless_a_header_says_otherwise() {
        assert_eq!(pinned_format(None, None), Ok(None));
        assert_eq!(
            pinned_format(None, Some(Format::named("hubble"))),
            Ok(Some(Format::named("hubble")))
        );
        assert_eq!(
            pinned_format(Some(b"canonical-json"), Some(Format::named("hubble"))),
            Ok(Some(Format::named("canonical-json")))
        );
        assert_eq!(
            pinned_format(Some(&[0xff]), None).map_err(|r| r.class),
            Err(reject::UNKNOWN_FORMAT)
        );
    }

    /// The sample FlowEvent in Confluent framing under schema `id`.
    fn confluent(id: u32) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        let single =
            AvroCodec::<FlowEvent>::new()?.encode(&flowlake_schemas::samples::flow_event());
        let mut framed = vec![CONFLUENT_MAGIC];
        framed.extend_from_slice(&id.to_be_bytes());
        framed.extend_from_slice(&single[10..]);
        Ok(framed)
    }

    fn with_registry(url: &str) -> Result<IngestProcessor, IngestError> {
        let settings = IngestSettings {
            schema_registry_url: Some(url.to_owned()),
            ..IngestSettings::for_cluster("kind")
        };
        IngestProcessor::new(&settings, "out")
    }

    fn now_input(payload: &[u8]) -> Input<'_> {
        Input {
            timestamp_millis: None,
            ..input(payload, None)
        }
    }

    /// An id the settings do not list is fetched once, on a runtime worker thread as in the
    /// stage, and never again.
    #[test]
    fn unknown_confluent_ids_come_from_the_registry_once() -> TestResult {
        let schema = <FlowEvent as flowlake_schemas::AvroRecord>::schema().canonical_form();
        let answer = serde_json::json!({ "schema": schema }).to_string();
        // Answers one request, then stops listening: a second lookup would fail.
        let (url, server) = fake_registry(vec![(200, answer)])?;
        let mut processor = with_registry(&url)?;
        let payload = confluent(21)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let outputs = runtime.block_on(runtime.spawn(async move {
            let mut out = Outputs::default();
            let first = processor.process(&now_input(&payload), &mut out);
            let second = processor.process(&now_input(&payload), &mut out);
            (first, second, out.take())
        }))?;
        let (first, second, records) = outputs;
        accepted(first)?;
        accepted(second)?;
        assert_eq!(
            server.join().map_err(|_| "server panicked")?,
            vec!["GET /schemas/ids/21 HTTP/1.1"]
        );
        assert_eq!(records.len(), 2);
        let expected = flowlake_schemas::samples::flow_event();
        for record in records {
            assert_eq!(
                AvroCodec::<FlowEvent>::new()?.decode(&record.payload)?,
                expected
            );
        }
        Ok(())
    }

    #[test]
    fn a_registry_schema_that_is_not_a_flow_event_is_unknown() -> TestResult {
        let other = r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"long"}]}"#;
        let answer = serde_json::json!({ "schema": other }).to_string();
        let (url, server) = fake_registry(vec![(200, answer)])?;
        let mut processor = with_registry(&url)?;
        let mut out = Outputs::default();
        let payload = confluent(5)?;
        let expected = Rejection::new(
            reject::UNKNOWN_SCHEMA,
            "Confluent schema id 5 is record shop.Order, not flowlake.FlowEvent",
        )
        .with_format("canonical-avro");
        assert_eq!(
            processor.process(&now_input(&payload), &mut out),
            Err(expected.clone())
        );
        // Remembered: the same rejection without asking again (the server has stopped).
        assert_eq!(
            processor.process(&now_input(&payload), &mut out),
            Err(expected)
        );
        assert_eq!(server.join().map_err(|_| "server panicked")?.len(), 1);
        assert_eq!(out.len(), 0);
        Ok(())
    }

    #[test]
    fn an_unreachable_registry_dead_letters_for_replay() -> TestResult {
        // A port nothing listens on any more.
        let url = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            format!("http://{}", listener.local_addr()?)
        };
        let mut processor = with_registry(&url)?;
        let mut out = Outputs::default();
        let rejection = processor
            .process(&now_input(&confluent(7)?), &mut out)
            .err();
        let rejection = rejection.ok_or("accepted without a registry")?;
        assert_eq!(rejection.class, reject::SCHEMA_REGISTRY_UNAVAILABLE);
        assert_eq!(rejection.format, Some("canonical-avro"));
        assert!(
            rejection
                .message
                .starts_with("Confluent schema id 7: Schema Registry lookup failed (")
                && rejection.message.ends_with(
                    "); the record is intact, replay it from the DLQ once the registry answers"
                )
                && !rejection.message.contains(&url),
            "{}",
            rejection.message
        );
        // Ids the settings list need no registry; other formats never ask it.
        accepted(processor.process(&input(line(1), None), &mut out))?;
        Ok(())
    }

    #[test]
    fn a_schema_id_in_a_header_is_refused_whatever_the_payload() -> TestResult {
        let mut processor = IngestProcessor::new(&IngestSettings::for_cluster("kind"), "out")?;
        let mut out = Outputs::default();
        // A payload that would decode without the header.
        let payload =
            AvroCodec::<FlowEvent>::new()?.encode(&flowlake_schemas::samples::flow_event());
        accepted(processor.process(&now_input(&payload), &mut out))?;
        let guid = OwnedHeaders::new().insert(Header {
            key: "__value_schema_id",
            value: Some(&b"\x01\x8f\x2a"[..]),
        });
        let err = processor
            .process(&input(&payload, Some(guid.as_borrowed())), &mut out)
            .err();
        assert_eq!(
            err,
            Some(
                Rejection::new(
                    reject::UNSUPPORTED_FRAMING,
                    "header __value_schema_id carries the schema id (Confluent header framing); \
                     flowlake reads schema ids only from the payload: configure the producer to \
                     write the id in the payload (PrefixSchemaIdSerializer, the default)"
                )
                .with_format("canonical-avro")
            )
        );
        let key_guid = OwnedHeaders::new().insert(Header {
            key: "__key_schema_id",
            value: Some("0f8e"),
        });
        let tombstone = Input {
            payload: None,
            ..input(b"", Some(key_guid.as_borrowed()))
        };
        let err = processor.process(&tombstone, &mut out).err();
        assert_eq!(
            err.map(|r| (r.class, r.format)),
            Some((reject::UNSUPPORTED_FRAMING, Some("canonical-avro")))
        );
        assert_eq!(out.len(), 1);
        Ok(())
    }

    #[test]
    fn future_time_is_judged_against_the_kafka_timestamp() -> TestResult {
        let mut processor = IngestProcessor::new(&IngestSettings::for_cluster("kind"), "out")?;
        let mut out = Outputs::default();
        let early = Input {
            // 2023-08-21T12:00:00Z: the flow (12:12:18) is 12 minutes later.
            timestamp_millis: Some(1_692_619_200_000),
            ..input(line(1), None)
        };
        let err = processor.process(&early, &mut out).err();
        assert_eq!(err.map(|r| r.class), Some(reject::FUTURE_TIME));
        let tombstone = Input {
            payload: None,
            ..input(line(1), None)
        };
        let err = processor.process(&tombstone, &mut out).err();
        assert_eq!(err.map(|r| r.class), Some(reject::EMPTY_MESSAGE));
        Ok(())
    }

    #[test]
    fn keys_fall_back_to_the_source_hint() {
        let event = |src_ip: Option<&str>, hint: Option<EndpointHint>| FlowEvent {
            cluster_id: "c".to_owned(),
            src_ip: src_ip.and_then(|ip| ip.parse().ok()),
            src_hint: hint,
            ..FlowEvent::default()
        };
        let pod = EndpointHint {
            namespace: Some("shop".to_owned()),
            name: Some("web-1".to_owned()),
            ..EndpointHint::default()
        };
        assert_eq!(
            partition_key(&event(Some("fd00::1"), Some(pod.clone()))),
            b"c/fd00::1"
        );
        assert_eq!(partition_key(&event(None, Some(pod))), b"c/shop/web-1");
        assert_eq!(
            partition_key(&event(None, Some(EndpointHint::default()))),
            b"c/-"
        );
        assert_eq!(partition_key(&event(None, None)), b"c/-");
    }

    /// Polls a future that never waits (the processor's hooks are synchronous).
    fn block_on<F: Future>(future: F) -> F::Output {
        use std::pin::pin;
        use std::task::{Context, Poll, Waker};
        let mut future = pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
        }
    }
}
