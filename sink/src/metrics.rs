//! The sink's metric catalog: every name in one place, described at start-up, with handles
//! registered once and then updated per object written (never per record).
//!
//! Labels are bounded: `dataset` is `flows` or `edges`; nothing else is a label (object
//! paths and errors go to the logs).

use metrics::{
    Counter, Gauge, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};

use crate::columns::Dataset;

/// Objects written, by dataset.
pub const FILES_WRITTEN: &str = "flowlake_sink_files_written_total";
/// Parquet bytes written, by dataset.
pub const BYTES_WRITTEN: &str = "flowlake_sink_bytes_written_total";
/// Rows written, by dataset.
pub const ROWS_WRITTEN: &str = "flowlake_sink_rows_written_total";
/// Upload attempts that failed and were retried.
pub const UPLOAD_RETRIES: &str = "flowlake_sink_upload_retries_total";
/// Buffers held in memory (open, or rolled and not yet written).
pub const OPEN_BUFFERS: &str = "flowlake_sink_open_buffers";
/// Time to upload one object, retries included.
pub const UPLOAD_SECONDS: &str = "flowlake_sink_upload_seconds";

/// Describes every sink metric to the installed recorder (idempotent).
pub fn describe() {
    describe_counter!(
        FILES_WRITTEN,
        Unit::Count,
        "Parquet objects written to the lake, by dataset"
    );
    describe_counter!(
        BYTES_WRITTEN,
        Unit::Bytes,
        "Bytes of Parquet written to the lake, by dataset"
    );
    describe_counter!(
        ROWS_WRITTEN,
        Unit::Count,
        "Rows written to the lake, by dataset"
    );
    describe_counter!(
        UPLOAD_RETRIES,
        Unit::Count,
        "Object uploads that failed and were retried"
    );
    describe_gauge!(
        OPEN_BUFFERS,
        Unit::Count,
        "Buffers held in memory: open, or rolled and waiting to be written"
    );
    describe_histogram!(
        UPLOAD_SECONDS,
        Unit::Seconds,
        "Time to upload one object, retries included"
    );
}

/// Handles of one dataset.
#[derive(Clone, Debug)]
pub struct DatasetMetrics {
    /// [`FILES_WRITTEN`].
    pub files_written: Counter,
    /// [`BYTES_WRITTEN`].
    pub bytes_written: Counter,
    /// [`ROWS_WRITTEN`].
    pub rows_written: Counter,
}

/// Pre-registered handles of every sink metric.
#[derive(Clone, Debug)]
pub struct SinkMetrics {
    flows: DatasetMetrics,
    edges: DatasetMetrics,
    /// [`UPLOAD_RETRIES`].
    pub upload_retries: Counter,
    /// [`OPEN_BUFFERS`].
    pub open_buffers: Gauge,
    /// [`UPLOAD_SECONDS`].
    pub upload_seconds: Histogram,
}

impl SinkMetrics {
    /// Describes the catalog and registers the handles with the installed recorder.
    pub fn new() -> Self {
        describe();
        let dataset = |d: Dataset| DatasetMetrics {
            files_written: counter!(FILES_WRITTEN, "dataset" => d.name()),
            bytes_written: counter!(BYTES_WRITTEN, "dataset" => d.name()),
            rows_written: counter!(ROWS_WRITTEN, "dataset" => d.name()),
        };
        SinkMetrics {
            flows: dataset(Dataset::Flows),
            edges: dataset(Dataset::Edges),
            upload_retries: counter!(UPLOAD_RETRIES),
            open_buffers: gauge!(OPEN_BUFFERS),
            upload_seconds: histogram!(UPLOAD_SECONDS),
        }
    }

    /// The handles of `dataset`.
    pub fn dataset(&self, dataset: Dataset) -> &DatasetMetrics {
        match dataset {
            Dataset::Flows => &self.flows,
            Dataset::Edges => &self.edges,
        }
    }
}

impl Default for SinkMetrics {
    fn default() -> Self {
        SinkMetrics::new()
    }
}

/// Handles backed by plain atomics, for tests that assert exact metric values.
#[cfg(test)]
pub(crate) mod probe {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// Reads the values behind a [`SinkMetrics`] made by [`probed`].
    #[derive(Default)]
    pub(crate) struct Probe {
        pub files: [Arc<AtomicU64>; 2],
        pub bytes: [Arc<AtomicU64>; 2],
        pub rows: [Arc<AtomicU64>; 2],
        pub retries: Arc<AtomicU64>,
        pub open_buffers: Arc<AtomicU64>,
    }

    impl Probe {
        fn index(dataset: Dataset) -> usize {
            match dataset {
                Dataset::Flows => 0,
                Dataset::Edges => 1,
            }
        }

        pub fn files(&self, dataset: Dataset) -> u64 {
            self.files[Self::index(dataset)].load(Ordering::Acquire)
        }

        pub fn bytes(&self, dataset: Dataset) -> u64 {
            self.bytes[Self::index(dataset)].load(Ordering::Acquire)
        }

        pub fn rows(&self, dataset: Dataset) -> u64 {
            self.rows[Self::index(dataset)].load(Ordering::Acquire)
        }

        pub fn retries(&self) -> u64 {
            self.retries.load(Ordering::Acquire)
        }

        /// The gauge's value (gauges store f64 bits).
        pub fn open_buffers(&self) -> f64 {
            f64::from_bits(self.open_buffers.load(Ordering::Acquire))
        }
    }

    /// Metrics whose values the returned [`Probe`] reads.
    pub(crate) fn probed() -> (SinkMetrics, Probe) {
        let probe = Probe::default();
        let dataset = |i: usize| DatasetMetrics {
            files_written: Counter::from_arc(Arc::clone(&probe.files[i])),
            bytes_written: Counter::from_arc(Arc::clone(&probe.bytes[i])),
            rows_written: Counter::from_arc(Arc::clone(&probe.rows[i])),
        };
        let metrics = SinkMetrics {
            flows: dataset(0),
            edges: dataset(1),
            upload_retries: Counter::from_arc(Arc::clone(&probe.retries)),
            open_buffers: Gauge::from_arc(Arc::clone(&probe.open_buffers)),
            upload_seconds: Histogram::noop(),
        };
        (metrics, probe)
    }
}
