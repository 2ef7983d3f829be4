//! `flowlake demo`: the whole pipeline in one process on an embedded Kafka-compatible
//! broker (librdkafka's mock cluster), fed by the synthetic scenario, writing Parquet to a
//! local folder. Zero setup: the first thing a new user runs.
//!
//! The four stages run exactly as their binaries do (the same runtime loop and processors,
//! each its own consumer group); only the broker is embedded and the windows are short.
//! When the generator stops, the demo waits until every stage has caught up and the
//! aggregate holds no open window, then shuts the stages down the way SIGTERM does (the
//! sink writes its open files) and summarises what landed in the lake.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use flowlake_aggregate::{AggregateProcessor, AggregateSettings};
use flowlake_enrich::{EnrichProcessor, EnrichSettings, Enricher, IdentityTable, SnapshotSource};
use flowlake_ingest::{IngestProcessor, IngestSettings};
use flowlake_runtime::config::{KafkaSettings, RuntimeSettings};
use flowlake_runtime::http::{self, Readiness};
use flowlake_runtime::{Processor, StageSpec, run_stage, telemetry};
use flowlake_sink::{SinkProcessor, SinkSettings, SinkTopics};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::lake_summary;
use crate::observed::{Observed, StageProgress};
use crate::scenario::{self, Scenario};

const RAW: &str = "flows.raw";
const EVENTS: &str = "flows.events";
const ENRICHED: &str = "flows.enriched";
const EDGES: &str = "flows.edges";
const DLQ: &str = "flows.dlq";
/// Partitions per topic: more than one, so the demo shows partitioned processing.
const PARTITIONS: i32 = 2;
/// Lines the demo feeds that no agent would write, to show the dead-letter path.
const MALFORMED: [&str; 2] = [
    "not a flow record",
    r#"{"flow":{"time":"2026-01-01T00:00:00Z","IP":{"source":"10.0.0.999","destination":"10.0.0.1"}}}"#,
];

/// Arguments of `flowlake demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// How long to generate traffic.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Flows per second.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Where the Parquet lake is written.
    #[arg(long, default_value = "flowlake-data")]
    data_dir: PathBuf,
    /// Address for /metrics, /healthz, /readyz while the demo runs (port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:9464")]
    http_listen: std::net::SocketAddr,
    /// Aggregation window (short, so the demo closes several).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    window: Duration,
    /// Random seed of the scenario.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

struct RunningStage {
    name: &'static str,
    progress: Arc<StageProgress>,
    task: JoinHandle<Result<(), flowlake_runtime::RuntimeError>>,
}

fn spawn<P: Processor + 'static>(
    spec: StageSpec,
    processor: P,
    kafka: &KafkaSettings,
    runtime: &RuntimeSettings,
    readiness: Readiness,
    shutdown: &CancellationToken,
) -> RunningStage {
    let progress = Arc::new(StageProgress::default());
    let observed = Observed::new(processor, progress.clone());
    let (kafka, runtime, shutdown) = (kafka.clone(), runtime.clone(), shutdown.clone());
    let name = spec.name;
    let task = tokio::spawn(async move {
        run_stage(spec, observed, &kafka, &runtime, readiness, shutdown).await
    });
    RunningStage {
        name,
        progress,
        task,
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    path.canonicalize()
        .with_context(|| format!("resolving {}", path.display()))
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.rate == 0 {
        anyhow::bail!("--rate must be at least 1");
    }
    let data_dir = absolute(&args.data_dir)?;
    let snapshot_path = data_dir.join("identity-demo.json");
    std::fs::write(
        &snapshot_path,
        serde_json::to_vec_pretty(&scenario::identity_snapshot())?,
    )
    .with_context(|| format!("writing {}", snapshot_path.display()))?;

    let broker = MockCluster::new(1).context("starting the embedded broker")?;
    for topic in [RAW, EVENTS, ENRICHED, EDGES, DLQ] {
        broker
            .create_topic(topic, PARTITIONS, 1)
            .with_context(|| format!("creating topic {topic}"))?;
    }
    // The stages' checkpoints (one partition, as a stage would create it).
    broker
        .create_topic(flowlake_runtime::checkpoint::DEFAULT_CHECKPOINT_TOPIC, 1, 1)
        .context("creating the checkpoint topic")?;
    let kafka = KafkaSettings {
        brokers: broker.bootstrap_servers(),
        ..KafkaSettings::default()
    };
    let runtime = RuntimeSettings {
        tick_interval: Duration::from_millis(250),
        ..RuntimeSettings::default()
    };
    let shutdown = CancellationToken::new();

    // The recorder must exist before the processors register their metric handles.
    let metrics = telemetry::init_metrics();
    flowlake_ingest::metrics::describe();
    flowlake_enrich::metrics::describe();
    flowlake_aggregate::metrics::describe();
    flowlake_sink::metrics::describe();
    let ingest = IngestProcessor::new(&IngestSettings::for_cluster(scenario::CLUSTER_ID), EVENTS)?;
    let enrich_settings = EnrichSettings {
        snapshots: vec![SnapshotSource {
            cluster_id: scenario::CLUSTER_ID.into(),
            path: snapshot_path.clone(),
        }],
        ..EnrichSettings::default()
    };
    let enrich = EnrichProcessor::new(
        Enricher::new(Arc::new(IdentityTable::load(&enrich_settings)?)),
        ENRICHED,
    )?;
    let aggregate_settings = AggregateSettings {
        window: args.window,
        allowed_lateness: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(3),
        ..AggregateSettings::default()
    };
    aggregate_settings.validate()?;
    let aggregate = AggregateProcessor::new(aggregate_settings, EDGES)?;
    let lake_url = format!("file://{}", data_dir.display());
    let mut sink_settings = SinkSettings::new(lake_url.clone());
    sink_settings.roll_interval = Duration::from_secs(10);
    let sink = SinkProcessor::new(
        &sink_settings,
        SinkTopics {
            flows: ENRICHED.into(),
            edges: EDGES.into(),
        },
    )?;

    let names = ["ingest", "enrich", "aggregate", "sink"];
    let readiness: Vec<Readiness> = names.iter().map(|_| Readiness::default()).collect();
    let probes = names
        .iter()
        .zip(&readiness)
        .map(|(n, r)| ((*n).to_owned(), r.clone()))
        .collect();
    let http_addr = http::serve(args.http_listen, metrics, probes, shutdown.clone())
        .await
        .with_context(|| {
            format!(
                "listening on {} (choose another with --http-listen)",
                args.http_listen
            )
        })?;

    let spec = |name, input: &[&str]| StageSpec {
        name,
        input_topics: input.iter().map(|t| (*t).to_owned()).collect(),
        dlq_topic: DLQ.into(),
    };
    let stages = [
        spawn(
            spec("ingest", &[RAW]),
            ingest,
            &kafka,
            &runtime,
            readiness[0].clone(),
            &shutdown,
        ),
        spawn(
            spec("enrich", &[EVENTS]),
            enrich,
            &kafka,
            &runtime,
            readiness[1].clone(),
            &shutdown,
        ),
        spawn(
            spec("aggregate", &[ENRICHED]),
            aggregate,
            &kafka,
            &runtime,
            readiness[2].clone(),
            &shutdown,
        ),
        spawn(
            spec("sink", &[ENRICHED, EDGES]),
            sink,
            &kafka,
            &runtime,
            readiness[3].clone(),
            &shutdown,
        ),
    ];
    println!(
        "flowlake demo: embedded broker at {}, metrics at http://{http_addr}/metrics",
        broker.bootstrap_servers()
    );
    println!(
        "generating {} flows/s for {:?} (cluster {:?}, lake {})",
        args.rate,
        args.duration,
        scenario::CLUSTER_ID,
        data_dir.display()
    );

    let generated = generate(&kafka.brokers, &args, &stages).await?;
    println!("generation done: {generated} raw records; waiting for the pipeline to drain");
    let drained = wait_until_drained(&stages, generated, Duration::from_secs(60)).await;
    shutdown.cancel();
    for stage in stages {
        match stage.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => anyhow::bail!("stage {} failed: {e}", stage.name),
            Err(e) => anyhow::bail!("stage {} panicked: {e}", stage.name),
        }
    }
    if !drained {
        eprintln!(
            "warning: the pipeline did not drain within 60s; the summary covers what was written"
        );
    }
    drop(broker);
    lake_summary::print(&data_dir, generated, MALFORMED.len() as u64)
}

/// Produces the scenario at the requested rate, printing a progress line every 5 s.
async fn generate(brokers: &str, args: &DemoArgs, stages: &[RunningStage]) -> anyhow::Result<u64> {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .context("creating the demo producer")?;
    let mut scenario = Scenario::new(args.seed);
    let started = Instant::now();
    let tick = Duration::from_millis(100);
    let per_tick = f64::from(args.rate) * tick.as_secs_f64();
    let (mut owed, mut sent) = (0.0, 0u64);
    let mut last_report = Instant::now();
    let mut pending = Vec::new();
    for line in MALFORMED {
        pending.push(
            producer
                .send_result(FutureRecord::<(), _>::to(RAW).payload(line))
                .map_err(|(e, _)| e)?,
        );
        sent += 1;
    }
    while started.elapsed() < args.duration {
        owed += per_tick;
        while owed >= 1.0 {
            for line in scenario.next_lines(Utc::now()) {
                let record = FutureRecord::<(), _>::to(RAW).payload(&line);
                pending.push(producer.send_result(record).map_err(|(e, _)| e)?);
                sent += 1;
            }
            owed -= 1.0;
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            report(started, sent, stages);
            last_report = Instant::now();
        }
        tokio::time::sleep(tick).await;
    }
    for delivery in pending {
        if !matches!(delivery.await, Ok(Ok(_))) {
            anyhow::bail!("the embedded broker did not acknowledge a generated record");
        }
    }
    Ok(sent)
}

fn report(started: Instant, sent: u64, stages: &[RunningStage]) {
    let get = |i: usize, f: fn(&StageProgress) -> &std::sync::atomic::AtomicU64| {
        StageProgress::get(f(&stages[i].progress))
    };
    println!(
        "[{:>3}s] generated {sent} · ingested {} (dead-lettered {}) · enriched {} · edges {} · sink read {}",
        started.elapsed().as_secs(),
        get(0, |p| &p.inputs),
        get(0, |p| &p.rejected),
        get(1, |p| &p.outputs),
        get(2, |p| &p.outputs),
        get(3, |p| &p.inputs),
    );
}

/// True once every stage has read everything upstream produced and the aggregate and sink
/// hold nothing but what the sink writes on shutdown.
async fn wait_until_drained(stages: &[RunningStage], generated: u64, limit: Duration) -> bool {
    let started = Instant::now();
    let mut last_report = Instant::now();
    while started.elapsed() < limit {
        let get = |i: usize, f: fn(&StageProgress) -> &std::sync::atomic::AtomicU64| {
            StageProgress::get(f(&stages[i].progress))
        };
        let ingested = get(0, |p| &p.inputs);
        let events = get(0, |p| &p.outputs);
        let enriched = get(1, |p| &p.outputs);
        let edges = get(2, |p| &p.outputs);
        let caught_up = ingested == generated
            && get(1, |p| &p.inputs) == events
            && get(2, |p| &p.inputs) == enriched
            && stages[2].progress.holds_nothing()
            && get(3, |p| &p.inputs) == enriched + edges;
        if caught_up && edges > 0 {
            return true;
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            println!(
                "draining: ingested {ingested}/{generated} · enriched {enriched} · edges {edges} · sink read {}",
                get(3, |p| &p.inputs)
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}
