//! The identity publisher: watches one cluster's Kubernetes API and publishes its
//! [`IdentityRecord`]s to the compacted identity topic, so one central enrich serves many
//! clusters.
//!
//! Protocol. At start the publisher reads back what the topic holds for its cluster; that
//! is its state, so it keeps nothing on disk. The watch then emits only changes against
//! that state: an object deleted while the publisher was down gets its deletion record at
//! the first list, an unchanged one is not published again. A deletion is the object's
//! last state with `deleted_at`; `tombstone_after` later the key gets a tombstone (null
//! value) so compaction can forget it. Records are produced by an idempotent producer
//! that never times out, with at most `max_in_flight` awaiting acknowledgement: while the
//! broker is away the publisher stops reading the watch (backpressure), and a record that
//! was not acknowledged when the process died is published again after the restart,
//! because the state read back does not contain it. Nothing is lost.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use flowlake_runtime::config::{self, ConfigError, KafkaSettings};
use flowlake_runtime::http::Readiness;
use flowlake_schemas::{IdentityRecord, Timestamp};
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::identity_topic::{
    DEFAULT_IDENTITY_TOPIC, IdentityProducer, IdentityTopicError, IdentityTopicReader, TopicEvent,
};
use crate::objects_to_identity::record_key;
use crate::watch::{self, WatchError};

/// How long a deleted object's key stays in the topic before its tombstone. It must be at
/// least as long as enrich remembers deleted pods (the allowed lateness of flows plus a
/// margin, well under an hour by default): an enrich that starts later bootstraps from
/// the compacted topic and must still know the pods that late flows can name. After the
/// tombstone, compaction may drop the key and a new reader never sees the object.
const DEFAULT_TOMBSTONE_AFTER: Duration = Duration::from_secs(3600);

/// Records awaiting acknowledgement at once: enough to keep the first list of a large
/// cluster (tens of thousands of pods) streaming, few enough to bound memory (~1 KiB each).
const DEFAULT_MAX_IN_FLIGHT: usize = 10_000;

/// Records buffered between the watch and the producer.
const WATCH_CHANNEL_CAPACITY: usize = 1024;

/// How often due tombstones are looked for.
const TOMBSTONE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// On shutdown, how long to wait for records still in flight (Kubernetes' grace period is
/// 30 s; what is not acknowledged by then is republished after the restart).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// `[publisher]` settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublisherSettings {
    /// The `cluster_id` this cluster's flows carry (as ingest sets it). Required.
    pub cluster_id: String,
    /// kubeconfig file; default: the in-cluster service account, then `KUBECONFIG`, then
    /// `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// The compacted identity topic.
    pub identity_topic: String,
    /// How long after a deletion the object's key is tombstoned (see
    /// `DEFAULT_TOMBSTONE_AFTER` for why it must outlast enrich's memory of deleted pods).
    #[serde(with = "humantime_serde")]
    pub tombstone_after: Duration,
    /// Records awaiting acknowledgement at once; more waits.
    pub max_in_flight: usize,
}

impl Default for PublisherSettings {
    fn default() -> Self {
        PublisherSettings {
            cluster_id: String::new(),
            kubeconfig: None,
            identity_topic: DEFAULT_IDENTITY_TOPIC.to_owned(),
            tombstone_after: DEFAULT_TOMBSTONE_AFTER,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

impl PublisherSettings {
    /// Checks the fields; errors name them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let cluster = self.cluster_id.trim();
        if cluster.is_empty() {
            return Err(ConfigError::invalid(
                "publisher.cluster_id",
                "must not be empty: set --cluster-id to the cluster_id this cluster's flows carry",
            ));
        }
        if cluster.contains('/') {
            return Err(ConfigError::invalid(
                "publisher.cluster_id",
                format!("{cluster:?} must not contain '/' (the key separator)"),
            ));
        }
        config::validate_topic("publisher.identity_topic", &self.identity_topic)?;
        if self.tombstone_after < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "publisher.tombstone_after",
                "must be at least 1s (and at least enrich's retention of deleted pods)",
            ));
        }
        if self.max_in_flight == 0 || self.max_in_flight > 100_000 {
            return Err(ConfigError::invalid(
                "publisher.max_in_flight",
                "must be between 1 and 100000",
            ));
        }
        Ok(())
    }
}

/// Why the publisher stopped.
#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    /// The identity topic cannot be read or written.
    #[error(transparent)]
    Topic(#[from] IdentityTopicError),
    /// The Kubernetes API cannot be reached at all.
    #[error(transparent)]
    Watch(#[from] WatchError),
}

/// Publishes the cluster's identity until `shutdown`. `ready` is set once the topic was
/// read back, every resource listed, and everything listed acknowledged.
pub async fn run(
    settings: &PublisherSettings,
    kafka: &KafkaSettings,
    ready: Readiness,
    shutdown: CancellationToken,
) -> Result<(), PublisherError> {
    let topic = settings.identity_topic.as_str();
    let producer = IdentityProducer::new(kafka, topic)?;
    let Some(published) = read_published(kafka, topic, &settings.cluster_id, &shutdown).await?
    else {
        return Ok(());
    };
    let mut tombstones = Tombstones::new(settings.tombstone_after);
    let mut seed = Vec::new();
    for record in published.into_values() {
        match record.deleted_at {
            Some(deleted_at) => tombstones.schedule(deleted_at, record_key(&record)),
            None => seed.push(record),
        }
    }
    tracing::info!(
        cluster = settings.cluster_id,
        topic,
        live = seed.len(),
        awaiting_tombstone = tombstones.len(),
        "read back published identity"
    );

    let client = watch::client(settings.kubeconfig.as_deref()).await?;
    let (mut tx, mut rx) = mpsc::channel::<IdentityRecord>(WATCH_CHANNEL_CAPACITY);
    let watch_ready = Readiness::default();
    let watch_task = {
        let cluster = settings.cluster_id.clone();
        let ready = watch_ready.clone();
        let stop = shutdown.child_token();
        tokio::spawn(async move {
            // Err only when the receiver is gone: the publisher is stopping anyway.
            let _ = watch::run(client, &cluster, seed, &mut tx, ready, stop).await;
        })
    };

    let upserts = metrics::counter!(crate::metrics::PUBLISHED_RECORDS, "change" => "upsert");
    let deletes = metrics::counter!(crate::metrics::PUBLISHED_RECORDS, "change" => "delete");
    let tombstoned = metrics::counter!(crate::metrics::PUBLISHED_RECORDS, "change" => "tombstone");
    let mut in_flight: FuturesOrdered<BoxFuture<'static, Result<(), IdentityTopicError>>> =
        FuturesOrdered::new();
    let mut tick = tokio::time::interval(TOMBSTONE_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        let room = in_flight.len() < settings.max_in_flight;
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Ok(()),
            // Acknowledgements first, so room is made before more is read.
            Some(acked) = in_flight.next(), if !in_flight.is_empty() => {
                if let Err(e) = acked {
                    break Err(PublisherError::Topic(e));
                }
            }
            record = rx.recv(), if room => {
                let Some(record) = record else { break Ok(()) };
                if let Some(deleted_at) = record.deleted_at {
                    tombstones.schedule(deleted_at, record_key(&record));
                    deletes.increment(1);
                } else {
                    upserts.increment(1);
                }
                in_flight.push_back(producer.publish(&record)?.boxed());
            }
            _ = tick.tick() => {
                let room = settings.max_in_flight.saturating_sub(in_flight.len());
                for key in tombstones.take_due(Timestamp::now(), room) {
                    tombstoned.increment(1);
                    in_flight.push_back(producer.tombstone(key).boxed());
                }
            }
        }
        if !ready.get() && watch_ready.get() && rx.is_empty() && in_flight.is_empty() {
            tracing::info!(
                cluster = settings.cluster_id,
                topic,
                "cluster identity published; following changes"
            );
            ready.set(true);
        }
    };
    watch_task.abort();
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while let Some(acked) = in_flight.next().await {
            if let Err(e) = acked {
                tracing::warn!(error = %e, "identity record not delivered at shutdown; republished after restart");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            topic,
            "identity records still unacknowledged at shutdown; republished after restart"
        );
    }
    result
}

/// The latest record of every key of `cluster_id` in the topic (tombstoned keys left out).
/// `None` when `shutdown` came first.
async fn read_published(
    kafka: &KafkaSettings,
    topic: &str,
    cluster_id: &str,
    shutdown: &CancellationToken,
) -> Result<Option<HashMap<String, IdentityRecord>>, IdentityTopicError> {
    let Some(mut reader) = IdentityTopicReader::connect(kafka, topic, shutdown).await? else {
        return Ok(None);
    };
    let prefix = format!("{cluster_id}/");
    let mut published = HashMap::new();
    loop {
        let event = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(None),
            event = reader.next() => event,
        };
        match event {
            TopicEvent::Record { key, record } if key.starts_with(&prefix) => {
                published.insert(key, *record);
            }
            TopicEvent::Tombstone { key } => {
                published.remove(&key);
            }
            TopicEvent::Record { .. } => {}
            TopicEvent::Invalid {
                partition,
                offset,
                reason,
            } => {
                tracing::warn!(
                    topic,
                    partition,
                    offset,
                    reason,
                    "skipping a value that is not an identity record"
                );
            }
            TopicEvent::CaughtUp => return Ok(Some(published)),
        }
    }
}

/// Keys to tombstone, by due time.
struct Tombstones {
    after: Duration,
    due: BTreeSet<(Timestamp, String)>,
}

impl Tombstones {
    fn new(after: Duration) -> Tombstones {
        Tombstones {
            after,
            due: BTreeSet::new(),
        }
    }

    fn schedule(&mut self, deleted_at: Timestamp, key: String) {
        let after = i64::try_from(self.after.as_micros()).unwrap_or(i64::MAX);
        let due = Timestamp::from_micros(deleted_at.as_micros().saturating_add(after));
        self.due.insert((due, key));
    }

    /// Up to `max` keys due at `now`, oldest first.
    fn take_due(&mut self, now: Timestamp, max: usize) -> Vec<String> {
        let mut keys = Vec::new();
        while keys.len() < max {
            match self.due.first() {
                Some((due, _)) if *due <= now => {
                    if let Some((_, key)) = self.due.pop_first() {
                        keys.push(key);
                    }
                }
                _ => break,
            }
        }
        keys
    }

    fn len(&self) -> usize {
        self.due.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstones_come_due_after_the_retention_oldest_first() {
        let mut tombstones = Tombstones::new(Duration::from_secs(60));
        tombstones.schedule(Timestamp::from_secs(100), "c/pod/b".into());
        tombstones.schedule(Timestamp::from_secs(50), "c/pod/a".into());
        tombstones.schedule(Timestamp::from_secs(500), "c/pod/z".into());
        assert!(
            tombstones
                .take_due(Timestamp::from_secs(109), 10)
                .is_empty()
        );
        assert_eq!(
            tombstones.take_due(Timestamp::from_secs(160), 10),
            ["c/pod/a", "c/pod/b"]
        );
        assert_eq!(tombstones.len(), 1);
        assert_eq!(
            tombstones.take_due(Timestamp::from_secs(560), 0),
            Vec::<String>::new()
        );
    }

    #[test]
    fn settings_name_the_bad_field() {
        let settings = PublisherSettings::default();
        let err = settings
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("`publisher.cluster_id`"), "{err}");
        let settings = PublisherSettings {
            cluster_id: "a/b".into(),
            ..PublisherSettings::default()
        };
        assert!(settings.validate().is_err());
        let settings = PublisherSettings {
            cluster_id: "prod".into(),
            tombstone_after: Duration::ZERO,
            ..PublisherSettings::default()
        };
        let err = settings
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("`publisher.tombstone_after`"), "{err}");
        let settings = PublisherSettings {
            cluster_id: "prod".into(),
            ..PublisherSettings::default()
        };
        assert!(settings.validate().is_ok());
    }
}
