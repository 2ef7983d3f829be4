//! Calico Enterprise / Calico Cloud flow logs (the Elasticsearch document Fluentd ships)
//! → [`FlowEvent`].
//!
//! One JSON object per flow-log entry, snake_case, enums as lowercase text. Detection knows
//! them by keys no other format has at its top level (`source_name_aggr`, `dest_name_aggr`,
//! `source_ip`, `num_flows`, …).
//!
//! Mapping (docs/formats.md has the full table):
//! * `start_time`/`end_time` are Unix seconds. Entries without them (the host-forwarded
//!   examples of the docs) use `@timestamp` (milliseconds, the time the entry was written)
//!   for both; without any of the three the entry is rejected (`missing_field`, naming
//!   `start_time`): a flow without a time cannot be placed in a window.
//! * `source_ip`/`dest_ip`: null (aggregated away) or `-` → no address.
//! * `proto` → `protocol` (name or number); `source_port`/`dest_port` → ports.
//! * `action` (`allow`/`deny`/`pass`) → `action`. `reporter`: `src`, `dst`, or with
//!   forwarded traffic `fwd` / `"dst, fwd"`: the `src`/`dst` part decides, `fwd` alone (the
//!   node only forwarded the flow, neither end is local) is `unknown`.
//! * Counters are relative to the reporter (see [`super`]); `num_flows_started`/
//!   `num_flows_completed` → `connections_started`/`_completed`; there is no live count.
//! * `policies.enforced_policies` (older logs: `all_policies`) then `transit_policies`
//!   (policies applied to forwarded traffic, enforced too) → `policies_enforced`;
//!   `pending_policies` → `policies_pending`. Each is `index|tier|name|action|ruleIndex`;
//!   the name says the kind: `ns/name` namespaced, `staged:` staged, `knp.default.` a
//!   Kubernetes NetworkPolicy, tier `__PROFILE__` a profile (kind names as Goldmane's).
//! * Hints: `*_type` (`wep`, `hep`, `ns`, `net`) → `kind`, `*_namespace`, `*_name` →
//!   `name`, `*_name_aggr` (`pub`/`pvt` for networks) → `aggregated_name`,
//!   `*_labels.labels` → `labels`, `dest_service_namespace`/`_name` → service; `-` is none.
//! * `dest_domains` → `dst_dns_names`; `host` → `reporter_node`.

use flowlake_runtime::Rejection;
use flowlake_schemas::{Action, EndpointHint, FlowEvent, PolicyHit, Reporter, Timestamp};
use serde::Deserialize;

use super::{Counters, some_hint};
use crate::formats::fields;
use crate::formats::json::{self, Int, ProtoEnum, Str};
use crate::formats::spec::{Detection, FormatSpec};
use crate::reject;

/// One flow-log entry: the fields ingest reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawFlowLog<'a> {
    start_time: Option<Int>,
    end_time: Option<Int>,
    #[serde(rename = "@timestamp")]
    timestamp: Option<Int>,
    #[serde(borrow)]
    source_ip: Option<Str<'a>>,
    #[serde(borrow)]
    dest_ip: Option<Str<'a>>,
    source_port: Option<Int>,
    dest_port: Option<Int>,
    #[serde(borrow)]
    source_name: Option<Str<'a>>,
    #[serde(borrow)]
    source_name_aggr: Option<Str<'a>>,
    #[serde(borrow)]
    source_namespace: Option<Str<'a>>,
    #[serde(borrow)]
    source_type: Option<Str<'a>>,
    #[serde(borrow)]
    source_labels: Option<RawLabels<'a>>,
    #[serde(borrow)]
    dest_name: Option<Str<'a>>,
    #[serde(borrow)]
    dest_name_aggr: Option<Str<'a>>,
    #[serde(borrow)]
    dest_namespace: Option<Str<'a>>,
    #[serde(borrow)]
    dest_type: Option<Str<'a>>,
    #[serde(borrow)]
    dest_labels: Option<RawLabels<'a>>,
    #[serde(borrow)]
    dest_service_namespace: Option<Str<'a>>,
    #[serde(borrow)]
    dest_service_name: Option<Str<'a>>,
    #[serde(borrow)]
    dest_domains: Option<Vec<Str<'a>>>,
    #[serde(borrow)]
    proto: Option<ProtoEnum<'a>>,
    #[serde(borrow)]
    action: Option<Str<'a>>,
    #[serde(borrow)]
    reporter: Option<Str<'a>>,
    #[serde(borrow)]
    policies: Option<RawPolicies<'a>>,
    bytes_in: Int,
    bytes_out: Int,
    packets_in: Int,
    packets_out: Int,
    num_flows_started: Int,
    num_flows_completed: Int,
    #[serde(borrow)]
    host: Option<Str<'a>>,
}

/// `{"labels": ["key=value", …]}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawLabels<'a> {
    #[serde(borrow)]
    labels: Option<Vec<Str<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawPolicies<'a> {
    #[serde(borrow)]
    all_policies: Option<Vec<Str<'a>>>,
    #[serde(borrow)]
    enforced_policies: Option<Vec<Str<'a>>>,
    #[serde(borrow)]
    pending_policies: Option<Vec<Str<'a>>>,
    #[serde(borrow)]
    transit_policies: Option<Vec<Str<'a>>>,
}

/// The tier Calico writes for profiles (namespace and service-account defaults).
const PROFILE_TIER: &str = "__PROFILE__";

/// The format's name (`ingest.format`, the `flowlake.format` header, `source_format`).
pub const NAME: &str = "calico-enterprise";

/// Calico Enterprise's registration in [`crate::formats::FORMATS`]: its keys are tried
/// after Goldmane's and NetObserv's, before Hubble's and canonical's.
pub const SPEC: FormatSpec = FormatSpec {
    name: NAME,
    detection: Detection::by_keys(KEYS, 30),
    decode: |payload, _| decode(payload),
};

/// Keys of a Calico Enterprise flow log that neither the canonical record nor a Goldmane
/// flow has at its top level (`source_labels` is Goldmane's too, `start_time` canonical).
const KEYS: &[&str] = &[
    "source_name_aggr",
    "dest_name_aggr",
    "source_ip",
    "dest_ip",
    "source_name",
    "dest_name",
    "source_namespace",
    "dest_namespace",
    "source_type",
    "dest_type",
    "source_port",
    "dest_port",
    "num_flows",
    "num_flows_started",
    "num_flows_completed",
    "dest_service_name",
    "@timestamp",
];

/// Decodes one flow-log entry.
pub fn decode(payload: &[u8]) -> Result<FlowEvent, Rejection> {
    let log: RawFlowLog<'_> = json::parse(payload, "calico flow log")?;
    let (start_time, end_time) = times(&log)?;
    let reporter = match &log.reporter {
        Some(text) => reporter(text.as_str())?,
        None => Reporter::Unknown,
    };
    let counters = Counters {
        bytes_in: fields::counter(log.bytes_in.0, "bytes_in")?,
        bytes_out: fields::counter(log.bytes_out.0, "bytes_out")?,
        packets_in: fields::counter(log.packets_in.0, "packets_in")?,
        packets_out: fields::counter(log.packets_out.0, "packets_out")?,
    };
    let (bytes_out, bytes_in, packets_out, packets_in) = counters.oriented(reporter);
    let policies = log.policies.as_ref();
    let enforced = policies.and_then(|p| {
        p.enforced_policies
            .as_ref()
            .map(|list| (list, "policies.enforced_policies"))
            .or_else(|| {
                p.all_policies
                    .as_ref()
                    .map(|list| (list, "policies.all_policies"))
            })
    });
    let mut policies_enforced = match enforced {
        Some((list, field)) => hits(list, field)?,
        None => Vec::new(),
    };
    if let Some(transit) = policies.and_then(|p| p.transit_policies.as_ref()) {
        policies_enforced.extend(hits(transit, "policies.transit_policies")?);
    }
    let policies_pending = match policies.and_then(|p| p.pending_policies.as_ref()) {
        Some(list) => hits(list, "policies.pending_policies")?,
        None => Vec::new(),
    };
    let mut dst_hint = hint(
        log.dest_type.as_ref(),
        log.dest_namespace.as_ref(),
        log.dest_name.as_ref(),
        log.dest_name_aggr.as_ref(),
        log.dest_labels.as_ref(),
    );
    dst_hint.service_namespace = text(log.dest_service_namespace.as_ref());
    dst_hint.service_name = text(log.dest_service_name.as_ref());

    Ok(FlowEvent {
        event_id: fields::content_hash(payload),
        cluster_id: String::new(),
        source_format: NAME.to_owned(),
        reporter_node: text(log.host.as_ref()),
        reporter,
        start_time,
        end_time,
        src_ip: address(log.source_ip.as_ref(), "source_ip")?,
        dst_ip: address(log.dest_ip.as_ref(), "dest_ip")?,
        src_port: port(log.source_port, "source_port")?,
        dst_port: port(log.dest_port, "dest_port")?,
        protocol: match &log.proto {
            None => None,
            Some(ProtoEnum::Name(name)) if text(Some(name)).is_none() => None,
            Some(ProtoEnum::Name(name)) => Some(super::protocol(name.as_str(), "proto")?),
            Some(ProtoEnum::Number(n)) => Some(fields::protocol(*n, "proto")?),
        },
        action: match &log.action {
            Some(text) => action(text.as_str(), "action")?,
            None => Action::Unknown,
        },
        drop_reason: None,
        bytes_out,
        bytes_in,
        packets_out,
        packets_in,
        connections_started: fields::counter(log.num_flows_started.0, "num_flows_started")?,
        connections_completed: fields::counter(log.num_flows_completed.0, "num_flows_completed")?,
        connections_live: 0,
        policies_enforced,
        policies_pending,
        src_hint: some_hint(hint(
            log.source_type.as_ref(),
            log.source_namespace.as_ref(),
            log.source_name.as_ref(),
            log.source_name_aggr.as_ref(),
            log.source_labels.as_ref(),
        )),
        dst_hint: some_hint(dst_hint),
        dst_dns_names: log
            .dest_domains
            .iter()
            .flatten()
            .filter_map(|d| text(Some(d)))
            .collect(),
        dns: None,
    })
}

fn text(value: Option<&Str<'_>>) -> Option<String> {
    fields::text(value.map(Str::as_str))
}

fn address(
    value: Option<&Str<'_>>,
    field: &str,
) -> Result<Option<flowlake_schemas::Ip>, Rejection> {
    let value = value.map(Str::as_str).filter(|v| *v != "-");
    fields::ip(value, field)
}

fn port(value: Option<Int>, field: &str) -> Result<Option<i32>, Rejection> {
    value.map(|Int(p)| fields::port(p, field)).transpose()
}

/// `start_time`/`end_time` in seconds, else `@timestamp` in milliseconds.
fn times(log: &RawFlowLog<'_>) -> Result<(Timestamp, Timestamp), Rejection> {
    let seconds = |value: Option<Int>, field| match value {
        Some(Int(secs)) if secs != 0 => fields::unix_seconds(secs, field).map(Some),
        _ => Ok(None),
    };
    let written = match log.timestamp {
        Some(Int(millis)) if millis != 0 => Some(fields::unix_millis(millis, "@timestamp")?),
        _ => None,
    };
    let start = seconds(log.start_time, "start_time")?.or(written);
    let Some(start) = start else {
        return Err(Rejection::new(
            reject::MISSING_FIELD,
            "`start_time`: calico flow log has neither `start_time` nor `@timestamp`",
        ));
    };
    let end = seconds(log.end_time, "end_time")?
        .or(written)
        .unwrap_or(start);
    Ok((start, end))
}

/// `src`, `dst`, `fwd`, or a comma-separated combination such as `"dst, fwd"`.
fn reporter(text: &str) -> Result<Reporter, Rejection> {
    let mut reporter = Reporter::Unknown;
    for part in text.split(',').map(str::trim) {
        match part {
            "src" => reporter = Reporter::Src,
            "dst" => reporter = Reporter::Dst,
            "fwd" | "" | "-" => {}
            _ => {
                return Err(Rejection::new(
                    reject::INVALID_FIELD,
                    format!("`reporter`: {text:?} is not src, dst or fwd (or a combination)"),
                ));
            }
        }
    }
    Ok(reporter)
}

fn action(text: &str, field: &str) -> Result<Action, Rejection> {
    match text {
        "allow" => Ok(Action::Allow),
        "deny" => Ok(Action::Deny),
        "pass" => Ok(Action::Pass),
        "" | "-" => Ok(Action::Unknown),
        _ => Err(Rejection::new(
            reject::INVALID_FIELD,
            format!("`{field}`: {text:?} is not allow, deny or pass"),
        )),
    }
}

fn hint(
    kind: Option<&Str<'_>>,
    namespace: Option<&Str<'_>>,
    name: Option<&Str<'_>>,
    aggregated_name: Option<&Str<'_>>,
    labels: Option<&RawLabels<'_>>,
) -> EndpointHint {
    let labels = labels.and_then(|l| l.labels.as_deref()).unwrap_or_default();
    EndpointHint {
        kind: text(kind),
        namespace: text(namespace),
        name: text(name),
        aggregated_name: text(aggregated_name),
        labels: fields::labels(labels.iter().map(Str::as_str)),
        ..EndpointHint::default()
    }
}

fn hits(list: &[Str<'_>], field: &str) -> Result<Vec<PolicyHit>, Rejection> {
    list.iter()
        .enumerate()
        .map(|(i, text)| policy_hit(text.as_str(), &format_args!("{field}[{i}]")))
        .collect()
}

/// `index|tier|name|action|ruleIndex`, e.g. `0|tier1|ns1/tier1.policy1|pass|3`. `field`
/// (its path, for rejections) is formatted only on error.
fn policy_hit(text: &str, field: &dyn std::fmt::Display) -> Result<PolicyHit, Rejection> {
    let invalid =
        |why: &str| Rejection::new(reject::INVALID_FIELD, format!("`{field}`: {text:?} {why}"));
    let mut parts = text.split('|');
    let (Some(index), Some(tier), Some(name), Some(action_text), Some(rule), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(invalid("is not `index|tier|name|action|ruleIndex`"));
    };
    if index.parse::<u32>().is_err() {
        return Err(invalid(
            "has no policy index (a number) before the first `|`",
        ));
    }
    let action = match action_text {
        "allow" => Action::Allow,
        "deny" => Action::Deny,
        "pass" => Action::Pass,
        _ => return Err(invalid("has an action other than allow, deny or pass")),
    };
    let rule_index = match rule {
        "-" | "" => None,
        _ => Some(
            rule.parse::<i32>()
                .map_err(|_| invalid("has a rule index that is not a number"))?,
        ),
    };
    let (kind, namespace, name) = policy_name(tier, name);
    Ok(PolicyHit {
        kind: kind.to_owned(),
        tier: fields::text(Some(tier)),
        namespace: namespace.map(str::to_owned),
        name: name.to_owned(),
        action,
        rule_index,
    })
}

/// Kind, namespace and name from the name part of a policy string.
fn policy_name<'t>(tier: &str, full: &'t str) -> (&'static str, Option<&'t str>, &'t str) {
    if tier == PROFILE_TIER {
        let name = full
            .strip_prefix(PROFILE_TIER)
            .and_then(|n| n.strip_prefix('.'))
            .unwrap_or(full);
        return ("Profile", None, name);
    }
    let (namespace, rest) = match full.split_once('/') {
        Some((namespace, rest)) => (Some(namespace), rest),
        None => (None, full),
    };
    let (staged, rest) = match rest.strip_prefix("staged:") {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    if let Some(name) = rest.strip_prefix("knp.default.") {
        let kind = if staged {
            "StagedKubernetesNetworkPolicy"
        } else {
            "NetworkPolicy"
        };
        return (kind, namespace, name);
    }
    let kind = match (namespace.is_some(), staged) {
        (true, false) => "CalicoNetworkPolicy",
        (true, true) => "StagedNetworkPolicy",
        (false, false) => "GlobalNetworkPolicy",
        (false, true) => "StagedGlobalNetworkPolicy",
    };
    (kind, namespace, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accepted;
    use serde_json::{Value, json};

    use crate::test_decode::{self, TestError, ctx};

    type TestResult = Result<(), TestError>;

    const FLOWLOGS: &str =
        include_str!("../../../../tests/fixtures/calico/enterprise_flowlogs.jsonl");
    const WHISKER_MOCK: &str =
        include_str!("../../../../tests/fixtures/calico/enterprise_flowlog_whisker_ui_mock.json");
    const DOCS_VERBATIM: &str =
        include_str!("../../../../tests/fixtures/calico/enterprise_flowlog_docs_verbatim.txt");

    fn canonical(message: &str) -> Result<Value, TestError> {
        test_decode::canonical(message, NAME)
    }

    fn rejection(message: &str) -> Result<(&'static str, String), TestError> {
        test_decode::rejection(message, Some(NAME))
    }

    fn line(n: usize) -> Result<&'static str, String> {
        FLOWLOGS
            .lines()
            .nth(n)
            .ok_or_else(|| format!("no line {n}"))
    }

    /// The docs code blocks as published, split at our `# --- block N` separator lines.
    fn docs_blocks() -> Vec<String> {
        let mut blocks: Vec<String> = Vec::new();
        for line in DOCS_VERBATIM.lines() {
            if line.starts_with("# --- block ") {
                blocks.push(String::new());
            } else if let Some(block) = blocks.last_mut() {
                block.push_str(line);
                block.push('\n');
            }
        }
        blocks
    }

    fn policy(
        kind: &str,
        tier: &str,
        ns: Option<&str>,
        name: &str,
        action: &str,
        rule: i32,
    ) -> Value {
        json!({
            "kind": kind, "tier": tier, "namespace": ns, "name": name, "action": action,
            "rule_index": rule
        })
    }

    #[test]
    fn fixture_counts() -> TestResult {
        let ctx = ctx()?;
        let outcomes: Vec<Result<&'static str, &'static str>> = FLOWLOGS
            .lines()
            .map(|l| {
                crate::decode(l.as_bytes(), &ctx)
                    .map(|(f, _)| f.name())
                    .map_err(|r| r.class)
            })
            .collect();
        // Records 2 and 3 (host-forwarded traffic) carry no time at all.
        assert_eq!(
            outcomes,
            [
                Ok(NAME),
                Err(reject::MISSING_FIELD),
                Err(reject::MISSING_FIELD)
            ]
        );
        let (format, _) = accepted(crate::decode(WHISKER_MOCK.as_bytes(), &ctx))?;
        assert_eq!(format.name(), NAME);

        // Block 1 is the docs' original with a trailing comma: not JSON. Blocks 2 and 3 are
        // records 2 and 3 above, pretty-printed.
        let blocks = docs_blocks();
        let classes: Vec<Option<&str>> = blocks
            .iter()
            .map(|b| crate::decode(b.as_bytes(), &ctx).err().map(|r| r.class))
            .collect();
        assert_eq!(
            classes,
            [
                Some(reject::NOT_JSON),
                Some(reject::MISSING_FIELD),
                Some(reject::MISSING_FIELD)
            ]
        );
        let first = crate::decode(blocks[0].as_bytes(), &ctx).err();
        assert_eq!(
            first.map(|r| (r.message, r.format)),
            Some((
                "not JSON: expected value at line 44 column 7".to_owned(),
                None
            ))
        );
        Ok(())
    }

    /// The docs' "flow log example, with no aggregation", reported by the destination.
    #[test]
    fn docs_record() -> TestResult {
        let message = line(0)?;
        let hint = |name: &str, aggr: &str, labels: Value| {
            json!({
                "kind": "wep", "namespace": "policy-demo", "name": name, "aggregated_name": aggr,
                "labels": labels, "workload_kind": null, "workload_name": null,
                "service_namespace": null, "service_name": null
            })
        };
        let tier1 = policy(
            "CalicoNetworkPolicy",
            "tier1",
            Some("ns1"),
            "tier1.policy1",
            "pass",
            3,
        );
        assert_eq!(
            canonical(message)?,
            json!({
                "event_id": fields::content_hash(message.as_bytes()),
                "cluster_id": "test-cluster",
                "source_format": "calico-enterprise",
                "reporter_node": "bz-n8kf-kadm-node-1",
                "reporter": "dst",
                "start_time": "2020-08-11T17:14:43.000000Z",
                "end_time": "2020-08-11T17:19:43.000000Z",
                "src_ip": "192.168.47.9",
                "dst_ip": "192.168.138.79",
                "src_port": 42106,
                "dst_port": 80,
                "protocol": 6,
                "action": "allow",
                "drop_reason": null,
                "bytes_out": 388,
                "bytes_in": 1113,
                "packets_out": 6,
                "packets_in": 5,
                "connections_started": 1,
                "connections_completed": 1,
                "connections_live": 0,
                "policies_enforced": [
                    tier1.clone(),
                    policy("CalicoNetworkPolicy", "default", Some("policy-demo"),
                        "default.access-nginx", "allow", 2)
                ],
                "policies_pending": [
                    tier1,
                    policy("StagedNetworkPolicy", "tier2", Some("ns2"), "tier1.policy1", "deny", 1)
                ],
                "src_hint": hint("access-6b687c8dcb-zn5s2", "access-6b687c8dcb-*",
                    json!({"app": "access", "pod-template-hash": "6b687c8dcb"})),
                "dst_hint": hint("nginx-86c57db685-h6792", "nginx-86c57db685-*",
                    json!({"app": "nginx", "pod-template-hash": "86c57db685"})),
                "dst_dns_names": [],
                "dns": null
            })
        );
        let (_, event) = accepted(crate::decode(message.as_bytes(), &ctx()?))?;
        assert_eq!(
            (event.start_time.as_micros(), event.end_time.as_micros()),
            (1_597_166_083_000_000, 1_597_166_383_000_000)
        );
        Ok(())
    }

    /// Whisker's UI mock: aggregated (no addresses, no source port), no action, no counters.
    #[test]
    fn aggregated_mock() -> TestResult {
        let value = canonical(WHISKER_MOCK)?;
        assert_eq!(value["start_time"], "2023-11-02T15:47:09.000000Z");
        assert_eq!(value["end_time"], "2023-11-02T15:52:32.000000Z");
        assert_eq!(
            (
                &value["src_ip"],
                &value["dst_ip"],
                &value["src_port"],
                &value["dst_port"]
            ),
            (&Value::Null, &Value::Null, &Value::Null, &json!(9081))
        );
        assert_eq!(
            (&value["protocol"], &value["action"], &value["reporter"]),
            (&Value::Null, &json!("unknown"), &json!("unknown"))
        );
        assert_eq!(value["bytes_out"], 0);
        // The mock's source name and namespace look swapped; they are taken as written.
        assert_eq!(
            value["src_hint"],
            json!({
                "kind": "wep", "namespace": null, "name": "tigera-prometheus",
                "aggregated_name": "prometheus-calico-node-prometheus-*",
                "labels": {
                    "app.kubernetes.io/instance": "calico-node-prometheus",
                    "app.kubernetes.io/managed-by": "prometheus-operator",
                    "app.kubernetes.io/name": "prometheus",
                    "app.kubernetes.io/version": "2.45.0",
                    "controller-revision-hash": "prometheus-calico-node-prometheus-858dcf7b65",
                    "operator.prometheus.io/name": "calico-node-prometheus",
                    "operator.prometheus.io/shard": "0",
                    "prometheus": "calico-node-prometheus",
                    "statefulset.kubernetes.io/pod-name": "prometheus-calico-node-prometheus-0"
                },
                "workload_kind": null, "workload_name": null,
                "service_namespace": null, "service_name": null
            })
        );
        assert_eq!(value["dst_hint"]["service_name"], Value::Null);
        assert_eq!(value["dst_hint"]["aggregated_name"], "fluentd-node-*");
        Ok(())
    }

    /// Records 2 and 3 with a `@timestamp` added, as Fluentd writes it: forwarded traffic.
    #[test]
    fn forwarded_traffic_with_a_write_time() -> TestResult {
        let with_time = |n: usize| -> Result<String, String> {
            let record = line(n)?;
            Ok(format!(
                r#"{{"@timestamp":1597166383000,{}"#,
                record.strip_prefix('{').unwrap_or(record)
            ))
        };
        let dst_fwd = canonical(&with_time(1)?)?;
        assert_eq!(dst_fwd["reporter"], "dst");
        assert_eq!(dst_fwd["start_time"], "2020-08-11T17:19:43.000000Z");
        assert_eq!(dst_fwd["end_time"], dst_fwd["start_time"]);
        assert_eq!(
            (&dst_fwd["bytes_out"], &dst_fwd["bytes_in"]),
            (&json!(1234), &json!(5678))
        );
        assert_eq!(dst_fwd["src_port"], Value::Null);
        assert_eq!(dst_fwd["dst_port"], 22);
        assert_eq!(
            dst_fwd["policies_enforced"],
            json!([
                policy(
                    "Profile",
                    "__PROFILE__",
                    None,
                    "kns.maintenance-server",
                    "allow",
                    0
                ),
                policy(
                    "GlobalNetworkPolicy",
                    "default",
                    None,
                    "default.allow-ssh-maintenance",
                    "allow",
                    0
                )
            ])
        );
        assert_eq!(dst_fwd["policies_pending"][0]["kind"], "Profile");

        let fwd = canonical(&with_time(2)?)?;
        assert_eq!(fwd["reporter"], "unknown");
        assert_eq!(
            (&fwd["src_ip"], &fwd["dst_ip"]),
            (&json!("34.0.113.100"), &json!("66.11.155.1"))
        );
        assert_eq!(
            (&fwd["bytes_out"], &fwd["bytes_in"]),
            (&json!(4096), &json!(2048))
        );
        assert_eq!(
            fwd["src_hint"],
            json!({
                "kind": "net", "namespace": null, "name": null, "aggregated_name": "pub",
                "labels": {}, "workload_kind": null, "workload_name": null,
                "service_namespace": null, "service_name": null
            })
        );
        assert_eq!(
            fwd["policies_enforced"],
            json!([policy(
                "GlobalNetworkPolicy",
                "default",
                None,
                "default.allow-external-http",
                "allow",
                0
            )])
        );
        Ok(())
    }

    #[test]
    fn policy_names_say_their_kind() {
        let cases = [
            (
                "default",
                "ns/knp.default.web",
                ("NetworkPolicy", Some("ns"), "web"),
            ),
            (
                "default",
                "ns/staged:knp.default.web",
                ("StagedKubernetesNetworkPolicy", Some("ns"), "web"),
            ),
            (
                "sec",
                "staged:sec.block",
                ("StagedGlobalNetworkPolicy", None, "sec.block"),
            ),
            (
                "__PROFILE__",
                "__PROFILE__.kns.shop",
                ("Profile", None, "kns.shop"),
            ),
        ];
        for (tier, name, expected) in cases {
            assert_eq!(policy_name(tier, name), expected, "{name}");
        }
    }

    #[test]
    fn malformed_logs_are_rejected_by_class() -> TestResult {
        let log = |fields: &str| {
            format!(r#"{{"start_time":1597166083,"source_name_aggr":"a-*",{fields}}}"#)
        };
        let cases: Vec<(String, &str, &str)> = vec![
            (
                log(r#""source_ip":"192.168.47.900""#),
                reject::INVALID_IP,
                "`source_ip`: \"192.168.47.900\" is not an IP address",
            ),
            (
                log(r#""dest_port":"http""#),
                reject::INVALID_FIELD,
                "calico flow log: field `dest_port`: \"http\" is not a 64-bit integer at line 1 \
                 column 68",
            ),
            (
                log(r#""dest_port":65536"#),
                reject::INVALID_PORT,
                "`dest_port`: 65536 is outside 0..=65535",
            ),
            (
                log(r#""action":"drop""#),
                reject::INVALID_FIELD,
                "`action`: \"drop\" is not allow, deny or pass",
            ),
            (
                log(r#""reporter":"both""#),
                reject::INVALID_FIELD,
                "`reporter`: \"both\" is not src, dst or fwd (or a combination)",
            ),
            (
                log(r#""proto":"tcpx""#),
                reject::INVALID_PROTOCOL,
                "`proto`: \"tcpx\" is neither a protocol number nor one of tcp, udp, icmp, \
                 icmp6, sctp",
            ),
            (
                log(r#""policies":{"enforced_policies":["0|t|n|allow|1","1|t|n|allow"]}"#),
                reject::INVALID_FIELD,
                "`policies.enforced_policies[1]`: \"1|t|n|allow\" is not \
                 `index|tier|name|action|ruleIndex`",
            ),
            (
                log(r#""policies":{"pending_policies":["0|t|n|maybe|1"]}"#),
                reject::INVALID_FIELD,
                "`policies.pending_policies[0]`: \"0|t|n|maybe|1\" has an action other than \
                 allow, deny or pass",
            ),
            (
                log(r#""policies":{"transit_policies":["x|t|n|allow|1"]}"#),
                reject::INVALID_FIELD,
                "`policies.transit_policies[0]`: \"x|t|n|allow|1\" has no policy index (a \
                 number) before the first `|`",
            ),
            (
                log(r#""source_labels":["app=x"]"#),
                reject::INVALID_FIELD,
                "calico flow log: field `source_labels[0]`: invalid type: string \"app=x\", \
                 expected a sequence at line 1 column 74",
            ),
            (
                log(r#""packets_out":-4"#),
                reject::NEGATIVE_COUNTER,
                "`packets_out`: -4 is negative",
            ),
            (
                r#"{"source_name_aggr":"a-*","end_time":5}"#.to_owned(),
                reject::MISSING_FIELD,
                "`start_time`: calico flow log has neither `start_time` nor `@timestamp`",
            ),
        ];
        for (message, class, reason) in cases {
            assert_eq!(
                rejection(&message)?,
                (class, reason.to_owned()),
                "{message}"
            );
        }
        Ok(())
    }
}
