//! Checkpoints: per input partition, where to resume and what to resume with, kept in a
//! Kafka topic so that exactly-once effect needs no transactions and no broker feature
//! beyond produce and fetch.
//!
//! A checkpoint of input partition `p` of group `g` holds the resume offset, the replay
//! marks as of that offset ([`crate::marks`]) and the processor's resume state. It is
//! produced and acknowledged after every output it covers, and before the consumer offset
//! is stored; the consumer offset is then only for lag. Records are keyed
//! `g/topic/partition`, each in its own producer batch (some brokers cannot resume
//! inside a batch), on the partition of the checkpoint topic the key hashes to.
//!
//! Ownership and fencing: every record carries the **epoch** of its owner's claim. An
//! instance that is assigned `p` reads the latest valid checkpoint and appends a claim —
//! a record of kind `claim` with the next epoch, repeating the checkpoint it restored.
//! The valid checkpoint is the latest record of the highest epoch: anything an earlier
//! owner writes after a newer claim (an instance that lost the partition and does not
//! know it yet) has a lower epoch and is ignored by every reader. An owner re-appends its
//! checkpoint at least every [`CLAIM_REFRESH`], after checking that no record of a newer
//! epoch (or of its own epoch by another owner) came after its own; if one did, the
//! partition is lost and the stage stops so that it rejoins its group cleanly. A reader
//! therefore finds the current owner's records within the last [`CLAIM_REFRESH`] of the
//! topic, and a stale owner's writes at most [`STALE_WRITES`] after the claim that
//! superseded it: its backward scan stops once it has covered that span before the newest
//! record of the partition.
//!
//! Effects outside Kafka (a sink's objects, aggregate's business counters) are fenced by
//! the log's order. An owner acts on a checkpoint only after [`CheckpointStore::verify`]
//! has read the topic past it and found no newer claim; a claimant, once its claim is
//! appended, reads again up to it and resumes from the latest record of the highest epoch
//! before it. So a checkpoint the old owner acted on precedes the newer claim and is what
//! the new owner resumes from (the same rolls, the same objects), and one written after
//! the newer claim is never acted on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::config::KafkaSettings;
use crate::marks::{Coordinates, OriginPartition};
use crate::processor::TopicPartition;

pub use crate::config::DEFAULT_CHECKPOINT_TOPIC;

/// How often an owner re-appends its claim (after checking it still owns the partition),
/// so the latest claim is never far from the end of the topic for an owned partition.
pub const CLAIM_REFRESH: Duration = Duration::from_secs(30);

/// How long after a newer claim a stale owner may still write (its next ownership check,
/// plus a batch in flight): the reader scans back this far past the newest record it
/// finds, so the highest epoch is never missed.
pub const STALE_WRITES: Duration = Duration::from_secs(300);

/// How long a checkpoint read or write may take before it is reported as failed.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The broker did not answer or refused (retryable).
    #[error("checkpoint topic {topic}: {source}")]
    Kafka {
        /// Checkpoint topic.
        topic: String,
        /// Client error.
        #[source]
        source: KafkaError,
    },
    /// A record of the checkpoint topic is not a checkpoint this version understands.
    #[error("checkpoint topic {topic} offset {offset}: {reason}")]
    Corrupt {
        /// Checkpoint topic.
        topic: String,
        /// Offset of the bad record.
        offset: i64,
        /// What is wrong.
        reason: String,
    },
    /// Another instance claimed a partition this one still processes (this one lost it
    /// without a revocation: a `max.poll.interval.ms` kick, a network partition).
    #[error(
        "partition {topic}/{partition} was claimed by another instance; stopping so that this one rejoins its group"
    )]
    Fenced {
        /// Input topic.
        topic: String,
        /// Input partition.
        partition: i32,
    },
    /// Reading the checkpoint topic did not finish in time.
    #[error("checkpoint topic {topic}: no answer within {timeout:?}")]
    Timeout {
        /// Checkpoint topic.
        topic: String,
        /// The limit.
        timeout: Duration,
    },
}

/// Kind of a checkpoint record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A new owner took the partition (or an owner refreshed its claim).
    Claim,
    /// Progress of the current owner.
    Checkpoint,
}

/// One mark: the highest coordinates applied from one origin partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkRecord {
    /// Origin topic.
    pub topic: String,
    /// Origin partition.
    pub partition: i32,
    /// Origin offset.
    pub offset: i64,
    /// Sequence number within the origin offset.
    pub seq: u32,
}

/// What a stage resumes a partition with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resume {
    /// First input offset to read; None: from the group's committed offset (no
    /// checkpoint was ever written for this partition).
    pub offset: Option<i64>,
    /// Marks as of `offset`.
    pub marks: Vec<MarkRecord>,
    /// The processor's state as of `offset` (its own JSON), if it keeps any.
    pub state: Option<String>,
}

impl Resume {
    /// Marks in the form the runtime keeps them.
    pub fn origin_marks(&self) -> Vec<(OriginPartition, Coordinates)> {
        self.marks
            .iter()
            .map(|m| {
                (
                    OriginPartition {
                        topic: Arc::from(m.topic.as_str()),
                        partition: m.partition,
                    },
                    Coordinates {
                        offset: m.offset,
                        seq: m.seq,
                    },
                )
            })
            .collect()
    }

    /// The record form of `marks`.
    pub fn mark_records(marks: &[(OriginPartition, Coordinates)]) -> Vec<MarkRecord> {
        marks
            .iter()
            .map(|(origin, c)| MarkRecord {
                topic: origin.topic.to_string(),
                partition: origin.partition,
                offset: c.offset,
                seq: c.seq,
            })
            .collect()
    }
}

/// A record of the checkpoint topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointRecord {
    /// Format version (1).
    pub version: u32,
    /// Claim or checkpoint.
    pub kind: RecordKind,
    /// The owner that wrote it: unique per claim.
    pub owner: String,
    /// The epoch of the owner's claim: one more than the highest epoch before it.
    pub epoch: u64,
    /// Consumer group.
    pub group: String,
    /// Input topic.
    pub topic: String,
    /// Input partition.
    pub partition: i32,
    /// Where and with what to resume.
    pub resume: Resume,
}

/// Where an owner's claim of a partition sits, for fencing checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The owner id written in the claim.
    pub owner: String,
    /// The claim's epoch.
    pub epoch: u64,
    /// Offset in the checkpoint topic through which this owner's ownership has been
    /// checked (its claim record, then the end of each successful [`CheckpointStore::verify`]):
    /// ownership checks read from the next offset, so no record after the claim goes
    /// unchecked — not even one between two of this owner's own checkpoints.
    pub offset: i64,
    /// Partition of the checkpoint topic holding this key.
    pub checkpoint_partition: i32,
}

/// A record read back: (offset, key, Kafka timestamp in ms, record).
type ReadRecord = (i64, String, Option<i64>, CheckpointRecord);

/// Reads and writes one group's checkpoints.
pub struct CheckpointStore {
    topic: String,
    group: String,
    producer: FutureProducer,
    reader: BaseConsumer<ReaderContext>,
    /// Partition count of the checkpoint topic (fetched once).
    partitions: std::sync::OnceLock<i32>,
    /// Distinguishes this process's claims from every other's.
    instance: String,
    claims: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for CheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointStore")
            .field("topic", &self.topic)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl CheckpointStore {
    /// A store for `group` on `topic`, with clients built from `settings`.
    pub fn new(settings: &KafkaSettings, group: &str, topic: &str) -> Result<Self, KafkaError> {
        let mut producer = ClientConfig::new();
        producer.set("bootstrap.servers", &settings.brokers);
        for (k, v) in &settings.properties {
            // Only connection settings (TLS, SASL) apply to the checkpoint clients.
            if is_connection_property(k) {
                producer.set(k, v);
            }
        }
        let mut reader = producer.clone();
        producer
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "0")
            // One record per batch: a reader resuming inside a batch must not miss records
            // on brokers that skip the rest of a batch (see README, "Brokers").
            .set("linger.ms", "0")
            .set("batch.num.messages", "1")
            .set("message.max.bytes", "10000000");
        reader
            .set("group.id", format!("{group}.checkpoint-reader"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", "50")
            .set("fetch.message.max.bytes", "10000000");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Ok(CheckpointStore {
            topic: topic.to_owned(),
            group: group.to_owned(),
            producer: producer.create()?,
            reader: reader.create_with_context(ReaderContext)?,
            partitions: std::sync::OnceLock::new(),
            instance: format!("{}-{nanos:x}", std::process::id()),
            claims: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The checkpoint topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    fn kafka(&self, source: KafkaError) -> CheckpointError {
        CheckpointError::Kafka {
            topic: self.topic.clone(),
            source,
        }
    }

    fn key(&self, tp: &TopicPartition) -> String {
        format!("{}/{}/{}", self.group, tp.topic, tp.partition)
    }

    /// The partition of the checkpoint topic that holds `tp`'s records.
    fn checkpoint_partition(&self, key: &str) -> Result<i32, CheckpointError> {
        if let Some(&count) = self.partitions.get() {
            return Ok(partition_for(key, count));
        }
        let metadata = self
            .reader
            .fetch_metadata(Some(&self.topic), IO_TIMEOUT)
            .map_err(|e| self.kafka(e))?;
        let count = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.topic)
            .map_or(0, |t| t.partitions().len());
        if count == 0 {
            return Err(CheckpointError::Kafka {
                topic: self.topic.clone(),
                source: KafkaError::MetadataFetch(
                    rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
                ),
            });
        }
        let count = i32::try_from(count).unwrap_or(i32::MAX);
        let _ = self.partitions.set(count);
        Ok(partition_for(key, count))
    }

    /// Takes ownership of `tp`: reads its latest valid checkpoint and appends a claim that
    /// repeats it. Blocking (called from the rebalance callback).
    pub fn claim(&self, tp: &TopicPartition) -> Result<(Claim, Resume), CheckpointError> {
        let key = self.key(tp);
        let partition = self.checkpoint_partition(&key)?;
        let (latest, read_to) = self.read_latest(&key, partition)?;
        let epoch = latest.as_ref().map_or(0, |r| r.epoch) + 1;
        let resume = latest
            .as_ref()
            .map(|r| r.resume.clone())
            .unwrap_or_default();
        let n = self
            .claims
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let owner = format!("{}-{n}", self.instance);
        let record = CheckpointRecord {
            version: 1,
            kind: RecordKind::Claim,
            owner: owner.clone(),
            epoch,
            group: self.group.clone(),
            topic: tp.topic.clone(),
            partition: tp.partition,
            resume: resume.clone(),
        };
        let offset = futures::executor::block_on(self.append(&key, partition, &record))?;
        let claim = Claim {
            owner,
            epoch,
            offset,
            checkpoint_partition: partition,
        };
        // The previous owner may have appended a checkpoint between the read above and
        // this claim (it does not know yet that it lost the partition). Written before the
        // claim, it is valid — and that owner may act on it (a sink writes the objects it
        // records, once it has checked that no newer claim precedes its next read) — so
        // the resume is the latest record of the highest epoch before the claim, read again
        // up to it.
        let mut resumed = latest;
        for (_, k, _, record) in self.read_range(partition, read_to, offset)? {
            if k == key && resumed.as_ref().is_none_or(|r| record.epoch >= r.epoch) {
                resumed = Some(record);
            }
        }
        let resumed = resumed.map(|r| r.resume).unwrap_or_default();
        if resumed != resume {
            tracing::info!(
                topic = tp.topic,
                partition = tp.partition,
                "the previous owner checkpointed while this instance claimed the partition; resuming from that checkpoint"
            );
            futures::executor::block_on(self.write(tp, &claim, resumed.clone()))?;
        }
        Ok((claim, resumed))
    }

    /// Appends a checkpoint of `tp` for `claim`'s owner; resolves with its offset in the
    /// checkpoint topic when acknowledged.
    pub async fn write(
        &self,
        tp: &TopicPartition,
        claim: &Claim,
        resume: Resume,
    ) -> Result<i64, CheckpointError> {
        let record = CheckpointRecord {
            version: 1,
            kind: RecordKind::Checkpoint,
            owner: claim.owner.clone(),
            epoch: claim.epoch,
            group: self.group.clone(),
            topic: tp.topic.clone(),
            partition: tp.partition,
            resume,
        };
        self.append(&self.key(tp), claim.checkpoint_partition, &record)
            .await
    }

    async fn append(
        &self,
        key: &str,
        partition: i32,
        record: &CheckpointRecord,
    ) -> Result<i64, CheckpointError> {
        let payload = serde_json::to_vec(record).map_err(|e| CheckpointError::Corrupt {
            topic: self.topic.clone(),
            offset: -1,
            reason: format!("cannot encode: {e}"),
        })?;
        let delivery = self
            .producer
            .send_result(
                FutureRecord::to(&self.topic)
                    .key(key)
                    .partition(partition)
                    .payload(&payload),
            )
            .map_err(|(e, _)| self.kafka(e))?;
        match delivery.await {
            Ok(Ok(delivered)) => Ok(delivered.offset),
            Ok(Err((e, _))) => Err(self.kafka(e)),
            Err(_) => Err(self.kafka(KafkaError::Canceled)),
        }
    }

    /// True while no record of `tp` with a newer epoch, or of the same epoch by another
    /// owner, came after `claim`'s checked offset (blocking read of the checkpoint topic
    /// from there on; [`CheckpointStore::verify`] for several claims at once).
    pub fn still_owner(&self, tp: &TopicPartition, claim: &Claim) -> Result<bool, CheckpointError> {
        let mut claims = [(tp.clone(), claim.clone())];
        Ok(self.verify(&mut claims)?.is_none())
    }

    /// Checks every claim in `claims` through the current end of the checkpoint topic,
    /// one read per checkpoint partition: returns the first partition another instance
    /// claimed since its claim was last checked, or None when all are still owned — and
    /// then moves each claim's checked offset to the end read. Blocking.
    pub fn verify(
        &self,
        claims: &mut [(TopicPartition, Claim)],
    ) -> Result<Option<TopicPartition>, CheckpointError> {
        let mut partitions: Vec<i32> = claims.iter().map(|(_, c)| c.checkpoint_partition).collect();
        partitions.sort_unstable();
        partitions.dedup();
        for partition in partitions {
            let (_, high) = self
                .reader
                .fetch_watermarks(&self.topic, partition, IO_TIMEOUT)
                .map_err(|e| self.kafka(e))?;
            let from = claims
                .iter()
                .filter(|(_, c)| c.checkpoint_partition == partition)
                .map(|(_, c)| c.offset + 1)
                .min()
                .unwrap_or(high);
            let records = self.read_range(partition, from, high)?;
            for (tp, claim) in claims
                .iter()
                .filter(|(_, c)| c.checkpoint_partition == partition)
            {
                let key = self.key(tp);
                let lost = records.iter().any(|(offset, k, _, r)| {
                    *offset > claim.offset
                        && *k == key
                        && (r.epoch > claim.epoch
                            || (r.epoch == claim.epoch && r.owner != claim.owner))
                });
                if lost {
                    return Ok(Some(tp.clone()));
                }
            }
            for (_, claim) in claims
                .iter_mut()
                .filter(|(_, c)| c.checkpoint_partition == partition)
            {
                claim.offset = claim.offset.max(high - 1);
            }
        }
        Ok(None)
    }

    /// The valid checkpoint of `key`: the latest record of the highest epoch. Scans back
    /// from the end of the partition in growing windows until it has found a record of
    /// `key` and covered [`STALE_WRITES`] before the newest one found.
    /// Also returns the end of the partition the scan started from.
    fn read_latest(
        &self,
        key: &str,
        partition: i32,
    ) -> Result<(Option<CheckpointRecord>, i64), CheckpointError> {
        let (low, high) = self
            .reader
            .fetch_watermarks(&self.topic, partition, IO_TIMEOUT)
            .map_err(|e| self.kafka(e))?;
        let stale_millis = i64::try_from(STALE_WRITES.as_millis()).unwrap_or(i64::MAX);
        let mut end = high;
        let mut window: i64 = 256;
        let mut best: Option<CheckpointRecord> = None;
        let mut newest_millis: Option<i64> = None;
        while end > low {
            let start = end.saturating_sub(window).max(low);
            let records = self.read_range(partition, start, end)?;
            let oldest_millis = records.first().and_then(|(_, _, t, _)| *t);
            // Newest first: the first record of the highest epoch met is the valid one.
            for (_, k, millis, record) in records.into_iter().rev() {
                if k != key {
                    continue;
                }
                if newest_millis.is_none() {
                    newest_millis = Some(millis.unwrap_or(i64::MAX));
                }
                if best.as_ref().is_none_or(|b| record.epoch > b.epoch) {
                    best = Some(record);
                }
            }
            let covered = match (newest_millis, oldest_millis) {
                (Some(newest), Some(oldest)) => oldest <= newest.saturating_sub(stale_millis),
                _ => false,
            };
            if covered {
                break;
            }
            end = start;
            window = window.saturating_mul(4);
        }
        Ok((best, high))
    }

    /// Records of checkpoint partition `partition` in `[start, end)`: (offset, key, Kafka
    /// timestamp in ms, record).
    fn read_range(
        &self,
        partition: i32,
        start: i64,
        end: i64,
    ) -> Result<Vec<ReadRecord>, CheckpointError> {
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&self.topic, partition, Offset::Offset(start))
            .map_err(|e| self.kafka(e))?;
        self.reader.assign(&list).map_err(|e| self.kafka(e))?;
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut next = start;
        while next < end {
            if Instant::now() > deadline {
                return Err(CheckpointError::Timeout {
                    topic: self.topic.clone(),
                    timeout: IO_TIMEOUT,
                });
            }
            match self.reader.poll(Duration::from_millis(100)) {
                None => continue,
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    // The partition ends before `end` (records expired meanwhile).
                    break;
                }
                // Connection states librdkafka reports while it reconnects by itself. They
                // queue up during a broker outage and are handed out one per poll long
                // after the broker is back: failing the read on each kept a claim failing
                // until its deadline (the stage exited). The deadline bounds the wait.
                Some(Err(KafkaError::MessageConsumption(code))) if is_transient(code) => continue,
                Some(Err(e)) => return Err(self.kafka(e)),
                Some(Ok(message)) => {
                    let offset = message.offset();
                    next = offset + 1;
                    if offset >= end {
                        break;
                    }
                    let key = message
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .unwrap_or_default();
                    let Some(payload) = message.payload() else {
                        continue;
                    };
                    let record: CheckpointRecord =
                        serde_json::from_slice(payload).map_err(|e| CheckpointError::Corrupt {
                            topic: self.topic.clone(),
                            offset,
                            reason: e.to_string(),
                        })?;
                    out.push((offset, key, message.timestamp().to_millis(), record));
                }
            }
        }
        Ok(out)
    }
}

/// The checkpoint reader's client context: the end of a partition is how every scan
/// ends, not an error worth a log line.
struct ReaderContext;

impl rdkafka::ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if !crate::end_of_partition::is_end_of_partition(&error) {
            tracing::warn!(error = %error, reason, "checkpoint reader");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for ReaderContext {}

/// Errors of a connection librdkafka retries on its own.
fn is_transient(code: rdkafka::types::RDKafkaErrorCode) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        code,
        Code::AllBrokersDown
            | Code::BrokerTransportFailure
            | Code::BrokerNotAvailable
            | Code::RequestTimedOut
            | Code::OperationTimedOut
            | Code::NetworkException
            | Code::Resolve
    )
}

/// Librdkafka properties that say how to reach and authenticate to the brokers.
fn is_connection_property(key: &str) -> bool {
    key.starts_with("security.")
        || key.starts_with("ssl.")
        || key.starts_with("sasl.")
        || key.starts_with("client.")
        || key.starts_with("socket.")
        || key == "broker.address.family"
}

/// The checkpoint partition of `key` among `count` (stable across versions: xxh3).
fn partition_for(key: &str, count: i32) -> i32 {
    let hash = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
    i32::try_from(hash % u64::try_from(count.max(1)).unwrap_or(1)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_refuse_unknown_fields() -> Result<(), serde_json::Error> {
        let record = CheckpointRecord {
            version: 1,
            kind: RecordKind::Checkpoint,
            owner: "1-a-0".into(),
            epoch: 3,
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
            resume: Resume {
                offset: Some(42),
                marks: vec![MarkRecord {
                    topic: "up".into(),
                    partition: 1,
                    offset: 7,
                    seq: 2,
                }],
                state: Some("{}".into()),
            },
        };
        let json = serde_json::to_string(&record)?;
        assert_eq!(serde_json::from_str::<CheckpointRecord>(&json)?, record);
        let bad = json.replace("\"version\"", "\"versoin\"");
        assert!(serde_json::from_str::<CheckpointRecord>(&bad).is_err());
        Ok(())
    }

    #[test]
    fn partitions_are_stable() {
        assert_eq!(partition_for("g/t/0", 1), 0);
        let p = partition_for("flowlake-aggregate/flows.enriched/3", 8);
        assert!((0..8).contains(&p));
        assert_eq!(p, partition_for("flowlake-aggregate/flows.enriched/3", 8));
    }
}
