//! Event-time windows of one input partition ([`PartitionWindows`]).
//!
//! Each input partition is aggregated on its own, like a Kafka Streams task: its own open
//! windows, watermark and pending corrections. Nothing here reads a clock; callers pass
//! the times, so tests drive time explicitly.
//!
//! Protocol — every emission depends on the input alone, so a partition restored from a
//! checkpoint ([`PartitionWindows::snapshot`]) and fed the same records produces the same
//! emissions with the same coordinates, whatever the batch boundaries and flush times:
//! - A flow belongs to the tumbling window `[s, s + window)` containing its `start_time`,
//!   windows aligned to the Unix epoch.
//! - The watermark is the newest `start_time` seen minus `allowed_lateness`. A window closes
//!   when the watermark reaches its end. The closed frontier (`closed_until`, a window
//!   boundary) only moves forward; a flow whose window ends at or before it is **late**.
//! - Emissions are *sealed* at an input position: when a fold moves the frontier, the
//!   windows it closes and every pending correction are sealed with that record's offset
//!   as their **trigger**. Their edges get the coordinates (trigger offset, sequence),
//!   numbered in seal order — window, then revision, then edge key.
//! - Late flows are never dropped: they are folded into a pending correction per window,
//!   sealed at the next frontier move (or idle close) with `revision` = corrections already
//!   sealed for that window + 1. Revision counters are kept for windows ending less than
//!   [`REVISION_MEMORY`] of event time behind the newest flow, and for at most
//!   [`MAX_REVISION_COUNTERS`] windows; a window whose counter was pruned starts again at
//!   revision 1. Revisions are not unique ids — rows are additive and carry coordinates —
//!   but they are deterministic for a given input.
//! - Idle: when a partition has received nothing for `idle_timeout` of processing time,
//!   that decision is first *recorded* ([`PartitionWindows::close_if_idle`] sets it
//!   pending, and the runtime checkpoints it); it takes effect at the next call or before
//!   the next fold: every open window and pending correction is sealed with the last
//!   offset read as trigger, and the watermark is +∞ until new data arrives. This is what
//!   lets a finite input produce its edges; since the decision is in the checkpoint, a
//!   restored partition takes it at the same input position. It is decided only while
//!   the partition is *caught up* (every record up to its end processed,
//!   [`PartitionWindows::mark_caught_up`]): a restored partition replaying what an earlier
//!   owner had processed beyond the checkpoint must not close windows that owner closed
//!   later, at other positions.
//! - Flows starting more than `max_future_skew` after the Kafka timestamp of their record
//!   are refused ([`FutureEvent`]), so a node with a wrong clock cannot push the watermark
//!   ahead and make everything late. (The record's timestamp, not the clock: a replay
//!   decides the same.)

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flowlake_schemas::{EnrichedFlow, Timestamp};
use serde::{Deserialize, Serialize};

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
    /// Furthest a flow may start ahead of its record's Kafka timestamp, in microseconds.
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

/// A flow refused because it starts too far after its record's Kafka timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "flow starts at {start_time}, after the latest accepted start {limit} (record timestamp + max_future_skew)"
)]
pub struct FutureEvent {
    /// The flow's start time.
    pub start_time: Timestamp,
    /// The latest start time accepted for that record.
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Emission {
    /// Window start (inclusive).
    pub window_start: Timestamp,
    /// Window end (exclusive).
    pub window_end: Timestamp,
    /// 0 when the window closed; n > 0 for its n-th correction.
    pub revision: i32,
    /// Offset of the input record at which this emission was sealed.
    pub trigger_offset: i64,
    /// Sequence number of the first edge among the edges sealed at `trigger_offset`; edge
    /// `i` has `first_seq + i`.
    pub first_seq: u32,
    /// Edges sorted by key.
    pub edges: Vec<(EdgeKey, EdgeValue)>,
}

/// Edges folded into one window (or one window's correction). foldhash, seeded per
/// process, rather than SipHash: an edge key is a dozen fields, hashed once per flow, and
/// SipHash was the largest single cost of a fold; iteration order never matters (edges are
/// sorted before they are emitted or checkpointed).
#[derive(Debug, Default)]
struct WindowState {
    edges: hashbrown::HashMap<EdgeKey, EdgeValue, foldhash::fast::RandomState>,
}

impl WindowState {
    fn fold(&mut self, folded: Folded<'_>, max_pods: usize) {
        let Folded {
            key,
            value,
            src_pod,
        } = folded;
        // Looked up by the borrowed key; the owned key is built only for a new edge.
        let edge = match self.edges.entry_ref(&key) {
            hashbrown::hash_map::EntryRef::Occupied(edge) => {
                let edge = edge.into_mut();
                edge.merge(&value, max_pods);
                edge
            }
            hashbrown::hash_map::EntryRef::Vacant(edge) => {
                edge.insert(EdgeValue::first(value, max_pods))
            }
        };
        if let Some(pod) = src_pod {
            edge.add_pod(pod, max_pods);
        }
    }

    fn into_sorted_edges(self) -> Vec<(EdgeKey, EdgeValue)> {
        let mut edges: Vec<_> = self.edges.into_iter().collect();
        // Keys are unique, so the unstable sort is still a total, deterministic order.
        edges.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        edges
    }
}

/// The state of one partition as stored in a checkpoint: everything an emission depends
/// on, nothing that depends on the clock.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Window length the state was built with (µs).
    window_micros: i64,
    /// Open windows: start and edges sorted by key.
    open: Vec<(i64, Vec<(EdgeKey, EdgeValue)>)>,
    /// Pending corrections: window start and edges.
    corrections: Vec<(i64, Vec<(EdgeKey, EdgeValue)>)>,
    /// Sealed emissions not yet handed out.
    sealed: Vec<Emission>,
    /// Corrections sealed per window start.
    revisions: Vec<(i64, i32)>,
    max_start: Option<i64>,
    closed_until: Option<i64>,
    idle: bool,
    idle_pending: bool,
    last_offset: Option<i64>,
    /// (trigger offset, next sequence number) of the latest seal.
    next_seq: Option<(i64, u32)>,
}

/// The window state of one input partition; see the module doc for the protocol.
#[derive(Debug)]
pub struct PartitionWindows {
    params: WindowParams,
    /// Open windows by start.
    open: BTreeMap<i64, WindowState>,
    /// Late flows of closed windows, by window start, awaiting their seal.
    corrections: BTreeMap<i64, WindowState>,
    /// Sealed emissions, in seal order, awaiting [`PartitionWindows::take_due`].
    sealed: Vec<Emission>,
    /// Corrections sealed, by window start.
    revisions: BTreeMap<i64, i32>,
    /// Newest start time seen (µs).
    max_start: Option<i64>,
    /// Windows ending at or before this boundary (µs) are closed.
    closed_until: Option<i64>,
    /// Processing time of the last folded flow (or of the restore): only for idleness.
    last_input: Option<SystemTime>,
    /// Idle since the last folded flow: the watermark is +∞.
    idle: bool,
    /// An idle close was decided and awaits being checkpointed before it takes effect.
    idle_pending: bool,
    /// Offset of the last record folded (or refused).
    last_offset: Option<i64>,
    /// (trigger offset, next sequence number) of the latest seal.
    next_seq: Option<(i64, u32)>,
    /// Every record up to the partition's end has been folded (not checkpointed: a
    /// restored partition starts behind).
    caught_up: bool,
}

impl PartitionWindows {
    /// Empty state for a newly assigned partition.
    pub fn new(params: WindowParams) -> Self {
        PartitionWindows {
            params,
            open: BTreeMap::new(),
            corrections: BTreeMap::new(),
            sealed: Vec::new(),
            revisions: BTreeMap::new(),
            max_start: None,
            closed_until: None,
            last_input: None,
            idle: false,
            idle_pending: false,
            last_offset: None,
            next_seq: None,
            caught_up: false,
        }
    }

    /// Every record of the partition up to its end has been folded; cleared by the next
    /// fold. Idle closes are decided only while it holds (see the module doc).
    pub fn mark_caught_up(&mut self) {
        self.caught_up = true;
    }

    /// The state as a checkpoint stores it.
    pub fn snapshot(&self) -> Snapshot {
        let window_edges = |m: &BTreeMap<i64, WindowState>| {
            m.iter()
                .map(|(start, state)| {
                    let mut edges: Vec<_> = state
                        .edges
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    edges.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                    (*start, edges)
                })
                .collect()
        };
        Snapshot {
            window_micros: self.params.window_micros,
            open: window_edges(&self.open),
            corrections: window_edges(&self.corrections),
            sealed: self.sealed.clone(),
            revisions: self.revisions.iter().map(|(k, v)| (*k, *v)).collect(),
            max_start: self.max_start,
            closed_until: self.closed_until,
            idle: self.idle,
            idle_pending: self.idle_pending,
            last_offset: self.last_offset,
            next_seq: self.next_seq,
        }
    }

    /// State restored from `snapshot` at processing time `now`. A snapshot taken with
    /// another window length (the setting changed across a restart) has its open windows
    /// sealed right away, as an idle close would, so no window mixes two lengths.
    pub fn restore(params: WindowParams, snapshot: Snapshot, now: SystemTime) -> Self {
        let windows = |v: Vec<(i64, Vec<(EdgeKey, EdgeValue)>)>| {
            v.into_iter()
                .map(|(start, edges)| {
                    (
                        start,
                        WindowState {
                            edges: edges.into_iter().collect(),
                        },
                    )
                })
                .collect()
        };
        let mut restored = PartitionWindows {
            params: WindowParams {
                window_micros: snapshot.window_micros.max(1),
                ..params
            },
            open: windows(snapshot.open),
            corrections: windows(snapshot.corrections),
            sealed: snapshot.sealed,
            revisions: snapshot.revisions.into_iter().collect(),
            max_start: snapshot.max_start,
            closed_until: snapshot.closed_until,
            last_input: Some(now),
            idle: snapshot.idle,
            idle_pending: snapshot.idle_pending,
            last_offset: snapshot.last_offset,
            next_seq: snapshot.next_seq,
            caught_up: false,
        };
        if restored.params.window_micros != params.window_micros {
            restored.seal_all();
            restored.params = params;
            // Windows of the new length start after everything of the old one.
            restored.closed_until = restored
                .closed_until
                .map(|closed| restored.align(closed.saturating_add(params.window_micros - 1)));
        }
        restored
    }

    /// Folds one flow read at `offset`, whose record has the Kafka timestamp
    /// `record_micros` (None: the broker gave none; the skew check is skipped), received at
    /// processing time `now` (used only to notice idleness).
    pub fn fold(
        &mut self,
        flow: EnrichedFlow,
        offset: i64,
        record_micros: Option<i64>,
        now: SystemTime,
    ) -> Result<Fold, FutureEvent> {
        self.fold_split(Folded::from_flow(&flow), offset, record_micros, now)
    }

    /// [`PartitionWindows::fold`] of a flow already split (read from its message without
    /// decoding it whole: `crate::read`).
    pub fn fold_split(
        &mut self,
        folded: Folded<'_>,
        offset: i64,
        record_micros: Option<i64>,
        now: SystemTime,
    ) -> Result<Fold, FutureEvent> {
        // A recorded idle close takes effect before the next record, as it did when it
        // was decided.
        if self.idle_pending {
            self.seal_idle();
        }
        let start = folded.value.first_seen.as_micros();
        if let Some(reference) = record_micros {
            let limit = reference.saturating_add(self.params.max_future_skew_micros);
            if start > limit {
                self.last_offset = Some(offset);
                return Err(FutureEvent {
                    start_time: folded.value.first_seen,
                    limit: Timestamp::from_micros(limit),
                });
            }
        }
        self.last_input = Some(now);
        self.last_offset = Some(offset);
        self.idle = false;
        self.caught_up = false;

        let max_start = self.max_start.map_or(start, |max| max.max(start));
        self.max_start = Some(max_start);
        let watermark = max_start.saturating_sub(self.params.lateness_micros);
        self.close_until(self.align(watermark), offset);

        let window_start = self.align(start);
        let max_pods = self.params.max_distinct_src_pods;
        if self.is_closed(window_start) {
            self.corrections
                .entry(window_start)
                .or_default()
                .fold(folded, max_pods);
            Ok(Fold::Late)
        } else {
            self.open
                .entry(window_start)
                .or_default()
                .fold(folded, max_pods);
            Ok(Fold::OnTime)
        }
    }

    /// Idleness at `now`: the first call while caught up, after `idle_timeout` without
    /// input, records the decision (returns 0; the runtime checkpoints it); the next call takes it, sealing
    /// every open window and pending correction. Returns the number of windows closed.
    pub fn close_if_idle(&mut self, now: SystemTime) -> usize {
        if self.idle_pending {
            return self.seal_idle();
        }
        let Some(last_input) = self.last_input else {
            return 0;
        };
        if self.idle || !self.caught_up || (self.open.is_empty() && self.corrections.is_empty()) {
            return 0;
        }
        // A clock that went backwards reads as "not idle", never as idle.
        let quiet = now.duration_since(last_input).unwrap_or(Duration::ZERO);
        if quiet >= self.params.idle_timeout {
            self.idle_pending = true;
        }
        0
    }

    /// An idle close is recorded and not yet taken (it seals with the next record or
    /// [`PartitionWindows::close_if_idle`]).
    pub fn idle_pending(&self) -> bool {
        self.idle_pending
    }

    /// Seals every open window and pending correction regardless of time (bounded inputs
    /// that are finished). Returns the number of windows closed.
    pub fn close_all(&mut self) -> usize {
        self.idle_pending = false;
        self.seal_all()
    }

    fn seal_idle(&mut self) -> usize {
        self.idle_pending = false;
        self.idle = true;
        self.seal_all()
    }

    fn seal_all(&mut self) -> usize {
        let count = self.open.len();
        let Some(trigger) = self.last_offset else {
            return 0;
        };
        match self.open.last_key_value() {
            Some((&newest, _)) => {
                self.close_until(newest.saturating_add(self.params.window_micros), trigger)
            }
            None => self.seal_corrections(trigger),
        }
        count
    }

    /// Takes everything sealed, in seal order (by trigger, then window, then revision);
    /// each window's edges sorted by key.
    pub fn take_due(&mut self) -> Vec<Emission> {
        std::mem::take(&mut self.sealed)
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

    /// Moves the closed frontier forward to `boundary`, sealing the windows behind it and
    /// the pending corrections at `trigger`.
    fn close_until(&mut self, boundary: i64, trigger: i64) {
        if self.closed_until.is_some_and(|closed| closed >= boundary) {
            return;
        }
        self.closed_until = Some(boundary);
        // Windows starting before an aligned boundary end at or before it.
        let still_open = self.open.split_off(&boundary);
        let closing = std::mem::replace(&mut self.open, still_open);
        for (start, state) in closing {
            self.seal(start, 0, trigger, state);
        }
        self.seal_corrections(trigger);
    }

    fn seal_corrections(&mut self, trigger: i64) {
        for (start, state) in std::mem::take(&mut self.corrections) {
            let revision = self.revisions.entry(start).or_insert(0);
            *revision = revision.saturating_add(1);
            let revision = *revision;
            self.seal(start, revision, trigger, state);
        }
        self.prune_revisions();
    }

    fn seal(&mut self, start: i64, revision: i32, trigger: i64, state: WindowState) {
        let edges = state.into_sorted_edges();
        let first_seq = match self.next_seq {
            Some((offset, next)) if offset == trigger => next,
            _ => 0,
        };
        let count = u32::try_from(edges.len()).unwrap_or(u32::MAX);
        self.next_seq = Some((trigger, first_seq.saturating_add(count)));
        self.sealed.push(Emission {
            window_start: Timestamp::from_micros(start),
            window_end: Timestamp::from_micros(start.saturating_add(self.params.window_micros)),
            revision,
            trigger_offset: trigger,
            first_seq,
            edges,
        });
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
    use proptest::prelude::*;

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

    /// Folds a flow whose record was written a second after it started.
    fn fold(windows: &mut PartitionWindows, micros: i64, offset: i64) -> Result<Fold, FutureEvent> {
        windows.fold(
            flow_at(micros),
            offset,
            Some(micros + SECOND),
            now_at(micros),
        )
    }

    /// (window start, revision, trigger offset, flows) per emission.
    fn summary(emissions: &[Emission]) -> Vec<(i64, i32, i64, i64)> {
        emissions
            .iter()
            .map(|e| {
                (
                    e.window_start.as_micros(),
                    e.revision,
                    e.trigger_offset,
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
        // The watermark reached T0 at offset 2: [T0-1m, T0) closed while folding it.
        assert_eq!(windows.open_windows(), 2);
        windows.close_all();
        let due = windows.take_due();
        assert_eq!(
            summary(&due),
            vec![
                (T0 - MINUTE, 0, 2, 1),
                (T0, 0, 3, 2),
                (T0 + MINUTE, 0, 3, 1)
            ]
        );
        // Edges sealed at one trigger offset are numbered on across emissions.
        assert_eq!(
            due.iter().map(|e| e.first_seq).collect::<Vec<_>>(),
            vec![0, 0, 1]
        );
        assert_eq!(due[1].window_end.as_micros(), T0 + MINUTE);

        // Before the epoch too: floor, not truncation towards zero.
        let mut windows = PartitionWindows::new(params());
        windows.fold(flow_at(-1), 0, None, now_at(0))?;
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
        assert_eq!(summary(&windows.take_due()), vec![(T0, 0, 3, 2)]);
        assert_eq!(windows.open_windows(), 1);
        Ok(())
    }

    #[test]
    fn an_idle_close_is_recorded_before_it_takes_effect() -> Result<(), FutureEvent> {
        let mut windows = PartitionWindows::new(params());
        fold(&mut windows, T0, 0)?;
        fold(&mut windows, T0 + MINUTE, 1)?;
        let last = now_at(T0 + MINUTE);
        // Not caught up (a replay may still be under way): nothing is decided.
        assert_eq!(windows.close_if_idle(last + Duration::from_secs(60)), 0);
        assert!(!windows.snapshot().idle_pending);
        windows.mark_caught_up();
        assert_eq!(windows.close_if_idle(last + Duration::from_secs(29)), 0);
        assert_eq!(windows.take_due(), vec![]);
        // Decided: recorded in the state, nothing closed yet.
        assert_eq!(windows.close_if_idle(last + Duration::from_secs(30)), 0);
        assert_eq!(windows.take_due(), vec![]);
        assert!(windows.snapshot().idle_pending);
        // Taken at the next call, at the position it was decided.
        assert_eq!(windows.close_if_idle(last + Duration::from_secs(31)), 2);
        assert_eq!(
            summary(&windows.take_due()),
            vec![(T0, 0, 1, 1), (T0 + MINUTE, 0, 1, 1)]
        );
        assert_eq!(windows.watermark(), None);

        // New data after idleness: later windows open normally, earlier ones are late.
        assert_eq!(fold(&mut windows, T0 + 2 * MINUTE, 2)?, Fold::OnTime);
        assert_eq!(fold(&mut windows, T0 + MINUTE + SECOND, 3)?, Fold::Late);
        assert!(windows.watermark().is_some());
        Ok(())
    }

    #[test]
    fn a_recorded_idle_close_is_taken_before_the_next_record() -> Result<(), FutureEvent> {
        let mut windows = PartitionWindows::new(params());
        fold(&mut windows, T0, 0)?;
        let last = now_at(T0);
        windows.mark_caught_up();
        windows.close_if_idle(last + Duration::from_secs(60));
        // The next record arrives before the next flush: the close still happens first,
        // at offset 0, and the record opens a window of its own.
        assert_eq!(fold(&mut windows, T0 + 10 * SECOND, 1)?, Fold::Late);
        assert_eq!(summary(&windows.take_due()), vec![(T0, 0, 0, 1)]);
        Ok(())
    }

    #[test]
    fn late_flows_become_numbered_corrections_sealed_when_the_frontier_moves()
    -> Result<(), FutureEvent> {
        let mut windows = PartitionWindows::new(params());
        fold(&mut windows, T0, 0)?;
        fold(&mut windows, T0 + 2 * MINUTE, 1)?; // closes [T0, T0+1m)
        assert_eq!(summary(&windows.take_due()), vec![(T0, 0, 1, 1)]);

        assert_eq!(fold(&mut windows, T0 + 5 * SECOND, 2)?, Fold::Late);
        assert_eq!(fold(&mut windows, T0 + 6 * SECOND, 3)?, Fold::Late);
        // Pending until the frontier moves: a flush alone seals nothing.
        assert_eq!(windows.take_due(), vec![]);
        fold(&mut windows, T0 + 3 * MINUTE, 4)?; // frontier T0+1m → T0+2m
        assert_eq!(summary(&windows.take_due()), vec![(T0, 1, 4, 2)]);

        assert_eq!(fold(&mut windows, T0 + 7 * SECOND, 5)?, Fold::Late);
        fold(&mut windows, T0 + 4 * MINUTE, 6)?; // frontier → T0+3m: closes [T0+2m, T0+3m)
        assert_eq!(
            summary(&windows.take_due()),
            vec![(T0 + 2 * MINUTE, 0, 6, 1), (T0, 2, 6, 1)]
        );
        Ok(())
    }

    #[test]
    fn a_late_flow_waits_for_the_next_seal_whatever_the_flushes() -> Result<(), FutureEvent> {
        let mut windows = PartitionWindows::new(params());
        fold(&mut windows, T0, 0)?;
        fold(&mut windows, T0 + 2 * MINUTE, 1)?;
        assert_eq!(fold(&mut windows, T0 + SECOND, 2)?, Fold::Late);
        assert_eq!(summary(&windows.take_due()), vec![(T0, 0, 1, 1)]);
        windows.close_all();
        assert_eq!(
            summary(&windows.take_due()),
            vec![(T0 + 2 * MINUTE, 0, 2, 1), (T0, 1, 2, 1)]
        );
        Ok(())
    }

    #[test]
    fn future_flows_are_refused_by_their_record_time_and_do_not_move_the_watermark()
    -> Result<(), FutureEvent> {
        let mut windows = PartitionWindows::new(params());
        let now = now_at(T0);
        let record = T0;
        let limit = record + 10 * MINUTE;
        assert!(windows.fold(flow_at(limit), 0, Some(record), now).is_ok());
        let refused = windows.fold(flow_at(limit + 1), 1, Some(record), now);
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
        // The clock plays no part: a record written an hour later accepts it.
        assert!(
            windows
                .fold(flow_at(limit + 1), 2, Some(record + 60 * MINUTE), now)
                .is_ok()
        );
        Ok(())
    }

    #[test]
    fn extreme_timestamps_neither_panic_nor_get_lost() -> Result<(), FutureEvent> {
        let mut windows = PartitionWindows::new(params());
        let now = now_at(T0);
        assert!(
            windows
                .fold(flow_at(i64::MAX - SECOND), 0, Some(T0), now)
                .is_err()
        );
        assert_eq!(
            windows.fold(flow_at(i64::MIN), 1, Some(T0), now)?,
            Fold::OnTime
        );
        assert_eq!(windows.fold(flow_at(T0), 2, Some(T0), now)?, Fold::OnTime);
        assert_eq!(
            windows.fold(flow_at(i64::MIN + 1), 3, Some(T0), now)?,
            Fold::Late
        );
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
        fold(&mut windows, T0 + 3 * MINUTE, 3)?; // seals revision 1
        fold(&mut windows, T0, 4)?;
        fold(&mut windows, T0 + 4 * MINUTE, 5)?; // seals revision 2
        assert_eq!(summary(&windows.take_due()).last(), Some(&(T0, 2, 5, 1)));
        // A day of event time later the counter is forgotten: the next correction of that
        // window restarts at revision 1 (still > 0, still additive).
        let day = duration_micros(REVISION_MEMORY);
        fold(&mut windows, T0 + day + 2 * MINUTE, 6)?;
        windows.take_due();
        fold(&mut windows, T0, 7)?;
        windows.close_all();
        let due = windows.take_due();
        assert_eq!(summary(&due).last(), Some(&(T0, 1, 7, 1)));
        Ok(())
    }

    #[test]
    fn a_changed_window_length_seals_the_restored_windows() -> Result<(), FutureEvent> {
        let mut windows = PartitionWindows::new(params());
        fold(&mut windows, T0, 0)?;
        let snapshot = windows.snapshot();
        let five_minutes = WindowParams {
            window_micros: 5 * MINUTE,
            ..params()
        };
        let mut restored = PartitionWindows::restore(five_minutes, snapshot, now_at(T0));
        assert_eq!(summary(&restored.take_due()), vec![(T0, 0, 0, 1)]);
        assert_eq!(fold(&mut restored, T0 + 5 * MINUTE, 1)?, Fold::OnTime);
        restored.close_all();
        let due = restored.take_due();
        assert_eq!(
            due[0].window_end.as_micros() - due[0].window_start.as_micros(),
            5 * MINUTE
        );
        Ok(())
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// A flow starting this many seconds after T0.
        Flow(i64),
        /// The runtime flushes (takes what is due).
        Flush,
        /// The partition went idle: decided at one flush, taken at the next.
        Idle,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0i64..400).prop_map(Op::Flow),
            2 => Just(Op::Flush),
            1 => Just(Op::Idle),
        ]
    }

    /// Applies `ops` from `offset` on, collecting what flushes take.
    fn run(
        windows: &mut PartitionWindows,
        ops: &[Op],
        first_offset: i64,
        flush_too: &[bool],
    ) -> Vec<Emission> {
        let mut taken = Vec::new();
        let far = now_at(T0 + 3600 * SECOND);
        for (i, op) in ops.iter().enumerate() {
            let offset = first_offset + i as i64;
            match op {
                Op::Flow(secs) => {
                    let _ = fold(windows, T0 + secs * SECOND, offset);
                }
                Op::Flush => taken.extend(windows.take_due()),
                Op::Idle => {
                    windows.mark_caught_up();
                    windows.close_if_idle(far);
                    taken.extend(windows.take_due());
                }
            }
            if flush_too.get(i).copied().unwrap_or(false) {
                taken.extend(windows.take_due());
            }
        }
        taken
    }

    proptest! {
        /// Whatever the flush points, and wherever the state is checkpointed and restored,
        /// the same input yields the same emissions with the same coordinates, each
        /// coordinate once and in increasing order, and every flow in exactly one of them.
        #[test]
        fn emissions_depend_on_the_input_only(
            ops in proptest::collection::vec(op(), 1..80),
            cut in 0usize..80,
            flushes in proptest::collection::vec(any::<bool>(), 80),
        ) {
            let cut = cut.min(ops.len());
            let mut reference = PartitionWindows::new(params());
            let mut expected = run(&mut reference, &ops, 0, &[]);
            reference.close_all();
            expected.extend(reference.take_due());

            // Crash after `cut` operations: everything taken before the checkpoint was
            // delivered; the next owner restores the snapshot (through JSON, as the
            // checkpoint stores it) and goes on, flushing at other points.
            let mut first = PartitionWindows::new(params());
            let mut got = run(&mut first, &ops[..cut], 0, &flushes);
            let json = serde_json::to_string(&first.snapshot()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let snapshot: Snapshot = serde_json::from_str(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut second = PartitionWindows::restore(params(), snapshot, now_at(T0));
            got.extend(run(&mut second, &ops[cut..], cut as i64, &flushes[cut..]));
            second.close_all();
            got.extend(second.take_due());
            prop_assert_eq!(&got, &expected);

            let mut last: Option<(i64, u32)> = None;
            let mut flows = 0;
            for emission in &expected {
                for (i, (_, value)) in emission.edges.iter().enumerate() {
                    let at = (emission.trigger_offset, emission.first_seq + i as u32);
                    prop_assert!(last.is_none_or(|l| at > l), "coordinates not increasing: {:?} after {:?}", at, last);
                    last = Some(at);
                    flows += value.flows;
                }
            }
            let folded = ops.iter().filter(|op| matches!(op, Op::Flow(_))).count() as i64;
            prop_assert_eq!(flows, folded);
        }
    }
}
