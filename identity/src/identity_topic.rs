//! The compacted `k8s.identity` topic: one Avro single-object [`IdentityRecord`] per
//! object state, key `cluster/kind/uid` (so compaction keeps each object's latest state),
//! and later a tombstone (null value) for a deleted object's key.
//!
//! Writing ([`IdentityProducer`]): the runtime's idempotent producer with
//! `message.timeout.ms=0`, so a record waits out a broker outage instead of failing, and
//! records of one key stay in order. Reading ([`IdentityTopicReader`]): every partition is
//! assigned from the beginning — not a consumer group, because every reader needs the
//! whole table — and nothing is committed. The reader reports [`TopicEvent::CaughtUp`]
//! once, when every partition has reached the end offset it had when the reader started
//! (or reported end of partition); after that it follows new records.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use flowlake_runtime::config::KafkaSettings;
use flowlake_runtime::http::Readiness;
use flowlake_runtime::kafka;
use flowlake_schemas::{AvroCodec, CodecError, IdentityRecord};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::objects_to_identity::record_key;
use crate::sink::{IdentitySink, SinkClosed};

/// Default name of the identity topic.
pub const DEFAULT_IDENTITY_TOPIC: &str = "k8s.identity";

/// How long one metadata or watermark request may take before it is retried.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause before asking again for a topic that does not exist yet (the publisher or an
/// operator creates it), and after a consumer error.
const RETRY_PAUSE: Duration = Duration::from_secs(2);

/// Why the identity topic cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityTopicError {
    /// A Kafka client could not be created, or an assignment was refused (configuration:
    /// fatal).
    #[error("identity topic {topic}: kafka client: {source}")]
    Client {
        /// The topic.
        topic: String,
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },
    /// A produced record was refused for good (too large, producer fenced): fatal; the
    /// publisher restarts and publishes again from the watch.
    #[error("identity topic {topic}: delivery failed: {source}")]
    Delivery {
        /// The topic.
        topic: String,
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },
    /// The Avro codec could not be built or a record not encoded (a bug).
    #[error("identity record codec: {0}")]
    Codec(#[from] CodecError),
    /// A reader task panicked or was cancelled.
    #[error("identity topic {topic}: {message}")]
    Task {
        /// The topic.
        topic: String,
        /// What happened.
        message: String,
    },
}

/// Writes records and tombstones to the identity topic.
#[derive(Clone)]
pub struct IdentityProducer {
    producer: FutureProducer,
    topic: String,
    codec: std::sync::Arc<AvroCodec<IdentityRecord>>,
}

impl IdentityProducer {
    /// An idempotent producer for `topic`.
    pub fn new(settings: &KafkaSettings, topic: &str) -> Result<Self, IdentityTopicError> {
        let producer = kafka::producer(settings).map_err(|source| IdentityTopicError::Client {
            topic: topic.to_owned(),
            source,
        })?;
        Ok(IdentityProducer {
            producer,
            topic: topic.to_owned(),
            codec: std::sync::Arc::new(AvroCodec::new()?),
        })
    }

    /// The topic written.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Encodes `record` and returns a future that enqueues it under its key and resolves
    /// when the broker acknowledged it (waiting while librdkafka's queue is full).
    pub fn publish(
        &self,
        record: &IdentityRecord,
    ) -> Result<
        impl Future<Output = Result<(), IdentityTopicError>> + Send + 'static,
        IdentityTopicError,
    > {
        let payload = self.codec.encode(record);
        Ok(self.send(record_key(record), Some(payload)))
    }

    /// A future that writes a tombstone (null value) for `key` and resolves when it was
    /// acknowledged.
    pub fn tombstone(
        &self,
        key: String,
    ) -> impl Future<Output = Result<(), IdentityTopicError>> + Send + 'static {
        self.send(key, None)
    }

    fn send(
        &self,
        key: String,
        payload: Option<Vec<u8>>,
    ) -> impl Future<Output = Result<(), IdentityTopicError>> + Send + 'static {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        async move {
            let mut record = FutureRecord::<String, Vec<u8>>::to(&topic).key(&key);
            if let Some(payload) = &payload {
                record = record.payload(payload);
            }
            producer
                .send(record, Timeout::Never)
                .await
                .map(|_| ())
                .map_err(|(source, _)| IdentityTopicError::Delivery {
                    topic: topic.clone(),
                    source,
                })
        }
    }

    /// Waits up to `timeout` for everything enqueued to be acknowledged.
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = rdkafka::producer::Producer::flush(&self.producer, timeout) {
            tracing::warn!(topic = self.topic, error = %e, "identity records not all acknowledged at shutdown");
        }
    }
}

/// What the reader saw next.
#[derive(Debug, PartialEq)]
pub enum TopicEvent {
    /// A record of an object's state.
    Record {
        /// Its key (`cluster/kind/uid`).
        key: String,
        /// The record (boxed: the other events are small).
        record: Box<IdentityRecord>,
    },
    /// A tombstone: the object was deleted long enough ago to be forgotten.
    Tombstone {
        /// Its key.
        key: String,
    },
    /// A value that is not an identity record; skipped.
    Invalid {
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
        /// Why it does not decode.
        reason: String,
    },
    /// Every partition has reached its end as of the reader's start (reported once).
    CaughtUp,
}

/// Reads the whole identity topic, then follows it.
pub struct IdentityTopicReader {
    consumer: StreamConsumer,
    codec: AvroCodec<IdentityRecord>,
    topic: String,
    /// End offset of each partition when the reader started.
    ends: HashMap<i32, i64>,
    /// Partitions not yet read up to their end.
    behind: HashSet<i32>,
    caught_up_reported: bool,
}

impl IdentityTopicReader {
    /// Assigns every partition of `topic` from the beginning, waiting (and saying so) while
    /// the topic does not exist. `None` when `shutdown` came first.
    pub async fn connect(
        settings: &KafkaSettings,
        topic: &str,
        shutdown: &CancellationToken,
    ) -> Result<Option<IdentityTopicReader>, IdentityTopicError> {
        let client = |source| IdentityTopicError::Client {
            topic: topic.to_owned(),
            source,
        };
        let consumer: StreamConsumer = reader_config(settings).create().map_err(client)?;
        let consumer = std::sync::Arc::new(consumer);
        let ends = loop {
            let probe = consumer.clone();
            let name = topic.to_owned();
            // Metadata and watermark requests block: keep them off the async threads.
            let ends = tokio::task::spawn_blocking(move || partition_ends(&probe, &name))
                .await
                .map_err(|e| IdentityTopicError::Task {
                    topic: topic.to_owned(),
                    message: e.to_string(),
                })?;
            match ends {
                Ok(ends) if !ends.is_empty() => break ends,
                Ok(_) => {
                    tracing::warn!(topic, "identity topic does not exist yet; waiting for it")
                }
                Err(e) => {
                    tracing::warn!(topic, error = %e, "cannot read identity topic metadata; retrying")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                _ = tokio::time::sleep(RETRY_PAUSE) => {}
            }
        };
        let consumer =
            std::sync::Arc::into_inner(consumer).ok_or_else(|| IdentityTopicError::Task {
                topic: topic.to_owned(),
                message: "metadata probe still running".to_owned(),
            })?;
        let mut assignment = TopicPartitionList::new();
        let mut behind = HashSet::new();
        for (&partition, &(low, high)) in &ends {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .map_err(client)?;
            if high > low {
                behind.insert(partition);
            }
        }
        consumer.assign(&assignment).map_err(client)?;
        tracing::info!(
            topic,
            partitions = ends.len(),
            behind = behind.len(),
            "reading identity topic from the beginning"
        );
        Ok(Some(IdentityTopicReader {
            consumer,
            codec: AvroCodec::new()?,
            topic: topic.to_owned(),
            ends: ends.into_iter().map(|(p, (_, high))| (p, high)).collect(),
            behind,
            caught_up_reported: false,
        }))
    }

    /// The next event. Consumer errors (a broker away) are logged and retried here.
    pub async fn next(&mut self) -> TopicEvent {
        loop {
            if self.behind.is_empty() && !self.caught_up_reported {
                self.caught_up_reported = true;
                return TopicEvent::CaughtUp;
            }
            let message = match self.consumer.recv().await {
                Ok(message) => message,
                Err(KafkaError::PartitionEOF(partition)) => {
                    self.behind.remove(&partition);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(topic = self.topic, error = %e, "identity topic consumer error; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            };
            let partition = message.partition();
            let offset = message.offset();
            if self
                .ends
                .get(&partition)
                .is_some_and(|&end| offset + 1 >= end)
            {
                self.behind.remove(&partition);
            }
            let key = message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default();
            return match message.payload() {
                None => TopicEvent::Tombstone { key },
                Some(payload) => match self.codec.decode(payload) {
                    Ok(record) => TopicEvent::Record {
                        key,
                        record: Box::new(record),
                    },
                    Err(e) => TopicEvent::Invalid {
                        partition,
                        offset,
                        reason: e.to_string(),
                    },
                },
            };
        }
    }
}

/// A consumer that is assigned partitions and never commits.
fn reader_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.brokers)
        // Required by librdkafka for a consumer; no group is joined (assign, not subscribe)
        // and nothing is committed.
        .set("group.id", "flowlake-identity-reader")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    for (key, value) in &settings.properties {
        config.set(key, value);
    }
    config
}

/// (low, high) watermarks of every partition of `topic`; empty when it does not exist.
fn partition_ends(
    consumer: &StreamConsumer,
    topic: &str,
) -> Result<HashMap<i32, (i64, i64)>, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
    let mut ends = HashMap::new();
    for t in metadata.topics() {
        if t.name() != topic || t.error().is_some() {
            continue;
        }
        for partition in t.partitions() {
            let marks = consumer.fetch_watermarks(topic, partition.id(), METADATA_TIMEOUT)?;
            ends.insert(partition.id(), marks);
        }
    }
    Ok(ends)
}

/// Feeds every record of the identity topic to `sink` until `shutdown`: the whole topic
/// first (then `ready` is set), then what arrives. Tombstones carry nothing to apply (the
/// deletion record before them did the work) and are skipped, as are undecodable values.
pub async fn follow<S: IdentitySink>(
    settings: &KafkaSettings,
    topic: &str,
    sink: &mut S,
    ready: Readiness,
    shutdown: CancellationToken,
) -> Result<(), FollowError> {
    let Some(mut reader) = IdentityTopicReader::connect(settings, topic, &shutdown).await? else {
        return Ok(());
    };
    let applied = metrics::counter!(crate::metrics::TOPIC_RECORDS, "outcome" => "applied");
    let tombstones = metrics::counter!(crate::metrics::TOPIC_RECORDS, "outcome" => "tombstone");
    let invalid = metrics::counter!(crate::metrics::TOPIC_RECORDS, "outcome" => "invalid");
    let mut read: u64 = 0;
    loop {
        let event = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            event = reader.next() => event,
        };
        match event {
            TopicEvent::Record { record, .. } => {
                read += 1;
                applied.increment(1);
                sink.send(*record).await?;
            }
            TopicEvent::Tombstone { .. } => tombstones.increment(1),
            TopicEvent::Invalid {
                partition,
                offset,
                reason,
            } => {
                invalid.increment(1);
                tracing::warn!(
                    topic,
                    partition,
                    offset,
                    reason,
                    "skipping a value of the identity topic that is not an identity record"
                );
            }
            TopicEvent::CaughtUp => {
                tracing::info!(
                    topic,
                    records = read,
                    "identity topic read to its end; following"
                );
                ready.set(true);
            }
        }
    }
}

/// Why following the identity topic stopped.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The topic cannot be read.
    #[error(transparent)]
    Topic(#[from] IdentityTopicError),
    /// The identity table's channel closed (shutting down).
    #[error(transparent)]
    Closed(#[from] SinkClosed),
}
