//! The enrich stage's metrics, all in one place (described at start-up by [`describe`]).
//!
//! Per-record counts are tallied in plain integers by the processor and added to
//! pre-registered handles once per batch ([`EndpointCounters::add`]); labels are bounded
//! (side × status, identity kind; `cluster` × status, which grows with the number of
//! clusters — tens to a few hundred in the deployments we serve, four series each).

use flowlake_schemas::EnrichmentStatus;
use metrics::{Counter, Gauge, Unit};

use crate::table::TableStats;

/// Endpoints enriched, by side (`src`, `dst`) and status (`hit`, `miss`, `stale`, `hint`).
pub const ENDPOINTS_TOTAL: &str = "flowlake_enrich_endpoints_total";
/// Endpoints enriched, by cluster and status.
pub const CLUSTER_ENDPOINTS_TOTAL: &str = "flowlake_enrich_cluster_endpoints_total";
/// Entries in the identity table, by kind (`pod`, `node`, `service`, `namespace`, `owner`,
/// `network_set`, `address`, `ended`, `dns_address`).
pub const IDENTITY_ENTRIES: &str = "flowlake_enrich_identity_entries";
/// Identity records applied to the table.
pub const IDENTITY_UPDATES_TOTAL: &str = "flowlake_enrich_identity_updates_total";
/// Deleted objects forgotten after their retention.
pub const IDENTITY_PRUNED_TOTAL: &str = "flowlake_enrich_identity_pruned_total";
/// Identity records waiting in the channel.
pub const IDENTITY_PENDING: &str = "flowlake_enrich_identity_pending_updates";

/// Describes every metric of the stage (call once at start-up, after the recorder is
/// installed).
pub fn describe() {
    metrics::describe_counter!(
        ENDPOINTS_TOTAL,
        Unit::Count,
        "Flow endpoints enriched, by side (src, dst) and enrichment status (hit, miss, stale, hint)"
    );
    metrics::describe_counter!(
        CLUSTER_ENDPOINTS_TOTAL,
        Unit::Count,
        "Flow endpoints enriched, by cluster and enrichment status (hit, miss, stale, hint)"
    );
    metrics::describe_gauge!(
        IDENTITY_ENTRIES,
        Unit::Count,
        "Entries in the identity table, by kind (pod, node, service, namespace, owner, network_set objects; address: addresses held; ended: deleted objects kept for late flows; dns_address: addresses with learned DNS names)"
    );
    metrics::describe_counter!(
        IDENTITY_UPDATES_TOTAL,
        Unit::Count,
        "Identity records applied to the table"
    );
    metrics::describe_counter!(
        IDENTITY_PRUNED_TOTAL,
        Unit::Count,
        "Deleted identity objects forgotten after the deleted retention"
    );
    metrics::describe_gauge!(
        IDENTITY_PENDING,
        Unit::Count,
        "Identity records waiting to be applied"
    );
}

/// Which end of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowSide {
    /// Source.
    Src,
    /// Destination.
    Dst,
}

impl FlowSide {
    const ALL: [FlowSide; 2] = [FlowSide::Src, FlowSide::Dst];

    fn label(self) -> &'static str {
        match self {
            FlowSide::Src => "src",
            FlowSide::Dst => "dst",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

const STATUSES: [EnrichmentStatus; 4] = [
    EnrichmentStatus::Miss,
    EnrichmentStatus::Hit,
    EnrichmentStatus::Stale,
    EnrichmentStatus::Hint,
];

fn status_label(status: EnrichmentStatus) -> &'static str {
    match status {
        EnrichmentStatus::Miss => "miss",
        EnrichmentStatus::Hit => "hit",
        EnrichmentStatus::Stale => "stale",
        EnrichmentStatus::Hint => "hint",
    }
}

fn status_index(status: EnrichmentStatus) -> usize {
    match status {
        EnrichmentStatus::Miss => 0,
        EnrichmentStatus::Hit => 1,
        EnrichmentStatus::Stale => 2,
        EnrichmentStatus::Hint => 3,
    }
}

/// Endpoint counts of one batch, before they are added to the counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointTally {
    counts: [[u64; 4]; 2],
}

impl EndpointTally {
    /// Counts one endpoint.
    pub fn record(&mut self, side: FlowSide, status: EnrichmentStatus) {
        self.counts[side.index()][status_index(status)] += 1;
    }

    /// The count for one side and status.
    pub fn get(&self, side: FlowSide, status: EnrichmentStatus) -> u64 {
        self.counts[side.index()][status_index(status)]
    }

    /// True when nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.counts.iter().flatten().all(|&n| n == 0)
    }
}

/// Pre-registered handles of [`ENDPOINTS_TOTAL`], one per side and status.
#[derive(Clone)]
pub struct EndpointCounters {
    handles: [[Counter; 4]; 2],
}

impl std::fmt::Debug for EndpointCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointCounters").finish_non_exhaustive()
    }
}

impl EndpointCounters {
    /// Registers the eight series with the installed recorder.
    pub fn register() -> Self {
        let handles = FlowSide::ALL.map(|side| {
            STATUSES.map(|status| {
                metrics::counter!(
                    ENDPOINTS_TOTAL,
                    "side" => side.label(),
                    "status" => status_label(status)
                )
            })
        });
        EndpointCounters { handles }
    }

    /// Adds a batch's tally and clears it.
    pub fn add(&self, tally: &mut EndpointTally) {
        for (handles, counts) in self.handles.iter().zip(tally.counts.iter_mut()) {
            for (handle, count) in handles.iter().zip(counts.iter_mut()) {
                if *count > 0 {
                    handle.increment(*count);
                    *count = 0;
                }
            }
        }
    }
}

/// Kinds of [`IDENTITY_ENTRIES`], in [`TableGauges`] order.
const ENTRY_KINDS: [&str; 9] = [
    "pod",
    "node",
    "service",
    "namespace",
    "owner",
    "network_set",
    "address",
    "ended",
    "dns_address",
];

/// Pre-registered handles of the table's gauges and update counters.
#[derive(Clone)]
pub struct TableGauges {
    entries: [Gauge; 9],
    updates: Counter,
    pruned: Counter,
    pending: Gauge,
}

impl std::fmt::Debug for TableGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableGauges").finish_non_exhaustive()
    }
}

impl TableGauges {
    /// Registers the series with the installed recorder.
    pub fn register() -> Self {
        TableGauges {
            entries: ENTRY_KINDS.map(|kind| metrics::gauge!(IDENTITY_ENTRIES, "kind" => kind)),
            updates: metrics::counter!(IDENTITY_UPDATES_TOTAL),
            pruned: metrics::counter!(IDENTITY_PRUNED_TOTAL),
            pending: metrics::gauge!(IDENTITY_PENDING),
        }
    }

    /// Sets the entry gauges from `stats` and the DNS cache size.
    pub fn set_entries(&self, stats: &TableStats, dns_addresses: usize) {
        let values = [
            stats.pods,
            stats.nodes,
            stats.services,
            stats.namespaces,
            stats.owners,
            stats.network_sets,
            stats.addresses,
            stats.ended,
            dns_addresses as u64,
        ];
        for (gauge, value) in self.entries.iter().zip(values) {
            // Exact as f64 up to 2^53 entries.
            gauge.set(value as f64);
        }
    }

    /// Counts applied updates, pruned objects and what is still pending.
    pub fn add_updates(&self, applied: u64, pruned: u64, pending: usize) {
        self.updates.increment(applied);
        self.pruned.increment(pruned);
        self.pending.set(pending as f64);
    }
}

/// Sets [`IDENTITY_ENTRIES`] from a table (a one-off, for callers without handles).
pub fn record_identity_entries(stats: &TableStats) {
    TableGauges::register().set_entries(stats, 0);
}

/// One cluster's [`CLUSTER_ENDPOINTS_TOTAL`] handles and the counts not yet added.
pub struct ClusterCounters {
    handles: [Counter; 4],
    counts: [u64; 4],
}

impl ClusterCounters {
    /// Registers the four series of `cluster` with the installed recorder.
    pub fn register(cluster: &str) -> Self {
        let cluster = cluster.to_owned();
        ClusterCounters {
            handles: STATUSES.map(|status| {
                metrics::counter!(
                    CLUSTER_ENDPOINTS_TOTAL,
                    "cluster" => cluster.clone(),
                    "status" => status_label(status)
                )
            }),
            counts: [0; 4],
        }
    }

    /// Counts one endpoint.
    pub fn record(&mut self, status: EnrichmentStatus) {
        self.counts[status_index(status)] += 1;
    }

    /// Adds the counts to the counters and clears them.
    pub fn flush(&mut self) {
        for (handle, count) in self.handles.iter().zip(self.counts.iter_mut()) {
            if *count > 0 {
                handle.increment(*count);
                *count = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_per_side_and_status() {
        let mut tally = EndpointTally::default();
        assert!(tally.is_empty());
        tally.record(FlowSide::Src, EnrichmentStatus::Hit);
        tally.record(FlowSide::Src, EnrichmentStatus::Hit);
        tally.record(FlowSide::Dst, EnrichmentStatus::Miss);
        tally.record(FlowSide::Dst, EnrichmentStatus::Hint);
        assert_eq!(tally.get(FlowSide::Src, EnrichmentStatus::Hit), 2);
        assert_eq!(tally.get(FlowSide::Dst, EnrichmentStatus::Hit), 0);
        assert_eq!(tally.get(FlowSide::Dst, EnrichmentStatus::Miss), 1);
        assert_eq!(tally.get(FlowSide::Dst, EnrichmentStatus::Hint), 1);
        // Without a recorder the handles are no-ops; adding still clears the tally.
        EndpointCounters::register().add(&mut tally);
        assert!(tally.is_empty());
    }
}
