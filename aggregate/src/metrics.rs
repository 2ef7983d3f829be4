//! Every metric the aggregate stage exports, described once by [`describe`].
//!
//! Business counters are incremented when an edge is *emitted* (revision 0 or correction),
//! by the edge's values, so within one process each equals the sum over the edges it
//! produced to `flows.edges`: a flow is counted once, when the window or correction
//! holding it is produced. Limitation: after a crash, flows of already-emitted windows that
//! lie after `held_from` are replayed and emitted again; downstream drops those rows by
//! origin, but the new process counts them. Suppressing that needs the emitted-window
//! frontier from the runtime's checkpoint, which processors cannot see yet.
//!
//! Labels name workloads, never pods or addresses; [`label_set`] is the one place a label
//! set is built, where the cardinality budget (top series kept, the rest folded into
//! `other`) will go. Handles are cached per label set, so the cost is per emitted edge,
//! not per record.

use std::collections::HashMap;

use flowlake_schemas::{Action, FlowEdge};
use metrics::{Counter, Gauge, Label, Unit};

use crate::edge::is_external;

/// Flow records that arrived after their window had closed (emitted as corrections).
pub const LATE_RECORDS: &str = "flowlake_aggregate_late_records_total";
/// Windows currently open, over all assigned partitions.
pub const OPEN_WINDOWS: &str = "flowlake_aggregate_open_windows";
/// Edges produced, by `revision_kind` (`ontime` for revision 0, `correction` otherwise).
pub const EDGES_EMITTED: &str = "flowlake_aggregate_edges_emitted_total";
/// Processing time minus the oldest watermark of the partitions that are not idle.
pub const WATERMARK_LAG: &str = "flowlake_aggregate_watermark_lag_seconds";
/// Denied flows in emitted edges.
pub const DENIED_FLOWS: &str = "flowlake_denied_flows_total";
/// Flows to destinations outside the cluster in emitted edges (denied flows excluded).
pub const EXTERNAL_EGRESS_FLOWS: &str = "flowlake_external_egress_flows_total";
/// Bytes sent to destinations outside the cluster in emitted edges (denied flows excluded).
pub const EXTERNAL_EGRESS_BYTES: &str = "flowlake_external_egress_bytes_total";

/// Describes every metric of this crate to the installed recorder; call once at start-up.
pub fn describe() {
    metrics::describe_counter!(
        LATE_RECORDS,
        Unit::Count,
        "Flow records that arrived after their window closed; emitted as corrections."
    );
    metrics::describe_gauge!(
        OPEN_WINDOWS,
        Unit::Count,
        "Event-time windows currently open."
    );
    metrics::describe_counter!(
        EDGES_EMITTED,
        Unit::Count,
        "Flow-graph edges produced, by revision kind (ontime or correction)."
    );
    metrics::describe_gauge!(
        WATERMARK_LAG,
        Unit::Seconds,
        "Processing time minus the oldest watermark of non-idle input partitions."
    );
    metrics::describe_counter!(
        DENIED_FLOWS,
        Unit::Count,
        "Denied flows, by source and destination workload, port, protocol and policy."
    );
    metrics::describe_counter!(
        EXTERNAL_EGRESS_FLOWS,
        Unit::Count,
        "Non-denied flows to destinations outside the cluster, by source and destination."
    );
    metrics::describe_counter!(
        EXTERNAL_EGRESS_BYTES,
        Unit::Bytes,
        "Bytes sent by non-denied flows to destinations outside the cluster."
    );
}

/// The business counters derived from emitted edges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BusinessMetric {
    /// [`DENIED_FLOWS`].
    DeniedFlows,
    /// [`EXTERNAL_EGRESS_FLOWS`].
    ExternalEgressFlows,
    /// [`EXTERNAL_EGRESS_BYTES`].
    ExternalEgressBytes,
}

impl BusinessMetric {
    /// The metric name.
    pub fn name(self) -> &'static str {
        match self {
            BusinessMetric::DeniedFlows => DENIED_FLOWS,
            BusinessMetric::ExternalEgressFlows => EXTERNAL_EGRESS_FLOWS,
            BusinessMetric::ExternalEgressBytes => EXTERNAL_EGRESS_BYTES,
        }
    }
}

/// Label names and values of one series, in a fixed order.
pub type LabelSet = Vec<(&'static str, String)>;

/// The label set of `metric` for `edge`. The single place labels are built: the
/// cardinality budget will map rare label sets to `other` here.
pub fn label_set(metric: BusinessMetric, edge: &FlowEdge) -> LabelSet {
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    let port = edge
        .dst_port
        .map(|port| port.to_string())
        .unwrap_or_default();
    let mut labels = vec![
        ("cluster", edge.cluster_id.clone()),
        ("src_namespace", text(&edge.src_namespace)),
        ("src_workload", text(&edge.src_workload)),
    ];
    match metric {
        BusinessMetric::DeniedFlows => labels.extend([
            ("dst_namespace", text(&edge.dst_namespace)),
            ("dst_workload", text(&edge.dst_workload)),
            ("dst_port", port),
            ("protocol", protocol_name(edge.protocol)),
            ("policy", text(&edge.policy)),
        ]),
        BusinessMetric::ExternalEgressFlows | BusinessMetric::ExternalEgressBytes => {
            labels.extend([
                ("destination", text(&edge.dst_workload)),
                ("dst_port", port),
                ("protocol", protocol_name(edge.protocol)),
            ])
        }
    }
    labels
}

/// Protocol label: the usual name for common IANA numbers, the number otherwise.
fn protocol_name(protocol: Option<i32>) -> String {
    match protocol {
        None => String::new(),
        Some(1) => "icmp".to_owned(),
        Some(6) => "tcp".to_owned(),
        Some(17) => "udp".to_owned(),
        Some(58) => "icmpv6".to_owned(),
        Some(132) => "sctp".to_owned(),
        Some(other) => other.to_string(),
    }
}

/// Pre-registered handles of the stage's metrics.
///
/// Handles bind to the recorder installed when this is built (or the local recorder of a
/// test), so build it after the exporter is installed.
pub struct AggregateMetrics {
    late_records: Counter,
    open_windows: Gauge,
    edges_ontime: Counter,
    edges_correction: Counter,
    watermark_lag: Gauge,
    /// Business counter handles by label set. Grows with the number of distinct edges
    /// that ever matched a business metric, until the cardinality budget bounds it.
    business: HashMap<(BusinessMetric, LabelSet), Counter>,
}

impl std::fmt::Debug for AggregateMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateMetrics")
            .field("business_series", &self.business.len())
            .finish_non_exhaustive()
    }
}

impl AggregateMetrics {
    /// Registers the pipeline handles with the current recorder.
    pub fn new() -> Self {
        AggregateMetrics {
            late_records: metrics::counter!(LATE_RECORDS),
            open_windows: metrics::gauge!(OPEN_WINDOWS),
            edges_ontime: metrics::counter!(EDGES_EMITTED, "revision_kind" => "ontime"),
            edges_correction: metrics::counter!(EDGES_EMITTED, "revision_kind" => "correction"),
            watermark_lag: metrics::gauge!(WATERMARK_LAG),
            business: HashMap::new(),
        }
    }

    /// Counts `count` late records.
    pub fn late_records(&self, count: u64) {
        self.late_records.increment(count);
    }

    /// Sets the number of open windows.
    pub fn set_open_windows(&self, count: usize) {
        // Window counts are far below 2^52, so the conversion is exact.
        self.open_windows.set(count as f64);
    }

    /// Sets the watermark lag in seconds.
    pub fn set_watermark_lag(&self, seconds: f64) {
        self.watermark_lag.set(seconds);
    }

    /// Counts one emitted edge: the pipeline counter and the business counters it feeds.
    pub fn edge_emitted(&mut self, edge: &FlowEdge) {
        if edge.revision == 0 {
            self.edges_ontime.increment(1);
        } else {
            self.edges_correction.increment(1);
        }
        let flows = non_negative(edge.flows);
        if edge.action == Action::Deny {
            self.business_counter(BusinessMetric::DeniedFlows, edge)
                .increment(flows);
        } else if is_external(edge.dst_kind) {
            self.business_counter(BusinessMetric::ExternalEgressFlows, edge)
                .increment(flows);
            self.business_counter(BusinessMetric::ExternalEgressBytes, edge)
                .increment(non_negative(edge.bytes_out));
        }
    }

    fn business_counter(&mut self, metric: BusinessMetric, edge: &FlowEdge) -> &Counter {
        self.business
            .entry((metric, label_set(metric, edge)))
            .or_insert_with_key(|(metric, labels)| {
                let labels: Vec<Label> = labels
                    .iter()
                    .map(|(name, value)| Label::new(*name, value.clone()))
                    .collect();
                metrics::counter!(metric.name(), labels)
            })
    }
}

impl Default for AggregateMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Counters only go up: a negative byte count from a corrupt record adds nothing.
fn non_negative(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use flowlake_schemas::{EndpointKind, samples};

    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        for counter in [
            LATE_RECORDS,
            EDGES_EMITTED,
            DENIED_FLOWS,
            EXTERNAL_EGRESS_FLOWS,
            EXTERNAL_EGRESS_BYTES,
        ] {
            assert!(counter.ends_with("_total"), "{counter}");
        }
        for name in [
            LATE_RECORDS,
            OPEN_WINDOWS,
            EDGES_EMITTED,
            WATERMARK_LAG,
            DENIED_FLOWS,
        ] {
            assert!(name.starts_with("flowlake_"), "{name}");
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
        }
    }

    #[test]
    fn denied_labels_name_workloads_only() {
        let edge = samples::flow_edge();
        let labels = label_set(BusinessMetric::DeniedFlows, &edge);
        assert_eq!(
            labels,
            vec![
                ("cluster", "prod-eu-1".to_owned()),
                ("src_namespace", "shop".to_owned()),
                ("src_workload", "checkout".to_owned()),
                ("dst_namespace", String::new()),
                ("dst_workload", "api.stripe.com".to_owned()),
                ("dst_port", "443".to_owned()),
                ("protocol", "tcp".to_owned()),
                ("policy", "security/shop/deny-egress".to_owned()),
            ]
        );
    }

    #[test]
    fn egress_labels_name_the_destination() {
        let mut edge = samples::flow_edge();
        edge.dst_kind = EndpointKind::ExternalPrivate;
        edge.dst_workload = Some("private".into());
        edge.protocol = Some(47);
        let labels = label_set(BusinessMetric::ExternalEgressBytes, &edge);
        assert_eq!(
            labels[3..],
            [
                ("destination", "private".to_owned()),
                ("dst_port", "443".to_owned()),
                ("protocol", "47".to_owned()),
            ]
        );
    }
}
