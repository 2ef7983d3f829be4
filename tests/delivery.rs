//! Delivery across a crash: the ingest binary is killed with SIGKILL in the middle of a
//! stream on a broker that behaves like Kafka when a client dies (`flowlake broker`, the
//! standalone mock cluster; see tests/broker_conformance.rs), then restarted in the same
//! consumer group. Every raw
//! record must come out at least once, and every repeat must be recognisable as one: it
//! carries the origin coordinates (`flowlake.origin.*`) of an earlier copy, with the same
//! key and the same bytes, so a downstream stage can drop it by origin offset.

mod stages;
mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Offset, TopicPartitionList};
use stages::{StageProcess, metric_sum};
use support::TestRecord;
use support::brokers::MockBroker;

const RAW: &str = "flows.raw";
const EVENTS: &str = "flows.events";
const DLQ: &str = "flows.dlq";
const PARTITIONS: i32 = 2;
const GROUP: &str = "delivery-kill-test";
/// Raw records fed: enough that the stage is killed well inside the stream.
const RECORDS: usize = 3000;

/// `RECORDS` distinct Hubble exporter lines, each its own flow.
fn raw_lines() -> Vec<String> {
    support::unique_hubble_lines(
        &[
            "hubble_otel_basic_10.jsonl",
            "hubble_otel_tcp_selected.jsonl",
            "hubble_otel_udp_selected.jsonl",
            "hubble_otel_dns_selected.jsonl",
            "cilium_docs_export_dropped.jsonl",
        ],
        RECORDS,
        "kill-test",
    )
}

/// Small batches, a checkpoint after nearly every one and frequent commits, so the kill
/// lands between commits with records produced since the last one: the replay then has
/// something to repeat.
fn write_config(dir: &Path) -> String {
    let path = dir.join("ingest.toml");
    std::fs::write(
        &path,
        "[runtime]\nbatch_max_records = 25\ncheckpoint_interval = \"10ms\"\ncommit_interval = \"300ms\"\n",
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path.display().to_string()
}

fn ingest_args(brokers: &str, config: &str) -> Vec<String> {
    [
        "--brokers",
        brokers,
        "--group-id",
        GROUP,
        "--cluster-id",
        "kill-test",
        "--config",
        config,
        // A killed member holds its partitions until its session expires; keep that short
        // so the restarted one gets them within the test's budget.
        "--kafka-property",
        "session.timeout.ms=6000",
        "--kafka-property",
        "heartbeat.interval.ms=1000",
        // Tansu holds every fetch for up to half of fetch.wait.max.ms even with data
        // waiting (BENCHMARKS.md); with librdkafka's 500 ms and this test's 25-record
        // batches, the restarted stage needed ~30 s for the stream when the full suite
        // loaded the machine, and once missed the 40 s deadline.
        "--kafka-property",
        "fetch.wait.max.ms=20",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Origin `(partition, offset)` of an output record.
fn origin(message: &OwnedMessage) -> (i32, i64) {
    assert_eq!(
        support::header_str(message, "flowlake.origin.topic"),
        Some(RAW)
    );
    let number = |name| {
        support::header_str(message, name)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("{name} missing on {message:?}"))
    };
    let partition = i32::try_from(number("flowlake.origin.partition")).unwrap_or(-1);
    (partition, number("flowlake.origin.offset"))
}

/// Reads `flows.events` from the beginning until every origin in `inputs` has been seen
/// (then 2 s more, for stragglers), or fails after `timeout`. Returns the records in
/// arrival order.
fn read_until_covered(
    brokers: &str,
    inputs: &[(i32, i64)],
    timeout: Duration,
    stage: &StageProcess,
) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = support::client_config(brokers)
        .set("group.id", "delivery-kill-test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment
            .add_partition_offset(EVENTS, p, Offset::Beginning)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    consumer
        .assign(&assignment)
        .unwrap_or_else(|e| panic!("assign: {e}"));
    let mut missing: std::collections::HashSet<(i32, i64)> = inputs.iter().copied().collect();
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut covered_at: Option<Instant> = None;
    while covered_at.is_none_or(|t| t.elapsed() < Duration::from_secs(2)) {
        assert!(
            Instant::now() < deadline,
            "{} of {} raw records never reached {EVENTS}; missing {}; read {} of {EVENTS}'s \
             {:?} (low, high) watermarks; restarted stage's counters: {}\n{}",
            missing.len(),
            inputs.len(),
            missing_ranges(&missing),
            out.len(),
            (0..PARTITIONS)
                .map(|p| consumer.fetch_watermarks(EVENTS, p, Duration::from_secs(5)))
                .collect::<Vec<_>>(),
            stage_counters(stage),
            stage.log_tail()
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let message = message.detach();
                missing.remove(&origin(&message));
                out.push(message);
                if missing.is_empty() && covered_at.is_none() {
                    covered_at = Some(Instant::now());
                }
            }
            Some(Err(e)) => eprintln!("consume {EVENTS}: {e}"),
            None => {}
        }
    }
    out
}

/// `missing` as per-partition offset ranges, to tell a stalled partition (one range at the
/// end) from records lost in the middle.
fn missing_ranges(missing: &std::collections::HashSet<(i32, i64)>) -> String {
    let mut sorted: Vec<(i32, i64)> = missing.iter().copied().collect();
    sorted.sort_unstable();
    let mut ranges: Vec<(i32, i64, i64)> = Vec::new();
    for (partition, offset) in sorted {
        match ranges.last_mut() {
            Some((p, _, end)) if *p == partition && *end + 1 == offset => *end = offset,
            _ => ranges.push((partition, offset, offset)),
        }
    }
    ranges
        .iter()
        .map(|(p, from, to)| format!("p{p}:{from}..={to}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The record counters a stage exports, as `name{labels} value` lines joined by `; `.
fn stage_counters(stage: &StageProcess) -> String {
    stage.get("/metrics").map_or_else(
        || "metrics unreachable".to_owned(),
        |(_, body)| {
            body.lines()
                .filter(|l| l.starts_with("flowlake_") && l.contains("records"))
                .collect::<Vec<_>>()
                .join("; ")
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_restart_loses_nothing_and_marks_every_repeat() {
    let broker = MockBroker::start(
        1,
        &[
            (RAW, PARTITIONS),
            (EVENTS, PARTITIONS),
            (DLQ, 1),
            ("flowlake.checkpoints", 1),
        ],
    );
    let brokers = broker.bootstrap.clone();

    let lines = raw_lines();
    let records: Vec<TestRecord<'_>> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| TestRecord {
            payload: line.as_bytes(),
            partition: Some(i32::try_from(i % 2).unwrap_or(0)),
            ..TestRecord::default()
        })
        .collect();
    let inputs = support::produce_records(&brokers, RAW, &records).await;

    let logs = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = write_config(logs.path());
    let first_logs = logs.path().join("first");
    let second_logs = logs.path().join("second");
    for dir in [&first_logs, &second_logs] {
        std::fs::create_dir(dir).unwrap_or_else(|e| panic!("{e}"));
    }

    // Kill once a third of the stream is out, acknowledged by the broker.
    let mut first = StageProcess::start(
        "flowlake-ingest",
        &ingest_args(&brokers, &config),
        &[],
        &first_logs,
    );
    let threshold = (RECORDS / 3) as f64;
    let out_at_kill =
        support::eventually(Duration::from_secs(30), "a third of the stream out", || {
            let out = first
                .get("/metrics")
                .map(|(_, body)| metric_sum(&body, "flowlake_ingest_records_out_total"))
                .unwrap_or(0.0);
            (out >= threshold).then_some(out)
        });
    let status = first.kill9();
    assert!(!status.success(), "killed, not exited: {status}");
    assert!(
        out_at_kill < RECORDS as f64,
        "the whole stream was out ({out_at_kill}) before the kill: nothing was tested"
    );

    let mut second = StageProcess::start(
        "flowlake-ingest",
        &ingest_args(&brokers, &config),
        &[],
        &second_logs,
    );
    let events = read_until_covered(&brokers, &inputs, Duration::from_secs(40), &second);

    // Every raw record is downstream; every repeat is byte for byte an earlier copy,
    // under the same origin coordinates.
    let mut first_copy: HashMap<(i32, i64), &OwnedMessage> = HashMap::new();
    let mut repeats: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for message in &events {
        let origin = origin(message);
        match first_copy.get(&origin) {
            None => {
                first_copy.insert(origin, message);
            }
            Some(earlier) => {
                assert_eq!(message.payload(), earlier.payload(), "repeat of {origin:?}");
                assert_eq!(message.key(), earlier.key(), "repeat of {origin:?}");
                assert_eq!(
                    message.partition(),
                    earlier.partition(),
                    "repeat of {origin:?}"
                );
                repeats.entry(origin.0).or_default().push(origin.1);
            }
        }
    }
    assert_eq!(first_copy.len(), RECORDS, "every raw record at least once");
    assert!(
        inputs.iter().all(|o| first_copy.contains_key(o)),
        "outputs name exactly the inputs' coordinates"
    );
    let event_ids: std::collections::HashSet<Vec<u8>> = first_copy
        .values()
        .filter_map(|m| m.payload().map(<[u8]>::to_vec))
        .collect();
    assert_eq!(
        event_ids.len(),
        RECORDS,
        "distinct inputs, distinct outputs"
    );

    // Report what the kill cost: the replay from the last committed offset (the first
    // instance's output after its last commit comes again from the second).
    let duplicates: usize = repeats.values().map(Vec::len).sum();
    for (partition, offsets) in &mut repeats {
        offsets.sort_unstable();
        let distinct = {
            let mut d = offsets.clone();
            d.dedup();
            d
        };
        println!(
            "partition {partition}: {} repeats of {} distinct records (offsets {}..={})",
            offsets.len(),
            distinct.len(),
            offsets[0],
            offsets[offsets.len() - 1]
        );
    }
    println!(
        "{RECORDS} raw records, {out_at_kill} out before kill -9, {} in {EVENTS}: \
         {duplicates} duplicates, each a byte-identical copy under the same origin",
        events.len()
    );
    assert_eq!(events.len(), RECORDS + duplicates);

    assert!(
        support::consume_all(&brokers, DLQ, 0, Duration::from_secs(3)).is_empty(),
        "valid records are never dead-lettered"
    );
    let status = second.terminate(Duration::from_secs(30));
    assert!(
        status.success(),
        "ingest exited with {status}:\n{}",
        second.log_tail()
    );
    drop(broker);
}
