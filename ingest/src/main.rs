//! `flowlake-ingest`: normalises raw agent flow records into canonical FlowEvents and
//! dead-letters what it cannot read.

use std::process::ExitCode;

use clap::Parser;
use flowlake_ingest::{Format, IngestProcessor, IngestSettings};
use flowlake_runtime::StageSpec;
use flowlake_runtime::app::{self, ProcessSettings};
use flowlake_runtime::config::{
    self, CommonArgs, ConfigError, HttpSettings, KafkaSettings, LogSettings, RuntimeSettings,
    TopicArgs, TopicSettings, Topics,
};
use serde::Deserialize;

const BINARY: &str = "flowlake-ingest";

/// Reads raw flow records of the agents' formats (flows.raw; see --format), writes
/// canonical FlowEvents (flows.events) and sends what it cannot read to flows.dlq with the
/// reason. Configuration: flags and FLOWLAKE_* variables override the --config file.
#[derive(Debug, Parser)]
#[command(name = BINARY, version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    topics: TopicArgs,
    /// Cluster the flows come from (required; every record carries it).
    #[arg(long, env = "FLOWLAKE_CLUSTER_ID")]
    cluster_id: Option<String>,
    // The help names the formats of the registration list, so it cannot go stale.
    #[arg(long, env = "FLOWLAKE_FORMAT", help = format_help())]
    format: Option<String>,
    /// Confluent Schema Registry URL for Confluent-framed Avro with an unconfigured schema id.
    #[arg(long, env = "FLOWLAKE_SCHEMA_REGISTRY_URL")]
    schema_registry_url: Option<String>,
}

/// `--format`'s help: every format's name, from the registration list.
fn format_help() -> String {
    format!(
        "Pin the input format ({}) instead of detecting it per message",
        Format::known_names()
    )
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
    ingest: IngestSettings,
}

fn load(args: &Args) -> Result<(ProcessSettings, Topics, IngestSettings), ConfigError> {
    let mut file: Config = config::load_file(args.common.config.as_deref())?;
    args.common
        .apply(&mut file.kafka, &mut file.http, &mut file.log);
    let topics = file
        .topics
        .resolve(&args.topics, "flows.raw", "flows.events")?;
    let mut settings = file.ingest;
    if let Some(cluster) = &args.cluster_id {
        settings.cluster_id = cluster.clone();
    }
    if let Some(format) = &args.format {
        settings.format = Some(format.clone());
    }
    if let Some(url) = &args.schema_registry_url {
        settings.schema_registry_url = Some(url.clone());
    }
    let process = ProcessSettings::validated(file.kafka, file.http, file.log, file.runtime)?;
    settings.validate()?;
    Ok((process, topics, settings))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (process, topics, settings) = match load(&args) {
        Ok(loaded) => loaded,
        Err(e) => return app::config_error(BINARY, &e),
    };
    let spec = StageSpec {
        name: "ingest",
        input_topics: vec![topics.input],
        dlq_topic: topics.dlq,
    };
    app::run(process, spec, move || {
        flowlake_ingest::metrics::describe();
        IngestProcessor::new(&settings, topics.output)
    })
}
