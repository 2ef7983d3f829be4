//! Every metric the aggregate stage exports, described once by [`describe`].
//!
//! Business counters are incremented once per emitted edge (revision 0 or correction), by
//! the edge's values, when the processor learns that the edge and the checkpoint covering
//! it are acknowledged (`Processor::on_committed`): a flow is counted once, by the process
//! whose checkpoint covers it. An edge re-emitted after a crash (the dead process never
//! reached its checkpoint) is counted by the next owner only.
//!
//! Labels name workloads, never pods or addresses; [`label_set`] is the one place a label
//! set is built. Each business metric has a cardinality budget ([`crate::budget`]): the
//! first `aggregate.metric_max_series` label sets get their own series, the flows of any
//! other label set go to its cluster's `other` series and are counted in [`FOLDED_FLOWS`].
//! Handles are cached per admitted label set, so the cost is per emitted edge, not per
//! record, and the cache is bounded by the budget.

use std::collections::HashMap;

use flowlake_schemas::{Action, FlowEdge};
use metrics::{Counter, Gauge, Label, Unit};

use crate::budget::{self, Admission, LabelSet, SeriesBudget};
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

/// Flows of emitted edges whose label set was over a business metric's budget and was
/// counted in its `other` series instead, by `metric` (the business metric's name).
pub const FOLDED_FLOWS: &str = "flowlake_aggregate_metric_folded_flows_total";

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
    metrics::describe_counter!(
        FOLDED_FLOWS,
        Unit::Count,
        "Flows counted in a business metric's other series because its label set was over the series budget."
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
    /// Every business metric, in the order of their budgets in [`AggregateMetrics`].
    pub const ALL: [BusinessMetric; 3] = [
        BusinessMetric::DeniedFlows,
        BusinessMetric::ExternalEgressFlows,
        BusinessMetric::ExternalEgressBytes,
    ];

    fn index(self) -> usize {
        match self {
            BusinessMetric::DeniedFlows => 0,
            BusinessMetric::ExternalEgressFlows => 1,
            BusinessMetric::ExternalEgressBytes => 2,
        }
    }

    /// The metric name.
    pub fn name(self) -> &'static str {
        match self {
            BusinessMetric::DeniedFlows => DENIED_FLOWS,
            BusinessMetric::ExternalEgressFlows => EXTERNAL_EGRESS_FLOWS,
            BusinessMetric::ExternalEgressBytes => EXTERNAL_EGRESS_BYTES,
        }
    }
}

/// The label set of `metric` for `edge`: the single place labels are built, before the
/// cardinality budget decides whether they get their own series.
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
    /// Business counter handles by admitted label set, and the `other` series: at most
    /// `max_series` plus one per cluster, per metric.
    business: HashMap<(BusinessMetric, LabelSet), Counter>,
    /// The admitted label sets, per metric (indexed by `BusinessMetric::index`).
    budgets: [SeriesBudget; 3],
    /// [`FOLDED_FLOWS`] per metric (indexed by `BusinessMetric::index`).
    folded: [Counter; 3],
}

impl std::fmt::Debug for AggregateMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateMetrics")
            .field("business_series", &self.business.len())
            .finish_non_exhaustive()
    }
}

impl AggregateMetrics {
    /// Registers the pipeline handles with the current recorder, with the default budget
    /// of [`budget::DEFAULT_METRIC_MAX_SERIES`] label sets per business metric.
    pub fn new() -> Self {
        Self::with_max_series(budget::DEFAULT_METRIC_MAX_SERIES)
    }

    /// Registers the pipeline handles with the current recorder; each business metric
    /// admits at most `max_series` label sets (`aggregate.metric_max_series`).
    pub fn with_max_series(max_series: usize) -> Self {
        AggregateMetrics {
            late_records: metrics::counter!(LATE_RECORDS),
            open_windows: metrics::gauge!(OPEN_WINDOWS),
            edges_ontime: metrics::counter!(EDGES_EMITTED, "revision_kind" => "ontime"),
            edges_correction: metrics::counter!(EDGES_EMITTED, "revision_kind" => "correction"),
            watermark_lag: metrics::gauge!(WATERMARK_LAG),
            business: HashMap::new(),
            budgets: BusinessMetric::ALL.map(|_| SeriesBudget::new(max_series)),
            folded: BusinessMetric::ALL
                .map(|metric| metrics::counter!(FOLDED_FLOWS, "metric" => metric.name())),
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
            self.count(BusinessMetric::DeniedFlows, edge, flows, flows);
        } else if is_external(edge.dst_kind) {
            self.count(BusinessMetric::ExternalEgressFlows, edge, flows, flows);
            let bytes = non_negative(edge.bytes_out);
            self.count(BusinessMetric::ExternalEgressBytes, edge, bytes, flows);
        }
    }

    /// Adds `value` to `metric`'s series for `edge`, or to its `other` series when the
    /// label set is over the budget (then its `flows` are counted as folded too).
    fn count(&mut self, metric: BusinessMetric, edge: &FlowEdge, value: u64, flows: u64) {
        let labels = label_set(metric, edge);
        let labels = match self.budgets[metric.index()].admit(&labels) {
            Admission::Admitted => labels,
            Admission::Folded => {
                self.folded[metric.index()].increment(flows);
                budget::fold(&labels)
            }
        };
        self.business_counter(metric, labels).increment(value);
    }

    fn business_counter(&mut self, metric: BusinessMetric, labels: LabelSet) -> &Counter {
        self.business
            .entry((metric, labels))
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

    /// A rendered exposition's sample lines of `name` (without `# HELP`/`# TYPE`).
    fn samples<'t>(text: &'t str, name: &str) -> Vec<&'t str> {
        text.lines()
            .filter(|line| {
                line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
            })
            .collect()
    }

    fn egress_edge(cluster: &str, destination: &str, flows: i64) -> FlowEdge {
        let mut edge = samples::flow_edge();
        edge.cluster_id = cluster.into();
        edge.action = Action::Allow;
        edge.policy = None;
        edge.dst_workload = Some(destination.into());
        edge.flows = flows;
        edge.bytes_out = flows * 1000;
        edge
    }

    fn denied_edge(destination: &str, flows: i64) -> FlowEdge {
        let mut edge = samples::flow_edge();
        edge.dst_kind = EndpointKind::Pod;
        edge.dst_namespace = Some("payments".into());
        edge.dst_workload = Some(destination.into());
        edge.flows = flows;
        edge
    }

    /// Emits `edges` into a fresh Prometheus recorder with a budget of `max_series` and
    /// returns its exposition.
    fn render(max_series: usize, edges: &[FlowEdge]) -> String {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            let mut metrics = AggregateMetrics::with_max_series(max_series);
            for edge in edges {
                metrics.edge_emitted(edge);
            }
        });
        handle.render()
    }

    /// The sample value of the line of `name` whose labels are exactly `labels`.
    fn value(text: &str, name: &str, labels: &str) -> Option<u64> {
        let prefix = format!("{name}{{{labels}}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn ten_times_the_budget_of_destinations_keeps_budget_plus_one_series() {
        const BUDGET: usize = 20;
        // Distinct destinations with distinct flow counts (1, 2, …), 10× the budget of
        // each kind, interleaved the way one partition's window emits them.
        let mut edges = Vec::new();
        for i in 0..10 * BUDGET {
            let flows = i64::try_from(i + 1).unwrap_or(i64::MAX);
            edges.push(egress_edge(
                "prod-eu-1",
                &format!("host-{i:03}.example.com"),
                flows,
            ));
            edges.push(denied_edge(&format!("svc-{i:03}"), flows));
        }
        // A repeat of an admitted label set goes to its own series, not to `other`.
        edges.push(egress_edge("prod-eu-1", "host-000.example.com", 1000));
        let text = render(BUDGET, &edges);

        for name in [DENIED_FLOWS, EXTERNAL_EGRESS_FLOWS, EXTERNAL_EGRESS_BYTES] {
            assert_eq!(samples(&text, name).len(), BUDGET + 1, "{name}:\n{text}");
        }
        // The first BUDGET destinations (flows 1..=20) are admitted; 21..=200 are folded.
        let folded: u64 = (21..=200).sum();
        assert_eq!(folded, 19_890);
        let egress_other = r#"cluster="prod-eu-1",src_namespace="other",src_workload="other",destination="other",dst_port="other",protocol="other""#;
        assert_eq!(
            value(&text, EXTERNAL_EGRESS_FLOWS, egress_other),
            Some(folded)
        );
        assert_eq!(
            value(&text, EXTERNAL_EGRESS_BYTES, egress_other),
            Some(folded * 1000)
        );
        let denied_other = r#"cluster="prod-eu-1",src_namespace="other",src_workload="other",dst_namespace="other",dst_workload="other",dst_port="other",protocol="other",policy="other""#;
        assert_eq!(value(&text, DENIED_FLOWS, denied_other), Some(folded));
        // An admitted series carries exactly its own flows.
        assert_eq!(
            value(
                &text,
                EXTERNAL_EGRESS_FLOWS,
                r#"cluster="prod-eu-1",src_namespace="shop",src_workload="checkout",destination="host-000.example.com",dst_port="443",protocol="tcp""#
            ),
            Some(1001)
        );
        assert_eq!(
            value(
                &text,
                DENIED_FLOWS,
                r#"cluster="prod-eu-1",src_namespace="shop",src_workload="checkout",dst_namespace="payments",dst_workload="svc-019",dst_port="443",protocol="tcp",policy="security/shop/deny-egress""#
            ),
            Some(20)
        );
        // The folded counter says how many flows each metric folded.
        for name in [DENIED_FLOWS, EXTERNAL_EGRESS_FLOWS, EXTERNAL_EGRESS_BYTES] {
            assert_eq!(
                value(&text, FOLDED_FLOWS, &format!("metric=\"{name}\"")),
                Some(folded),
                "{text}"
            );
        }
        // Nothing is lost: admitted plus other equals everything emitted.
        let total: u64 = samples(&text, EXTERNAL_EGRESS_FLOWS)
            .iter()
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert_eq!(total, (1..=200).sum::<u64>() + 1000);
    }

    #[test]
    fn each_cluster_gets_its_own_other_series() {
        let edges = [
            egress_edge("a", "x.example.com", 1),
            egress_edge("a", "y.example.com", 2),
            egress_edge("b", "x.example.com", 4),
            egress_edge("b", "z.example.com", 8),
        ];
        let text = render(1, &edges);
        let other = |cluster: &str| {
            format!(
                r#"cluster="{cluster}",src_namespace="other",src_workload="other",destination="other",dst_port="other",protocol="other""#
            )
        };
        assert_eq!(samples(&text, EXTERNAL_EGRESS_FLOWS).len(), 3, "{text}");
        assert_eq!(value(&text, EXTERNAL_EGRESS_FLOWS, &other("a")), Some(2));
        assert_eq!(value(&text, EXTERNAL_EGRESS_FLOWS, &other("b")), Some(12));
        assert_eq!(
            value(
                &text,
                FOLDED_FLOWS,
                &format!("metric=\"{EXTERNAL_EGRESS_FLOWS}\"")
            ),
            Some(14)
        );
    }

    #[test]
    fn within_the_budget_nothing_is_folded() {
        let edges = [
            egress_edge("a", "x.example.com", 1),
            egress_edge("a", "y.example.com", 2),
        ];
        let text = render(2, &edges);
        assert_eq!(samples(&text, EXTERNAL_EGRESS_FLOWS).len(), 2, "{text}");
        assert!(!text.contains(r#""other""#), "{text}");
        assert_eq!(
            value(
                &text,
                FOLDED_FLOWS,
                &format!("metric=\"{EXTERNAL_EGRESS_FLOWS}\"")
            ),
            Some(0)
        );
    }
}
