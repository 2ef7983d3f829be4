//! What the delivery guarantee needs from a Kafka-API broker, checked against every broker
//! the suite runs on: Tansu 0.6 with memory storage, Tansu 0.6 with SQLite storage, and
//! librdkafka's mock cluster served from its own process (`flowlake broker`).
//!
//! - **resume inside a batch**: a consumer assigned at offset 5 of a 10-record producer batch
//!   reads 5..9 (a stage restarted from a committed offset must not skip the rest);
//! - **dead member handed over**: a SIGKILLed group member's partitions go to the live member
//!   within the session timeout plus a margin (a crashed stage's partitions do not sit idle);
//! - **committed offsets survive** a client restart;
//! - **records survive a broker restart** where the broker keeps them on disk (and, for the
//!   mock cluster, a broker outage: down, then up).
//!
//! A broker's known defects are pinned as what it does today, each with a message saying
//! what to change when it is fixed: a fixed Tansu shows up as a failing test here. The
//! README's "Brokers in the tests" table is this file in prose.

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use support::TestRecord;
use support::brokers::{BrokerKind, GroupMember, TestBroker, wait_for_split};

/// The group members' session timeout: short, so a dead member costs the test little.
const SESSION: Duration = Duration::from_secs(6);
/// What a broker may take beyond the session timeout to hand a dead member's partitions
/// over: the survivor's next heartbeat, the rejoin and the sync. librdkafka's mock cluster
/// also waits session timeout − 1 s for the remaining members to rejoin (rdkafka_mock_cgrp.c),
/// so it hands over after about 2 × 6 − 1 = 11 s.
const HANDOVER_MARGIN: Duration = Duration::from_secs(12);
/// Partitions of the group test's topic.
const GROUP_PARTITIONS: i32 = 4;

fn records(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("record {i}").into_bytes()).collect()
}

/// Produces `payloads` to partition 0 of `topic` in one producer batch (one request, one
/// record batch on the broker).
async fn produce_one_batch(bootstrap: &str, topic: &str, payloads: &[Vec<u8>]) {
    let records: Vec<TestRecord<'_>> = payloads
        .iter()
        .map(|payload| TestRecord {
            payload,
            partition: Some(0),
            ..TestRecord::default()
        })
        .collect();
    let acks = support::produce_records_with(
        bootstrap,
        topic,
        &records,
        &[("linger.ms", "500"), ("batch.num.messages", "10000")],
    )
    .await;
    let offsets: Vec<i64> = acks.iter().map(|(_, offset)| *offset).collect();
    assert_eq!(offsets, (0..payloads.len() as i64).collect::<Vec<_>>());
}

/// Offsets read from partition 0 of `topic` starting at `from` (assigned, no group
/// coordination), until `want` arrived or 3 s passed.
fn offsets_from(bootstrap: &str, topic: &str, from: Offset, group: &str, want: usize) -> Vec<i64> {
    let consumer: BaseConsumer = support::client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, from)
        .unwrap_or_else(|e| panic!("{e}"));
    consumer
        .assign(&assignment)
        .unwrap_or_else(|e| panic!("assign: {e}"));
    let until = Instant::now() + Duration::from_secs(3);
    let mut offsets = Vec::new();
    while Instant::now() < until && offsets.len() < want {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            offsets.push(message.offset());
        }
    }
    offsets
}

/// Commits `offset` for partition 0 of `topic` in `group` from a client that then goes
/// away, and returns what a new client of the group reads as committed.
fn commit_then_read_back(bootstrap: &str, topic: &str, group: &str, offset: i64) -> Option<i64> {
    {
        let consumer: BaseConsumer = support::client_config(bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap_or_else(|e| panic!("consumer: {e}"));
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(topic, 0, Offset::Offset(offset))
            .unwrap_or_else(|e| panic!("{e}"));
        consumer
            .commit(&offsets, CommitMode::Sync)
            .unwrap_or_else(|e| panic!("commit {offset} in {group}: {e}"));
    }
    committed(bootstrap, topic, group)
}

/// The offset committed for partition 0 of `topic` by `group`, as a fresh client sees it.
fn committed(bootstrap: &str, topic: &str, group: &str) -> Option<i64> {
    let consumer: BaseConsumer = support::client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    let mut partitions = TopicPartitionList::new();
    partitions.add_partition(topic, 0);
    let got = consumer
        .committed_offsets(partitions, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("committed offsets of {group}: {e}"));
    match got.find_partition(topic, 0).map(|p| p.offset()) {
        Some(Offset::Offset(n)) => Some(n),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// (a) A consumer resuming inside a producer batch reads the rest of it
// ---------------------------------------------------------------------------------------------

async fn resume_inside_batch(kind: BrokerKind) -> Vec<i64> {
    let broker = TestBroker::start(kind);
    broker.create_topics(&[("batch", 1)]).await;
    produce_one_batch(&broker.bootstrap, "batch", &records(10)).await;
    assert_eq!(
        offsets_from(&broker.bootstrap, "batch", Offset::Beginning, "from-0", 10),
        (0..10).collect::<Vec<_>>(),
        "{kind:?}: the batch reads back from its start"
    );
    offsets_from(&broker.bootstrap, "batch", Offset::Offset(5), "from-5", 5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_resumes_inside_a_batch() {
    assert_eq!(
        resume_inside_batch(BrokerKind::MockCluster).await,
        vec![5, 6, 7, 8, 9]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_sqlite_resumes_inside_a_batch() {
    assert_eq!(
        resume_inside_batch(BrokerKind::TansuSqlite).await,
        vec![5, 6, 7, 8, 9]
    );
}

/// Defect pinned: Tansu's memory engine answers a fetch inside a batch with the batches
/// that start after it, so the rest of the batch is skipped for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_memory_skips_the_rest_of_a_batch_on_resume() {
    let got = resume_inside_batch(BrokerKind::TansuMemory).await;
    assert_eq!(
        got,
        Vec::<i64>::new(),
        "Tansu's memory engine now returns {got:?} from offset 5 of a 10-record batch: if that \
         is 5..9 it resumes inside batches, so this defect is fixed — make this test expect \
         5..9, update the README's broker table and DESIGN.md, and drop the one-record batches \
         of support::produce_records"
    );
}

// ---------------------------------------------------------------------------------------------
// (b) A SIGKILLed member's partitions go to the live member
// ---------------------------------------------------------------------------------------------

/// Two members share a 4-partition topic; one is killed with SIGKILL. Returns how long the
/// survivor took to hold every partition, or `None` if it did not within the session
/// timeout plus [`HANDOVER_MARGIN`].
async fn dead_member_handover(kind: BrokerKind) -> Option<Duration> {
    let broker = TestBroker::start(kind);
    broker.create_topics(&[("group", GROUP_PARTITIONS)]).await;
    let all: Vec<i32> = (0..GROUP_PARTITIONS).collect();
    let mut doomed = GroupMember::start(&broker.bootstrap, "group", "handover", SESSION);
    assert!(
        doomed.wait_for(&all, Duration::from_secs(30)),
        "{kind:?}: the first member never held every partition: {:?}",
        doomed.history()
    );
    let survivor = GroupMember::start(&broker.bootstrap, "group", "handover", SESSION);
    let split = wait_for_split(
        &[&doomed, &survivor],
        GROUP_PARTITIONS,
        Duration::from_secs(40),
    );
    doomed.kill9();
    let killed = Instant::now();
    let handed_over = survivor.wait_for(&all, SESSION + HANDOVER_MARGIN);
    let took = killed.elapsed();
    eprintln!(
        "{kind:?}: split {split:?}; after the kill the survivor {} ({took:.1?}): {:?}",
        if handed_over {
            "held every partition"
        } else {
            "did not hold every partition"
        },
        survivor.history()
    );
    handed_over.then_some(took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_hands_a_dead_members_partitions_over() {
    let took = dead_member_handover(BrokerKind::MockCluster).await;
    assert!(
        took.is_some(),
        "the mock cluster did not give the survivor every partition within {:?}",
        SESSION + HANDOVER_MARGIN
    );
}

/// Defect pinned: Tansu (both engines) rebalances when a member dies but keeps the dead
/// member in the group, so the survivor is handed back only its own partitions and the dead
/// member's stay unconsumed (measured: still so 60 s after the kill).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_memory_keeps_a_dead_member_in_the_group() {
    let took = dead_member_handover(BrokerKind::TansuMemory).await;
    assert_eq!(
        took, None,
        "Tansu's memory engine now hands a SIGKILLed member's partitions over ({took:?}): this \
         defect is fixed — make this test expect the handover, update the README's broker \
         table and DESIGN.md"
    );
}

/// The same defect as [`tansu_memory_keeps_a_dead_member_in_the_group`], on SQLite. (A lone
/// member killed and replaced by a new one is handled: only a dead member beside a live one
/// is kept.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_sqlite_keeps_a_dead_member_in_the_group() {
    let took = dead_member_handover(BrokerKind::TansuSqlite).await;
    assert_eq!(
        took, None,
        "Tansu's SQLite engine now hands a SIGKILLed member's partitions over ({took:?}): this \
         defect is fixed — make this test expect the handover, update the README's broker \
         table and DESIGN.md"
    );
}

// ---------------------------------------------------------------------------------------------
// (c) Committed offsets survive a client restart
// ---------------------------------------------------------------------------------------------

async fn offsets_survive_client_restart(kind: BrokerKind) {
    let broker = TestBroker::start(kind);
    broker.create_topics(&[("committed", 1)]).await;
    produce_one_batch(&broker.bootstrap, "committed", &records(10)).await;
    assert_eq!(
        commit_then_read_back(&broker.bootstrap, "committed", "restarting", 7),
        Some(7),
        "{kind:?}: the committed offset as a new client reads it"
    );
    // A new client resuming from the group's offset starts there, inside the batch.
    let resumed = offsets_from(
        &broker.bootstrap,
        "committed",
        Offset::Stored,
        "restarting",
        3,
    );
    let expected = if kind == BrokerKind::TansuMemory {
        // The batch defect above: nothing from inside the batch.
        Vec::new()
    } else {
        vec![7, 8, 9]
    };
    assert_eq!(
        resumed, expected,
        "{kind:?}: resuming from the committed offset"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_keeps_committed_offsets_across_client_restarts() {
    offsets_survive_client_restart(BrokerKind::MockCluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_memory_keeps_committed_offsets_across_client_restarts() {
    offsets_survive_client_restart(BrokerKind::TansuMemory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_sqlite_keeps_committed_offsets_across_client_restarts() {
    offsets_survive_client_restart(BrokerKind::TansuSqlite).await;
}

// ---------------------------------------------------------------------------------------------
// (d) Records and offsets survive a broker restart (durable storage) or outage (mock)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_sqlite_keeps_records_and_offsets_across_a_broker_crash() {
    let mut broker = TestBroker::start(BrokerKind::TansuSqlite);
    let bootstrap = broker.bootstrap.clone();
    broker.create_topics(&[("durable", 1)]).await;
    produce_one_batch(&bootstrap, "durable", &records(10)).await;
    assert_eq!(
        commit_then_read_back(&bootstrap, "durable", "durable-group", 4),
        Some(4)
    );
    broker.tansu().expect("a Tansu broker").restart(); // SIGKILL, then the same port and file
    assert_eq!(
        offsets_from(&bootstrap, "durable", Offset::Beginning, "after-crash", 10),
        (0..10).collect::<Vec<_>>(),
        "records after the broker was killed and restarted"
    );
    assert_eq!(
        committed(&bootstrap, "durable", "durable-group"),
        Some(4),
        "committed offset after the broker was killed and restarted"
    );
}

/// Not a defect, a property of the storage: a memory broker restarts empty. Tests that
/// restart the broker use SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_memory_restarts_empty() {
    let mut broker = TestBroker::start(BrokerKind::TansuMemory);
    let bootstrap = broker.bootstrap.clone();
    broker.create_topics(&[("volatile", 1)]).await;
    produce_one_batch(&bootstrap, "volatile", &records(10)).await;
    broker.tansu().expect("a Tansu broker").restart();
    assert_eq!(
        support::partition_count(&bootstrap, "volatile"),
        None,
        "Tansu's memory engine kept a topic across a restart: it is durable now?"
    );
}

/// The mock cluster lives in its process's memory; what it simulates is an outage: every
/// broker down (connections closed, new ones refused), then up. Records and offsets from
/// before are there, and records produced during the outage are delivered once it ends,
/// exactly once (idempotent producer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_keeps_records_and_offsets_across_a_broker_outage() {
    let broker = TestBroker::start(BrokerKind::MockCluster);
    let bootstrap = broker.bootstrap.clone();
    let mock = broker.mock().expect("the mock cluster");
    broker.create_topics(&[("outage", 1)]).await;
    produce_one_batch(&bootstrap, "outage", &records(10)).await;
    assert_eq!(
        commit_then_read_back(&bootstrap, "outage", "outage-group", 4),
        Some(4)
    );

    mock.down(1);
    let bootstrap_for_producer = bootstrap.clone();
    let producing = tokio::spawn(async move {
        let later: Vec<Vec<u8>> = records(20).split_off(10);
        let during: Vec<TestRecord<'_>> = later
            .iter()
            .map(|payload| TestRecord {
                payload,
                partition: Some(0),
                ..TestRecord::default()
            })
            .collect();
        support::produce_records(&bootstrap_for_producer, "outage", &during)
            .await
            .len()
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !producing.is_finished(),
        "produced while every broker was down"
    );
    mock.up(1);
    let acked = producing
        .await
        .unwrap_or_else(|e| panic!("producer task: {e}"));
    assert_eq!(acked, 10);

    let got = support::consume_all(&bootstrap, "outage", 20, Duration::from_secs(30));
    let payloads: Vec<&[u8]> = got.iter().filter_map(|m| m.payload()).collect();
    let expected: Vec<Vec<u8>> = records(20);
    assert_eq!(
        payloads,
        expected.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        "every record once, in order, after the outage"
    );
    assert_eq!(committed(&bootstrap, "outage", "outage-group"), Some(4));
}
