//! The shipped Prometheus rules are valid for promtool, and every metric they name
//! literally is one a stage's metric catalog declares (so a renamed metric breaks this test,
//! not a silent alert).

mod support;

fn rules_path() -> std::path::PathBuf {
    support::repo_root().join("deploy/prometheus/flowlake-alerts.yaml")
}

#[test]
fn alerting_rules_pass_promtool() {
    support::promtool_check_rules(&[rules_path().as_path()]);
}

#[test]
fn alerting_rules_name_only_declared_metrics() {
    let rules = std::fs::read_to_string(rules_path()).unwrap_or_else(|e| panic!("{e}"));
    let declared = [
        flowlake_sink::metrics::UPLOAD_RETRIES,
        flowlake_aggregate::metrics::WATERMARK_LAG,
        flowlake_aggregate::metrics::DENIED_FLOWS,
        flowlake_aggregate::metrics::EXTERNAL_EGRESS_FLOWS,
        flowlake_aggregate::metrics::EXTERNAL_EGRESS_BYTES,
    ];
    let named: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("flowlake_") && w.len() > "flowlake_".len())
        .collect();
    assert!(named.len() >= 3, "{named:?}");
    for metric in named {
        assert!(
            declared.contains(&metric),
            "the rules name {metric}, which no stage declares"
        );
    }
    // Per-stage runtime metrics are matched by name pattern; the runtime's names must fit it.
    for suffix in ["consumer_lag_records", "dead_letters_total"] {
        assert!(
            rules.contains(&format!("flowlake_[a-z]+_{suffix}")),
            "{suffix}"
        );
    }
}
