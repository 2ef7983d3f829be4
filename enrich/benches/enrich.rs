//! Enrich throughput and identity memory.
//!
//! `processor`: the stage's processing path per record — Avro decode of a `FlowEvent`, two
//! identity lookups (100k pods in the table), the `EnrichedFlow` written (the event's bytes
//! and the two endpoints), output collection. The events carry the agent hints Hubble
//! gives (pod name, namespace, workload, four labels; `reserved:world` for external
//! addresses), which the decoder has to read. `lookups_and_endpoints`: the two lookups and
//! the endpoints' Avro alone, on decoded events. `hashmap_baseline`: two lookups per record in a plain
//! `HashMap<(u32 cluster, IpAddr), u32>` on the same keys. Memory: resident-set growth while
//! the table is built from identity records (100k pods of one cluster; 100 clusters × 1k
//! pods), printed before the timings. Run:
//! `cargo bench -p flowlake-enrich --bench enrich -- --warm-up-time 2 --measurement-time 5`

use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_main};
use flowlake_enrich::{EnrichProcessor, Enricher, IdentityTable};
use flowlake_runtime::{Input, Outputs, Processor};
use flowlake_schemas::{
    Action, AvroCodec, EndpointHint, FlowEvent, IdentityKind, IdentityRecord, Ip, Labels, OwnerRef,
    Reporter, Timestamp,
};

const PODS: u32 = 100_000;
const RECORDS: usize = 10_000;
const CREATED: i64 = 1_700_000_000;

fn pod_ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
}

/// A pod as the watch would publish it: a Deployment's pod, a uuid, a few labels.
fn pod_record(cluster: &str, i: u32) -> IdentityRecord {
    let deployment = format!("app-{}", i % 500);
    let labels = Labels::from([
        ("app", deployment.as_str()),
        ("pod-template-hash", "6b7f9c8d5"),
    ]);
    IdentityRecord {
        cluster_id: cluster.to_owned(),
        kind: IdentityKind::Pod,
        uid: format!("{:08x}-1b2c-4d3e-8f40-{:012x}", i, u64::from(i) * 7919),
        namespace: Some(format!("ns-{}", i % 50)),
        name: format!("{deployment}-6b7f9c8d5-{:05x}", i & 0xfffff),
        ips: vec![Ip(pod_ip(i))],
        labels,
        owner: Some(OwnerRef {
            kind: "ReplicaSet".into(),
            name: format!("{deployment}-6b7f9c8d5"),
            uid: String::new(),
        }),
        node: Some(format!("node-{}", i % 200)),
        service_account: Some("default".into()),
        created_at: Some(Timestamp::from_secs(CREATED)),
        observed_at: Timestamp::from_secs(CREATED),
        ..IdentityRecord::default()
    }
}

/// Resident set size in bytes (Linux), 0 where unknown.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn build(clusters: u32, pods_per_cluster: u32) -> IdentityTable {
    let mut table = IdentityTable::default();
    for c in 0..clusters {
        let cluster = format!("cluster-{c}");
        for i in 0..pods_per_cluster {
            table.apply(&pod_record(&cluster, i));
        }
    }
    table
}

fn report_memory() -> IdentityTable {
    // Only the first table measures clean: the second reuses the heap the first freed. So
    // the order can be swapped (`ENRICH_BENCH_MEMORY=100k-first`) to measure each first.
    let mut shapes = [(100, 1_000), (1, PODS)];
    if std::env::var("ENRICH_BENCH_MEMORY").is_ok_and(|v| v == "100k-first") {
        shapes.reverse();
    }
    for (clusters, pods) in shapes {
        let before = rss();
        let table = build(clusters, pods);
        let grown = rss().saturating_sub(before);
        let total = u64::from(clusters * pods);
        println!(
            "identity memory: {clusters} cluster(s) x {pods} pods: RSS +{grown} bytes, {} bytes per pod ({:?})",
            grown / total,
            table.stats()
        );
        drop(table);
    }
    build(1, PODS)
}

/// What Hubble says of a pod endpoint (see ingest's Hubble mapping).
fn pod_hint(ip: &IpAddr) -> EndpointHint {
    let i = match ip {
        IpAddr::V4(v4) => u32::from(*v4) - 0x0a00_0000,
        IpAddr::V6(_) => 0,
    };
    let deployment = format!("app-{}", i % 500);
    EndpointHint {
        kind: Some("pod".into()),
        namespace: Some(format!("ns-{}", i % 50)),
        name: Some(format!("{deployment}-6b7f9c8d5-{:05x}", i & 0xfffff)),
        labels: [
            ("app".to_owned(), deployment.clone()),
            (
                "io.cilium.k8s.policy.cluster".to_owned(),
                "default".to_owned(),
            ),
            (
                "io.cilium.k8s.policy.serviceaccount".to_owned(),
                "default".to_owned(),
            ),
            (
                "io.kubernetes.pod.namespace".to_owned(),
                format!("ns-{}", i % 50),
            ),
        ]
        .into(),
        workload_kind: Some("Deployment".into()),
        workload_name: Some(deployment),
        ..EndpointHint::default()
    }
}

fn events() -> Vec<FlowEvent> {
    let mut rng = fastrand::Rng::with_seed(7);
    (0..RECORDS)
        .map(|n| {
            let src = pod_ip(rng.u32(0..PODS));
            // One flow in ten leaves the cluster.
            let dst = if n % 10 == 0 {
                IpAddr::V4(Ipv4Addr::new(52, 1, rng.u8(..), rng.u8(..)))
            } else {
                pod_ip(rng.u32(0..PODS))
            };
            let src_hint = pod_hint(&src);
            let dst_hint = if n % 10 == 0 {
                EndpointHint {
                    kind: Some("reserved".into()),
                    labels: [("reserved:world".to_owned(), String::new())].into(),
                    ..EndpointHint::default()
                }
            } else {
                pod_hint(&dst)
            };
            FlowEvent {
                event_id: format!("{:032x}", u128::from(n as u64) * 0x9e37_79b9_7f4a_7c15),
                src_hint: Some(src_hint),
                dst_hint: Some(dst_hint),
                cluster_id: "cluster-0".into(),
                source_format: "hubble".into(),
                reporter_node: Some("node-1".into()),
                reporter: Reporter::Src,
                start_time: Timestamp::from_secs(CREATED + 60),
                end_time: Timestamp::from_secs(CREATED + 61),
                src_ip: Some(Ip(src)),
                dst_ip: Some(Ip(dst)),
                src_port: Some(40_000),
                dst_port: Some(8080),
                protocol: Some(6),
                action: Action::Allow,
                bytes_out: 1_200,
                bytes_in: 5_400,
                packets_out: 10,
                packets_in: 12,
                connections_started: 1,
                ..FlowEvent::default()
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let table = report_memory();
    let events = events();
    let codec = match AvroCodec::<FlowEvent>::new() {
        Ok(codec) => codec,
        Err(e) => panic!("codec: {e}"),
    };
    let payloads: Vec<Vec<u8>> = events.iter().map(|e| codec.encode(e)).collect();

    let mut group = c.benchmark_group("enrich");
    group.throughput(Throughput::Elements(RECORDS as u64));

    let mut processor = match EnrichProcessor::new(Enricher::new(Arc::new(table)), "out") {
        Ok(p) => p,
        Err(e) => panic!("processor: {e}"),
    };
    group.bench_function("processor", |b| {
        b.iter(|| {
            // As the runner does for a batch (10k records is its default maximum).
            let mut out = Outputs::with_capacity(payloads.len());
            for (offset, payload) in payloads.iter().enumerate() {
                let input = Input::from_payload("flows.events", 0, offset as i64, payload);
                let _ = black_box(processor.process(&input, &mut out));
            }
            black_box(out.len())
        })
    });

    let decoded: Vec<FlowEvent> = payloads
        .iter()
        .filter_map(|p| codec.decode(p).ok())
        .collect();
    let mut enricher = Enricher::new(Arc::new(build(1, PODS)));
    let mut endpoints = Vec::with_capacity(1024);
    group.bench_function("lookups_and_endpoints", |b| {
        b.iter(|| {
            for event in &decoded {
                endpoints.clear();
                black_box(enricher.enrich_into(event, &mut endpoints));
            }
        })
    });

    let baseline: HashMap<(u32, IpAddr), u32> = (0..PODS).map(|i| ((0, pod_ip(i)), i)).collect();
    let keys: Vec<(IpAddr, IpAddr)> = events
        .iter()
        .filter_map(|e| Some((e.src_ip?.0, e.dst_ip?.0)))
        .collect();
    group.bench_function("hashmap_baseline", |b| {
        b.iter(|| {
            let mut hits = 0u32;
            for (src, dst) in &keys {
                hits = hits.wrapping_add(baseline.get(&(0, *src)).copied().unwrap_or(0));
                hits = hits.wrapping_add(baseline.get(&(0, *dst)).copied().unwrap_or(0));
            }
            black_box(hits)
        })
    });
    group.finish();
}

// criterion's macros generate items without docs.
#[allow(missing_docs)]
mod harness {
    criterion::criterion_group!(benches, super::bench);
}
use harness::benches;
criterion_main!(benches);
