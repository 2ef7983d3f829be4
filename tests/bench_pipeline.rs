//! The end-to-end bench, CI-sized: `scripts/bench-pipeline.sh` with this build's binaries,
//! one round of 2,000 flows. It measures nothing worth quoting (debug binaries, a run
//! dominated by start-up and the 5 s roll); it keeps the script and `flowlake relay` from
//! rotting between the runs that BENCHMARKS.md quotes: both runs must finish, the lake must
//! hold every flow exactly once (the script exits 1 otherwise), and the summary must be
//! printed.

mod support;

#[test]
fn end_to_end_bench_runs_and_its_lake_is_exact() {
    let bin_dir = support::bin_dir();
    let workdir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let mut args: Vec<std::ffi::OsString> = [
        "--flows",
        "2000",
        "--rounds",
        "1",
        "--timeout",
        "180",
        "--bin-dir",
    ]
    .map(Into::into)
    .into();
    args.push(bin_dir.into_os_string());
    args.push("--workdir".into());
    args.push(workdir.path().into());
    let (stdout, stderr) =
        support::run_script("bench-pipeline.sh", args, "the end-to-end bench failed");
    assert!(
        stderr.contains("'exact': True") && stdout.contains("Pipeline / relay chain, flows/s:"),
        "no exact lake or no summary:\n{stdout}\n--- stderr ---\n{stderr}"
    );
}
