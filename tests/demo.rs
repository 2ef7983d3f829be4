//! `flowlake demo` runs the whole pipeline with no setup and leaves a lake that readers
//! nobody here wrote (pyarrow, DuckDB) can query.

mod stages;
mod support;

use std::process::Command;

use serde_json::Value;

fn query(dir: &std::path::Path, sql: &str) -> Value {
    let out = support::run_python(
        "read_parquet.py",
        &["--local", dir.to_str().unwrap_or_default(), "--sql", sql],
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn demo_leaves_a_readable_lake_with_denied_flows_and_external_destinations() {
    let data = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_flowlake"))
        .args([
            "demo",
            "--duration",
            "4s",
            "--rate",
            "100",
            "--http-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data.path())
        .output()
        .unwrap_or_else(|e| panic!("flowlake demo: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // "raw records in:       N (2 malformed, dead-lettered to flows.dlq)"
    let raw: i64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("raw records in:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no summary line:\n{stdout}"));
    assert!(stdout.contains("(2 malformed"), "{stdout}");
    assert!(stdout.contains("duckdb -c"), "{stdout}");

    let flows = query(
        &data.path().join("flows"),
        "SELECT count(*) AS n, count(DISTINCT cluster_id) AS clusters, count(*) FILTER (WHERE src_status = 'hit') AS hits FROM t",
    );
    assert_eq!(
        flows["query"][0]["n"].as_i64(),
        Some(raw - 2),
        "every good record is a row: {flows}"
    );
    assert_eq!(flows["query"][0]["clusters"].as_i64(), Some(1));
    assert_eq!(
        flows["query"][0]["hits"].as_i64(),
        Some(raw - 2),
        "every scenario pod is in the identity snapshot: {flows}"
    );

    let edges = query(
        &data.path().join("edges"),
        "SELECT CAST(sum(flows) AS BIGINT) AS folded, \
         CAST(sum(flows) FILTER (WHERE action = 'deny') AS BIGINT) AS denied, \
         count(*) FILTER (WHERE dst_kind = 'external_public' AND action = 'allow' AND dst_workload = 'api.stripe.com') AS stripe FROM t",
    );
    let row = &edges["query"][0];
    assert_eq!(
        row["folded"].as_i64(),
        Some(raw - 2),
        "each flow is in exactly one edge: {edges}"
    );
    assert!(row["denied"].as_i64().unwrap_or(0) > 0, "{edges}");
    assert!(
        row["stripe"].as_i64().unwrap_or(0) > 0,
        "external egress named by DNS: {edges}"
    );
}
