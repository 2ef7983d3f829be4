//! The chaos oracle, CI-sized: `scripts/chaos.sh` with this build's binaries, one seed, a few
//! thousand flows, every fault of the full run (kill -9 of random instances, a rolling SIGTERM
//! restart of every stage, a broker outage, S3 frozen for 60 s). The seed passes only when the
//! lake holds every fed flow exactly once, the edges add up to the flows fed and the denied
//! edges to the denied flows fed, and every malformed line is a dead letter. The broker is the
//! standalone mock cluster (`flowlake broker`), which passes tests/broker_conformance.rs.
//!
//! `FLOWLAKE_CHAOS_SEEDS=N` runs N seeds instead of one; the full run is
//! `scripts/chaos.sh --seeds 30` on release binaries (RELIABILITY.md).

mod support;

use std::process::Command;

#[test]
fn chaos_oracle_counts_every_flow_exactly_once() {
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_flowlake"))
        .parent()
        .unwrap_or_else(|| panic!("no directory above the flowlake binary"))
        .to_path_buf();
    let seeds = std::env::var("FLOWLAKE_CHAOS_SEEDS").unwrap_or_else(|_| "1".to_owned());
    let output = Command::new("bash")
        .arg(support::repo_root().join("scripts/chaos.sh"))
        .args(["--seeds", &seeds, "--flows", "3000"])
        // The full fault list in a shorter window: S3 frozen 60 s inside 75 s of feed.
        .args(["--fault-window", "75", "--s3-freeze", "60"])
        .arg("--bin-dir")
        .arg(&bin_dir)
        .env("FLOWLAKE_PYTHON", support::python())
        .output()
        .unwrap_or_else(|e| panic!("run scripts/chaos.sh: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the chaos oracle found a seed that is not exact ({}):\n{stdout}\n--- stderr ---\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("EXACT") && !stdout.contains("NOT EXACT"),
        "{stdout}"
    );
}
