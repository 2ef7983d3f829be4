//! Producing a batch's records and waiting for every acknowledgement; dead letters; the
//! origin headers that give every produced record its coordinates; reading them back.
//!
//! Records are sent in order and all acknowledgements awaited before the batch counts as
//! delivered, so records for one partition keep their order (the idempotent producer
//! preserves it across its own retries) and the offsets of a batch move only after all of
//! its output is durable.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use crate::error::RuntimeError;
use crate::kafka::{
    ORIGIN_OFFSET_HEADER, ORIGIN_PARTITION_HEADER, ORIGIN_SEQ_HEADER, ORIGIN_TOPIC_HEADER,
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

/// Sends every record and waits until all are acknowledged. Sends in order, so records
/// for one partition keep their order (the idempotent producer preserves it on retries).
pub(crate) async fn deliver(
    producer: &FutureProducer,
    mut records: Vec<Produce>,
    metrics: &mut StageMetrics,
) -> Result<(), RuntimeError> {
    let mut pending = std::collections::VecDeque::with_capacity(records.len());
    for index in 0..records.len() {
        let mut headers = records[index].headers.take();
        let record = &records[index];
        loop {
            let mut future = FutureRecord::to(&record.topic).payload(&record.payload);
            if let Some(headers) = headers.take() {
                future = future.headers(headers);
            }
            if let Some(key) = &record.key {
                future = future.key(key);
            }
            match producer.send_result(future) {
                Ok(delivery) => {
                    pending.push_back((index, delivery));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), refused)) => {
                    // librdkafka's queue is full: wait for the oldest send to finish, then
                    // retry with the headers the refused record hands back.
                    headers = refused.headers;
                    match pending.pop_front() {
                        Some((sent, delivery)) => {
                            acknowledged(&records[sent].topic, delivery.await)?
                        }
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
    for (index, delivery) in pending {
        acknowledged(&records[index].topic, delivery.await)?;
    }
    // Counted per topic once per batch, not per record: a batch names a handful of topics.
    let mut counted: Vec<(&Arc<str>, u64)> = Vec::new();
    for record in &records {
        match counted
            .iter_mut()
            .find(|(topic, _)| Arc::ptr_eq(topic, &record.topic) || ***topic == *record.topic)
        {
            Some((_, count)) => *count += 1,
            None => counted.push((&record.topic, 1)),
        }
    }
    for (topic, count) in counted {
        metrics.records_out(topic).increment(count);
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
