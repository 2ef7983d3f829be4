//! `flowlake-aggregate`: folds enriched flows into flow-graph edges over event-time windows
//! and exports the denied-flow and external-egress metrics.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use flowlake_aggregate::{AggregateProcessor, AggregateSettings};
use flowlake_runtime::StageSpec;
use flowlake_runtime::app::{self, ProcessSettings};
use flowlake_runtime::config::{
    self, CommonArgs, ConfigError, HttpSettings, KafkaSettings, LogSettings, RuntimeSettings,
    TopicArgs, TopicSettings, Topics,
};
use serde::Deserialize;

const BINARY: &str = "flowlake-aggregate";

/// Folds enriched flows (flows.enriched) into flow-graph edges per event-time window
/// (flows.edges). Configuration: flags and FLOWLAKE_* variables override the --config file.
#[derive(Debug, Parser)]
#[command(name = BINARY, version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    topics: TopicArgs,
    /// Tumbling window length (must divide a day), e.g. 60s.
    #[arg(long, env = "FLOWLAKE_WINDOW", value_parser = humantime::parse_duration)]
    window: Option<Duration>,
    /// How far behind the newest event a window stays open for stragglers.
    #[arg(long, env = "FLOWLAKE_ALLOWED_LATENESS", value_parser = humantime::parse_duration)]
    allowed_lateness: Option<Duration>,
    /// Close a partition's windows after its input is quiet this long.
    #[arg(long, env = "FLOWLAKE_IDLE_TIMEOUT", value_parser = humantime::parse_duration)]
    idle_timeout: Option<Duration>,
    /// Label sets per business metric with their own series; the rest are counted as other.
    #[arg(long, env = "FLOWLAKE_METRIC_MAX_SERIES")]
    metric_max_series: Option<usize>,
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
    aggregate: AggregateSettings,
}

fn load(args: &Args) -> Result<(ProcessSettings, Topics, AggregateSettings), ConfigError> {
    let mut file: Config = config::load_file(args.common.config.as_deref())?;
    args.common
        .apply(&mut file.kafka, &mut file.http, &mut file.log);
    let topics = file
        .topics
        .resolve(&args.topics, "flows.enriched", "flows.edges")?;
    let mut settings = file.aggregate;
    settings.window = args.window.unwrap_or(settings.window);
    settings.allowed_lateness = args.allowed_lateness.unwrap_or(settings.allowed_lateness);
    settings.idle_timeout = args.idle_timeout.unwrap_or(settings.idle_timeout);
    settings.metric_max_series = args.metric_max_series.unwrap_or(settings.metric_max_series);
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
        name: "aggregate",
        input_topics: vec![topics.input],
        dlq_topic: topics.dlq,
    };
    app::run(process, spec, move || {
        flowlake_aggregate::metrics::describe();
        AggregateProcessor::new(settings, &topics.output)
    })
}
