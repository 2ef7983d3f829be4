//! Exactly-once effect across crashes and restarts, end to end: the four stage binaries
//! run against a broker that behaves like Kafka when a client dies (`flowlake broker`:
//! librdkafka's mock cluster in a process of its own — Tansu's memory engine skips records
//! on a mid-batch resume and never expires a killed member, see `tests/support_smoke.rs`).
//! While unique Hubble flows stream in, ingest, enrich and aggregate first crash at the
//! worst moment — output acknowledged downstream, checkpoint not yet written
//! (`FLOWLAKE_CRASH_BEFORE_CHECKPOINT`) — and are restarted; then every stage is killed
//! with SIGKILL at some point and restarted, and restarted again with SIGTERM (a rolling
//! update). Then the lake must hold every flow exactly once, and the edges must sum to
//! exactly the flows fed — denied ones included — with not one counted twice.

mod stages;
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use stages::{StageProcess, metric_sum};
use support::TestRecord;
use support::brokers::MockBroker;

const RAW: &str = "flows.raw";
/// Flows fed, in four parts with faults in between.
const FLOWS: usize = 2400;
const PARTS: usize = 4;

/// `FLOWS` distinct Hubble exporter lines (allowed and dropped flows), each its own flow.
fn raw_lines() -> Vec<String> {
    support::unique_hubble_lines(
        &[
            "hubble_otel_basic_10.jsonl",
            "hubble_otel_tcp_selected.jsonl",
            "cilium_docs_export_dropped.jsonl",
        ],
        FLOWS,
        "eo",
    )
}

/// The four stages, each in its own consumer group, started and restarted by name.
struct Pipeline {
    brokers: String,
    config: String,
    snapshot: PathBuf,
    lake: PathBuf,
    logs: PathBuf,
    stages: Vec<StageProcess>,
    restarts: usize,
}

impl Pipeline {
    fn args(&self, stage: &str) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--brokers".into(),
            self.brokers.clone(),
            "--group-id".into(),
            format!("eo-{stage}"),
            "--config".into(),
            self.config.clone(),
            // A killed member's partitions move on after its session expires: keep it short.
            "--kafka-property".into(),
            "session.timeout.ms=6000".into(),
            "--kafka-property".into(),
            "heartbeat.interval.ms=500".into(),
        ];
        let own: Vec<String> = match stage {
            "flowlake-ingest" => vec!["--cluster-id".into(), "gke-test".into()],
            "flowlake-enrich" => vec![
                "--snapshot".into(),
                format!("gke-test={}", self.snapshot.display()),
            ],
            "flowlake-aggregate" => vec![
                "--window".into(),
                "60s".into(),
                "--idle-timeout".into(),
                "2s".into(),
            ],
            _ => vec![
                "--lake-url".into(),
                format!("file://{}", self.lake.display()),
                "--roll-interval".into(),
                "1s".into(),
            ],
        };
        args.extend(own);
        args
    }

    fn start(&mut self, stage: &str) {
        self.start_with(stage, &[]);
    }

    fn start_with(&mut self, stage: &str, env: &[(&str, String)]) {
        self.restarts += 1;
        let dir = self.logs.join(format!("{stage}-{}", self.restarts));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let process = StageProcess::start(stage, &self.args(stage), env, &dir);
        self.stages.push(process);
    }

    /// Restarts every stage that stopped by itself (an injected crash); how many.
    fn revive(&mut self) -> usize {
        let mut crashed = Vec::new();
        for stage in &mut self.stages {
            if let Some(status) = stage.exited(Duration::ZERO) {
                assert!(
                    !status.success(),
                    "{} exited 0 by itself\n{}",
                    stage.name,
                    stage.log_tail()
                );
                crashed.push(stage.name.clone());
            }
        }
        self.stages.retain(|s| !crashed.contains(&s.name));
        for stage in &crashed {
            self.start(stage);
        }
        crashed.len()
    }

    /// Log lines of every instance so far that contain `needle`.
    fn log_lines(&self, needle: &str) -> usize {
        let mut count = 0;
        for entry in walk(&self.logs) {
            let text = std::fs::read_to_string(&entry).unwrap_or_default();
            count += text.lines().filter(|l| l.contains(needle)).count();
        }
        count
    }

    fn take(&mut self, stage: &str) -> StageProcess {
        let at = self
            .stages
            .iter()
            .position(|s| s.name == stage)
            .unwrap_or_else(|| panic!("{stage} is not running"));
        self.stages.remove(at)
    }

    fn kill9(&mut self, stage: &str) {
        let mut process = self.take(stage);
        process.kill9();
        self.start(stage);
    }

    fn restart(&mut self, stage: &str) {
        let mut process = self.take(stage);
        let status = process.terminate(Duration::from_secs(30));
        assert!(
            status.success(),
            "{stage} exited {status} on SIGTERM\n{}",
            process.log_tail()
        );
        self.start(stage);
    }

    fn read(&self, stage: &str) -> f64 {
        let process = self.stages.iter().find(|s| s.name == stage);
        process.map_or(0.0, |p| {
            metric_sum(
                &p.metrics(),
                &format!("{}_records_in_total", stage.replace('-', "_")),
            )
        })
    }
}

/// Files under `dir`, recursively.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn lake_query(lake: &Path, sql: &str) -> Value {
    let out = support::run_python(
        "read_parquet.py",
        &["--local", &lake.display().to_string(), "--sql", sql],
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("read_parquet.py output: {e}\n{out}"))
}

fn first_i64(result: &Value, column: &str) -> i64 {
    result["query"][0][column].as_i64().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_restart_every_stage_counts_every_flow_once() {
    let broker = MockBroker::start(
        1,
        &[
            ("flows.raw", 4),
            ("flows.events", 4),
            ("flows.enriched", 4),
            ("flows.edges", 4),
            ("flows.dlq", 1),
            ("flowlake.checkpoints", 1),
        ],
    );
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = work.path().join("stage.toml");
    // Small batches and frequent checkpoints (one after nearly every batch, also while
    // more input is ready): the kills land between checkpoints, with output produced
    // since the last one, so the replays have something to repeat.
    std::fs::write(
        &config,
        "[runtime]\nbatch_max_records = 40\ncheckpoint_interval = \"10ms\"\ncommit_interval = \"300ms\"\ntick_interval = \"200ms\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let lake = work.path().join("lake");
    let logs = work.path().join("logs");
    let mut pipeline = Pipeline {
        brokers: broker.bootstrap.clone(),
        config: config.display().to_string(),
        snapshot: support::repo_root().join("tests/fixtures/identity/hubble-snapshot.json"),
        lake: lake.clone(),
        logs,
        stages: Vec::new(),
        restarts: 0,
    };
    // The producing stages crash right after a batch with output is acknowledged, before
    // its checkpoint: ingest and enrich at their third such batch, aggregate at its first
    // emission (it emits only when windows close). The sink runs normally.
    let crash = |n: &str| [("FLOWLAKE_CRASH_BEFORE_CHECKPOINT", n.to_owned())];
    pipeline.start_with("flowlake-ingest", &crash("3"));
    pipeline.start_with("flowlake-enrich", &crash("3"));
    pipeline.start_with("flowlake-aggregate", &crash("1"));
    pipeline.start("flowlake-sink");
    let mut crashes = 0;

    let lines = raw_lines();
    let per_part = FLOWS / PARTS;
    // The faults between the parts: every stage is killed once, and restarted once.
    let faults: [&[(&str, bool)]; PARTS] = [
        &[("flowlake-aggregate", true), ("flowlake-sink", true)],
        &[("flowlake-enrich", true), ("flowlake-ingest", true)],
        &[("flowlake-aggregate", false), ("flowlake-sink", false)],
        &[("flowlake-enrich", false), ("flowlake-ingest", false)],
    ];
    for (part, faults) in faults.iter().enumerate() {
        let chunk = &lines[part * per_part..(part + 1) * per_part];
        let records: Vec<TestRecord<'_>> = chunk
            .iter()
            .map(|line| TestRecord {
                payload: line.as_bytes(),
                ..TestRecord::default()
            })
            .collect();
        support::produce_records(&broker.bootstrap, RAW, &records).await;
        // Strike while the part is still in flight: after the sink has read some of it.
        // (The counter is the running instance's: it restarts at zero with the process.)
        let target = (per_part / 3) as f64;
        support::eventually(Duration::from_secs(90), "the sink to read the part", || {
            crashes += pipeline.revive();
            (pipeline.read("flowlake-sink") >= target).then_some(())
        });
        if part == 0 {
            // The injected crashes first, then the kills (which would start the stages
            // again without the fault).
            support::eventually(
                Duration::from_secs(90),
                "the three injected crashes",
                || {
                    crashes += pipeline.revive();
                    (crashes >= 3).then_some(())
                },
            );
        }
        for &(stage, kill) in *faults {
            if kill {
                pipeline.kill9(stage);
            } else {
                pipeline.restart(stage);
            }
        }
    }

    // Every flow lands once; every flow is in exactly one edge row's count.
    let expected = FLOWS as i64;
    let settled = support::eventually(
        Duration::from_secs(180),
        "the lake to hold every flow and edge",
        || {
            crashes += pipeline.revive();
            if !lake.join("flows").exists() || !lake.join("edges").exists() {
                return None;
            }
            let flows = lake_query(
                &lake.join("flows"),
                "SELECT count(*) AS n, count(DISTINCT event_id) AS d, \
             count(*) FILTER (WHERE action = 'deny') AS denied FROM t",
            );
            let edges = lake_query(
                &lake.join("edges"),
                "SELECT sum(flows)::BIGINT AS n, \
             (sum(flows) FILTER (WHERE action = 'deny'))::BIGINT AS denied FROM t",
            );
            (first_i64(&flows, "d") >= expected && first_i64(&edges, "n") >= expected)
                .then_some((flows, edges))
        },
    );
    // Give a late duplicate the time to show up (a slow replay, a stale writer).
    std::thread::sleep(Duration::from_secs(3));
    let (flows, edges) = settled;
    let flows_now = lake_query(&lake.join("flows"), "SELECT count(*) AS n FROM t");
    let edges_now = lake_query(&lake.join("edges"), "SELECT sum(flows)::BIGINT AS n FROM t");
    let logs = pipeline
        .stages
        .iter()
        .map(|s| format!("== {}\n{}", s.name, s.log_tail()))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        first_i64(&flows, "d"),
        expected,
        "distinct flows in the lake\n{logs}"
    );
    assert_eq!(
        first_i64(&flows, "n"),
        expected,
        "flow rows (duplicates?)\n{logs}"
    );
    assert_eq!(
        first_i64(&flows_now, "n"),
        expected,
        "flow rows after settling\n{logs}"
    );
    assert_eq!(first_i64(&edges, "n"), expected, "Σ edges.flows\n{logs}");
    assert_eq!(
        first_i64(&edges_now, "n"),
        expected,
        "Σ edges.flows after settling\n{logs}"
    );
    // The faults did what they are for: three injected crashes, and replays that reached
    // the next stage and were dropped there.
    assert_eq!(crashes, 3, "injected crashes\n{logs}");
    let dropped = pipeline.log_lines("dropped records an upstream replay had already delivered");
    assert!(
        dropped > 0,
        "no stage saw a replay: the faults missed\n{logs}"
    );
    let denied = first_i64(&flows, "denied");
    assert!(denied > 0, "the input has dropped flows");
    assert_eq!(first_i64(&edges, "denied"), denied, "denied flows in edges");
    for stage in &mut pipeline.stages {
        let status = stage.terminate(Duration::from_secs(30));
        assert!(status.success(), "{} exited {status}", stage.name);
    }
}
