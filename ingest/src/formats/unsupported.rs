//! Inputs flowlake recognises but does not decode, and the rejections that name them.
//!
//! A message of a format flowlake does not read is rejected with a reason that names what
//! it looks like, never half-read as the closest format: `hubble observe` compact text,
//! Antrea Flow Aggregator records (JSON, CSV, `antctl` tables), legacy goflow2 records and
//! Loki query responses (docs/formats.md, "Recognised but not decoded"). Detection asks
//! [`shadowing_a_format`] before any format's keys (a goflow2 record has NetObserv's keys)
//! and [`named_object`] after every format's strong keys; the JSON parser's failures go
//! through [`not_json`], which knows the text outputs.

use flowlake_runtime::Rejection;

use crate::reject;

/// Why a legacy goflow2 record is not read (by detection, and by the NetObserv decoder when
/// the format is pinned).
pub(crate) const LEGACY_GOFLOW2: &str = "looks like a legacy goflow2 / goflow-kube record \
     (`TimeFlowStart`, `SamplerAddress`; the 2021 format before NetObserv), which flowlake does \
     not decode: its times are collector receive times and its counters are sampled. Use \
     NetObserv's eBPF agent and flowlogs-pipeline, whose records have `TimeFlowStartMs`";

/// Keys of the legacy goflow2 / goflow-kube record, which shares `SrcAddr`, `Proto`, … with
/// NetObserv but has `TimeFlowStart` (seconds, often 0) instead of `TimeFlowStartMs`.
const LEGACY_GOFLOW2_KEYS: &[&str] = &["SamplerAddress", "TimeFlowStart"];

/// Keys of formats flowlake knows of but does not decode, so that such a record is
/// rejected by name instead of being half-read as another format.
const NOT_SUPPORTED: &[(&str, &str)] = &[
    ("flowStartSeconds", "an Antrea Flow Aggregator record"),
    ("sourceIPv4Address", "an Antrea Flow Aggregator record"),
    ("sourceIPv6Address", "an Antrea Flow Aggregator record"),
];

/// How many of the keys of an unrecognised object a rejection names.
const KEYS_NAMED_IN_REJECTION: usize = 6;

/// A rejection for an object whose keys are those of an unsupported format that shares
/// keys with a supported one, so it must be named before any format's keys are tried.
pub(crate) fn shadowing_a_format(keys: &[String]) -> Option<Rejection> {
    let has_key = |key: &str| keys.iter().any(|k| k == key);
    let legacy = keys
        .iter()
        .any(|k| LEGACY_GOFLOW2_KEYS.contains(&k.as_str()));
    (legacy && !has_key("TimeFlowStartMs"))
        .then(|| Rejection::new(reject::UNKNOWN_FORMAT, LEGACY_GOFLOW2))
}

/// A rejection for an object that no format's strong keys claimed and that is recognisably
/// something else; weak keys are tried only when there is none.
pub(crate) fn named_object(keys: &[String]) -> Option<Rejection> {
    let has_key = |key: &str| keys.iter().any(|k| k == key);
    // A Loki query response (what NetObserv's console reads) wraps the records it holds.
    if has_key("status") && has_key("data") {
        return Some(Rejection::new(
            reject::UNKNOWN_FORMAT,
            "looks like a Loki query API response (keys \"status\", \"data\"), not a flow \
             record: send each line of data.result[].values[][1] (the NetObserv records) as \
             its own message",
        ));
    }
    NOT_SUPPORTED
        .iter()
        .find(|(key, _)| has_key(key))
        .map(|(_, what)| {
            Rejection::new(
                reject::UNKNOWN_FORMAT,
                format!(
                    "looks like {what}, which this version of flowlake does not decode (keys: {})",
                    name_keys(keys)
                ),
            )
        })
}

/// The first keys of an object, quoted, for a rejection's message.
pub(crate) fn name_keys(keys: &[String]) -> String {
    if keys.is_empty() {
        return "none (empty object)".to_owned();
    }
    let mut named: Vec<String> = keys
        .iter()
        .take(KEYS_NAMED_IN_REJECTION)
        .map(|k| format!("{k:?}"))
        .collect();
    if keys.len() > KEYS_NAMED_IN_REJECTION {
        named.push(format!("… ({} in all)", keys.len()));
    }
    named.join(", ")
}

/// The rejection for a message that is not (complete) JSON. `hubble observe` without
/// `-o json` prints one line per flow in a compact text form, a common first mistake, so
/// that one gets its own hint.
pub(crate) fn not_json(payload: &[u8], err: &serde_json::Error) -> Rejection {
    if looks_like_hubble_compact(payload) {
        return Rejection::new(
            reject::NOT_JSON,
            "looks like `hubble observe` compact text output; run hubble with -o json",
        );
    }
    if looks_like_antrea_text(payload) {
        return Rejection::new(
            reject::UNKNOWN_FORMAT,
            "looks like Antrea flow aggregator CSV/table output (flow-logger or S3 CSV, or \
             `antctl get flowrecords` table), which flowlake does not decode",
        );
    }
    Rejection::new(reject::NOT_JSON, format!("not JSON: {err}"))
}

/// Fields in a line of the Flow Aggregator's CSV outputs (flow logger: 30, S3: 50+).
const ANTREA_CSV_MIN_FIELDS: usize = 25;

/// Antrea's Flow Aggregator text outputs: a CSV line of the flow logger or the S3
/// uploader (start and end as Unix seconds, then many fields), or the `antctl get
/// flowrecords` table (its header, or a row starting with two addresses and three numbers).
fn looks_like_antrea_text(payload: &[u8]) -> bool {
    let line = payload.split(|&b| b == b'\n').next().unwrap_or_default();
    let Ok(text) = std::str::from_utf8(line) else {
        return false;
    };
    let is_number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let is_ip = |s: &str| s.parse::<std::net::IpAddr>().is_ok();
    let csv: Vec<&str> = text.split(',').collect();
    if csv.len() >= ANTREA_CSV_MIN_FIELDS && is_number(csv[0]) && is_number(csv[1]) {
        return true;
    }
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    match words[..] {
        ["SRC_IP", "DST_IP", ..] => true,
        [src, dst, sport, dport, proto, ..] => {
            is_ip(src) && is_ip(dst) && is_number(sport) && is_number(dport) && is_number(proto)
        }
        _ => false,
    }
}

/// Verdict words `hubble observe` prints in its compact output.
const HUBBLE_VERDICTS: &[&str] = &[
    "FORWARDED",
    "DROPPED",
    "REDIRECTED",
    "TRACED",
    "TRANSLATED",
    "AUDIT",
    "ERROR",
];

/// `May  4 13:23:40.501: default/tiefighter:42690 -> default/deathstar-…:80 http-request FORWARDED (…)`:
/// an arrow between two endpoints and a verdict word.
fn looks_like_hubble_compact(payload: &[u8]) -> bool {
    let line = payload.split(|&b| b == b'\n').next().unwrap_or_default();
    let text = String::from_utf8_lossy(line);
    let arrow = [" -> ", " <- ", " <> ", " => "]
        .iter()
        .any(|a| text.contains(a));
    arrow
        && text
            .split_ascii_whitespace()
            .any(|word| HUBBLE_VERDICTS.contains(&word))
}
