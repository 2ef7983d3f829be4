//! The `edges` dataset: one row per [`FlowEdge`] (one flow-graph edge in one window, or a
//! late correction of it), every field by its own name.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use flowlake_schemas::{FlowEdge, Timestamp};

use super::{
    Columns, Dataset, SinkRecord, action_name, endpoint_kind_name, reporter_name, schema_of,
};

/// Number of columns, to size the column list up front.
const EDGE_COLUMNS: usize = 26;

static EDGES_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| schema_of(|c| edge_columns(&[], c)));

impl SinkRecord for FlowEdge {
    const DATASET: Dataset = Dataset::Edges;

    fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// Edges are partitioned by their window's start, so a window is in one partition.
    fn partition_time(&self) -> Timestamp {
        self.window_start
    }

    fn arrow_schema() -> SchemaRef {
        Arc::clone(&EDGES_SCHEMA)
    }

    fn to_record_batch(records: &[Self]) -> Result<RecordBatch, ArrowError> {
        let mut columns = Columns::with_capacity(EDGE_COLUMNS);
        edge_columns(records, &mut columns)?;
        columns.finish(Self::arrow_schema())
    }
}

fn edge_columns(rows: &[FlowEdge], c: &mut Columns) -> Result<(), ArrowError> {
    c.utf8("cluster_id", rows, |r| &r.cluster_id);
    c.timestamp("window_start", rows, |r| r.window_start);
    c.timestamp("window_end", rows, |r| r.window_end);
    c.int32("revision", rows, |r| r.revision);
    c.enumeration("src_kind", rows, |r| endpoint_kind_name(r.src_kind));
    c.opt_utf8("src_namespace", rows, |r| r.src_namespace.as_deref());
    c.opt_utf8("src_workload", rows, |r| r.src_workload.as_deref());
    c.enumeration("dst_kind", rows, |r| endpoint_kind_name(r.dst_kind));
    c.opt_utf8("dst_namespace", rows, |r| r.dst_namespace.as_deref());
    c.opt_utf8("dst_workload", rows, |r| r.dst_workload.as_deref());
    c.opt_utf8("dst_service", rows, |r| r.dst_service.as_deref());
    c.opt_int32("dst_port", rows, |r| r.dst_port);
    c.opt_int32("protocol", rows, |r| r.protocol);
    c.enumeration("action", rows, |r| action_name(r.action));
    c.enumeration("reporter", rows, |r| reporter_name(r.reporter));
    c.opt_utf8("policy", rows, |r| r.policy.as_deref());
    c.int64("flows", rows, |r| r.flows);
    c.int64("connections_started", rows, |r| r.connections_started);
    c.int64("connections_completed", rows, |r| r.connections_completed);
    c.int64("bytes_out", rows, |r| r.bytes_out);
    c.int64("bytes_in", rows, |r| r.bytes_in);
    c.int64("packets_out", rows, |r| r.packets_out);
    c.int64("packets_in", rows, |r| r.packets_in);
    c.timestamp("first_seen", rows, |r| r.first_seen);
    c.timestamp("last_seen", rows, |r| r.last_seen);
    c.int64("distinct_src_pods", rows, |r| r.distinct_src_pods);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::tests::read_back;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int32Type, Int64Type, TimestampMicrosecondType};
    use flowlake_schemas::samples;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// The sample edge through Parquet and back: every column by name, with its value.
    #[test]
    fn sample_edge_reads_back_exactly() -> TestResult {
        let late = FlowEdge {
            policy: None,
            dst_port: None,
            ..samples::flow_edge()
        };
        let batch = read_back(&[samples::flow_edge(), late])?;
        assert_eq!(batch.schema(), FlowEdge::arrow_schema());
        assert_eq!(batch.num_columns(), EDGE_COLUMNS);

        // Outer `None`: no such text column (so a `None` value cannot pass by accident).
        let text = |name: &str, row: usize| -> Option<Option<String>> {
            let column = batch.column_by_name(name)?.as_string_opt::<i32>()?;
            Some(column.is_valid(row).then(|| column.value(row).to_owned()))
        };
        let some = |s: &str| Some(s.to_owned());
        for (column, value) in [
            ("cluster_id", some("prod-eu-1")),
            ("src_kind", some("pod")),
            ("src_namespace", some("shop")),
            ("src_workload", some("checkout")),
            ("dst_kind", some("external_public")),
            ("dst_namespace", None),
            ("dst_workload", some("api.stripe.com")),
            ("dst_service", None),
            ("action", some("deny")),
            ("reporter", some("src")),
            ("policy", some("security/shop/deny-egress")),
        ] {
            assert_eq!(text(column, 0), Some(value), "{column}");
        }
        assert_eq!(text("policy", 1), Some(None));

        let micros = |name: &str| -> Option<i64> {
            Some(
                batch
                    .column_by_name(name)?
                    .as_primitive_opt::<TimestampMicrosecondType>()?
                    .value(0),
            )
        };
        assert_eq!(micros("window_start"), Some(1_699_999_980_000_000));
        assert_eq!(micros("window_end"), Some(1_700_000_040_000_000));
        assert_eq!(micros("first_seen"), Some(1_700_000_000_123_456));
        assert_eq!(micros("last_seen"), Some(1_700_000_001_000_000));

        let int32 = |name: &str, row: usize| -> Option<i32> {
            let column = batch
                .column_by_name(name)?
                .as_primitive_opt::<Int32Type>()?;
            column.is_valid(row).then(|| column.value(row))
        };
        assert_eq!(int32("revision", 0), Some(1));
        assert_eq!(int32("dst_port", 0), Some(443));
        assert_eq!(int32("dst_port", 1), None);
        assert_eq!(int32("protocol", 0), Some(6));

        let int64 = |name: &str| -> Option<i64> {
            Some(
                batch
                    .column_by_name(name)?
                    .as_primitive_opt::<Int64Type>()?
                    .value(0),
            )
        };
        for (column, value) in [
            ("flows", 3),
            ("connections_started", 3),
            ("connections_completed", 0),
            ("bytes_out", 222),
            ("bytes_in", 0),
            ("packets_out", 3),
            ("packets_in", 0),
            ("distinct_src_pods", 2),
        ] {
            assert_eq!(int64(column), Some(value), "{column}");
        }
        Ok(())
    }
}
