//! The sink stage's logic: Avro records in, Parquet objects out.
//!
//! `process` decodes each record and adds it to its buffer (see [`crate::buffer`]); it
//! never does I/O. `flush_due` seals what is due — a roll that goes into the partition's
//! next checkpoint ([`Processor::checkpoint_state`]) — and writes every sealed buffer
//! whose roll is already in an acknowledged checkpoint ([`Processor::on_committed`]),
//! encoding on the blocking pool, up to [`MAX_CONCURRENT_WRITES`] objects at once; it
//! returns only when all of them are durably stored. While it waits (a slow or unreachable
//! store) the runtime reads nothing more: backpressure. A buffer is forgotten only after
//! its object is written, and until then `held_from` keeps the resume offset at its first
//! record, so a crash at any point replays it — sealed at the recorded roll, into the same
//! rows under the same name. Replays of upstream records never reach a buffer: the
//! runtime drops them by their coordinates. If the flush is abandoned half-way (the
//! shutdown deadline), the sealed buffers stay held and nothing is committed past them.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use flowlake_runtime::{
    ConfigError, Input, Outputs, Processor, ProcessorError, Rejection, TopicPartition,
};
use flowlake_schemas::{AvroCodec, CodecError, EnrichedFlow, FlowEdge};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use parquet::file::properties::WriterProperties;

use crate::buffer::{Buffers, RollPolicy};
use crate::columns::{Dataset, SinkRecord};
use crate::metrics::SinkMetrics;
use crate::settings::SinkSettings;
use crate::store::{Lake, StoreError};
use crate::writer::{EncodeError, ParquetOptions, encode_blocking};

/// Objects written at once: uploads wait on the network, so a few in flight hide the
/// latency of each; four keeps two cores busy encoding without queuing many MiB of Parquet
/// in memory.
pub const MAX_CONCURRENT_WRITES: usize = 4;

/// Default topic of enriched flows.
pub const DEFAULT_FLOWS_TOPIC: &str = "flows.enriched";
/// Default topic of flow-graph edges.
pub const DEFAULT_EDGES_TOPIC: &str = "flows.edges";

/// The topics the sink reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkTopics {
    /// `EnrichedFlow` records, written to the `flows` dataset.
    pub flows: String,
    /// `FlowEdge` records, written to the `edges` dataset.
    pub edges: String,
}

impl Default for SinkTopics {
    fn default() -> Self {
        SinkTopics {
            flows: DEFAULT_FLOWS_TOPIC.to_owned(),
            edges: DEFAULT_EDGES_TOPIC.to_owned(),
        }
    }
}

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The lake could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A built-in Avro schema failed to load (a build defect).
    #[error("avro codec: {0}")]
    Codec(#[from] CodecError),
    /// The Parquet settings are not usable.
    #[error("parquet settings: {0}")]
    Encode(#[from] EncodeError),
}

/// What every write needs, shared with the write futures.
#[derive(Debug)]
struct Shared {
    lake: Lake,
    properties: WriterProperties,
    metrics: SinkMetrics,
}

/// One dataset's path through the sink: the input topic it is read from, its records'
/// decoder, and its buffers. Every dataset is this one mechanism with another record type
/// ([`DatasetLane`]); adding a dataset is a [`SinkRecord`] implementation and one line in
/// [`SinkProcessor::with_lake`].
trait Lane: Send {
    /// The input topic.
    fn topic(&self) -> &str;
    /// Decodes and buffers one record.
    fn push(&mut self, input: &Input<'_>, now: SystemTime) -> Result<(), Rejection>;
    /// The underlying buffers' operations, for every record type alike.
    fn seal_due(&mut self, now: SystemTime);
    fn seal_all(&mut self);
    fn held_from(&self, partition: &TopicPartition) -> Option<i64>;
    fn drop_partitions(&mut self, partitions: &[TopicPartition]);
    fn recorded(&self, partition: i32) -> Vec<(i64, i64)>;
    fn restore_rolls(&mut self, partition: i32, rolls: Vec<(i64, i64)>);
    fn mark_durable(&mut self);
    fn buffer_count(&self) -> usize;
    /// Write jobs for the buffers whose rolls are durable (nothing starts until polled).
    fn jobs(&self, shared: &Shared) -> Vec<WriteJob>;
    /// The object of buffer `id` is written.
    fn complete(&mut self, id: u64);
}

/// The [`Lane`] of the dataset of `R`.
struct DatasetLane<R: SinkRecord> {
    codec: AvroCodec<R>,
    buffers: Buffers<R>,
}

impl<R: SinkRecord> Lane for DatasetLane<R> {
    fn topic(&self) -> &str {
        self.buffers.topic()
    }
    fn push(&mut self, input: &Input<'_>, now: SystemTime) -> Result<(), Rejection> {
        let payload = input.payload.unwrap_or_default();
        let record = self.codec.decode(payload).map_err(malformed)?;
        self.buffers
            .push(input.partition, input.offset, record, payload.len(), now)
            .map_err(|e| Rejection::new("invalid_event_time", e.to_string()))
    }
    fn seal_due(&mut self, now: SystemTime) {
        self.buffers.seal_due(now);
    }
    fn seal_all(&mut self) {
        self.buffers.seal_all();
    }
    fn held_from(&self, partition: &TopicPartition) -> Option<i64> {
        self.buffers.held_from(partition)
    }
    fn drop_partitions(&mut self, partitions: &[TopicPartition]) {
        self.buffers.drop_partitions(partitions);
    }
    fn recorded(&self, partition: i32) -> Vec<(i64, i64)> {
        self.buffers.recorded(partition)
    }
    fn restore_rolls(&mut self, partition: i32, rolls: Vec<(i64, i64)>) {
        self.buffers.restore_rolls(partition, rolls);
    }
    fn mark_durable(&mut self) {
        self.buffers.mark_durable();
    }
    fn buffer_count(&self) -> usize {
        self.buffers.buffer_count()
    }
    fn jobs(&self, shared: &Shared) -> Vec<WriteJob> {
        jobs(&self.buffers, shared).collect()
    }
    fn complete(&mut self, id: u64) {
        self.buffers.complete(id);
    }
}

/// The sink: a [`Processor`] that writes every dataset's records — `EnrichedFlow` to
/// `flows/`, `FlowEdge` to `edges/` — to the lake.
pub struct SinkProcessor {
    /// One lane per dataset, each reading its own topic.
    lanes: Vec<Box<dyn Lane>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SinkProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let topics: Vec<&str> = self.lanes.iter().map(|l| l.topic()).collect();
        f.debug_struct("SinkProcessor")
            .field("lake", &self.shared.lake.to_string())
            .field("topics", &topics)
            .finish_non_exhaustive()
    }
}

impl<R: SinkRecord> DatasetLane<R> {
    fn boxed(topic: String, policy: RollPolicy) -> Result<Box<dyn Lane>, CodecError> {
        Ok(Box::new(DatasetLane::<R> {
            codec: AvroCodec::new()?,
            buffers: Buffers::new(topic, policy),
        }))
    }
}

impl SinkProcessor {
    /// Opens the lake of `settings` and registers the sink's metrics.
    pub fn new(settings: &SinkSettings, topics: SinkTopics) -> Result<Self, SinkError> {
        let lake = Lake::open(settings)?;
        SinkProcessor::with_lake(settings, topics, lake, SinkMetrics::new())
    }

    /// A sink writing to `lake` (already opened) with `metrics`; `settings.lake_url` is
    /// still validated but not opened again.
    pub fn with_lake(
        settings: &SinkSettings,
        topics: SinkTopics,
        lake: Lake,
        metrics: SinkMetrics,
    ) -> Result<Self, SinkError> {
        settings.validate()?;
        if topics.flows == topics.edges {
            return Err(ConfigError::invalid(
                "topics",
                format!(
                    "the sink's flows and edges topics must differ (both are {:?})",
                    topics.flows
                ),
            )
            .into());
        }
        let policy = RollPolicy {
            max_rows_per_file: settings.max_rows_per_file,
            roll_interval: settings.roll_interval,
            max_buffered_bytes: settings.max_buffer_memory_mib.saturating_mul(1024 * 1024),
        };
        let properties = ParquetOptions {
            max_row_group_size: settings.max_row_group_size,
            zstd_level: settings.zstd_level,
        }
        .properties()?;
        Ok(SinkProcessor {
            // The datasets: one registration each.
            lanes: vec![
                DatasetLane::<EnrichedFlow>::boxed(topics.flows, policy)?,
                DatasetLane::<FlowEdge>::boxed(topics.edges, policy)?,
            ],
            shared: Arc::new(Shared {
                lake,
                properties,
                metrics,
            }),
        })
    }

    /// Buffers held in memory, open or waiting to be written.
    pub fn buffer_count(&self) -> usize {
        self.lanes.iter().map(|l| l.buffer_count()).sum()
    }

    fn lane(&self, topic: &str) -> Option<&dyn Lane> {
        self.lanes.iter().find(|l| l.topic() == topic).map(|l| &**l)
    }

    fn lane_mut(&mut self, topic: &str) -> Option<&mut Box<dyn Lane>> {
        self.lanes.iter_mut().find(|l| l.topic() == topic)
    }

    /// Writes every sealed buffer, at most [`MAX_CONCURRENT_WRITES`] at a time, and forgets
    /// those written. Uploads retry until they succeed; only an encoding failure (a bug)
    /// returns an error.
    async fn write_sealed(&mut self) -> Result<(), ProcessorError> {
        let shared = Arc::clone(&self.shared);
        let jobs: Vec<(usize, WriteJob)> = self
            .lanes
            .iter()
            .enumerate()
            .flat_map(|(lane, l)| l.jobs(&shared).into_iter().map(move |job| (lane, job)))
            .collect();
        let mut failure = None;
        if !jobs.is_empty() {
            let done: Vec<(usize, u64, Result<(), EncodeError>)> = futures::stream::iter(jobs)
                .map(|(lane, job)| {
                    let shared = &shared;
                    async move {
                        let (_, id, result) = job.run(shared).await;
                        (lane, id, result)
                    }
                })
                .buffer_unordered(MAX_CONCURRENT_WRITES)
                .collect()
                .await;
            for (lane, id, result) in done {
                match result {
                    Ok(()) => self.lanes[lane].complete(id),
                    Err(e) => failure = failure.or(Some(e)),
                }
            }
        }
        shared.metrics.open_buffers.set(self.buffer_count() as f64);
        match failure {
            None => Ok(()),
            Some(e) => Err(ProcessorError::Fatal(format!(
                "cannot encode a parquet object: {e}"
            ))),
        }
    }
}

/// One sealed buffer to encode and upload.
struct WriteJob {
    dataset: Dataset,
    id: u64,
    path: Path,
    rows: usize,
    encode: BoxFuture<'static, Result<Bytes, EncodeError>>,
}

/// Write jobs for the sealed buffers of `buffers` (nothing starts until polled).
fn jobs<'a, R: SinkRecord>(
    buffers: &'a Buffers<R>,
    shared: &'a Shared,
) -> impl Iterator<Item = WriteJob> + 'a {
    buffers.writable().map(move |sealed| WriteJob {
        dataset: R::DATASET,
        id: sealed.id,
        path: buffers.object_path(shared.lake.root(), sealed),
        rows: sealed.rows.len(),
        encode: encode_blocking(
            Arc::clone(&sealed.rows),
            shared.properties.clone(),
            buffers.object_metadata(sealed),
        )
        .boxed(),
    })
}

impl WriteJob {
    async fn run(self, shared: &Shared) -> (Dataset, u64, Result<(), EncodeError>) {
        let bytes = match self.encode.await {
            Ok(bytes) => bytes,
            Err(e) => return (self.dataset, self.id, Err(e)),
        };
        let size = bytes.len();
        let started = Instant::now();
        let metrics = &shared.metrics;
        let retries = shared
            .lake
            .put(&self.path, bytes, &metrics.upload_retries)
            .await;
        metrics
            .upload_seconds
            .record(started.elapsed().as_secs_f64());
        let dataset = metrics.dataset(self.dataset);
        dataset.files_written.increment(1);
        dataset.bytes_written.increment(size as u64);
        dataset.rows_written.increment(self.rows as u64);
        tracing::debug!(
            object = %self.path,
            rows = self.rows,
            bytes = size,
            retries,
            "object written"
        );
        (self.dataset, self.id, Ok(()))
    }
}

fn malformed(error: CodecError) -> Rejection {
    Rejection::new("malformed_avro", error.to_string())
}

impl Processor for SinkProcessor {
    fn process(&mut self, input: &Input<'_>, _out: &mut Outputs) -> Result<(), Rejection> {
        if let Some(lane) = self.lane_mut(input.topic) {
            return lane.push(input, SystemTime::now());
        }
        // Only for the rejection: no allocation on the path of a record that is pushed.
        let topics: Vec<String> = self
            .lanes
            .iter()
            .map(|l| format!("{:?}", l.topic()))
            .collect();
        Err(Rejection::new(
            "unexpected_topic",
            format!(
                "topic {:?} is none of the sink's topics ({})",
                input.topic,
                topics.join(", ")
            ),
        ))
    }

    async fn flush_due(
        &mut self,
        now: SystemTime,
        _out: &mut Outputs,
    ) -> Result<(), ProcessorError> {
        for lane in &mut self.lanes {
            lane.seal_due(now);
        }
        self.write_sealed().await
    }

    /// Called twice by the runtime's drain: the first call seals (rolls recorded in the
    /// drain's checkpoint), the second writes them.
    async fn on_shutdown(&mut self, _out: &mut Outputs) -> Result<(), ProcessorError> {
        self.write_sealed().await?;
        for lane in &mut self.lanes {
            lane.seal_all();
        }
        Ok(())
    }

    fn held_from(&self, partition: &TopicPartition) -> Option<i64> {
        self.lane(&partition.topic)?.held_from(partition)
    }

    fn on_revoked(&mut self, partitions: &[TopicPartition]) {
        for lane in &mut self.lanes {
            lane.drop_partitions(partitions);
        }
        self.shared
            .metrics
            .open_buffers
            .set(self.buffer_count() as f64);
    }

    fn checkpoint_state(&self, partition: &TopicPartition) -> Option<String> {
        let rolls = self.lane(&partition.topic)?.recorded(partition.partition);
        if rolls.is_empty() {
            return None;
        }
        serde_json::to_string(&SinkState { rolls }).ok()
    }

    fn restore(
        &mut self,
        partition: &TopicPartition,
        state: Option<&str>,
    ) -> Result<(), ProcessorError> {
        let rolls = match state {
            None => Vec::new(),
            Some(json) => {
                let state: SinkState = serde_json::from_str(json).map_err(|e| {
                    ProcessorError::Fatal(format!(
                        "the checkpoint of {}/{} is not sink state this version reads: {e}",
                        partition.topic, partition.partition
                    ))
                })?;
                state.rolls
            }
        };
        if let Some(lane) = self.lane_mut(&partition.topic) {
            lane.restore_rolls(partition.partition, rolls);
        }
        Ok(())
    }

    /// Writes objects: only after the runtime confirmed ownership past the checkpoint that
    /// recorded their rolls.
    fn acts_on_commit(&self) -> bool {
        true
    }

    fn on_committed(&mut self) {
        for lane in &mut self.lanes {
            lane.mark_durable();
        }
    }
}

/// A sink partition's checkpoint state: the rolls recorded and not yet written.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SinkState {
    /// (first offset, last offset) of each recorded roll, oldest first.
    rolls: Vec<(i64, i64)>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use arrow::array::AsArray;
    use flowlake_schemas::{Timestamp, samples};
    use object_store::memory::InMemory;
    use object_store::{ObjectStore, ObjectStoreExt};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::metrics::probe::{Probe, probed};
    use crate::store::tests::{FAST, FailingStore};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const FLOWS: &str = "flows.enriched";
    const EDGES: &str = "flows.edges";
    /// 2023-11-14T22:00:00Z.
    const HOUR_22: i64 = 1_699_999_200_000_000;
    const HOUR: i64 = 3_600_000_000;

    fn settings(max_rows_per_file: usize) -> SinkSettings {
        SinkSettings {
            max_rows_per_file,
            ..SinkSettings::new("file:///unused")
        }
    }

    fn sink(
        store: Arc<dyn ObjectStore>,
        max_rows_per_file: usize,
    ) -> Result<(SinkProcessor, Probe), SinkError> {
        let (metrics, probe) = probed();
        let lake = Lake::from_store(store, Path::from("lake"), "memory://lake").with_backoff(FAST);
        let sink = SinkProcessor::with_lake(
            &settings(max_rows_per_file),
            SinkTopics::default(),
            lake,
            metrics,
        )?;
        Ok((sink, probe))
    }

    fn flow(event_id: &str, cluster: &str, start_micros: i64) -> Result<Vec<u8>, CodecError> {
        let mut flow = samples::enriched_flow();
        flow.flow.event_id = event_id.to_owned();
        flow.flow.cluster_id = cluster.to_owned();
        flow.flow.start_time = Timestamp::from_micros(start_micros);
        Ok(AvroCodec::<EnrichedFlow>::new()?.encode(&flow))
    }

    fn edge(cluster: &str, window_start: i64) -> Result<Vec<u8>, CodecError> {
        let edge = FlowEdge {
            cluster_id: cluster.to_owned(),
            window_start: Timestamp::from_micros(window_start),
            ..samples::flow_edge()
        };
        Ok(AvroCodec::<FlowEdge>::new()?.encode(&edge))
    }

    fn process(
        sink: &mut SinkProcessor,
        topic: &str,
        partition: i32,
        offset: i64,
        payload: &[u8],
    ) -> Result<(), String> {
        sink.process(
            &Input::from_payload(topic, partition, offset, payload),
            &mut Outputs::default(),
        )
        .map_err(|r| r.to_string())
    }

    /// The class of the rejection of a record, if it is rejected.
    fn rejected(
        sink: &mut SinkProcessor,
        topic: &str,
        offset: i64,
        payload: &[u8],
    ) -> Option<&'static str> {
        sink.process(
            &Input::from_payload(topic, 0, offset, payload),
            &mut Outputs::default(),
        )
        .err()
        .map(|r| r.class)
    }

    /// A flush as the runtime runs it: seal, the checkpoint acknowledged, write.
    async fn flush(sink: &mut SinkProcessor, now: SystemTime) -> Result<(), ProcessorError> {
        sink.flush_due(now, &mut Outputs::default()).await?;
        sink.on_committed();
        sink.flush_due(now, &mut Outputs::default()).await
    }

    /// The runtime's drain: two shutdown calls, each followed by a checkpoint.
    async fn shutdown(sink: &mut SinkProcessor) -> Result<(), ProcessorError> {
        for _ in 0..2 {
            sink.on_shutdown(&mut Outputs::default()).await?;
            sink.on_committed();
        }
        Ok(())
    }

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.to_owned(),
            partition,
        }
    }

    fn later(secs: u64) -> SystemTime {
        SystemTime::now() + Duration::from_secs(secs)
    }

    /// Every object under `lake/`, by name, with its bytes.
    async fn objects(
        store: &dyn ObjectStore,
    ) -> Result<BTreeMap<String, Bytes>, Box<dyn std::error::Error>> {
        let metas: Vec<_> = store.list(Some(&Path::from("lake"))).collect().await;
        let mut objects = BTreeMap::new();
        for meta in metas {
            let meta = meta?;
            let bytes = store.get(&meta.location).await?.bytes().await?;
            objects.insert(meta.location.to_string(), bytes);
        }
        Ok(objects)
    }

    /// The `event_id` column of a flows object.
    fn event_ids(bytes: &Bytes) -> Result<Vec<String>, Box<dyn std::error::Error>> {
        let mut ids = Vec::new();
        for batch in ParquetRecordBatchReaderBuilder::try_new(bytes.clone())?.build()? {
            let batch = batch?;
            let column = batch
                .column_by_name("event_id")
                .ok_or("no event_id")?
                .as_string::<i32>();
            ids.extend(column.iter().map(|v| v.unwrap_or_default().to_owned()));
        }
        Ok(ids)
    }

    #[tokio::test]
    async fn records_become_objects_once_due() -> TestResult {
        let store = Arc::new(InMemory::new());
        let (mut sink, probe) = sink(Arc::clone(&store) as _, 1000)?;
        process(&mut sink, FLOWS, 2, 10, &flow("a", "prod/eu", HOUR_22 + 5)?)?;
        process(
            &mut sink,
            FLOWS,
            2,
            11,
            &flow("b", "prod/eu", HOUR_22 + HOUR)?,
        )?;
        process(&mut sink, FLOWS, 2, 12, &flow("c", "prod/eu", HOUR_22 + 7)?)?;
        process(&mut sink, EDGES, 0, 3, &edge("prod/eu", HOUR_22)?)?;

        flush(&mut sink, SystemTime::now()).await?;
        assert!(objects(store.as_ref()).await?.is_empty());
        assert_eq!(sink.held_from(&tp(FLOWS, 2)), Some(10));
        assert_eq!(sink.held_from(&tp(EDGES, 0)), Some(3));
        assert_eq!(sink.held_from(&tp(FLOWS, 0)), None);

        flush(&mut sink, later(61)).await?;
        let written = objects(store.as_ref()).await?;
        let names: Vec<&str> = written.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            vec![
                "lake/edges/cluster_id=prod%2Feu/date=2023-11-14/hour=22/part-flows.edges-0-00000000000000000003.parquet",
                "lake/flows/cluster_id=prod%2Feu/date=2023-11-14/hour=22/part-flows.enriched-2-00000000000000000010.parquet",
                "lake/flows/cluster_id=prod%2Feu/date=2023-11-14/hour=23/part-flows.enriched-2-00000000000000000011.parquet",
            ]
        );
        assert_eq!(event_ids(&written[names[1]])?, vec!["a", "c"]);
        assert_eq!(event_ids(&written[names[2]])?, vec!["b"]);
        assert_eq!(sink.held_from(&tp(FLOWS, 2)), None);
        assert_eq!(sink.held_from(&tp(EDGES, 0)), None);

        assert_eq!(probe.files(Dataset::Flows), 2);
        assert_eq!(probe.files(Dataset::Edges), 1);
        assert_eq!(probe.rows(Dataset::Flows), 3);
        assert_eq!(probe.rows(Dataset::Edges), 1);
        let flow_bytes: usize = names[1..].iter().map(|n| written[*n].len()).sum();
        assert_eq!(probe.bytes(Dataset::Flows), flow_bytes as u64);
        assert_eq!(probe.bytes(Dataset::Edges), written[names[0]].len() as u64);
        assert_eq!(probe.open_buffers(), 0.0);
        assert_eq!(probe.retries(), 0);
        Ok(())
    }

    #[tokio::test]
    async fn bad_records_are_rejected_with_their_class() -> TestResult {
        let (mut sink, _) = sink(Arc::new(InMemory::new()), 1000)?;
        assert_eq!(
            rejected(&mut sink, FLOWS, 1, b"{\"json\":1}"),
            Some("malformed_avro")
        );
        assert_eq!(
            rejected(&mut sink, EDGES, 1, &[0xC3, 0x01, 1]),
            Some("malformed_avro")
        );
        // A tombstone is not a record either.
        let tombstone = Input {
            payload: None,
            ..Input::from_payload(FLOWS, 0, 2, b"")
        };
        let class = sink
            .process(&tombstone, &mut Outputs::default())
            .err()
            .map(|r| r.class);
        assert_eq!(class, Some("malformed_avro"));
        // An edge on the flows topic does not decode as a flow.
        assert_eq!(
            rejected(&mut sink, FLOWS, 3, &edge("c", HOUR_22)?),
            Some("malformed_avro")
        );
        assert_eq!(
            rejected(&mut sink, "flows.raw", 1, &flow("a", "c", HOUR_22)?),
            Some("unexpected_topic")
        );
        assert_eq!(
            rejected(&mut sink, FLOWS, 4, &flow("a", "c", i64::MAX)?),
            Some("invalid_event_time")
        );
        assert_eq!(sink.held_from(&tp(FLOWS, 0)), None);
        assert_eq!(sink.buffer_count(), 0);
        Ok(())
    }

    /// The same input gives the same object names and the same bytes: a replay overwrites.
    #[tokio::test]
    async fn same_records_same_objects() -> TestResult {
        let mut runs = Vec::new();
        for _ in 0..2 {
            let store = Arc::new(InMemory::new());
            let (mut sink, _) = sink(Arc::clone(&store) as _, 2)?;
            for offset in 0..5 {
                process(
                    &mut sink,
                    FLOWS,
                    1,
                    offset,
                    &flow(&format!("e{offset}"), "c", HOUR_22)?,
                )?;
            }
            shutdown(&mut sink).await?;
            runs.push(objects(store.as_ref()).await?);
        }
        assert_eq!(runs[0].len(), 3);
        assert_eq!(runs[0], runs[1]);
        let firsts: Vec<&str> = runs[0]
            .keys()
            .map(|k| &k[k.len() - 28..k.len() - 8])
            .collect();
        assert_eq!(
            firsts,
            vec![
                "00000000000000000000",
                "00000000000000000002",
                "00000000000000000004"
            ]
        );
        Ok(())
    }

    /// A crash after some objects of a partition were written but before the checkpoint
    /// moved past them: the next owner restores the recorded roll, seals exactly there,
    /// rewrites the same objects, and no flow is in two objects.
    #[tokio::test]
    async fn replay_after_a_crash_overwrites_instead_of_duplicating() -> TestResult {
        let store = Arc::new(InMemory::new());
        let input: Vec<(i64, Vec<u8>)> = (0..6)
            .map(|offset| {
                // Clusters a and b interleave; b fills its buffer (3 rows) first.
                let cluster = if offset % 3 == 0 { "a" } else { "b" };
                flow(&format!("e{offset}"), cluster, HOUR_22).map(|p| (offset, p))
            })
            .collect::<Result<_, _>>()?;

        let (mut first, _) = sink(Arc::clone(&store) as _, 3)?;
        for (offset, payload) in &input[..5] {
            process(&mut first, FLOWS, 0, *offset, payload)?;
        }
        // b's buffer filled at offset 4: the whole group [0, 4] rolled. The checkpoint
        // records the roll and still resumes at 0 until the objects are written.
        let state = first.checkpoint_state(&tp(FLOWS, 0));
        assert_eq!(state.as_deref(), Some("{\"rolls\":[[0,4]]}"));
        assert_eq!(first.held_from(&tp(FLOWS, 0)), Some(0));
        flush(&mut first, SystemTime::now()).await?;
        assert_eq!(first.held_from(&tp(FLOWS, 0)), None);
        let written = objects(store.as_ref()).await?;
        // kill -9 before the checkpoint of resume offset 5: the next owner resumes at 0.
        drop(first);
        let (mut replay, _) = sink(Arc::clone(&store) as _, 3)?;
        replay.restore(&tp(FLOWS, 0), state.as_deref())?;
        for (offset, payload) in &input {
            process(&mut replay, FLOWS, 0, *offset, payload)?;
        }
        // The recorded roll is written at once, byte for byte what was written before.
        replay
            .flush_due(SystemTime::now(), &mut Outputs::default())
            .await?;
        assert_eq!(objects(store.as_ref()).await?, written);
        shutdown(&mut replay).await?;

        let mut seen = Vec::new();
        for bytes in objects(store.as_ref()).await?.values() {
            seen.extend(event_ids(bytes)?);
        }
        seen.sort();
        assert_eq!(seen, vec!["e0", "e1", "e2", "e3", "e4", "e5"]);
        Ok(())
    }

    /// A roll taken by the clock (age) is recorded: a replay that runs at another pace
    /// seals at the same offset, not where its own clock would.
    #[tokio::test]
    async fn a_replay_rolls_where_the_recorded_roll_did() -> TestResult {
        let store = Arc::new(InMemory::new());
        let (mut first, _) = sink(Arc::clone(&store) as _, 1000)?;
        for offset in 0..3 {
            process(
                &mut first,
                FLOWS,
                0,
                offset,
                &flow(&format!("e{offset}"), "c", HOUR_22)?,
            )?;
        }
        first.flush_due(later(61), &mut Outputs::default()).await?;
        let state = first.checkpoint_state(&tp(FLOWS, 0));
        assert_eq!(state.as_deref(), Some("{\"rolls\":[[0,2]]}"));
        // Nothing is written before the roll is in an acknowledged checkpoint.
        assert!(objects(store.as_ref()).await?.is_empty());
        drop(first);

        let (mut replay, _) = sink(Arc::clone(&store) as _, 1000)?;
        replay.restore(&tp(FLOWS, 0), state.as_deref())?;
        // Until the replay reaches the roll, the checkpoint keeps it.
        assert_eq!(replay.checkpoint_state(&tp(FLOWS, 0)), state);
        for offset in 0..6 {
            process(
                &mut replay,
                FLOWS,
                0,
                offset,
                &flow(&format!("e{offset}"), "c", HOUR_22)?,
            )?;
        }
        shutdown(&mut replay).await?;
        let written = objects(store.as_ref()).await?;
        let per_object: Vec<Vec<String>> =
            written.values().map(event_ids).collect::<Result<_, _>>()?;
        assert_eq!(
            per_object,
            vec![vec!["e0", "e1", "e2"], vec!["e3", "e4", "e5"]]
        );
        Ok(())
    }

    #[tokio::test]
    async fn revoked_partitions_are_dropped_and_shutdown_writes_the_rest() -> TestResult {
        let store = Arc::new(InMemory::new());
        let (mut sink, probe) = sink(Arc::clone(&store) as _, 1000)?;
        process(&mut sink, FLOWS, 0, 1, &flow("kept", "c", HOUR_22)?)?;
        process(&mut sink, FLOWS, 1, 1, &flow("revoked", "c", HOUR_22)?)?;
        process(&mut sink, EDGES, 1, 1, &edge("c", HOUR_22)?)?;
        sink.on_revoked(&[tp(FLOWS, 1)]);
        assert_eq!(sink.held_from(&tp(FLOWS, 1)), None);
        assert_eq!(sink.held_from(&tp(EDGES, 1)), Some(1));
        assert_eq!(probe.open_buffers(), 2.0);
        shutdown(&mut sink).await?;
        let written = objects(store.as_ref()).await?;
        assert_eq!(written.len(), 2);
        let flows: Vec<String> = written
            .iter()
            .filter(|(name, _)| name.starts_with("lake/flows/"))
            .map(|(_, bytes)| event_ids(bytes))
            .collect::<Result<Vec<_>, _>>()?
            .concat();
        assert_eq!(flows, vec!["kept"]);
        assert_eq!(sink.buffer_count(), 0);
        Ok(())
    }

    /// A store that fails three times: the flush waits, retries, and writes each object once.
    #[tokio::test]
    async fn flush_retries_until_the_store_accepts() -> TestResult {
        let store = Arc::new(FailingStore::new(3));
        let (mut sink, probe) = sink(Arc::clone(&store) as _, 1000)?;
        process(&mut sink, EDGES, 0, 7, &edge("c", HOUR_22)?)?;
        shutdown(&mut sink).await?;
        assert_eq!(probe.retries(), 3);
        assert_eq!(store.written.load(Ordering::Acquire), 1);
        assert_eq!(probe.files(Dataset::Edges), 1);
        assert_eq!(sink.held_from(&tp(EDGES, 0)), None);
        Ok(())
    }

    /// A flush abandoned half-way (shutdown deadline) keeps holding the offsets.
    #[tokio::test]
    async fn an_abandoned_flush_keeps_the_offsets_held() -> TestResult {
        let store = Arc::new(FailingStore::new(u32::MAX));
        let (mut sink, _) = sink(Arc::clone(&store) as _, 1000)?;
        process(&mut sink, FLOWS, 0, 40, &flow("x", "c", HOUR_22)?)?;
        let flush = shutdown(&mut sink);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), flush)
                .await
                .is_err()
        );
        assert_eq!(sink.held_from(&tp(FLOWS, 0)), Some(40));
        Ok(())
    }

    /// Many due buffers at once are all written (with bounded concurrency).
    #[tokio::test]
    async fn many_objects_in_one_flush() -> TestResult {
        let store = Arc::new(InMemory::new());
        let (mut sink, probe) = sink(Arc::clone(&store) as _, 1000)?;
        for (offset, cluster) in (0..10).zip(0..10) {
            process(
                &mut sink,
                FLOWS,
                0,
                offset,
                &flow("e", &format!("c{cluster}"), HOUR_22)?,
            )?;
        }
        flush(&mut sink, later(3600)).await?;
        assert_eq!(objects(store.as_ref()).await?.len(), 10);
        assert_eq!(probe.files(Dataset::Flows), 10);
        assert_eq!(sink.buffer_count(), 0);
        Ok(())
    }

    #[test]
    fn topics_must_differ() {
        let (metrics, _) = probed();
        let lake = Lake::from_store(Arc::new(InMemory::new()), Path::default(), "memory://");
        let topics = SinkTopics {
            flows: "t".into(),
            edges: "t".into(),
        };
        let result = SinkProcessor::with_lake(&settings(10), topics, lake, metrics);
        assert!(matches!(
            result,
            Err(SinkError::Config(ConfigError::Invalid { .. }))
        ));
    }
}
