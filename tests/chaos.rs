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

#[test]
fn chaos_oracle_counts_every_flow_exactly_once() {
    let bin_dir = support::bin_dir();
    let seeds = std::env::var("FLOWLAKE_CHAOS_SEEDS").unwrap_or_else(|_| "1".to_owned());
    let mut args: Vec<std::ffi::OsString> = ["--seeds", &seeds, "--flows", "3000"]
        .iter()
        .map(Into::into)
        .collect();
    // The full fault list in a shorter window: S3 frozen 60 s inside 75 s of feed.
    args.extend(["--fault-window", "75", "--s3-freeze", "60", "--bin-dir"].map(Into::into));
    args.push(bin_dir.into_os_string());
    let (stdout, _) = support::run_script(
        "chaos.sh",
        args,
        "the chaos oracle found a seed that is not exact",
    );
    assert!(
        stdout.contains("EXACT") && !stdout.contains("NOT EXACT"),
        "{stdout}"
    );
}
