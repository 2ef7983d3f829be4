//! The shared stage runtime. A stage is a [`Processor`] (its logic) plus a few dozen lines
//! of `main`; this crate owns configuration, the Kafka consumer and producer, the offset
//! protocol ([`runner`]), dead letters, graceful shutdown, the HTTP endpoints and metrics.
//!
//! It also sets the process allocator, for every binary, test and benchmark that links it:
//! mimalloc. A record turns into dozens of short-lived small strings (names, labels) on
//! every stage's hot path, where glibc's malloc and free took about 15 % of ingest's CPU
//! profile; benchmarks measure the allocator the stages run with.

pub mod app;
pub mod checkpoint;
pub mod config;
mod delivery;
mod end_of_partition;
mod error;
pub mod http;
pub mod kafka;
pub mod marks;
mod metrics;
mod owned;
pub mod processor;
pub mod runner;
pub mod shutdown;
pub mod telemetry;

pub use config::ConfigError;
pub use processor::{
    Input, Origin, OutputRecord, Outputs, Processor, ProcessorError, Rejection, RelayProcessor,
    TopicPartition,
};
pub use runner::{RuntimeError, StageSpec, run_stage};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
