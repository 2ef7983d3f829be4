//! The aggregate stage: folds `EnrichedFlow`s from `flows.enriched` into `FlowEdge`s (the
//! flow graph) over tumbling event-time windows, produces them to `flows.edges`, and
//! exports the business metrics (denied flows, external egress).
//!
//! Design, and what it guarantees:
//! - **Per input partition.** Like a Kafka Streams task, each input partition has its own
//!   open windows, watermark and pending corrections ([`PartitionWindows`]). Edges are
//!   emitted per (input partition, window, edge key); values are additive, so downstream
//!   sums rows with the same key. A partition's output depends only on its own input.
//! - **Edge key** ([`EdgeKey`]): cluster, source and destination kind/namespace/workload,
//!   destination Service, port, protocol, action, reporter and deciding policy — workloads,
//!   never pod names or addresses (see [`edge`] for the naming rules).
//! - **Windows**: tumbling, `window` long (default 1 min), aligned to the epoch, on the
//!   flow's `start_time`. Watermark = newest start time of the partition −
//!   `allowed_lateness`; a window closes (revision 0) when the watermark reaches its end,
//!   or when its partition, caught up, has been idle for `idle_timeout`.
//! - **Late flows** are counted and emitted as additive corrections (`revision` > 0),
//!   never dropped. Flows starting more than `max_future_skew` after their record's Kafka
//!   timestamp are rejected (`future_event`) so a node with a bad clock cannot pin the
//!   watermark.
//! - **Exactly once across failures** ([`processor`]): each partition's whole window state
//!   is in its checkpoint, written after the edges it covers are acknowledged; a new owner
//!   (crash, rebalance, rolling restart) restores it and resumes at the checkpoint's
//!   offset. Emission points, revisions and correction grouping depend on the input only,
//!   and a wall-clock idle close is recorded in the checkpoint before it takes effect (see
//!   [`windows`]), so a replay re-produces the same edges with the same coordinates
//!   (input topic, partition, trigger offset, sequence), which the sink drops. Shutdown
//!   emits nothing; [`AggregateProcessor::drain_all`] closes everything for bounded runs.
//! - **Business metrics** are counted per emitted edge ([`metrics`]), once, after the
//!   checkpoint covering the edge is acknowledged, under a cardinality budget per metric
//!   ([`budget`]): the first `metric_max_series` label sets get their own series, later
//!   ones fold into their cluster's `other` series.
//!
//! Known limits: `distinct_src_pods` is exact up to `max_distinct_src_pods` per edge and
//! window, a lower bound beyond. Revision numbers are deterministic for a given input but
//! not unique ids (a window whose revision counter was pruned starts again at 1; see
//! [`windows`]). A checkpoint is one Kafka record: a partition's window state must stay
//! under the checkpoint topic's `max.message.bytes` (more partitions spread it).

pub mod budget;
pub mod edge;
pub mod metrics;
pub mod processor;
pub mod read;
pub mod settings;
pub mod windows;

pub use edge::{EdgeKey, EdgeValue};
pub use processor::{AggregateError, AggregateProcessor, FUTURE_EVENT, MALFORMED_AVRO};
pub use settings::AggregateSettings;
pub use windows::{Emission, Fold, FutureEvent, PartitionWindows, WindowParams};
