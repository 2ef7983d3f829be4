//! Producing the stage's records and counting their acknowledgements; dead letters; the
//! origin headers that give every produced record its coordinates; reading them back.
//!
//! Records are sent in order, so records for one partition keep their order (the
//! idempotent producer preserves it across its own retries). Sending does not wait: the
//! runner reads and processes the next batch while earlier ones are acknowledged, and
//! waits for every acknowledgement ([`OutputProducer::acknowledged`]) before it writes a
//! checkpoint, so offsets move only past output that is durable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::Message;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::Notify;

use crate::config::KafkaSettings;
use crate::error::RuntimeError;
use crate::kafka::{
    self, ORIGIN_OFFSET_HEADER, ORIGIN_PARTITION_HEADER, ORIGIN_SEQ_HEADER, ORIGIN_TOPIC_HEADER,
};
use crate::marks::{Coordinates, OriginPartition};
use crate::metrics::StageMetrics;
use crate::processor::{Origin, OutputRecord, Rejection};

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

/// The origin coordinates stamped on `message` by the stage that produced it; None for a
/// record without them (an agent's) or with unreadable ones (treated as new, never
/// dropped). `topics` shares origin topic names between records.
pub(crate) fn origin_of(
    message: &BorrowedMessage<'_>,
    topics: &mut Vec<Arc<str>>,
) -> Option<(OriginPartition, Coordinates)> {
    let headers = message.headers()?;
    let (mut topic, mut partition, mut offset, mut seq) = (None, None, None, 0u32);
    for header in headers.iter() {
        let Some(value) = header.value else { continue };
        match header.key {
            ORIGIN_TOPIC_HEADER => topic = std::str::from_utf8(value).ok(),
            ORIGIN_PARTITION_HEADER => partition = parse(value),
            ORIGIN_OFFSET_HEADER => offset = parse(value),
            ORIGIN_SEQ_HEADER => seq = parse(value).unwrap_or(0),
            _ => {}
        }
    }
    let topic = topic?;
    let topic = match topics.iter().find(|t| ***t == *topic) {
        Some(shared) => Arc::clone(shared),
        None => {
            let shared: Arc<str> = Arc::from(topic);
            topics.push(Arc::clone(&shared));
            shared
        }
    };
    Some((
        OriginPartition {
            topic,
            partition: partition?,
        },
        Coordinates {
            offset: offset?,
            seq,
        },
    ))
}

/// A decimal header value.
fn parse<T: std::str::FromStr>(value: &[u8]) -> Option<T> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// A record ready to produce.
pub(crate) struct Produce {
    /// Destination topic.
    pub(crate) topic: std::sync::Arc<str>,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: ProduceHeaders,
}

/// A produced record's headers. Origin coordinates are kept as numbers and written into
/// the record's headers when it is sent, formatted on the stack: the headers are built
/// once, never cloned, and the hot path allocates no strings.
enum ProduceHeaders {
    None,
    Origin(Origin),
    /// A dead letter's: the input's own headers plus the reason, built when rejected.
    Built(OwnedHeaders),
}

impl ProduceHeaders {
    /// The headers to send (takes a dead letter's, leaving nothing behind).
    fn take(&mut self) -> Option<OwnedHeaders> {
        match std::mem::replace(self, ProduceHeaders::None) {
            ProduceHeaders::None => None,
            ProduceHeaders::Built(headers) => Some(headers),
            ProduceHeaders::Origin(origin) => {
                let (mut partition, mut offset, mut seq) = (
                    itoa::Buffer::new(),
                    itoa::Buffer::new(),
                    itoa::Buffer::new(),
                );
                Some(
                    OwnedHeaders::new_with_capacity(4)
                        .insert(Header {
                            key: ORIGIN_TOPIC_HEADER,
                            value: Some(&*origin.topic),
                        })
                        .insert(Header {
                            key: ORIGIN_PARTITION_HEADER,
                            value: Some(partition.format(origin.partition)),
                        })
                        .insert(Header {
                            key: ORIGIN_OFFSET_HEADER,
                            value: Some(offset.format(origin.offset)),
                        })
                        .insert(Header {
                            key: ORIGIN_SEQ_HEADER,
                            value: Some(seq.format(origin.seq)),
                        }),
                )
            }
        }
    }
}

impl From<OutputRecord> for Produce {
    fn from(record: OutputRecord) -> Self {
        Produce {
            topic: record.topic,
            key: record.key,
            payload: record.payload,
            headers: match record.origin {
                Some(origin) => ProduceHeaders::Origin(origin),
                None => ProduceHeaders::None,
            },
        }
    }
}

/// The dead-letter record for `message`: its key, value and headers unchanged, plus
/// headers that say why and where from.
pub(crate) fn dead_letter(
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
        headers: ProduceHeaders::Built(headers),
    }
}

/// The stage's output producer: sends without waiting, counts acknowledgements per
/// producer rather than per record, and waits for all of them only where the offset
/// protocol needs it — before a checkpoint ([`OutputProducer::acknowledged`]).
///
/// A future per record (rdkafka's `FutureProducer`) costs a heap-allocated channel and a
/// wake-up for every record; here librdkafka's delivery callback, on its polling thread,
/// bumps one counter and wakes the stage loop only when the count it waits for is reached
/// (or a record failed). The order of records for one partition is librdkafka's send
/// order, kept by the idempotent producer across its own retries.
pub(crate) struct OutputProducer {
    producer: ThreadedProducer<AckCounter>,
    /// Records handed to librdkafka so far.
    sent: u64,
    /// Records sent since the last [`OutputProducer::acknowledged`], by topic (a handful):
    /// counted in `records_out` once acknowledged.
    unacknowledged: Vec<(Arc<str>, u64)>,
}

/// Delivery callback state shared with librdkafka's polling thread.
#[derive(Default)]
pub(crate) struct AckCounter {
    /// Records whose delivery was reported, successful or not.
    reported: AtomicU64,
    /// The count the stage loop waits for (`u64::MAX` when it waits for none).
    waiting_for: AtomicU64,
    /// The first record the broker refused for good: the stage stops with it.
    failure: Mutex<Option<(String, KafkaError)>>,
    wake: Notify,
}

impl ClientContext for AckCounter {}

impl ProducerContext for AckCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.report(None),
            Err((error, message)) => self.report(Some((message.topic(), error))),
        }
    }
}

impl AckCounter {
    /// One delivery reported: acknowledged, or refused for good with `(topic, error)`.
    fn report(&self, refused: Option<(&str, &KafkaError)>) {
        if let Some((topic, error)) = refused {
            let mut failure = match self.failure.lock() {
                Ok(f) => f,
                Err(poisoned) => poisoned.into_inner(),
            };
            failure.get_or_insert_with(|| (topic.to_owned(), error.clone()));
        }
        let reported = self.reported.fetch_add(1, Ordering::SeqCst) + 1;
        if refused.is_some() || reported >= self.waiting_for.load(Ordering::SeqCst) {
            self.wake.notify_one();
        }
    }

    fn failure(&self) -> Option<RuntimeError> {
        let failure = match self.failure.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        failure
            .as_ref()
            .map(|(topic, source)| RuntimeError::Delivery {
                topic: topic.clone(),
                source: source.clone(),
            })
    }

    /// Waits until `count` deliveries were reported; fails with the first refused record.
    async fn reported(&self, count: u64) -> Result<(), RuntimeError> {
        self.waiting_for.store(count, Ordering::SeqCst);
        let result = loop {
            if let Some(failure) = self.failure() {
                break Err(failure);
            }
            // Read after publishing `waiting_for`: a report counted after this read sees
            // the target and wakes us (a permit is kept when nobody waits yet).
            if self.reported.load(Ordering::SeqCst) >= count {
                break Ok(());
            }
            self.wake.notified().await;
        };
        self.waiting_for.store(u64::MAX, Ordering::SeqCst);
        result
    }
}

impl OutputProducer {
    /// The idempotent producer of [`kafka::producer_config`], counting acknowledgements.
    pub(crate) fn new(settings: &KafkaSettings) -> KafkaResult<Self> {
        let counter = AckCounter {
            waiting_for: AtomicU64::new(u64::MAX),
            ..AckCounter::default()
        };
        Ok(OutputProducer {
            producer: kafka::producer_config(settings).create_with_context(counter)?,
            sent: 0,
            unacknowledged: Vec::new(),
        })
    }

    /// Hands every record to librdkafka, in order, without waiting for acknowledgements;
    /// waits only while librdkafka's queue is full (backpressure), for the oldest sends.
    pub(crate) async fn send(&mut self, mut records: Vec<Produce>) -> Result<(), RuntimeError> {
        let counter = Arc::clone(self.producer.context());
        for record in &mut records {
            let mut headers = record.headers.take();
            loop {
                let mut base = BaseRecord::to(&record.topic).payload(&record.payload);
                if let Some(headers) = headers.take() {
                    base = base.headers(headers);
                }
                if let Some(key) = &record.key {
                    base = base.key(key);
                }
                match self.producer.send(base) {
                    Ok(()) => {
                        self.sent += 1;
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), refused)) => {
                        // Wait for one more acknowledgement than so far (the polling thread
                        // reports them), then retry with the headers handed back.
                        headers = refused.headers;
                        let next = counter.reported.load(Ordering::SeqCst) + 1;
                        counter.reported(next.min(self.sent)).await?;
                    }
                    Err((source, _)) => {
                        return Err(RuntimeError::Delivery {
                            topic: record.topic.to_string(),
                            source,
                        });
                    }
                }
            }
            match self
                .unacknowledged
                .iter_mut()
                .find(|(topic, _)| Arc::ptr_eq(topic, &record.topic) || **topic == *record.topic)
            {
                Some((_, count)) => *count += 1,
                None => self.unacknowledged.push((Arc::clone(&record.topic), 1)),
            }
        }
        Ok(())
    }

    /// True when records were sent since the last [`OutputProducer::acknowledged`].
    pub(crate) fn has_unacknowledged(&self) -> bool {
        !self.unacknowledged.is_empty()
    }

    /// Waits until every record sent so far is acknowledged, and counts them in
    /// `records_out`. Fails with the first record the broker refused for good.
    pub(crate) async fn acknowledged(
        &mut self,
        metrics: &mut StageMetrics,
    ) -> Result<(), RuntimeError> {
        self.producer.context().reported(self.sent).await?;
        for (topic, count) in self.unacknowledged.drain(..) {
            metrics.records_out(&topic).increment(count);
        }
        Ok(())
    }

    /// Waits up to `timeout` for librdkafka's queue to empty (at exit).
    pub(crate) fn flush(&self, timeout: Duration) {
        let _ = self.producer.flush(timeout);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;

    use super::AckCounter;
    use crate::error::RuntimeError;

    fn counter() -> Arc<AckCounter> {
        Arc::new(AckCounter {
            waiting_for: AtomicU64::new(u64::MAX),
            ..AckCounter::default()
        })
    }

    #[tokio::test]
    async fn a_wait_ends_exactly_when_the_count_is_reported() {
        let counter = counter();
        counter.report(None);
        let waiter = tokio::spawn({
            let counter = Arc::clone(&counter);
            async move { counter.reported(3).await }
        });
        counter.report(None);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "2 of 3 reported: still waiting");
        // Reported from another thread, as librdkafka's polling thread does.
        std::thread::spawn({
            let counter = Arc::clone(&counter);
            move || counter.report(None)
        });
        let waited = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(matches!(waited, Ok(Ok(Ok(())))), "{waited:?}");
        assert_eq!(counter.waiting_for.load(Ordering::SeqCst), u64::MAX);
        // Already reached: no wait, and a permit left by the last report does no harm.
        assert!(counter.reported(3).await.is_ok());
    }

    #[tokio::test]
    async fn a_refused_record_ends_the_wait_with_its_topic() {
        let counter = counter();
        let waiter = tokio::spawn({
            let counter = Arc::clone(&counter);
            async move { counter.reported(10).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let refused = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        counter.report(Some(("flows.enriched", &refused)));
        counter.report(Some(("other", &refused)));
        let waited = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        match waited {
            Ok(Ok(Err(RuntimeError::Delivery { topic, .. }))) => {
                assert_eq!(topic, "flows.enriched")
            }
            other => panic!("expected the first refusal, got {other:?}"),
        }
    }
}
