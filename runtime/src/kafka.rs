//! Kafka clients configured for the offset protocol.
//!
//! Consumer: `enable.auto.offset.store=false`, so librdkafka commits only offsets the stage
//! stored explicitly — after the output they produced was acknowledged — and
//! `enable.auto.commit=true` to commit those periodically and on partition revoke.
//! Producer: idempotent (`acks=all`, no duplicates from librdkafka's own retries) and
//! `message.timeout.ms=0`: while a broker is down, sends wait instead of failing, the stage
//! stops reading (its batch is not acknowledged), and nothing is lost or skipped.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::producer::FutureProducer;
use rdkafka::topic_partition_list::TopicPartitionList;

use crate::config::KafkaSettings;
use crate::http::Readiness;
use crate::processor::TopicPartition;

/// Headers stamped on every produced record: where it came from.
pub const ORIGIN_TOPIC_HEADER: &str = "flowlake.origin.topic";
/// Origin partition header (decimal text).
pub const ORIGIN_PARTITION_HEADER: &str = "flowlake.origin.partition";
/// Origin offset header (decimal text).
pub const ORIGIN_OFFSET_HEADER: &str = "flowlake.origin.offset";

/// Rebalance bookkeeping shared between librdkafka's callback thread and the stage loop.
pub struct StageContext {
    stage: &'static str,
    revoked: Mutex<Vec<TopicPartition>>,
    readiness: Readiness,
}

impl StageContext {
    fn new(stage: &'static str, readiness: Readiness) -> Self {
        StageContext {
            stage,
            revoked: Mutex::new(Vec::new()),
            readiness,
        }
    }

    /// Partitions revoked since the last call.
    pub fn take_revoked(&self) -> Vec<TopicPartition> {
        match self.revoked.lock() {
            Ok(mut r) => std::mem::take(&mut *r),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
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
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let revoked = partitions(list);
            tracing::info!(stage = self.stage, partitions = ?revoked, "partitions revoked");
            match self.revoked.lock() {
                Ok(mut r) => r.extend(revoked),
                Err(poisoned) => poisoned.into_inner().extend(revoked),
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                tracing::info!(stage = self.stage, partitions = ?partitions(list), "partitions assigned");
                self.readiness.set(true);
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => {
                tracing::warn!(stage = self.stage, error = %e, "rebalance error")
            }
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
) -> KafkaResult<StreamConsumer<StageContext>> {
    let group = settings
        .group_id
        .clone()
        .unwrap_or_else(|| format!("flowlake-{stage}"));
    let mut config = base_config(settings);
    config
        .set("group.id", &group)
        .set("enable.auto.commit", "true")
        .set(
            "auto.commit.interval.ms",
            commit_interval.as_millis().to_string(),
        )
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    // Defaults a user may override through kafka.properties.
    set_default(&mut config, settings, "auto.offset.reset", "earliest");
    // Feeds the consumer-lag gauge (StageContext::stats).
    set_default(&mut config, settings, "statistics.interval.ms", "15000");
    apply_properties(&mut config, &settings.properties);
    tracing::info!(stage, group, brokers = settings.brokers, properties = ?settings.redacted_properties(), "creating consumer");
    config.create_with_context(StageContext::new(stage, readiness))
}

/// Idempotent producer.
pub fn producer(settings: &KafkaSettings) -> KafkaResult<FutureProducer> {
    let mut config = base_config(settings);
    set_default(&mut config, settings, "enable.idempotence", "true");
    set_default(&mut config, settings, "message.timeout.ms", "0");
    set_default(&mut config, settings, "linger.ms", "5");
    set_default(&mut config, settings, "compression.type", "lz4");
    apply_properties(&mut config, &settings.properties);
    config.create()
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
