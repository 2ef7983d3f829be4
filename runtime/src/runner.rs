//! The stage loop: read a batch, run the processor, send its output; at a checkpoint —
//! whenever the stage has caught up with its input, and at least every
//! `checkpoint_interval` while it has not — wait for every acknowledgement, checkpoint,
//! then store offsets. Between checkpoints the next batch is read and processed while the
//! previous ones are acknowledged.
//!
//! Invariants (what makes "nothing lost, nothing counted twice" hold without Kafka
//! transactions):
//! - an input record whose origin coordinates are at or below its partition's marks is a
//!   replay of one already applied and is dropped before the processor sees it
//!   ([`crate::marks`]);
//! - an input partition's checkpoint — resume offset, marks as of it, processor state —
//!   is written only after every record produced before it, outputs and dead letters, is
//!   acknowledged (a crash between checkpoints replays what came after the last one, as
//!   it would one batch), and the consumer offset is stored only after its checkpoint is
//!   acknowledged ([`crate::checkpoint`]); a new owner resumes from the checkpoint;
//! - input partitions are processed in order, so a replay from a checkpoint re-produces the
//!   same records with the same coordinates, which the next stage drops;
//! - a bad record is dead-lettered byte for byte with its reason, and its offset moves on
//!   only with the DLQ write acknowledged;
//! - a broker outage blocks the batch (idempotent producer with no message timeout), which
//!   stops the reading: backpressure, not loss or a crash loop.
//!
//! Shutdown (SIGTERM/SIGINT): stop reading, let the processor emit what it may
//! (`on_shutdown`), wait for acknowledgements up to the drain deadline, checkpoint, store
//! and commit synchronously, return.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{CLAIM_REFRESH, CheckpointError, CheckpointStore};
use crate::config::{KafkaSettings, RuntimeSettings};
use crate::delivery::{self, OutputProducer, Produce};
pub use crate::delivery::{
    DLQ_ERROR_CLASS, DLQ_ERROR_MESSAGE, DLQ_FORMAT, DLQ_SOURCE_OFFSET, DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_TOPIC, DLQ_STAGE,
};
pub use crate::error::RuntimeError;
use crate::http::Readiness;
use crate::kafka::{self, StageContext};
use crate::metrics::StageMetrics;
use crate::owned::{Admission, DueCheckpoint, OwnedPartitions};
use crate::processor::{Input, Outputs, Processor, ProcessorError, TopicPartition};

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
    let group = kafka::group_id(stage, kafka_settings);
    ensure_checkpoint_topic(kafka_settings, &settings.checkpoint_topic, &shutdown).await?;
    let checkpoints = Arc::new(
        CheckpointStore::new(kafka_settings, &group, &settings.checkpoint_topic)
            .map_err(RuntimeError::Client)?,
    );
    let consumer: StreamConsumer<StageContext> = kafka::consumer(
        stage,
        kafka_settings,
        settings.commit_interval,
        readiness.clone(),
        Arc::clone(&checkpoints),
    )
    .map_err(RuntimeError::Client)?;
    let topics: Vec<&str> = spec.input_topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(RuntimeError::Client)?;
    let mut producer = OutputProducer::new(kafka_settings).map_err(RuntimeError::Client)?;
    let mut metrics = StageMetrics::new(stage);
    let mut owned = OwnedPartitions::default();
    let mut origin_topics: Vec<Arc<str>> = Vec::new();
    let mut tick = tokio::time::interval(settings.tick_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_refresh = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut crash_point = CrashPoint::from_env();
    // Checkpoints were written and ownership not yet confirmed past them (see `commit`).
    let mut unconfirmed = false;
    tracing::info!(stage, group, topics = ?spec.input_topics, checkpoints = settings.checkpoint_topic, "stage running");

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
            // (batch length when seen, partition) of every end of partition reached.
            let mut ends: Vec<(usize, i32)> = Vec::new();
            let mut next = first;
            // Whether the batch ended because nothing more was ready (or on a tick): the
            // stage has caught up, which is when it checkpoints.
            let mut caught_up = true;
            while let Some(received) = next {
                // librdkafka runs rebalance callbacks inside the poll that returned this
                // message, and purges what it had fetched for partitions it takes away: a
                // revocation applies to the messages collected *before* this one, never to
                // this one or later ones (which may come from a partition just re-assigned).
                apply_rebalance(&consumer, &mut processor, &mut owned, &mut batch)?;
                match received {
                    Ok(message) => batch.push(message),
                    Err(KafkaError::PartitionEOF(partition)) => ends.push((batch.len(), partition)),
                    Err(e) => {
                        metrics.consumer_errors.increment(1);
                        tracing::warn!(stage, error = %e, "consumer error (librdkafka retries)");
                        break;
                    }
                }
                if batch.len() >= settings.batch_max_records {
                    caught_up = false;
                    break;
                }
                next = consumer.recv().now_or_never();
            }
            apply_rebalance(&consumer, &mut processor, &mut owned, &mut batch)?;

            let mut out = Outputs::with_capacity(batch.len());
            let mut produce: Vec<Produce> = Vec::new();
            // (topic, records) of this batch: a handful of entries.
            let mut read: Vec<(&str, u64)> = Vec::new();
            let mut replayed = 0u64;
            for message in &batch {
                match read.iter_mut().find(|(topic, _)| *topic == message.topic()) {
                    Some((_, count)) => *count += 1,
                    None => read.push((message.topic(), 1)),
                }
                let origin = delivery::origin_of(message, &mut origin_topics);
                match owned.admit(message.topic(), message.partition(), message.offset(), origin.as_ref()) {
                    Admission::Apply => {}
                    Admission::Replay => {
                        replayed += 1;
                        continue;
                    }
                    Admission::NotOwned => continue,
                }
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
                    produce.push(delivery::dead_letter(stage, &spec.dlq_topic, message, &rejection));
                }
            }
            for (topic, count) in &read {
                metrics.records_in(topic).increment(*count);
            }
            if replayed > 0 {
                metrics.replayed.increment(replayed);
                tracing::info!(stage, replayed, "dropped records an upstream replay had already delivered");
            }
            // A partition is at its end when nothing of it came after its end was reported.
            for &(at, partition) in &ends {
                if batch[at..].iter().any(|m| m.partition() == partition) {
                    continue;
                }
                for topic in &spec.input_topics {
                    let tp = TopicPartition {
                        topic: topic.clone(),
                        partition,
                    };
                    if owned.owns(&tp) {
                        processor.on_end_of_partition(&tp);
                    }
                }
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
            producer.send(records).await?;
            if !batch.is_empty() {
                metrics.batch_seconds.record(started.elapsed().as_secs_f64());
            }
            drop(batch);
            if !caught_up
                && !processor.awaits_checkpoint()
                && last_checkpoint.elapsed() < settings.checkpoint_interval
            {
                continue;
            }
            // A checkpoint: everything sent so far must be durable first. While the broker
            // does not answer this waits (backpressure); a shutdown meanwhile goes on to
            // the drain, which waits again up to its deadline.
            let produced = producer.has_unacknowledged();
            let waiting = Instant::now();
            tokio::select! {
                acknowledged = producer.acknowledged(&mut metrics) => acknowledged?,
                _ = shutdown.cancelled() => break,
            }
            metrics.ack_wait_seconds.record(waiting.elapsed().as_secs_f64());
            if produced {
                crash_point.passed();
            }
            last_checkpoint = Instant::now();
            let refresh = last_refresh.elapsed() >= CLAIM_REFRESH;
            if refresh {
                last_refresh = Instant::now();
                fence(&checkpoints, &mut owned, stage)?;
            }
            let due = owned.due_checkpoints(&processor, refresh);
            unconfirmed |= write_checkpoints(&checkpoints, &mut owned, due, &mut metrics).await?;
            commit(&mut processor, &checkpoints, &mut owned, &mut unconfirmed, stage, &shutdown).await?;
            store(&consumer, &mut owned, stage);
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
        // Twice: what the first call decides (a sink's last rolls) is checkpointed before
        // the second call acts on it.
        for _ in 0..2 {
            processor.on_shutdown(&mut out).await?;
            let records: Vec<Produce> = out.take().into_iter().map(Produce::from).collect();
            producer.send(records).await?;
            producer.acknowledged(&mut metrics).await?;
            let due = owned.due_checkpoints(&processor, false);
            unconfirmed |= write_checkpoints(&checkpoints, &mut owned, due, &mut metrics).await?;
            commit(
                &mut processor,
                &checkpoints,
                &mut owned,
                &mut unconfirmed,
                stage,
                &shutdown,
            )
            .await?;
        }
        Ok::<(), RuntimeError>(())
    })
    .await;
    match drained {
        Ok(Ok(())) => store(&consumer, &mut owned, stage),
        Ok(Err(e)) => {
            tracing::warn!(stage, error = %e, "drain failed; the input since the last checkpoint will be replayed")
        }
        Err(_) => tracing::warn!(
            stage,
            "drain deadline passed; the input since the last checkpoint will be replayed"
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
            tracing::warn!(stage, error = %e, "final commit failed; the input since the last checkpoint will be replayed");
        }
    }
    producer.flush(Duration::from_secs(5));
    tracing::info!(stage, "stopped");
    Ok(())
}

/// Environment variable of the crash tests' fault injection (see [`CrashPoint`]).
pub const CRASH_BEFORE_CHECKPOINT_ENV: &str = "FLOWLAKE_CRASH_BEFORE_CHECKPOINT";

/// Fault injection for crash tests: with `FLOWLAKE_CRASH_BEFORE_CHECKPOINT=N`, the process
/// aborts — no drain, no commit, like `kill -9` — right after the N-th checkpoint that had
/// output to wait for saw it acknowledged, and before the checkpoint is written: the one
/// moment where a crash leaves output downstream that the checkpoint does not cover, which a SIGKILL from
/// outside hits only by luck. Unset (always, in production), it costs one branch a batch.
struct CrashPoint {
    remaining: Option<u64>,
}

impl CrashPoint {
    fn from_env() -> Self {
        let remaining = std::env::var(CRASH_BEFORE_CHECKPOINT_ENV)
            .ok()
            .and_then(|v| v.parse().ok());
        if let Some(n) = remaining {
            tracing::warn!(
                batches = n,
                "{CRASH_BEFORE_CHECKPOINT_ENV} is set: this process will abort before a checkpoint"
            );
        }
        CrashPoint { remaining }
    }

    /// Output was acknowledged and a checkpoint is next.
    fn passed(&mut self) {
        if let Some(remaining) = &mut self.remaining {
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 {
                tracing::error!(
                    "{CRASH_BEFORE_CHECKPOINT_ENV}: aborting between output and its checkpoint"
                );
                std::process::abort();
            }
        }
    }
}

/// Creates the checkpoint topic when it does not exist (one partition; an existing topic
/// is used as it is). Retries while the broker does not answer, until `shutdown`.
async fn ensure_checkpoint_topic(
    settings: &KafkaSettings,
    topic: &str,
    shutdown: &CancellationToken,
) -> Result<(), RuntimeError> {
    let admin: AdminClient<DefaultClientContext> = kafka::admin_config(settings)
        .create()
        .map_err(RuntimeError::Client)?;
    let mut backoff = Duration::from_millis(200);
    loop {
        let exists = admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .is_ok_and(|m| {
                m.topics()
                    .iter()
                    .any(|t| t.name() == topic && !t.partitions().is_empty() && t.error().is_none())
            });
        if exists {
            return Ok(());
        }
        let new = NewTopic::new(topic, 1, TopicReplication::Fixed(-1));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        match admin.create_topics([&new], &options).await {
            Ok(results) => {
                let failed = results.into_iter().find_map(|r| match r {
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) | Ok(_) => None,
                    Err((_, code)) => Some(code),
                });
                match failed {
                    None => return Ok(()),
                    Some(code) => {
                        tracing::warn!(topic, error = %code, "cannot create the checkpoint topic; retrying")
                    }
                }
            }
            Err(e) => {
                tracing::warn!(topic, error = %e, "cannot create the checkpoint topic; retrying")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Writes the due checkpoints and waits for all acknowledgements; true when it wrote
/// any. (The processor is not borrowed across the wait: it need not be `Sync`.)
async fn write_checkpoints(
    checkpoints: &CheckpointStore,
    owned: &mut OwnedPartitions,
    due: Vec<DueCheckpoint>,
    metrics: &mut StageMetrics,
) -> Result<bool, RuntimeError> {
    if due.is_empty() {
        return Ok(false);
    }
    let writes = due
        .iter()
        .map(|d| checkpoints.write(&d.partition, &d.claim, d.resume.clone()));
    let results = futures::future::join_all(writes).await;
    for (checkpoint, result) in due.into_iter().zip(results) {
        result.map_err(RuntimeError::Checkpoint)?;
        metrics.checkpoints.increment(1);
        owned.written(checkpoint);
    }
    Ok(true)
}

/// Calls `on_committed` — for a processor that [acts on commit](Processor::acts_on_commit),
/// only once ownership of every owned partition is confirmed past the checkpoints written
/// (`unconfirmed` says whether some are not yet). While the broker does not answer, it
/// retries with backoff and the stage reads nothing more: a decision the last checkpoint
/// recorded (aggregate's idle close, a sink's roll) takes effect in the next batch, and it
/// must not before this instance knows that no newer owner missed it. On shutdown it
/// gives up, leaving the effects to whoever resumes from the checkpoint.
async fn commit<P: Processor>(
    processor: &mut P,
    checkpoints: &CheckpointStore,
    owned: &mut OwnedPartitions,
    unconfirmed: &mut bool,
    stage: &str,
    shutdown: &CancellationToken,
) -> Result<(), RuntimeError> {
    if processor.acts_on_commit() && *unconfirmed {
        let mut backoff = Duration::from_millis(200);
        while !fence(checkpoints, owned, stage)? {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        *unconfirmed = false;
    }
    processor.on_committed();
    Ok(())
}

/// Checks that no other instance claimed an owned partition since this one's claim was
/// last checked (reading the checkpoint topic from there to its end); true when checked.
/// A newer claim means this instance lost the partition without a revocation (a
/// `max.poll.interval.ms` kick, a network partition): the stage stops rather than write
/// more for it, and its restart rejoins the group with a fresh assignment. False when the
/// broker did not answer: the next check reads the same records again.
fn fence(
    checkpoints: &CheckpointStore,
    owned: &mut OwnedPartitions,
    stage: &str,
) -> Result<bool, RuntimeError> {
    let mut claims = owned.claims();
    if claims.is_empty() {
        return Ok(true);
    }
    match checkpoints.verify(&mut claims) {
        Ok(None) => {
            owned.checked(&claims);
            Ok(true)
        }
        Ok(Some(tp)) => Err(RuntimeError::Checkpoint(CheckpointError::Fenced {
            topic: tp.topic,
            partition: tp.partition,
        })),
        Err(e) => {
            tracing::warn!(stage, error = %e, "cannot check partition ownership");
            Ok(false)
        }
    }
}

/// Restores newly claimed partitions into the processor and drops revoked ones, and the
/// records of revoked partitions from `batch` (all read before the revocation): their
/// next owner — maybe this instance again — resumes from the checkpoint, so processing
/// them here would duplicate them.
fn apply_rebalance<P: Processor>(
    consumer: &StreamConsumer<StageContext>,
    processor: &mut P,
    owned: &mut OwnedPartitions,
    batch: &mut Vec<BorrowedMessage<'_>>,
) -> Result<(), RuntimeError> {
    let context = consumer.context();
    if let Some(failure) = context.take_failure() {
        return Err(RuntimeError::Checkpoint(failure));
    }
    let revoked = context.take_revoked();
    if !revoked.is_empty() {
        processor.on_revoked(&revoked);
        owned.forget(&revoked);
        batch.retain(|m| {
            !revoked
                .iter()
                .any(|tp| tp.partition == m.partition() && tp.topic == m.topic())
        });
    }
    for restored in context.take_restored() {
        processor.restore(&restored.partition, restored.resume.state.as_deref())?;
        owned.restore(restored);
    }
    Ok(())
}

fn store(consumer: &StreamConsumer<StageContext>, owned: &mut OwnedPartitions, stage: &str) {
    let storable = owned.storable();
    if storable.is_empty() {
        return;
    }
    let mut list = TopicPartitionList::new();
    for (tp, offset) in storable {
        // Only fails for a negative partition, which a consumer never hands us.
        let _ = list.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(offset));
    }
    if let Err(e) = consumer.store_offsets(&list) {
        // Happens when a partition was revoked meanwhile: its next owner resumes from the
        // checkpoint.
        tracing::debug!(stage, error = %e, "could not store offsets");
    }
}
