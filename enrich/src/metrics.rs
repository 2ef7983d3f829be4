//! The enrich stage's metrics, all in one place (described at start-up by [`describe`]).
//!
//! Per-record counts are tallied in plain integers by the processor and added to
//! pre-registered handles once per batch ([`EndpointCounters::add`]); labels are bounded
//! (side × status, identity kind).

use flowlake_schemas::EnrichmentStatus;
use metrics::{Counter, Gauge, Unit};

use crate::table::TableStats;

/// Endpoints enriched, by side (`src`, `dst`) and status (`hit`, `miss`, `stale`, `hint`).
pub const ENDPOINTS_TOTAL: &str = "flowlake_enrich_endpoints_total";
/// Entries in the identity table, by kind (`pod`, `node`, `service`, `namespace`).
pub const IDENTITY_ENTRIES: &str = "flowlake_enrich_identity_entries";

/// Describes every metric of the stage (call once at start-up, after the recorder is
/// installed).
pub fn describe() {
    metrics::describe_counter!(
        ENDPOINTS_TOTAL,
        Unit::Count,
        "Flow endpoints enriched, by side (src, dst) and enrichment status (hit, miss, stale, hint)"
    );
    metrics::describe_gauge!(
        IDENTITY_ENTRIES,
        Unit::Count,
        "Entries in the identity table in use, by kind (pod, node, service: addresses; namespace)"
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

/// Sets [`IDENTITY_ENTRIES`] from a newly built table.
pub fn record_identity_entries(stats: &TableStats) {
    let kinds = [
        ("pod", stats.pods),
        ("node", stats.nodes),
        ("service", stats.services),
        ("namespace", stats.namespaces),
    ];
    for (kind, entries) in kinds {
        let gauge: Gauge = metrics::gauge!(IDENTITY_ENTRIES, "kind" => kind);
        // Exact as f64 up to 2^53 entries.
        gauge.set(entries as f64);
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
