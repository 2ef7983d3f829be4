//! Each stage through a real broker against a no-op relay, in one process and one run.
//!
//! DESIGN.md ("Performance targets") compares every stage with a no-op consume→produce
//! relay through the same broker. This benchmark starts a Tansu broker on loopback, preloads
//! two input topics with N records each — real Hubble JSON lines from `tests/fixtures/hubble`
//! and the canonical FlowEvent Avro that `IngestProcessor` makes of them, both cycled to N —
//! and then runs, round after round, `relay` and `ingest` on the Hubble topic and `relay` and
//! `enrich` (identity from `tests/fixtures/identity/hubble-snapshot.json`) on the FlowEvent
//! topic. Every run is `run_stage` as the stage binaries call it, with a fresh consumer
//! group reading from the beginning and an output topic of its own.
//!
//! What is measured: a run is timed from the first record its processor sees (so the
//! consumer-group join and the first fetch are left out) to the drain's second
//! `on_shutdown` call, which `run_stage` makes once every record produced, the N-th
//! record's outputs included, was acknowledged. CPU is this whole process (stage loop,
//! librdkafka and Tokio threads) from `/proc/self/stat`; the broker is another process
//! and its CPU, from `/proc/<pid>/stat`, is reported apart. The table holds medians over the rounds; ratios are taken within a
//! round (stage / the relay run just before it) and then the median.
//!
//! The stages' clients get `fetch.wait.max.ms=5` (see [`FETCH_WAIT_MAX`]: Tansu holds every
//! fetch for up to half the wait, which otherwise caps relay and stages alike); everything
//! else is the runtime's defaults (`RuntimeSettings::default()`, lz4 idempotent producer).
//!
//! Run: `cargo bench --bench broker`. Environment: `FLOWLAKE_BENCH_RECORDS` (N, default
//! 200,000), `FLOWLAKE_BENCH_ROUNDS` (default 3), `FLOWLAKE_BENCH_PARTITIONS` (partitions of
//! every topic, default 1), `FLOWLAKE_BENCH_KAFKA_PROPERTIES` (space-separated `KEY=VALUE`
//! librdkafka properties for the stages' clients, e.g. `debug=consumer,fetch
//! fetch.wait.max.ms=500`; librdkafka's debug lines show with
//! `RUST_LOG=warn,flowlake_runtime::kafka=debug,librdkafka=debug`).

mod measure;
mod report;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail, ensure};
use flowlake_enrich::{EnrichProcessor, EnrichSettings, Enricher, IdentityTable, SnapshotSource};
use flowlake_ingest::{IngestProcessor, IngestSettings};
use flowlake_runtime::config::{KafkaSettings, LogFormat, LogSettings, RuntimeSettings};
use flowlake_runtime::http::Readiness;
use flowlake_runtime::{Input, Outputs, Processor, RelayProcessor, StageSpec, run_stage};
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::measure::{Measured, Progress, RunResult};
use crate::report::print_report;

/// Records per input topic and per run: large enough that a run lasts several seconds.
const DEFAULT_RECORDS: usize = 200_000;
/// Rounds of every run; the table shows medians.
const DEFAULT_ROUNDS: usize = 3;
/// Partitions of every topic.
const DEFAULT_PARTITIONS: i32 = 1;
/// The cluster the Hubble flows are ingested as, and the snapshot is loaded for.
const CLUSTER_ID: &str = "bench";
/// Where dead letters would go; none are expected (only accepted lines are preloaded).
const DLQ_TOPIC: &str = "bench.dlq";
/// The consumer's `fetch.wait.max.ms` (librdkafka's default is 500). Tansu 0.6 sleeps after
/// every fetch pass, also one that found data — half of the remaining wait when 250 ms or
/// more remain, otherwise all of it — and caps a response at 5 MB. With the default that is
/// one 5 MB response per ~250 ms (≈ 20 MB/s, 17k Hubble records/s), which would make the
/// relay and every stage equally broker-bound. Kafka answers at once when data is there; a
/// short wait gives Tansu that behaviour. `FLOWLAKE_BENCH_KAFKA_PROPERTIES` overrides it.
const FETCH_WAIT_MAX: &str = "5";
/// How often a run that is still going prints where it is.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);
/// A run that processes nothing for this long (the group join included) is reported as a
/// stall, with the topics' watermarks, and the benchmark fails.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> anyhow::Result<()> {
    let options = Options::from_env()?;
    flowlake_runtime::telemetry::init_logging(&LogSettings {
        format: LogFormat::Text,
        // The stages log every join and drain at info; a benchmark prints its own lines. The
        // producer warns once per run that `fetch.wait.max.ms` is a consumer property
        // (`KafkaSettings::properties` go to both clients).
        level: "warn,librdkafka=error".to_owned(),
    });
    // The runtime the stage binaries use (`flowlake_runtime::app`): multi-threaded, one
    // worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(run(options))
}

/// What to run, from the environment.
struct Options {
    records: usize,
    rounds: usize,
    partitions: i32,
    /// librdkafka properties from `FLOWLAKE_BENCH_KAFKA_PROPERTIES`.
    kafka_overrides: BTreeMap<String, String>,
}

impl Options {
    fn from_env() -> anyhow::Result<Options> {
        Ok(Options {
            records: env_number("FLOWLAKE_BENCH_RECORDS", DEFAULT_RECORDS)?,
            rounds: env_number("FLOWLAKE_BENCH_ROUNDS", DEFAULT_ROUNDS)?,
            partitions: env_number("FLOWLAKE_BENCH_PARTITIONS", DEFAULT_PARTITIONS)?,
            kafka_overrides: env_properties("FLOWLAKE_BENCH_KAFKA_PROPERTIES")?,
        })
    }

    /// The librdkafka properties of the stages' clients: the benchmark's defaults, then the
    /// overrides.
    fn kafka_properties(&self) -> BTreeMap<String, String> {
        [("fetch.wait.max.ms".to_owned(), FETCH_WAIT_MAX.to_owned())]
            .into_iter()
            .chain(self.kafka_overrides.clone())
            .collect()
    }

    /// The command that reproduces this run.
    fn command(&self) -> String {
        let mut command = String::new();
        if self.records != DEFAULT_RECORDS {
            command += &format!("FLOWLAKE_BENCH_RECORDS={} ", self.records);
        }
        if self.rounds != DEFAULT_ROUNDS {
            command += &format!("FLOWLAKE_BENCH_ROUNDS={} ", self.rounds);
        }
        if self.partitions != DEFAULT_PARTITIONS {
            command += &format!("FLOWLAKE_BENCH_PARTITIONS={} ", self.partitions);
        }
        if !self.kafka_overrides.is_empty() {
            let pairs: Vec<String> = self
                .kafka_overrides
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect();
            command += &format!("FLOWLAKE_BENCH_KAFKA_PROPERTIES='{}' ", pairs.join(" "));
        }
        command + "cargo bench --bench broker"
    }
}

fn env_number<T>(name: &str, default: T) -> anyhow::Result<T>
where
    T: std::str::FromStr + PartialOrd + From<u8>,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let Ok(text) = std::env::var(name) else {
        return Ok(default);
    };
    let value: T = text
        .trim()
        .replace('_', "")
        .parse()
        .with_context(|| format!("{name}={text:?}"))?;
    ensure!(value > T::from(0), "{name} must be greater than 0");
    Ok(value)
}

/// Space-separated `KEY=VALUE` librdkafka properties from `name` (values such as `debug`'s
/// hold commas); empty when unset.
fn env_properties(name: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let Ok(text) = std::env::var(name) else {
        return Ok(BTreeMap::new());
    };
    text.split_whitespace()
        .map(|pair| {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("{name}: {pair:?} is not KEY=VALUE"))?;
            Ok((key.trim().to_owned(), value.trim().to_owned()))
        })
        .collect()
}

async fn run(options: Options) -> anyhow::Result<()> {
    // Stages run with the Prometheus recorder installed (metric handles are real, as in
    // production); the processors register their handles with it when built.
    let _metrics = flowlake_runtime::telemetry::init_metrics();
    flowlake_ingest::metrics::describe();
    flowlake_enrich::metrics::describe();

    let workloads = Workloads::load(options.records)?;
    eprintln!(
        "{} distinct Hubble lines (avg {} bytes) and their FlowEvents (avg {} bytes), cycled to {} records",
        workloads.hubble.len(),
        average_len(&workloads.hubble),
        average_len(&workloads.events),
        options.records
    );

    let tansu = support::Tansu::start();
    let broker_pid = tansu.pid().context("tansu has no pid")?;
    let bench = Bench {
        bootstrap: tansu.bootstrap.clone(),
        broker_pid,
        options,
    };
    bench.preload(&workloads).await?;

    let mut results: Vec<RunResult> = Vec::new();
    for round in 1..=bench.options.rounds {
        results.push(bench.run(round, RunKind::RelayHubble).await?);
        results.push(bench.run(round, RunKind::Ingest).await?);
        results.push(bench.run(round, RunKind::RelayEvents).await?);
        results.push(bench.run(round, RunKind::Enrich).await?);
    }
    print_report(&bench.options, &results, &workloads);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

/// A record as preloaded: key and value.
type Message = (Option<Vec<u8>>, Vec<u8>);

/// The distinct input records; each is cycled to N when preloaded.
struct Workloads {
    /// Hubble JSON lines that ingest accepts, as agents publish them (no key).
    hubble: Vec<Message>,
    /// The canonical FlowEvent Avro ingest makes of those lines, with ingest's key.
    events: Vec<Message>,
}

impl Workloads {
    fn load(records: usize) -> anyhow::Result<Workloads> {
        ensure!(records > 0, "no records to preload");
        let dir = support::repo_root().join("tests/fixtures/hubble");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("read {}", dir.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "jsonl"))
            .collect();
        files.sort();
        let mut processor =
            IngestProcessor::new(&IngestSettings::for_cluster(CLUSTER_ID), "events")?;
        // The Kafka timestamp the lines will carry once produced, for the future-time check.
        let now_millis = i64::try_from(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)?
                .as_millis(),
        )?;
        let (mut hubble, mut events) = (Vec::new(), Vec::new());
        for file in &files {
            let text = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
            for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let input = Input {
                    timestamp_millis: Some(now_millis),
                    ..Input::from_payload("raw", 0, 0, line)
                };
                let mut out = Outputs::default();
                // A line ingest rejects would go to the DLQ, not the output topic, and the
                // run would never see N outputs; the fixtures hold none, but skip any.
                if processor.process(&input, &mut out).is_err() {
                    continue;
                }
                let [event] = <[_; 1]>::try_from(out.take()).map_err(|outputs| {
                    anyhow::anyhow!(
                        "{}: one line gave {} outputs",
                        file.display(),
                        outputs.len()
                    )
                })?;
                hubble.push((None, line.to_vec()));
                events.push((event.key, event.payload));
            }
        }
        ensure!(!hubble.is_empty(), "no Hubble lines in {}", dir.display());
        Ok(Workloads { hubble, events })
    }
}

fn average_len(messages: &[Message]) -> usize {
    messages.iter().map(|(_, value)| value.len()).sum::<usize>() / messages.len().max(1)
}

// ---------------------------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------------------------

/// One kind of run: which processor, on which input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum RunKind {
    RelayHubble,
    Ingest,
    RelayEvents,
    Enrich,
}

impl RunKind {
    fn input_topic(self) -> &'static str {
        match self {
            RunKind::RelayHubble | RunKind::Ingest => "bench.hubble",
            RunKind::RelayEvents | RunKind::Enrich => "bench.events",
        }
    }

    /// The stage name `run_stage` gets (metric prefix, default group).
    fn stage(self) -> &'static str {
        match self {
            RunKind::RelayHubble | RunKind::RelayEvents => "relay",
            RunKind::Ingest => "ingest",
            RunKind::Enrich => "enrich",
        }
    }

    fn label(self) -> &'static str {
        match self {
            RunKind::RelayHubble => "relay-hubble",
            RunKind::Ingest => "ingest",
            RunKind::RelayEvents => "relay-events",
            RunKind::Enrich => "enrich",
        }
    }

    /// The relay run a stage run is compared with; `None` for the relays.
    fn baseline(self) -> Option<RunKind> {
        match self {
            RunKind::Ingest => Some(RunKind::RelayHubble),
            RunKind::Enrich => Some(RunKind::RelayEvents),
            RunKind::RelayHubble | RunKind::RelayEvents => None,
        }
    }
}

/// The benchmark's broker and settings.
struct Bench {
    bootstrap: String,
    broker_pid: u32,
    options: Options,
}

impl Bench {
    /// Creates the input topics and the DLQ and fills the inputs with N records each.
    async fn preload(&self, workloads: &Workloads) -> anyhow::Result<()> {
        let partitions = self.options.partitions;
        support::create_topics(
            &self.bootstrap,
            &[
                (RunKind::Ingest.input_topic(), partitions),
                (RunKind::Enrich.input_topic(), partitions),
                (DLQ_TOPIC, 1),
            ],
        )
        .await;
        for (topic, distinct) in [
            (RunKind::Ingest.input_topic(), &workloads.hubble),
            (RunKind::Enrich.input_topic(), &workloads.events),
        ] {
            let started = Instant::now();
            let records: Vec<(Option<&[u8]>, &[u8])> = distinct
                .iter()
                .cycle()
                .take(self.options.records)
                .map(|(key, value)| (key.as_deref(), value.as_slice()))
                .collect();
            support::produce(&self.bootstrap, topic, &records).await;
            eprintln!(
                "preloaded {topic}: {} records in {:.1} s",
                records.len(),
                started.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }

    /// One run of `kind`, measured.
    async fn run(&self, round: usize, kind: RunKind) -> anyhow::Result<RunResult> {
        let output_topic = format!("bench.{}.{round}", kind.label());
        support::create_topics(&self.bootstrap, &[(&output_topic, self.options.partitions)]).await;
        let result = match kind {
            RunKind::RelayHubble | RunKind::RelayEvents => {
                let relay = RelayProcessor {
                    output_topic: output_topic.clone(),
                };
                self.measure(round, kind, &output_topic, relay).await?
            }
            RunKind::Ingest => {
                let ingest =
                    IngestProcessor::new(&IngestSettings::for_cluster(CLUSTER_ID), &output_topic)?;
                self.measure(round, kind, &output_topic, ingest).await?
            }
            RunKind::Enrich => {
                self.measure(round, kind, &output_topic, enrich_processor(&output_topic)?)
                    .await?
            }
        };
        eprintln!(
            "round {round} {:<13} {:>9.0} records/s  {:>6.2} µs CPU/record  {:>6.2} µs broker CPU/record  ({:.2} s)",
            kind.label(),
            result.records_per_second(),
            result.cpu_micros_per_record(),
            result.broker_cpu_micros_per_record(),
            result.wall.as_secs_f64(),
        );
        Ok(result)
    }

    /// Runs `processor` with `run_stage` until it has processed N records and their outputs
    /// are acknowledged, then shuts the stage down.
    async fn measure<P: Processor>(
        &self,
        round: usize,
        kind: RunKind,
        output_topic: &str,
        processor: P,
    ) -> anyhow::Result<RunResult> {
        let records = u64::try_from(self.options.records)?;
        let shutdown = CancellationToken::new();
        let progress = Arc::new(Progress::default());
        let (window_sender, window) = oneshot::channel();
        let measured = Measured {
            inner: processor,
            expected: records,
            processed: 0,
            first: None,
            window: Some(window_sender),
            progress: progress.clone(),
            shutdown: shutdown.clone(),
            broker_pid: self.broker_pid,
            shutdown_calls: 0,
        };
        let spec = StageSpec {
            name: kind.stage(),
            input_topics: vec![kind.input_topic().to_owned()],
            dlq_topic: DLQ_TOPIC.to_owned(),
        };
        let kafka_settings = KafkaSettings {
            brokers: self.bootstrap.clone(),
            // A fresh group reads from the beginning (auto.offset.reset=earliest).
            group_id: Some(format!("bench-{}-{round}", kind.label())),
            properties: self.options.kafka_properties(),
        };
        let runtime_settings = RuntimeSettings::default();

        let stage = run_stage(
            spec,
            measured,
            &kafka_settings,
            &runtime_settings,
            Readiness::default(),
            shutdown.clone(),
        );
        tokio::pin!(stage);
        let started = Instant::now();
        let mut last_seen = (0, Instant::now());
        let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
        ticker.tick().await;
        let outcome = loop {
            tokio::select! {
                outcome = &mut stage => break outcome,
                _ = ticker.tick() => {
                    let processed = progress.processed.load(Ordering::Relaxed);
                    eprintln!(
                        "  round {round} {}: {processed}/{records} processed after {:.0} s",
                        kind.label(),
                        started.elapsed().as_secs_f64()
                    );
                    if processed != last_seen.0 {
                        last_seen = (processed, Instant::now());
                    } else if last_seen.1.elapsed() >= STALL_TIMEOUT && !shutdown.is_cancelled() {
                        eprintln!("  stalled: {}", self.watermarks(kind.input_topic(), output_topic));
                        shutdown.cancel();
                        bail!(
                            "round {round} {}: no progress for {STALL_TIMEOUT:?} at {processed}/{records}",
                            kind.label()
                        );
                    }
                }
            }
        };
        outcome.with_context(|| format!("round {round} {}", kind.label()))?;
        let window = window
            .await
            .context("the stage stopped before it processed every record")?
            .context("reading CPU times from /proc")?;
        let rejected = progress.rejected.load(Ordering::Relaxed);
        let outputs = progress.outputs.load(Ordering::Relaxed);
        ensure!(
            rejected == 0 && outputs == records,
            "round {round} {}: {outputs} outputs and {rejected} dead letters for {records} records",
            kind.label()
        );
        let cpu = window
            .end
            .process_cpu
            .saturating_sub(window.start.process_cpu);
        let broker_cpu = window
            .end
            .broker_cpu
            .saturating_sub(window.start.broker_cpu);
        Ok(RunResult {
            kind,
            round,
            records,
            wall: window.end.at.duration_since(window.start.at),
            cpu,
            broker_cpu,
        })
    }

    /// Low and high watermarks of every partition of `topics`, for a stall report.
    fn watermarks(&self, input_topic: &str, output_topic: &str) -> String {
        let consumer: BaseConsumer = match support::client_config(&self.bootstrap).create() {
            Ok(consumer) => consumer,
            Err(e) => return format!("no client for watermarks: {e}"),
        };
        let mut report = Vec::new();
        for topic in [input_topic, output_topic] {
            for partition in 0..self.options.partitions {
                let marks = consumer.fetch_watermarks(topic, partition, Duration::from_secs(5));
                report.push(format!("{topic}[{partition}] {marks:?}"));
            }
        }
        report.join(", ")
    }
}

/// The enrich stage's processor as `flowlake-enrich --snapshot bench=…` builds it.
fn enrich_processor(output_topic: &str) -> anyhow::Result<EnrichProcessor> {
    let settings = EnrichSettings {
        snapshots: vec![SnapshotSource {
            cluster_id: CLUSTER_ID.to_owned(),
            path: support::repo_root().join("tests/fixtures/identity/hubble-snapshot.json"),
        }],
        ..EnrichSettings::default()
    };
    let table = IdentityTable::load(&settings)?;
    let enricher = Enricher::with_settings(table, &settings)
        .map_err(|(name, e)| anyhow::anyhow!("network set {name}: {e}"))?;
    Ok(EnrichProcessor::new(enricher, output_topic)?
        .with_max_updates_per_flush(settings.max_updates_per_flush))
}
