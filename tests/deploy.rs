//! What `deploy/` ships works with the tools it is for:
//! - the Prometheus rules are valid for promtool, pass their unit tests
//!   (`flowlake-alerts.test.yaml`), and every metric they name literally is one a stage's
//!   metric catalog declares (so a renamed metric breaks this test, not a silent alert);
//! - the Kubernetes manifests, rendered from the kustomize base and example overlay, pass
//!   `kubernetes-validate` at a pinned Kubernetes version and the Prometheus Operator's CRD
//!   schemas, and every stage binary accepts the config file its ConfigMap gives it;
//! - every query of the Grafana dashboards is accepted by a real Prometheus scraping a run
//!   of the demo, and the overview, denied-flow and egress panels return data.

mod stages;
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The Kubernetes version the manifests are validated against: the oldest minor release
/// still in upstream support when they were written (1.31); newer API servers accept them.
const KUBERNETES_VERSION: &str = "1.31.0";

fn rules_path() -> std::path::PathBuf {
    support::repo_root().join("deploy/prometheus/flowlake-alerts.yaml")
}

#[test]
fn alerting_rules_pass_promtool() {
    support::promtool_check_rules(&[rules_path().as_path()]);
}

#[test]
fn alerting_rules_pass_their_unit_tests() {
    let tests = support::repo_root().join("deploy/prometheus/flowlake-alerts.test.yaml");
    let out = support::promtool_test_rules(&[tests.as_path()]);
    assert!(out.contains("SUCCESS"), "{out}");
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
        flowlake_aggregate::metrics::FOLDED_FLOWS,
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

#[test]
fn kubernetes_manifests_validate() {
    let root = support::repo_root();
    let kubectl = support::kubectl()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let report = support::run_python_json(
        "check_manifests.py",
        &[&root.display().to_string(), KUBERNETES_VERSION, &kubectl],
    );
    let resources = &report["resources"]["overlays/example"];
    assert_eq!(resources["Deployment"], 5, "{report}");
    assert_eq!(resources["ServiceMonitor"], 5, "{report}");
    assert_eq!(resources["PodDisruptionBudget"], 4, "{report}");
    assert_eq!(resources["PrometheusRule"], 1, "{report}");
    let podmonitor = &report["resources"]["overlays/example+components/podmonitor"];
    assert_eq!(podmonitor["PodMonitor"], 5, "{report}");
    assert!(podmonitor.get("ServiceMonitor").is_none(), "{report}");
    eprintln!(
        "rendered with kubectl kustomize as a cross-check: {}",
        report["kubectl"]
    );
}

/// Starts each stage binary on the config file the ConfigMap mounts for it (brokers, cluster
/// id and lake as the Deployment's environment gives them, pointing nowhere): a file the
/// binary refuses makes it exit 2 at once, naming the field; an accepted one leaves it
/// running, trying to reach the brokers.
#[test]
fn every_stage_accepts_its_configmap_file() {
    let root = support::repo_root();
    let report = support::run_python_json(
        "check_manifests.py",
        &[&root.display().to_string(), KUBERNETES_VERSION, ""],
    );
    let configs = report["configs"]
        .as_object()
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(configs.len(), 5, "{report}");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let lake = format!("file://{}", dir.path().join("lake").display());
    for (binary, text) in configs {
        let text = text.as_str().unwrap_or_else(|| panic!("{binary}"));
        let path = dir.path().join(format!("{binary}.toml"));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        let unreachable = format!("127.0.0.1:{}", support::free_port());
        let http = format!("127.0.0.1:{}", support::free_port());
        let mut child = Command::new(stages::stage_bin(binary))
            .arg(format!("--config={}", path.display()))
            .args(["--http-listen", &http])
            .env("FLOWLAKE_BROKERS", &unreachable)
            .env("FLOWLAKE_CLUSTER_ID", "prod-eu-1")
            .env("FLOWLAKE_LAKE_URL", &lake)
            // The publisher finds no cluster here; it must get past its config first.
            .env("KUBECONFIG", dir.path().join("no-kubeconfig"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{binary}: {e}"));
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap_or_else(|e| panic!("{e}")) {
                break Some(status);
            }
            if started.elapsed() > Duration::from_secs(3) {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let _ = child.kill();
        let output = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            status.and_then(|s| s.code()) != Some(2),
            "{binary} refused its ConfigMap file:\n{text}\n--- stderr ---\n{stderr}"
        );
        assert!(!stderr.contains("invalid config"), "{binary}: {stderr}");
    }
}

/// A child process killed and reaped on drop.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn dashboards_are_generated_from_their_description() {
    let script = support::repo_root().join("deploy/grafana/generate.py");
    let out = Command::new(support::python())
        .arg(&script)
        .arg("--check")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Panels allowed to return nothing from the demo, and why.
const EMPTY_IN_THE_DEMO: [(&str, &str, &str); 4] = [
    // Only ingest dead-letters anything in the demo (its malformed lines).
    ("flowlake-overview", "Dead letters by class", "B"),
    ("flowlake-overview", "Dead letters by class", "C"),
    ("flowlake-overview", "Dead letters by class", "D"),
    // The demo reads identity from a snapshot: no publisher runs.
    ("flowlake-health", "Identity publisher records", "A"),
];

#[test]
fn every_dashboard_query_runs_on_prometheus_and_key_panels_have_data() {
    let data = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let metrics = format!("127.0.0.1:{}", support::free_port());
    let demo = Killed(
        Command::new(env!("CARGO_BIN_EXE_flowlake"))
            .args(["demo", "--duration", "300s", "--http-listen", &metrics])
            .arg("--data-dir")
            .arg(data.path().join("lake"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("flowlake demo: {e}")),
    );
    let prometheus = support::Prometheus::start("flowlake-demo", &[metrics]);
    let dashboards = support::repo_root().join("deploy/grafana");
    let report = support::run_python_json(
        "query_dashboards.py",
        &[&prometheus.url, &dashboards.display().to_string(), "180"],
    );
    drop(demo);
    let panels = report["panels"]
        .as_array()
        .unwrap_or_else(|| panic!("{report}"));
    assert!(panels.len() >= 50, "{report}");
    let mut failures = Vec::new();
    for panel in panels {
        let (dashboard, title, reference) = (
            panel["dashboard"].as_str().unwrap_or_default(),
            panel["panel"].as_str().unwrap_or_default(),
            panel["ref"].as_str().unwrap_or_default(),
        );
        if panel["status"] != "success" {
            failures.push(format!("{dashboard} / {title} / {reference}: {panel}"));
        } else if panel["series"] == 0
            && !EMPTY_IN_THE_DEMO.contains(&(dashboard, title, reference))
        {
            failures.push(format!(
                "{dashboard} / {title} / {reference}: no data: {}",
                panel["expr"]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The variables list what the run produced.
    assert_eq!(
        report["variables"]["flowlake-denied/cluster"],
        serde_json::json!(["demo"])
    );
    assert_eq!(
        report["variables"]["flowlake-egress/namespace"],
        serde_json::json!(["shop"])
    );
}
