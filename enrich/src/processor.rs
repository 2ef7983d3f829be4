//! The enrich stage as a runtime [`Processor`]: `flows.events` (Avro `FlowEvent`) in,
//! `flows.enriched` (Avro `EnrichedFlow`) out.
//!
//! One output per input, keyed like its input so an event's partition (and with it the
//! order of a source's events) stays the same from topic to topic. A record that is not a
//! `FlowEvent` is rejected (`malformed_avro`) and goes to the dead-letter topic with the
//! decoder's reason; it never stops the stage. No flow is held between records, so the
//! runtime may commit up to the last record read once its outputs are acknowledged.
//!
//! The processor owns the identity table. Identity updates arrive on an
//! [`IdentityReceiver`] and are applied in `flush_due` (after every batch and on every
//! tick), at most `max_updates_per_flush` per call, then deleted objects past their
//! retention are pruned (see [`flowlake_identity::sink`] and [`Enricher::prune`]).

use std::future::Future;
use std::time::SystemTime;

use flowlake_identity::{IdentityReadiness, IdentityReceiver};
use flowlake_runtime::{Input, Outputs, Processor, ProcessorError, Rejection};
use flowlake_schemas::binary::AvroBinary;
use flowlake_schemas::{AvroCodec, CodecError, EnrichedFlow, FlowEvent};

use crate::enricher::Enricher;
use crate::metrics::{EndpointCounters, EndpointTally, FlowSide, TableGauges};
use crate::settings::DEFAULT_MAX_UPDATES_PER_FLUSH;

/// Rejection class of an input that does not decode as a `FlowEvent`.
pub const MALFORMED_AVRO: &str = "malformed_avro";
/// Rejection class of an input without a value (a tombstone).
pub const MISSING_PAYLOAD: &str = "missing_payload";

/// Room for the endpoints an enriched record adds to its event, so encoding rarely grows
/// the buffer.
const ENRICHED_EXTRA_BYTES: usize = 512;

/// Decodes, enriches and re-encodes flow events.
pub struct EnrichProcessor {
    enricher: Enricher,
    events: AvroCodec<FlowEvent>,
    enriched: AvroCodec<EnrichedFlow>,
    output_topic: String,
    tally: EndpointTally,
    counters: EndpointCounters,
    gauges: TableGauges,
    updates: Option<IdentityReceiver>,
    max_updates_per_flush: usize,
    sources: Vec<IdentityReadiness>,
}

impl std::fmt::Debug for EnrichProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrichProcessor")
            .field("output_topic", &self.output_topic)
            .finish_non_exhaustive()
    }
}

impl EnrichProcessor {
    /// A processor that writes to `output_topic`. Registers the endpoint counters with the
    /// recorder installed now and sets the identity-entry gauges from the enricher's table.
    pub fn new(enricher: Enricher, output_topic: impl Into<String>) -> Result<Self, CodecError> {
        let gauges = TableGauges::register();
        gauges.set_entries(&enricher.table().stats(), enricher.dns_entries());
        Ok(EnrichProcessor {
            enricher,
            events: AvroCodec::new()?,
            enriched: AvroCodec::new()?,
            output_topic: output_topic.into(),
            tally: EndpointTally::default(),
            counters: EndpointCounters::register(),
            gauges,
            updates: None,
            max_updates_per_flush: DEFAULT_MAX_UPDATES_PER_FLUSH,
            sources: Vec::new(),
        })
    }

    /// Applies the identity records of `receiver` between batches.
    pub fn with_updates(mut self, receiver: IdentityReceiver) -> Self {
        self.updates = Some(receiver);
        self
    }

    /// Applies at most `max` identity records per `flush_due` call (at least 1).
    pub fn with_max_updates_per_flush(mut self, max: usize) -> Self {
        self.max_updates_per_flush = max.max(1);
        self
    }

    /// Counts `source` among those that must be bootstrapped before
    /// [`EnrichProcessor::identity_ready`] says so.
    pub fn with_source_readiness(mut self, source: IdentityReadiness) -> Self {
        self.sources.push(source);
        self
    }

    /// Identity records sent but not applied yet.
    pub fn pending_updates(&self) -> usize {
        self.updates.as_ref().map_or(0, |r| r.len())
    }

    /// True when every source has sent its initial state and nothing is pending: the table
    /// is as complete as the sources can make it (for `/readyz`).
    pub fn identity_ready(&self) -> bool {
        self.sources.iter().all(IdentityReadiness::is_ready) && self.pending_updates() == 0
    }

    /// Applies up to `max` pending identity records; returns how many. Never waits.
    pub fn apply_updates(&mut self, max: usize) -> usize {
        let Some(receiver) = self.updates.as_mut() else {
            return 0;
        };
        let mut applied = 0;
        while applied < max {
            match receiver.try_recv() {
                Ok(record) => {
                    self.enricher.table_mut().apply(&record);
                    applied += 1;
                }
                // Empty, or every sender gone (sources stopped): the table stays as it is.
                Err(_) => break,
            }
        }
        applied
    }

    /// The enricher (and through it the identity table) in use.
    pub fn enricher(&self) -> &Enricher {
        &self.enricher
    }

    /// The enricher, to apply identity directly (tests, in-process sources).
    pub fn enricher_mut(&mut self) -> &mut Enricher {
        &mut self.enricher
    }

    /// Endpoints counted since the last flush to the metrics.
    pub fn pending_tally(&self) -> &EndpointTally {
        &self.tally
    }

    fn flush_tally(&mut self) {
        self.counters.add(&mut self.tally);
        self.enricher.flush_cluster_counts();
    }
}

impl Processor for EnrichProcessor {
    fn process(&mut self, input: &Input<'_>, out: &mut Outputs) -> Result<(), Rejection> {
        let Some(payload) = input.payload else {
            return Err(Rejection::new(
                MISSING_PAYLOAD,
                "record has no value (tombstone); expected an Avro FlowEvent",
            ));
        };
        // An EnrichedFlow is its FlowEvent followed by two Endpoints: the event's own bytes
        // are copied when they are in our schema, and re-encoded when an older writer's.
        let mut bytes = Vec::with_capacity(payload.len() + ENRICHED_EXTRA_BYTES);
        self.enriched.encode_header(&mut bytes);
        let own_datum = self.events.own_datum(payload);
        if let Some(datum) = own_datum {
            bytes.extend_from_slice(datum);
            // The common flow (each end a table hit or a plain outside address, nothing to
            // learn) is enriched without decoding it: its datum is checked and the
            // endpoints appended.
            if let Some([src, dst]) = self.enricher.enrich_fast_into(datum, &mut bytes) {
                self.tally.record(FlowSide::Src, src);
                self.tally.record(FlowSide::Dst, dst);
                out.send(&self.output_topic, input.key.map(<[u8]>::to_vec), bytes);
                return Ok(());
            }
        }
        let event = self
            .events
            .decode(payload)
            .map_err(|e| Rejection::new(MALFORMED_AVRO, e.to_string()))?;
        if own_datum.is_none() {
            event.write_avro(&mut bytes);
        }
        let [src, dst] = self.enricher.enrich_into(&event, &mut bytes);
        self.tally.record(FlowSide::Src, src);
        self.tally.record(FlowSide::Dst, dst);
        out.send(&self.output_topic, input.key.map(<[u8]>::to_vec), bytes);
        Ok(())
    }

    fn flush_due(
        &mut self,
        now: SystemTime,
        _out: &mut Outputs,
    ) -> impl Future<Output = Result<(), ProcessorError>> + Send {
        // Called after every batch: the batch's counts go to the counters in one step.
        self.flush_tally();
        let applied = self.apply_updates(self.max_updates_per_flush);
        let pruned = self.enricher.prune(now);
        if applied > 0 || pruned > 0 {
            self.gauges
                .set_entries(&self.enricher.table().stats(), self.enricher.dns_entries());
        }
        self.gauges
            .add_updates(applied as u64, pruned, self.pending_updates());
        std::future::ready(Ok(()))
    }

    fn on_shutdown(
        &mut self,
        _out: &mut Outputs,
    ) -> impl Future<Output = Result<(), ProcessorError>> + Send {
        self.flush_tally();
        std::future::ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::pin::pin;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Waker};

    use flowlake_schemas::{EndpointKind, EnrichmentStatus};
    use metrics::{
        Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };

    use super::*;
    use crate::test_support::table;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const SNAPSHOT: &str = r#"{"kind": "List", "items": [
        {"kind": "Pod", "metadata": {"name": "web-0", "namespace": "shop",
         "ownerReferences": [{"kind": "StatefulSet", "name": "web", "controller": true}]},
         "status": {"podIP": "10.1.0.5"}}]}"#;

    /// Counters and gauges by `name{label=value,…}`, labels in registration order.
    #[derive(Default)]
    struct TestRecorder {
        counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
        gauges: Mutex<HashMap<String, Arc<AtomicU64>>>,
    }

    fn series(key: &Key) -> String {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        format!("{}{{{}}}", key.name(), labels.join(","))
    }

    impl TestRecorder {
        fn value(&self, series: &str) -> u64 {
            let counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
            counters
                .get(series)
                .map_or(0, |c| c.load(Ordering::Relaxed))
        }

        fn gauge(&self, series: &str) -> Option<f64> {
            let gauges = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
            // An `AtomicU64` gauge holds the f64's bits.
            gauges
                .get(series)
                .map(|g| f64::from_bits(g.load(Ordering::Relaxed)))
        }
    }

    impl Recorder for TestRecorder {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
            Counter::from_arc(Arc::clone(counters.entry(series(key)).or_default()))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            let mut gauges = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
            Gauge::from_arc(Arc::clone(gauges.entry(series(key)).or_default()))
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    fn processor() -> Result<EnrichProcessor, Box<dyn std::error::Error>> {
        let enricher = Enricher::new(Arc::new(table("prod", SNAPSHOT)?));
        Ok(EnrichProcessor::new(enricher, "flows.enriched")?)
    }

    fn event(src: &str, dst: &str) -> Result<FlowEvent, Box<dyn std::error::Error>> {
        Ok(FlowEvent {
            event_id: "e1".into(),
            cluster_id: "prod".into(),
            source_format: "hubble".into(),
            src_ip: Some(src.parse()?),
            dst_ip: Some(dst.parse()?),
            ..FlowEvent::default()
        })
    }

    /// Runs a future that completes without waiting (the hooks here do).
    fn complete<T>(future: impl Future<Output = T>) -> Option<T> {
        match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(value) => Some(value),
            Poll::Pending => None,
        }
    }

    #[test]
    fn enriches_and_keeps_the_key() -> TestResult {
        let mut processor = processor()?;
        let input_event = event("10.1.0.5", "8.8.8.8")?;
        let payload = AvroCodec::<FlowEvent>::new()?.encode(&input_event);
        let mut input = Input::from_payload("flows.events", 3, 42, &payload);
        input.key = Some(b"flow-key");
        let mut out = Outputs::default();
        out.set_current_origin(Some(input.origin()));

        processor
            .process(&input, &mut out)
            .map_err(|r| r.to_string())?;

        let records = out.take();
        assert_eq!(records.len(), 1);
        let record = &records[0];
        assert_eq!(&*record.topic, "flows.enriched");
        assert_eq!(record.key.as_deref(), Some(&b"flow-key"[..]));
        assert_eq!(record.origin, Some(input.origin()));
        let enriched = AvroCodec::<EnrichedFlow>::new()?.decode(&record.payload)?;
        assert_eq!(enriched.flow, input_event);
        assert_eq!(enriched.src.kind, EndpointKind::Pod);
        assert_eq!(enriched.src.workload_kind.as_deref(), Some("StatefulSet"));
        assert_eq!(enriched.src.status, EnrichmentStatus::Hit);
        assert_eq!(enriched.dst.kind, EndpointKind::ExternalPublic);
        assert_eq!(enriched.dst.status, EnrichmentStatus::Miss);

        // No key in, no key out.
        let unkeyed = Input::from_payload("flows.events", 3, 43, &payload);
        processor
            .process(&unkeyed, &mut out)
            .map_err(|r| r.to_string())?;
        assert_eq!(out.take()[0].key, None);
        Ok(())
    }

    #[test]
    fn bad_records_are_rejected_with_their_reason() -> TestResult {
        let mut processor = processor()?;
        let mut out = Outputs::default();

        let garbage = Input::from_payload("flows.events", 0, 7, b"{\"not\": \"avro\"}");
        let rejection = processor
            .process(&garbage, &mut out)
            .err()
            .ok_or("garbage accepted")?;
        assert_eq!(rejection.class, MALFORMED_AVRO);
        assert_eq!(
            rejection.message,
            "not Avro: first byte 0x7b is neither single-object encoding (C3 01) nor Confluent framing (00)"
        );

        // Valid framing, truncated datum.
        let payload = AvroCodec::<FlowEvent>::new()?.encode(&event("10.1.0.5", "8.8.8.8")?);
        let truncated = Input::from_payload("flows.events", 0, 8, &payload[..payload.len() - 3]);
        let rejection = processor
            .process(&truncated, &mut out)
            .err()
            .ok_or("truncated accepted")?;
        assert_eq!(rejection.class, MALFORMED_AVRO);
        assert!(
            rejection
                .message
                .starts_with("malformed flowlake.FlowEvent datum"),
            "{}",
            rejection.message
        );

        let mut tombstone = Input::from_payload("flows.events", 0, 9, b"");
        tombstone.payload = None;
        let rejection = processor
            .process(&tombstone, &mut out)
            .err()
            .ok_or("tombstone accepted")?;
        assert_eq!(rejection.class, MISSING_PAYLOAD);

        assert!(out.is_empty());
        assert!(
            processor.pending_tally().is_empty(),
            "rejected records are not counted as endpoints"
        );
        Ok(())
    }

    #[test]
    fn endpoint_counts_reach_the_counters_once_per_batch() -> TestResult {
        let recorder = TestRecorder::default();
        let mut processor = metrics::with_local_recorder(&recorder, processor)?;
        let codec = AvroCodec::<FlowEvent>::new()?;
        let mut out = Outputs::default();
        for (src, dst) in [
            ("10.1.0.5", "8.8.8.8"),
            ("10.1.0.5", "10.9.9.9"),
            ("10.2.2.2", "10.1.0.5"),
        ] {
            let payload = codec.encode(&event(src, dst)?);
            let input = Input::from_payload("flows.events", 0, 0, &payload);
            // A cluster's own series register on its first flow, with the recorder then
            // installed (the global one in the binary).
            metrics::with_local_recorder(&recorder, || processor.process(&input, &mut out))
                .map_err(|r| r.to_string())?;
        }
        let src_hit = "flowlake_enrich_endpoints_total{side=src,status=hit}";
        let src_miss = "flowlake_enrich_endpoints_total{side=src,status=miss}";
        let dst_hit = "flowlake_enrich_endpoints_total{side=dst,status=hit}";
        let dst_miss = "flowlake_enrich_endpoints_total{side=dst,status=miss}";
        // Nothing reaches the counters before the batch ends...
        assert_eq!(recorder.value(src_hit), 0);

        let flushed = complete(processor.flush_due(SystemTime::now(), &mut out))
            .ok_or("flush_due pending")?;
        assert!(flushed.is_ok());
        assert_eq!(recorder.value(src_hit), 2);
        assert_eq!(recorder.value(src_miss), 1);
        assert_eq!(recorder.value(dst_hit), 1);
        assert_eq!(recorder.value(dst_miss), 2);
        assert_eq!(
            recorder.value("flowlake_enrich_endpoints_total{side=dst,status=hint}"),
            0
        );
        // ...and a second flush adds nothing twice.
        let flushed = complete(processor.flush_due(SystemTime::now(), &mut out))
            .ok_or("flush_due pending")?;
        assert!(flushed.is_ok());
        assert_eq!(recorder.value(src_hit), 2);
        // The table's size is published when the processor is built.
        let entries = "flowlake_enrich_identity_entries";
        assert_eq!(recorder.gauge(&format!("{entries}{{kind=pod}}")), Some(1.0));
        assert_eq!(
            recorder.gauge(&format!("{entries}{{kind=service}}")),
            Some(0.0)
        );
        // All eight series exist from the start, so dashboards see zeros, not gaps.
        let registered = recorder
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .filter(|k| k.starts_with("flowlake_enrich_endpoints_total{"))
            .count();
        assert_eq!(registered, 8);
        // Per cluster, once the cluster's first flow is seen: prod had 3 hits, 3 misses.
        assert_eq!(
            recorder.value("flowlake_enrich_cluster_endpoints_total{cluster=prod,status=hit}"),
            3
        );
        assert_eq!(
            recorder.value("flowlake_enrich_cluster_endpoints_total{cluster=prod,status=miss}"),
            3
        );
        Ok(())
    }

    #[test]
    fn identity_updates_are_applied_between_batches_a_bounded_number_at_a_time() -> TestResult {
        use flowlake_schemas::{IdentityKind, IdentityRecord};

        use flowlake_identity::{IdentityReadiness, identity_channel};

        let (sender, receiver) = identity_channel(8);
        let source = IdentityReadiness::new();
        let mut processor = processor()?
            .with_updates(receiver)
            .with_max_updates_per_flush(2)
            .with_source_readiness(source.clone());
        for i in 0..3u8 {
            sender.try_send(IdentityRecord {
                cluster_id: "prod".into(),
                kind: IdentityKind::Pod,
                uid: format!("uid-{i}"),
                namespace: Some("shop".into()),
                name: format!("api-{i}"),
                ips: vec![std::net::IpAddr::from([10, 2, 0, i]).into()],
                ..IdentityRecord::default()
            })?;
        }
        source.set(true);
        assert_eq!(processor.pending_updates(), 3);
        assert!(!processor.identity_ready(), "updates are still pending");

        let codec = AvroCodec::<FlowEvent>::new()?;
        let payload = codec.encode(&event("10.2.0.2", "10.2.0.0")?);
        let input = Input::from_payload("flows.events", 0, 0, &payload);
        let enriched_dst_status =
            |p: &mut EnrichProcessor| -> Result<_, Box<dyn std::error::Error>> {
                let mut out = Outputs::default();
                p.process(&input, &mut out).map_err(|r| r.to_string())?;
                let record = out.take().pop().ok_or("no output")?;
                let flow = AvroCodec::<EnrichedFlow>::new()?.decode(&record.payload)?;
                Ok((flow.src.status, flow.dst.status))
            };
        // Nothing applied before the first flush.
        assert_eq!(
            enriched_dst_status(&mut processor)?,
            (EnrichmentStatus::Miss, EnrichmentStatus::Miss)
        );
        let mut out = Outputs::default();
        complete(processor.flush_due(SystemTime::now(), &mut out)).ok_or("pending")??;
        // Two of three: api-0 and api-1 known, api-2 not yet.
        assert_eq!(processor.pending_updates(), 1);
        assert_eq!(
            enriched_dst_status(&mut processor)?,
            (EnrichmentStatus::Miss, EnrichmentStatus::Hit)
        );
        complete(processor.flush_due(SystemTime::now(), &mut out)).ok_or("pending")??;
        assert_eq!(processor.pending_updates(), 0);
        assert!(processor.identity_ready());
        assert_eq!(
            enriched_dst_status(&mut processor)?,
            (EnrichmentStatus::Hit, EnrichmentStatus::Hit)
        );
        Ok(())
    }
}
