//! `flowlake policy whatif`: replays every edge of a window under proposed policies and
//! compares with what was observed.
//!
//! Each distinct edge (cluster, source, destination, port, protocol, observed action) is
//! evaluated once ([`eval`]); an edge observed allowed that the proposal denies is *newly
//! denied*, one observed denied that it allows is *newly allowed*, one the lake cannot
//! decide is *uncertain* (whatever was observed). Edges with another observed action
//! (`pass`, `unknown`) count as evaluated but are only reported when uncertain.
//!
//! Exit code: 0 when nothing would newly be denied, 3 when something would — so a CI job
//! can gate a policy change on it.

mod calico;
mod cilium;
mod context;
pub mod eval;
pub mod parse;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{Value, json};

use super::lake::{LakeArgs, LakeReader};
use super::model::{EdgeKey, Edges, Evidence, Inventory, protocol_name, rfc3339};
use super::tri::Tri;
use super::{EXIT_NEWLY_DENIED, PolicyError};
use eval::{Ctx, Verdict, evaluate};
use parse::Proposed;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// One JSON object.
    Json,
}

/// Arguments of `flowlake policy whatif`.
#[derive(Debug, clap::Args)]
pub struct WhatifArgs {
    #[command(flatten)]
    lake: LakeArgs,
    /// Proposed policy files or directories of them (repeatable; YAML, several documents
    /// per file allowed).
    #[arg(long = "policy", required = true, num_args = 1..)]
    policies: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
}

/// The findings of a replay.
#[derive(Debug, Default)]
pub struct Report {
    /// Distinct edges evaluated.
    pub edges_evaluated: usize,
    /// Observed allowed, denied under the proposal.
    pub newly_denied: Vec<Finding>,
    /// Observed denied, allowed under the proposal.
    pub newly_allowed: Vec<Finding>,
    /// The lake cannot decide.
    pub uncertain: Vec<Finding>,
}

/// One reported edge.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The edge.
    pub key: EdgeKey,
    /// Its evidence.
    pub evidence: Evidence,
    /// What decides (or why it is uncertain).
    pub by: String,
}

impl Finding {
    fn json(&self) -> Value {
        json!({
            "cluster": self.key.cluster,
            "source": self.key.src.display(),
            "source_kind": self.key.src.kind,
            "destination": self.key.dst.display(),
            "destination_kind": self.key.dst.kind,
            "port": self.key.port,
            "protocol": protocol_name(self.key.protocol),
            "observed": self.key.action,
            "flows": self.evidence.flows,
            "bytes": self.evidence.bytes,
            "first_seen": rfc3339(self.evidence.first_seen),
            "last_seen": rfc3339(self.evidence.last_seen),
            "decided_by": self.by,
        })
    }
}

impl Report {
    /// The report as the documented JSON object.
    pub fn json(&self) -> Value {
        json!({
            "edges_evaluated": self.edges_evaluated,
            "newly_denied": self.newly_denied.iter().map(Finding::json).collect::<Vec<_>>(),
            "newly_allowed": self.newly_allowed.iter().map(Finding::json).collect::<Vec<_>>(),
            "uncertain": self.uncertain.iter().map(Finding::json).collect::<Vec<_>>(),
        })
    }

    /// The report as a table.
    pub fn table(&self) -> String {
        let mut rows = vec![
            [
                "STATUS",
                "CLUSTER",
                "SOURCE",
                "DESTINATION",
                "PORT",
                "FLOWS",
                "FIRST SEEN",
                "LAST SEEN",
                "DECIDED BY",
            ]
            .map(str::to_owned),
        ];
        for (status, findings) in [
            ("newly-denied", &self.newly_denied),
            ("newly-allowed", &self.newly_allowed),
            ("uncertain", &self.uncertain),
        ] {
            for f in findings {
                let port = f
                    .key
                    .port
                    .map_or_else(|| "any".to_owned(), |p| p.to_string());
                rows.push([
                    status.to_owned(),
                    f.key.cluster.clone(),
                    f.key.src.display(),
                    f.key.dst.display(),
                    format!("{port}/{}", protocol_name(f.key.protocol)),
                    f.evidence.flows.to_string(),
                    rfc3339(f.evidence.first_seen),
                    rfc3339(f.evidence.last_seen),
                    f.by.clone(),
                ]);
            }
        }
        let widths: Vec<usize> = (0..9)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &rows {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(c, cell)| {
                    if c == 8 {
                        cell.clone()
                    } else {
                        format!("{cell:<width$}", width = widths[c])
                    }
                })
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        out.push_str(&format!(
            "{} edges evaluated: {} newly denied, {} newly allowed, {} uncertain\n",
            self.edges_evaluated,
            self.newly_denied.len(),
            self.newly_allowed.len(),
            self.uncertain.len()
        ));
        out
    }
}

/// Replays `edges` under `proposed`.
pub fn replay(edges: &Edges, inventory: &Inventory, proposed: &Proposed) -> Report {
    // Label keys of the proposed network sets: pods do not carry them.
    let absent: BTreeSet<String> = proposed
        .sets
        .iter()
        .flat_map(|s| s.labels.keys().cloned())
        .collect();
    let mut report = Report {
        edges_evaluated: edges.len(),
        ..Report::default()
    };
    for (key, evidence) in edges {
        let ctx = Ctx {
            inventory,
            key,
            addresses: inventory.edge_addresses(key),
            absent: &absent,
            proposed,
        };
        let Verdict { allowed, by } = evaluate(&ctx);
        let finding = || Finding {
            key: key.clone(),
            evidence: evidence.clone(),
            by: by.clone(),
        };
        match (allowed, key.action.as_str()) {
            (Tri::Maybe, _) => report.uncertain.push(finding()),
            (Tri::No, "allow") => report.newly_denied.push(finding()),
            (Tri::Yes, "deny") => report.newly_allowed.push(finding()),
            _ => {}
        }
    }
    report
}

/// Runs the command; exit 3 when something would newly be denied.
pub async fn run(args: &WhatifArgs) -> Result<ExitCode, PolicyError> {
    let proposed = parse::load(&args.policies)?;
    if proposed.policies() == 0 {
        return Err(PolicyError::Usage(
            "the --policy files hold no policy whatif reads".into(),
        ));
    }
    let reader = LakeReader::open(&args.lake)?;
    let (edges, _) = reader.read_edges().await?;
    let inventory = reader.read_inventory().await?;
    let report = replay(&edges, &inventory, &proposed);
    let text = match args.output {
        Output::Json => format!("{}\n", report.json()),
        Output::Table => report.table(),
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|source| PolicyError::Output {
            what: "stdout".into(),
            source,
        })?;
    Ok(if report.newly_denied.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NEWLY_DENIED)
    })
}
