//! The aggregate stage as a runtime [`Processor`].
//!
//! Checkpoint protocol: every input partition has its own [`PartitionWindows`], whose
//! whole state goes into the partition's checkpoint ([`Processor::checkpoint_state`]), so
//! a new owner — after a crash, a rebalance or a rolling restart — resumes exactly where
//! the checkpoint was taken instead of replaying open windows. Emissions depend on the
//! input only (see [`crate::windows`]): edges carry the coordinates (input topic,
//! partition, trigger offset, sequence), and a replay after a crash re-produces the same
//! edges with the same coordinates, which the sink drops.
//!
//! Business counters move once per edge: only in [`Processor::on_committed`], after the
//! edges and the checkpoint that covers them are acknowledged. An edge emitted by an
//! instance that died before its checkpoint is emitted again by the next owner and counted
//! there, once.
//!
//! Shutdown emits nothing: the open windows are in the checkpoint written at the drain. A
//! bounded run whose input is finished calls [`AggregateProcessor::drain_all`] instead.

use std::future::Future;
use std::time::SystemTime;

use flowlake_runtime::{
    ConfigError, Input, Origin, Outputs, Processor, ProcessorError, Rejection, TopicPartition,
};
use flowlake_schemas::{AvroCodec, CodecError, EnrichedFlow, FlowEdge};

use crate::edge::{kafka_key, to_flow_edge};
use crate::metrics::AggregateMetrics;
use crate::read::read_folded;
use crate::settings::AggregateSettings;
use crate::windows::{Emission, Fold, PartitionWindows, WindowParams, system_time_micros};

/// Rejection class of a record that is not a decodable `EnrichedFlow`.
pub const MALFORMED_AVRO: &str = "malformed_avro";
/// Rejection class of a flow starting more than `max_future_skew` after its record.
pub const FUTURE_EVENT: &str = "future_event";

/// Why the processor could not be built. Every variant is fatal: it is a start-up problem.
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    /// The settings failed validation.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A built-in Avro schema could not be loaded (a build defect).
    #[error("cannot build the Avro codecs: {0}")]
    Codec(#[from] CodecError),
}

/// Folds `EnrichedFlow`s from any number of input partitions into `FlowEdge`s.
pub struct AggregateProcessor {
    params: WindowParams,
    output_topic: String,
    decoder: AvroCodec<EnrichedFlow>,
    encoder: AvroCodec<FlowEdge>,
    /// Window state per input partition, sorted by partition so that every flush walks
    /// them in the same order. A consumer owns a handful of partitions: a linear lookup
    /// avoids allocating a map key per record.
    partitions: Vec<(TopicPartition, PartitionWindows)>,
    /// Edges produced but not yet covered by an acknowledged checkpoint: counted in the
    /// business metrics at [`Processor::on_committed`].
    uncounted: Vec<FlowEdge>,
    metrics: AggregateMetrics,
    /// Processing time source (idleness, the watermark-lag gauge).
    clock: fn() -> SystemTime,
}

impl std::fmt::Debug for AggregateProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateProcessor")
            .field("params", &self.params)
            .field("output_topic", &self.output_topic)
            .field("partitions", &self.partitions.len())
            .finish_non_exhaustive()
    }
}

impl AggregateProcessor {
    /// A processor producing edges to `output_topic`. Metric handles bind to the recorder
    /// installed at this moment, so install the exporter first.
    pub fn new(
        settings: AggregateSettings,
        output_topic: impl Into<String>,
    ) -> Result<Self, AggregateError> {
        settings.validate()?;
        Ok(AggregateProcessor {
            params: WindowParams::from(&settings),
            output_topic: output_topic.into(),
            decoder: AvroCodec::new()?,
            encoder: AvroCodec::new()?,
            partitions: Vec::new(),
            uncounted: Vec::new(),
            metrics: AggregateMetrics::with_max_series(settings.metric_max_series),
            clock: SystemTime::now,
        })
    }

    /// Replaces the processing-time clock (tests; replays of recorded input).
    pub fn with_clock(mut self, clock: fn() -> SystemTime) -> Self {
        self.clock = clock;
        self
    }

    /// Emits what is due at `now`: windows sealed by the input, and idle partitions'
    /// windows (see [`PartitionWindows::close_if_idle`]). The synchronous body of
    /// [`Processor::flush_due`].
    pub fn emit_due(&mut self, now: SystemTime, out: &mut Outputs) -> Result<(), ProcessorError> {
        self.emit(out, |tp, windows| {
            let closed = windows.close_if_idle(now);
            if closed > 0 {
                tracing::debug!(topic = %tp.topic, partition = tp.partition, windows = closed, "partition idle, closing its windows");
            }
        })?;
        self.update_gauges(now);
        Ok(())
    }

    /// Closes and emits every open window of every partition. For bounded runs (the demo)
    /// whose input is finished; a long-running stage never calls it (see the module doc).
    /// What it emits is counted at once: such a run has no checkpoint to wait for.
    pub fn drain_all(&mut self, out: &mut Outputs) -> Result<(), ProcessorError> {
        self.emit(out, |_, windows| {
            windows.close_all();
        })?;
        self.on_committed();
        self.update_gauges((self.clock)());
        Ok(())
    }

    /// Runs `close` on every partition, then produces what each has due.
    fn emit(
        &mut self,
        out: &mut Outputs,
        mut close: impl FnMut(&TopicPartition, &mut PartitionWindows),
    ) -> Result<(), ProcessorError> {
        for (tp, windows) in &mut self.partitions {
            close(tp, windows);
            let due = windows.take_due();
            produce(
                &self.encoder,
                &mut self.uncounted,
                &self.output_topic,
                tp,
                due,
                out,
            );
        }
        Ok(())
    }

    fn update_gauges(&self, now: SystemTime) {
        let open = self
            .partitions
            .iter()
            .map(|(_, windows)| windows.open_windows())
            .sum();
        self.metrics.set_open_windows(open);
        let oldest = self
            .partitions
            .iter()
            .filter_map(|(_, windows)| windows.watermark())
            .min();
        let lag_micros = oldest.map_or(0, |watermark| {
            system_time_micros(now).saturating_sub(watermark.as_micros())
        });
        // Seconds as f64: exact to the microsecond for any lag below 285 years.
        self.metrics.set_watermark_lag(lag_micros as f64 / 1e6);
    }

    fn partition_index(&self, topic: &str, partition: i32) -> Option<usize> {
        self.partitions
            .iter()
            .position(|(tp, _)| tp.partition == partition && tp.topic == topic)
    }

    fn insert_partition(&mut self, tp: TopicPartition, windows: PartitionWindows) -> usize {
        if let Some(index) = self.partition_index(&tp.topic, tp.partition) {
            self.partitions[index].1 = windows;
            return index;
        }
        let at = self.partitions.partition_point(|(other, _)| *other < tp);
        self.partitions.insert(at, (tp, windows));
        at
    }

    fn partition_mut(&mut self, topic: &str, partition: i32) -> &mut PartitionWindows {
        let index = match self.partition_index(topic, partition) {
            Some(index) => index,
            None => {
                let tp = TopicPartition {
                    topic: topic.to_owned(),
                    partition,
                };
                self.insert_partition(tp, PartitionWindows::new(self.params))
            }
        };
        &mut self.partitions[index].1
    }
}

/// Encodes and sends one partition's sealed emissions in seal order, each edge with its
/// coordinates (trigger offset, sequence).
fn produce(
    encoder: &AvroCodec<FlowEdge>,
    uncounted: &mut Vec<FlowEdge>,
    output_topic: &str,
    tp: &TopicPartition,
    due: Vec<Emission>,
    out: &mut Outputs,
) {
    let input_topic: std::sync::Arc<str> = std::sync::Arc::from(tp.topic.as_str());
    for emission in due {
        let window = (emission.window_start, emission.window_end);
        let mut seq = emission.first_seq;
        for (key, value) in &emission.edges {
            let edge = to_flow_edge(key, value, window, emission.revision);
            let payload = encoder.encode(&edge);
            let origin = Origin {
                topic: std::sync::Arc::clone(&input_topic),
                partition: tp.partition,
                offset: emission.trigger_offset,
                seq,
            };
            seq = seq.saturating_add(1);
            out.send_with_origin(output_topic, Some(kafka_key(&edge)), payload, Some(origin));
            uncounted.push(edge);
        }
        tracing::debug!(
            topic = %tp.topic,
            partition = tp.partition,
            window_start = %emission.window_start,
            revision = emission.revision,
            trigger_offset = emission.trigger_offset,
            edges = emission.edges.len(),
            "window emitted"
        );
    }
}

impl Processor for AggregateProcessor {
    fn process(&mut self, input: &Input<'_>, _out: &mut Outputs) -> Result<(), Rejection> {
        let payload = input
            .payload
            .ok_or_else(|| Rejection::new(MALFORMED_AVRO, "record has no value (tombstone)"))?;
        let malformed = |e: CodecError| Rejection::new(MALFORMED_AVRO, e.to_string());
        let now = (self.clock)();
        let record_micros = input.timestamp_millis.map(|ms| ms.saturating_mul(1000));
        // Written in our own schema (every flowlake enrich writes it): read only what the
        // fold keeps, borrowed from the message. Another writer schema: decode, resolving.
        let fold = match self.decoder.own_datum(payload) {
            Some(datum) => {
                let folded = read_folded(datum).map_err(malformed)?;
                self.partition_mut(input.topic, input.partition).fold_split(
                    folded,
                    input.offset,
                    record_micros,
                    now,
                )
            }
            None => {
                let flow = self.decoder.decode(payload).map_err(malformed)?;
                self.partition_mut(input.topic, input.partition).fold(
                    flow,
                    input.offset,
                    record_micros,
                    now,
                )
            }
        };
        match fold {
            Ok(Fold::OnTime) => Ok(()),
            Ok(Fold::Late) => {
                self.metrics.late_records(1);
                Ok(())
            }
            Err(future) => Err(Rejection::new(FUTURE_EVENT, future.to_string())),
        }
    }

    fn flush_due(
        &mut self,
        now: SystemTime,
        out: &mut Outputs,
    ) -> impl Future<Output = Result<(), ProcessorError>> + Send {
        // The work is CPU-only and short: done here, handed over as a ready future.
        std::future::ready(self.emit_due(now, out))
    }

    /// Emits nothing: see the module doc.
    fn on_shutdown(
        &mut self,
        _out: &mut Outputs,
    ) -> impl Future<Output = Result<(), ProcessorError>> + Send {
        std::future::ready(Ok(()))
    }

    fn on_revoked(&mut self, partitions: &[TopicPartition]) {
        self.partitions.retain(|(tp, _)| !partitions.contains(tp));
        tracing::info!(
            count = partitions.len(),
            "dropped the window state of revoked partitions (their next owner restores it from the checkpoint)"
        );
        self.update_gauges((self.clock)());
    }

    fn checkpoint_state(&self, partition: &TopicPartition) -> Option<String> {
        let (_, windows) = self.partitions.iter().find(|(tp, _)| tp == partition)?;
        // Serializing plain data into a String cannot fail.
        serde_json::to_string(&windows.snapshot()).ok()
    }

    fn restore(
        &mut self,
        partition: &TopicPartition,
        state: Option<&str>,
    ) -> Result<(), ProcessorError> {
        let windows = match state {
            None => PartitionWindows::new(self.params),
            Some(json) => {
                let snapshot = serde_json::from_str(json).map_err(|e| {
                    ProcessorError::Fatal(format!(
                        "the checkpoint of {}/{} is not aggregate window state this version reads: {e}; \
                         delete its records from the checkpoint topic to start the partition from its committed offset",
                        partition.topic, partition.partition
                    ))
                })?;
                PartitionWindows::restore(self.params, snapshot, (self.clock)())
            }
        };
        self.insert_partition(partition.clone(), windows);
        self.update_gauges((self.clock)());
        Ok(())
    }

    fn on_end_of_partition(&mut self, partition: &TopicPartition) {
        if let Some(index) = self.partition_index(&partition.topic, partition.partition) {
            self.partitions[index].1.mark_caught_up();
        }
    }

    /// Moves the business counters: only after the runtime confirmed ownership past the
    /// checkpoint, so a stale instance never counts what the new owner counts.
    fn acts_on_commit(&self) -> bool {
        true
    }

    /// A recorded idle close seals before the next record or flush: it must be in a
    /// checkpoint first.
    fn awaits_checkpoint(&self) -> bool {
        self.partitions
            .iter()
            .any(|(_, windows)| windows.idle_pending())
    }

    fn on_committed(&mut self) {
        for edge in self.uncounted.drain(..) {
            self.metrics.edge_emitted(&edge);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::error::Error;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    use std::time::{Duration, UNIX_EPOCH};

    use flowlake_runtime::OutputRecord;
    use flowlake_schemas::{Action, Timestamp, samples};
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use proptest::prelude::*;

    use super::*;
    use crate::metrics::{DENIED_FLOWS, EDGES_EMITTED, EXTERNAL_EGRESS_BYTES, LATE_RECORDS};

    type TestResult = Result<(), Box<dyn Error>>;

    const TOPIC: &str = "flows.enriched";
    const OUT: &str = "flows.edges";
    const SECOND: i64 = 1_000_000;
    const MINUTE: i64 = 60 * SECOND;
    /// An epoch-aligned minute in 2023.
    const T0: i64 = 1_700_000_040 * SECOND;

    /// The processing clock of these tests: a day after T0, so no flow is in the future
    /// and flushes at `clock()` never find a partition idle.
    fn clock() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_040 + 86_400)
    }

    fn processor() -> Result<AggregateProcessor, AggregateError> {
        Ok(AggregateProcessor::new(AggregateSettings::default(), OUT)?.with_clock(clock))
    }

    fn flow(start: i64, pod: &str, action: Action) -> EnrichedFlow {
        let mut flow = samples::enriched_flow();
        flow.flow.start_time = Timestamp::from_micros(start);
        flow.flow.end_time = Timestamp::from_micros(start + SECOND);
        flow.flow.action = action;
        flow.src.name = Some(pod.to_owned());
        flow.src.pod_uid = Some(format!("uid-{pod}"));
        flow
    }

    fn feed(
        processor: &mut AggregateProcessor,
        partition: i32,
        offset: i64,
        flow: &EnrichedFlow,
    ) -> Result<(), Box<dyn Error>> {
        let payload = AvroCodec::<EnrichedFlow>::new()?.encode(flow);
        let mut out = Outputs::default();
        processor
            .process(
                &Input::from_payload(TOPIC, partition, offset, &payload),
                &mut out,
            )
            .map_err(|rejection| rejection.to_string())?;
        assert!(out.is_empty(), "process never produces directly");
        Ok(())
    }

    fn decode(records: &[OutputRecord]) -> Result<Vec<FlowEdge>, CodecError> {
        let codec = AvroCodec::<FlowEdge>::new()?;
        records.iter().map(|r| codec.decode(&r.payload)).collect()
    }

    fn tp(partition: i32) -> TopicPartition {
        TopicPartition {
            topic: TOPIC.to_owned(),
            partition,
        }
    }

    /// Polls a future that is ready at once (the processor's futures are).
    fn ready<F: Future>(future: F) -> Option<F::Output> {
        match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        }
    }

    #[test]
    fn closed_windows_are_produced_with_origin_and_key() -> TestResult {
        let mut processor = processor()?;
        feed(
            &mut processor,
            3,
            100,
            &flow(T0 + SECOND, "a", Action::Deny),
        )?;
        feed(
            &mut processor,
            3,
            101,
            &flow(T0 + 2 * SECOND, "b", Action::Deny),
        )?;
        feed(
            &mut processor,
            3,
            102,
            &flow(T0 + 3 * SECOND, "a", Action::Deny),
        )?;
        let mut out = Outputs::default();
        ready(processor.flush_due(clock(), &mut out)).transpose()?;
        assert!(out.is_empty(), "window still open");

        // The watermark passes the window's end: it closes while folding offset 103.
        feed(
            &mut processor,
            3,
            103,
            &flow(T0 + MINUTE + 30 * SECOND, "a", Action::Deny),
        )?;
        ready(processor.flush_due(clock(), &mut out)).transpose()?;
        let records = out.take();
        assert_eq!(records.len(), 1);
        assert_eq!(&*records[0].topic, OUT);
        assert_eq!(
            records[0].key.as_deref(),
            Some(&b"prod-eu-1/shop/checkout"[..])
        );
        assert_eq!(
            records[0].origin,
            Some(Origin {
                topic: TOPIC.into(),
                partition: 3,
                offset: 103,
                seq: 0
            })
        );
        let edges = decode(&records)?;
        let edge = &edges[0];
        assert_eq!(
            (edge.window_start.as_micros(), edge.window_end.as_micros()),
            (T0, T0 + MINUTE)
        );
        assert_eq!(edge.revision, 0);
        assert_eq!((edge.flows, edge.bytes_out, edge.packets_out), (3, 222, 3));
        assert_eq!(
            (edge.first_seen.as_micros(), edge.last_seen.as_micros()),
            (T0 + SECOND, T0 + 4 * SECOND)
        );
        assert_eq!(edge.distinct_src_pods, 2);
        assert_eq!(edge.dst_workload.as_deref(), Some("stripe"));
        Ok(())
    }

    #[test]
    fn bad_and_future_records_are_rejected() -> TestResult {
        let mut processor = processor()?;
        let mut out = Outputs::default();
        let rejection =
            processor.process(&Input::from_payload(TOPIC, 0, 0, b"{\"json\":1}"), &mut out);
        assert_eq!(rejection.map_err(|r| r.class), Err(MALFORMED_AVRO));

        // Judged against the record's Kafka timestamp, not the processing clock.
        let written = system_time_micros(clock());
        let future = written + 10 * MINUTE + 1;
        let payload = AvroCodec::<EnrichedFlow>::new()?.encode(&flow(future, "a", Action::Allow));
        let record = Input {
            timestamp_millis: Some(written / 1000),
            ..Input::from_payload(TOPIC, 0, 1, &payload)
        };
        let rejection = processor.process(&record, &mut out);
        assert_eq!(rejection.map_err(|r| r.class), Err(FUTURE_EVENT));
        let later = Input {
            timestamp_millis: Some(written / 1000 + 60_000),
            ..Input::from_payload(TOPIC, 0, 2, &payload)
        };
        assert!(processor.process(&later, &mut out).is_ok());
        Ok(())
    }

    #[test]
    fn shutdown_emits_nothing_and_drain_emits_everything() -> TestResult {
        let mut processor = processor()?;
        feed(&mut processor, 0, 0, &flow(T0, "a", Action::Allow))?;
        feed(&mut processor, 1, 0, &flow(T0 + MINUTE, "a", Action::Allow))?;
        let mut out = Outputs::default();
        ready(processor.on_shutdown(&mut out)).transpose()?;
        assert!(out.is_empty());
        processor.drain_all(&mut out)?;
        let edges = decode(out.records())?;
        let windows: Vec<_> = edges
            .iter()
            .map(|e| (e.window_start.as_micros(), e.revision))
            .collect();
        assert_eq!(windows, vec![(T0, 0), (T0 + MINUTE, 0)]);
        Ok(())
    }

    #[test]
    fn idle_partitions_emit_on_flush() -> TestResult {
        let mut processor = processor()?;
        feed(&mut processor, 0, 7, &flow(T0, "a", Action::Allow))?;
        let mut out = Outputs::default();
        // Behind the end of the partition (a replay): never idle.
        processor.emit_due(clock() + Duration::from_secs(3600), &mut out)?;
        processor.emit_due(clock() + Duration::from_secs(3601), &mut out)?;
        assert!(out.is_empty());
        processor.on_end_of_partition(&tp(0));
        processor.emit_due(clock() + Duration::from_secs(29), &mut out)?;
        assert!(out.is_empty());
        assert!(!processor.awaits_checkpoint());
        // Decided at this flush (and checkpointed by the runtime, which the processor asks
        // for), taken at the next.
        processor.emit_due(clock() + Duration::from_secs(30), &mut out)?;
        assert!(out.is_empty());
        assert!(processor.awaits_checkpoint());
        assert!(
            processor
                .checkpoint_state(&tp(0))
                .is_some_and(|state| state.contains("\"idle_pending\":true"))
        );
        processor.emit_due(clock() + Duration::from_secs(31), &mut out)?;
        assert_eq!(decode(out.records())?.len(), 1);
        assert!(!processor.awaits_checkpoint());
        Ok(())
    }

    #[test]
    fn revocation_drops_only_the_revoked_partitions() -> TestResult {
        let mut processor = processor()?;
        feed(&mut processor, 0, 5, &flow(T0, "a", Action::Allow))?;
        feed(&mut processor, 1, 9, &flow(T0, "b", Action::Allow))?;
        let partition_0 = processor.checkpoint_state(&tp(0));
        processor.on_revoked(&[tp(0)]);
        assert_eq!(processor.checkpoint_state(&tp(0)), None);
        assert!(processor.checkpoint_state(&tp(1)).is_some());
        let mut out = Outputs::default();
        processor.drain_all(&mut out)?;
        let origins: Vec<_> = out
            .records()
            .iter()
            .filter_map(|r| r.origin.clone())
            .collect();
        assert_eq!(
            origins,
            vec![Origin {
                topic: TOPIC.into(),
                partition: 1,
                offset: 9,
                seq: 0
            }]
        );

        // Re-assigned later, the partition resumes from its checkpoint.
        processor.restore(&tp(0), partition_0.as_deref())?;
        let mut out = Outputs::default();
        processor.drain_all(&mut out)?;
        let edges = decode(out.records())?;
        assert_eq!(edges.iter().map(|e| e.flows).sum::<i64>(), 1);
        Ok(())
    }

    #[test]
    fn an_unreadable_checkpoint_stops_the_stage_naming_the_partition() -> TestResult {
        let mut processor = processor()?;
        let error = processor.restore(&tp(4), Some("{\"open\":17}"));
        let Err(ProcessorError::Fatal(message)) = error else {
            return Err(format!("expected a fatal error, got {error:?}").into());
        };
        assert!(message.contains("flows.enriched/4"), "{message}");
        Ok(())
    }

    #[test]
    fn counters_move_only_when_the_checkpoint_is_acknowledged() -> TestResult {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || -> TestResult {
            let mut processor = processor()?;
            let mut out = Outputs::default();
            feed(&mut processor, 0, 0, &flow(T0, "a", Action::Deny))?;
            feed(
                &mut processor,
                0,
                1,
                &flow(T0 + 2 * MINUTE, "a", Action::Deny),
            )?;
            processor.emit_due(clock(), &mut out)?;
            assert_eq!(decode(out.records())?.len(), 1);
            Ok(())
        })?;
        let snapshot = snapshotter.snapshot().into_vec();
        assert!(
            counter_values(&snapshot, DENIED_FLOWS).is_empty(),
            "counted before the checkpoint"
        );
        metrics::with_local_recorder(&recorder, || -> TestResult {
            let mut processor = processor()?;
            let mut out = Outputs::default();
            feed(&mut processor, 0, 0, &flow(T0, "a", Action::Deny))?;
            feed(
                &mut processor,
                0,
                1,
                &flow(T0 + 2 * MINUTE, "a", Action::Deny),
            )?;
            processor.emit_due(clock(), &mut out)?;
            processor.on_committed();
            // Nothing left to count twice.
            processor.on_committed();
            Ok(())
        })?;
        let snapshot = snapshotter.snapshot().into_vec();
        let counted: u64 = counter_values(&snapshot, DENIED_FLOWS)
            .iter()
            .map(|(_, c)| c)
            .sum();
        assert_eq!(counted, 1);
        Ok(())
    }

    #[test]
    fn late_flows_are_emitted_as_corrections_numbered_per_window() -> TestResult {
        let mut processor = processor()?;
        let mut out = Outputs::default();
        feed(&mut processor, 0, 0, &flow(T0, "a", Action::Allow))?;
        feed(
            &mut processor,
            0,
            1,
            &flow(T0 + 2 * MINUTE, "a", Action::Allow),
        )?;
        processor.emit_due(clock(), &mut out)?;
        feed(&mut processor, 0, 2, &flow(T0 + SECOND, "b", Action::Allow))?;
        processor.emit_due(clock(), &mut out)?;
        feed(
            &mut processor,
            0,
            3,
            &flow(T0 + 2 * SECOND, "c", Action::Allow),
        )?;
        processor.emit_due(clock(), &mut out)?;
        // The correction waits for the next seal (here the end of the input), whatever
        // the flushes in between.
        feed(
            &mut processor,
            0,
            4,
            &flow(T0 + 3 * MINUTE, "a", Action::Allow),
        )?;
        feed(
            &mut processor,
            0,
            5,
            &flow(T0 + 3 * SECOND, "d", Action::Allow),
        )?;
        processor.drain_all(&mut out)?;
        let edges = decode(out.records())?;
        let rows: Vec<_> = edges
            .iter()
            .map(|e| (e.window_start.as_micros(), e.revision, e.flows))
            .collect();
        assert_eq!(
            rows,
            vec![
                (T0, 0, 1),
                (T0, 1, 2),
                (T0 + 2 * MINUTE, 0, 1),
                (T0 + 3 * MINUTE, 0, 1),
                (T0, 2, 1)
            ]
        );
        let coordinates: Vec<_> = out
            .records()
            .iter()
            .filter_map(|r| r.origin.as_ref().map(|o| (o.offset, o.seq)))
            .collect();
        assert_eq!(coordinates, vec![(1, 0), (4, 0), (5, 0), (5, 1), (5, 2)]);
        Ok(())
    }

    /// A fixed mixed input over two partitions: on-time, late and idle-closed windows.
    fn scripted_run() -> Result<Vec<OutputRecord>, Box<dyn Error>> {
        let mut processor = processor()?;
        let mut out = Outputs::default();
        let pods = ["a", "b", "c", "d"];
        for i in 0..40_i64 {
            let action = if i % 3 == 0 {
                Action::Deny
            } else {
                Action::Allow
            };
            let mut flow = flow(T0 + i * 7 * SECOND, pods[(i % 4) as usize], action);
            flow.flow.dst_port = Some(443 + (i % 2) as i32);
            feed(&mut processor, (i % 2) as i32, i, &flow)?;
            if i % 5 == 0 {
                processor.emit_due(clock(), &mut out)?;
            }
        }
        feed(&mut processor, 0, 40, &flow(T0, "late", Action::Deny))?;
        processor.emit_due(clock(), &mut out)?;
        processor.emit_due(clock() + Duration::from_secs(60), &mut out)?;
        Ok(out.take())
    }

    #[test]
    fn the_same_input_gives_the_same_bytes() -> TestResult {
        let first = scripted_run()?;
        let second = scripted_run()?;
        assert!(first.len() > 10, "{} records", first.len());
        assert_eq!(first, second);
        Ok(())
    }

    type Snapshot = Vec<(
        metrics_util::CompositeKey,
        Option<metrics::Unit>,
        Option<metrics::SharedString>,
        DebugValue,
    )>;

    /// (labels, value) of every counter series called `name`.
    fn counter_values(snapshot: &Snapshot, name: &str) -> Vec<(Vec<(String, String)>, u64)> {
        snapshot
            .iter()
            .filter(|(key, ..)| key.key().name() == name)
            .filter_map(|(key, _, _, value)| match *value {
                DebugValue::Counter(count) => Some((
                    key.key()
                        .labels()
                        .map(|l| (l.key().to_owned(), l.value().to_owned()))
                        .collect(),
                    count,
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn business_counters_equal_the_flows_in_emitted_edges() -> TestResult {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let denied_fed =
            metrics::with_local_recorder(&recorder, || -> Result<u64, Box<dyn Error>> {
                let mut processor = processor()?;
                let mut out = Outputs::default();
                let mut denied = 0;
                for i in 0..30_i64 {
                    let action = if i % 3 == 0 {
                        Action::Allow
                    } else {
                        Action::Deny
                    };
                    denied += u64::from(action == Action::Deny);
                    feed(
                        &mut processor,
                        (i % 2) as i32,
                        i,
                        &flow(T0 + i * 5 * SECOND, "a", action),
                    )?;
                }
                processor.emit_due(clock(), &mut out)?;
                // A late denied flow: counted when its correction is emitted.
                feed(&mut processor, 0, 30, &flow(T0, "a", Action::Deny))?;
                denied += 1;
                processor.drain_all(&mut out)?;
                let emitted: i64 = decode(out.records())?
                    .iter()
                    .filter(|e| e.action == Action::Deny)
                    .map(|e| e.flows)
                    .sum();
                assert_eq!(u64::try_from(emitted)?, denied);
                Ok(denied)
            })?;
        // A snapshot resets the debugging recorder's counters: take exactly one.
        let snapshot = snapshotter.snapshot().into_vec();
        let denied_series = counter_values(&snapshot, DENIED_FLOWS);
        let counted: u64 = denied_series.iter().map(|(_, count)| count).sum();
        assert_eq!(counted, denied_fed);
        let labels: BTreeMap<_, _> = denied_series[0].0.iter().cloned().collect();
        assert_eq!(
            labels.get("src_workload").map(String::as_str),
            Some("checkout")
        );
        assert_eq!(
            labels.get("policy").map(String::as_str),
            Some("security/shop/deny-egress")
        );

        assert_eq!(counter_values(&snapshot, LATE_RECORDS), vec![(vec![], 1)]);
        let corrections: u64 = counter_values(&snapshot, EDGES_EMITTED)
            .iter()
            .filter(|(labels, _)| {
                labels.contains(&("revision_kind".to_owned(), "correction".to_owned()))
            })
            .map(|(_, count)| count)
            .sum();
        assert_eq!(corrections, 1);
        // Allowed flows to the external destination are egress: 10 flows of 74 bytes.
        let egress: u64 = counter_values(&snapshot, EXTERNAL_EGRESS_BYTES)
            .iter()
            .map(|(_, c)| c)
            .sum();
        assert_eq!(egress, 10 * 74);
        Ok(())
    }

    /// One generated input: (start offset from T0 in µs, partition, source pod, bytes).
    type Generated = (i64, i32, u8, i64);

    fn run_and_sum(
        inputs: &[Generated],
        flush_every: usize,
        idle_flushes: bool,
    ) -> Result<(i64, i64, usize), Box<dyn Error>> {
        let mut processor = processor()?;
        let mut out = Outputs::default();
        for (offset, &(start, partition, pod, bytes)) in inputs.iter().enumerate() {
            let mut flow = flow(T0 + start, &format!("pod-{pod}"), Action::Allow);
            flow.flow.bytes_out = bytes;
            feed(&mut processor, partition, i64::try_from(offset)?, &flow)?;
            if offset % flush_every == 0 {
                let now = if idle_flushes && offset % (2 * flush_every) == 0 {
                    for p in 0..3 {
                        processor.on_end_of_partition(&tp(p));
                    }
                    clock() + Duration::from_secs(3600)
                } else {
                    clock()
                };
                processor.emit_due(now, &mut out)?;
            }
        }
        processor.drain_all(&mut out)?;
        let edges = decode(out.records())?;
        let corrections = edges.iter().filter(|e| e.revision > 0).count();
        Ok((
            edges.iter().map(|e| e.flows).sum(),
            edges.iter().map(|e| e.bytes_out).sum(),
            corrections,
        ))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Flows out of order by less than the allowed lateness are all on time, and every
        /// one is in exactly one emitted edge.
        #[test]
        fn disorder_within_lateness_loses_and_duplicates_nothing(
            steps in prop::collection::vec((0..20 * SECOND, 0..30 * SECOND, 0..2_i32, 0..4_u8, 0..10_000_i64), 1..80),
            flush_every in 1..8_usize,
        ) {
            // Each start is at most 30 s (the lateness) before a non-decreasing base, so it
            // is never behind the watermark.
            let mut base = 0;
            let inputs: Vec<Generated> = steps
                .iter()
                .map(|&(advance, behind, partition, pod, bytes)| {
                    base += advance;
                    (base - behind + 1, partition, pod, bytes)
                })
                .collect();
            let (flows, bytes, corrections) =
                run_and_sum(&inputs, flush_every, false).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(flows, i64::try_from(inputs.len()).unwrap_or(-1));
            prop_assert_eq!(bytes, inputs.iter().map(|i| i.3).sum::<i64>());
            prop_assert_eq!(corrections, 0);
        }

        /// Any order, idle closes included: late flows become corrections, still summing
        /// to exactly what was fed.
        #[test]
        fn any_order_sums_to_the_input(
            inputs in prop::collection::vec((0..10 * MINUTE, 0..3_i32, 0..4_u8, 0..10_000_i64), 1..80),
            flush_every in 1..8_usize,
        ) {
            let (flows, bytes, _) =
                run_and_sum(&inputs, flush_every, true).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(flows, i64::try_from(inputs.len()).unwrap_or(-1));
            prop_assert_eq!(bytes, inputs.iter().map(|i| i.3).sum::<i64>());
        }
    }
}
