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
    flowlake_env(args, &[])
}

/// [`flowlake`] with extra environment variables.
fn flowlake_env(args: &[&str], env: &[(&str, String)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flowlake"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
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

/// The window every command of these tests reads: all of the demo's data, the same for all.
const WINDOW: [&str; 4] = [
    "--from",
    "2000-01-01T00:00:00Z",
    "--to",
    "2100-01-01T00:00:00Z",
];

fn whatif_json(lake: &Path, policy: &Path) -> (i32, Value) {
    let mut args = vec![
        "policy",
        "whatif",
        "--lake",
        path(lake),
        "--policy",
        path(policy),
        "--output",
        "json",
    ];
    args.extend(WINDOW);
    let (code, stdout, stderr) = flowlake(&args);
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
        let mut args = vec![
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
        ];
        args.extend(WINDOW);
        let (code, stdout, stderr) = flowlake(&args);
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
        let mut args = vec![
            "policy",
            "recommend",
            "--lake",
            path(lake),
            "--namespace",
            "shop",
            "--format",
            format,
        ];
        args.extend(WINDOW);
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

    // The same lake in S3 (moto), reached with the sink's options: the same answer.
    let moto = support::Moto::start();
    moto.create_bucket("policy-lake");
    let mut uploaded = 0;
    for dataset in ["edges", "flows"] {
        let mut pending = vec![lake.join(dataset)];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{e}"))
                .flatten()
            {
                let p = entry.path();
                if p.is_dir() {
                    pending.push(p);
                } else if p.extension().is_some_and(|e| e == "parquet") {
                    let key = p.strip_prefix(lake).unwrap_or(&p).display().to_string();
                    moto.put_object(
                        "policy-lake",
                        &format!("prefix/{key}"),
                        &std::fs::read(&p).unwrap_or_default(),
                    );
                    uploaded += 1;
                }
            }
        }
    }
    assert!(uploaded >= 2, "uploaded {uploaded} objects");
    let credentials = [
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
    ];
    let (s3_code, s3_out, s3_err) = flowlake_env(
        &[
            "policy",
            "whatif",
            "--lake",
            "s3://policy-lake/prefix",
            "--s3-endpoint",
            &moto.endpoint,
            "--storage-option",
            "aws_region=us-east-1",
            "--policy",
            path(&deny),
            "--output",
            "json",
        ],
        &credentials,
    );
    assert_eq!(s3_code, 3, "{s3_out}\n{s3_err}");
    let s3_report: Value =
        serde_json::from_str(&s3_out).unwrap_or_else(|e| panic!("{e}: {s3_out}"));
    assert_eq!(
        s3_report, report,
        "whatif over S3 and over the local copy agree"
    );
    let (code, stdout, stderr) = flowlake_env(
        &[
            "policy",
            "recommend",
            "--lake",
            "s3://policy-lake/prefix",
            "--s3-endpoint",
            &moto.endpoint,
            "--storage-option",
            "aws_region=us-east-1",
            "--namespace",
            "shop",
        ],
        &credentials,
    );
    assert_eq!(code, 0, "{stderr}");
    let (_, local, _) = flowlake(&[
        "policy",
        "recommend",
        "--lake",
        path(lake),
        "--namespace",
        "shop",
    ]);
    // The windows differ by the seconds between the runs; the policies must not.
    let strip = |text: &str| -> String {
        text.lines()
            .filter(|l| !l.contains("flowlake.io/generated-from"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        strip(&stdout),
        strip(&local),
        "recommend over S3 and locally agree"
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

/// Bounded memory at scale (README, BENCHMARKS.md): one week of 10-minute edges of 100
/// clusters, 100 distinct edges each — 10,080,000 rows in 16,800 hourly objects written
/// with the sink's own columns, writer settings and object names — replayed by `whatif`
/// under `/usr/bin/time -v`. Prints the figures; asserts the answer and that the peak
/// resident set stays far below the data (the fold holds distinct edges, not rows).
/// Run: `cargo nextest run -p flowlake --test policy --run-ignored ignored-only`;
/// `FLOWLAKE_POLICY_BENCH_CLUSTERS` (default 100) scales it down.
#[test]
#[ignore = "benchmark: writes ~10M edge rows and takes minutes"]
fn whatif_over_ten_million_generated_edges_runs_in_bounded_memory() {
    use flowlake_schemas::{Action, EndpointKind, FlowEdge, Reporter, Timestamp};
    use flowlake_sink::SinkRecord;
    use flowlake_sink::layout::{HivePartition, object_path};
    use flowlake_sink::writer::ParquetOptions;

    const EDGES_PER_CLUSTER: usize = 100;
    const WINDOW_SECS: i64 = 600;
    const HOURS: i64 = 168;
    // 2026-11-02T00:00:00Z, a Monday.
    const START: i64 = 1_793_577_600;
    let clusters: usize = std::env::var("FLOWLAKE_POLICY_BENCH_CLUSTERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = object_store::path::Path::default();
    let properties = ParquetOptions::default()
        .properties()
        .unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    let (mut rows, mut files, mut bytes) = (0u64, 0u64, 0u64);
    for c in 0..clusters {
        let cluster = format!("prod-{c:03}");
        for hour in 0..HOURS {
            let mut batch = Vec::with_capacity(EDGES_PER_CLUSTER * 6);
            for w in 0..(3600 / WINDOW_SECS) {
                let window_start = START + hour * 3600 + w * WINDOW_SECS;
                for e in 0..EDGES_PER_CLUSTER {
                    let external = e % 10 >= 7;
                    batch.push(FlowEdge {
                        cluster_id: cluster.clone(),
                        window_start: Timestamp::from_secs(window_start),
                        window_end: Timestamp::from_secs(window_start + WINDOW_SECS),
                        revision: 0,
                        src_kind: EndpointKind::Pod,
                        src_namespace: Some(format!("team-{}", e % 5)),
                        src_workload: Some(format!("svc-{e}")),
                        dst_kind: if external {
                            EndpointKind::ExternalPublic
                        } else {
                            EndpointKind::Pod
                        },
                        dst_namespace: (!external).then(|| format!("team-{}", (e + 1) % 5)),
                        dst_workload: Some(if external {
                            format!("api-{e}.example.com")
                        } else {
                            format!("svc-{}", (e * 7 + 3) % EDGES_PER_CLUSTER)
                        }),
                        dst_service: None,
                        dst_port: Some(if external {
                            443
                        } else {
                            8000 + (e % 50) as i32
                        }),
                        protocol: Some(6),
                        action: Action::Allow,
                        reporter: Reporter::Src,
                        policy: None,
                        flows: 1 + (e as i64 % 13),
                        connections_started: 1,
                        connections_completed: 1,
                        bytes_out: 1000,
                        bytes_in: 2000,
                        packets_out: 10,
                        packets_in: 12,
                        first_seen: Timestamp::from_secs(window_start + 1),
                        last_seen: Timestamp::from_secs(window_start + WINDOW_SECS - 1),
                        distinct_src_pods: 2,
                    });
                }
            }
            let record_batch = FlowEdge::to_record_batch(&batch).unwrap_or_else(|e| panic!("{e}"));
            let partition = HivePartition::new(&cluster, Timestamp::from_secs(START + hour * 3600))
                .unwrap_or_else(|e| panic!("{e}"));
            let object = object_path(
                &root,
                flowlake_sink::Dataset::Edges,
                &partition,
                "flows.edges",
                0,
                hour,
            );
            let path = dir.path().join(object.as_ref());
            std::fs::create_dir_all(path.parent().unwrap_or(dir.path()))
                .unwrap_or_else(|e| panic!("{e}"));
            let file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{e}"));
            let mut writer = parquet::arrow::ArrowWriter::try_new(
                file,
                FlowEdge::arrow_schema(),
                Some(properties.clone()),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            writer
                .write(&record_batch)
                .unwrap_or_else(|e| panic!("{e}"));
            writer.close().unwrap_or_else(|e| panic!("{e}"));
            rows += batch.len() as u64;
            files += 1;
            bytes += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        }
    }
    println!(
        "generated {rows} edge rows in {files} objects, {:.1} MiB, in {:.1?}",
        bytes as f64 / 1_048_576.0,
        started.elapsed()
    );

    let policy = dir.path().join("deny.yaml");
    std::fs::write(
        &policy,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {name: deny-egress, namespace: team-0}\n\
         spec: {podSelector: {}, policyTypes: [Egress]}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let report_path = dir.path().join("report.json");
    let started = std::time::Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(env!("CARGO_BIN_EXE_flowlake"))
        .args([
            "policy",
            "whatif",
            "--lake",
            path(dir.path()),
            "--policy",
            path(&policy),
        ])
        .args([
            "--output",
            "json",
            "--from",
            "2026-11-02T00:00:00Z",
            "--to",
            "2026-11-09T00:00:00Z",
        ])
        .stdout(std::fs::File::create(&report_path).unwrap_or_else(|e| panic!("{e}")))
        .output()
        .unwrap_or_else(|e| panic!("/usr/bin/time: {e}"));
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let max_rss_kib: u64 = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no RSS in:\n{stderr}"));
    let report: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    let distinct = (clusters * EDGES_PER_CLUSTER) as u64;
    assert_eq!(report["edges_evaluated"].as_u64(), Some(distinct));
    // team-0 sources: e % 5 == 0, 20 of every 100 edges.
    assert_eq!(
        report["newly_denied"].as_array().map(Vec::len),
        Some(clusters * EDGES_PER_CLUSTER / 5)
    );
    println!(
        "whatif over {rows} rows ({distinct} distinct edges): {elapsed:.1?} wall, peak RSS {:.1} MiB",
        max_rss_kib as f64 / 1024.0
    );
    for line in stderr.lines().filter(|l| {
        l.contains("Elapsed (wall clock)") || l.contains("User time") || l.contains("System time")
    }) {
        println!("  {}", line.trim());
    }
    assert!(max_rss_kib < 512 * 1024, "peak RSS {max_rss_kib} KiB");
}
