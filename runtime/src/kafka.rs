//! Kafka clients configured for the offset protocol.
//!
//! Assignment: librdkafka's rebalance callback ([`StageContext`]) claims every assigned
//! partition in the checkpoint topic ([`crate::checkpoint`]) and starts it at the
//! checkpoint's resume offset, before any of its records is fetched; the stage loop picks
//! the restored marks and state up ([`StageContext::take_restored`]) before it processes
//! a record of that partition.
//!
//! Consumer: `enable.auto.offset.store=false`, so librdkafka commits only offsets the stage
//! stored explicitly — after the output they produced was acknowledged — and
//! `enable.auto.commit=true` to commit those periodically and on partition revoke.
//! Producer: idempotent (`acks=all`, no duplicates from librdkafka's own retries) and
//! `message.timeout.ms=0`: while a broker is down, sends wait instead of failing, the stage
//! stops reading (its batch is not acknowledged), and nothing is lost or skipped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, Consumer, ConsumerContext, Rebalance, RebalanceProtocol, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::FutureProducer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;

use crate::checkpoint::{CheckpointError, CheckpointStore, Claim, Resume};
use crate::config::KafkaSettings;
use crate::http::Readiness;
use crate::processor::TopicPartition;

/// How long an assignment keeps trying to claim a partition before the stage gives up
/// (exit 1, so the group hands the partition to an instance that can).
const CLAIM_DEADLINE: Duration = Duration::from_secs(60);

/// Headers stamped on every produced record: where it came from.
pub const ORIGIN_TOPIC_HEADER: &str = "flowlake.origin.topic";
/// Origin partition header (decimal text).
pub const ORIGIN_PARTITION_HEADER: &str = "flowlake.origin.partition";
/// Origin offset header (decimal text).
pub const ORIGIN_OFFSET_HEADER: &str = "flowlake.origin.offset";
/// Origin sequence header (decimal text): the record's number among those produced from
/// its origin offset. Absent on records written before it existed (read as 0).
pub const ORIGIN_SEQ_HEADER: &str = "flowlake.origin.seq";

/// A partition assigned and claimed: what the stage resumes it with.
#[derive(Debug)]
pub struct Restored {
    /// The partition.
    pub partition: TopicPartition,
    /// This instance's claim.
    pub claim: Claim,
    /// The checkpoint it resumes from.
    pub resume: Resume,
}

/// Rebalance bookkeeping shared between librdkafka's callback thread and the stage loop.
pub struct StageContext {
    stage: &'static str,
    revoked: Mutex<Vec<TopicPartition>>,
    restored: Mutex<Vec<Restored>>,
    failure: Mutex<Option<CheckpointError>>,
    checkpoints: Arc<CheckpointStore>,
    readiness: Readiness,
}

fn take<T>(m: &Mutex<Vec<T>>) -> Vec<T> {
    match m.lock() {
        Ok(mut r) => std::mem::take(&mut *r),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    }
}

fn push<T>(m: &Mutex<Vec<T>>, items: impl IntoIterator<Item = T>) {
    match m.lock() {
        Ok(mut r) => r.extend(items),
        Err(poisoned) => poisoned.into_inner().extend(items),
    }
}

impl StageContext {
    fn new(stage: &'static str, readiness: Readiness, checkpoints: Arc<CheckpointStore>) -> Self {
        StageContext {
            stage,
            revoked: Mutex::new(Vec::new()),
            restored: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
            checkpoints,
            readiness,
        }
    }

    /// Partitions revoked since the last call.
    pub fn take_revoked(&self) -> Vec<TopicPartition> {
        take(&self.revoked)
    }

    /// Partitions assigned and claimed since the last call.
    pub fn take_restored(&self) -> Vec<Restored> {
        take(&self.restored)
    }

    /// A claim that failed for good: the stage must stop.
    pub fn take_failure(&self) -> Option<CheckpointError> {
        match self.failure.lock() {
            Ok(mut f) => f.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }

    /// Claims `tp`, retrying with backoff while the broker does not answer.
    fn claim(&self, tp: &TopicPartition) -> Result<(Claim, Resume), CheckpointError> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.checkpoints.claim(tp) {
                Ok(claimed) => return Ok(claimed),
                Err(e @ CheckpointError::Corrupt { .. }) => return Err(e),
                Err(e) if started.elapsed() > CLAIM_DEADLINE => return Err(e),
                Err(e) => {
                    tracing::warn!(stage = self.stage, topic = tp.topic, partition = tp.partition, error = %e, "cannot claim partition yet; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Claims every partition of `list` and moves each to its checkpoint's resume offset.
    fn claim_all(&self, list: &mut TopicPartitionList) -> Result<Vec<Restored>, CheckpointError> {
        let mut restored = Vec::new();
        for tp in partitions(list) {
            let (claim, resume) = self.claim(&tp)?;
            if let Some(offset) = resume.offset {
                // Only fails for a partition missing from the list, which cannot happen here.
                let _ = list.set_partition_offset(&tp.topic, tp.partition, Offset::Offset(offset));
            }
            tracing::info!(stage = self.stage, topic = tp.topic, partition = tp.partition, resume = ?resume.offset, marks = resume.marks.len(), "partition claimed");
            restored.push(Restored {
                partition: tp,
                claim,
                resume,
            });
        }
        Ok(restored)
    }
}

fn partitions(list: &TopicPartitionList) -> Vec<TopicPartition> {
    list.elements()
        .iter()
        .map(|e| TopicPartition {
            topic: e.topic().to_owned(),
            partition: e.partition(),
        })
        .collect()
}

impl ClientContext for StageContext {
    /// librdkafka's statistics, every `statistics.interval.ms`: per-partition consumer lag
    /// (high watermark minus the committed offset), reported without any extra broker call.
    fn stats(&self, statistics: rdkafka::Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                // Partition -1 is librdkafka's internal UA partition; a lag of -1 is unknown.
                if *partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                metrics::gauge!(
                    format!("flowlake_{}_consumer_lag_records", self.stage),
                    "topic" => topic.clone(),
                    "partition" => partition.to_string()
                )
                .set(p.consumer_lag as f64);
            }
        }
    }

    /// rdkafka hands every error event to this callback before the consumer returns it; the
    /// end of a partition (`enable.partition.eof`) is how the runner learns a partition is
    /// caught up, not an error, so it is not logged as one.
    fn error(&self, error: KafkaError, reason: &str) {
        if crate::end_of_partition::is_end_of_partition(&error) {
            tracing::trace!(stage = self.stage, reason, "end of partition");
            return;
        }
        tracing::error!(stage = self.stage, error = %error, reason, "librdkafka");
    }

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(stage = self.stage, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(stage = self.stage, facility, "librdkafka: {message}")
            }
            _ => tracing::debug!(stage = self.stage, facility, "librdkafka: {message}"),
        }
    }
}

impl ConsumerContext for StageContext {
    /// Librdkafka's default rebalance, except that assigned partitions are claimed and
    /// start at their checkpoint (see the module doc). A claim that keeps failing assigns
    /// nothing and makes the stage stop, rather than read a partition without its marks.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        list: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                tracing::info!(stage = self.stage, partitions = ?partitions(list), "partitions assigned");
                match self.claim_all(list) {
                    Ok(restored) => {
                        push(&self.restored, restored);
                        let assigned = if cooperative {
                            consumer.incremental_assign(list)
                        } else {
                            consumer.assign(list)
                        };
                        if let Err(e) = assigned {
                            tracing::error!(stage = self.stage, error = %e, "cannot assign partitions");
                        }
                        self.readiness.set(true);
                    }
                    Err(e) => {
                        tracing::error!(stage = self.stage, error = %e, "cannot claim assigned partitions; stopping");
                        match self.failure.lock() {
                            Ok(mut f) => *f = Some(e),
                            Err(poisoned) => *poisoned.into_inner() = Some(e),
                        }
                    }
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let revoked = partitions(list);
                tracing::info!(stage = self.stage, partitions = ?revoked, "partitions revoked");
                push(&self.revoked, revoked);
                let unassigned = if cooperative {
                    consumer.incremental_unassign(list)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = unassigned {
                    tracing::warn!(stage = self.stage, error = %e, "cannot unassign partitions");
                }
            }
            other => {
                let code: rdkafka::types::RDKafkaErrorCode = other.into();
                tracing::warn!(stage = self.stage, error = %code, "rebalance error");
                let _ = consumer.unassign();
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Error(e) = rebalance {
            tracing::warn!(stage = self.stage, error = %e, "rebalance error")
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            // A failed commit loses nothing (the offsets are committed next time, and the
            // input is replayed from the last committed one at worst); say so once.
            tracing::warn!(stage = self.stage, error = %e, "offset commit failed; will retry on the next interval");
        }
    }
}

/// Consumer for `stage` on `topics`.
pub fn consumer(
    stage: &'static str,
    settings: &KafkaSettings,
    commit_interval: std::time::Duration,
    readiness: Readiness,
    checkpoints: Arc<CheckpointStore>,
) -> KafkaResult<StreamConsumer<StageContext>> {
    let group = group_id(stage, settings);
    let mut config = base_config(settings);
    config
        .set("group.id", &group)
        .set("enable.auto.commit", "true")
        .set(
            "auto.commit.interval.ms",
            commit_interval.as_millis().to_string(),
        )
        .set("enable.auto.offset.store", "false")
        // The end of a partition is reported (`Processor::on_end_of_partition`): a stage
        // takes clock-driven decisions (aggregate's idle close) only when caught up, never
        // while replaying what a previous owner already processed.
        .set("enable.partition.eof", "true");
    // Defaults a user may override through kafka.properties.
    set_default(&mut config, settings, "auto.offset.reset", "earliest");
    // Feeds the consumer-lag gauge (StageContext::stats).
    set_default(&mut config, settings, "statistics.interval.ms", "15000");
    // Failover: a crashed instance's partitions stay unconsumed until its session expires.
    // librdkafka's 45 s default is that long an outage of those partitions after every
    // crash; 10 s (heartbeats every second) hands them over in ~10-15 s. Rebalances are
    // cheap and exact here (claims and checkpoints), so a spurious one costs little.
    set_default(&mut config, settings, "session.timeout.ms", "10000");
    set_default(&mut config, settings, "heartbeat.interval.ms", "1000");
    apply_properties(&mut config, &settings.properties);
    tracing::info!(stage, group, brokers = settings.brokers, properties = ?settings.redacted_properties(), "creating consumer");
    config.create_with_context(StageContext::new(stage, readiness, checkpoints))
}

/// The consumer group of `stage`.
pub fn group_id(stage: &str, settings: &KafkaSettings) -> String {
    settings
        .group_id
        .clone()
        .unwrap_or_else(|| format!("flowlake-{stage}"))
}

/// Idempotent producer.
pub fn producer(settings: &KafkaSettings) -> KafkaResult<FutureProducer> {
    producer_config(settings).create()
}

/// The idempotent producer's configuration (with the user's `kafka.properties`).
pub fn producer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = base_config(settings);
    set_default(&mut config, settings, "enable.idempotence", "true");
    set_default(&mut config, settings, "message.timeout.ms", "0");
    set_default(&mut config, settings, "linger.ms", "5");
    set_default(&mut config, settings, "compression.type", "lz4");
    apply_properties(&mut config, &settings.properties);
    config
}

/// Admin client config (creates the checkpoint topic).
pub fn admin_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = base_config(settings);
    apply_properties(&mut config, &settings.properties);
    config
}

fn base_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &settings.brokers);
    config
}

fn set_default(config: &mut ClientConfig, settings: &KafkaSettings, key: &str, value: &str) {
    if !settings.properties.contains_key(key) {
        config.set(key, value);
    }
}

fn apply_properties(config: &mut ClientConfig, properties: &BTreeMap<String, String>) {
    for (k, v) in properties {
        config.set(k, v);
    }
}
