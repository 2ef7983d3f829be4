//! The `flows` dataset: one row per [`EnrichedFlow`], every `FlowEvent` field by its own
//! name, then `src_*` and `dst_*` for every `Endpoint` field. Of the agents' identity hints
//! only namespace, name and workload name are kept (`src_hint_namespace`, …): the rest is
//! what enrich resolved into the endpoint columns.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use flowlake_schemas::{Endpoint, EndpointHint, EnrichedFlow, Timestamp};

use super::{
    Columns, Dataset, SinkRecord, action_name, endpoint_kind_name, reporter_name, schema_of,
    status_name,
};

/// Number of columns, to size the column list up front.
const FLOW_COLUMNS: usize = 33 + 2 * ENDPOINT_COLUMNS;
const ENDPOINT_COLUMNS: usize = 15;

static FLOWS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| schema_of(|c| flow_columns(&[], c)));

impl SinkRecord for EnrichedFlow {
    const DATASET: Dataset = Dataset::Flows;

    fn cluster_id(&self) -> &str {
        &self.flow.cluster_id
    }

    /// Flows are partitioned by when they started.
    fn partition_time(&self) -> Timestamp {
        self.flow.start_time
    }

    fn arrow_schema() -> SchemaRef {
        Arc::clone(&FLOWS_SCHEMA)
    }

    fn to_record_batch(records: &[Self]) -> Result<RecordBatch, ArrowError> {
        let mut columns = Columns::with_capacity(FLOW_COLUMNS);
        flow_columns(records, &mut columns)?;
        columns.finish(Self::arrow_schema())
    }
}

fn flow_columns(rows: &[EnrichedFlow], c: &mut Columns) -> Result<(), ArrowError> {
    c.utf8("event_id", rows, |r| &r.flow.event_id);
    c.utf8("cluster_id", rows, |r| &r.flow.cluster_id);
    c.utf8("source_format", rows, |r| &r.flow.source_format);
    c.opt_utf8("reporter_node", rows, |r| r.flow.reporter_node.as_deref());
    c.enumeration("reporter", rows, |r| reporter_name(r.flow.reporter));
    c.timestamp("start_time", rows, |r| r.flow.start_time);
    c.timestamp("end_time", rows, |r| r.flow.end_time);
    c.ip("src_ip", rows, |r| r.flow.src_ip);
    c.ip("dst_ip", rows, |r| r.flow.dst_ip);
    c.opt_int32("src_port", rows, |r| r.flow.src_port);
    c.opt_int32("dst_port", rows, |r| r.flow.dst_port);
    c.opt_int32("protocol", rows, |r| r.flow.protocol);
    c.enumeration("action", rows, |r| action_name(r.flow.action));
    c.opt_utf8("drop_reason", rows, |r| r.flow.drop_reason.as_deref());
    c.int64("bytes_out", rows, |r| r.flow.bytes_out);
    c.int64("bytes_in", rows, |r| r.flow.bytes_in);
    c.int64("packets_out", rows, |r| r.flow.packets_out);
    c.int64("packets_in", rows, |r| r.flow.packets_in);
    c.int64("connections_started", rows, |r| r.flow.connections_started);
    c.int64("connections_completed", rows, |r| {
        r.flow.connections_completed
    });
    c.int64("connections_live", rows, |r| r.flow.connections_live);
    c.policies("policies_enforced", rows, |r| &r.flow.policies_enforced)?;
    c.policies("policies_pending", rows, |r| &r.flow.policies_pending)?;
    // The agent's own DNS names for the destination; `dst_dns_names` (below) is the
    // resolved endpoint's. Distinct names: one Parquet file must not hold two equal ones.
    c.utf8_list("dst_hint_dns_names", false, rows, |r| {
        Some(&r.flow.dst_dns_names)
    })?;
    c.opt_utf8("dns_query", rows, |r| {
        r.flow.dns.as_ref().map(|d| d.query.as_str())
    });
    c.ip_list("dns_ips", rows, |r| r.flow.dns.as_ref().map(|d| &d.ips[..]))?;
    c.opt_int64("dns_ttl", rows, |r| r.flow.dns.as_ref().and_then(|d| d.ttl));
    hint_columns(c, "src_hint", rows, |r| r.flow.src_hint.as_ref());
    hint_columns(c, "dst_hint", rows, |r| r.flow.dst_hint.as_ref());
    endpoint_columns(c, "src", rows, |r| &r.src)?;
    endpoint_columns(c, "dst", rows, |r| &r.dst)?;
    Ok(())
}

/// `{prefix}_namespace`, `{prefix}_name`, `{prefix}_workload_name` of an optional hint.
fn hint_columns<'a>(
    c: &mut Columns,
    prefix: &str,
    rows: &'a [EnrichedFlow],
    hint: impl Fn(&'a EnrichedFlow) -> Option<&'a EndpointHint>,
) {
    c.opt_utf8(&format!("{prefix}_namespace"), rows, |r| {
        hint(r).and_then(|h| h.namespace.as_deref())
    });
    c.opt_utf8(&format!("{prefix}_name"), rows, |r| {
        hint(r).and_then(|h| h.name.as_deref())
    });
    c.opt_utf8(&format!("{prefix}_workload_name"), rows, |r| {
        hint(r).and_then(|h| h.workload_name.as_deref())
    });
}

/// `{prefix}_{field}` for every [`Endpoint`] field, in record order.
fn endpoint_columns<'a>(
    c: &mut Columns,
    prefix: &str,
    rows: &'a [EnrichedFlow],
    endpoint: impl Fn(&'a EnrichedFlow) -> &'a Endpoint,
) -> Result<(), ArrowError> {
    let name = |field: &str| format!("{prefix}_{field}");
    c.enumeration(&name("kind"), rows, |r| {
        endpoint_kind_name(endpoint(r).kind)
    });
    c.opt_utf8(&name("namespace"), rows, |r| {
        endpoint(r).namespace.as_deref()
    });
    c.opt_utf8(&name("name"), rows, |r| endpoint(r).name.as_deref());
    c.opt_utf8(&name("pod_uid"), rows, |r| endpoint(r).pod_uid.as_deref());
    c.opt_utf8(&name("workload_kind"), rows, |r| {
        endpoint(r).workload_kind.as_deref()
    });
    c.opt_utf8(&name("workload_name"), rows, |r| {
        endpoint(r).workload_name.as_deref()
    });
    c.opt_utf8(&name("aggregated_name"), rows, |r| {
        endpoint(r).aggregated_name.as_deref()
    });
    c.opt_utf8(&name("service_account"), rows, |r| {
        endpoint(r).service_account.as_deref()
    });
    c.labels(&name("labels"), rows, |r| &endpoint(r).labels)?;
    c.opt_utf8(&name("node"), rows, |r| endpoint(r).node.as_deref());
    c.opt_utf8(&name("service_namespace"), rows, |r| {
        endpoint(r).service_namespace.as_deref()
    });
    c.opt_utf8(&name("service_name"), rows, |r| {
        endpoint(r).service_name.as_deref()
    });
    c.opt_utf8(&name("network_set"), rows, |r| {
        endpoint(r).network_set.as_deref()
    });
    c.utf8_list(&name("dns_names"), false, rows, |r| {
        Some(&endpoint(r).dns_names)
    })?;
    c.enumeration(&name("status"), rows, |r| status_name(endpoint(r).status));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::tests::read_back;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType};
    use flowlake_schemas::samples;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn schema_names_every_field_in_order() {
        let schema = EnrichedFlow::arrow_schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let endpoint = [
            "kind",
            "namespace",
            "name",
            "pod_uid",
            "workload_kind",
            "workload_name",
            "aggregated_name",
            "service_account",
            "labels",
            "node",
            "service_namespace",
            "service_name",
            "network_set",
            "dns_names",
            "status",
        ];
        let mut expected: Vec<String> = [
            "event_id",
            "cluster_id",
            "source_format",
            "reporter_node",
            "reporter",
            "start_time",
            "end_time",
            "src_ip",
            "dst_ip",
            "src_port",
            "dst_port",
            "protocol",
            "action",
            "drop_reason",
            "bytes_out",
            "bytes_in",
            "packets_out",
            "packets_in",
            "connections_started",
            "connections_completed",
            "connections_live",
            "policies_enforced",
            "policies_pending",
            "dst_hint_dns_names",
            "dns_query",
            "dns_ips",
            "dns_ttl",
            "src_hint_namespace",
            "src_hint_name",
            "src_hint_workload_name",
            "dst_hint_namespace",
            "dst_hint_name",
            "dst_hint_workload_name",
        ]
        .map(str::to_owned)
        .to_vec();
        for side in ["src", "dst"] {
            expected.extend(endpoint.iter().map(|f| format!("{side}_{f}")));
        }
        assert_eq!(names, expected);
        assert_eq!(names.len(), FLOW_COLUMNS);
        let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "column names must be unique");
        assert_eq!(
            schema
                .field_with_name("start_time")
                .map(|f| f.data_type().clone())
                .ok(),
            Some(DataType::Timestamp(
                TimeUnit::Microsecond,
                Some("UTC".into())
            ))
        );
    }

    /// The sample flow through Parquet and back: the exact value of every column.
    #[test]
    fn sample_flow_reads_back_exactly() -> TestResult {
        let mut second = samples::enriched_flow();
        second.flow.src_ip = None;
        second.flow.dns = None;
        second.flow.src_hint = None;
        second.flow.policies_enforced.clear();
        let batch = read_back(&[samples::enriched_flow(), second])?;
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.schema(), EnrichedFlow::arrow_schema());

        // Outer `None`: no such text column (so a `None` value cannot pass by accident).
        let text = |name: &str, row: usize| -> Option<Option<String>> {
            let column = batch.column_by_name(name)?.as_string_opt::<i32>()?;
            Some(column.is_valid(row).then(|| column.value(row).to_owned()))
        };
        let some = |s: &str| Some(s.to_owned());
        for (column, value) in [
            ("event_id", some("3f1c2a9e-sample")),
            ("cluster_id", some("prod-eu-1")),
            ("source_format", some("hubble")),
            ("reporter_node", some("node-a")),
            ("reporter", some("src")),
            ("src_ip", some("10.244.1.17")),
            ("dst_ip", some("2606:4700::6810:84e5")),
            ("action", some("deny")),
            ("drop_reason", some("POLICY_DENIED")),
            ("dns_query", some("api.stripe.com")),
            ("src_hint_namespace", some("shop")),
            ("src_hint_name", some("checkout-7d9f8b6c5-x2x9q")),
            ("src_hint_workload_name", some("checkout")),
            ("dst_hint_namespace", None),
            ("dst_hint_name", None),
            ("dst_hint_workload_name", None),
            ("src_kind", some("pod")),
            ("src_namespace", some("shop")),
            ("src_name", some("checkout-7d9f8b6c5-x2x9q")),
            ("src_pod_uid", some("5b1e0c55-uid")),
            ("src_workload_kind", some("Deployment")),
            ("src_workload_name", some("checkout")),
            ("src_aggregated_name", some("checkout-7d9f8b6c5-*")),
            ("src_service_account", some("checkout")),
            ("src_node", some("node-a")),
            ("src_service_namespace", None),
            ("src_service_name", None),
            ("src_network_set", None),
            ("src_status", some("hit")),
            ("dst_kind", some("external_public")),
            ("dst_namespace", None),
            ("dst_name", None),
            ("dst_pod_uid", None),
            ("dst_workload_kind", None),
            ("dst_workload_name", None),
            ("dst_aggregated_name", some("pub")),
            ("dst_service_account", None),
            ("dst_node", None),
            ("dst_service_namespace", None),
            ("dst_service_name", None),
            ("dst_network_set", some("stripe")),
            ("dst_status", some("miss")),
        ] {
            assert_eq!(text(column, 0), Some(value), "{column}");
        }
        assert_eq!(text("src_ip", 1), Some(None));
        assert_eq!(text("dns_query", 1), Some(None));
        assert_eq!(text("src_hint_name", 1), Some(None));

        let micros = |name: &str| -> Option<i64> {
            Some(
                batch
                    .column_by_name(name)?
                    .as_primitive_opt::<TimestampMicrosecondType>()?
                    .value(0),
            )
        };
        assert_eq!(micros("start_time"), Some(1_700_000_000_123_456));
        assert_eq!(micros("end_time"), Some(1_700_000_001_000_000));

        let int32 = |name: &str| -> Option<Option<i32>> {
            let column = batch
                .column_by_name(name)?
                .as_primitive_opt::<Int32Type>()?;
            Some(column.is_valid(0).then(|| column.value(0)))
        };
        assert_eq!(int32("src_port"), Some(Some(43_512)));
        assert_eq!(int32("dst_port"), Some(Some(443)));
        assert_eq!(int32("protocol"), Some(Some(6)));

        let int64 = |name: &str| -> Option<Option<i64>> {
            let column = batch
                .column_by_name(name)?
                .as_primitive_opt::<Int64Type>()?;
            Some(column.is_valid(0).then(|| column.value(0)))
        };
        for (column, value) in [
            ("bytes_out", Some(74)),
            ("bytes_in", Some(0)),
            ("packets_out", Some(1)),
            ("packets_in", Some(0)),
            ("connections_started", Some(1)),
            ("connections_completed", Some(0)),
            ("connections_live", Some(0)),
            ("dns_ttl", Some(300)),
        ] {
            assert_eq!(int64(column), Some(value), "{column}");
        }

        let strings = |name: &str, row: usize| -> Option<Vec<String>> {
            let list = batch.column_by_name(name)?.as_list_opt::<i32>()?;
            if list.is_null(row) {
                return None;
            }
            let values = list.value(row);
            let values = values.as_string_opt::<i32>()?;
            Some(
                values
                    .iter()
                    .map(|v| v.unwrap_or_default().to_owned())
                    .collect(),
            )
        };
        assert_eq!(
            strings("dst_hint_dns_names", 0),
            Some(vec!["api.stripe.com".to_owned()])
        );
        assert_eq!(
            strings("dns_ips", 0),
            Some(vec![
                "2606:4700::6810:84e5".to_owned(),
                "104.16.132.229".to_owned()
            ])
        );
        assert_eq!(strings("dns_ips", 1), None);
        assert_eq!(strings("src_dns_names", 0), Some(vec![]));
        assert_eq!(
            strings("dst_dns_names", 0),
            Some(vec!["api.stripe.com".to_owned()])
        );

        let labels = |name: &str| -> Option<Vec<(String, String)>> {
            let map = batch.column_by_name(name)?.as_map_opt()?;
            let entries = map.value(0);
            let keys = entries.column(0).as_string_opt::<i32>()?;
            let values = entries.column(1).as_string_opt::<i32>()?;
            Some(
                keys.iter()
                    .zip(values.iter())
                    .map(|(k, v)| {
                        (
                            k.unwrap_or_default().to_owned(),
                            v.unwrap_or_default().to_owned(),
                        )
                    })
                    .collect(),
            )
        };
        assert_eq!(
            labels("src_labels"),
            Some(vec![("app".to_owned(), "checkout".to_owned())])
        );
        assert_eq!(labels("dst_labels"), Some(vec![]));

        type Hit = (
            String,
            Option<String>,
            Option<String>,
            String,
            String,
            Option<i32>,
        );
        let policies = |name: &str, row: usize| -> Option<Vec<Hit>> {
            let list = batch.column_by_name(name)?.as_list_opt::<i32>()?;
            let hits = list.value(row);
            let hits = hits.as_struct_opt()?;
            let text = |i: usize, j: usize| -> Option<String> {
                let column = hits.column(i).as_string_opt::<i32>()?;
                column.is_valid(j).then(|| column.value(j).to_owned())
            };
            let rule = hits.column(5).as_primitive_opt::<Int32Type>()?;
            Some(
                (0..hits.len())
                    .map(|j| {
                        (
                            text(0, j).unwrap_or_default(),
                            text(1, j),
                            text(2, j),
                            text(3, j).unwrap_or_default(),
                            text(4, j).unwrap_or_default(),
                            rule.is_valid(j).then(|| rule.value(j)),
                        )
                    })
                    .collect(),
            )
        };
        assert_eq!(
            policies("policies_enforced", 0),
            Some(vec![(
                "CalicoNetworkPolicy".to_owned(),
                Some("security".to_owned()),
                Some("shop".to_owned()),
                "deny-egress".to_owned(),
                "deny".to_owned(),
                Some(2),
            )])
        );
        assert_eq!(
            policies("policies_pending", 0),
            Some(vec![(
                "StagedNetworkPolicy".to_owned(),
                None,
                Some("shop".to_owned()),
                "allow-payments".to_owned(),
                "allow".to_owned(),
                None,
            )])
        );
        assert_eq!(policies("policies_enforced", 1), Some(vec![]));
        Ok(())
    }

    #[test]
    fn empty_slice_is_an_empty_batch() -> TestResult {
        let batch = EnrichedFlow::to_record_batch(&[])?;
        assert_eq!(batch.num_rows(), 0);
        assert_eq!(batch.num_columns(), FLOW_COLUMNS);
        Ok(())
    }
}
