//! Parquet encoding of one object, in memory.
//!
//! Every object is zstd-compressed, cut into row groups of at most `max_row_group_size`
//! rows, with column-chunk and page statistics (min/max per page, the offset and column
//! indexes) so that engines skip what a `WHERE` excludes, and `created_by` set to
//! `flowlake <version>`. The same rows always encode to the same bytes: nothing in a file
//! depends on the clock or the host, which is what lets a replay overwrite an object with
//! an identical one.
//!
//! Compressing and encoding is CPU work of up to a second for a full object:
//! [`encode_blocking`] runs it on Tokio's blocking pool, never on the async worker threads
//! that drive Kafka. Turning records into Arrow columns ([`Rows::push`]) is per-record work
//! of the same order as Avro decoding and runs where records are pushed, 1024 at a time.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::columns::SinkRecord;

/// Rows per chunk: a buffer converts its records to Arrow columns every this many rows.
/// Decoded records cost several KiB each (a fully populated enriched flow: ~1.5 KiB of
/// struct plus ~2.5 KiB of strings, label maps and lists) against about 1 KiB in columns,
/// so converting early cuts a buffer's memory about fourfold; 1024 rows is also the
/// Parquet writer's own mini-batch size.
pub const CHUNK_ROWS: usize = 1024;

/// Avro bytes per chunk. A text column of an Arrow batch holds at most 2 GiB; text in the
/// lake is at most about 4× its Avro encoding (an IPv4 address: 4 bytes → 15
/// characters), so 256 MiB of input keeps every array under 1 GiB even for records near
/// Kafka's maximum message size.
pub const MAX_CHUNK_PAYLOAD_BYTES: usize = 256 * 1024 * 1024;

/// Estimated memory of a decoded record per byte of its Avro encoding (measured: a
/// 568-byte enriched flow decodes to about 4 KiB of structs, strings and maps).
const DECODED_BYTES_PER_AVRO_BYTE: usize = 8;

/// Default rows per row group: 128 Ki rows, the row count at which parquet-rs and Arrow
/// readers make good use of statistics and parallelism (a few MiB compressed per group
/// here) without holding large groups in memory while writing.
pub const DEFAULT_MAX_ROW_GROUP_SIZE: usize = 128 * 1024;

/// Default zstd level: 3 is zstd's own default, most of the ratio of higher levels at a
/// fraction of their CPU cost, which the 500k rows/s per core target needs.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// Why an object could not be encoded. Any of these is a bug (the records and the schema
/// disagree), not bad input: records that decode always convert.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// Building the Arrow columns failed.
    #[error("building arrow columns: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// The Parquet writer failed.
    #[error("writing parquet: {0}")]
    Parquet(#[from] ParquetError),
    /// The encoding task panicked or was cancelled.
    #[error("encoding task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// How objects are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParquetOptions {
    /// Maximum rows per row group.
    pub max_row_group_size: usize,
    /// zstd compression level (1–22).
    pub zstd_level: i32,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions {
            max_row_group_size: DEFAULT_MAX_ROW_GROUP_SIZE,
            zstd_level: DEFAULT_ZSTD_LEVEL,
        }
    }
}

impl ParquetOptions {
    /// The Parquet writer properties (fails for a zstd level outside 1–22).
    pub fn properties(&self) -> Result<WriterProperties, EncodeError> {
        let level = ZstdLevel::try_new(self.zstd_level)?;
        Ok(WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(self.max_row_group_size.max(1)))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_created_by(created_by())
            .build())
    }
}

/// The `created_by` of every file flowlake writes.
pub fn created_by() -> String {
    format!("flowlake {}", env!("CARGO_PKG_VERSION"))
}

/// The rows of one object in input order, in chunks of at most [`CHUNK_ROWS`] records (and
/// [`MAX_CHUNK_PAYLOAD_BYTES`] of input). Each chunk is converted to Arrow columns as soon
/// as it is complete, so only the last, incomplete one is held as decoded records. Chunk
/// boundaries depend only on the records, so the same records always make the same batches
/// and the same Parquet bytes.
#[derive(Debug)]
pub struct Rows<R> {
    /// Complete chunks, in order.
    chunks: Vec<Chunk<R>>,
    /// The incomplete chunk.
    pending: Vec<R>,
    /// Avro bytes of `pending`.
    pending_payload: usize,
    len: usize,
    /// Bytes held by complete chunks.
    chunk_memory: usize,
}

#[derive(Debug)]
enum Chunk<R> {
    /// Converted to Arrow columns.
    Columns(RecordBatch),
    /// Conversion failed (a bug, logged): kept as records so that nothing is lost, and
    /// encoding the object reports the error.
    Records(Vec<R>),
}

impl<R> Default for Rows<R> {
    fn default() -> Self {
        Rows {
            chunks: Vec::new(),
            pending: Vec::new(),
            pending_payload: 0,
            len: 0,
            chunk_memory: 0,
        }
    }
}

impl<R> Rows<R> {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no records.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Estimated bytes of memory held: Arrow columns exactly, decoded records estimated
    /// from their Avro size.
    pub fn memory(&self) -> usize {
        self.chunk_memory.saturating_add(
            self.pending_payload
                .saturating_mul(DECODED_BYTES_PER_AVRO_BYTE),
        )
    }
}

impl<R: SinkRecord> Rows<R> {
    /// Appends a record that was `payload_len` bytes of Avro.
    pub fn push(&mut self, record: R, payload_len: usize) {
        let over_budget =
            self.pending_payload.saturating_add(payload_len) > MAX_CHUNK_PAYLOAD_BYTES;
        if over_budget && !self.pending.is_empty() {
            self.complete_chunk();
        }
        self.pending_payload = self.pending_payload.saturating_add(payload_len);
        self.pending.push(record);
        self.len += 1;
        if self.pending.len() >= CHUNK_ROWS {
            self.complete_chunk();
        }
    }

    fn complete_chunk(&mut self) {
        let records = std::mem::take(&mut self.pending);
        let payload = std::mem::take(&mut self.pending_payload);
        let chunk = match R::to_record_batch(&records) {
            Ok(batch) => {
                self.chunk_memory += batch.get_array_memory_size();
                Chunk::Columns(batch)
            }
            Err(e) => {
                tracing::error!(
                    dataset = %R::DATASET,
                    rows = records.len(),
                    error = %e,
                    "cannot convert records to arrow columns; writing their object will fail"
                );
                self.chunk_memory += payload.saturating_mul(DECODED_BYTES_PER_AVRO_BYTE);
                Chunk::Records(records)
            }
        };
        self.chunks.push(chunk);
    }

    /// Every chunk as a batch, in order (converting those still held as records).
    pub(crate) fn batches(&self) -> impl Iterator<Item = Result<Cow<'_, RecordBatch>, ArrowError>> {
        let chunks = self.chunks.iter().map(|chunk| match chunk {
            Chunk::Columns(batch) => Ok(Cow::Borrowed(batch)),
            Chunk::Records(records) => R::to_record_batch(records).map(Cow::Owned),
        });
        let pending =
            (!self.pending.is_empty()).then(|| R::to_record_batch(&self.pending).map(Cow::Owned));
        chunks.chain(pending)
    }
}

/// Encodes `rows` as one Parquet file with `metadata` as its key-value metadata.
pub fn encode<R: SinkRecord>(
    rows: &Rows<R>,
    properties: WriterProperties,
    metadata: Vec<KeyValue>,
) -> Result<Bytes, EncodeError> {
    let mut writer = ArrowWriter::try_new(Vec::new(), R::arrow_schema(), Some(properties))?;
    for batch in rows.batches() {
        writer.write(batch?.as_ref())?;
    }
    for entry in metadata {
        writer.append_key_value_metadata(entry);
    }
    Ok(Bytes::from(writer.into_inner()?))
}

/// [`encode`] on Tokio's blocking pool.
pub async fn encode_blocking<R: SinkRecord>(
    rows: Arc<Rows<R>>,
    properties: WriterProperties,
    metadata: Vec<KeyValue>,
) -> Result<Bytes, EncodeError> {
    tokio::task::spawn_blocking(move || encode(&rows, properties, metadata)).await?
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    use flowlake_schemas::{EnrichedFlow, FlowEdge, samples};
    use parquet::file::reader::{FileReader, SerializedFileReader};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn rows(n: usize) -> Rows<EnrichedFlow> {
        let mut rows = Rows::default();
        for i in 0..n {
            let mut flow = samples::enriched_flow();
            flow.flow.event_id = format!("event-{i}");
            flow.flow.bytes_out = i64::try_from(i).unwrap_or_default();
            rows.push(flow, 300);
        }
        rows
    }

    fn edges(n: usize, payload_len: usize) -> Rows<FlowEdge> {
        let mut rows = Rows::default();
        for i in 0..n {
            let edge = FlowEdge {
                flows: i64::try_from(i).unwrap_or_default(),
                ..samples::flow_edge()
            };
            rows.push(edge, payload_len);
        }
        rows
    }

    fn flows_column(rows: &Rows<FlowEdge>) -> Result<Vec<Vec<i64>>, ArrowError> {
        rows.batches()
            .map(|batch| {
                let batch = batch?;
                let column = batch
                    .column_by_name("flows")
                    .and_then(|c| c.as_primitive_opt::<Int64Type>())
                    .ok_or_else(|| ArrowError::SchemaError("no flows column".into()))?;
                Ok(column.values().to_vec())
            })
            .collect()
    }

    #[test]
    fn chunks_cover_every_row_in_order() -> TestResult {
        let rows = edges(2 * CHUNK_ROWS + 5, 100);
        assert_eq!(rows.len(), 2 * CHUNK_ROWS + 5);
        assert_eq!(rows.chunks.len(), 2);
        assert!(rows.chunks.iter().all(|c| matches!(c, Chunk::Columns(_))));
        assert_eq!(rows.pending.len(), 5);
        let batches = flows_column(&rows)?;
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![CHUNK_ROWS, CHUNK_ROWS, 5]);
        let all: Vec<i64> = batches.concat();
        let expected: Vec<i64> = (0..2 * CHUNK_ROWS + 5)
            .map(|i| i64::try_from(i).unwrap_or_default())
            .collect();
        assert_eq!(all, expected);
        // Columns hold a few hundred bytes per edge; pending records are estimated.
        let columns: usize = rows
            .chunks
            .iter()
            .map(|c| match c {
                Chunk::Columns(b) => b.get_array_memory_size(),
                Chunk::Records(..) => 0,
            })
            .sum();
        assert_eq!(
            rows.memory(),
            columns + 5 * 100 * DECODED_BYTES_PER_AVRO_BYTE
        );

        // Big records cut chunks by bytes; one record bigger than the budget is a chunk.
        let mut big = Rows::default();
        for (i, size) in [
            MAX_CHUNK_PAYLOAD_BYTES / 2,
            MAX_CHUNK_PAYLOAD_BYTES / 2,
            1,
            MAX_CHUNK_PAYLOAD_BYTES * 2,
        ]
        .into_iter()
        .enumerate()
        {
            big.push(
                FlowEdge {
                    flows: i64::try_from(i)?,
                    ..samples::flow_edge()
                },
                size,
            );
        }
        assert_eq!(flows_column(&big)?, vec![vec![0, 1], vec![2], vec![3]]);
        assert_eq!(Rows::<FlowEdge>::default().batches().count(), 0);
        Ok(())
    }

    #[test]
    fn file_properties_are_as_configured() -> TestResult {
        let options = ParquetOptions {
            max_row_group_size: 1000,
            zstd_level: 3,
        };
        let bytes = encode(
            &rows(2500),
            options.properties()?,
            vec![KeyValue::new(
                "flowlake.input".to_owned(),
                "t:0:0-2499".to_owned(),
            )],
        )?;
        let reader = SerializedFileReader::new(bytes)?;
        let metadata = reader.metadata();
        let file = metadata.file_metadata();
        assert_eq!(file.created_by(), Some(created_by().as_str()));
        assert_eq!(
            created_by(),
            format!("flowlake {}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(file.num_rows(), 2500);
        let input = file
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|e| e.key == "flowlake.input"))
            .and_then(|e| e.value.clone());
        assert_eq!(input.as_deref(), Some("t:0:0-2499"));
        let groups: Vec<i64> = metadata.row_groups().iter().map(|g| g.num_rows()).collect();
        assert_eq!(groups, vec![1000, 1000, 500]);
        for group in metadata.row_groups() {
            for column in group.columns() {
                assert!(
                    matches!(column.compression(), Compression::ZSTD(_)),
                    "{}",
                    column.column_path()
                );
            }
            // Chunk statistics: the counter's min/max per row group.
            let bytes_out = group
                .columns()
                .iter()
                .find(|c| c.column_path().string() == "bytes_out")
                .and_then(|c| c.statistics())
                .ok_or("no statistics on bytes_out")?;
            assert!(bytes_out.min_bytes_opt().is_some());
            // Page statistics: every column chunk has a column index and an offset index.
            for column in group.columns() {
                assert!(
                    column.column_index_offset().is_some(),
                    "{}",
                    column.column_path()
                );
                assert!(
                    column.offset_index_offset().is_some(),
                    "{}",
                    column.column_path()
                );
            }
        }
        Ok(())
    }

    #[test]
    fn same_rows_same_bytes() -> TestResult {
        let properties = ParquetOptions::default().properties()?;
        let first = encode(&rows(300), properties.clone(), vec![])?;
        let second = encode(&rows(300), properties, vec![])?;
        assert_eq!(first, second);
        Ok(())
    }

    #[test]
    fn zstd_level_is_checked() {
        let options = ParquetOptions {
            zstd_level: 99,
            ..ParquetOptions::default()
        };
        assert!(options.properties().is_err());
    }

    #[tokio::test]
    async fn encodes_off_the_async_threads() -> TestResult {
        let rows = Arc::new(rows(10));
        let bytes = encode_blocking(
            Arc::clone(&rows),
            ParquetOptions::default().properties()?,
            vec![],
        )
        .await?;
        assert_eq!(
            bytes,
            encode(&rows, ParquetOptions::default().properties()?, vec![])?
        );
        Ok(())
    }
}
