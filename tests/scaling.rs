//! Scaling enrich out: two instances in one consumer group on a 4-partition topic write
//! exactly the output one instance writes — the same input offsets, each once, with
//! byte-identical enriched records.
//!
//! Enrichment is a pure function of the flow and the identity table as long as no
//! per-instance state feeds it. DNS names learned from flows are such state: each instance
//! learns only the DNS answers in its own partitions, so a flow whose enrichment depends
//! on a DNS answer seen in another partition can be enriched differently by one instance
//! and by two. This test therefore uses no DNS flows (no `dns` field anywhere); the caveat
//! is documented with enrich's DNS naming.

mod stages;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use flowlake_schemas::{Action, AvroCodec, FlowEvent, Ip, Timestamp};
use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use stages::StageProcess;
use support::{Tansu, TestRecord};

const CLUSTER: &str = "gke-test";
const PARTITIONS: i32 = 4;
const FLOWS: usize = 400;

/// Pod IPs of `tests/fixtures/identity/hubble-snapshot.json` (one of them a hostNetwork
/// pod, which resolves to its node), plus the kube-dns Service.
const CLUSTER_IPS: [&str; 12] = [
    "10.0.2.16",
    "10.0.2.12",
    "10.156.2.7",
    "10.156.3.6",
    "10.244.0.110",
    "10.244.0.177",
    "10.244.0.206",
    "10.244.1.193",
    "10.244.1.227",
    "10.244.1.5",
    "172.19.0.3",
    "10.96.0.10",
];

/// Addresses no snapshot holds: public and private ones.
const EXTERNAL_IPS: [&str; 4] = [
    "8.8.8.8",
    "52.94.236.248",
    "192.168.50.7",
    "2606:4700::1111",
];

fn ip(text: &str) -> Ip {
    Ip(text.parse().unwrap_or_else(|e| panic!("{text}: {e}")))
}

/// Flow `i`: a pod talking to another pod, the Service or an external address.
fn flow(i: usize, base: Timestamp) -> FlowEvent {
    let src = CLUSTER_IPS[i % CLUSTER_IPS.len()];
    let dst = if i.is_multiple_of(3) {
        EXTERNAL_IPS[i % EXTERNAL_IPS.len()]
    } else {
        CLUSTER_IPS[(i * 7 + 3) % CLUSTER_IPS.len()]
    };
    // An IPv6 destination keeps an IPv6 source out of the IPv4 pods' way, and vice versa.
    let (src, dst) = if dst.contains(':') {
        ("fd00::99", dst)
    } else {
        (src, dst)
    };
    let t = Timestamp::from_micros(base.as_micros() + 1_000 * i as i64);
    FlowEvent {
        event_id: format!("e-{i}"),
        cluster_id: CLUSTER.into(),
        source_format: "hubble".into(),
        start_time: t,
        end_time: t,
        src_ip: Some(ip(src)),
        dst_ip: Some(ip(dst)),
        src_port: Some(40_000 + (i % 1000) as i32),
        dst_port: Some(if i.is_multiple_of(2) { 443 } else { 8080 }),
        protocol: Some(6),
        action: if i.is_multiple_of(11) {
            Action::Deny
        } else {
            Action::Allow
        },
        bytes_out: i as i64,
        packets_out: 1,
        ..FlowEvent::default()
    }
}

fn enrich(brokers: &str, group: &str, output: &str, log_dir: &Path) -> StageProcess {
    let snapshot = support::repo_root().join("tests/fixtures/identity/hubble-snapshot.json");
    let args: Vec<String> = vec![
        "--brokers".into(),
        brokers.into(),
        "--group-id".into(),
        group.into(),
        "--input-topic".into(),
        "flows.events".into(),
        "--output-topic".into(),
        output.into(),
        "--dlq-topic".into(),
        "flows.dlq".into(),
        "--snapshot".into(),
        format!("{CLUSTER}={}", snapshot.display()),
    ];
    std::fs::create_dir_all(log_dir).unwrap_or_else(|e| panic!("{e}"));
    StageProcess::start("flowlake-enrich", &args, &[], log_dir)
}

/// The partitions a stage holds now, from its log: its last "partitions assigned", unless
/// a "partitions revoked" came after it.
fn assigned(stage: &StageProcess) -> BTreeSet<i32> {
    let log = std::fs::read_to_string(&stage.log).unwrap_or_default();
    let mut held = BTreeSet::new();
    for line in log.lines() {
        if line.contains("partitions revoked") {
            held.clear();
        } else if line.contains("partitions assigned") {
            held = line
                .split("partition: ")
                .skip(1)
                .filter_map(|rest| {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    digits.parse().ok()
                })
                .collect();
        }
    }
    held
}

/// Output records by the input record they came from (origin topic, partition, offset).
/// A rebalance may re-deliver a record (at-least-once): its repeats must be byte-identical,
/// and count once.
fn by_origin(messages: &[OwnedMessage], what: &str) -> BTreeMap<(String, i32, i64), Vec<u8>> {
    let mut out = BTreeMap::new();
    for m in messages {
        let origin = |name: &str| {
            support::header_str(m, name)
                .unwrap_or_else(|| panic!("{what}: record without {name}"))
                .to_owned()
        };
        let key = (
            origin("flowlake.origin.topic"),
            origin("flowlake.origin.partition")
                .parse()
                .unwrap_or_else(|e| panic!("{what}: partition: {e}")),
            origin("flowlake.origin.offset")
                .parse()
                .unwrap_or_else(|e| panic!("{what}: offset: {e}")),
        );
        let payload = m.payload().unwrap_or_default().to_vec();
        if let Some(previous) = out.insert(key.clone(), payload.clone()) {
            assert_eq!(
                previous, payload,
                "{what}: {key:?} delivered twice with different payloads"
            );
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_in_one_group_write_what_one_instance_writes() {
    let tansu = Tansu::start();
    let brokers = format!("127.0.0.1:{}", tansu.port());
    support::create_topics(
        &brokers,
        &[
            ("flows.events", PARTITIONS),
            ("flows.enriched-one", PARTITIONS),
            ("flows.enriched-two", PARTITIONS),
            ("flows.dlq", 1),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));

    // The pair starts together and settles on two partitions each before any flow is
    // produced, so both process records (one would otherwise drain all four partitions
    // before the other joins).
    let pair = [
        enrich(
            &brokers,
            "g-two",
            "flows.enriched-two",
            &dir.path().join("two-a"),
        ),
        enrich(
            &brokers,
            "g-two",
            "flows.enriched-two",
            &dir.path().join("two-b"),
        ),
    ];
    support::eventually(
        Duration::from_secs(40),
        "the two instances of g-two to share the 4 partitions",
        || {
            let (a, b) = (assigned(&pair[0]), assigned(&pair[1]));
            let all: BTreeSet<i32> = a.union(&b).copied().collect();
            (!a.is_empty() && !b.is_empty() && a.is_disjoint(&b) && all.len() == 4).then_some(())
        },
    );
    let single = enrich(
        &brokers,
        "g-one",
        "flows.enriched-one",
        &dir.path().join("one"),
    );

    let codec = AvroCodec::<FlowEvent>::new().unwrap_or_else(|e| panic!("{e}"));
    let base = Timestamp::now();
    let payloads: Vec<Vec<u8>> = (0..FLOWS).map(|i| codec.encode(&flow(i, base))).collect();
    let records: Vec<TestRecord<'_>> = payloads
        .iter()
        .enumerate()
        .map(|(i, payload)| TestRecord {
            payload,
            partition: Some(i as i32 % PARTITIONS),
            ..TestRecord::default()
        })
        .collect();
    let acks = support::produce_records(&brokers, "flows.events", &records).await;
    let inputs: BTreeSet<(String, i32, i64)> = acks
        .into_iter()
        .map(|(p, o)| ("flows.events".to_owned(), p, o))
        .collect();
    assert_eq!(inputs.len(), FLOWS);

    let one = support::consume_all(
        &brokers,
        "flows.enriched-one",
        FLOWS,
        Duration::from_secs(30),
    );
    let two = support::consume_all(
        &brokers,
        "flows.enriched-two",
        FLOWS,
        Duration::from_secs(30),
    );
    let logs = || {
        format!(
            "one:\n{}\ntwo-a:\n{}\ntwo-b:\n{}",
            single.log_tail(),
            pair[0].log_tail(),
            pair[1].log_tail()
        )
    };
    let one = by_origin(&one, "one instance");
    let two = by_origin(&two, "two instances");
    let covered: BTreeSet<(String, i32, i64)> = one.keys().cloned().collect();
    assert_eq!(
        covered,
        inputs,
        "one instance covers every input once\n{}",
        logs()
    );
    let covered: BTreeSet<(String, i32, i64)> = two.keys().cloned().collect();
    assert_eq!(
        covered,
        inputs,
        "two instances cover every input once\n{}",
        logs()
    );
    let differing: Vec<&(String, i32, i64)> =
        one.keys().filter(|k| one.get(*k) != two.get(*k)).collect();
    assert!(
        differing.is_empty(),
        "{} records differ between one and two instances, first {:?}",
        differing.len(),
        differing.first()
    );

    // Both instances of the pair did work, and between them read every flow exactly once
    // (no rebalance after the produce, so no re-delivery); the single one read them all.
    let records_in: Vec<f64> = pair
        .iter()
        .map(|p| stages::metric_sum(&p.metrics(), "flowlake_enrich_records_in_total"))
        .collect();
    assert!(
        records_in.iter().all(|n| *n > 0.0),
        "both instances processed records: {records_in:?}\n{}",
        logs()
    );
    assert_eq!(records_in.iter().sum::<f64>(), FLOWS as f64, "{}", logs());
    assert_eq!(
        stages::metric_sum(&single.metrics(), "flowlake_enrich_records_in_total"),
        FLOWS as f64
    );
    // Nothing was a bad record.
    let dead = support::consume_all(&brokers, "flows.dlq", 0, Duration::from_secs(5));
    assert!(dead.is_empty(), "{} dead letters\n{}", dead.len(), logs());
}
