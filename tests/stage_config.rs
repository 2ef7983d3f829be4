//! Every stage binary documents itself and refuses a bad configuration at start-up, before
//! touching Kafka, with exit code 2 and a message that names the field.

mod stages;
mod support;

use std::process::{Command, Output};

fn run(binary: &str, args: &[&str]) -> Output {
    Command::new(stages::stage_bin(binary))
        .args(args)
        .env_remove("FLOWLAKE_BROKERS")
        .output()
        .unwrap_or_else(|e| panic!("{binary}: {e}"))
}

fn assert_config_error(binary: &str, args: &[&str], field: &str) {
    let out = run(binary, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{binary} {args:?}: {stderr}");
    assert!(
        stderr.contains(&format!("`{field}`")) || stderr.contains(field),
        "{binary} {args:?} should name {field}: {stderr}"
    );
}

#[test]
fn every_binary_has_help() {
    for (binary, mentions) in [
        ("flowlake-ingest", "--cluster-id"),
        ("flowlake-enrich", "--snapshot"),
        ("flowlake-aggregate", "--window"),
        ("flowlake-sink", "--lake-url"),
        ("flowlake", "demo"),
    ] {
        let out = run(binary, &["--help"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{binary} --help");
        assert!(
            stdout.contains(mentions) && stdout.contains("Usage"),
            "{binary} --help:\n{stdout}"
        );
    }
    let out = run("flowlake", &["demo", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--duration"));
}

#[test]
fn bad_values_stop_the_stage_naming_the_field() {
    assert_config_error("flowlake-ingest", &[], "kafka.brokers");
    assert_config_error(
        "flowlake-ingest",
        &["--brokers", "localhost"],
        "kafka.brokers",
    );
    assert_config_error(
        "flowlake-ingest",
        &["--brokers", "a:1"],
        "ingest.cluster_id",
    );
    assert_config_error(
        "flowlake-ingest",
        &["--brokers", "a:1", "--cluster-id", "c", "--format", "xml"],
        "ingest.format",
    );
    assert_config_error(
        "flowlake-ingest",
        &[
            "--brokers",
            "a:1",
            "--cluster-id",
            "c",
            "--output-topic",
            "flows.raw",
        ],
        "topics.output",
    );
    assert_config_error(
        "flowlake-ingest",
        &[
            "--brokers",
            "a:1",
            "--cluster-id",
            "c",
            "--kafka-property",
            "enable.auto.offset.store=true",
        ],
        "kafka.properties.\"enable.auto.offset.store\"",
    );
    assert_config_error(
        "flowlake-aggregate",
        &["--brokers", "a:1", "--metric-max-series", "0"],
        "aggregate.metric_max_series",
    );
    assert_config_error("flowlake-enrich", &["--brokers", "a:1"], "enrich.snapshots");
    assert_config_error(
        "flowlake-enrich",
        &["--brokers", "a:1", "--snapshot", "c=/does/not/exist.json"],
        "enrich.snapshots[0].path",
    );
    assert_config_error(
        "flowlake-aggregate",
        &["--brokers", "a:1", "--window", "7s"],
        "aggregate.window",
    );
    assert_config_error("flowlake-sink", &["--brokers", "a:1"], "sink.lake_url");
    assert_config_error(
        "flowlake-sink",
        &["--brokers", "a:1", "--lake-url", "ftp://host/x"],
        "sink.lake_url",
    );
}

#[test]
fn config_file_typos_are_named() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("aggregate.toml");
    std::fs::write(
        &path,
        "[kafka]\nbrokers = \"a:1\"\n\n[aggregate]\nwindow = \"60s\"\nidle_timout = \"5s\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = run(
        "flowlake-aggregate",
        &["--config", path.to_str().unwrap_or_default()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("idle_timout"), "{stderr}");
}
