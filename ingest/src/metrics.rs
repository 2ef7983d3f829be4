//! The metric catalog of ingest.
//!
//! Labels are bounded by construction: `format` takes the names of [`Format::ALL`] and
//! `class` those of [`reject::ALL`]. Handles for every label value are registered once, so
//! counting costs no label lookup; counts are kept in plain integers per batch and added to
//! the handles when the batch is flushed.

use metrics::{Counter, Unit, counter, describe_counter};

use crate::formats::Format;
use crate::reject;

/// Records decoded and produced, by input format.
pub const RECORDS_TOTAL: &str = "flowlake_ingest_records_total";
/// Records rejected (sent to the dead-letter topic), by rejection class.
pub const REJECTED_RECORDS_TOTAL: &str = "flowlake_ingest_rejected_records_total";

/// Describes every ingest metric to the installed recorder (call once at start-up).
pub fn describe() {
    describe_counter!(
        RECORDS_TOTAL,
        Unit::Count,
        "Raw flow records decoded, validated and produced to the events topic, by input format."
    );
    describe_counter!(
        REJECTED_RECORDS_TOTAL,
        Unit::Count,
        "Raw messages rejected and sent to the dead-letter topic, by rejection class."
    );
}

/// Pre-registered counters plus the counts of the batch in progress.
#[derive(Debug)]
pub struct IngestMetrics {
    records: [Counter; Format::ALL.len()],
    rejected: [Counter; reject::ALL.len()],
    pending_records: [u64; Format::ALL.len()],
    pending_rejected: [u64; reject::ALL.len()],
}

impl IngestMetrics {
    /// Registers a handle for every format and every rejection class with the recorder
    /// installed now (install the recorder first).
    pub fn register() -> Self {
        IngestMetrics {
            records: Format::ALL.map(|f| counter!(RECORDS_TOTAL, "format" => f.name())),
            rejected: reject::ALL.map(|c| counter!(REJECTED_RECORDS_TOTAL, "class" => c)),
            pending_records: [0; Format::ALL.len()],
            pending_rejected: [0; reject::ALL.len()],
        }
    }

    /// Counts one produced record of `format`.
    pub fn record(&mut self, format: Format) {
        self.pending_records[format.index()] += 1;
    }

    /// Counts one rejection of `class`. A class outside the catalog (impossible: every
    /// rejection ingest makes uses a [`reject`] constant) is counted as `invalid_field`
    /// rather than lost.
    pub fn rejected(&mut self, class: &str) {
        let index = reject::index_of(class)
            .or_else(|| reject::index_of(reject::INVALID_FIELD))
            .unwrap_or(0);
        self.pending_rejected[index] += 1;
    }

    /// Adds the pending counts to the registered counters.
    pub fn flush(&mut self) {
        for (counter, pending) in self.records.iter().zip(&mut self.pending_records) {
            if *pending > 0 {
                counter.increment(std::mem::take(pending));
            }
        }
        for (counter, pending) in self.rejected.iter().zip(&mut self.pending_rejected) {
            if *pending > 0 {
                counter.increment(std::mem::take(pending));
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod test_recorder {
    //! A recorder that keeps counters in memory, for asserting exact metric values.

    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, PoisonError};

    use metrics::{
        Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };

    /// Counters by `name{label="value",…}`.
    #[derive(Default)]
    pub struct TestRecorder {
        counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
        pub described: Mutex<Vec<String>>,
    }

    impl TestRecorder {
        /// The value of the counter rendered as `name{label="value"}`.
        pub fn counter(&self, rendered: &str) -> Option<u64> {
            let counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
            counters.get(rendered).map(|c| c.load(Ordering::Acquire))
        }

        fn render(key: &Key) -> String {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}=\"{}\"", l.key(), l.value()))
                .collect();
            format!("{}{{{}}}", key.name(), labels.join(","))
        }
    }

    impl Recorder for TestRecorder {
        fn describe_counter(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
            self.described
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(key.as_str().to_owned());
        }
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
            let counter = counters.entry(Self::render(key)).or_default();
            Counter::from_arc(Arc::clone(counter))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_recorder::TestRecorder;
    use super::*;

    #[test]
    fn counts_reach_the_counters_on_flush() {
        let recorder = TestRecorder::default();
        metrics::with_local_recorder(&recorder, || {
            describe();
            let mut m = IngestMetrics::register();
            m.record(Format::named("hubble"));
            m.record(Format::named("hubble"));
            m.rejected(reject::NOT_JSON);
            assert_eq!(
                recorder.counter(r#"flowlake_ingest_records_total{format="hubble"}"#),
                Some(0),
                "nothing counted before the flush"
            );
            m.flush();
            m.record(Format::named("canonical-avro"));
            m.flush();
            m.flush();
        });
        let value = |k: &str| recorder.counter(k);
        assert_eq!(
            value(r#"flowlake_ingest_records_total{format="hubble"}"#),
            Some(2)
        );
        assert_eq!(
            value(r#"flowlake_ingest_records_total{format="canonical-avro"}"#),
            Some(1)
        );
        assert_eq!(
            value(r#"flowlake_ingest_records_total{format="canonical-json"}"#),
            Some(0)
        );
        assert_eq!(
            value(r#"flowlake_ingest_rejected_records_total{class="not_json"}"#),
            Some(1)
        );
        // Every class is pre-registered, so a dashboard sees zeros rather than gaps.
        for class in reject::ALL {
            let key = format!("flowlake_ingest_rejected_records_total{{class=\"{class}\"}}");
            assert!(value(&key).is_some(), "{key}");
        }
        assert_eq!(
            *recorder
                .described
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            vec![RECORDS_TOTAL.to_owned(), REJECTED_RECORDS_TOTAL.to_owned()]
        );
    }
}
