//! NetObserv (OpenShift Network Observability) flow records as flowlogs-pipeline writes
//! them — to Kafka, to stdout, or as Loki log lines — → [`FlowEvent`].
//!
//! PascalCase JSON, one record per flow direction per eBPF-agent eviction period. The Loki
//! variant lacks the fields Loki keeps as stream labels (`SrcK8S_Namespace`,
//! `*_OwnerName`, `*_Type`, `FlowDirection`, `K8S_ClusterName`, …); a user replaying Loki
//! merges the labels back into the line (they are strings there: `"FlowDirection":"1"`,
//! which is accepted), or sends the line alone and gets fewer hints.
//!
//! Mapping (docs/formats.md has the full table):
//! * `TimeFlowStartMs`/`TimeFlowEndMs` (epoch ms) → `start_time`/`end_time`; a record
//!   without `TimeFlowStartMs` is rejected (`missing_field`), and one that has the legacy
//!   goflow2 fields instead (`TimeFlowStart`, `SamplerAddress`: the 2021 goflow-kube
//!   format) is rejected by name (`unknown_format`): its times are not flow times and its
//!   counters are sampled, so there is nothing to map cleanly.
//! * `SrcAddr`/`DstAddr`/`SrcPort`/`DstPort`/`Proto` → addresses, ports, protocol. For
//!   ICMP (`Proto` 1 or 58) `dst_port` holds `IcmpType` and `src_port` is empty, as for
//!   Hubble.
//! * A record describes one direction, `SrcAddr` → `DstAddr`, as the packets went (replies
//!   are records of their own, not swapped): `Bytes`/`Packets` → `bytes_out`/
//!   `packets_out`; `bytes_in` = `packets_in` = 0.
//! * `reporter` from `FlowDirection` (relative to the observing node): 1 egress → src,
//!   0 ingress → dst, 2 inner (both ends on the node) → src; absent → unknown.
//!   `IfDirection`/`IfDirections` describe the interface (a pod's egress is its veth's
//!   ingress), not the flow, so they are not used.
//! * `action`: deny when any packet was dropped (`PktDropPackets` > 0, `drop_reason` =
//!   `PktDropLatestDropCause`) or an `acl` network event dropped it; allow when an `acl`
//!   event allowed it; otherwise unknown — NetObserv has no verdict of its own.
//! * `NetworkEvents` with `Feature` `acl` → `policies_enforced` (`Type` → kind,
//!   `Namespace`, `Name`, `Action`: allow/allow-related/allow-stateless → allow,
//!   drop → deny, pass → pass). Other features are skipped.
//! * TCP `Flags` (the OR of the flags seen, plus NetObserv's SYN_ACK 0x100, FIN_ACK 0x200,
//!   RST_ACK 0x400): a SYN without SYN_ACK → `connections_started` = 1; a FIN or RST (or
//!   their _ACK forms) → `connections_completed` = 1.
//! * Hints: `*K8S_Name`, `*K8S_Namespace`, `*K8S_Type` → kind (else inferred from
//!   `*K8S_OwnerType`: `Node`, `Service` and `Pod` name themselves, any other owner is a
//!   workload whose endpoint is a pod), `*K8S_OwnerType`/`*K8S_OwnerName` → workload of a
//!   pod. `K8S_ClusterName` → `cluster_id`.
//! * Dropped: MACs, interfaces, `Etype`, `Dscp`, `AgentIP` (an address, not a node name),
//!   `*K8S_HostIP`/`HostName`/`Zone`, RTT, and the DNS fields (`DnsId`, `DnsFlags`,
//!   `DnsFlagsResponseCode`, `DnsLatencyMs`, `DnsErrno`): NetObserv records no answer
//!   addresses, so there is no `dns` observation to make.

use flowlake_runtime::Rejection;
use flowlake_schemas::{Action, EndpointHint, FlowEvent, PolicyHit, Reporter};
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::fields;
use super::json::{self, Int, Str};
use super::spec::{Detection, FormatSpec};
use super::unsupported::LEGACY_GOFLOW2;
use crate::reject;

/// One flowlogs-pipeline record: the fields ingest reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawRecord<'a> {
    #[serde(borrow, rename = "SrcAddr")]
    src_addr: Option<Str<'a>>,
    #[serde(borrow, rename = "DstAddr")]
    dst_addr: Option<Str<'a>>,
    #[serde(rename = "SrcPort")]
    src_port: Option<Int>,
    #[serde(rename = "DstPort")]
    dst_port: Option<Int>,
    #[serde(rename = "Proto")]
    proto: Option<Int>,
    #[serde(rename = "IcmpType")]
    icmp_type: Option<Int>,
    #[serde(rename = "Bytes")]
    bytes: Int,
    #[serde(rename = "Packets")]
    packets: Int,
    #[serde(rename = "Flags")]
    flags: Int,
    #[serde(rename = "TimeFlowStartMs")]
    time_flow_start_ms: Option<Int>,
    #[serde(rename = "TimeFlowEndMs")]
    time_flow_end_ms: Option<Int>,
    #[serde(rename = "FlowDirection")]
    flow_direction: Option<Int>,
    #[serde(borrow, rename = "K8S_ClusterName")]
    cluster_name: Option<Str<'a>>,
    #[serde(borrow, rename = "SrcK8S_Name")]
    src_name: Option<Str<'a>>,
    #[serde(borrow, rename = "SrcK8S_Namespace")]
    src_namespace: Option<Str<'a>>,
    #[serde(borrow, rename = "SrcK8S_Type")]
    src_type: Option<Str<'a>>,
    #[serde(borrow, rename = "SrcK8S_OwnerName")]
    src_owner_name: Option<Str<'a>>,
    #[serde(borrow, rename = "SrcK8S_OwnerType")]
    src_owner_type: Option<Str<'a>>,
    #[serde(borrow, rename = "DstK8S_Name")]
    dst_name: Option<Str<'a>>,
    #[serde(borrow, rename = "DstK8S_Namespace")]
    dst_namespace: Option<Str<'a>>,
    #[serde(borrow, rename = "DstK8S_Type")]
    dst_type: Option<Str<'a>>,
    #[serde(borrow, rename = "DstK8S_OwnerName")]
    dst_owner_name: Option<Str<'a>>,
    #[serde(borrow, rename = "DstK8S_OwnerType")]
    dst_owner_type: Option<Str<'a>>,
    #[serde(rename = "PktDropPackets")]
    pkt_drop_packets: Int,
    #[serde(borrow, rename = "PktDropLatestDropCause")]
    pkt_drop_latest_drop_cause: Option<Str<'a>>,
    #[serde(borrow, rename = "NetworkEvents")]
    network_events: Option<Vec<RawNetworkEvent<'a>>>,
    // The legacy goflow2 / goflow-kube shape, recognised to be rejected by name.
    #[serde(rename = "TimeFlowStart")]
    time_flow_start: Option<IgnoredAny>,
    #[serde(rename = "SamplerAddress")]
    sampler_address: Option<IgnoredAny>,
}

/// One entry of `NetworkEvents` (OVN-Kubernetes observability samples).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawNetworkEvent<'a> {
    #[serde(borrow, rename = "Feature")]
    feature: Option<Str<'a>>,
    #[serde(borrow, rename = "Type")]
    r#type: Option<Str<'a>>,
    #[serde(borrow, rename = "Action")]
    action: Option<Str<'a>>,
    #[serde(borrow, rename = "Name")]
    name: Option<Str<'a>>,
    #[serde(borrow, rename = "Namespace")]
    namespace: Option<Str<'a>>,
}

/// NetworkEvents feature whose events are policy verdicts.
const ACL_FEATURE: &str = "acl";

/// IANA protocol numbers with ICMP semantics (type in `dst_port`).
const ICMP_V4: i32 = 1;
const ICMP_V6: i32 = 58;
const TCP: i32 = 6;

/// TCP flag bits, and NetObserv's own bits for a flag seen together with ACK.
const TCP_FIN: i64 = 0x01;
const TCP_SYN: i64 = 0x02;
const TCP_RST: i64 = 0x04;
const NETOBSERV_SYN_ACK: i64 = 0x100;
const NETOBSERV_FIN_ACK: i64 = 0x200;
const NETOBSERV_RST_ACK: i64 = 0x400;

/// The format's name (`ingest.format`, the `flowlake.format` header, `source_format`).
pub const NAME: &str = "netobserv";

/// NetObserv's registration in [`super::FORMATS`]: its keys are tried after Goldmane's,
/// before Enterprise's (a legacy goflow2 record, which has some of them, is named before).
pub const SPEC: FormatSpec = FormatSpec {
    name: NAME,
    detection: Detection::by_keys(KEYS, 20),
    decode: |payload, _| decode(payload),
};

/// Keys of a NetObserv (flowlogs-pipeline) record; PascalCase, so no other format has them
/// at its top level.
const KEYS: &[&str] = &[
    "SrcAddr",
    "DstAddr",
    "SrcPort",
    "DstPort",
    "Proto",
    "TimeFlowStartMs",
    "TimeFlowEndMs",
    "TimeReceived",
    "TimeFlowRttNs",
    "Bytes",
    "Packets",
    "Etype",
    "AgentIP",
    "SrcMac",
    "DstMac",
    "IfDirection",
    "IfDirections",
    "Interface",
    "Interfaces",
    "FlowDirection",
    "SrcK8S_Name",
    "DstK8S_Name",
    "SrcK8S_Namespace",
    "DstK8S_Namespace",
    "SrcK8S_OwnerType",
    "DstK8S_OwnerType",
    "SrcK8S_HostIP",
    "DstK8S_HostIP",
    "K8S_ClusterName",
    "PktDropPackets",
    "NetworkEvents",
];

/// Decodes one flowlogs-pipeline record.
pub fn decode(payload: &[u8]) -> Result<FlowEvent, Rejection> {
    let record: RawRecord<'_> = json::parse(payload, "netobserv record")?;
    let start_time = match record.time_flow_start_ms {
        Some(Int(millis)) if millis != 0 => fields::unix_millis(millis, "TimeFlowStartMs")?,
        _ if record.time_flow_start.is_some() || record.sampler_address.is_some() => {
            return Err(Rejection::new(reject::UNKNOWN_FORMAT, LEGACY_GOFLOW2));
        }
        _ => {
            return Err(Rejection::new(
                reject::MISSING_FIELD,
                "`TimeFlowStartMs`: netobserv record has no start time",
            ));
        }
    };
    let end_time = match record.time_flow_end_ms {
        Some(Int(millis)) if millis != 0 => fields::unix_millis(millis, "TimeFlowEndMs")?,
        _ => start_time,
    };
    let protocol = record
        .proto
        .map(|Int(p)| fields::protocol(p, "Proto"))
        .transpose()?;
    let (src_port, dst_port) = ports(&record, protocol)?;
    let dropped = fields::counter(record.pkt_drop_packets.0, "PktDropPackets")?;
    let policies_enforced = acl_hits(record.network_events.as_deref());
    let action = if dropped > 0 || policies_enforced.iter().any(|p| p.action == Action::Deny) {
        Action::Deny
    } else if policies_enforced.iter().any(|p| p.action == Action::Allow) {
        Action::Allow
    } else {
        Action::Unknown
    };
    let drop_reason = if dropped > 0 {
        text(record.pkt_drop_latest_drop_cause.as_ref())
    } else {
        None
    };
    let is_tcp = protocol == Some(TCP);
    let flags = record.flags.0;
    let started = is_tcp && flags & TCP_SYN != 0 && flags & NETOBSERV_SYN_ACK == 0;
    let completed =
        is_tcp && flags & (TCP_FIN | TCP_RST | NETOBSERV_FIN_ACK | NETOBSERV_RST_ACK) != 0;

    Ok(FlowEvent {
        event_id: fields::content_hash(payload),
        cluster_id: text(record.cluster_name.as_ref()).unwrap_or_default(),
        source_format: NAME.to_owned(),
        reporter_node: None,
        reporter: reporter(record.flow_direction)?,
        start_time,
        end_time,
        src_ip: fields::ip(record.src_addr.as_ref().map(Str::as_str), "SrcAddr")?,
        dst_ip: fields::ip(record.dst_addr.as_ref().map(Str::as_str), "DstAddr")?,
        src_port,
        dst_port,
        protocol,
        action,
        drop_reason,
        bytes_out: fields::counter(record.bytes.0, "Bytes")?,
        bytes_in: 0,
        packets_out: fields::counter(record.packets.0, "Packets")?,
        packets_in: 0,
        connections_started: i64::from(started),
        connections_completed: i64::from(completed),
        connections_live: 0,
        policies_enforced,
        policies_pending: Vec::new(),
        src_hint: hint(Endpoint {
            name: record.src_name.as_ref(),
            namespace: record.src_namespace.as_ref(),
            kind: record.src_type.as_ref(),
            owner_name: record.src_owner_name.as_ref(),
            owner_type: record.src_owner_type.as_ref(),
        }),
        dst_hint: hint(Endpoint {
            name: record.dst_name.as_ref(),
            namespace: record.dst_namespace.as_ref(),
            kind: record.dst_type.as_ref(),
            owner_name: record.dst_owner_name.as_ref(),
            owner_type: record.dst_owner_type.as_ref(),
        }),
        dst_dns_names: Vec::new(),
        dns: None,
    })
}

fn text(value: Option<&Str<'_>>) -> Option<String> {
    fields::text(value.map(Str::as_str))
}

/// `(src_port, dst_port)`: the ports, or for ICMP (no ports) the type as `dst_port`.
fn ports(
    record: &RawRecord<'_>,
    protocol: Option<i32>,
) -> Result<(Option<i32>, Option<i32>), Rejection> {
    if matches!(protocol, Some(ICMP_V4 | ICMP_V6)) {
        let icmp_type = match record.icmp_type {
            Some(Int(t)) => Some(u8::try_from(t).map(i32::from).map_err(|_| {
                Rejection::new(
                    reject::INVALID_FIELD,
                    format!("`IcmpType`: {t} is outside 0..=255"),
                )
            })?),
            None => None,
        };
        return Ok((None, icmp_type));
    }
    let port = |value: Option<Int>, field| value.map(|Int(p)| fields::port(p, field)).transpose();
    Ok((
        port(record.src_port, "SrcPort")?,
        port(record.dst_port, "DstPort")?,
    ))
}

/// `FlowDirection`: 0 ingress, 1 egress, 2 inner, relative to the observing node.
fn reporter(direction: Option<Int>) -> Result<Reporter, Rejection> {
    match direction {
        None => Ok(Reporter::Unknown),
        Some(Int(0)) => Ok(Reporter::Dst),
        Some(Int(1 | 2)) => Ok(Reporter::Src),
        Some(Int(other)) => Err(Rejection::new(
            reject::INVALID_FIELD,
            format!("`FlowDirection`: {other} is not 0 (ingress), 1 (egress) or 2 (inner)"),
        )),
    }
}

fn acl_hits(events: Option<&[RawNetworkEvent<'_>]>) -> Vec<PolicyHit> {
    events
        .unwrap_or_default()
        .iter()
        .filter(|e| {
            e.feature
                .as_ref()
                .is_some_and(|f| f.as_str() == ACL_FEATURE)
        })
        .map(|e| PolicyHit {
            kind: text(e.r#type.as_ref()).unwrap_or_default(),
            tier: None,
            namespace: text(e.namespace.as_ref()),
            name: text(e.name.as_ref()).unwrap_or_default(),
            action: match e.action.as_ref().map(Str::as_str) {
                Some("allow" | "allow-related" | "allow-stateless") => Action::Allow,
                Some("drop") => Action::Deny,
                Some("pass") => Action::Pass,
                _ => Action::Unknown,
            },
            rule_index: None,
        })
        .collect()
}

/// One side's Kubernetes fields.
struct Endpoint<'r, 'a> {
    name: Option<&'r Str<'a>>,
    namespace: Option<&'r Str<'a>>,
    kind: Option<&'r Str<'a>>,
    owner_name: Option<&'r Str<'a>>,
    owner_type: Option<&'r Str<'a>>,
}

/// Owner types that are the endpoint itself rather than a workload owning a pod.
const SELF_OWNED: &[&str] = &["Node", "Service", "Pod"];
const POD: &str = "Pod";

fn hint(endpoint: Endpoint<'_, '_>) -> Option<EndpointHint> {
    let owner_type = text(endpoint.owner_type);
    let kind = text(endpoint.kind).or_else(|| {
        owner_type.as_deref().map(|owner| {
            if SELF_OWNED.contains(&owner) {
                owner.to_owned()
            } else {
                POD.to_owned()
            }
        })
    });
    let workload = kind.as_deref() == Some(POD)
        && owner_type
            .as_deref()
            .is_some_and(|o| !SELF_OWNED.contains(&o));
    let hint = EndpointHint {
        kind,
        namespace: text(endpoint.namespace),
        name: text(endpoint.name),
        workload_kind: if workload { owner_type } else { None },
        workload_name: if workload {
            text(endpoint.owner_name)
        } else {
            None
        },
        ..EndpointHint::default()
    };
    (hint != EndpointHint::default()).then_some(hint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accepted;
    use serde_json::{Map, Value, json};

    use crate::test_decode::{self, TestError, ctx};

    type TestResult = Result<(), TestError>;

    const LOKI_LINES: &str =
        include_str!("../../../tests/fixtures/netobserv/loki_lines_flow_records.jsonl");
    const LEGACY: &str =
        include_str!("../../../tests/fixtures/netobserv/flp_benchmark_legacy_goflow2_20.jsonl");
    const LOKI_RESPONSE: &str = include_str!(
        "../../../tests/fixtures/netobserv/console_mock_loki_query_range_flow_records.json"
    );
    const LOKI_RESPONSE_DROPPED: &str = include_str!(
        "../../../tests/fixtures/netobserv/console_mock_loki_query_range_has_dropped.json"
    );

    fn canonical(message: &str) -> Result<Value, TestError> {
        test_decode::canonical(message, NAME)
    }

    fn rejection(message: &str) -> Result<(&'static str, String), TestError> {
        test_decode::rejection(message, Some(NAME))
    }

    fn line(n: usize) -> Result<&'static str, String> {
        LOKI_LINES
            .lines()
            .nth(n)
            .ok_or_else(|| format!("no line {n}"))
    }

    /// What a user replaying Loki does: every `values[][1]` line of every stream, alone and
    /// with the stream's labels merged in (labels win: Loki removed them from the line).
    fn loki_records(response: &str) -> Result<Vec<(String, String)>, Box<dyn std::error::Error>> {
        let response: Value = serde_json::from_str(response)?;
        let streams = response["data"]["result"]
            .as_array()
            .ok_or("no data.result")?;
        let mut records = Vec::new();
        for stream in streams {
            let labels = stream["stream"].as_object().ok_or("no stream labels")?;
            for value in stream["values"].as_array().ok_or("no values")? {
                let line = value[1].as_str().ok_or("value without a line")?;
                let mut merged: Map<String, Value> = serde_json::from_str(line)?;
                merged.extend(labels.clone());
                records.push((line.to_owned(), serde_json::to_string(&merged)?));
            }
        }
        Ok(records)
    }

    #[test]
    fn every_loki_line_decodes() -> TestResult {
        let ctx = ctx()?;
        let mut decoded = 0;
        let mut with_drops = 0;
        for (i, line) in LOKI_LINES.lines().enumerate() {
            let (format, event) =
                crate::decode(line.as_bytes(), &ctx).map_err(|r| format!("line {}: {r}", i + 1))?;
            assert_eq!(format.name(), NAME);
            assert_eq!(
                event.reporter,
                Reporter::Unknown,
                "no FlowDirection in a line"
            );
            assert!(event.src_ip.is_some() && event.dst_ip.is_some());
            with_drops += usize::from(event.action == Action::Deny);
            decoded += 1;
        }
        assert_eq!((decoded, with_drops), (50, 1));
        Ok(())
    }

    #[test]
    fn loki_responses_decode_with_their_labels() -> TestResult {
        let ctx = ctx()?;
        for (response, expected, expected_denied) in
            [(LOKI_RESPONSE, 50, 1), (LOKI_RESPONSE_DROPPED, 50, 50)]
        {
            let records = loki_records(response)?;
            assert_eq!(records.len(), expected);
            let mut denied = 0;
            for (line, merged) in &records {
                accepted(crate::decode(line.as_bytes(), &ctx))?;
                let (format, event) = accepted(crate::decode(merged.as_bytes(), &ctx))?;
                assert_eq!(format.name(), NAME);
                assert_eq!(event.cluster_id, "test-cluster");
                assert_ne!(event.reporter, Reporter::Unknown, "{merged}");
                if event.action == Action::Deny {
                    assert!(event.drop_reason.is_some(), "{merged}");
                    denied += 1;
                }
            }
            assert_eq!(denied, expected_denied);
        }
        // The lines of the first response are the JSONL fixture, in order.
        let lines: Vec<String> = loki_records(LOKI_RESPONSE)?
            .into_iter()
            .map(|(line, _)| line)
            .collect();
        assert_eq!(lines, LOKI_LINES.lines().collect::<Vec<_>>());
        Ok(())
    }

    #[test]
    fn merged_labels_fill_hints_cluster_and_reporter() -> TestResult {
        let records = loki_records(LOKI_RESPONSE)?;
        // Stream 1, line 1: the node talking to the API server's address.
        let value = canonical(&records[0].1)?;
        assert_eq!(value["cluster_id"], "test-cluster");
        assert_eq!(value["reporter"], "src", "FlowDirection \"1\" (egress)");
        assert_eq!(
            value["src_hint"],
            json!({
                "kind": "Node", "namespace": null, "name": "ip-10-0-1-7.ec2.internal",
                "aggregated_name": null, "labels": {}, "workload_kind": null,
                "workload_name": null, "service_namespace": null, "service_name": null
            })
        );
        // The mock's cluster label is `test-cluster`, the default of these tests too: rename
        // it to see that it is the label that counts.
        let renamed = records[0].1.replace(
            r#""K8S_ClusterName":"test-cluster""#,
            r#""K8S_ClusterName":"prod-east""#,
        );
        assert_ne!(renamed, records[0].1);
        assert_eq!(canonical(&renamed)?["cluster_id"], "prod-east");
        Ok(())
    }

    /// Line 7: a pod's TCP flow to the API server with one packet dropped by the kernel.
    #[test]
    fn dropped_packets_deny() -> TestResult {
        let message = line(6)?;
        assert_eq!(
            canonical(message)?,
            json!({
                "event_id": fields::content_hash(message.as_bytes()),
                "cluster_id": "test-cluster",
                "source_format": "netobserv",
                "reporter_node": null,
                "reporter": "unknown",
                "start_time": "2024-02-15T15:44:26.459000Z",
                "end_time": "2024-02-15T15:44:27.121000Z",
                "src_ip": "10.128.0.7",
                "dst_ip": "172.20.0.1",
                "src_port": 48974,
                "dst_port": 6443,
                "protocol": 6,
                "action": "deny",
                "drop_reason": "SKB_DROP_REASON_TCP_INVALID_SEQUENCE",
                "bytes_out": 132,
                "bytes_in": 0,
                "packets_out": 2,
                "packets_in": 0,
                "connections_started": 0,
                "connections_completed": 0,
                "connections_live": 0,
                "policies_enforced": [],
                "policies_pending": [],
                "src_hint": {
                    "kind": "Pod", "namespace": null,
                    "name": "service-ca-operator-575d5cf89-s8pjm", "aggregated_name": null,
                    "labels": {}, "workload_kind": "Deployment", "workload_name": null,
                    "service_namespace": null, "service_name": null
                },
                "dst_hint": null,
                "dst_dns_names": [],
                "dns": null
            })
        );
        let (_, event) = accepted(crate::decode(message.as_bytes(), &ctx()?))?;
        assert_eq!(
            (event.start_time.as_micros(), event.end_time.as_micros()),
            (1_708_011_866_459_000, 1_708_011_867_121_000)
        );
        Ok(())
    }

    /// Line 8: ICMP (type 3) with an OVN ACL network event that allowed it.
    #[test]
    fn acl_network_event_allows() -> TestResult {
        let message = line(7)?;
        assert_eq!(
            canonical(message)?,
            json!({
                "event_id": fields::content_hash(message.as_bytes()),
                "cluster_id": "test-cluster",
                "source_format": "netobserv",
                "reporter_node": null,
                "reporter": "unknown",
                "start_time": "2024-02-15T15:44:27.121000Z",
                "end_time": "2024-02-15T15:44:27.121000Z",
                "src_ip": "10.0.1.140",
                "dst_ip": "10.0.1.7",
                "src_port": null,
                "dst_port": 3,
                "protocol": 1,
                "action": "allow",
                "drop_reason": null,
                "bytes_out": 226,
                "bytes_in": 0,
                "packets_out": 1,
                "packets_in": 0,
                "connections_started": 0,
                "connections_completed": 0,
                "connections_live": 0,
                "policies_enforced": [{
                    "kind": "NetpolNode", "tier": null, "namespace": null, "name": "",
                    "action": "allow", "rule_index": null
                }],
                "policies_pending": [],
                "src_hint": null,
                "dst_hint": {
                    "kind": "Node", "namespace": null, "name": "ip-10-0-1-7.ec2.internal",
                    "aggregated_name": null, "labels": {}, "workload_kind": null,
                    "workload_name": null, "service_namespace": null, "service_name": null
                },
                "dst_dns_names": [],
                "dns": null
            })
        );
        Ok(())
    }

    /// Line 38: a DNS answer from the cluster DNS service; the DNS fields are dropped.
    #[test]
    fn dns_flow() -> TestResult {
        let value = canonical(line(37)?)?;
        assert_eq!(
            (
                &value["src_ip"],
                &value["src_port"],
                &value["dst_port"],
                &value["protocol"]
            ),
            (&json!("172.30.0.10"), &json!(53), &json!(45556), &json!(17))
        );
        assert_eq!(value["src_hint"]["kind"], "Service");
        assert_eq!(value["src_hint"]["name"], "dns-default");
        assert_eq!(value["dst_hint"]["kind"], "Pod");
        assert_eq!(value["dst_hint"]["workload_kind"], "StatefulSet");
        assert_eq!(value["dns"], Value::Null);
        assert_eq!(
            (&value["bytes_out"], &value["packets_out"]),
            (&json!(247), &json!(1))
        );
        Ok(())
    }

    #[test]
    fn tcp_flags_count_connections() -> TestResult {
        let record = |flags: i64| {
            format!(
                r#"{{"TimeFlowStartMs":1708011866459,"SrcAddr":"10.0.0.1","DstAddr":"10.0.0.2","Proto":6,"SrcPort":1,"DstPort":2,"Flags":{flags}}}"#
            )
        };
        let counts = |flags| -> Result<(Value, Value), Box<dyn std::error::Error>> {
            let v = canonical(&record(flags))?;
            Ok((
                v["connections_started"].clone(),
                v["connections_completed"].clone(),
            ))
        };
        assert_eq!(counts(0x02)?, (json!(1), json!(0)), "SYN");
        assert_eq!(counts(0x12)?, (json!(1), json!(0)), "SYN, then ACK");
        assert_eq!(
            counts(0x112)?,
            (json!(0), json!(0)),
            "SYN_ACK: the server side"
        );
        assert_eq!(counts(0x11)?, (json!(0), json!(1)), "FIN");
        assert_eq!(
            counts(788)?,
            (json!(0), json!(1)),
            "RST_ACK, FIN_ACK, SYN_ACK"
        );
        Ok(())
    }

    #[test]
    fn legacy_goflow2_is_rejected_by_name() -> TestResult {
        let ctx = ctx()?;
        let mut rejected = 0;
        for line in LEGACY.lines() {
            let rejection = crate::decode(line.as_bytes(), &ctx).err();
            assert_eq!(
                rejection.map(|r| (r.class, r.message, r.format)),
                Some((reject::UNKNOWN_FORMAT, LEGACY_GOFLOW2.to_owned(), None)),
                "{line}"
            );
            rejected += 1;
        }
        assert_eq!(rejected, 20);
        // Pinned to netobserv: the decoder says the same, naming the format it read.
        let mut pinned = self::ctx()?;
        pinned.format = Some(crate::Format::named(NAME));
        let first = LEGACY.lines().next().ok_or("empty")?;
        let rejection = crate::decode(first.as_bytes(), &pinned).err();
        assert_eq!(
            rejection.map(|r| (r.class, r.format)),
            Some((reject::UNKNOWN_FORMAT, Some("netobserv")))
        );
        Ok(())
    }

    #[test]
    fn malformed_records_are_rejected_by_class() -> TestResult {
        let record = |fields: &str| {
            format!(r#"{{"TimeFlowStartMs":1708011866459,"SrcAddr":"10.0.0.1",{fields}}}"#)
        };
        let cases: Vec<(String, &str, &str)> = vec![
            (
                record(r#""DstAddr":"10.0.0.256""#),
                reject::INVALID_IP,
                "`DstAddr`: \"10.0.0.256\" is not an IP address",
            ),
            (
                record(r#""Proto":6,"DstPort":70000"#),
                reject::INVALID_PORT,
                "`DstPort`: 70000 is outside 0..=65535",
            ),
            (
                record(r#""Proto":300"#),
                reject::INVALID_PROTOCOL,
                "`Proto`: 300 is outside 0..=255",
            ),
            (
                record(r#""Proto":1,"IcmpType":256"#),
                reject::INVALID_FIELD,
                "`IcmpType`: 256 is outside 0..=255",
            ),
            (
                record(r#""FlowDirection":3"#),
                reject::INVALID_FIELD,
                "`FlowDirection`: 3 is not 0 (ingress), 1 (egress) or 2 (inner)",
            ),
            (
                record(r#""Bytes":[1]"#),
                reject::INVALID_FIELD,
                "netobserv record: field `Bytes`: invalid type: sequence, expected an integer \
                 or a decimal string at line 1 column 63",
            ),
            (
                record(r#""Packets":-1"#),
                reject::NEGATIVE_COUNTER,
                "`Packets`: -1 is negative",
            ),
            (
                record(r#""TimeFlowEndMs":1708011866458"#),
                reject::INVALID_TIME,
                "`end_time` 2024-02-15T15:44:26.458000Z is before `start_time` \
                 2024-02-15T15:44:26.459000Z",
            ),
            (
                r#"{"SrcAddr":"10.0.0.1","Bytes":1}"#.to_owned(),
                reject::MISSING_FIELD,
                "`TimeFlowStartMs`: netobserv record has no start time",
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
