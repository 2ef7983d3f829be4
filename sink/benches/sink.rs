//! Sink throughput for the `flows/` dataset, against a raw `ArrowWriter` writing the same
//! rows with the same properties (zstd level 3, page statistics) in the same run.
//!
//! The input: 50,000 enriched flows that vary the way real ones do (event ids, addresses,
//! ports, pod names, times; workloads and labels repeat), Avro-encoded as the sink reads
//! them. Benchmarks, per iteration of all rows into one object:
//! - `avro_to_parquet`: the sink's whole CPU path per row — Avro decode, the row appended
//!   to the object's rows (Arrow columns built every [`CHUNK_ROWS`] rows), the Parquet file
//!   encoded ([`encode`]); what is left out is the upload and the Kafka client;
//! - `arrow_build`: building the Arrow columns alone, from decoded flows, in the same
//!   chunks — the cost flowlake adds before the Parquet writer;
//! - `arrow_writer_baseline`: `ArrowWriter` writing the already-built batches — the cost
//!   of Parquet encoding itself, the floor for any sink producing these files.
//!
//! Run: `cargo bench -p flowlake-sink --bench sink -- --warm-up-time 2 --measurement-time 5`

// A benchmark whose setup fails is broken: it stops with the reason.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use arrow::record_batch::RecordBatch;
use criterion::{Criterion, Throughput, criterion_main};
use flowlake_schemas::{AvroCodec, EnrichedFlow, Ip, Timestamp, samples};
use flowlake_sink::SinkRecord;
use flowlake_sink::writer::{CHUNK_ROWS, ParquetOptions, Rows, encode};
use parquet::arrow::ArrowWriter;

const ROWS: usize = 50_000;
const START_SECS: i64 = 1_700_000_000;

fn flow(i: usize) -> EnrichedFlow {
    let mut flow = samples::enriched_flow();
    let workload = format!("app-{}", i % 200);
    flow.flow.event_id = format!(
        "{:08x}-7c1d-4e2f-9a3b-{:012x}",
        i,
        (i as u64).wrapping_mul(0x9e37_79b9)
    );
    flow.flow.src_ip = Some(Ip(IpAddr::V4(Ipv4Addr::from(
        0x0a00_0000 + (i as u32 % 5000),
    ))));
    flow.flow.dst_ip = Some(Ip(IpAddr::V4(Ipv4Addr::from(
        0x3400_0000 + (i as u32 % 700),
    ))));
    flow.flow.src_port = Some(32768 + (i % 28000) as i32);
    flow.flow.dst_port = Some([443, 80, 5432, 6379, 53][i % 5]);
    let start = (START_SECS + (i / 50) as i64) * 1_000_000 + (i as i64 % 50) * 20_000;
    flow.flow.start_time = Timestamp::from_micros(start);
    flow.flow.end_time = Timestamp::from_micros(start + 1_500_000);
    flow.flow.bytes_out = 200 + (i as i64 * 37) % 90_000;
    flow.flow.bytes_in = 100 + (i as i64 * 53) % 400_000;
    flow.src.name = Some(format!("{workload}-6b7f9c8d5-{:05x}", i % 4096));
    flow.src.pod_uid = Some(format!("{:08x}-1b2c-4d3e-8f40-{:012x}", i % 4096, i % 4096));
    flow.src.namespace = Some(format!("ns-{}", i % 20));
    flow.src.workload_name = Some(workload);
    flow
}

fn build_batches(flows: &[EnrichedFlow]) -> Vec<RecordBatch> {
    flows
        .chunks(CHUNK_ROWS)
        .map(|chunk| EnrichedFlow::to_record_batch(chunk).expect("bench rows convert"))
        .collect()
}

fn bench(c: &mut Criterion) {
    let flows: Vec<EnrichedFlow> = (0..ROWS).map(flow).collect();
    let codec: AvroCodec<EnrichedFlow> = AvroCodec::new().expect("built-in schemas load");
    let payloads: Vec<Vec<u8>> = flows.iter().map(|f| codec.encode(f)).collect();
    let options = ParquetOptions::default();

    let mut group = c.benchmark_group("sink");
    group.throughput(Throughput::Elements(ROWS as u64));
    // An iteration is 50,000 rows (tens of milliseconds): 20 samples are plenty.
    group.sample_size(20);

    let mut object_bytes = 0;
    group.bench_function("avro_to_parquet", |b| {
        b.iter(|| {
            let mut rows = Rows::default();
            for payload in &payloads {
                let record = codec.decode(payload).expect("bench rows decode");
                rows.push(record, payload.len());
            }
            let properties = options.properties().expect("default options are valid");
            let object = encode(&rows, properties, Vec::new()).expect("bench rows encode");
            object_bytes = object.len();
            black_box(object)
        })
    });

    group.bench_function("arrow_build", |b| {
        b.iter(|| black_box(build_batches(black_box(&flows))))
    });

    let batches = build_batches(&flows);
    let mut baseline_bytes = 0;
    group.bench_function("arrow_writer_baseline", |b| {
        b.iter(|| {
            let properties = options.properties().expect("default options are valid");
            let mut writer =
                ArrowWriter::try_new(Vec::new(), EnrichedFlow::arrow_schema(), Some(properties))
                    .expect("the writer opens");
            for batch in &batches {
                writer.write(batch).expect("bench batches write");
            }
            let file = writer.into_inner().expect("the writer closes");
            baseline_bytes = file.len();
            black_box(file)
        })
    });
    group.finish();
    // Same rows, same properties: the two files differ only in metadata, not in size class.
    println!(
        "object bytes: sink {object_bytes}, baseline {baseline_bytes} ({:.1} bytes per row)",
        object_bytes as f64 / ROWS as f64
    );
}

fn benches() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
}

criterion_main!(benches);
