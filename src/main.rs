//! `flowlake`: the command line for people — `demo` runs the whole pipeline in one process
//! with no setup; `generate` writes synthetic raw flows to a real topic; `decode` shows what
//! ingest would make of an agent's output file; `policy` recommends network policy from the
//! lake and replays proposed policy over its history; `broker` serves the embedded mock
//! Kafka cluster to other processes (crash and chaos tests); `relay` is a no-op stage for
//! benchmarks.

mod broker;
mod decode;
mod demo;
mod generate;
mod lake_summary;
mod observed;
mod policy;
mod relay;
mod scenario;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// flowlake: Kubernetes network flow logs from Kafka to a Parquet flow graph.
#[derive(Debug, Parser)]
#[command(name = "flowlake", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole pipeline in this process on an embedded broker with a synthetic
    /// cluster, write Parquet to a local folder and print what it found.
    Demo(demo::DemoArgs),
    /// Write the synthetic scenario's raw flows (Hubble JSON) to a real Kafka topic.
    Generate(generate::GenerateArgs),
    /// Show what ingest would make of each record of agent output files: canonical JSON on
    /// stdout, rejections (FILE:LINE: CLASS: reason) and a summary on stderr.
    Decode(decode::DecodeArgs),
    /// Network policy from the lake: `recommend` least-privilege policy per workload,
    /// `whatif` replays proposed policies over the lake's history.
    Policy(policy::PolicyArgs),
    /// Serve librdkafka's in-memory mock Kafka cluster to other processes on loopback, for
    /// crash and chaos tests; prints `bootstrap=…` and `control=…` (broker outages), runs
    /// until SIGTERM/SIGINT.
    Broker(broker::BrokerArgs),
    /// A no-op stage for benchmarks: every record of --input-topic to --output-topic
    /// unchanged, through the stages' runtime (the baseline the end-to-end bench compares
    /// the pipeline with).
    Relay(relay::RelayArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Offline and synchronous: no async runtime, no logging of its own.
    let command = match cli.command {
        Command::Decode(args) => return decode::run(&args),
        // A stage process: its own runtime, logging and metrics endpoint.
        Command::Relay(args) => return relay::run(&args),
        command => command,
    };
    flowlake_runtime::telemetry::init_logging(&flowlake_runtime::config::LogSettings {
        level: "warn".to_owned(),
        ..Default::default()
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flowlake: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Policy(args) = command {
        return runtime.block_on(policy::run(args));
    }
    let result = runtime.block_on(async {
        match command {
            Command::Demo(args) => demo::run(args).await,
            Command::Generate(args) => generate::run(args).await,
            Command::Broker(args) => broker::run(args).await,
            Command::Decode(args) => Err(anyhow::anyhow!(
                "decode runs without the async runtime: {args:?}"
            )),
            Command::Policy(args) => Err(anyhow::anyhow!(
                "policy returns its own exit code: {args:?}"
            )),
            Command::Relay(args) => Err(anyhow::anyhow!(
                "relay runs its own async runtime: {args:?}"
            )),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flowlake: {e:#}");
            ExitCode::FAILURE
        }
    }
}
