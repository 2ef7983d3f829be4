//! The aggregate stage: folds `EnrichedFlow`s from `flows.enriched` into `FlowEdge`s (the
//! flow graph) over tumbling event-time windows, produces them to `flows.edges`, and
//! exports the business metrics (denied flows, external egress).
//!
//! Design, and what it guarantees:
//! - **Per input partition.** Like a Kafka Streams task, each input partition has its own
//!   open windows, watermark and held offsets ([`PartitionWindows`]). Edges are emitted per
//!   (input partition, window, edge key); values are additive, so downstream sums rows with
//!   the same key. Revocation is exact (drop that partition's state; the next owner
//!   replays from the committed offset), and a partition's output depends only on its own
//!   input order.
//! - **Edge key** ([`EdgeKey`]): cluster, source and destination kind/namespace/workload,
//!   destination Service, port, protocol, action, reporter and deciding policy — workloads,
//!   never pod names or addresses (see [`edge`] for the naming rules).
//! - **Windows**: tumbling, `window` long (default 1 min), aligned to the epoch, on the
//!   flow's `start_time`. Watermark = newest start time of the partition −
//!   `allowed_lateness`; a window closes (revision 0) when the watermark reaches its end,
//!   or when its partition has been idle for `idle_timeout`.
//! - **Late flows** are counted and emitted as additive corrections (`revision` > 0) at
//!   the next flush, never dropped. Flows starting more than `max_future_skew` ahead of
//!   the clock are rejected (`future_event`) so a bad clock cannot pin the watermark.
//! - **Offsets**: `held_from` is the oldest offset in any window or correction not yet
//!   emitted, so nothing folded is lost on a crash. Emitted edges carry the origin
//!   (input topic, partition, highest offset folded into the window). Shutdown emits
//!   nothing (a restart rebuilds open windows by replay); [`AggregateProcessor::drain_all`]
//!   closes everything for bounded runs.
//! - **Business metrics** are counted per emitted edge ([`metrics`]) under a cardinality
//!   budget per metric ([`budget`]): the first `metric_max_series` label sets get their
//!   own series, later ones fold into their cluster's `other` series.
//!
//! Known limits: `distinct_src_pods` is exact up to `max_distinct_src_pods` per edge and
//! window, a lower bound beyond. Idle closes depend on processing time, so a replay may
//! split a window's flows differently between revision 0 and corrections (the sums are the
//! same). Revision numbers are per process and per window, not unique ids (see
//! [`windows`]).

pub mod budget;
pub mod edge;
pub mod metrics;
pub mod processor;
pub mod settings;
pub mod windows;

pub use edge::{EdgeKey, EdgeValue};
pub use processor::{AggregateError, AggregateProcessor, FUTURE_EVENT, MALFORMED_AVRO};
pub use settings::AggregateSettings;
pub use windows::{Emission, Fold, FutureEvent, PartitionWindows, WindowParams};
