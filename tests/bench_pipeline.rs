//! The end-to-end bench, CI-sized: `scripts/bench-pipeline.sh` with this build's binaries,
//! one round of 2,000 flows. It measures nothing worth quoting (debug binaries, a run
//! dominated by start-up and the 5 s roll); it keeps the script and `flowlake relay` from
//! rotting between the runs that BENCHMARKS.md quotes: both runs must finish, the lake must
//! hold every flow exactly once (the script exits 1 otherwise), and the summary must be
//! printed.

mod support;

use std::process::Command;

#[test]
fn end_to_end_bench_runs_and_its_lake_is_exact() {
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_flowlake"))
        .parent()
        .unwrap_or_else(|| panic!("no directory above the flowlake binary"))
        .to_path_buf();
    let workdir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let output = Command::new("bash")
        .arg(support::repo_root().join("scripts/bench-pipeline.sh"))
        .args(["--flows", "2000", "--rounds", "1", "--timeout", "180"])
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--workdir")
        .arg(workdir.path())
        .env("FLOWLAKE_PYTHON", support::python())
        .env("FLOWLAKE_TANSU_BIN", support::tansu_bin())
        .output()
        .unwrap_or_else(|e| panic!("run scripts/bench-pipeline.sh: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the end-to-end bench failed ({}):\n{stdout}\n--- stderr ---\n{stderr}",
        output.status
    );
    assert!(
        stderr.contains("'exact': True") && stdout.contains("Pipeline / relay chain, flows/s:"),
        "no exact lake or no summary:\n{stdout}\n--- stderr ---\n{stderr}"
    );
}
