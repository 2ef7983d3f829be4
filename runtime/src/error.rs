//! Why a stage stops: the one error type the runner and its delivery path return.

use rdkafka::error::KafkaError;

use crate::checkpoint::CheckpointError;
use crate::processor::ProcessorError;

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
    /// A checkpoint could not be read or written.
    #[error("checkpoint: {0}")]
    Checkpoint(#[source] CheckpointError),
}
