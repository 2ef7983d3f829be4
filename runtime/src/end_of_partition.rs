//! librdkafka's end-of-partition report (`enable.partition.eof`): how the runner learns a
//! partition is caught up and how a checkpoint scan ends. It arrives as a consumer error and,
//! through the client context's error callback, as a global one; neither is worth an error line.

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// Whether an error is librdkafka's end-of-partition report (`enable.partition.eof`), which
/// arrives as a consumer error and, through the error callback, as a global one.
pub(crate) fn is_end_of_partition(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
    )
}
