//! The contract between the runtime and a stage's logic.
//!
//! A stage is a [`Processor`]: plain synchronous logic that turns one input record into
//! zero or more output records, or rejects it. The runtime owns everything around it —
//! Kafka, batching, delivery, offsets, dead letters, shutdown — so a processor can be driven
//! by a unit test without a broker.
//!
//! Offset protocol: at a checkpoint — whenever the stage has caught up with its input,
//! and at least every `runtime.checkpoint_interval` otherwise — the runtime waits until
//! every output record sent so far is acknowledged, then checkpoints, for every input partition, the lowest offset whose
//! effect is not yet durable — its *resume offset*, `min(next offset to read,
//! Processor::held_from(partition))` — with the replay marks as of that offset and the
//! processor's [`Processor::checkpoint_state`]. A stage that holds records in memory
//! (sink's open files) reports the oldest one it holds through `held_from`, so a crash
//! replays it instead of losing it; a stage whose state is small (aggregate's windows)
//! puts the state itself in the checkpoint instead.
//!
//! Determinism: a stage restored from a checkpoint and fed the same input from its resume
//! offset must produce the same records with the same [`Origin`] coordinates, so the next
//! stage can drop the copies. Decisions taken from the wall clock are recorded in the
//! processor's state first and take effect only after that state was checkpointed (the
//! runtime calls [`Processor::on_committed`] only after a checkpoint that followed them).

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

pub use rdkafka::message::BorrowedHeaders;

/// Where a record came from: the coordinates stamped on every produced record's headers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    /// Input topic (shared: every record of a batch names the same few topics).
    pub topic: Arc<str>,
    /// Input partition.
    pub partition: i32,
    /// Input offset.
    pub offset: i64,
    /// Sequence number among the records produced from this input offset (0 for the
    /// first). Together with the offset: the record's unique, monotone coordinates.
    pub seq: u32,
}

/// A topic partition, as processors see it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
}

/// One input record.
#[derive(Clone, Copy)]
pub struct Input<'a> {
    /// Topic it was read from.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Kafka key.
    pub key: Option<&'a [u8]>,
    /// Kafka value (None for a tombstone).
    pub payload: Option<&'a [u8]>,
    /// Kafka headers.
    pub headers: Option<&'a BorrowedHeaders>,
    /// Kafka timestamp in milliseconds, when the broker gave one.
    pub timestamp_millis: Option<i64>,
}

impl std::fmt::Debug for Input<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl<'a> Input<'a> {
    /// A record with only a payload, for tests and in-process callers.
    pub fn from_payload(topic: &'a str, partition: i32, offset: i64, payload: &'a [u8]) -> Self {
        Input {
            topic,
            partition,
            offset,
            key: None,
            payload: Some(payload),
            headers: None,
            timestamp_millis: None,
        }
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        use rdkafka::message::Headers;
        let headers = self.headers?;
        headers.iter().find(|h| h.key == name).and_then(|h| h.value)
    }

    /// This record's coordinates.
    pub fn origin(&self) -> Origin {
        Origin {
            topic: Arc::from(self.topic),
            partition: self.partition,
            offset: self.offset,
            seq: 0,
        }
    }
}

/// A record to produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputRecord {
    /// Destination topic.
    pub topic: Arc<str>,
    /// Kafka key: decides the partition, so make it deterministic.
    pub key: Option<Vec<u8>>,
    /// Kafka value.
    pub payload: Vec<u8>,
    /// Origin coordinates written to headers (`flowlake.origin.*`).
    pub origin: Option<Origin>,
}

/// Output records collected for one batch.
#[derive(Debug, Default)]
pub struct Outputs {
    records: Vec<OutputRecord>,
    current: Option<Origin>,
    /// The topic names used in this batch, each allocated once rather than per record.
    topics: Vec<Arc<str>>,
}

impl Outputs {
    /// Room for `records` outputs without growing. The runner reserves one per input of
    /// the batch (what most stages produce), so that a 10k-record batch's outputs are not
    /// copied over and over as the vector doubles.
    pub fn with_capacity(records: usize) -> Self {
        Outputs {
            records: Vec::with_capacity(records),
            ..Outputs::default()
        }
    }

    /// Produce `payload` to `topic`; stamped with the origin of the input being processed,
    /// numbered in the order of the calls for that input.
    pub fn send(&mut self, topic: &str, key: Option<Vec<u8>>, payload: Vec<u8>) {
        let origin = self.current.clone();
        if let Some(current) = &mut self.current {
            current.seq = current.seq.saturating_add(1);
        }
        let topic = self.topic(topic);
        self.records.push(OutputRecord {
            topic,
            key,
            payload,
            origin,
        });
    }

    /// Produce with explicit origin coordinates (records not derived from one input, such as
    /// a closed window).
    pub fn send_with_origin(
        &mut self,
        topic: &str,
        key: Option<Vec<u8>>,
        payload: Vec<u8>,
        origin: Option<Origin>,
    ) {
        let topic = self.topic(topic);
        self.records.push(OutputRecord {
            topic,
            key,
            payload,
            origin,
        });
    }

    /// Records collected so far.
    pub fn records(&self) -> &[OutputRecord] {
        &self.records
    }

    /// Takes the collected records.
    pub fn take(&mut self) -> Vec<OutputRecord> {
        std::mem::take(&mut self.records)
    }

    /// Number of collected records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Sets the origin that [`Outputs::send`] stamps.
    pub fn set_current_origin(&mut self, origin: Option<Origin>) {
        self.current = origin;
    }

    /// Sets `input`'s coordinates as the origin that [`Outputs::send`] stamps (the runtime
    /// calls this per input).
    pub fn set_current_input(&mut self, input: &Input<'_>) {
        let topic = self.topic(input.topic);
        self.current = Some(Origin {
            topic,
            partition: input.partition,
            offset: input.offset,
            seq: 0,
        });
    }

    /// The shared name of `topic`.
    fn topic(&mut self, topic: &str) -> Arc<str> {
        if let Some(known) = self.topics.iter().find(|known| ***known == *topic) {
            return Arc::clone(known);
        }
        let shared: Arc<str> = Arc::from(topic);
        self.topics.push(Arc::clone(&shared));
        shared
    }
}

/// Why an input record was rejected: it goes to the dead-letter topic unchanged with these
/// as headers. A rejection is data, not a stage error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Short, stable error class (a metric label): e.g. `not_json`, `missing_field`.
    pub class: &'static str,
    /// Human-readable reason naming the field and the problem.
    pub message: String,
    /// The input format the record was read as, when known (`flowlake.format` header).
    pub format: Option<&'static str>,
}

impl Rejection {
    /// A rejection of `class` with `message`.
    pub fn new(class: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            class,
            message: message.into(),
            format: None,
        }
    }

    /// The same rejection, noting the format the record was read as.
    pub fn with_format(mut self, format: &'static str) -> Self {
        self.format = Some(format);
        self
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.class, self.message)
    }
}

/// A failure that stops the stage (not a bad record).
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// Worth retrying: the same call may succeed later (object store down, timeout).
    #[error("retryable: {0}")]
    Retryable(String),
    /// Retrying cannot help (misconfiguration, permission denied, a bug).
    #[error("fatal: {0}")]
    Fatal(String),
}

/// A stage's logic. Only `process` is required; the hooks default to nothing. A wrapper
/// around another processor (the demo's progress counter) must forward every hook: a hook
/// left at its default silently changes what the inner processor guarantees.
pub trait Processor: Send {
    /// Handles one input record, pushing outputs into `out`, or rejects it.
    fn process(&mut self, input: &Input<'_>, out: &mut Outputs) -> Result<(), Rejection>;

    /// Emits what is due at `now` (closed windows, rolled files). Called after every batch
    /// and on the runtime's tick, also when no input arrives.
    fn flush_due(
        &mut self,
        _now: SystemTime,
        _out: &mut Outputs,
    ) -> impl Future<Output = Result<(), ProcessorError>> + Send {
        async { Ok(()) }
    }

    /// Called on graceful shutdown, before the final commit — twice, with the outputs
    /// acknowledged and a checkpoint written after each call: emit whatever can be emitted
    /// without breaking the stage's guarantees (sink: seal open files, then write them).
    fn on_shutdown(
        &mut self,
        _out: &mut Outputs,
    ) -> impl Future<Output = Result<(), ProcessorError>> + Send {
        async { Ok(()) }
    }

    /// The lowest offset of `partition` whose effect is still held in memory and not yet
    /// durable; None when nothing is held.
    fn held_from(&self, _partition: &TopicPartition) -> Option<i64> {
        None
    }

    /// Partitions were taken away: drop their in-memory state (the next owner resumes
    /// from the checkpoint).
    fn on_revoked(&mut self, _partitions: &[TopicPartition]) {}

    /// The state `partition` resumes with, as of its resume offset (see the module doc),
    /// as JSON; None when the processor keeps nothing beyond what `held_from` replays.
    /// Asked at every checkpoint; a changed answer is checkpointed.
    fn checkpoint_state(&self, _partition: &TopicPartition) -> Option<String> {
        None
    }

    /// A partition was assigned: `state` is what [`Processor::checkpoint_state`] returned
    /// in its last checkpoint (None for a partition never checkpointed). Called before any
    /// of its records is processed.
    fn restore(
        &mut self,
        _partition: &TopicPartition,
        _state: Option<&str>,
    ) -> Result<(), ProcessorError> {
        Ok(())
    }

    /// Every record of `partition` up to its end, as the broker last reported it, has been
    /// processed: until the next record of it arrives, the partition is caught up. A
    /// restored partition is not caught up until this is called, so decisions taken from
    /// the clock (an idle close) wait until the replay of what an earlier owner processed
    /// is over — taken during it, they would differ from what that owner emitted. (With
    /// several input topics the broker names only the partition number: it is reported
    /// for that number of every input topic.)
    fn on_end_of_partition(&mut self, _partition: &TopicPartition) {}

    /// Everything produced so far is acknowledged and covered by acknowledged checkpoints:
    /// the point where effects that must happen once (business counters, writes decided
    /// earlier) may happen.
    fn on_committed(&mut self) {}

    /// True when [`Processor::on_committed`] acts outside Kafka (writes objects, moves
    /// business counters). An instance that lost a partition without noticing yet (kicked
    /// from its group while blocked) still writes checkpoints; a newer owner never sees
    /// them, so acting on them would repeat what the newer owner does. For such a
    /// processor the runtime calls `on_committed` only after reading the checkpoint topic
    /// past the checkpoints just written and finding no newer claim of any owned
    /// partition — one read per checkpoint written.
    fn acts_on_commit(&self) -> bool {
        false
    }

    /// True when a decision taken from the clock is recorded in the state and acts with
    /// the next record or flush (aggregate's idle close): the runtime then checkpoints
    /// after this batch even while more input is ready, so the decision is durable before
    /// it takes effect — a new owner replaying from an older checkpoint would decide
    /// differently. Asked after every batch's flush.
    fn awaits_checkpoint(&self) -> bool {
        false
    }
}
/// The no-op stage: every input record to `output_topic` unchanged, key included. The
/// runtime's work (consume, origin headers, produce, acknowledgements, checkpoints,
/// offsets) is the same as for a stage; only the processing is missing — the baseline the
/// benchmarks compare stages with (`flowlake relay`, `benches/broker/`).
#[derive(Debug)]
pub struct RelayProcessor {
    /// Where every record goes.
    pub output_topic: String,
}

impl Processor for RelayProcessor {
    fn process(&mut self, input: &Input<'_>, out: &mut Outputs) -> Result<(), Rejection> {
        out.send(
            &self.output_topic,
            input.key.map(<[u8]>::to_vec),
            input.payload.unwrap_or_default().to_vec(),
        );
        Ok(())
    }
}
