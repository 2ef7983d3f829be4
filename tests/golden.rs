//! Golden outputs: what `flowlake decode` (the same code ingest runs) makes of every real
//! agent sample in tests/fixtures/ — each record's canonical JSON, each rejection's line,
//! class and reason — pinned byte for byte in tests/fixtures/golden/. A change in any
//! decoder shows up here as a diff to review.
//!
//! After an intended change, regenerate with `FLOWLAKE_BLESS=1 cargo nextest run -p flowlake
//! --test golden` and review the diff before committing it.
//!
//! `calico/enterprise_flowlog_docs_verbatim.txt` is left out: it is a documentation extract
//! (pretty-printed blocks between `# --- block N` lines), not agent output; the ingest unit
//! tests split it into its blocks.

mod support;

use std::path::Path;
use std::process::Command;

const SAMPLE_DIRS: [&str; 4] = ["hubble", "calico", "netobserv", "antrea"];
const NOT_AGENT_OUTPUT: [&str; 1] = ["calico/enterprise_flowlog_docs_verbatim.txt"];

fn check(root: &Path, relative: &str, bless: bool) -> Option<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_flowlake"))
        .current_dir(root)
        .args([
            "decode",
            "--cluster-id",
            "golden",
            &format!("tests/fixtures/{relative}"),
        ])
        .output()
        .unwrap_or_else(|e| panic!("flowlake decode {relative}: {e}"));
    assert!(
        out.status.success(),
        "flowlake decode {relative} exited {}",
        out.status
    );
    let golden = root.join("tests/fixtures/golden").join(relative);
    let decoded = golden.with_file_name(format!("{}.decoded.jsonl", file_name(relative)));
    let rejected = golden.with_file_name(format!("{}.rejected.txt", file_name(relative)));
    if bless {
        if let Some(dir) = decoded.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(&decoded, &out.stdout).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&rejected, &out.stderr).unwrap_or_else(|e| panic!("{e}"));
        return None;
    }
    let read = |p: &Path| {
        std::fs::read(p)
            .unwrap_or_else(|e| panic!("{}: {e} (bless with FLOWLAKE_BLESS=1)", p.display()))
    };
    let mut problems = Vec::new();
    if read(&decoded) != out.stdout {
        problems.push(format!(
            "{relative}: canonical JSON differs from {}",
            decoded.display()
        ));
    }
    if read(&rejected) != out.stderr {
        problems.push(format!(
            "{relative}: rejections differ from {}:\n{}",
            rejected.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    (!problems.is_empty()).then(|| problems.join("\n"))
}

fn file_name(relative: &str) -> &str {
    relative.rsplit('/').next().unwrap_or(relative)
}

#[test]
fn every_real_sample_decodes_to_its_golden_output() {
    let root = support::repo_root();
    let bless = std::env::var_os("FLOWLAKE_BLESS").is_some();
    let mut checked = 0;
    let mut failures = Vec::new();
    for dir in SAMPLE_DIRS {
        let mut files: Vec<String> = std::fs::read_dir(root.join("tests/fixtures").join(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .map(|name| format!("{dir}/{name}"))
            .filter(|relative| !NOT_AGENT_OUTPUT.contains(&relative.as_str()))
            .collect();
        files.sort();
        for relative in files {
            checked += 1;
            failures.extend(check(&root, &relative, bless));
        }
    }
    assert!(checked >= 25, "only {checked} sample files found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
