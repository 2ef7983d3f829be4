//! `flowlake decode`, run as users run it: the built binary over the real Hubble samples,
//! checked for exact counts, classes, line numbers, exit statuses and canonical output.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The JSON Lines samples and their record counts (tests/fixtures/README.md): every one
/// decodes.
const HUBBLE_JSONL: [(&str, usize); 12] = [
    ("cilium_docs_export_dropped.jsonl", 2),
    ("hubble_cli_printer_json_legacy_expected.jsonl", 1),
    ("hubble_cli_printer_jsonpb_expected.jsonl", 2),
    ("hubble_otel_basic_10.jsonl", 10),
    ("hubble_otel_dns_5.jsonl", 5),
    ("hubble_otel_dns_selected.jsonl", 6),
    ("hubble_otel_http_5.jsonl", 5),
    ("hubble_otel_http_selected.jsonl", 9),
    ("hubble_otel_icmpv4_18.jsonl", 18),
    ("hubble_otel_l7_redirected_selected.jsonl", 2),
    ("hubble_otel_tcp_selected.jsonl", 17),
    ("hubble_otel_udp_selected.jsonl", 8),
];

/// `hubble observe` compact text: 7 lines, each rejected with a hint.
const COMPACT: &str = "cilium_docs_observe_compact.txt";
const COMPACT_HINT: &str =
    "not_json: looks like `hubble observe` compact text output; run hubble with -o json";

fn hubble(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hubble")
        .join(file)
}

fn flowlake(args: &[&str], stdin: Option<&[u8]>) -> Result<Output, std::io::Error> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowlake"))
        .arg("decode")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input)?;
    }
    child.wait_with_output()
}

fn stdout_events(output: &Output) -> Result<Vec<Value>, serde_json::Error> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect()
}

fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn hubble_samples_decode_and_compact_text_is_rejected_line_by_line() -> TestResult {
    let mut paths: Vec<String> = HUBBLE_JSONL
        .iter()
        .map(|(file, _)| hubble(file).display().to_string())
        .collect();
    paths.push(hubble(COMPACT).display().to_string());
    let args: Vec<&str> = paths.iter().map(String::as_str).collect();
    let output = flowlake(&args, None)?;
    let stderr = stderr_lines(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr:#?}");

    let mut expected = Vec::new();
    for ((_, records), path) in HUBBLE_JSONL.iter().zip(&paths) {
        let plural = if *records == 1 { "" } else { "s" };
        expected.push(format!(
            "{path}: read line by line, {records} record{plural}"
        ));
    }
    let compact = &paths[HUBBLE_JSONL.len()];
    expected.push(format!("{compact}: read line by line, 7 records"));
    for line in 1..=7 {
        expected.push(format!("{compact}:{line}: {COMPACT_HINT}"));
    }
    expected.push("decoded 85, rejected 7 (by class: not_json 7) from 13 files".to_owned());
    assert_eq!(stderr, expected);

    let events = stdout_events(&output)?;
    let total: usize = HUBBLE_JSONL.iter().map(|(_, n)| n).sum();
    assert_eq!(events.len(), total);
    assert!(
        events
            .iter()
            .all(|e| e["source_format"] == "hubble" && e["cluster_id"] == "unknown"),
        "every record is Hubble, attributed to the default cluster"
    );

    // cilium_docs_export_dropped.jsonl line 2: a TCP SYN dropped by policy (the third line
    // of stdout: the first file comes first, in order).
    let dropped = &events[1];
    assert_eq!(dropped["action"], "deny");
    assert_eq!(dropped["drop_reason"], "POLICY_DENIED");
    assert_eq!(dropped["src_ip"], "10.244.1.60");
    assert_eq!(dropped["dst_ip"], "10.244.1.5");
    assert_eq!(dropped["src_port"], 44_916);
    assert_eq!(dropped["dst_port"], 80);
    assert_eq!(dropped["protocol"], 6);
    assert_eq!(dropped["start_time"], "2023-08-21T12:12:18.510175Z");
    assert_eq!(dropped["src_hint"]["name"], "xwing");
    // Line 1: ICMPv6 router solicitation from a link-local address.
    assert_eq!(events[0]["src_ip"], "fe80::64d8:8aff:fe72:fc14");
    assert_eq!(events[0]["protocol"], 58);
    assert_eq!(events[0]["drop_reason"], "INVALID_SOURCE_IP");
    Ok(())
}

#[test]
fn canonical_output_reads_back_as_the_same_records() -> TestResult {
    let file = hubble("hubble_otel_basic_10.jsonl").display().to_string();
    let first = flowlake(&["--cluster-id", "gke-1", &file], None)?;
    assert_eq!(first.status.code(), Some(0));
    let events = stdout_events(&first)?;
    assert_eq!(events.len(), 10);
    assert!(events.iter().all(|e| e["cluster_id"] == "gke-1"));

    // What decode prints is the canonical record ingest accepts: fed back (from stdin,
    // pinned to canonical JSON) it comes out byte for byte the same.
    let again = flowlake(
        &["--format", "canonical-json", "-"],
        Some(first.stdout.as_slice()),
    )?;
    assert_eq!(
        stderr_lines(&again),
        vec![
            "<stdin>: read line by line, 10 records".to_owned(),
            "decoded 10, rejected 0 from 1 file".to_owned()
        ]
    );
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        String::from_utf8_lossy(&first.stdout)
    );
    Ok(())
}

#[test]
fn a_pretty_printed_array_is_read_as_records() -> TestResult {
    let jsonl = std::fs::read_to_string(hubble("cilium_docs_export_dropped.jsonl"))?;
    let records: Vec<Value> = jsonl
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let dir = tempfile::tempdir()?;
    let pretty = dir.path().join("flows.json");
    std::fs::write(&pretty, serde_json::to_string_pretty(&records)?)?;
    let pretty = pretty.display().to_string();

    let output = flowlake(&[&pretty], None)?;
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        stderr_lines(&output),
        vec![
            format!("{pretty}: read as a JSON document, 2 records"),
            "decoded 2, rejected 0 from 1 file".to_owned()
        ]
    );
    let by_line = flowlake(
        &[&hubble("cilium_docs_export_dropped.jsonl")
            .display()
            .to_string()],
        None,
    )?;
    // These records carry no uuid, so their event_id hashes the message bytes, which the
    // re-layout changed; every other field is the same whichever way they are laid out.
    let without_id = |mut events: Vec<Value>| {
        for event in &mut events {
            event.as_object_mut().map(|o| o.remove("event_id"));
        }
        events
    };
    assert_eq!(
        without_id(stdout_events(&output)?),
        without_id(stdout_events(&by_line)?)
    );

    // A broken document is read line by line, each line rejected with its number.
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\n  \"flow\": {},\n}\n")?;
    let broken = broken.display().to_string();
    let output = flowlake(&[&broken], None)?;
    let stderr = stderr_lines(&output);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stderr[0], format!("{broken}: read line by line, 3 records"));
    assert!(
        stderr[1].starts_with(&format!("{broken}:1: not_json: ")),
        "{stderr:?}"
    );
    assert!(
        stderr[3].starts_with(&format!("{broken}:3: not_json: ")),
        "{stderr:?}"
    );
    assert_eq!(
        stderr[4],
        "decoded 0, rejected 3 (by class: not_json 3) from 1 file"
    );
    Ok(())
}

#[test]
fn a_pinned_format_applies_to_every_record() -> TestResult {
    let file = hubble("cilium_docs_export_dropped.jsonl")
        .display()
        .to_string();
    // Avro has no line framing: the whole file is one message, and not Avro.
    let output = flowlake(&["--format", "canonical-avro", &file], None)?;
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        stderr_lines(&output),
        vec![
            format!("{file}: read as one message, 1 record"),
            format!(
                "{file}:1: malformed_avro: not Avro: first byte 0x7b is neither single-object \
                 encoding (C3 01) nor Confluent framing (00)"
            ),
            "decoded 0, rejected 1 (by class: malformed_avro 1) from 1 file".to_owned()
        ]
    );
    assert!(output.stdout.is_empty());
    Ok(())
}

#[test]
fn exit_status_tells_unreadable_files_from_bad_arguments() -> TestResult {
    let file = hubble("cilium_docs_export_dropped.jsonl")
        .display()
        .to_string();
    let missing = "/nonexistent/flows.jsonl";

    let output = flowlake(&[missing, &file], None)?;
    assert_eq!(output.status.code(), Some(1), "an unreadable file");
    let stderr = stderr_lines(&output);
    assert!(
        stderr[0].starts_with(&format!("flowlake decode: {missing}: cannot read: ")),
        "{stderr:?}"
    );
    assert_eq!(
        stderr.last().map(String::as_str),
        Some("decoded 2, rejected 0 from 1 file; 1 could not be read"),
        "the other files are still decoded"
    );
    assert_eq!(stdout_events(&output)?.len(), 2);

    let output = flowlake(&["--format", "calico-v2", &file], None)?;
    assert_eq!(output.status.code(), Some(2), "unknown format");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown format \"calico-v2\": expected one of hubble, "),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());

    let output = flowlake(&["--cluster-id", " ", &file], None)?;
    assert_eq!(output.status.code(), Some(2), "blank cluster id");
    assert!(String::from_utf8_lossy(&output.stderr).contains("cluster_id"));

    let output = flowlake(&[], None)?;
    assert_eq!(output.status.code(), Some(2), "no file");
    Ok(())
}
