//! `flowlake policy`: network policy from the lake's history.
//!
//! * `recommend` folds the allowed edges of a window into least-privilege policy per
//!   workload (Kubernetes NetworkPolicy, Calico StagedNetworkPolicy + NetworkSet, or
//!   CiliumNetworkPolicy), every rule carrying its evidence.
//! * `whatif` replays every edge of a window under proposed policies and lists what would
//!   newly be denied, newly be allowed, or cannot be decided from the lake.
//!
//! Both read the lake with the `parquet` crate's Arrow reader directly (module [`lake`]):
//! partitions pruned by path, row groups streamed with a column projection, rows folded
//! into maps bounded by distinct edges and workloads (README, "Policy from the lake").
//! Output is deterministic: everything is ordered by sorted keys.

pub mod lake;
pub mod model;
pub mod recommend;
pub mod selectors;
pub mod tri;
pub mod whatif;

use std::process::ExitCode;

/// Exit code of `whatif` when some edge would newly be denied.
pub const EXIT_NEWLY_DENIED: u8 = 3;

/// Why a policy command failed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Wrong flags or arguments (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The lake could not be opened, listed or read.
    #[error("lake: {0}")]
    Lake(String),
    /// A policy file could not be read or is outside the supported subset.
    #[error("{file}: {message}")]
    PolicyFile {
        /// The file.
        file: String,
        /// What is wrong, naming the document and field.
        message: String,
    },
    /// Writing the output failed.
    #[error("writing {what}: {source}")]
    Output {
        /// Where.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A document could not be serialised.
    #[error("serialising YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

/// `flowlake policy …`.
#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, clap::Subcommand)]
enum PolicyCommand {
    /// Write least-privilege policy per workload from the allowed edges in the lake.
    Recommend(recommend::RecommendArgs),
    /// Replay the lake's edges under proposed policies: what would newly be denied or
    /// allowed (exit 3 when something would newly be denied).
    Whatif(whatif::WhatifArgs),
}

/// Runs a policy command; exit 0 on success, 3 when whatif finds newly denied edges, 2 on
/// usage errors, 1 otherwise.
pub async fn run(args: PolicyArgs) -> ExitCode {
    let result = match args.command {
        PolicyCommand::Recommend(args) => recommend::run(&args).await.map(|()| ExitCode::SUCCESS),
        PolicyCommand::Whatif(args) => whatif::run(&args).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("flowlake policy: {e}");
            match e {
                PolicyError::Usage(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
