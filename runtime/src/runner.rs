//! The stage loop: read a batch, run the processor, produce, wait for every
//! acknowledgement, then store offsets.
//!
//! Invariants (what makes "nothing lost" hold without Kafka transactions):
//! - an input offset is stored only after every record produced from it — outputs and
//!   dead letters — has been acknowledged by the broker, and never beyond
//!   `Processor::held_from` (records still held in memory by the stage);
//! - input partitions are processed in order and each batch is acknowledged before the
//!   next is read, so a replay after a crash re-produces the same records in the same
//!   order, each stamped with its origin coordinates (`flowlake.origin.*` headers);
//! - a bad record is dead-lettered byte for byte with its reason, and its offset moves on
//!   only with the DLQ write acknowledged;
//! - a broker outage blocks the batch (idempotent producer with no message timeout), which
//!   stops the reading: backpressure, not loss or a crash loop.
//!
//! Shutdown (SIGTERM/SIGINT): stop reading, let the processor emit what it may
//! (`on_shutdown`), wait for acknowledgements up to the drain deadline, store and commit
//! synchronously, return.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use metrics::{Counter, Histogram};
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;

use crate::config::{KafkaSettings, RuntimeSettings};
use crate::http::Readiness;
use crate::kafka::{
    self, ORIGIN_OFFSET_HEADER, ORIGIN_PARTITION_HEADER, ORIGIN_TOPIC_HEADER, StageContext,
};
use crate::processor::{
    Input, OutputRecord, Outputs, Processor, ProcessorError, Rejection, TopicPartition,
};

/// Dead-letter header: short error class.
pub const DLQ_ERROR_CLASS: &str = "flowlake.error.class";
/// Dead-letter header: human-readable reason.
pub const DLQ_ERROR_MESSAGE: &str = "flowlake.error.message";
/// Dead-letter header: topic the record was read from.
pub const DLQ_SOURCE_TOPIC: &str = "flowlake.source.topic";
/// Dead-letter header: partition it was read from.
pub const DLQ_SOURCE_PARTITION: &str = "flowlake.source.partition";
/// Dead-letter header: offset it was read from.
pub const DLQ_SOURCE_OFFSET: &str = "flowlake.source.offset";
/// Dead-letter header: the stage that rejected it.
pub const DLQ_STAGE: &str = "flowlake.stage";
/// Dead-letter header: the input format the record was read as, when known.
pub const DLQ_FORMAT: &str = "flowlake.format";

/// What the runtime needs to know about a stage.
#[derive(Clone, Debug)]
pub struct StageSpec {
    /// Stage name (`ingest`, …): metric prefix, default group id, DLQ header.
    pub name: &'static str,
    /// Topics to consume.
    pub input_topics: Vec<String>,
    /// Topic for rejected records.
    pub dlq_topic: String,
}

/// Why a stage stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The Kafka client could not be created or subscribed (configuration).
    #[error("kafka client: {0}")]
    Client(#[source] KafkaError),
    /// The broker refused a record for good (e.g. authorization, record too large).
    #[error("cannot produce to {topic}: {source}")]
    Delivery {
        /// Destination topic.
        topic: String,
        /// Broker or client error.
        #[source]
        source: KafkaError,
    },
    /// The processor failed in a way retrying cannot fix.
    #[error("stage failed: {0}")]
    Processor(#[from] ProcessorError),
}

struct StageMetrics {
    stage: &'static str,
    records_in: HashMap<String, Counter>,
    records_out: HashMap<String, Counter>,
    dead_letters: HashMap<&'static str, Counter>,
    batch_seconds: Histogram,
    consumer_errors: Counter,
}

impl StageMetrics {
    fn new(stage: &'static str) -> Self {
        metrics::describe_counter!(
            format!("flowlake_{stage}_records_in_total"),
            "Records read, by input topic."
        );
        metrics::describe_counter!(
            format!("flowlake_{stage}_records_out_total"),
            "Records produced and acknowledged, by topic."
        );
        metrics::describe_counter!(
            format!("flowlake_{stage}_dead_letters_total"),
            "Records sent to the dead-letter topic, by error class."
        );
        metrics::describe_histogram!(
            format!("flowlake_{stage}_batch_seconds"),
            metrics::Unit::Seconds,
            "Time to process and acknowledge one batch."
        );
        metrics::describe_gauge!(
            format!("flowlake_{stage}_consumer_lag_records"),
            "Records between the committed offset and the end of each input partition."
        );
        metrics::describe_counter!(
            format!("flowlake_{stage}_consumer_errors_total"),
            "Errors reported by the consumer (retried by librdkafka)."
        );
        StageMetrics {
            stage,
            records_in: HashMap::new(),
            records_out: HashMap::new(),
            dead_letters: HashMap::new(),
            batch_seconds: metrics::histogram!(format!("flowlake_{stage}_batch_seconds")),
            consumer_errors: metrics::counter!(format!("flowlake_{stage}_consumer_errors_total")),
        }
    }

    fn records_in(&mut self, topic: &str) -> &Counter {
        let stage = self.stage;
        self.records_in
            .entry(topic.to_owned())
            .or_insert_with(|| metrics::counter!(format!("flowlake_{stage}_records_in_total"), "topic" => topic.to_owned()))
    }

    fn records_out(&mut self, topic: &str) -> &Counter {
        let stage = self.stage;
        self.records_out
            .entry(topic.to_owned())
            .or_insert_with(|| metrics::counter!(format!("flowlake_{stage}_records_out_total"), "topic" => topic.to_owned()))
    }

    fn dead_letter(&mut self, class: &'static str) -> &Counter {
        let stage = self.stage;
        self.dead_letters.entry(class).or_insert_with(
            || metrics::counter!(format!("flowlake_{stage}_dead_letters_total"), "class" => class),
        )
    }
}

/// A record ready to produce, headers included.
struct Produce {
    topic: std::sync::Arc<str>,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: OwnedHeaders,
}

impl From<OutputRecord> for Produce {
    fn from(record: OutputRecord) -> Self {
        let mut headers = OwnedHeaders::new_with_capacity(3);
        if let Some(origin) = &record.origin {
            headers = headers
                .insert(Header {
                    key: ORIGIN_TOPIC_HEADER,
                    value: Some(&*origin.topic),
                })
                .insert(Header {
                    key: ORIGIN_PARTITION_HEADER,
                    value: Some(&origin.partition.to_string()),
                })
                .insert(Header {
                    key: ORIGIN_OFFSET_HEADER,
                    value: Some(&origin.offset.to_string()),
                });
        }
        Produce {
            topic: record.topic,
            key: record.key,
            payload: record.payload,
            headers,
        }
    }
}

/// The dead-letter record for `message`: its key, value and headers unchanged, plus
/// headers that say why and where from.
fn dead_letter(
    stage: &str,
    dlq_topic: &str,
    message: &BorrowedMessage<'_>,
    rejection: &Rejection,
) -> Produce {
    let mut headers = message
        .headers()
        .map(|h| h.detach())
        .unwrap_or_else(|| OwnedHeaders::new_with_capacity(6));
    headers = headers
        .insert(Header {
            key: DLQ_ERROR_CLASS,
            value: Some(rejection.class),
        })
        .insert(Header {
            key: DLQ_ERROR_MESSAGE,
            value: Some(rejection.message.as_str()),
        })
        .insert(Header {
            key: DLQ_SOURCE_TOPIC,
            value: Some(message.topic()),
        })
        .insert(Header {
            key: DLQ_SOURCE_PARTITION,
            value: Some(&message.partition().to_string()),
        })
        .insert(Header {
            key: DLQ_SOURCE_OFFSET,
            value: Some(&message.offset().to_string()),
        })
        .insert(Header {
            key: DLQ_STAGE,
            value: Some(stage),
        });
    if let Some(format) = rejection.format {
        headers = headers.insert(Header {
            key: DLQ_FORMAT,
            value: Some(format),
        });
    }
    Produce {
        topic: std::sync::Arc::from(dlq_topic),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        headers,
    }
}

/// Sends every record and waits until all are acknowledged. Sends in order, so records
/// for one partition keep their order (the idempotent producer preserves it on retries).
async fn deliver(
    producer: &FutureProducer,
    records: Vec<Produce>,
    metrics: &mut StageMetrics,
) -> Result<(), RuntimeError> {
    let mut pending = std::collections::VecDeque::with_capacity(records.len());
    for record in &records {
        loop {
            let mut future = FutureRecord::to(&record.topic)
                .payload(&record.payload)
                .headers(record.headers.clone());
            if let Some(key) = &record.key {
                future = future.key(key);
            }
            match producer.send_result(future) {
                Ok(delivery) => {
                    pending.push_back((&*record.topic, delivery));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    // librdkafka's queue is full: wait for the oldest send to finish, then retry.
                    match pending.pop_front() {
                        Some((topic, delivery)) => acknowledged(topic, delivery.await)?,
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err((source, _)) => {
                    return Err(RuntimeError::Delivery {
                        topic: record.topic.to_string(),
                        source,
                    });
                }
            }
        }
    }
    for (topic, delivery) in pending {
        acknowledged(topic, delivery.await)?;
    }
    for record in &records {
        metrics.records_out(&record.topic).increment(1);
    }
    Ok(())
}

fn acknowledged(
    topic: &str,
    result: Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        futures::channel::oneshot::Canceled,
    >,
) -> Result<(), RuntimeError> {
    match result {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((source, _))) => Err(RuntimeError::Delivery {
            topic: topic.to_owned(),
            source,
        }),
        Err(_) => Err(RuntimeError::Delivery {
            topic: topic.to_owned(),
            source: KafkaError::Canceled,
        }),
    }
}

/// Next offset to read per partition, and what was last stored.
#[derive(Default)]
struct OffsetTracker {
    next: HashMap<TopicPartition, i64>,
    stored: HashMap<TopicPartition, i64>,
}

impl OffsetTracker {
    fn forget(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            self.next.remove(tp);
            self.stored.remove(tp);
        }
    }

    /// Offsets that became safe to store: for each partition, the next offset to read,
    /// held back to the oldest record the processor still holds. Never moves backwards.
    fn take_storable<P: Processor>(&mut self, processor: &P) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for (tp, &next) in &self.next {
            let safe = processor.held_from(tp).map_or(next, |held| held.min(next));
            let stored = self.stored.get(tp).copied().unwrap_or(i64::MIN);
            if safe > stored {
                // Only fails for a negative partition, which a consumer never hands us.
                let _ = list.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(safe));
                self.stored.insert(tp.clone(), safe);
            }
        }
        list
    }
}

/// Runs one stage until `shutdown` is cancelled or a fatal error.
pub async fn run_stage<P: Processor>(
    spec: StageSpec,
    mut processor: P,
    kafka_settings: &KafkaSettings,
    settings: &RuntimeSettings,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    let stage = spec.name;
    let consumer: StreamConsumer<StageContext> = kafka::consumer(
        stage,
        kafka_settings,
        settings.commit_interval,
        readiness.clone(),
    )
    .map_err(RuntimeError::Client)?;
    let topics: Vec<&str> = spec.input_topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(RuntimeError::Client)?;
    let producer = kafka::producer(kafka_settings).map_err(RuntimeError::Client)?;
    let mut metrics = StageMetrics::new(stage);
    let mut offsets = OffsetTracker::default();
    let mut tick = tokio::time::interval(settings.tick_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(stage, topics = ?spec.input_topics, "stage running");

    let result: Result<(), RuntimeError> = async {
        loop {
            let first = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => None,
                message = consumer.recv() => Some(message),
            };
            let started = Instant::now();
            let mut batch = Vec::new();
            let mut next = first;
            while let Some(received) = next {
                // librdkafka runs rebalance callbacks inside the poll that returned this
                // message, and purges what it had fetched for partitions it takes away: a
                // revocation applies to the messages collected *before* this one, never to
                // this one or later ones (which may come from a partition just re-assigned).
                apply_revocations(&consumer, &mut processor, &mut offsets, &mut batch);
                match received {
                    Ok(message) => batch.push(message),
                    Err(e) => {
                        metrics.consumer_errors.increment(1);
                        tracing::warn!(stage, error = %e, "consumer error (librdkafka retries)");
                        break;
                    }
                }
                if batch.len() >= settings.batch_max_records {
                    break;
                }
                next = consumer.recv().now_or_never();
            }
            apply_revocations(&consumer, &mut processor, &mut offsets, &mut batch);

            let mut out = Outputs::with_capacity(batch.len());
            let mut produce: Vec<Produce> = Vec::new();
            // (partition, last offset, records) of this batch: a handful of entries.
            let mut last_offsets: Vec<(TopicPartition, i64, u64)> = Vec::new();
            for message in &batch {
                let input = Input {
                    topic: message.topic(),
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key(),
                    payload: message.payload(),
                    headers: message.headers(),
                    timestamp_millis: message.timestamp().to_millis(),
                };
                out.set_current_input(&input);
                if let Err(rejection) = processor.process(&input, &mut out) {
                    metrics.dead_letter(rejection.class).increment(1);
                    tracing::debug!(stage, topic = input.topic, partition = input.partition, offset = input.offset, %rejection, "dead-lettering record");
                    produce.push(dead_letter(stage, &spec.dlq_topic, message, &rejection));
                }
                match last_offsets.iter_mut().find(|(tp, _, _)| tp.partition == input.partition && tp.topic == input.topic) {
                    Some((_, last, count)) => {
                        *last = input.offset;
                        *count += 1;
                    }
                    None => last_offsets.push((TopicPartition { topic: input.topic.to_owned(), partition: input.partition }, input.offset, 1)),
                }
            }
            for (tp, _, count) in &last_offsets {
                metrics.records_in(&tp.topic).increment(*count);
            }
            out.set_current_origin(None);
            match processor.flush_due(SystemTime::now(), &mut out).await {
                Ok(()) => {}
                Err(ProcessorError::Retryable(reason)) => {
                    // Nothing is acknowledged past what the processor still holds, so the
                    // next tick retries it.
                    tracing::warn!(stage, reason, "emitting due output failed; retrying on the next tick");
                }
                Err(fatal) => return Err(fatal.into()),
            }
            let mut records: Vec<Produce> = out.take().into_iter().map(Produce::from).collect();
            records.append(&mut produce);
            deliver(&producer, records, &mut metrics).await?;
            for (tp, last, _) in last_offsets {
                offsets.next.insert(tp, last + 1);
            }
            store(&consumer, &mut offsets, &processor, stage);
            if !batch.is_empty() {
                metrics.batch_seconds.record(started.elapsed().as_secs_f64());
            }
        }
        Ok(())
    }
    .await;
    readiness.set(false);
    if let Err(e) = &result {
        // Offsets already stored are safe; nothing past them is committed.
        tracing::error!(stage, error = %e, "stage failed; committing what is durable");
        let _ = consumer.commit_consumer_state(CommitMode::Sync);
        return result;
    }

    tracing::info!(stage, "draining");
    let mut out = Outputs::default();
    let drained = tokio::time::timeout(settings.drain_timeout, async {
        processor.on_shutdown(&mut out).await?;
        let records: Vec<Produce> = out.take().into_iter().map(Produce::from).collect();
        deliver(&producer, records, &mut metrics).await
    })
    .await;
    match drained {
        Ok(Ok(())) => store(&consumer, &mut offsets, &processor, stage),
        Ok(Err(e)) => {
            tracing::warn!(stage, error = %e, "drain failed; the uncommitted input will be replayed")
        }
        Err(_) => tracing::warn!(
            stage,
            "drain deadline passed; the uncommitted input will be replayed"
        ),
    }
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        // Nothing stored since the last commit: nothing to replay either.
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {
            tracing::debug!(
                stage,
                "final commit: no offsets stored since the last commit"
            );
        }
        Err(e) => {
            tracing::warn!(stage, error = %e, "final commit failed; the uncommitted input will be replayed");
        }
    }
    let _ = producer.flush(Duration::from_secs(5));
    tracing::info!(stage, "stopped");
    Ok(())
}

/// Tells the processor about partitions revoked since the last call, forgets their
/// offsets, and drops their records from `batch` (all read before the revocation): their
/// next owner — maybe this instance again — replays them from the committed offset, so
/// processing them here would duplicate them.
fn apply_revocations<P: Processor>(
    consumer: &StreamConsumer<StageContext>,
    processor: &mut P,
    offsets: &mut OffsetTracker,
    batch: &mut Vec<BorrowedMessage<'_>>,
) {
    let revoked = consumer.context().take_revoked();
    if revoked.is_empty() {
        return;
    }
    processor.on_revoked(&revoked);
    offsets.forget(&revoked);
    batch.retain(|m| {
        !revoked
            .iter()
            .any(|tp| tp.partition == m.partition() && tp.topic == m.topic())
    });
}

fn store<P: Processor>(
    consumer: &StreamConsumer<StageContext>,
    offsets: &mut OffsetTracker,
    processor: &P,
    stage: &str,
) {
    let list = offsets.take_storable(processor);
    if list.count() == 0 {
        return;
    }
    if let Err(e) = consumer.store_offsets(&list) {
        // Happens when a partition was revoked meanwhile: its next owner replays.
        tracing::debug!(stage, error = %e, "could not store offsets");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Holding(Option<i64>);
    impl Processor for Holding {
        fn process(&mut self, _: &Input<'_>, _: &mut Outputs) -> Result<(), Rejection> {
            Ok(())
        }
        fn held_from(&self, _: &TopicPartition) -> Option<i64> {
            self.0
        }
    }

    fn stored(list: &TopicPartitionList) -> Vec<(String, i32, i64)> {
        list.elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.topic().to_owned(), e.partition(), o)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn offsets_wait_for_held_records_and_never_go_back() {
        let tp = TopicPartition {
            topic: "t".into(),
            partition: 0,
        };
        let mut tracker = OffsetTracker::default();
        tracker.next.insert(tp.clone(), 100);
        assert_eq!(
            stored(&tracker.take_storable(&Holding(Some(40)))),
            vec![("t".into(), 0, 40)]
        );
        // Nothing new to store while the held record stays.
        assert!(stored(&tracker.take_storable(&Holding(Some(40)))).is_empty());
        // A processor that reports an older hold cannot move the stored offset back.
        assert!(stored(&tracker.take_storable(&Holding(Some(10)))).is_empty());
        assert_eq!(
            stored(&tracker.take_storable(&Holding(None))),
            vec![("t".into(), 0, 100)]
        );
        tracker.forget(std::slice::from_ref(&tp));
        assert!(stored(&tracker.take_storable(&Holding(None))).is_empty());
    }
}
