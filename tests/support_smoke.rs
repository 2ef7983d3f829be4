//! The test harness itself works: the real broker, object store and checkers the end-to-end
//! tests rely on start, answer and are read back by clients nobody here wrote.

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use support::{Moto, Tansu, TestRecord};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_round_trips_records_with_keys_and_headers() {
    let tansu = Tansu::start();
    support::create_topics(&tansu.bootstrap, &[("smoke", 3)]).await;
    let acks = support::produce(
        &tansu.bootstrap,
        "smoke",
        &[
            (Some(b"k1".as_slice()), b"one".as_slice()),
            (Some(b"k2".as_slice()), b"two".as_slice()),
            (None, b"three".as_slice()),
        ],
    )
    .await;
    assert_eq!(acks.len(), 3);

    let got = support::consume_all(&tansu.bootstrap, "smoke", 3, Duration::from_secs(30));
    let payloads: BTreeSet<&[u8]> = got.iter().filter_map(|m| m.payload()).collect();
    assert_eq!(
        payloads,
        BTreeSet::from([b"one".as_slice(), b"two".as_slice(), b"three".as_slice()])
    );
    let k1 = got
        .iter()
        .find(|m| m.key() == Some(b"k1".as_slice()))
        .expect("k1");
    assert_eq!(k1.payload(), Some(b"one".as_slice()));
    let acked: BTreeSet<(i32, i64)> = acks.into_iter().collect();
    let read: BTreeSet<(i32, i64)> = got.iter().map(|m| (m.partition(), m.offset())).collect();
    assert_eq!(
        acked, read,
        "every acknowledged (partition, offset) is read back"
    );

    // Headers, a fixed partition, and an independent client (confluent-kafka) reading them.
    support::produce_records(
        &tansu.bootstrap,
        "smoke",
        &[TestRecord {
            key: Some(b"h"),
            payload: b"with-headers",
            headers: &[("origin.topic", b"flows.raw"), ("origin.offset", b"41")],
            partition: Some(2),
        }],
    )
    .await;
    let got = support::consume_all(&tansu.bootstrap, "smoke", 4, Duration::from_secs(30));
    let m = got
        .iter()
        .find(|m| m.payload() == Some(b"with-headers".as_slice()))
        .expect("record with headers");
    assert_eq!(m.partition(), 2);
    assert_eq!(support::header_str(m, "origin.topic"), Some("flows.raw"));
    assert_eq!(support::header(m, "origin.offset"), Some(b"41".as_slice()));

    let lines = support::run_python(
        "kafka_consume.py",
        &[
            "--bootstrap",
            &tansu.bootstrap,
            "--topic",
            "smoke",
            "--expect",
            "4",
        ],
    );
    let values: BTreeSet<String> = lines
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            v["value"].as_str().expect("value").to_owned()
        })
        .collect();
    assert_eq!(values.len(), 4, "{lines}");
    assert!(values.contains(&hex(b"with-headers")), "{lines}");
}

/// Offsets read from `topic` partition 0 by a consumer that starts at `from`: the first
/// `want` of them, or what came in 3 s (all 3 s when `want` is 0).
fn offsets_from(bootstrap: &str, topic: &str, from: i64, want: usize) -> Vec<i64> {
    let consumer: BaseConsumer = support::client_config(bootstrap)
        .set("group.id", format!("resume-{topic}-{from}"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Offset(from))
        .expect("add partition");
    consumer.assign(&assignment).expect("assign");
    let until = Instant::now() + Duration::from_secs(3);
    let mut offsets = Vec::new();
    while Instant::now() < until && (want == 0 || offsets.len() < want) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            offsets.push(message.offset());
        }
    }
    offsets
}

/// Tansu 0.6 answers a fetch at an offset inside a batch with the batches that start after
/// it, so a consumer resuming there skips the rest of that batch. `produce_records` writes
/// one record per batch so that stages restarted from a committed offset lose nothing to
/// the broker (see its doc). If the first half starts failing, Tansu resumes inside
/// batches now and the workaround can go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_input_can_be_resumed_at_any_offset() {
    let tansu = Tansu::start();
    support::create_topics(&tansu.bootstrap, &[("one-batch", 1), ("per-record", 1)]).await;
    let payloads: Vec<Vec<u8>> = (0..40)
        .map(|i| format!("record {i}").into_bytes())
        .collect();
    let records: Vec<TestRecord<'_>> = payloads
        .iter()
        .map(|payload| TestRecord {
            payload,
            partition: Some(0),
            ..TestRecord::default()
        })
        .collect();

    // All 40 in one batch: resuming at 20 reads nothing (the broker's behaviour).
    support::produce_records_with(
        &tansu.bootstrap,
        "one-batch",
        &records,
        &[("linger.ms", "500"), ("batch.num.messages", "10000")],
    )
    .await;
    assert_eq!(
        offsets_from(&tansu.bootstrap, "one-batch", 0, 40),
        (0..40).collect::<Vec<i64>>()
    );
    assert_eq!(
        offsets_from(&tansu.bootstrap, "one-batch", 20, 0),
        Vec::<i64>::new(),
        "Tansu now resumes inside a batch: produce_records' one-record batches can go"
    );

    // What the tests produce: resuming at 20 reads 20..40.
    support::produce_records(&tansu.bootstrap, "per-record", &records).await;
    assert_eq!(
        offsets_from(&tansu.bootstrap, "per-record", 20, 20),
        (20..40).collect::<Vec<i64>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_accepts_compacted_topics() {
    let tansu = Tansu::start();
    support::create_compacted_topics(&tansu.bootstrap, &[("k8s.identity", 2)]).await;
    support::produce(
        &tansu.bootstrap,
        "k8s.identity",
        &[
            (Some(b"c/pod/1".as_slice()), b"v1".as_slice()),
            (Some(b"c/pod/1".as_slice()), b"v2".as_slice()),
        ],
    )
    .await;
    // Tansu does not compact: both versions are there, in order, on one partition.
    let got = support::consume_all(&tansu.bootstrap, "k8s.identity", 2, Duration::from_secs(30));
    let values: Vec<&[u8]> = got.iter().filter_map(|m| m.payload()).collect();
    assert_eq!(values, vec![b"v1".as_slice(), b"v2".as_slice()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_on_sqlite_keeps_records_across_a_kill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tansu = Tansu::start_sqlite(&dir.path().join("tansu.db"));
    support::create_topics(&tansu.bootstrap, &[("durable", 1)]).await;
    support::produce(&tansu.bootstrap, "durable", &[(None, b"kept".as_slice())]).await;
    let port = tansu.port();

    tansu.kill();
    tansu.restart();
    assert_eq!(
        tansu.port(),
        port,
        "a restart keeps the address clients hold"
    );
    let got = support::consume_all(&tansu.bootstrap, "durable", 1, Duration::from_secs(30));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload(), Some(b"kept".as_slice()));
}

#[test]
fn moto_serves_s3_and_pyarrow_duckdb_read_it() {
    let moto = Moto::start();
    moto.create_bucket("lake");
    assert!(moto.list_objects("lake", "").is_empty());
    moto.put_object("lake", "edges/cluster_id=c 1/x.txt", b"hello");
    moto.put_object("lake", "flows/a.txt", b"not parquet");
    assert_eq!(
        moto.list_objects("lake", "edges/"),
        vec!["edges/cluster_id=c 1/x.txt".to_owned()]
    );
    assert_eq!(
        moto.get_object("lake", "edges/cluster_id=c 1/x.txt"),
        b"hello"
    );

    let out = support::run_python_json(
        "read_parquet.py",
        &[
            "--s3-endpoint",
            &moto.endpoint,
            "--bucket",
            "lake",
            "--prefix",
            "flows/",
        ],
    );
    assert_eq!(out["files"], 0, "{out}");
    assert_eq!(out["rows"], 0, "{out}");
}

#[test]
fn promtool_accepts_valid_metrics_and_rejects_bad_names() {
    support::promtool_check_metrics(
        "# HELP flowlake_ingest_records_total Records read from the input topic.\n\
         # TYPE flowlake_ingest_records_total counter\n\
         flowlake_ingest_records_total{topic=\"flows.raw\"} 3\n",
    );
    let bad = std::panic::catch_unwind(|| {
        support::promtool_check_metrics(
            "# HELP flowlake_ingest_records Records.\n\
             # TYPE flowlake_ingest_records counter\n\
             flowlake_ingest_records 3\n",
        );
    });
    assert!(
        bad.is_err(),
        "a counter without _total must fail promtool's lint"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
