//! `flowlake-identity-publisher`: watches one cluster's Kubernetes API and publishes its
//! identity to the compacted `k8s.identity` topic, for a central enrich.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use flowlake_identity::metrics;
use flowlake_identity::publisher::{self, PublisherSettings};
use flowlake_runtime::app;
use flowlake_runtime::config::{
    self, CommonArgs, ConfigError, HttpSettings, KafkaSettings, LogSettings,
};
use flowlake_runtime::http::Readiness;
use serde::Deserialize;

const BINARY: &str = "flowlake-identity-publisher";

/// Watches Pods, Services, Nodes, Namespaces, ReplicaSets and Jobs of one cluster and
/// publishes IdentityRecords (key cluster/kind/uid) to the compacted identity topic.
/// Configuration: flags and FLOWLAKE_* variables override the --config file.
#[derive(Debug, Parser)]
#[command(name = BINARY, version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// The cluster_id this cluster's flows carry (as ingest sets it).
    #[arg(long, env = "FLOWLAKE_CLUSTER_ID")]
    cluster_id: Option<String>,
    /// kubeconfig file (default: in-cluster service account, KUBECONFIG, ~/.kube/config).
    #[arg(long, env = "KUBECONFIG_FILE", value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Compacted topic to publish to (default k8s.identity).
    #[arg(long, env = "FLOWLAKE_IDENTITY_TOPIC")]
    identity_topic: Option<String>,
    /// How long after a deletion the object's key is tombstoned (default 1h; keep it at
    /// least as long as enrich remembers deleted pods).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    tombstone_after: Option<Duration>,
}

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    kafka: KafkaSettings,
    http: HttpSettings,
    log: LogSettings,
    publisher: PublisherSettings,
}

fn load(args: &Args) -> Result<Config, ConfigError> {
    let mut file: Config = config::load_file(args.common.config.as_deref())?;
    args.common
        .apply(&mut file.kafka, &mut file.http, &mut file.log);
    let publisher = &mut file.publisher;
    if let Some(cluster) = &args.cluster_id {
        publisher.cluster_id = cluster.clone();
    }
    if let Some(path) = &args.kubeconfig {
        publisher.kubeconfig = Some(path.clone());
    }
    if let Some(topic) = &args.identity_topic {
        publisher.identity_topic = topic.clone();
    }
    if let Some(after) = args.tombstone_after {
        publisher.tombstone_after = after;
    }
    file.kafka.validate()?;
    file.publisher.validate()?;
    Ok(file)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match load(&args) {
        Ok(config) => config,
        Err(e) => return app::config_error(BINARY, &e),
    };
    let ready = Readiness::default();
    let parts = vec![("identity-publisher".to_owned(), ready.clone())];
    flowlake_runtime::app::run_parts(
        &config.log,
        config.http.listen,
        parts,
        move |shutdown| async move {
            metrics::describe();
            publisher::run(&config.publisher, &config.kafka, ready, shutdown)
                .await
                .map_err(|e| e.to_string())
        },
    )
}
