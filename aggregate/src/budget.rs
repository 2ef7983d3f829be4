//! The cardinality budget of the business metrics: at most `max_series` label sets per
//! metric; flows of any further label set are counted in one `other` series per cluster.
//!
//! Why: the labels of [`DENIED_FLOWS`](crate::metrics::DENIED_FLOWS) and the external-egress
//! counters come from data — workloads, policies and, for egress, external DNS names — so a
//! single noisy cluster (a crawler resolving thousands of hosts, a port scan being denied)
//! would otherwise create series without bound and take Prometheus down.
//!
//! **The fold.** A label set that is not admitted keeps its `cluster` label and has every
//! other label replaced by [`OTHER`]. `cluster` is kept because cluster ids are set by
//! operators (ingest's `--cluster-id`, the agent's cluster name), are few, and every
//! dashboard and alert selects by cluster: so `sum by (cluster)` of a business metric stays
//! exact whatever is folded. A metric therefore exposes at most `max_series` admitted
//! series plus one `other` series per cluster that overflowed. The flows in folded edges
//! are also counted by [`FOLDED_FLOWS`](crate::metrics::FOLDED_FLOWS)`{metric}`.
//!
//! **Which label sets win: the first `max_series` distinct label sets emitted since the
//! process started**, per metric, for the life of the process (the rule of OpenTelemetry's
//! metric cardinality limit, whose overflow series plays the role of `other` here). An
//! admitted label set is never evicted: a counter that stopped moving because a "bigger"
//! label set displaced it, and a new series appearing for the displacer, would exceed the
//! budget and make `rate()` lie about both. Exactly "the top label sets by flows" cannot
//! be had either: a stream does not know its top label sets until it has ended.
//!
//! **Determinism.** Admission depends only on the order in which edges are emitted. Within
//! one input partition that order is a function of the input (windows close by event
//! time; a window's edges are emitted in key order; only idle closes depend on the clock),
//! so a fresh process that replays a partition from the same offset admits the same label
//! sets. With several partitions per
//! instance, how their emissions interleave depends on how batches fall, and two instances
//! may admit different label sets once the budget is exhausted: what they then agree on is
//! every total — the admitted series plus `other` carry each flow exactly once, and sums
//! over the folded labels are equal. A rule that admits by a fixed hash order instead
//! (keep the `max_series` smallest hashes seen) would be order-independent only by
//! evicting, which the monotonic counters forbid; a rule that is a pure function of the
//! label set (admit when its hash falls below a threshold) cannot bound the count.
//!
//! **At restart** the budget starts empty, like every counter of the process: the first
//! label sets emitted after the restart are admitted, which may differ from before. A
//! label set admitted before and folded after stops at its last value (Prometheus treats
//! the restart as a counter reset, so `increase()` over the restart counts what the old
//! process counted plus what the new one counted, per series); its later flows appear
//! under `other`, so per-label breakdowns shift while per-cluster totals stay exact.

use std::collections::HashSet;

/// Label names and values of one series, in a fixed order (built by `metrics::label_set`).
pub type LabelSet = Vec<(&'static str, String)>;

/// The label value of a folded series.
pub const OTHER: &str = "other";

/// The label kept in the `other` series.
pub const KEPT_LABEL: &str = "cluster";

/// Default of `aggregate.metric_max_series`: 2000 label sets per business metric.
///
/// Where the number comes from: a Prometheus server keeps each active series in memory
/// for a few KiB (the usual sizing rule of thumb is 3–4 KiB in the head block), so three
/// business metrics of 2000 series each cost some 20–25 MiB of Prometheus memory per
/// aggregate instance, which a shared server of a few million series absorbs. It is also above what the metrics are for: 2000 distinct
/// (source workload, destination, port) combinations is more than a dashboard's top-k
/// panels or an alert can show, while a flood of DNS names, ports or policies is cut off.
/// In the stage, an admitted label set costs one cached handle and its strings (a few
/// hundred bytes), so the budget also bounds the stage's own memory for metrics.
pub const DEFAULT_METRIC_MAX_SERIES: usize = 2000;

/// Upper bound of `aggregate.metric_max_series`.
pub const METRIC_MAX_SERIES_LIMIT: usize = 100_000;

/// Where a label set's flows are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// In the label set's own series.
    Admitted,
    /// In the `other` series of its cluster (see [`fold`]).
    Folded,
}

/// The admitted label sets of one metric.
#[derive(Debug)]
pub struct SeriesBudget {
    max_series: usize,
    admitted: HashSet<LabelSet>,
}

impl SeriesBudget {
    /// An empty budget admitting at most `max_series` label sets.
    pub fn new(max_series: usize) -> Self {
        SeriesBudget {
            max_series,
            admitted: HashSet::new(),
        }
    }

    /// Admits `labels` when it was admitted before or the budget has room; otherwise the
    /// label set is folded. Once admitted, a label set stays admitted.
    pub fn admit(&mut self, labels: &LabelSet) -> Admission {
        if self.admitted.contains(labels) {
            return Admission::Admitted;
        }
        if self.admitted.len() < self.max_series {
            self.admitted.insert(labels.clone());
            return Admission::Admitted;
        }
        Admission::Folded
    }

    /// How many label sets are admitted.
    pub fn admitted(&self) -> usize {
        self.admitted.len()
    }
}

/// The `other` series of `labels`: the same label names, `cluster` kept, every other
/// value replaced by [`OTHER`].
pub fn fold(labels: &LabelSet) -> LabelSet {
    labels
        .iter()
        .map(|(name, value)| {
            let value = if *name == KEPT_LABEL {
                value.clone()
            } else {
                OTHER.to_owned()
            };
            (*name, value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(cluster: &str, destination: &str) -> LabelSet {
        vec![
            ("cluster", cluster.to_owned()),
            ("src_namespace", "shop".to_owned()),
            ("destination", destination.to_owned()),
        ]
    }

    #[test]
    fn admits_the_first_label_sets_and_folds_the_rest() {
        let mut budget = SeriesBudget::new(2);
        assert_eq!(budget.admit(&labels("a", "x")), Admission::Admitted);
        assert_eq!(budget.admit(&labels("a", "y")), Admission::Admitted);
        assert_eq!(budget.admit(&labels("a", "z")), Admission::Folded);
        // An admitted label set stays admitted; a folded one stays folded.
        assert_eq!(budget.admit(&labels("a", "x")), Admission::Admitted);
        assert_eq!(budget.admit(&labels("a", "z")), Admission::Folded);
        assert_eq!(budget.admitted(), 2);
    }

    #[test]
    fn the_same_emission_order_admits_the_same_label_sets() {
        let order: Vec<LabelSet> = (0..50)
            .map(|i| labels("a", &format!("host-{}", (i * 7) % 23)))
            .collect();
        let run = |order: &[LabelSet]| -> Vec<Admission> {
            let mut budget = SeriesBudget::new(5);
            order.iter().map(|l| budget.admit(l)).collect()
        };
        assert_eq!(run(&order), run(&order));
    }

    #[test]
    fn fold_keeps_the_cluster_and_the_label_names() {
        assert_eq!(
            fold(&labels("prod-eu-1", "api.stripe.com")),
            vec![
                ("cluster", "prod-eu-1".to_owned()),
                ("src_namespace", "other".to_owned()),
                ("destination", "other".to_owned()),
            ]
        );
    }

    #[test]
    fn a_zero_budget_folds_everything() {
        let mut budget = SeriesBudget::new(0);
        assert_eq!(budget.admit(&labels("a", "x")), Admission::Folded);
        assert_eq!(budget.admitted(), 0);
    }
}
