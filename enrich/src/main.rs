//! `flowlake-enrich`: attaches Kubernetes identity to both ends of every flow.

use std::process::ExitCode;

use clap::Parser;
use flowlake_enrich::{EnrichProcessor, EnrichSettings, Enricher, IdentityTable, SnapshotSource};
use flowlake_identity::sources::{IdentitySourceArgs, IdentitySourceSettings, LiveSources};
use flowlake_identity::{IdentityReadiness, IdentityReceiver, identity_channel};
use flowlake_runtime::app::{self, ProcessSettings};
use flowlake_runtime::config::{
    self, CommonArgs, ConfigError, HttpSettings, KafkaSettings, LogSettings, RuntimeSettings,
    TopicArgs, TopicSettings, Topics,
};
use flowlake_runtime::http::Readiness;
use flowlake_runtime::{StageSpec, run_stage};
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
    #[command(flatten)]
    identity: IdentitySourceArgs,
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
    identity: IdentitySourceSettings,
}

struct Loaded {
    process: ProcessSettings,
    topics: Topics,
    enrich: EnrichSettings,
    identity: IdentitySourceSettings,
}

fn load(args: &Args) -> Result<Loaded, ConfigError> {
    let mut file: Config = config::load_file(args.common.config.as_deref())?;
    args.common
        .apply(&mut file.kafka, &mut file.http, &mut file.log);
    let topics = file
        .topics
        .resolve(&args.topics, "flows.events", "flows.enriched")?;
    let mut enrich = file.enrich;
    enrich.snapshots.extend(args.snapshots.iter().cloned());
    let mut identity = file.identity;
    args.identity.apply(&mut identity);
    let process = ProcessSettings::validated(file.kafka, file.http, file.log, file.runtime)?;
    identity.validate()?;
    if identity.is_configured() {
        enrich.validate_fields()?;
    } else {
        enrich.validate()?;
    }
    Ok(Loaded {
        process,
        topics,
        enrich,
        identity,
    })
}

/// The processor over the snapshot table, applying `updates` when live sources feed it.
fn build(
    settings: &EnrichSettings,
    output: String,
    updates: Option<(IdentityReceiver, IdentityReadiness)>,
) -> Result<EnrichProcessor, String> {
    flowlake_enrich::metrics::describe();
    let table = IdentityTable::load(settings).map_err(|e| e.to_string())?;
    tracing::info!(stats = ?table.stats(), "identity loaded");
    let enricher = Enricher::with_settings(table, settings)
        .map_err(|(name, e)| format!("network set {name}: {e}"))?;
    let processor = EnrichProcessor::new(enricher, output)
        .map_err(|e| e.to_string())?
        .with_max_updates_per_flush(settings.max_updates_per_flush);
    Ok(match updates {
        Some((receiver, ready)) => processor
            .with_updates(receiver)
            .with_source_readiness(ready),
        None => processor,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Loaded {
        process,
        topics,
        enrich,
        identity,
    } = match load(&args) {
        Ok(loaded) => loaded,
        Err(e) => return app::config_error(BINARY, &e),
    };
    let spec = StageSpec {
        name: "enrich",
        input_topics: vec![topics.input],
        dlq_topic: topics.dlq,
    };
    if !identity.is_configured() {
        return app::run(process, spec, move || build(&enrich, topics.output, None));
    }
    // Live identity: /readyz also waits for the sources to be read and applied.
    let stage_ready = Readiness::default();
    let identity_ready = Readiness::default();
    let parts = vec![
        (spec.name.to_owned(), stage_ready.clone()),
        ("identity".to_owned(), identity_ready.clone()),
    ];
    let ProcessSettings {
        kafka,
        http,
        log,
        runtime,
    } = process;
    flowlake_runtime::app::run_parts(&log, http.listen, parts, move |shutdown| async move {
        flowlake_identity::metrics::describe();
        let (sender, receiver) = identity_channel(identity.channel_capacity);
        let mut live = LiveSources::start(&identity, &kafka, sender.clone(), &shutdown)
            .await
            .map_err(|e| e.to_string())?;
        let bootstrapped = IdentityReadiness::new();
        live.report_readiness(identity_ready, vec![bootstrapped.clone()], move || {
            sender.max_capacity() - sender.capacity()
        });
        let processor = build(&enrich, topics.output, Some((receiver, bootstrapped)))?;
        tokio::select! {
            stage = run_stage(spec, processor, &kafka, &runtime, stage_ready, shutdown.clone()) => {
                stage.map_err(|e| e.to_string())
            }
            failed = live.failed() => Err(failed.to_string()),
        }
    })
}
