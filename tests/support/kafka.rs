//! Kafka clients for setting up and checking a test: topics, producing, consuming, headers.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::{QUIET_PERIOD, eventually, repo_root};

/// The client settings every helper uses; tests may start from it for their own clients.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "10000");
    config
}

/// Partition counts of `topic` as the broker reports them, `None` while it does not know it.
pub fn partition_count(bootstrap: &str, topic: &str) -> Option<usize> {
    let consumer: BaseConsumer = client_config(bootstrap).create().expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .ok()?;
    let t = md.topics().iter().find(|t| t.name() == topic)?;
    if t.error().is_some() || t.partitions().is_empty() {
        return None;
    }
    if t.partitions().iter().any(|p| p.leader() < 0) {
        return None;
    }
    Some(t.partitions().len())
}

/// Creates `topics` as `(name, partitions)` with replication 1 and waits until the broker
/// reports every partition with a leader. A topic that already exists is an error.
pub async fn create_topics(bootstrap: &str, topics: &[(&str, i32)]) {
    create_topics_with(bootstrap, topics, &[]).await;
}

/// Creates compacted topics (`cleanup.policy=compact`, as for `k8s.identity` and the
/// checkpoint topic). Tansu 0.6 accepts and reports the setting but does not compact, so a
/// reader sees every version of a key; the last one wins.
pub async fn create_compacted_topics(bootstrap: &str, topics: &[(&str, i32)]) {
    create_topics_with(bootstrap, topics, &[("cleanup.policy", "compact")]).await;
}

/// Creates `topics` with the topic configs `configs`; see [`create_topics`].
pub async fn create_topics_with(bootstrap: &str, topics: &[(&str, i32)], configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> =
        client_config(bootstrap).create().expect("admin client");
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| {
            configs.iter().fold(
                NewTopic::new(name, *partitions, TopicReplication::Fixed(1)),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(new_topics.iter(), &opts)
        .await
        .unwrap_or_else(|e| panic!("create topics {topics:?} on {bootstrap}: {e}"));
    for result in results {
        if let Err((topic, code)) = result {
            panic!("create topic {topic} on {bootstrap}: {code:?}");
        }
    }
    for (name, partitions) in topics {
        let want = usize::try_from(*partitions).expect("partitions > 0");
        eventually(
            Duration::from_secs(10),
            &format!("topic {name} in metadata"),
            || (partition_count(bootstrap, name) == Some(want)).then_some(()),
        );
    }
}

/// One record for [`produce_records`].
#[derive(Clone, Copy, Debug, Default)]
pub struct TestRecord<'a> {
    /// The message key.
    pub key: Option<&'a [u8]>,
    /// The message value.
    pub payload: &'a [u8],
    /// Headers, in order.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// A fixed partition; `None` lets the partitioner choose (by key).
    pub partition: Option<i32>,
}

/// `count` distinct Hubble exporter lines: the real samples of `files` (under
/// `tests/fixtures/hubble/`) cycled, each copy with its own `flow.uuid` —
/// `{prefix}-{index:05}`, which becomes the flow's `event_id` — so every input is a
/// different flow and can be counted in the lake.
pub fn unique_hubble_lines(files: &[&str], count: usize, prefix: &str) -> Vec<String> {
    let dir = repo_root().join("tests/fixtures/hubble");
    let mut samples = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        for line in text.lines() {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{file}: {e}"));
            samples.push(value);
        }
    }
    (0..count)
        .map(|i| {
            let mut record = samples[i % samples.len()].clone();
            record["flow"]["uuid"] = serde_json::Value::String(format!("{prefix}-{i:05}"));
            record.to_string()
        })
        .collect()
}

/// Produces `(key, payload)` records to `topic` and waits for every acknowledgement.
/// Returns `(partition, offset)` per record, in order.
pub async fn produce(
    bootstrap: &str,
    topic: &str,
    records: &[(Option<&[u8]>, &[u8])],
) -> Vec<(i32, i64)> {
    let records: Vec<TestRecord<'_>> = records
        .iter()
        .map(|(key, payload)| TestRecord {
            key: *key,
            payload,
            ..TestRecord::default()
        })
        .collect();
    produce_records(bootstrap, topic, &records).await
}

/// Produces `records` to `topic` with an idempotent producer and waits for every
/// acknowledgement; panics on the first failed delivery. Returns `(partition, offset)` per
/// record, in order.
///
/// Each record is a batch of its own, so that a consumer can resume at any offset. Tansu
/// 0.6 (`memory://` storage) answers a fetch at an offset inside a batch with the batches
/// that start at or after it: the rest of the batch the offset falls in is skipped, for
/// good. A stage restarted from a committed offset (kill test, rebalance) would lose those
/// records through no fault of its own. `test_input_can_be_resumed_at_any_offset` in
/// `tests/support_smoke.rs` pins both the broker's behaviour and this workaround.
pub async fn produce_records(
    bootstrap: &str,
    topic: &str,
    records: &[TestRecord<'_>],
) -> Vec<(i32, i64)> {
    produce_records_with(bootstrap, topic, records, &[("batch.num.messages", "1")]).await
}

/// [`produce_records`] with extra producer `settings` (e.g. larger batches).
pub async fn produce_records_with(
    bootstrap: &str,
    topic: &str,
    records: &[TestRecord<'_>],
    settings: &[(&str, &str)],
) -> Vec<(i32, i64)> {
    let mut config = client_config(bootstrap);
    config
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "15000")
        .set("linger.ms", "5");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    let producer: FutureProducer = config.create().expect("producer");
    let mut pending = Vec::with_capacity(records.len());
    for r in records {
        let headers = r
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |h, (key, value)| {
                h.insert(Header {
                    key,
                    value: Some(*value),
                })
            });
        let mut record = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(r.payload)
            .headers(headers);
        if let Some(key) = r.key {
            record = record.key(key);
        }
        if let Some(partition) = r.partition {
            record = record.partition(partition);
        }
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((e, _)) => panic!("enqueue to {topic}: {e}"),
            }
        }
    }
    let mut acks = Vec::with_capacity(pending.len());
    for delivery in pending {
        match delivery.await.expect("producer dropped a delivery") {
            Ok(d) => acks.push((d.partition, d.offset)),
            Err((e, _)) => panic!("produce to {topic} on {bootstrap}: {e}"),
        }
    }
    acks
}

/// Reads `topic`, all partitions from the beginning, without a consumer group (assign, no
/// commits). Stops when at least `expected_at_least` records arrived and none came for 2 s,
/// or at `timeout` (then returns what it has: the caller asserts on the count). Records are
/// in arrival order: per partition by offset, partitions interleaved.
pub fn consume_all(
    bootstrap: &str,
    topic: &str,
    expected_at_least: usize,
    timeout: Duration,
) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", format!("flowlake-test-{}", unique_suffix()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer");
    let partitions = eventually(timeout, &format!("topic {topic} in metadata"), || {
        partition_count(bootstrap, topic)
    });
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        let p = i32::try_from(p).expect("partition index fits i32");
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .expect("add partition");
    }
    consumer.assign(&assignment).expect("assign");

    let deadline = Instant::now() + timeout;
    let mut last_record = Instant::now();
    let mut out = Vec::new();
    while Instant::now() < deadline {
        if out.len() >= expected_at_least && last_record.elapsed() >= QUIET_PERIOD {
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(msg)) => {
                out.push(msg.detach());
                last_record = Instant::now();
            }
            Some(Err(e)) => eprintln!("consume {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// The value of the first header named `name`, if any.
pub fn header<'m>(msg: &'m OwnedMessage, name: &str) -> Option<&'m [u8]> {
    msg.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
}

/// `header` as UTF-8.
pub fn header_str<'m>(msg: &'m OwnedMessage, name: &str) -> Option<&'m str> {
    header(msg, name).map(|v| std::str::from_utf8(v).expect("header is UTF-8"))
}

fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
