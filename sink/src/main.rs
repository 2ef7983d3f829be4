//! `flowlake-sink`: writes enriched flows and flow-graph edges to the Parquet lake.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use flowlake_runtime::StageSpec;
use flowlake_runtime::app::{self, ProcessSettings};
use flowlake_runtime::config::{
    self, CommonArgs, ConfigError, DEFAULT_DLQ_TOPIC, HttpSettings, KafkaSettings, LogSettings,
    RuntimeSettings, validate_topic,
};
use flowlake_sink::{SinkProcessor, SinkSettings, SinkTopics};
use serde::Deserialize;

const BINARY: &str = "flowlake-sink";

/// Reads EnrichedFlows (flows.enriched) and FlowEdges (flows.edges) and writes them as zstd
/// Parquet to the `flows/` and `edges/` datasets of an object-store lake, Hive-partitioned by
/// cluster, date and hour. Offsets are committed only after the objects are written.
/// Configuration: flags and FLOWLAKE_* variables override the --config file.
#[derive(Debug, Parser)]
#[command(name = BINARY, version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Topic of enriched flows (default flows.enriched).
    #[arg(long, env = "FLOWLAKE_FLOWS_TOPIC")]
    flows_topic: Option<String>,
    /// Topic of flow-graph edges (default flows.edges).
    #[arg(long, env = "FLOWLAKE_EDGES_TOPIC")]
    edges_topic: Option<String>,
    /// Dead-letter topic (default flows.dlq).
    #[arg(long, env = "FLOWLAKE_DLQ_TOPIC")]
    dlq_topic: Option<String>,
    /// The lake: file:///abs/dir, s3://bucket/prefix, gs://bucket/prefix or az://container/prefix.
    #[arg(long, env = "FLOWLAKE_LAKE_URL")]
    lake_url: Option<String>,
    /// S3-compatible endpoint (MinIO, Ceph, moto), e.g. http://minio:9000.
    #[arg(long, env = "FLOWLAKE_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// Write an object at the latest this long after its first record.
    #[arg(long, env = "FLOWLAKE_ROLL_INTERVAL", value_parser = humantime::parse_duration)]
    roll_interval: Option<Duration>,
    /// Write an object when it reaches this many rows.
    #[arg(long, env = "FLOWLAKE_MAX_ROWS_PER_FILE")]
    max_rows_per_file: Option<usize>,
}

/// `[topics]` of the sink.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TopicSettings {
    /// Enriched flows.
    flows: Option<String>,
    /// Flow-graph edges.
    edges: Option<String>,
    /// Dead letters.
    dlq: Option<String>,
}

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    kafka: KafkaSettings,
    http: HttpSettings,
    log: LogSettings,
    runtime: RuntimeSettings,
    topics: TopicSettings,
    sink: Option<SinkSettings>,
}

fn load(args: &Args) -> Result<(ProcessSettings, SinkTopics, String, SinkSettings), ConfigError> {
    let mut file: Config = config::load_file(args.common.config.as_deref())?;
    args.common
        .apply(&mut file.kafka, &mut file.http, &mut file.log);
    let defaults = SinkTopics::default();
    let topics = SinkTopics {
        flows: args
            .flows_topic
            .clone()
            .or(file.topics.flows)
            .unwrap_or(defaults.flows),
        edges: args
            .edges_topic
            .clone()
            .or(file.topics.edges)
            .unwrap_or(defaults.edges),
    };
    let dlq = args
        .dlq_topic
        .clone()
        .or(file.topics.dlq)
        .unwrap_or_else(|| DEFAULT_DLQ_TOPIC.to_owned());
    validate_topic("topics.flows", &topics.flows)?;
    validate_topic("topics.edges", &topics.edges)?;
    validate_topic("topics.dlq", &dlq)?;
    let mut settings = match (file.sink, &args.lake_url) {
        (Some(mut s), Some(url)) => {
            s.lake_url = url.clone();
            s
        }
        (Some(s), None) => s,
        (None, Some(url)) => SinkSettings::new(url.clone()),
        (None, None) => {
            return Err(ConfigError::invalid(
                "sink.lake_url",
                "must be set: --lake-url, FLOWLAKE_LAKE_URL or sink.lake_url (e.g. s3://bucket/flowlake or file:///var/lib/flowlake)",
            ));
        }
    };
    if let Some(endpoint) = &args.s3_endpoint {
        settings.s3_endpoint = Some(endpoint.clone());
    }
    settings.roll_interval = args.roll_interval.unwrap_or(settings.roll_interval);
    settings.max_rows_per_file = args.max_rows_per_file.unwrap_or(settings.max_rows_per_file);
    let process = ProcessSettings::validated(file.kafka, file.http, file.log, file.runtime)?;
    settings.validate()?;
    Ok((process, topics, dlq, settings))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (process, topics, dlq, settings) = match load(&args) {
        Ok(loaded) => loaded,
        Err(e) => return app::config_error(BINARY, &e),
    };
    let spec = StageSpec {
        name: "sink",
        input_topics: vec![topics.flows.clone(), topics.edges.clone()],
        dlq_topic: dlq,
    };
    app::run(process, spec, move || {
        flowlake_sink::metrics::describe();
        SinkProcessor::new(&settings, topics)
    })
}
