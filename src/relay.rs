//! `flowlake relay`: a no-op stage for benchmarks — every record of the input topic goes to
//! the output topic unchanged, key included, through the same runtime as the stages
//! (consume, origin headers, produce, acknowledgements, checkpoints, offsets). A chain of
//! relays is the baseline the end-to-end benchmark (`scripts/bench-pipeline.sh`) compares
//! the pipeline with: what the stages cost beyond moving their records.

use std::process::ExitCode;

use clap::Args;
use flowlake_runtime::app::{self, ProcessSettings};
use flowlake_runtime::config::{
    self, CommonArgs, ConfigError, HttpSettings, KafkaSettings, LogSettings, RuntimeSettings,
    TopicArgs, TopicSettings, Topics,
};
use flowlake_runtime::{RelayProcessor, StageSpec};
use serde::Deserialize;

const BINARY: &str = "flowlake relay";

/// `flowlake relay` flags: those of every stage.
#[derive(Debug, Args)]
pub struct RelayArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    topics: TopicArgs,
}

/// The config file: a stage's, without a stage section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    kafka: KafkaSettings,
    http: HttpSettings,
    log: LogSettings,
    runtime: RuntimeSettings,
    topics: TopicSettings,
}

fn load(args: &RelayArgs) -> Result<(ProcessSettings, Topics), ConfigError> {
    let mut file: Config = config::load_file(args.common.config.as_deref())?;
    args.common
        .apply(&mut file.kafka, &mut file.http, &mut file.log);
    let topics = file
        .topics
        .resolve(&args.topics, "flows.raw", "flows.relayed")?;
    let process = ProcessSettings::validated(file.kafka, file.http, file.log, file.runtime)?;
    Ok((process, topics))
}

/// Runs the relay until SIGTERM/SIGINT (its own async runtime, like a stage binary).
pub fn run(args: &RelayArgs) -> ExitCode {
    let (process, topics) = match load(args) {
        Ok(loaded) => loaded,
        Err(e) => return app::config_error(BINARY, &e),
    };
    let spec = StageSpec {
        name: "relay",
        input_topics: vec![topics.input],
        dlq_topic: topics.dlq,
    };
    app::run(process, spec, move || {
        Ok::<_, std::convert::Infallible>(RelayProcessor {
            output_topic: topics.output,
        })
    })
}
