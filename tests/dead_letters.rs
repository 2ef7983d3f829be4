//! Dead letters on the real broker: the ingest binary on Tansu, fed partitions whose last
//! record is malformed (a poison pill). The poison must reach `flows.dlq` byte for byte with
//! headers that say why and where from, and the group's committed offset must then reach
//! the partition's end: the stage neither skips past the record without dead-lettering it
//! nor stalls on it.

mod stages;
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Offset, TopicPartitionList};
use stages::StageProcess;
use support::{Tansu, TestRecord};

const RAW: &str = "flows.raw";
const EVENTS: &str = "flows.events";
const DLQ: &str = "flows.dlq";
const GROUP: &str = "dlq-poison-test";

/// Last record of partition 0: an agent left on `hubble observe` text output; not JSON, so
/// no format is known.
const NOT_JSON: &str = "May  4 13:23:47.852: default/xwing:42818 <> default/deathstar-c74d84667-cx5kp:80 Policy denied DROPPED (TCP Flags: SYN)";
/// Last record of partition 1: detected as Hubble, with a source address that is not one.
const BAD_IP: &str = r#"{"flow":{"time":"2021-06-16T19:06:13Z","verdict":"FORWARDED","IP":{"source":"10.0.0.300","destination":"10.0.0.1","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":1,"destination_port":80}}},"node_name":"n1","time":"2021-06-16T19:06:13Z"}"#;

fn hubble_lines() -> Vec<String> {
    let path = support::repo_root().join("tests/fixtures/hubble/hubble_otel_basic_10.jsonl");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Commits fast, so the test need not wait out the default 5 s interval.
fn write_config(dir: &Path) -> String {
    let path = dir.join("ingest.toml");
    std::fs::write(&path, "[runtime]\ncommit_interval = \"200ms\"\n")
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path.display().to_string()
}

/// The committed offset of GROUP per partition of `topic` (-1 when none).
fn committed(brokers: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = support::client_config(brokers)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("committed offsets of {GROUP}: {e}"));
    (0..partitions)
        .map(
            |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            },
        )
        .collect()
}

/// End offset (last offset + 1) of each partition, from the producer's acknowledgements.
///
/// Not from ListOffsets: Tansu 0.6 answers "latest" with the base offset of the last batch
/// plus one (6 records in one batch → 1), so the broker's high watermark cannot be trusted.
fn end_offsets(acks: &[(i32, i64)], partitions: i32) -> Vec<i64> {
    (0..partitions)
        .map(|p| {
            acks.iter()
                .filter(|(partition, _)| *partition == p)
                .map(|(_, offset)| offset + 1)
                .max()
                .unwrap_or(0)
        })
        .collect()
}

/// Waits until the group's committed offsets on `flows.raw` are `expected`, or fails
/// showing the last ones seen and the stage's log.
fn wait_for_commit(brokers: &str, expected: &[i64], ingest: &StageProcess) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = committed(brokers, RAW, 2);
        if seen == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "committed offsets per partition: {seen:?}, expected {expected:?}\n{}",
            ingest.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of one series (`name{labels}`) in Prometheus text.
fn series(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

fn origin(message: &OwnedMessage) -> (i32, i64) {
    let number = |name| {
        support::header_str(message, name)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("{name} missing on {message:?}"))
    };
    let partition = i32::try_from(number("flowlake.origin.partition")).unwrap_or(-1);
    (partition, number("flowlake.origin.offset"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_pill_last_in_its_partition_is_dead_lettered_and_committed_past() {
    let tansu = Tansu::start();
    let brokers = tansu.bootstrap.clone();
    support::create_topics(&brokers, &[(RAW, 2), (EVENTS, 2), (DLQ, 1)]).await;

    // Partition 0: five flows, then a record that is not JSON; partition 1: three flows,
    // then a Hubble flow with an impossible address. Each poison is the partition's last.
    let lines = hubble_lines();
    let agent: [(&str, &[u8]); 1] = [("agent", b"hubble-exporter")];
    let mut records: Vec<TestRecord<'_>> = Vec::new();
    for (partition, good, poison, key) in [
        (0, &lines[0..5], NOT_JSON, b"node-a"),
        (1, &lines[5..8], BAD_IP, b"node-b"),
    ] {
        records.extend(good.iter().map(|l| TestRecord {
            payload: l.as_bytes(),
            partition: Some(partition),
            ..TestRecord::default()
        }));
        records.push(TestRecord {
            key: Some(key.as_slice()),
            payload: poison.as_bytes(),
            headers: &agent,
            partition: Some(partition),
        });
    }
    let acks = support::produce_records(&brokers, RAW, &records).await;
    assert_eq!(acks[5], (0, 5), "the poison is offset 5 of partition 0");
    assert_eq!(acks[9], (1, 3), "the poison is offset 3 of partition 1");

    let logs = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = write_config(logs.path());
    let mut ingest = StageProcess::start(
        "flowlake-ingest",
        &[
            "--brokers",
            &brokers,
            "--group-id",
            GROUP,
            "--cluster-id",
            "poison-test",
            "--config",
            &config,
        ]
        .map(str::to_owned),
        &[],
        logs.path(),
    );

    // The committed offset reaches the end of each partition: past the poison, which is
    // only allowed once its dead letter is acknowledged.
    let ends = end_offsets(&acks, 2);
    assert_eq!(ends, [6, 4]);
    wait_for_commit(&brokers, &ends, &ingest);

    let dead = support::consume_all(&brokers, DLQ, 2, Duration::from_secs(20));
    assert_eq!(dead.len(), 2, "exactly the two poison records: {dead:?}");
    for (payload, key, partition, offset, class, format) in [
        (NOT_JSON, "node-a", "0", "5", "not_json", None),
        (BAD_IP, "node-b", "1", "3", "invalid_ip", Some("hubble")),
    ] {
        let letter = dead
            .iter()
            .find(|m| m.payload() == Some(payload.as_bytes()))
            .unwrap_or_else(|| panic!("{payload} not dead-lettered byte for byte"));
        let header = |name| support::header_str(letter, name);
        assert_eq!(letter.key(), Some(key.as_bytes()), "original key kept");
        assert_eq!(
            header("agent"),
            Some("hubble-exporter"),
            "original headers kept"
        );
        assert_eq!(header("flowlake.error.class"), Some(class));
        assert!(
            header("flowlake.error.message").is_some_and(|m| !m.is_empty()),
            "a reason: {letter:?}"
        );
        assert_eq!(header("flowlake.source.topic"), Some(RAW));
        assert_eq!(header("flowlake.source.partition"), Some(partition));
        assert_eq!(header("flowlake.source.offset"), Some(offset));
        assert_eq!(header("flowlake.stage"), Some("ingest"));
        assert_eq!(
            header("flowlake.format"),
            format,
            "the format the record was read as, when it was detected ({class})"
        );
    }
    let message = dead
        .iter()
        .find(|m| m.payload() == Some(BAD_IP.as_bytes()))
        .and_then(|m| support::header_str(m, "flowlake.error.message"));
    assert!(
        message.is_some_and(|m| m.contains("10.0.0.300")),
        "the reason names the bad value: {message:?}"
    );

    // Every flow before the poison was produced, once, with its origin.
    let events = support::consume_all(&brokers, EVENTS, 8, Duration::from_secs(20));
    let mut origins: Vec<(i32, i64)> = events.iter().map(origin).collect();
    origins.sort_unstable();
    assert_eq!(
        origins,
        vec![
            (0, 0),
            (0, 1),
            (0, 2),
            (0, 3),
            (0, 4),
            (1, 0),
            (1, 1),
            (1, 2)
        ]
    );

    // Not blocked: a flow arriving after the poison goes through and is committed.
    let after = lines[8].as_bytes();
    let mut acks = acks;
    acks.extend(
        support::produce_records(
            &brokers,
            RAW,
            &[TestRecord {
                payload: after,
                partition: Some(0),
                ..TestRecord::default()
            }],
        )
        .await,
    );
    let ends = end_offsets(&acks, 2);
    assert_eq!(ends, [7, 4]);
    wait_for_commit(&brokers, &ends, &ingest);
    let events = support::consume_all(&brokers, EVENTS, 9, Duration::from_secs(20));
    assert_eq!(events.len(), 9);
    assert!(events.iter().any(|m| origin(m) == (0, 6)));

    let metrics = ingest.metrics();
    for (name, value) in [
        (
            r#"flowlake_ingest_dead_letters_total{class="not_json"}"#,
            1.0,
        ),
        (
            r#"flowlake_ingest_dead_letters_total{class="invalid_ip"}"#,
            1.0,
        ),
        (
            r#"flowlake_ingest_rejected_records_total{class="not_json"}"#,
            1.0,
        ),
        (
            r#"flowlake_ingest_rejected_records_total{class="invalid_ip"}"#,
            1.0,
        ),
        (r#"flowlake_ingest_records_total{format="hubble"}"#, 9.0),
        (
            r#"flowlake_ingest_records_out_total{topic="flows.events"}"#,
            9.0,
        ),
        (
            r#"flowlake_ingest_records_out_total{topic="flows.dlq"}"#,
            2.0,
        ),
    ] {
        assert_eq!(series(&metrics, name), Some(value), "{name} in\n{metrics}");
    }

    let status = ingest.terminate(Duration::from_secs(30));
    assert!(
        status.success(),
        "ingest exited with {status}:\n{}",
        ingest.log_tail()
    );
    drop(tansu);
}
