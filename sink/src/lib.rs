//! The sink stage: `EnrichedFlow` and `FlowEdge` records from Kafka to two Parquet datasets,
//! `flows/` and `edges/`, on any object store (`s3://`, `gs://`, `az://`, `file://`).
//!
//! Delivery: a record's offset is stored only after the object holding it is durably
//! written — the processor reports the oldest offset it still holds through
//! `Processor::held_from`, and the runtime resumes no later than it. Objects are named by
//! the input coordinates of their first record (Hive layout, see [`layout`]); every roll
//! (size, age, memory, shutdown) is recorded in the partition's checkpoint before its
//! objects are written, and a restored partition seals at the recorded rolls, so a replay
//! after a crash rewrites the same objects with the same rows instead of adding
//! duplicates. Records an upstream stage delivered twice are dropped by their origin
//! coordinates before they reach a buffer. An unreachable store blocks the flush and with
//! it the reading: backpressure, not loss. The two datasets are one mechanism
//! ([`processor`]'s lanes) instantiated per record type.

//! Modules, in the order data flows: [`processor`] (the `Processor`), [`buffer`] (open
//! files and when they roll), [`columns`] (Arrow schemas and column builders), [`writer`]
//! (Parquet encoding), [`layout`] (object names), [`store`] (the object store and
//! retries), plus [`settings`] and [`metrics`].

pub mod buffer;
pub mod columns;
pub mod layout;
pub mod metrics;
pub mod processor;
pub mod settings;
pub mod store;
pub mod writer;

pub use columns::{Dataset, SinkRecord};
pub use processor::{SinkError, SinkProcessor, SinkTopics};
pub use settings::SinkSettings;
pub use store::{Backoff, Lake, StoreError};
