//! Ingest throughput per input format, against a JSON-parse baseline in the same run.
//!
//! `ingest_process`: the stage's whole per-message path, `IngestProcessor::process` —
//! size check, format detection, decode, validation, Avro encode of the `FlowEvent`, the
//! partition key and the output record. `serde_json_value` (the baseline): the same
//! messages parsed into a `serde_json::Value` and dropped. For canonical Avro the baseline
//! parses the canonical JSON of the same records (Avro has no JSON text to parse).
//!
//! The messages are every line of `tests/fixtures/**/*.jsonl` that ingest accepts, grouped
//! by the format it detects (so formats added later are measured without touching this
//! file), plus the Hubble flows re-encoded as canonical JSON and canonical Avro; each group
//! is cycled to `RECORDS` messages. Throughput is in records per second on one core.
//! Run: `cargo bench -p flowlake-ingest --bench decode -- --warm-up-time 2 --measurement-time 5`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_main};
use flowlake_ingest::{DecodeContext, Format, IngestProcessor, IngestSettings};
use flowlake_runtime::{Input, Outputs, Processor};

/// Messages per iteration of each benchmark.
const RECORDS: usize = 1_000;
/// The Kafka timestamp of every message: 2026-01-01, after every fixture's flows, so the
/// future-time check passes as it does in production.
const KAFKA_TIMESTAMP_MILLIS: i64 = 1_767_225_600_000;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn jsonl_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            jsonl_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "jsonl") {
            out.push(path);
        }
    }
}

/// A benchmark input: the messages ingest reads and the JSON text the baseline parses.
struct Workload {
    messages: Vec<Vec<u8>>,
    baseline: Vec<Vec<u8>>,
}

fn cycled(records: &[Vec<u8>]) -> Vec<Vec<u8>> {
    records.iter().cycle().take(RECORDS).cloned().collect()
}

/// Every accepted fixture line, by detected format, plus canonical JSON and Avro.
fn workloads() -> BTreeMap<&'static str, Workload> {
    let mut ctx = match DecodeContext::new(&IngestSettings::for_cluster("bench")) {
        Ok(ctx) => ctx,
        Err(e) => panic!("default settings: {e}"),
    };
    ctx.now = flowlake_schemas::Timestamp::from_millis(KAFKA_TIMESTAMP_MILLIS);
    let mut files = Vec::new();
    jsonl_files(&fixtures(), &mut files);
    let mut by_format: BTreeMap<&'static str, Vec<Vec<u8>>> = BTreeMap::new();
    let (mut canonical_json, mut canonical_avro) = (Vec::new(), Vec::new());
    for file in &files {
        let text = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let Ok((format, event)) = flowlake_ingest::decode(line, &ctx) else {
                continue;
            };
            by_format
                .entry(format.name())
                .or_default()
                .push(line.to_vec());
            if format == Format::named("hubble") {
                let json = serde_json::to_vec(&event).unwrap_or_else(|e| panic!("{e}"));
                let avro = ctx.avro_codec().encode(&event);
                canonical_json.push(json);
                canonical_avro.push(avro);
            }
        }
    }
    let mut workloads: BTreeMap<&'static str, Workload> = by_format
        .into_iter()
        .map(|(name, lines)| {
            let messages = cycled(&lines);
            let baseline = messages.clone();
            (name, Workload { messages, baseline })
        })
        .collect();
    workloads.insert(
        "canonical-json",
        Workload {
            messages: cycled(&canonical_json),
            baseline: cycled(&canonical_json),
        },
    );
    workloads.insert(
        "canonical-avro",
        Workload {
            messages: cycled(&canonical_avro),
            baseline: cycled(&canonical_json),
        },
    );
    workloads
}

fn bench(c: &mut Criterion) {
    for (format, workload) in workloads() {
        let bytes: usize = workload.messages.iter().map(Vec::len).sum();
        eprintln!(
            "{format}: {} messages, {} bytes on average",
            workload.messages.len(),
            bytes / workload.messages.len().max(1)
        );
        let mut processor =
            IngestProcessor::new(&IngestSettings::for_cluster("bench"), "flows.events")
                .unwrap_or_else(|e| panic!("{e}"));
        let mut group = c.benchmark_group(format);
        group.throughput(Throughput::Elements(workload.messages.len() as u64));
        group.bench_function("ingest_process", |b| {
            b.iter(|| {
                // A batch's outputs, reserved as the runner reserves them.
                let mut out = Outputs::with_capacity(workload.messages.len());
                for (offset, message) in workload.messages.iter().enumerate() {
                    let input = Input {
                        timestamp_millis: Some(KAFKA_TIMESTAMP_MILLIS),
                        ..Input::from_payload("flows.raw", 0, offset as i64, message)
                    };
                    if processor.process(&input, &mut out).is_err() {
                        panic!("{format}: a message accepted while loading was rejected");
                    }
                }
                black_box(out);
            });
        });
        group.bench_function("serde_json_value", |b| {
            b.iter(|| {
                for line in &workload.baseline {
                    let value: serde_json::Value = serde_json::from_slice(line).unwrap_or_default();
                    black_box(value);
                }
            });
        });
        group.finish();
    }
}

// criterion's macros generate items without docs.
#[allow(missing_docs)]
mod harness {
    criterion::criterion_group!(benches, super::bench);
}
use harness::benches;
criterion_main!(benches);
