//! Event-time windows of one input partition ([`PartitionWindows`]).
//!
//! Each input partition is aggregated on its own, like a Kafka Streams task: its own open
//! windows, watermark, pending corrections and held offsets. Nothing here reads a clock;
//! callers pass `now`, so tests drive time explicitly.
//!
//! Protocol:
//! - A flow belongs to the tumbling window `[s, s + window)` containing its `start_time`,
//!   windows aligned to the Unix epoch.
//! - The watermark is the newest `start_time` seen minus `allowed_lateness`. A window closes
//!   when the watermark reaches its end. The closed frontier (`closed_until`, a window
//!   boundary) only moves forward; a flow whose window ends at or before it is **late**.
//!   Closing happens while folding, so which flows are on time depends only on the order of
//!   the input, never on when batches or flushes happen: a replay of the partition makes
//!   the same revision-0 rows.
//! - Idle: when a partition has received nothing for `idle_timeout` of processing time, all
//!   its open windows close (the watermark is +∞ until new data arrives) and the frontier
//!   moves to the end of the newest window. This is what lets a finite input produce its
//!   edges. It is the one decision that depends on processing time; a replay that does not
//!   pause may instead emit those flows on time, with the same sums.
//! - Late flows are never dropped: they are folded into a correction per window, emitted
//!   at the next flush with `revision` = corrections already emitted for that window + 1.
//!   Revision counters are kept for windows ending less than [`REVISION_MEMORY`] of event
//!   time behind the newest flow, and for at most [`MAX_REVISION_COUNTERS`] windows; a
//!   window whose counter was pruned, or a window corrected after a restart, starts again
//!   at revision 1. Revisions are therefore not unique ids — rows are additive and
//!   deduplicated by their origin — but they are deterministic for a given input.
//! - [`PartitionWindows::held_from`] is the smallest input offset folded into any window
//!   not yet emitted (open, closed-but-unsent, or pending correction). It moves forward only
//!   when windows are emitted, so a crash replays every flow whose edge was not produced.
//! - Flows starting more than `max_future_skew` after `now` are refused ([`FutureEvent`]),
//!   so a node with a wrong clock cannot push the watermark ahead and make everything late.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flowlake_schemas::{EnrichedFlow, Timestamp};

use crate::edge::{EdgeKey, EdgeValue, Folded};
use crate::settings::AggregateSettings;

/// Event time for which the revision counter of a closed window is remembered.
pub const REVISION_MEMORY: Duration = Duration::from_secs(24 * 60 * 60);

/// Most windows per partition with a remembered revision counter (oldest pruned first):
/// bounds memory when windows are short and corrections touch many of them.
pub const MAX_REVISION_COUNTERS: usize = 4096;

/// The window parameters, in the units the window logic computes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowParams {
    /// Window length in microseconds (> 0).
    pub window_micros: i64,
    /// Allowed lateness in microseconds.
    pub lateness_micros: i64,
    /// Processing time without input after which a partition closes its windows.
    pub idle_timeout: Duration,
    /// Furthest a flow may start ahead of `now`, in microseconds.
    pub max_future_skew_micros: i64,
    /// Bound of the distinct source pod count per edge and window.
    pub max_distinct_src_pods: usize,
}

impl From<&AggregateSettings> for WindowParams {
    fn from(settings: &AggregateSettings) -> Self {
        WindowParams {
            // Validated settings keep the window ≥ 1 s; max(1) keeps a window of zero from
            // dividing by zero if unvalidated settings slip through.
            window_micros: duration_micros(settings.window).max(1),
            lateness_micros: duration_micros(settings.allowed_lateness),
            idle_timeout: settings.idle_timeout,
            max_future_skew_micros: duration_micros(settings.max_future_skew),
            max_distinct_src_pods: settings.max_distinct_src_pods,
        }
    }
}

/// A flow refused because it starts too far after the stage's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "flow starts at {start_time}, after the latest accepted start {limit} (now + max_future_skew)"
)]
pub struct FutureEvent {
    /// The flow's start time.
    pub start_time: Timestamp,
    /// The latest start time accepted at that moment.
    pub limit: Timestamp,
}

/// Where a folded flow went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fold {
    /// Into an open window.
    OnTime,
    /// Its window had closed: into that window's pending correction.
    Late,
}

/// One window's edges ready to produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emission {
    /// Window start (inclusive).
    pub window_start: Timestamp,
    /// Window end (exclusive).
    pub window_end: Timestamp,
    /// 0 when the window closed; n > 0 for its n-th correction.
    pub revision: i32,
    /// Highest input offset folded into these edges (their origin offset).
    pub max_offset: i64,
    /// Edges sorted by key.
    pub edges: Vec<(EdgeKey, EdgeValue)>,
}

/// Edges folded into one window (or one window's correction).
#[derive(Debug)]
struct WindowState {
    edges: HashMap<EdgeKey, EdgeValue>,
    min_offset: i64,
    max_offset: i64,
}

impl WindowState {
    fn new(offset: i64) -> Self {
        WindowState {
            edges: HashMap::new(),
            min_offset: offset,
            max_offset: offset,
        }
    }

    fn fold(&mut self, folded: Folded, offset: i64, max_pods: usize) {
        self.min_offset = self.min_offset.min(offset);
        self.max_offset = self.max_offset.max(offset);
        match self.edges.entry(folded.key) {
            Entry::Occupied(mut edge) => edge.get_mut().merge(&folded.value, max_pods),
            Entry::Vacant(edge) => {
                edge.insert(EdgeValue::first(folded.value, max_pods));
            }
        }
    }

    fn into_sorted_edges(self) -> Vec<(EdgeKey, EdgeValue)> {
        let mut edges: Vec<_> = self.edges.into_iter().collect();
        // Keys are unique, so the unstable sort is still a total, deterministic order.
        edges.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        edges
    }
}

/// The window state of one input partition; see the module doc for the protocol.
#[derive(Debug)]
pub struct PartitionWindows {
    params: WindowParams,
    /// Open windows by start.
    open: BTreeMap<i64, WindowState>,
    /// Closed windows whose revision-0 edges are not yet emitted, by start.
    closed: BTreeMap<i64, WindowState>,
    /// Late flows of closed windows, by window start, awaiting emission.
    corrections: BTreeMap<i64, WindowState>,
    /// Corrections already emitted, by window start.
    revisions: BTreeMap<i64, i32>,
    /// Newest start time seen (µs).
    max_start: Option<i64>,
    /// Windows ending at or before this boundary (µs) are closed.
    closed_until: Option<i64>,
    /// Processing time of the last folded flow.
    last_input: Option<SystemTime>,
    /// Idle since the last folded flow: the watermark is +∞.
    idle: bool,
}

impl PartitionWindows {
    /// Empty state for a newly assigned partition.
    pub fn new(params: WindowParams) -> Self {
        PartitionWindows {
            params,
            open: BTreeMap::new(),
            closed: BTreeMap::new(),
            corrections: BTreeMap::new(),
            revisions: BTreeMap::new(),
            max_start: None,
            closed_until: None,
            last_input: None,
            idle: false,
        }
    }

    /// Folds one flow read at `offset`, received at processing time `now`.
    pub fn fold(
        &mut self,
        flow: EnrichedFlow,
        offset: i64,
        now: SystemTime,
    ) -> Result<Fold, FutureEvent> {
        let start = flow.flow.start_time.as_micros();
        let limit = system_time_micros(now).saturating_add(self.params.max_future_skew_micros);
        if start > limit {
            return Err(FutureEvent {
                start_time: flow.flow.start_time,
                limit: Timestamp::from_micros(limit),
            });
        }
        self.last_input = Some(now);
        self.idle = false;

        let max_start = self.max_start.map_or(start, |max| max.max(start));
        self.max_start = Some(max_start);
        let watermark = max_start.saturating_sub(self.params.lateness_micros);
        self.close_until(self.align(watermark));

        let window_start = self.align(start);
        let folded = Folded::from_flow(flow);
        let max_pods = self.params.max_distinct_src_pods;
        if self.is_closed(window_start) {
            self.corrections
                .entry(window_start)
                .or_insert_with(|| WindowState::new(offset))
                .fold(folded, offset, max_pods);
            Ok(Fold::Late)
        } else {
            self.open
                .entry(window_start)
                .or_insert_with(|| WindowState::new(offset))
                .fold(folded, offset, max_pods);
            Ok(Fold::OnTime)
        }
    }

    /// Closes every open window if nothing arrived for `idle_timeout` before `now`.
    /// Returns the number of windows closed.
    pub fn close_if_idle(&mut self, now: SystemTime) -> usize {
        let Some(last_input) = self.last_input else {
            return 0;
        };
        if self.idle {
            return 0;
        }
        // A clock that went backwards reads as "not idle", never as idle.
        let quiet = now.duration_since(last_input).unwrap_or(Duration::ZERO);
        if quiet < self.params.idle_timeout {
            return 0;
        }
        self.idle = true;
        self.close_all()
    }

    /// Closes every open window regardless of time (bounded inputs that are finished).
    /// Returns the number of windows closed.
    pub fn close_all(&mut self) -> usize {
        let Some((&newest, _)) = self.open.last_key_value() else {
            return 0;
        };
        let count = self.open.len();
        self.close_until(newest.saturating_add(self.params.window_micros));
        count
    }

    /// Takes everything ready to produce: closed windows (revision 0) and pending
    /// corrections, ordered by window, then revision; each window's edges sorted by key.
    pub fn take_due(&mut self) -> Vec<Emission> {
        let mut due = Vec::with_capacity(self.closed.len() + self.corrections.len());
        for (start, state) in std::mem::take(&mut self.closed) {
            due.push(self.emission(start, 0, state));
        }
        for (start, state) in std::mem::take(&mut self.corrections) {
            let revision = self.revisions.entry(start).or_insert(0);
            *revision = revision.saturating_add(1);
            let revision = *revision;
            due.push(self.emission(start, revision, state));
        }
        if !due.is_empty() {
            // Stable: a window's revision 0 stays ahead of its correction.
            due.sort_by_key(|emission| emission.window_start);
            self.prune_revisions();
        }
        due
    }

    /// The lowest input offset whose flow is folded into something not yet emitted.
    pub fn held_from(&self) -> Option<i64> {
        self.open
            .values()
            .chain(self.closed.values())
            .chain(self.corrections.values())
            .map(|state| state.min_offset)
            .min()
    }

    /// Current watermark; None before the first flow and while idle (+∞).
    pub fn watermark(&self) -> Option<Timestamp> {
        if self.idle {
            return None;
        }
        self.max_start
            .map(|max| Timestamp::from_micros(max.saturating_sub(self.params.lateness_micros)))
    }

    /// Number of open windows.
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }

    /// Start of the window containing `micros`.
    fn align(&self, micros: i64) -> i64 {
        // Saturating: a start time near i64::MIN (corrupt input) must not overflow.
        micros
            .div_euclid(self.params.window_micros)
            .saturating_mul(self.params.window_micros)
    }

    fn is_closed(&self, window_start: i64) -> bool {
        let end = window_start.saturating_add(self.params.window_micros);
        self.closed_until.is_some_and(|closed| end <= closed)
    }

    /// Moves the closed frontier forward to `boundary` and closes the windows behind it.
    fn close_until(&mut self, boundary: i64) {
        if self.closed_until.is_some_and(|closed| closed >= boundary) {
            return;
        }
        self.closed_until = Some(boundary);
        // Windows starting before an aligned boundary end at or before it.
        let still_open = self.open.split_off(&boundary);
        let closing = std::mem::replace(&mut self.open, still_open);
        self.closed.extend(closing);
    }

    fn emission(&self, start: i64, revision: i32, state: WindowState) -> Emission {
        Emission {
            window_start: Timestamp::from_micros(start),
            window_end: Timestamp::from_micros(start.saturating_add(self.params.window_micros)),
            revision,
            max_offset: state.max_offset,
            edges: state.into_sorted_edges(),
        }
    }

    /// Forgets revision counters by event-time age and by count; depends only on the
    /// input, so a replay prunes the same way.
    fn prune_revisions(&mut self) {
        if let Some(max_start) = self.max_start {
            let horizon = max_start.saturating_sub(duration_micros(REVISION_MEMORY));
            let first_kept = self
                .align(horizon)
                .saturating_sub(self.params.window_micros);
            self.revisions = self.revisions.split_off(&first_kept);
        }
        while self.revisions.len() > MAX_REVISION_COUNTERS {
            self.revisions.pop_first();
        }
    }
}

/// Microseconds of a duration, saturating.
fn duration_micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// Microseconds since the epoch of a system time (negative before it), saturating.
pub(crate) fn system_time_micros(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => duration_micros(after),
        Err(before) => duration_micros(before.duration()).saturating_neg(),
    }
}

#[cfg(test)]
mod tests {
    use flowlake_schemas::samples;

    use super::*;

    const MINUTE: i64 = 60_000_000;
    const SECOND: i64 = 1_000_000;
    /// An epoch-aligned minute in 2023.
    const T0: i64 = 1_700_000_040 * SECOND;

    fn params() -> WindowParams {
        WindowParams::from(&AggregateSettings::default())
    }

    fn flow_at(micros: i64) -> EnrichedFlow {
        let mut flow = samples::enriched_flow();
        flow.flow.start_time = Timestamp::from_micros(micros);
        flow.flow.end_time = Timestamp::from_micros(micros + SECOND);
        flow
    }

    /// Processing time: the flow's own time plus a second, as for a live agent.
    fn now_at(micros: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(u64::try_from(micros + SECOND).unwrap_or(0))
    }

    fn fold(windows: &mut PartitionWindows, micros: i64, offset: i64) -> Result<Fold, FutureEvent> {
        windows.fold(flow_at(micros), offset, now_at(micros))
    }

    fn summary(emissions: &[Emission]) -> Vec<(i64, i32, i64, i64)> {
        emissions
            .iter()
            .map(|e| {
                (
                    e.window_start.as_micros(),
                    e.revision,
                    e.max_offset,
                    e.edges.iter().map(|(_, v)| v.flows).sum(),
                )
            })
            .collect()
    }

    #[test]
    fn windows_are_epoch_aligned_and_half_open() -> Result<(), FutureEvent> {
        let mut windows = PartitionWindows::new(params());
        fold(&mut windows, T0 - 1, 0)?; // last instant of [T0-1m, T0)
        fold(&mut windows, T0, 1)?; // first instant of [T0, T0+1m)
        fold(&mut windows, T0 + MINUTE - 1, 2)?; // last instant of the same window
        fold(&mut windows, T0 + MINUTE, 3)?; // first instant of the next
        // The watermark is now T0 + 30 s: [T0-1m, T0) closed while folding.
        assert_eq!(windows.open_windows(), 2);
        windows.close_all();
        let due = windows.take_due();
        assert_eq!(
            summary(&due),
            vec![
                (T0 - MINUTE, 0, 0, 1),
                (T0, 0, 2, 2),
                (T0 + MINUTE, 0, 3, 1)
            ]
        );
        assert_eq!(due[1].window_end.as_micros(), T0 + MINUTE);

        // Before the epoch too: floor, not truncation towards zero.
        let mut windows = PartitionWindows::new(params());
        windows.fold(flow_at(-1), 0, now_at(0))?;
        windows.close_all();
        assert_eq!(summary(&windows.take_due()), vec![(-MINUTE, 0, 0, 1)]);
        Ok(())
    }

    #[test]
    fn watermark_closes_a_window_at_its_end_plus_lateness() -> Result<(), FutureEvent> {
        let mut windows = PartitionWindows::new(params());
        fold(&mut windows, T0 + 10 * SECOND, 0)?;
        // Watermark = T0 + 89.999999 s - 30 s < T0 + 60 s: still open.
        fold(&mut windows, T0 + MINUTE + 30 * SECOND - 1, 1)?;
        assert_eq!(windows.take_due(), vec![]);
        assert_eq!(
            windows.watermark(),
            Some(Timestamp::from_micros(T0 + MINUTE - 1))
        );
        // Within lateness: still on time.
        assert_eq!(fold(&mut windows, T0 + 59 * SECOND, 2)?, Fold::OnTime);
        // Watermark reaches T0 + 60 s: the first window closes, the second stays open.
        fold(&mut windows, T0 + MINUTE + 30 * SECOND, 3)?;
        assert_eq!(summary(&windows.take_due()), vec![(T0, 0, 2, 2)]);
        assert_eq!(windows.open_windows(), 1);
        Ok(())
    }

    #[test]
    fn idle_partition_closes_its_windows() -> Result<(), FutureEvent> {
        let mut windows = PartitionWindows::new(params());
        fold(&mut windows, T0, 0)?;
        fold(&mut windows, T0 + MINUTE, 1)?;
        let last = now_at(T0 + MINUTE);
        assert_eq!(windows.close_if_idle(last + Duration::from_secs(29)), 0);
        assert_eq!(windows.take_due(), vec![]);
        assert_eq!(windows.close_if_idle(last + Duration::from_secs(30)), 2);
        assert_eq!(
            summary(&windows.take_due()),
            vec![(T0, 0, 0, 1), (T0 + MINUTE, 0, 1, 1)]
        );
        assert_eq!(windows.watermark(), None);
        assert_eq!(windows.held_from(), None);

        // New data after idleness: later windows open normally, earlier ones are late.
        assert_eq!(fold(&mut windows, T0 + 2 * MINUTE, 2)?, Fold::OnTime);
        assert_eq!(fold(&mut windows, T0 + MINUTE + SECOND, 3)?, Fold::Late);
        assert!(windows.watermark().is_some());
        Ok(())
    }

    #[test]
    fn late_flows_become_numbered_corrections() -> Result<(), FutureEvent> {
        let mut windows = PartitionWindows::new(params());
        fold(&mut windows, T0, 0)?;
        fold(&mut windows, T0 + 2 * MINUTE, 1)?; // closes [T0, T0+1m)
        assert_eq!(summary(&windows.take_due()), vec![(T0, 0, 0, 1)]);

        assert_eq!(fold(&mut windows, T0 + 5 * SECOND, 2)?, Fold::Late);
        assert_eq!(fold(&mut windows, T0 + 6 * SECOND, 3)?, Fold::Late);
        assert_eq!(summary(&windows.take_due()), vec![(T0, 1, 3, 2)]);

        assert_eq!(fold(&mut windows, T0 + 7 * SECOND, 4)?, Fold::Late);
        assert_eq!(summary(&windows.take_due()), vec![(T0, 2, 4, 1)]);
        Ok(())
    }

    #[test]
    fn a_late_flow_for_a_closed_unsent_window_is_a_correction_in_the_same_flush()
    -> Result<(), FutureEvent> {
        let mut windows = PartitionWindows::new(params());
        fold(&mut windows, T0, 0)?;
        fold(&mut windows, T0 + 2 * MINUTE, 1)?;
        // The window closed during the fold above but nothing was flushed yet: whether a
        // flush happened in between must not change what this flow is.
        assert_eq!(fold(&mut windows, T0 + SECOND, 2)?, Fold::Late);
        assert_eq!(
            summary(&windows.take_due()),
            vec![(T0, 0, 0, 1), (T0, 1, 2, 1)]
        );
        Ok(())
    }

    #[test]
    fn held_from_moves_forward_only_when_windows_are_emitted() -> Result<(), FutureEvent> {
        let mut windows = PartitionWindows::new(params());
        assert_eq!(windows.held_from(), None);
        fold(&mut windows, T0 + MINUTE, 10)?;
        fold(&mut windows, T0, 11)?; // older window, later offset
        fold(&mut windows, T0 + MINUTE + 5 * SECOND, 12)?;
        assert_eq!(windows.held_from(), Some(10));

        // Watermark T0+1m59s: [T0, T0+1m) closes; it held 11 only; [T0+1m, ..) holds 10.
        fold(&mut windows, T0 + 2 * MINUTE + 29 * SECOND, 13)?;
        assert_eq!(windows.held_from(), Some(10));
        assert_eq!(summary(&windows.take_due()), vec![(T0, 0, 11, 1)]);
        assert_eq!(windows.held_from(), Some(10));

        // Watermark T0+2m1s: [T0+1m, T0+2m) closes with offsets 10 and 12; closed but not
        // yet emitted, it still holds them. [T0+2m, T0+3m) holds 13 and 14.
        fold(&mut windows, T0 + 2 * MINUTE + 31 * SECOND, 14)?;
        assert_eq!(windows.held_from(), Some(10));
        windows.take_due();
        assert_eq!(windows.held_from(), Some(13));

        // A pending correction holds its offset until emitted.
        fold(&mut windows, T0, 15)?;
        assert_eq!(windows.held_from(), Some(13));
        windows.close_all();
        assert_eq!(windows.held_from(), Some(13));
        windows.take_due();
        assert_eq!(windows.held_from(), None);
        Ok(())
    }

    #[test]
    fn future_flows_are_refused_and_do_not_move_the_watermark() -> Result<(), FutureEvent> {
        let mut windows = PartitionWindows::new(params());
        let now = now_at(T0);
        let limit = system_time_micros(now) + 10 * MINUTE;
        assert!(windows.fold(flow_at(limit), 0, now).is_ok());
        let refused = windows.fold(flow_at(limit + 1), 1, now);
        assert_eq!(
            refused,
            Err(FutureEvent {
                start_time: Timestamp::from_micros(limit + 1),
                limit: Timestamp::from_micros(limit)
            })
        );
        assert_eq!(
            windows.watermark(),
            Some(Timestamp::from_micros(limit - 30 * SECOND))
        );
        assert_eq!(windows.held_from(), Some(0));
        Ok(())
    }

    #[test]
    fn extreme_timestamps_neither_panic_nor_get_lost() -> Result<(), FutureEvent> {
        let mut windows = PartitionWindows::new(params());
        let now = now_at(T0);
        assert!(windows.fold(flow_at(i64::MAX - SECOND), 0, now).is_err());
        assert_eq!(windows.fold(flow_at(i64::MIN), 1, now)?, Fold::OnTime);
        assert_eq!(windows.fold(flow_at(T0), 2, now)?, Fold::OnTime);
        assert_eq!(windows.fold(flow_at(i64::MIN + 1), 3, now)?, Fold::Late);
        windows.close_all();
        let flows: i64 = summary(&windows.take_due()).iter().map(|s| s.3).sum();
        assert_eq!(flows, 3);
        Ok(())
    }

    #[test]
    fn revision_counters_are_pruned_by_event_time() -> Result<(), FutureEvent> {
        let mut windows = PartitionWindows::new(params());
        fold(&mut windows, T0, 0)?;
        fold(&mut windows, T0 + 2 * MINUTE, 1)?;
        fold(&mut windows, T0, 2)?;
        fold(&mut windows, T0, 3)?;
        windows.take_due();
        fold(&mut windows, T0, 4)?;
        assert_eq!(summary(&windows.take_due()), vec![(T0, 2, 4, 1)]);
        // A day of event time later the counter is forgotten: the next correction of that
        // window restarts at revision 1 (still > 0, still additive).
        let day = duration_micros(REVISION_MEMORY);
        fold(&mut windows, T0 + day + 2 * MINUTE, 5)?;
        windows.take_due();
        fold(&mut windows, T0, 6)?;
        let due = windows.take_due();
        assert_eq!(summary(&due).last(), Some(&(T0, 1, 6, 1)));
        Ok(())
    }
}
