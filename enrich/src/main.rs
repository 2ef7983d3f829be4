//! `flowlake-enrich`: attaches Kubernetes identity to both ends of every flow.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use flowlake_enrich::{EnrichProcessor, EnrichSettings, Enricher, IdentityTable, SnapshotSource};
use flowlake_runtime::StageSpec;
use flowlake_runtime::app::{self, ProcessSettings};
use flowlake_runtime::config::{
    self, CommonArgs, ConfigError, HttpSettings, KafkaSettings, LogSettings, RuntimeSettings,
    TopicArgs, TopicSettings, Topics,
};
use serde::Deserialize;

const BINARY: &str = "flowlake-enrich";

/// Reads FlowEvents (flows.events), resolves source and destination to pods, nodes,
/// Services or external networks, and writes EnrichedFlows (flows.enriched).
/// Configuration: flags and FLOWLAKE_* variables override the --config file.
#[derive(Debug, Parser)]
#[command(name = BINARY, version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    topics: TopicArgs,
    /// Identity snapshot of one cluster: CLUSTER=PATH to the output of
    /// `kubectl get pods,services,nodes,namespaces -A -o json`. Repeatable.
    #[arg(long = "snapshot", value_name = "CLUSTER=PATH")]
    snapshots: Vec<SnapshotSource>,
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
    enrich: EnrichSettings,
}

fn load(args: &Args) -> Result<(ProcessSettings, Topics, EnrichSettings), ConfigError> {
    let mut file: Config = config::load_file(args.common.config.as_deref())?;
    args.common
        .apply(&mut file.kafka, &mut file.http, &mut file.log);
    let topics = file
        .topics
        .resolve(&args.topics, "flows.events", "flows.enriched")?;
    let mut settings = file.enrich;
    settings.snapshots.extend(args.snapshots.iter().cloned());
    let process = ProcessSettings {
        kafka: file.kafka,
        http: file.http,
        log: file.log,
        runtime: file.runtime,
    };
    // Shared sections first: with nothing configured, the brokers are the first thing to set.
    process.validate()?;
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
        name: "enrich",
        input_topics: vec![topics.input],
        dlq_topic: topics.dlq,
    };
    app::run(process, spec, move || {
        flowlake_enrich::metrics::describe();
        let table = IdentityTable::load(&settings).map_err(|e| e.to_string())?;
        tracing::info!(stats = ?table.stats(), "identity loaded");
        EnrichProcessor::new(Enricher::new(Arc::new(table)), topics.output)
            .map_err(|e| e.to_string())
    })
}
