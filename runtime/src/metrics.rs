//! The runtime's own metrics, per stage (`flowlake_<stage>_…`): handles registered once,
//! per topic or error class on first use, never per record through the macros.

use std::collections::HashMap;

use metrics::{Counter, Histogram};

pub(crate) struct StageMetrics {
    stage: &'static str,
    records_in: HashMap<String, Counter>,
    records_out: HashMap<String, Counter>,
    dead_letters: HashMap<&'static str, Counter>,
    pub(crate) batch_seconds: Histogram,
    pub(crate) ack_wait_seconds: Histogram,
    pub(crate) consumer_errors: Counter,
    pub(crate) replayed: Counter,
    pub(crate) checkpoints: Counter,
}

impl StageMetrics {
    pub(crate) fn new(stage: &'static str) -> Self {
        metrics::describe_counter!(
            format!("flowlake_{stage}_records_in_total"),
            "Records read, by input topic."
        );
        metrics::describe_counter!(
            format!("flowlake_{stage}_records_out_total"),
            "Records produced and acknowledged, by topic."
        );
        metrics::describe_counter!(
            format!("flowlake_{stage}_dead_letters_total"),
            "Records sent to the dead-letter topic, by error class."
        );
        metrics::describe_histogram!(
            format!("flowlake_{stage}_batch_seconds"),
            metrics::Unit::Seconds,
            "Time to read, process and send one batch (acknowledgements are awaited at checkpoints: ack_wait_seconds)."
        );
        metrics::describe_histogram!(
            format!("flowlake_{stage}_ack_wait_seconds"),
            metrics::Unit::Seconds,
            "Time a checkpoint waited for the output sent since the previous one to be acknowledged."
        );
        metrics::describe_gauge!(
            format!("flowlake_{stage}_consumer_lag_records"),
            "Records between the committed offset and the end of each input partition."
        );
        metrics::describe_counter!(
            format!("flowlake_{stage}_consumer_errors_total"),
            "Errors reported by the consumer (retried by librdkafka)."
        );
        metrics::describe_counter!(
            format!("flowlake_{stage}_replayed_records_total"),
            "Input records dropped because an upstream replay had already delivered them."
        );
        metrics::describe_counter!(
            format!("flowlake_{stage}_checkpoints_total"),
            "Partition checkpoints written and acknowledged."
        );
        StageMetrics {
            stage,
            replayed: metrics::counter!(format!("flowlake_{stage}_replayed_records_total")),
            checkpoints: metrics::counter!(format!("flowlake_{stage}_checkpoints_total")),
            records_in: HashMap::new(),
            records_out: HashMap::new(),
            dead_letters: HashMap::new(),
            batch_seconds: metrics::histogram!(format!("flowlake_{stage}_batch_seconds")),
            ack_wait_seconds: metrics::histogram!(format!("flowlake_{stage}_ack_wait_seconds")),
            consumer_errors: metrics::counter!(format!("flowlake_{stage}_consumer_errors_total")),
        }
    }

    pub(crate) fn records_in(&mut self, topic: &str) -> &Counter {
        per_topic(&mut self.records_in, self.stage, "records_in_total", topic)
    }

    pub(crate) fn records_out(&mut self, topic: &str) -> &Counter {
        per_topic(
            &mut self.records_out,
            self.stage,
            "records_out_total",
            topic,
        )
    }

    pub(crate) fn dead_letter(&mut self, class: &'static str) -> &Counter {
        let stage = self.stage;
        self.dead_letters.entry(class).or_insert_with(
            || metrics::counter!(format!("flowlake_{stage}_dead_letters_total"), "class" => class),
        )
    }
}

/// The handle of `flowlake_<stage>_<name>{topic}`: registered on a topic's first use, then
/// found without allocating (a topic name is not copied to look it up).
fn per_topic<'m>(
    handles: &'m mut HashMap<String, Counter>,
    stage: &str,
    name: &str,
    topic: &str,
) -> &'m Counter {
    if !handles.contains_key(topic) {
        let counter =
            metrics::counter!(format!("flowlake_{stage}_{name}"), "topic" => topic.to_owned());
        handles.insert(topic.to_owned(), counter);
    }
    // Inserted just above when it was missing.
    &handles[topic]
}
