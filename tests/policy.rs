//! `flowlake policy recommend` and `flowlake policy whatif` over a lake the demo wrote.
//!
//! What users rely on: recommended policies are valid for the tools that apply them
//! (`kubernetes-validate` for NetworkPolicy; the Calico and Cilium CRD schemas in
//! tests/fixtures/crds for the custom resources), replaying them over the same window
//! breaks nothing, and a default-deny egress policy on the demo's `shop` namespace lists
//! exactly the allowed egress edges the lake holds (checked against DuckDB's reading too).

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Runs `flowlake ARGS`: (exit code, stdout, stderr).
fn flowlake(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flowlake"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("flowlake {args:?}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A lake written by the demo (seeded scenario, cluster `demo`).
fn demo_lake() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = dir.path().to_str().unwrap_or_default();
    let (code, stdout, stderr) = flowlake(&[
        "demo",
        "--duration",
        "5s",
        "--rate",
        "200",
        "--http-listen",
        "127.0.0.1:0",
        "--data-dir",
        data,
    ]);
    assert_eq!(code, 0, "demo failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("flowlake policy recommend --lake"),
        "the demo suggests the next step:\n{stdout}"
    );
    dir
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn crd(name: &str) -> String {
    support::repo_root()
        .join("tests/fixtures/crds")
        .join(name)
        .display()
        .to_string()
}

/// `validate_crd.py` over `files`: (passed, its JSON report).
fn validate_crd(crds: &[&str], files: &[&Path]) -> (bool, Value) {
    let mut cmd = Command::new(support::python());
    cmd.arg(support::repo_root().join("tests/py/validate_crd.py"));
    for c in crds {
        cmd.args(["--crd", &crd(c)]);
    }
    cmd.args(files);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("validate_crd.py: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), report)
}

fn whatif_json(lake: &Path, policy: &Path) -> (i32, Value) {
    let (code, stdout, stderr) = flowlake(&[
        "policy",
        "whatif",
        "--lake",
        path(lake),
        "--policy",
        path(policy),
        "--output",
        "json",
    ]);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("whatif printed no JSON ({e}), exit {code}:\n{stdout}\n{stderr}")
    });
    (code, report)
}

const WORKLOADS: [&str; 5] = ["catalog", "checkout", "frontend", "postgres", "recommender"];

#[test]
fn recommended_policies_are_valid_and_replay_without_new_denials() {
    let lake = demo_lake();
    let lake = lake.path();
    let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for format in ["kubernetes", "calico-staged", "cilium"] {
        let dir = out.path().join(format);
        let (code, stdout, stderr) = flowlake(&[
            "policy",
            "recommend",
            "--lake",
            path(lake),
            "--namespace",
            "shop",
            "--format",
            format,
            "--out",
            path(&dir),
        ]);
        assert_eq!(code, 0, "{format}: {stdout}\n{stderr}");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{e}"))
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let expected: Vec<String> = WORKLOADS
            .iter()
            .map(|w| format!("demo.shop.flowlake-{w}.yaml"))
            .collect();
        assert_eq!(files, expected, "{format}: one file per workload policy");

        // The same window read twice gives the same bytes (deterministic order).
        let args = [
            "policy",
            "recommend",
            "--lake",
            path(lake),
            "--namespace",
            "shop",
            "--format",
            format,
            "--from",
            "2000-01-01T00:00:00Z",
            "--to",
            "2100-01-01T00:00:00Z",
        ];
        let (first, second) = (flowlake(&args), flowlake(&args));
        assert_eq!(first.0, 0, "{}", first.2);
        assert_eq!(first.1, second.1, "{format}: output is deterministic");
        assert!(
            first.1.contains("flowlake.io/evidence"),
            "{format}: evidence:\n{}",
            first.1
        );

        let paths: Vec<std::path::PathBuf> = files.iter().map(|f| dir.join(f)).collect();
        let paths: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
        match format {
            "kubernetes" => {
                let validator = support::python().with_file_name("kubernetes-validate");
                let out = Command::new(&validator)
                    .args(["--strict", "--kubernetes-version", "1.34.0"])
                    .args(&paths)
                    .output()
                    .unwrap_or_else(|e| panic!("{}: {e}", validator.display()));
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(out.status.success(), "kubernetes-validate:\n{text}");
                for w in WORKLOADS {
                    assert!(
                        text.contains(&format!("passed for resource networkpolicy/flowlake-{w}")),
                        "{w} validated:\n{text}"
                    );
                }
            }
            "calico-staged" => {
                let crds = [
                    "projectcalico.org_stagednetworkpolicies.yaml",
                    "projectcalico.org_networksets.yaml",
                ];
                let (ok, report) = validate_crd(&crds, &paths);
                assert!(ok, "{report:#}");
                let kinds: BTreeSet<String> = report["validated"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str()?.split(' ').nth(1).map(str::to_owned))
                    .collect();
                assert_eq!(
                    kinds,
                    ["NetworkSet", "StagedNetworkPolicy"]
                        .map(String::from)
                        .into()
                );
                assert!(first.1.contains("stagedAction: Set"), "{}", first.1);
                assert!(first.1.contains("allowedEgressDomains"), "{}", first.1);
                // The schema check can fail: a misspelt field is refused.
                let broken = out.path().join("broken.yaml");
                std::fs::write(
                    &broken,
                    first
                        .1
                        .replacen("stagedAction: Set", "stagedAction: Sett", 1),
                )
                .unwrap_or_else(|e| panic!("{e}"));
                assert!(
                    !validate_crd(&crds, &[&broken]).0,
                    "a wrong stagedAction must fail"
                );
            }
            _ => {
                let crds = ["cilium.io_ciliumnetworkpolicies.yaml"];
                let (ok, report) = validate_crd(&crds, &paths);
                assert!(ok, "{report:#}");
                assert_eq!(
                    report["validated"].as_array().map(Vec::len),
                    Some(WORKLOADS.len())
                );
                assert!(first.1.contains("matchName: api.stripe.com"), "{}", first.1);
                assert!(
                    first.1.contains("matchPattern: '*'"),
                    "DNS visibility rule:\n{}",
                    first.1
                );
                let broken = out.path().join("broken-cilium.yaml");
                std::fs::write(&broken, first.1.replace("matchName:", "matchNmae:"))
                    .unwrap_or_else(|e| panic!("{e}"));
                assert!(
                    !validate_crd(&crds, &[&broken]).0,
                    "a misspelt field must fail"
                );
            }
        }

        // Property: the recommended policies, replayed over the same window, deny nothing
        // that was allowed, and the lake can decide every edge.
        let (code, report) = whatif_json(lake, &dir);
        assert_eq!(code, 0, "{format}: {report:#}");
        assert!(
            report["edges_evaluated"].as_u64().unwrap_or(0) >= 10,
            "{report:#}"
        );
        assert_eq!(
            report["newly_denied"],
            Value::Array(vec![]),
            "{format}: {report:#}"
        );
        assert_eq!(
            report["uncertain"],
            Value::Array(vec![]),
            "{format}: {report:#}"
        );
        assert_eq!(
            report["newly_allowed"],
            Value::Array(vec![]),
            "{format}: {report:#}"
        );
    }
}

/// The allowed egress edges of the demo's `shop` namespace, from the scenario's traffic
/// patterns (src/scenario.rs): the eight allowed patterns (the two frontend pods are one
/// workload) plus the DNS lookups that precede external connections (replies are turned
/// client → server, so they are edges to coredns:53/UDP).
const SHOP_ALLOWED_EGRESS: [(&str, &str, i64, &str); 10] = [
    ("shop/catalog", "images.unsplash.com", 443, "TCP"),
    ("shop/catalog", "kube-system/coredns", 53, "UDP"),
    ("shop/catalog", "shop/postgres", 5432, "TCP"),
    ("shop/checkout", "api.stripe.com", 443, "TCP"),
    ("shop/checkout", "kube-system/coredns", 53, "UDP"),
    ("shop/checkout", "shop/postgres", 5432, "TCP"),
    ("shop/frontend", "shop/catalog", 8080, "TCP"),
    ("shop/frontend", "shop/checkout", 8443, "TCP"),
    ("shop/recommender", "kube-system/coredns", 53, "UDP"),
    ("shop/recommender", "shop/catalog", 8080, "TCP"),
];

#[test]
fn default_deny_egress_on_shop_newly_denies_every_allowed_egress_edge() {
    let lake = demo_lake();
    let lake = lake.path();
    let policies = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let deny = policies.path().join("deny.yaml");
    std::fs::write(
        &deny,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {name: default-deny-egress, namespace: shop}\n\
         spec: {podSelector: {}, policyTypes: [Egress]}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let (code, report) = whatif_json(lake, &deny);
    assert_eq!(
        code, 3,
        "exit 3 when something would newly be denied: {report:#}"
    );
    let denied: Vec<(String, String, i64, String)> = report["newly_denied"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            assert_eq!(f["cluster"], "demo");
            assert_eq!(f["observed"], "allow");
            assert!(f["flows"].as_i64().unwrap_or(0) > 0, "{f}");
            assert!(
                f["first_seen"].as_str().unwrap_or_default()
                    <= f["last_seen"].as_str().unwrap_or_default()
            );
            assert!(
                f["decided_by"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("NetworkPolicy shop/default-deny-egress selects"),
                "{f}"
            );
            (
                f["source"].as_str().unwrap_or_default().to_owned(),
                f["destination"].as_str().unwrap_or_default().to_owned(),
                f["port"].as_i64().unwrap_or(-1),
                f["protocol"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let pinned: Vec<(String, String, i64, String)> = SHOP_ALLOWED_EGRESS
        .iter()
        .map(|(s, d, p, proto)| ((*s).to_owned(), (*d).to_owned(), *p, (*proto).to_owned()))
        .collect();
    assert_eq!(denied, pinned, "{report:#}");
    assert_eq!(report["newly_allowed"], Value::Array(vec![]));
    assert_eq!(report["uncertain"], Value::Array(vec![]));

    // The same edges, read by DuckDB: every allowed egress edge of a shop pod, and its flows.
    let rows = support::run_python_json(
        "read_parquet.py",
        &[
            "--local",
            path(&lake.join("edges")),
            "--sql",
            "SELECT src_workload, dst_namespace, dst_workload, dst_port, CAST(sum(flows) AS BIGINT) AS flows \
             FROM t WHERE action = 'allow' AND src_kind = 'pod' AND src_namespace = 'shop' \
             GROUP BY ALL ORDER BY ALL",
        ],
    );
    let duck: BTreeSet<(String, String, i64, i64)> = rows["query"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let dst = match r["dst_namespace"].as_str() {
                Some(ns) => format!("{ns}/{}", r["dst_workload"].as_str().unwrap_or_default()),
                None => r["dst_workload"].as_str().unwrap_or_default().to_owned(),
            };
            (
                format!("shop/{}", r["src_workload"].as_str().unwrap_or_default()),
                dst,
                r["dst_port"].as_i64().unwrap_or(-1),
                r["flows"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let ours: BTreeSet<(String, String, i64, i64)> = report["newly_denied"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            (
                f["source"].as_str().unwrap_or_default().to_owned(),
                f["destination"].as_str().unwrap_or_default().to_owned(),
                f["port"].as_i64().unwrap_or(-1),
                f["flows"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        ours, duck,
        "whatif and DuckDB agree on the allowed egress edges and their flows"
    );

    let (code, table, _) = flowlake(&[
        "policy",
        "whatif",
        "--lake",
        path(lake),
        "--policy",
        path(&deny),
    ]);
    assert_eq!(code, 3);
    assert!(
        table.contains("newly denied")
            && table.contains("10 newly denied, 0 newly allowed, 0 uncertain"),
        "{table}"
    );

    // A policy file outside the subset is refused, naming the document.
    let pod = policies.path().join("pod.yaml");
    std::fs::write(&pod, "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let (code, _, stderr) = flowlake(&[
        "policy",
        "whatif",
        "--lake",
        path(lake),
        "--policy",
        path(&pod),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("document 1") && stderr.contains("Pod x"),
        "{stderr}"
    );
}
