//! Aggregate throughput at a fixed number of live edges, against a plain `HashMap` fold of
//! the same keys in the same run.
//!
//! The input: 100,000 enriched flows over 50,000 distinct edge keys (50 source namespaces
//! × 100 source workloads × 10 destination ports), every flow in the same one-minute
//! window, so each iteration folds into 50,000 live edges and nothing closes. Benchmarks:
//! - `processor`: the stage's processing path per record — Avro decode of the
//!   `EnrichedFlow`, the future-skew check, the fold into the partition's open window
//!   (edge key built, value merged, distinct source pods kept);
//! - `windows_fold`: the fold alone ([`PartitionWindows::fold`]) on decoded flows (each
//!   iteration folds clones, made outside the timing);
//! - `hashmap_baseline`: the same flows folded into a `HashMap` keyed by the edge's
//!   fields as borrowed strings, summing flows, bytes and packets — the least a fold of
//!   these keys costs.
//!
//! Run: `cargo bench -p flowlake-aggregate --bench aggregate -- --warm-up-time 2 --measurement-time 5`

// A benchmark whose setup fails is broken: it stops with the reason.
#![allow(clippy::expect_used)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{BatchSize, Criterion, Throughput, criterion_main};
use flowlake_aggregate::{AggregateProcessor, AggregateSettings, PartitionWindows, WindowParams};
use flowlake_runtime::{Input, Outputs, Processor};
use flowlake_schemas::{AvroCodec, EnrichedFlow, Timestamp, samples};

const RECORDS: usize = 100_000;
const LIVE_EDGES: usize = 50_000;
/// 2023-11-14T22:13:00Z: a window start, so every flow below falls into one window.
const WINDOW_START_SECS: i64 = 1_699_999_980;

/// Flow `i`: edge key `i % LIVE_EDGES`, starting within the first 50 s of the window.
fn flow(i: usize) -> EnrichedFlow {
    let key = i % LIVE_EDGES;
    let mut flow = samples::enriched_flow();
    let namespace = format!("ns-{}", key % 50);
    let workload = format!("app-{}", (key / 50) % 100);
    flow.src.aggregated_name = Some(format!("{workload}-6b7f9c8d5-*"));
    flow.src.name = Some(format!("{workload}-6b7f9c8d5-{:05x}", i % 4096));
    flow.src.pod_uid = Some(format!("uid-{namespace}-{workload}-{}", i % 3));
    flow.src.namespace = Some(namespace);
    flow.src.workload_name = Some(workload);
    flow.flow.dst_port = Some(8000 + (key / 5000) as i32);
    flow.flow.event_id = format!("event-{i}");
    let start = WINDOW_START_SECS * 1_000_000 + (i as i64 % 50) * 1_000_000;
    flow.flow.start_time = Timestamp::from_micros(start);
    flow.flow.end_time = Timestamp::from_micros(start + 500_000);
    flow
}

/// Settings under which nothing closes during the benchmark: a window far longer than the
/// flows' spread, no idle close (the clock never moves), future skew measured against the
/// record timestamps given below.
fn settings() -> AggregateSettings {
    AggregateSettings {
        window: Duration::from_secs(60),
        allowed_lateness: Duration::from_secs(60),
        ..AggregateSettings::default()
    }
}

fn clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(WINDOW_START_SECS as u64)
}

type BaselineKey<'a> = (
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<i32>,
    Option<i32>,
);

fn bench(c: &mut Criterion) {
    let flows: Vec<EnrichedFlow> = (0..RECORDS).map(flow).collect();
    let codec: AvroCodec<EnrichedFlow> = AvroCodec::new().expect("built-in schemas load");
    let payloads: Vec<Vec<u8>> = flows.iter().map(|f| codec.encode(f)).collect();
    let record_millis = Some((WINDOW_START_SECS + 60) * 1000);

    let mut group = c.benchmark_group("aggregate");
    group.throughput(Throughput::Elements(RECORDS as u64));
    // An iteration is 100,000 records (tens of milliseconds): 20 samples are plenty.
    group.sample_size(20);

    let mut processor = AggregateProcessor::new(settings(), "flows.edges")
        .expect("default settings are valid")
        .with_clock(clock);
    let mut out = Outputs::with_capacity(0);
    let mut offset = 0i64;
    group.bench_function("processor", |b| {
        b.iter(|| {
            for payload in &payloads {
                let input = Input {
                    topic: "flows.enriched",
                    partition: 0,
                    offset,
                    key: None,
                    payload: Some(payload),
                    headers: None,
                    timestamp_millis: record_millis,
                };
                offset += 1;
                processor
                    .process(black_box(&input), &mut out)
                    .expect("bench flows are valid");
            }
        })
    });
    assert!(
        out.take().is_empty(),
        "a window closed during the benchmark"
    );

    let mut windows = PartitionWindows::new(WindowParams::from(&settings()));
    let record_micros = record_millis.map(|ms| ms * 1000);
    let mut offset = 0i64;
    group.bench_function("windows_fold", |b| {
        b.iter_batched(
            || flows.clone(),
            |batch| {
                for flow in batch {
                    offset += 1;
                    black_box(
                        windows
                            .fold(flow, offset, record_micros, clock())
                            .expect("bench flows are valid"),
                    );
                }
            },
            BatchSize::PerIteration,
        )
    });
    assert_eq!(windows.open_windows(), 1);

    let mut baseline: HashMap<BaselineKey<'_>, [i64; 5]> = HashMap::with_capacity(LIVE_EDGES);
    group.bench_function("hashmap_baseline", |b| {
        b.iter(|| {
            for f in &flows {
                let key = (
                    f.flow.cluster_id.as_str(),
                    f.src.namespace.as_deref(),
                    f.src.workload_name.as_deref(),
                    f.dst.network_set.as_deref(),
                    f.flow.dst_port,
                    f.flow.protocol,
                );
                let value = baseline.entry(black_box(key)).or_default();
                value[0] += 1;
                value[1] += f.flow.bytes_out;
                value[2] += f.flow.bytes_in;
                value[3] += f.flow.packets_out;
                value[4] += f.flow.packets_in;
            }
        })
    });
    assert_eq!(baseline.len(), LIVE_EDGES);
    group.finish();
}

fn benches() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
}

criterion_main!(benches);
