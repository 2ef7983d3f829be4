//! Calico Goldmane flows (`goldmane.Flow`) → [`FlowEvent`].
//!
//! Two JSON encodings of the same proto message are read by one set of structs:
//! * the gRPC API's protojson (`Flows/Stream` as grpcurl or the OTLP exporter print it):
//!   camelCase names, enums as names (`"Allow"`, `"Src"`, `"WorkloadEndpoint"`), int64 as
//!   strings (`"startTime":"1764970845"`);
//! * the emitter's HTTP body (Go `encoding/json` of the generated structs): snake_case
//!   names, enums as numbers (Action Allow=1, Deny=2, Pass=3; Reporter Src=1, Dst=2), int64
//!   as numbers, zero values left out.
//!
//! Both keep the capitalised top-level `"Key"` (the proto field is called `Key`), which is
//! how detection recognises them. Every field is optional, as in proto3: a missing field is
//! its zero value. Rejections name fields by their proto (snake_case) names, e.g.
//! `Key.dest_port`; type errors found by the parser name them as written.
//!
//! Mapping (docs/formats.md has the full table):
//! * `start_time`/`end_time` (Unix seconds) → `start_time`/`end_time`; a missing or zero
//!   start is a `missing_field`, a missing end is the start.
//! * `Key.proto` → `protocol`; `Key.dest_port` → `dst_port`. Goldmane aggregates source
//!   ports away and carries no addresses: `src_port`, `src_ip`, `dst_ip` are empty.
//! * `Key.action` → `action`, `Key.reporter` → `reporter` (unspecified → unknown).
//! * Counters are Felix's, relative to the reporter (see [`super`]); `num_connections_*`
//!   → `connections_started`/`_completed`/`_live`.
//! * `Key.policies.enforced_policies`/`pending_policies` → `policies_enforced`/
//!   `policies_pending`, in order. An `EndOfTier` hit names no policy itself: its name and
//!   namespace come from its `trigger`. An absent `rule_index` is 0 (proto3 leaves zero
//!   out), so every Goldmane hit has a rule index.
//! * Hints: the endpoint type's name (`WorkloadEndpoint`, `HostEndpoint`, `NetworkSet`,
//!   `Network`) → `kind`; namespace; the name → `aggregated_name`, and also → `name` unless
//!   it is an aggregate (contains `*`, or is `pub`/`pvt` of a `Network`); labels; the
//!   destination service's namespace and name.
//! * Enum numbers or names outside the proto's are rejected (`invalid_field`), not guessed.

use flowlake_runtime::Rejection;
use flowlake_schemas::{Action, EndpointHint, FlowEvent, PolicyHit, Reporter};
use serde::Deserialize;

use super::{Counters, some_hint};
use crate::formats::fields;
use crate::formats::json::{self, Int, ProtoEnum, Str};
use crate::formats::spec::{Detection, FormatSpec};
use crate::reject;

/// `goldmane.Flow`: the fields ingest reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawFlow<'a> {
    #[serde(borrow, rename = "Key")]
    key: Option<RawKey<'a>>,
    #[serde(alias = "startTime")]
    start_time: Option<Int>,
    #[serde(alias = "endTime")]
    end_time: Option<Int>,
    #[serde(borrow, alias = "sourceLabels")]
    source_labels: Option<Vec<Str<'a>>>,
    #[serde(borrow, alias = "destLabels")]
    dest_labels: Option<Vec<Str<'a>>>,
    #[serde(alias = "packetsIn")]
    packets_in: Int,
    #[serde(alias = "packetsOut")]
    packets_out: Int,
    #[serde(alias = "bytesIn")]
    bytes_in: Int,
    #[serde(alias = "bytesOut")]
    bytes_out: Int,
    #[serde(alias = "numConnectionsStarted")]
    num_connections_started: Int,
    #[serde(alias = "numConnectionsCompleted")]
    num_connections_completed: Int,
    #[serde(alias = "numConnectionsLive")]
    num_connections_live: Int,
}

/// `goldmane.FlowKey`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawKey<'a> {
    #[serde(borrow, alias = "sourceName")]
    source_name: Option<Str<'a>>,
    #[serde(borrow, alias = "sourceNamespace")]
    source_namespace: Option<Str<'a>>,
    #[serde(borrow, alias = "sourceType")]
    source_type: Option<ProtoEnum<'a>>,
    #[serde(borrow, alias = "destName")]
    dest_name: Option<Str<'a>>,
    #[serde(borrow, alias = "destNamespace")]
    dest_namespace: Option<Str<'a>>,
    #[serde(borrow, alias = "destType")]
    dest_type: Option<ProtoEnum<'a>>,
    #[serde(alias = "destPort")]
    dest_port: Option<Int>,
    #[serde(borrow, alias = "destServiceName")]
    dest_service_name: Option<Str<'a>>,
    #[serde(borrow, alias = "destServiceNamespace")]
    dest_service_namespace: Option<Str<'a>>,
    #[serde(borrow)]
    proto: Option<Str<'a>>,
    #[serde(borrow)]
    reporter: Option<ProtoEnum<'a>>,
    #[serde(borrow)]
    action: Option<ProtoEnum<'a>>,
    #[serde(borrow)]
    policies: Option<RawTrace<'a>>,
}

/// `goldmane.PolicyTrace`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawTrace<'a> {
    #[serde(borrow, alias = "enforcedPolicies")]
    enforced_policies: Option<Vec<RawHit<'a>>>,
    #[serde(borrow, alias = "pendingPolicies")]
    pending_policies: Option<Vec<RawHit<'a>>>,
}

/// `goldmane.PolicyHit`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawHit<'a> {
    #[serde(borrow)]
    kind: Option<ProtoEnum<'a>>,
    #[serde(borrow)]
    namespace: Option<Str<'a>>,
    #[serde(borrow)]
    name: Option<Str<'a>>,
    #[serde(borrow)]
    tier: Option<Str<'a>>,
    #[serde(borrow)]
    action: Option<ProtoEnum<'a>>,
    #[serde(alias = "ruleIndex")]
    rule_index: Int,
    #[serde(borrow)]
    trigger: Option<Box<RawHit<'a>>>,
}

/// A proto enum of Goldmane's API: its values by name and number.
struct EnumType<T: 'static> {
    /// The proto enum's name, for messages.
    name: &'static str,
    /// The name of the zero value, which means "not set".
    unspecified: &'static str,
    /// Name, number and canonical value of every other value.
    values: &'static [(&'static str, i64, T)],
}

impl<T: Copy> EnumType<T> {
    /// The value of `raw`; None when it is absent or unspecified. `field` is formatted only
    /// into a rejection.
    fn get(
        &self,
        raw: Option<&ProtoEnum<'_>>,
        field: &dyn std::fmt::Display,
    ) -> Result<Option<T>, Rejection> {
        let found = match raw {
            None | Some(ProtoEnum::Number(0)) => return Ok(None),
            Some(ProtoEnum::Name(name)) if name.as_str() == self.unspecified => return Ok(None),
            Some(ProtoEnum::Number(n)) => self.values.iter().find(|v| v.1 == *n),
            Some(ProtoEnum::Name(name)) => self.values.iter().find(|v| v.0 == name.as_str()),
        };
        found.map(|v| Some(v.2)).ok_or_else(|| {
            let given = match raw {
                Some(ProtoEnum::Name(name)) => format!("{:?}", name.as_str()),
                Some(ProtoEnum::Number(n)) => n.to_string(),
                None => String::new(),
            };
            let known: Vec<String> = self
                .values
                .iter()
                .map(|(name, number, _)| format!("{name}={number}"))
                .collect();
            Rejection::new(
                reject::INVALID_FIELD,
                format!(
                    "`{field}`: {given} is not a Goldmane {} ({})",
                    self.name,
                    known.join(", ")
                ),
            )
        })
    }
}

const ACTION: EnumType<Action> = EnumType {
    name: "Action",
    unspecified: "ActionUnspecified",
    values: &[
        ("Allow", 1, Action::Allow),
        ("Deny", 2, Action::Deny),
        ("Pass", 3, Action::Pass),
    ],
};

const REPORTER: EnumType<Reporter> = EnumType {
    name: "Reporter",
    unspecified: "ReporterUnspecified",
    values: &[("Src", 1, Reporter::Src), ("Dst", 2, Reporter::Dst)],
};

/// Endpoint type names, kept as the hint's `kind` (enrich understands them).
const ENDPOINT_TYPE: EnumType<&str> = EnumType {
    name: "EndpointType",
    unspecified: "EndpointTypeUnspecified",
    values: &[
        ("WorkloadEndpoint", 1, "WorkloadEndpoint"),
        ("HostEndpoint", 2, "HostEndpoint"),
        ("NetworkSet", 3, "NetworkSet"),
        ("Network", 4, "Network"),
    ],
};

/// The endpoint type whose names are `pub`/`pvt`, never one endpoint's.
const NETWORK: &str = "Network";

/// Policy kinds. 7 and 8 are the names of Calico 3.30's proto; later protos renamed the
/// admin tiers into `ClusterNetworkPolicy` = 11.
const POLICY_KIND: EnumType<&str> = EnumType {
    name: "PolicyKind",
    unspecified: "KindUnspecified",
    values: &[
        ("CalicoNetworkPolicy", 1, "CalicoNetworkPolicy"),
        ("GlobalNetworkPolicy", 2, "GlobalNetworkPolicy"),
        ("StagedNetworkPolicy", 3, "StagedNetworkPolicy"),
        ("StagedGlobalNetworkPolicy", 4, "StagedGlobalNetworkPolicy"),
        (
            "StagedKubernetesNetworkPolicy",
            5,
            "StagedKubernetesNetworkPolicy",
        ),
        ("NetworkPolicy", 6, "NetworkPolicy"),
        (
            "ClusterNetworkPolicyAdminTier",
            7,
            "ClusterNetworkPolicyAdminTier",
        ),
        (
            "ClusterNetworkPolicyBaselineTier",
            8,
            "ClusterNetworkPolicyBaselineTier",
        ),
        ("Profile", 9, "Profile"),
        ("EndOfTier", 10, "EndOfTier"),
        ("ClusterNetworkPolicy", 11, "ClusterNetworkPolicy"),
    ],
};

/// The kind of a hit whose kind is not set.
const UNSPECIFIED_KIND: &str = "KindUnspecified";

/// The format's name (`ingest.format`, the `flowlake.format` header, `source_format`).
pub const NAME: &str = "calico-goldmane";

/// Goldmane's registration in [`crate::formats::FORMATS`]: recognised by `Key`, an object in
/// every Goldmane flow (protojson or emitter; the proto field is called `Key`), tried
/// before every other format's keys (Goldmane shares `source_labels` with Enterprise).
pub const SPEC: FormatSpec = FormatSpec {
    name: NAME,
    detection: Detection::by_keys(&["Key"], 10),
    decode: |payload, _| decode(payload),
};

/// Decodes one Goldmane flow (protojson or emitter JSON).
pub fn decode(payload: &[u8]) -> Result<FlowEvent, Rejection> {
    let flow: RawFlow<'_> = json::parse(payload, "goldmane flow")?;
    let Some(key) = flow.key.as_ref() else {
        return Err(Rejection::new(
            reject::MISSING_FIELD,
            "`Key`: goldmane flow has no key",
        ));
    };
    let start_time = match flow.start_time {
        Some(Int(secs)) if secs != 0 => fields::unix_seconds(secs, "start_time")?,
        _ => {
            return Err(Rejection::new(
                reject::MISSING_FIELD,
                "`start_time`: goldmane flow has no start time",
            ));
        }
    };
    let end_time = match flow.end_time {
        Some(Int(secs)) if secs != 0 => fields::unix_seconds(secs, "end_time")?,
        _ => start_time,
    };
    let reporter = REPORTER
        .get(key.reporter.as_ref(), &"Key.reporter")?
        .unwrap_or_default();
    let counters = Counters {
        bytes_in: fields::counter(flow.bytes_in.0, "bytes_in")?,
        bytes_out: fields::counter(flow.bytes_out.0, "bytes_out")?,
        packets_in: fields::counter(flow.packets_in.0, "packets_in")?,
        packets_out: fields::counter(flow.packets_out.0, "packets_out")?,
    };
    let (bytes_out, bytes_in, packets_out, packets_in) = counters.oriented(reporter);
    let trace = key.policies.as_ref();
    let source_type = ENDPOINT_TYPE.get(key.source_type.as_ref(), &"Key.source_type")?;
    let dest_type = ENDPOINT_TYPE.get(key.dest_type.as_ref(), &"Key.dest_type")?;

    let src_hint = hint(
        source_type,
        key.source_namespace.as_ref(),
        key.source_name.as_ref(),
        flow.source_labels.as_deref(),
    );
    let mut dst_hint = hint(
        dest_type,
        key.dest_namespace.as_ref(),
        key.dest_name.as_ref(),
        flow.dest_labels.as_deref(),
    );
    dst_hint.service_namespace = fields::text(key.dest_service_namespace.as_ref().map(Str::as_str));
    dst_hint.service_name = fields::text(key.dest_service_name.as_ref().map(Str::as_str));

    Ok(FlowEvent {
        event_id: fields::content_hash(payload),
        cluster_id: String::new(),
        source_format: NAME.to_owned(),
        reporter_node: None,
        reporter,
        start_time,
        end_time,
        src_ip: None,
        dst_ip: None,
        src_port: None,
        dst_port: key
            .dest_port
            .map(|Int(port)| fields::port(port, "Key.dest_port"))
            .transpose()?,
        protocol: key
            .proto
            .as_ref()
            .filter(|p| !p.as_str().is_empty())
            .map(|p| super::protocol(p.as_str(), "Key.proto"))
            .transpose()?,
        action: ACTION
            .get(key.action.as_ref(), &"Key.action")?
            .unwrap_or_default(),
        drop_reason: None,
        bytes_out,
        bytes_in,
        packets_out,
        packets_in,
        connections_started: fields::counter(
            flow.num_connections_started.0,
            "num_connections_started",
        )?,
        connections_completed: fields::counter(
            flow.num_connections_completed.0,
            "num_connections_completed",
        )?,
        connections_live: fields::counter(flow.num_connections_live.0, "num_connections_live")?,
        policies_enforced: hits(
            trace.and_then(|t| t.enforced_policies.as_deref()),
            "Key.policies.enforced_policies",
        )?,
        policies_pending: hits(
            trace.and_then(|t| t.pending_policies.as_deref()),
            "Key.policies.pending_policies",
        )?,
        src_hint: some_hint(src_hint),
        dst_hint: some_hint(dst_hint),
        dst_dns_names: Vec::new(),
        dns: None,
    })
}

/// One side's hint (the destination's service is added by the caller).
fn hint(
    kind: Option<&'static str>,
    namespace: Option<&Str<'_>>,
    name: Option<&Str<'_>>,
    labels: Option<&[Str<'_>]>,
) -> EndpointHint {
    let aggregated_name = fields::text(name.map(Str::as_str));
    let single = aggregated_name
        .as_ref()
        .filter(|n| kind != Some(NETWORK) && !n.contains('*'))
        .cloned();
    EndpointHint {
        kind: kind.map(str::to_owned),
        namespace: fields::text(namespace.map(Str::as_str)),
        name: single,
        aggregated_name,
        labels: fields::labels(labels.unwrap_or_default().iter().map(Str::as_str)),
        ..EndpointHint::default()
    }
}

fn hits(raw: Option<&[RawHit<'_>]>, field: &str) -> Result<Vec<PolicyHit>, Rejection> {
    raw.unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, hit)| policy_hit(hit, &format_args!("{field}[{i}]")))
        .collect()
}

/// One policy hit; `field` (its path, for rejections) is formatted only on error.
fn policy_hit(raw: &RawHit<'_>, field: &dyn std::fmt::Display) -> Result<PolicyHit, Rejection> {
    let kind = POLICY_KIND
        .get(raw.kind.as_ref(), &format_args!("{field}.kind"))?
        .unwrap_or(UNSPECIFIED_KIND);
    let action = ACTION
        .get(raw.action.as_ref(), &format_args!("{field}.action"))?
        .unwrap_or_default();
    let rule_index = i32::try_from(raw.rule_index.0).map_err(|_| {
        Rejection::new(
            reject::INVALID_FIELD,
            format!("`{field}.rule_index`: {} is out of range", raw.rule_index.0),
        )
    })?;
    // An end-of-tier hit stands for the tier's default action; the policy that made the
    // tier apply to the flow is its trigger.
    let named = match raw.trigger.as_deref() {
        Some(trigger) if fields::text(raw.name.as_ref().map(Str::as_str)).is_none() => trigger,
        _ => raw,
    };
    Ok(PolicyHit {
        kind: kind.to_owned(),
        tier: fields::text(raw.tier.as_ref().map(Str::as_str)),
        namespace: fields::text(named.namespace.as_ref().map(Str::as_str)),
        name: fields::text(named.name.as_ref().map(Str::as_str)).unwrap_or_default(),
        action,
        rule_index: Some(rule_index),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accepted;
    use serde_json::{Value, json};

    use crate::test_decode::{self, TestError, ctx};

    type TestResult = Result<(), TestError>;

    const PROTOJSON: &str =
        include_str!("../../../../tests/fixtures/calico/goldmane_flow_protojson_calico3.30.json");
    const EMITTER: &str =
        include_str!("../../../../tests/fixtures/calico/goldmane_emitter_flows_transcribed.jsonl");

    fn canonical(message: &str) -> Result<Value, TestError> {
        test_decode::canonical(message, NAME)
    }

    fn rejection(message: &str) -> Result<(&'static str, String), TestError> {
        test_decode::rejection(message, Some(NAME))
    }

    fn hint(kind: &str, namespace: &str, name: Option<&str>, aggregated: &str) -> Value {
        json!({
            "kind": kind, "namespace": namespace, "name": name, "aggregated_name": aggregated,
            "labels": {}, "workload_kind": null, "workload_name": null,
            "service_namespace": null, "service_name": null
        })
    }

    #[test]
    fn every_fixture_record_decodes() -> TestResult {
        let ctx = ctx()?;
        let (format, _) = accepted(crate::decode(PROTOJSON.as_bytes(), &ctx))?;
        assert_eq!(format.name(), NAME);
        let mut decoded = 0;
        for line in EMITTER.lines() {
            let (format, _) = accepted(crate::decode(line.as_bytes(), &ctx))?;
            assert_eq!(format.name(), NAME);
            decoded += 1;
        }
        assert_eq!(decoded, 2);
        Ok(())
    }

    /// The protojson of Calico 3.30 (pretty-printed, as published): string enums, int64
    /// as strings, names aggregated by generateName.
    #[test]
    fn protojson_flow() -> TestResult {
        let mut src = hint(
            "WorkloadEndpoint",
            "longhorn-system",
            None,
            "longhorn-manager-*",
        );
        src["labels"] = json!({
            "app": "longhorn-manager",
            "app.kubernetes.io/instance": "longhorn",
            "app.kubernetes.io/managed-by": "Helm",
            "app.kubernetes.io/name": "longhorn",
            "app.kubernetes.io/version": "v1.8.1",
            "controller-revision-hash": "5bb8c89b95",
            "helm.sh/chart": "longhorn-1.8.1",
            "longhorn.io/admission-webhook": "long horn-admission-webhook",
            "longhorn.io/conversion-webhook": "longhorn-conversion-webhook",
            "longhorn.io/recovery-backend": "longhorn-recovery-backend",
            "pod-template-generation": "2"
        });
        let instance = "instance-manager-318f1eac2bc7c775b7a6d2e68e9e2800";
        let mut dst = hint(
            "WorkloadEndpoint",
            "longhorn-system",
            Some(instance),
            instance,
        );
        dst["labels"] = json!({
            "longhorn.io/component": "instance-manager",
            "longhorn.io/data-engine": "v1",
            "longhorn.io/instance-manager-image": "imi-7d4dc4d4",
            "longhorn.io/instance-manager-type": "aio",
            "longhorn.io/managed-by": "longhorn-manager",
            "longhorn.io/node": "k8s-worker-2"
        });
        let policy = json!({
            "kind": "CalicoNetworkPolicy", "tier": "default", "namespace": "longhorn-system",
            "name": "allow-same-namespace", "action": "allow", "rule_index": 0
        });
        assert_eq!(
            canonical(PROTOJSON)?,
            json!({
                "event_id": fields::content_hash(PROTOJSON.as_bytes()),
                "cluster_id": "test-cluster",
                "source_format": "calico-goldmane",
                "reporter_node": null,
                "reporter": "src",
                "start_time": "2025-12-05T21:40:45.000000Z",
                "end_time": "2025-12-05T21:41:00.000000Z",
                "src_ip": null,
                "dst_ip": null,
                "src_port": null,
                "dst_port": 8503,
                "protocol": 6,
                "action": "allow",
                "drop_reason": null,
                "bytes_out": 1226,
                "bytes_in": 957,
                "packets_out": 14,
                "packets_in": 11,
                "connections_started": 1,
                "connections_completed": 1,
                "connections_live": 1,
                "policies_enforced": [policy.clone()],
                "policies_pending": [policy],
                "src_hint": src,
                "dst_hint": dst,
                "dst_dns_names": [],
                "dns": null
            })
        );
        let (_, event) = accepted(crate::decode(PROTOJSON.as_bytes(), &ctx()?))?;
        assert_eq!(
            (event.start_time.as_micros(), event.end_time.as_micros()),
            (1_764_970_845_000_000, 1_764_970_860_000_000)
        );
        Ok(())
    }

    /// The emitter's JSON: integer enums, zero values left out (line 2 has no types, no
    /// action, no reporter).
    #[test]
    fn emitter_flows() -> TestResult {
        let mut lines = EMITTER.lines();
        let first = lines.next().ok_or("no line 1")?;
        let second = lines.next().ok_or("no line 2")?;
        let enforced = json!({
            "kind": "NetworkPolicy", "tier": "test-tier", "namespace": "kube-system",
            "name": "cluster-dns", "action": "allow", "rule_index": 1
        });
        let pending = json!({
            "kind": "NetworkPolicy", "tier": "test-tier-staged", "namespace": "kube-system",
            "name": "cluster-dns-staged", "action": "deny", "rule_index": 1
        });
        let mut src = hint("WorkloadEndpoint", "test-ns", Some("test-src"), "test-src");
        src["labels"] = json!({"src": "label"});
        let mut dst = hint(
            "WorkloadEndpoint",
            "test-dst-ns",
            Some("test-dst"),
            "test-dst",
        );
        dst["labels"] = json!({"dst": "label"});
        assert_eq!(
            canonical(first)?,
            json!({
                "event_id": fields::content_hash(first.as_bytes()),
                "cluster_id": "test-cluster",
                "source_format": "calico-goldmane",
                "reporter_node": null,
                "reporter": "unknown",
                "start_time": "1970-01-01T00:00:18.000000Z",
                "end_time": "1970-01-01T00:00:28.000000Z",
                "src_ip": null,
                "dst_ip": null,
                "src_port": null,
                "dst_port": null,
                "protocol": 6,
                "action": "allow",
                "drop_reason": null,
                "bytes_out": 200,
                "bytes_in": 100,
                "packets_out": 20,
                "packets_in": 10,
                "connections_started": 1,
                "connections_completed": 0,
                "connections_live": 0,
                "policies_enforced": [enforced],
                "policies_pending": [pending],
                "src_hint": src,
                "dst_hint": dst,
                "dst_dns_names": [],
                "dns": null
            })
        );
        let value = canonical(second)?;
        assert_eq!(value["action"], "unknown");
        assert_eq!(value["src_hint"]["kind"], Value::Null);
        assert_eq!(value["src_hint"]["name"], "test-src");
        assert_eq!(value["policies_enforced"][0]["name"], "cluster-dns");
        Ok(())
    }

    #[test]
    fn reporter_dst_swaps_counters_and_networks_are_aggregates() -> TestResult {
        let message = r#"{"Key":{"source_name":"pub","source_type":4,"dest_name":"web-*",
            "dest_namespace":"shop","dest_type":1,"dest_port":443,"proto":"tcp","reporter":2,
            "action":2,"dest_service_name":"web","dest_service_namespace":"shop",
            "policies":{"enforced_policies":[{"kind":10,"tier":"security","action":2,
            "rule_index":-1,"trigger":{"kind":2,"name":"block-world","tier":"security"}}]}},
            "start_time":1700000000,"end_time":1700000015,"bytes_in":10,"bytes_out":20,
            "packets_in":1,"packets_out":2}"#;
        let value = canonical(message)?;
        assert_eq!(value["reporter"], "dst");
        assert_eq!(value["action"], "deny");
        assert_eq!(
            (&value["bytes_out"], &value["bytes_in"]),
            (&json!(10), &json!(20))
        );
        assert_eq!(
            (&value["packets_out"], &value["packets_in"]),
            (&json!(1), &json!(2))
        );
        assert_eq!(
            value["src_hint"],
            json!({
                "kind": "Network", "namespace": null, "name": null, "aggregated_name": "pub",
                "labels": {}, "workload_kind": null, "workload_name": null,
                "service_namespace": null, "service_name": null
            })
        );
        assert_eq!(value["dst_hint"]["name"], Value::Null);
        assert_eq!(value["dst_hint"]["aggregated_name"], "web-*");
        assert_eq!(value["dst_hint"]["service_name"], "web");
        assert_eq!(
            value["policies_enforced"],
            json!([{
                "kind": "EndOfTier", "tier": "security", "namespace": null,
                "name": "block-world", "action": "deny", "rule_index": -1
            }])
        );
        Ok(())
    }

    #[test]
    fn malformed_flows_are_rejected_by_class() -> TestResult {
        let flow =
            |key: &str, rest: &str| format!(r#"{{"Key":{{{key}}},"start_time":1700000000{rest}}}"#);
        let cases: Vec<(String, &str, &str)> = vec![
            (
                flow(r#""action":7"#, ""),
                reject::INVALID_FIELD,
                "`Key.action`: 7 is not a Goldmane Action (Allow=1, Deny=2, Pass=3)",
            ),
            (
                flow(r#""reporter":"Sideways""#, ""),
                reject::INVALID_FIELD,
                "`Key.reporter`: \"Sideways\" is not a Goldmane Reporter (Src=1, Dst=2)",
            ),
            (
                flow(r#""dest_type":9"#, ""),
                reject::INVALID_FIELD,
                "`Key.dest_type`: 9 is not a Goldmane EndpointType (WorkloadEndpoint=1, \
                 HostEndpoint=2, NetworkSet=3, Network=4)",
            ),
            (
                flow(
                    r#""policies":{"pending_policies":[{"kind":6},{"kind":42}]}"#,
                    "",
                ),
                reject::INVALID_FIELD,
                "`Key.policies.pending_policies[1].kind`: 42 is not a Goldmane PolicyKind \
                 (CalicoNetworkPolicy=1, GlobalNetworkPolicy=2, StagedNetworkPolicy=3, \
                 StagedGlobalNetworkPolicy=4, StagedKubernetesNetworkPolicy=5, \
                 NetworkPolicy=6, ClusterNetworkPolicyAdminTier=7, \
                 ClusterNetworkPolicyBaselineTier=8, Profile=9, EndOfTier=10, \
                 ClusterNetworkPolicy=11)",
            ),
            (
                flow(r#""destPort":"70000""#, ""),
                reject::INVALID_PORT,
                "`Key.dest_port`: 70000 is outside 0..=65535",
            ),
            (
                flow(r#""proto":"carrier-pigeon""#, ""),
                reject::INVALID_PROTOCOL,
                "`Key.proto`: \"carrier-pigeon\" is neither a protocol number nor one of tcp, \
                 udp, icmp, icmp6, sctp",
            ),
            (
                flow("", r#","bytes_in":-1"#),
                reject::NEGATIVE_COUNTER,
                "`bytes_in`: -1 is negative",
            ),
            (
                flow(r#""destPort":true"#, ""),
                reject::INVALID_FIELD,
                "goldmane flow: field `Key.destPort`: invalid type: boolean `true`, expected \
                 an integer or a decimal string at line 1 column 23",
            ),
            (
                r#"{"Key":{},"startTime":"soon"}"#.to_owned(),
                reject::INVALID_FIELD,
                "goldmane flow: field `startTime`: \"soon\" is not a 64-bit integer at line 1 \
                 column 28",
            ),
            (
                r#"{"Key":{},"end_time":5}"#.to_owned(),
                reject::MISSING_FIELD,
                "`start_time`: goldmane flow has no start time",
            ),
            (
                r#"{"Key":null,"start_time":5}"#.to_owned(),
                reject::MISSING_FIELD,
                "`Key`: goldmane flow has no key",
            ),
            (
                flow("", r#","end_time":1699999999"#),
                reject::INVALID_TIME,
                "`end_time` 2023-11-14T22:13:19.000000Z is before `start_time` \
                 2023-11-14T22:13:20.000000Z",
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
