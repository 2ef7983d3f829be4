//! End to end: the four stage binaries as separate processes on a real Kafka-API broker
//! (Tansu) and a real S3 server (moto), fed the real Cilium Hubble samples plus malformed
//! lines; the lake is read back by DuckDB and pyarrow, the metrics checked by promtool.

mod stages;
mod support;

use std::path::PathBuf;
use std::time::Duration;

use rdkafka::Message;
use serde_json::Value;
use stages::{StageProcess, metric_sum};
use support::{Moto, Tansu, TestRecord};

/// Real Hubble samples (see tests/fixtures/README.md): every line is a flow ingest accepts.
const HUBBLE_FILES: [&str; 9] = [
    "hubble_otel_basic_10.jsonl",
    "hubble_otel_tcp_selected.jsonl",
    "hubble_otel_udp_selected.jsonl",
    "hubble_otel_dns_selected.jsonl",
    "hubble_otel_icmpv4_18.jsonl",
    "hubble_otel_http_5.jsonl",
    "cilium_docs_export_dropped.jsonl",
    "hubble_cli_printer_jsonpb_expected.jsonl",
    "hubble_cli_printer_json_legacy_expected.jsonl",
];

/// Lines ingest must dead-letter, with the error class it must give.
const MALFORMED: [(&str, &str); 4] = [
    ("this is not json", "not_json"),
    (r#"{"hello":"world"}"#, "unknown_format"),
    (
        r#"{"flow":{"time":"2021-06-16T19:06:13Z","verdict":"FORWARDED","IP":{"source":"10.0.0.300","destination":"10.0.0.1","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":1,"destination_port":80}}},"node_name":"n1","time":"2021-06-16T19:06:13Z"}"#,
        "invalid_ip",
    ),
    (
        "Jun 16 19:06:13.136: default/tiefighter:37662 (ID:12345) -> default/deathstar-6fb5694d48-5hmds:80 (ID:67890) http-request FORWARDED (HTTP/1.1 POST http://deathstar.default.svc.cluster.local/v1/request-landing)",
        "not_json",
    ),
];

fn fixture(path: &str) -> PathBuf {
    support::repo_root().join("tests/fixtures").join(path)
}

fn hubble_lines() -> Vec<String> {
    let mut lines = Vec::new();
    for file in HUBBLE_FILES {
        let text = std::fs::read_to_string(fixture(&format!("hubble/{file}")))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        lines.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned),
        );
    }
    lines
}

fn lake_query(moto: &Moto, prefix: &str, sql: &str) -> Value {
    let out = support::run_python(
        "read_parquet.py",
        &[
            "--s3-endpoint",
            &moto.endpoint,
            "--bucket",
            "lake",
            "--prefix",
            prefix,
            "--sql",
            sql,
        ],
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("read_parquet.py output: {e}\n{out}"))
}

fn first_value(result: &Value) -> i64 {
    let row = &result["query"][0];
    row.as_object()
        .and_then(|o| o.values().next())
        .and_then(Value::as_i64)
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubble_samples_flow_through_every_stage_into_s3() {
    let tansu = Tansu::start();
    let moto = Moto::start();
    moto.create_bucket("lake");
    let brokers = tansu.bootstrap.clone();
    support::create_topics(
        &brokers,
        &[
            ("flows.raw", 2),
            ("flows.events", 2),
            ("flows.enriched", 2),
            ("flows.edges", 1),
            ("flows.dlq", 1),
        ],
    )
    .await;

    let good = hubble_lines();
    let denied = good
        .iter()
        .filter(|l| l.contains(r#""verdict":"DROPPED""#))
        .count() as i64;
    assert!(denied >= 2, "the samples hold denied flows");
    let mut records: Vec<TestRecord<'_>> = good
        .iter()
        .map(|l| TestRecord {
            payload: l.as_bytes(),
            ..Default::default()
        })
        .collect();
    let malformed_headers: [(&str, &[u8]); 1] = [("agent", b"hubble-exporter")];
    records.extend(MALFORMED.iter().map(|(line, _)| TestRecord {
        key: Some(b"node-x".as_slice()),
        payload: line.as_bytes(),
        headers: &malformed_headers,
        ..Default::default()
    }));
    let acks = support::produce_records(&brokers, "flows.raw", &records).await;

    let logs = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let common = |group: &str| {
        vec![
            "--brokers".to_owned(),
            brokers.clone(),
            "--group-id".to_owned(),
            group.to_owned(),
        ]
    };
    let snapshot = fixture("identity/hubble-snapshot.json");
    let mut ingest = StageProcess::start(
        "flowlake-ingest",
        &[
            common("e2e-ingest"),
            vec!["--cluster-id".into(), "gke-test".into()],
        ]
        .concat(),
        &[],
        logs.path(),
    );
    let mut enrich = StageProcess::start(
        "flowlake-enrich",
        &[
            common("e2e-enrich"),
            vec![
                "--snapshot".into(),
                format!("gke-test={}", snapshot.display()),
            ],
        ]
        .concat(),
        &[],
        logs.path(),
    );
    let mut aggregate = StageProcess::start(
        "flowlake-aggregate",
        &[
            common("e2e-aggregate"),
            vec![
                "--window".into(),
                "60s".into(),
                "--idle-timeout".into(),
                "2s".into(),
            ],
        ]
        .concat(),
        &[],
        logs.path(),
    );
    let mut sink = StageProcess::start(
        "flowlake-sink",
        &[
            common("e2e-sink"),
            vec![
                "--lake-url".into(),
                "s3://lake/".into(),
                "--s3-endpoint".into(),
                moto.endpoint.clone(),
                "--roll-interval".into(),
                "1s".into(),
            ],
        ]
        .concat(),
        &[
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
        ],
        logs.path(),
    );

    // Every good line lands in the lake once the sink rolls its files; the edges once the
    // aggregate's windows close (input idle for 2 s).
    let expected = good.len() as f64;
    support::eventually(
        Duration::from_secs(120),
        "flows and edges in the lake",
        || {
            let written = metric_sum(&sink.metrics(), "flowlake_sink_rows_written_total");
            let edges_flows = metric_sum(
                &aggregate.metrics(),
                "flowlake_aggregate_edges_emitted_total",
            );
            (written >= expected && edges_flows > 0.0).then_some(())
        },
    );
    let lake_flows =
        support::eventually(Duration::from_secs(60), "edges covering every flow", || {
            let edges = lake_query(
                &moto,
                "edges/",
                "SELECT CAST(coalesce(sum(flows), 0) AS BIGINT) AS n FROM t",
            );
            (first_value(&edges) >= good.len() as i64).then_some(edges)
        });
    assert_eq!(
        first_value(&lake_flows),
        good.len() as i64,
        "every flow folded into exactly one edge"
    );

    // flows/: exactly one row per good line, read by DuckDB.
    let flows = lake_query(
        &moto,
        "flows/",
        "SELECT count(*) AS n, count(*) FILTER (WHERE action = 'deny') AS denied, \
         count(*) FILTER (WHERE src_status = 'hit' OR dst_status = 'hit') AS resolved, \
         count(DISTINCT cluster_id) AS clusters FROM t",
    );
    let row = &flows["query"][0];
    assert_eq!(row["n"].as_i64(), Some(good.len() as i64), "{flows}");
    assert_eq!(row["denied"].as_i64(), Some(denied), "{flows}");
    assert!(
        row["resolved"].as_i64().unwrap_or(0) > 0,
        "identity from the snapshot was attached: {flows}"
    );
    assert_eq!(flows["files"].as_i64().map(|n| n > 0), Some(true));
    let keys: Vec<&str> = flows["keys"]
        .as_array()
        .map(|k| k.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        keys.iter().all(|k| k.starts_with("flows/cluster_id=")
            && k.contains("/date=")
            && k.contains("/hour=")
            && k.ends_with(".parquet")),
        "Hive layout: {keys:?}"
    );
    let compression = lake_query(&moto, "flows/", "SELECT 1 AS one");
    assert!(
        compression.to_string().contains("ZSTD"),
        "zstd: {compression}"
    );

    // edges/: denied flows add up to the denied lines fed.
    let edges = lake_query(
        &moto,
        "edges/",
        "SELECT CAST(coalesce(sum(flows) FILTER (WHERE action = 'deny'), 0) AS BIGINT) AS denied FROM t",
    );
    assert_eq!(first_value(&edges), denied, "{edges}");

    // flows.dlq: each malformed line, byte for byte, with the reason and where it came from.
    let dead = support::consume_all(
        &brokers,
        "flows.dlq",
        MALFORMED.len(),
        Duration::from_secs(30),
    );
    assert_eq!(
        dead.len(),
        MALFORMED.len(),
        "dead letters: {:?}",
        dead.iter()
            .map(|m| m.payload().map(String::from_utf8_lossy))
            .collect::<Vec<_>>()
    );
    for (i, (line, class)) in MALFORMED.iter().enumerate() {
        let (partition, offset) = acks[good.len() + i];
        let letter = dead
            .iter()
            .find(|m| m.payload() == Some(line.as_bytes()))
            .unwrap_or_else(|| panic!("{line} not dead-lettered"));
        assert_eq!(letter.key(), Some(b"node-x".as_slice()));
        assert_eq!(
            support::header_str(letter, "agent"),
            Some("hubble-exporter"),
            "original headers kept"
        );
        assert_eq!(
            support::header_str(letter, "flowlake.error.class"),
            Some(*class),
            "{line}"
        );
        assert!(
            support::header_str(letter, "flowlake.error.message").is_some_and(|m| !m.is_empty())
        );
        assert_eq!(
            support::header_str(letter, "flowlake.source.topic"),
            Some("flows.raw")
        );
        assert_eq!(
            support::header_str(letter, "flowlake.source.partition"),
            Some(partition.to_string().as_str())
        );
        assert_eq!(
            support::header_str(letter, "flowlake.source.offset"),
            Some(offset.to_string().as_str())
        );
        assert_eq!(
            support::header_str(letter, "flowlake.stage"),
            Some("ingest")
        );
    }

    // flows.events carries the origin coordinates of every record.
    let events = support::consume_all(
        &brokers,
        "flows.events",
        good.len(),
        Duration::from_secs(30),
    );
    assert_eq!(events.len(), good.len());
    assert!(
        events.iter().all(
            |m| support::header_str(m, "flowlake.origin.topic") == Some("flows.raw")
                && support::header_str(m, "flowlake.origin.offset").is_some()
        )
    );

    // Aggregate's metrics are valid Prometheus text and count every denied flow.
    let metrics = aggregate.metrics();
    support::promtool_check_metrics(&metrics);
    assert_eq!(
        metric_sum(&metrics, "flowlake_denied_flows_total"),
        denied as f64,
        "{metrics}"
    );
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("flowlake_denied_flows_total") && l.contains("10.")),
        "no IPs in labels"
    );
    // Every flowlake metric a stage exports is documented in README.md's metrics tables
    // (adding a metric without its row fails here).
    let readme = std::fs::read_to_string(support::repo_root().join("README.md"))
        .unwrap_or_else(|e| panic!("README.md: {e}"));
    for stage in [&ingest, &enrich, &aggregate, &sink] {
        let exported: std::collections::BTreeSet<String> = stage
            .metrics()
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|rest| rest.split_whitespace().next())
            .filter(|name| name.starts_with("flowlake_"))
            .map(str::to_owned)
            .collect();
        // The README names per-stage runtime metrics `flowlake_<stage>_…` and abbreviates
        // a row's later names `…_rest`.
        let documented = |name: &str| {
            let rest = name
                .strip_prefix("flowlake_")
                .and_then(|n| n.strip_prefix(stage.name.trim_start_matches("flowlake-")))
                .and_then(|n| n.strip_prefix('_'));
            let mut forms = vec![name.to_owned()];
            if let Some(rest) = rest {
                forms.push(format!("flowlake_<stage>_{rest}"));
                forms.push(format!("…_{rest}"));
            }
            forms.iter().any(|form| {
                readme.match_indices(form.as_str()).any(|(at, _)| {
                    !readme[at + form.len()..]
                        .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                })
            })
        };
        let undocumented: Vec<&String> = exported.iter().filter(|name| !documented(name)).collect();
        assert!(
            undocumented.is_empty(),
            "{}: metrics missing from README.md's metrics tables: {undocumented:?}",
            stage.name
        );
    }
    for stage in [&ingest, &enrich, &sink] {
        support::promtool_check_metrics(&stage.metrics());
        assert_eq!(
            stage.get("/readyz").map(|(s, _)| s),
            Some(200),
            "{} ready",
            stage.name
        );
    }

    // SIGTERM: each stage drains, commits and exits 0.
    for stage in [&mut ingest, &mut enrich, &mut aggregate, &mut sink] {
        let status = stage.terminate(Duration::from_secs(30));
        assert!(
            status.success(),
            "{} exited with {status}:\n{}",
            stage.name,
            stage.log_tail()
        );
    }
    drop(tansu);
}
