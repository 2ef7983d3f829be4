//! Cilium Hubble flows (proto3 JSON of `flow.Flow`) → [`FlowEvent`].
//!
//! Accepted shapes: the `GetFlowsResponse` wrapper `{"flow":{…},"node_name":…,"time":…}`
//! that the exporter file and `hubble observe -o json|jsonpb` write, and the bare flow the
//! old `-o json` printed. Field names are the proto names Hubble writes (`IP`, `l4`,
//! `drop_reason_desc`, …); protobuf's lowerCamelCase JSON names (`isReply`, `nodeName`, …)
//! are accepted too, as every proto3 JSON reader must. Only the fields below are read;
//! everything else (ethernet, L7 HTTP, Summary, …) is skipped by the parser.
//!
//! Mapping, and what Hubble cannot tell us:
//! * `start_time` = `end_time` = `flow.time` (else the wrapper's `time`): a Hubble flow is
//!   one packet or one L7 message, observed at one instant.
//! * `event_id` = `flow.uuid`, else the xxh3-128 hash (hex) of the raw message, so that a
//!   replayed message gets the same id.
//! * Direction: every event points client → server. A reply (`is_reply`, or the deprecated
//!   `reply` of older Cilium) has its addresses, ports, identity hints, services and DNS
//!   names swapped, and counts as one packet *in* (`packets_in`); any other flow is one
//!   packet *out*. Hubble carries no byte counts: `bytes_out` = `bytes_in` = 0.
//! * TCP/UDP/SCTP ports are the ports; for ICMPv4/ICMPv6 `dst_port` holds the ICMP *type*
//!   of the observed message (8 echo request, 0 echo reply, 133 router solicitation, …)
//!   and `src_port` is empty; the type is not swapped on replies (it describes the message).
//! * `connections_started` = 1 for a TCP SYN without ACK that is not a reply;
//!   `connections_completed` = 1 for every TCP FIN or RST seen. Hubble reports packets, so
//!   both directions' FINs of one connection each count when both are observed.
//! * `reporter`: `traffic_direction` EGRESS → src (observed where the client lives),
//!   INGRESS → dst; it describes the connection, so it is not swapped on replies.
//! * `action`: FORWARDED, REDIRECTED, TRACED, TRANSLATED, AUDIT → allow (AUDIT: the packet
//!   passed; it would only have been dropped without audit mode); DROPPED → deny; ERROR
//!   or anything else → unknown. `drop_reason` = `drop_reason_desc`, else the deprecated
//!   numeric `drop_reason` as text.
//! * `cluster_id`: the `cluster_name` of the endpoint on the reporter's side, else of the
//!   source, else the configured default. Cilium's built-in cluster name `default` names
//!   no particular cluster and is ignored.
//! * Hints: namespace, `pod_name` → name, labels (`k8s:app=x` → `app`=`x`; other sources
//!   keep their prefix, `reserved:world` → `reserved:world`=""), `workloads[0]`, and the
//!   flow's `source_service`/`destination_service`. An endpoint whose labels are all
//!   `reserved:` (world, host, health, remote-node, …) is of kind `reserved`; one with a
//!   pod name of kind `pod`.
//! * Policies: `*_denied_by` → deny, `*_allowed_by` → allow, egress before ingress.
//! * `dns`: an L7 DNS response with answer addresses (`l7.dns.ips`).

use std::mem;

use flowlake_runtime::Rejection;
use flowlake_schemas::{
    Action, DnsObservation, EndpointHint, FlowEvent, Ip, Labels, PolicyHit, RESERVED_LABEL_PREFIX,
    Reporter, Timestamp,
};

use super::fields::content_hash;
use super::json::{self, ProtoEnum, Str};
use super::spec::{Detection, FormatSpec, KeyRule};
use crate::reject;

mod raw;

use raw::{RawEndpoint, RawFlow, RawIcmp, RawL4, RawL7, RawPolicy, RawService, RawTcpFlags};

/// IANA protocol numbers of the L4 protocols Hubble reports.
const TCP: i32 = 6;
const UDP: i32 = 17;
const SCTP: i32 = 132;
const ICMP_V4: i32 = 1;
const ICMP_V6: i32 = 58;

/// Cilium's default `cluster-name`: every cluster that did not set one reports it.
const CILIUM_DEFAULT_CLUSTER_NAME: &str = "default";

/// Label Cilium puts on a policy rule to say what kind of object it came from.
const POLICY_DERIVED_FROM_LABEL: &str = "k8s:io.cilium.k8s.policy.derived-from=";
/// Policy kind when a policy names none.
const DEFAULT_POLICY_KIND: &str = "CiliumNetworkPolicy";

/// The format's name (`ingest.format`, the `flowlake.format` header, `source_format`).
pub const NAME: &str = "hubble";

/// Hubble's registration in [`super::FORMATS`]. Its strong keys come after the agent
/// formats' (goflow2 records have `Type`); its weak keys need two, after canonical's.
pub const SPEC: FormatSpec = FormatSpec {
    name: NAME,
    detection: Detection {
        framing: &[],
        keys: KeyRule {
            keys: KEYS,
            needed: 1,
            precedence: 40,
        },
        shared_keys: &["Type"],
        weak_keys: KeyRule {
            keys: WEAK_KEYS,
            needed: 2,
            precedence: 20,
        },
    },
    decode: |payload, with| decode(payload, with.default_cluster_id),
};

/// Keys only a Hubble flow (or a Hubble `GetFlowsResponse`) has at its top level; the
/// lowerCamelCase ones are the same fields under protobuf's default JSON names.
const KEYS: &[&str] = &[
    "flow",
    "verdict",
    "IP",
    "l4",
    "Type",
    "event_type",
    "eventType",
    "is_reply",
    "isReply",
    "traffic_direction",
    "trafficDirection",
    "drop_reason_desc",
    "dropReasonDesc",
    "trace_observation_point",
    "Summary",
    "ethernet",
    "lost_events",
    "agent_event",
    "debug_event",
    "node_status",
];

/// Keys a bare Hubble flow shares with other shapes: two of them together say Hubble only
/// when nothing more specific did.
const WEAK_KEYS: &[&str] = &["source", "destination", "time", "node_name", "nodeName"];

/// Decodes one Hubble JSON message. `default_cluster_id` is used when no endpoint names
/// its cluster.
pub fn decode(payload: &[u8], default_cluster_id: &str) -> Result<FlowEvent, Rejection> {
    let top: RawFlow<'_> = json::parse(payload, "hubble flow")?;
    // Borrowed, not moved: a RawFlow is ~900 bytes.
    let (flow, path, wrapper_time, wrapper_node) = match top.flow.as_deref() {
        Some(inner) => (inner, "flow.", top.time.as_ref(), top.node_name.as_ref()),
        None => {
            if let Some(kind) = top.non_flow_response() {
                return Err(Rejection::new(
                    reject::NOT_A_FLOW,
                    format!("hubble response carries `{kind}`, not a flow"),
                ));
            }
            (&top, "", None, None)
        }
    };
    Mapper { path }.map(
        flow,
        payload,
        wrapper_time,
        wrapper_node,
        default_cluster_id,
    )
}

/// Field paths in rejections are those of the message: `flow.IP.source` in a wrapped flow,
/// `IP.source` in a bare one.
struct Mapper {
    path: &'static str,
}

impl Mapper {
    fn map(
        &self,
        flow: &RawFlow<'_>,
        payload: &[u8],
        wrapper_time: Option<&Str<'_>>,
        wrapper_node: Option<&Str<'_>>,
        default_cluster_id: &str,
    ) -> Result<FlowEvent, Rejection> {
        let time = self.time(flow.time.as_ref(), wrapper_time)?;
        let ip = flow.ip.as_ref();
        let mut src_ip = self.ip(ip.and_then(|ip| ip.source.as_ref()), "IP.source")?;
        let mut dst_ip = self.ip(ip.and_then(|ip| ip.destination.as_ref()), "IP.destination")?;
        let l4 = self.l4(flow.l4.as_ref())?;
        let reply = flow.is_reply.or(flow.reply).unwrap_or(false);
        let reporter = reporter(flow.traffic_direction.as_ref());

        let cluster_id = cluster_name(reporter, flow)
            .unwrap_or(default_cluster_id)
            .to_owned();
        let mut src_hint = endpoint_hint(flow.source.as_ref(), flow.source_service.as_ref());
        let mut dst_hint =
            endpoint_hint(flow.destination.as_ref(), flow.destination_service.as_ref());
        let (mut src_port, mut dst_port) = (l4.src_port, l4.dst_port);
        // The schema keeps the destination's DNS names only; a reply's destination is the
        // flow's source.
        let dst_names = if reply {
            &flow.source_names
        } else {
            &flow.destination_names
        };
        if reply {
            mem::swap(&mut src_ip, &mut dst_ip);
            mem::swap(&mut src_hint, &mut dst_hint);
            if !l4.icmp {
                mem::swap(&mut src_port, &mut dst_port);
            }
        }

        let is_tcp = l4.protocol == Some(TCP);
        let event_id = match flow.uuid.as_ref().filter(|u| !u.as_str().is_empty()) {
            Some(uuid) => uuid.to_owned_string(),
            None => content_hash(payload),
        };
        let mut policies_enforced = Vec::new();
        policies_enforced.extend(policies(&flow.egress_denied_by, Action::Deny));
        policies_enforced.extend(policies(&flow.egress_allowed_by, Action::Allow));
        policies_enforced.extend(policies(&flow.ingress_denied_by, Action::Deny));
        policies_enforced.extend(policies(&flow.ingress_allowed_by, Action::Allow));

        Ok(FlowEvent {
            event_id,
            cluster_id,
            source_format: NAME.to_owned(),
            reporter_node: flow
                .node_name
                .as_ref()
                .or(wrapper_node)
                .filter(|n| !n.as_str().is_empty())
                .map(Str::to_owned_string),
            reporter,
            start_time: time,
            end_time: time,
            src_ip,
            dst_ip,
            src_port,
            dst_port,
            protocol: l4.protocol,
            action: action(flow.verdict.as_ref()),
            drop_reason: drop_reason(flow.drop_reason_desc.as_ref(), flow.drop_reason),
            bytes_out: 0,
            bytes_in: 0,
            packets_out: i64::from(!reply),
            packets_in: i64::from(reply),
            connections_started: i64::from(is_tcp && l4.syn && !l4.ack && !reply),
            connections_completed: i64::from(is_tcp && (l4.fin || l4.rst)),
            connections_live: 0,
            policies_enforced,
            policies_pending: Vec::new(),
            src_hint,
            dst_hint,
            dst_dns_names: dst_names.iter().map(Str::to_owned_string).collect(),
            dns: self.dns(flow.l7.as_ref())?,
        })
    }

    fn field(&self, name: &str) -> String {
        format!("{}{name}", self.path)
    }

    fn time(
        &self,
        flow: Option<&Str<'_>>,
        wrapper: Option<&Str<'_>>,
    ) -> Result<Timestamp, Rejection> {
        // The field's name is only built for a rejection: this runs for every flow.
        let (text, in_wrapper) = match (flow, wrapper) {
            (Some(t), _) => (t.as_str(), false),
            (None, Some(t)) => (t.as_str(), true),
            (None, None) => {
                return Err(Rejection::new(
                    reject::MISSING_FIELD,
                    format!("`{}`: hubble flow has no time", self.field("time")),
                ));
            }
        };
        Timestamp::parse_rfc3339(text).map_err(|e| {
            let field = if in_wrapper {
                "time".to_owned()
            } else {
                self.field("time")
            };
            Rejection::new(
                reject::INVALID_TIME,
                format!("`{field}`: {text:?} is not an RFC 3339 time: {e}"),
            )
        })
    }

    fn ip(&self, text: Option<&Str<'_>>, name: &str) -> Result<Option<Ip>, Rejection> {
        let Some(text) = text.map(Str::as_str).filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        text.parse::<Ip>()
            .map(|ip| Some(ip.canonical()))
            .map_err(|_| {
                Rejection::new(
                    reject::INVALID_IP,
                    format!("`{}`: {text:?} is not an IP address", self.field(name)),
                )
            })
    }

    /// `value` as the port `l4.<protocol>.<side>` (named only in a rejection: this runs
    /// twice for every flow).
    fn port(&self, value: i64, protocol: &str, side: &str) -> Result<i32, Rejection> {
        match i32::try_from(value) {
            Ok(port) if (0..=65_535).contains(&port) => Ok(port),
            _ => Err(Rejection::new(
                reject::INVALID_PORT,
                format!(
                    "`{}`: {value} is outside 0..=65535",
                    self.field(&format!("l4.{protocol}.{side}"))
                ),
            )),
        }
    }

    fn l4(&self, l4: Option<&RawL4>) -> Result<L4, Rejection> {
        let Some(l4) = l4 else {
            return Ok(L4::default());
        };
        let ports = |protocol, name: &str, (src, dst): (i64, i64), flags: Option<&RawTcpFlags>| {
            let flags = flags.copied().unwrap_or_default();
            Ok::<_, Rejection>(L4 {
                protocol: Some(protocol),
                src_port: Some(self.port(src, name, "source_port")?),
                dst_port: Some(self.port(dst, name, "destination_port")?),
                icmp: false,
                syn: flags.syn,
                ack: flags.ack,
                fin: flags.fin,
                rst: flags.rst,
            })
        };
        let icmp = |protocol, name: &str, icmp: &RawIcmp| match u8::try_from(icmp.r#type) {
            Ok(icmp_type) => Ok(L4 {
                protocol: Some(protocol),
                dst_port: Some(i32::from(icmp_type)),
                icmp: true,
                ..L4::default()
            }),
            Err(_) => Err(Rejection::new(
                reject::INVALID_FIELD,
                format!(
                    "`{}`: ICMP type {} is outside 0..=255",
                    self.field(&format!("l4.{name}.type")),
                    icmp.r#type
                ),
            )),
        };
        if let Some(tcp) = &l4.tcp {
            let tcp_ports = (tcp.source_port, tcp.destination_port);
            ports(TCP, "TCP", tcp_ports, tcp.flags.as_ref())
        } else if let Some(udp) = &l4.udp {
            ports(UDP, "UDP", (udp.source_port, udp.destination_port), None)
        } else if let Some(sctp) = &l4.sctp {
            ports(
                SCTP,
                "SCTP",
                (sctp.source_port, sctp.destination_port),
                None,
            )
        } else if let Some(v4) = &l4.icmp_v4 {
            icmp(ICMP_V4, "ICMPv4", v4)
        } else if let Some(v6) = &l4.icmp_v6 {
            icmp(ICMP_V6, "ICMPv6", v6)
        } else {
            Ok(L4::default())
        }
    }

    fn dns(&self, l7: Option<&RawL7<'_>>) -> Result<Option<DnsObservation>, Rejection> {
        let Some(dns) = l7.and_then(|l7| l7.dns.as_ref()) else {
            return Ok(None);
        };
        if dns.ips.is_empty() {
            // A query, or an answer without addresses (NXDOMAIN, no AAAA): nothing learned.
            return Ok(None);
        }
        let ips = dns
            .ips
            .iter()
            .enumerate()
            .map(|(i, ip)| {
                ip.as_str().parse::<Ip>().map(Ip::canonical).map_err(|_| {
                    Rejection::new(
                        reject::INVALID_IP,
                        format!(
                            "`{}`: {:?} is not an IP address",
                            self.field(&format!("l7.dns.ips[{i}]")),
                            ip.as_str()
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let query = dns.query.as_ref().map(Str::as_str).unwrap_or_default();
        Ok(Some(DnsObservation {
            query: query.strip_suffix('.').unwrap_or(query).to_owned(),
            ips,
            ttl: dns.ttl,
        }))
    }
}

/// The L4 facts of one flow.
#[derive(Default)]
struct L4 {
    protocol: Option<i32>,
    src_port: Option<i32>,
    dst_port: Option<i32>,
    icmp: bool,
    syn: bool,
    ack: bool,
    fin: bool,
    rst: bool,
}

fn enum_is(value: Option<&ProtoEnum<'_>>, name: &str, number: i64) -> bool {
    match value {
        Some(ProtoEnum::Name(n)) => n.as_str() == name,
        Some(ProtoEnum::Number(n)) => *n == number,
        None => false,
    }
}

fn reporter(direction: Option<&ProtoEnum<'_>>) -> Reporter {
    if enum_is(direction, "EGRESS", 2) {
        Reporter::Src
    } else if enum_is(direction, "INGRESS", 1) {
        Reporter::Dst
    } else {
        Reporter::Unknown
    }
}

fn action(verdict: Option<&ProtoEnum<'_>>) -> Action {
    // Numbers are those of flow.proto's `Verdict`.
    match verdict {
        Some(ProtoEnum::Name(name)) => match name.as_str() {
            "FORWARDED" | "REDIRECTED" | "TRACED" | "TRANSLATED" | "AUDIT" => Action::Allow,
            "DROPPED" => Action::Deny,
            _ => Action::Unknown,
        },
        Some(ProtoEnum::Number(1 | 4..=7)) => Action::Allow,
        Some(ProtoEnum::Number(2)) => Action::Deny,
        _ => Action::Unknown,
    }
}

fn drop_reason(desc: Option<&ProtoEnum<'_>>, legacy: Option<u64>) -> Option<String> {
    match desc {
        Some(ProtoEnum::Name(name))
            if !name.as_str().is_empty() && name.as_str() != "DROP_REASON_UNKNOWN" =>
        {
            Some(name.to_owned_string())
        }
        Some(ProtoEnum::Number(n)) if *n != 0 => Some(n.to_string()),
        _ => legacy.filter(|n| *n != 0).map(|n| n.to_string()),
    }
}

fn cluster_name<'f>(reporter: Reporter, flow: &'f RawFlow<'_>) -> Option<&'f str> {
    let name = |ep: Option<&'f RawEndpoint<'_>>| {
        ep.and_then(|e| e.cluster_name.as_ref())
            .map(Str::as_str)
            .filter(|n| !n.is_empty() && *n != CILIUM_DEFAULT_CLUSTER_NAME)
    };
    let reporter_side = match reporter {
        Reporter::Src => name(flow.source.as_ref()),
        Reporter::Dst => name(flow.destination.as_ref()),
        Reporter::Unknown => None,
    };
    reporter_side.or_else(|| name(flow.source.as_ref()))
}

fn some_text(value: Option<&Str<'_>>) -> Option<String> {
    value
        .map(Str::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn endpoint_hint(
    endpoint: Option<&RawEndpoint<'_>>,
    service: Option<&RawService<'_>>,
) -> Option<EndpointHint> {
    let mut hint = EndpointHint::default();
    if let Some(ep) = endpoint {
        hint.namespace = some_text(ep.namespace.as_ref());
        hint.name = some_text(ep.pod_name.as_ref());
        hint.labels = labels(&ep.labels);
        if let Some(workload) = ep.workloads.first() {
            hint.workload_name = some_text(workload.name.as_ref());
            hint.workload_kind = some_text(workload.kind.as_ref());
        }
        let only_reserved = !ep.labels.is_empty()
            && ep
                .labels
                .iter()
                .all(|l| l.as_str().starts_with(RESERVED_LABEL_PREFIX));
        hint.kind = if only_reserved {
            Some("reserved".to_owned())
        } else if hint.name.is_some() {
            Some("pod".to_owned())
        } else {
            None
        };
    }
    if let Some(svc) = service {
        hint.service_namespace = some_text(svc.namespace.as_ref());
        hint.service_name = some_text(svc.name.as_ref());
    }
    (hint != EndpointHint::default()).then_some(hint)
}

/// Cilium labels are `source:key=value`. Kubernetes labels (`k8s:`) lose their source, so
/// they read like the pod's labels; any other source keeps it, so that `reserved:world`
/// (no value) or `cidr:…` cannot be mistaken for a pod label.
fn labels(raw: &[Str<'_>]) -> Labels {
    // Sized up front: a flow's labels are its largest part, built for every flow.
    let text_bytes = raw.iter().map(|label| label.as_str().len()).sum();
    let mut labels = Labels::with_capacity(raw.len(), text_bytes);
    labels.extend(raw.iter().map(|label| {
        let label = label.as_str();
        let label = label.strip_prefix("k8s:").unwrap_or(label);
        label.split_once('=').unwrap_or((label, ""))
    }));
    labels
}

fn policies<'p>(raw: &'p [RawPolicy<'_>], action: Action) -> impl Iterator<Item = PolicyHit> + 'p {
    raw.iter().map(move |p| {
        let derived_from = p
            .labels
            .iter()
            .find_map(|l| l.as_str().strip_prefix(POLICY_DERIVED_FROM_LABEL));
        let kind = some_text(p.kind.as_ref())
            .or_else(|| derived_from.map(str::to_owned))
            .unwrap_or_else(|| DEFAULT_POLICY_KIND.to_owned());
        PolicyHit {
            kind,
            tier: None,
            namespace: some_text(p.namespace.as_ref()),
            name: p
                .name
                .as_ref()
                .map(Str::to_owned_string)
                .unwrap_or_default(),
            action,
            rule_index: None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accepted;
    use serde_json::{Value, json};

    use crate::test_decode::{self, TestError, ctx};

    type TestResult = Result<(), TestError>;

    macro_rules! fixture {
        ($name:literal) => {
            (
                $name,
                include_str!(concat!("../../../tests/fixtures/hubble/", $name)),
            )
        };
    }

    const JSONL: [(&str, &str); 12] = [
        fixture!("cilium_docs_export_dropped.jsonl"),
        fixture!("hubble_cli_printer_json_legacy_expected.jsonl"),
        fixture!("hubble_cli_printer_jsonpb_expected.jsonl"),
        fixture!("hubble_otel_basic_10.jsonl"),
        fixture!("hubble_otel_dns_5.jsonl"),
        fixture!("hubble_otel_dns_selected.jsonl"),
        fixture!("hubble_otel_http_5.jsonl"),
        fixture!("hubble_otel_http_selected.jsonl"),
        fixture!("hubble_otel_icmpv4_18.jsonl"),
        fixture!("hubble_otel_l7_redirected_selected.jsonl"),
        fixture!("hubble_otel_tcp_selected.jsonl"),
        fixture!("hubble_otel_udp_selected.jsonl"),
    ];
    const COMPACT: (&str, &str) = fixture!("cilium_docs_observe_compact.txt");

    fn line(file: &str, index: usize) -> Result<&'static str, String> {
        let (_, text) = JSONL
            .iter()
            .find(|(name, _)| *name == file)
            .ok_or_else(|| format!("no fixture {file}"))?;
        text.lines()
            .nth(index)
            .ok_or_else(|| format!("{file} has no line {index}"))
    }

    /// The canonical JSON `flowlake decode` prints for one message.
    fn canonical(message: &str) -> Result<Value, TestError> {
        test_decode::canonical(message, NAME)
    }

    fn rejection(message: &str) -> Result<(&'static str, String), TestError> {
        test_decode::rejection(message, None)
    }

    fn hash(message: &str) -> String {
        content_hash(message.as_bytes())
    }

    #[test]
    fn every_fixture_line_decodes() -> TestResult {
        let expected = [
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
        let ctx = ctx()?;
        let mut total = 0;
        for ((name, text), (expected_name, expected_count)) in JSONL.iter().zip(expected) {
            assert_eq!(*name, expected_name);
            let mut decoded = 0;
            for (i, line) in text.lines().enumerate() {
                match crate::decode(line.as_bytes(), &ctx) {
                    Ok((format, event)) => {
                        assert_eq!(format.name(), NAME, "{name}:{}", i + 1);
                        assert_eq!(event.packets_out + event.packets_in, 1);
                        decoded += 1;
                    }
                    Err(r) => panic!("{name}:{} rejected: {r}", i + 1),
                }
            }
            assert_eq!(decoded, expected_count, "{name}");
            total += decoded;
        }
        assert_eq!(total, 85);
        Ok(())
    }

    #[test]
    fn compact_text_is_rejected_with_a_hint() {
        let (name, text) = COMPACT;
        let ctx = ctx().ok();
        let mut rejected = 0;
        for line in text.lines() {
            let result = ctx.as_ref().map(|ctx| crate::decode(line.as_bytes(), ctx));
            assert_eq!(
                result.and_then(Result::err).map(|r| (r.class, r.message)),
                Some((
                    reject::NOT_JSON,
                    "looks like `hubble observe` compact text output; run hubble with -o json"
                        .to_owned()
                )),
                "{name}: {line}"
            );
            rejected += 1;
        }
        assert_eq!(rejected, 7);
    }

    /// The exporter's POLICY_DENIED drop (field-masked: no labels, no direction).
    #[test]
    fn policy_denied_drop() -> TestResult {
        let message = line("cilium_docs_export_dropped.jsonl", 1)?;
        assert_eq!(
            canonical(message)?,
            json!({
                "event_id": hash(message),
                "cluster_id": "test-cluster",
                "source_format": "hubble",
                "reporter_node": "kind-kind/kind-worker",
                "reporter": "unknown",
                "start_time": "2023-08-21T12:12:18.510175Z",
                "end_time": "2023-08-21T12:12:18.510175Z",
                "src_ip": "10.244.1.60",
                "dst_ip": "10.244.1.5",
                "src_port": 44916,
                "dst_port": 80,
                "protocol": 6,
                "action": "deny",
                "drop_reason": "POLICY_DENIED",
                "bytes_out": 0,
                "bytes_in": 0,
                "packets_out": 1,
                "packets_in": 0,
                "connections_started": 1,
                "connections_completed": 0,
                "connections_live": 0,
                "policies_enforced": [],
                "policies_pending": [],
                "src_hint": {
                    "kind": "pod", "namespace": "default", "name": "xwing",
                    "aggregated_name": null, "labels": {}, "workload_kind": null,
                    "workload_name": null, "service_namespace": null, "service_name": null
                },
                "dst_hint": {
                    "kind": "pod", "namespace": "default", "name": "deathstar-7848d6c4d5-th9v2",
                    "aggregated_name": null, "labels": {}, "workload_kind": null,
                    "workload_name": null, "service_namespace": null, "service_name": null
                },
                "dst_dns_names": [],
                "dns": null
            })
        );
        let (_, event) = accepted(crate::decode(message.as_bytes(), &ctx()?))?;
        assert_eq!(
            (event.start_time.as_micros(), event.end_time.as_micros()),
            (1_692_619_938_510_175, 1_692_619_938_510_175)
        );
        Ok(())
    }

    /// IPv6 neighbour discovery dropped before policy: ICMPv6 type 133 in `dst_port`.
    #[test]
    fn icmpv6_drop() -> TestResult {
        let value = canonical(line("cilium_docs_export_dropped.jsonl", 0)?)?;
        assert_eq!(value["src_ip"], "fe80::64d8:8aff:fe72:fc14");
        assert_eq!(value["dst_ip"], "ff02::2");
        assert_eq!(value["protocol"], 58);
        assert_eq!(
            (&value["src_port"], &value["dst_port"]),
            (&json!(null), &json!(133))
        );
        assert_eq!(value["action"], "deny");
        assert_eq!(value["drop_reason"], "INVALID_SOURCE_IP");
        // `"source":{}`: nothing known, no hint.
        assert_eq!(
            (&value["src_hint"], &value["dst_hint"]),
            (&json!(null), &json!(null))
        );
        Ok(())
    }

    /// A DNS answer seen on its way back: swapped to client → server, the answer kept.
    #[test]
    fn dns_response() -> TestResult {
        let message = line("hubble_otel_dns_selected.jsonl", 2)?;
        let dns_labels = |sa: &str, app: &str| {
            json!({
                "io.cilium.k8s.policy.cluster": "default",
                "io.cilium.k8s.policy.serviceaccount": sa,
                "io.kubernetes.pod.namespace": "kube-system",
                "k8s-app": app
            })
        };
        let hint = |name: &str, labels: Value| {
            json!({
                "kind": "pod", "namespace": "kube-system", "name": name,
                "aggregated_name": null, "labels": labels, "workload_kind": null,
                "workload_name": null, "service_namespace": null, "service_name": null
            })
        };
        assert_eq!(
            canonical(message)?,
            json!({
                "event_id": hash(message),
                "cluster_id": "test-cluster",
                "source_format": "hubble",
                "reporter_node": "gke-ilya-otel-demo-2-ilya-otel-demo-2-dac8cc20-hr0z",
                "reporter": "src",
                "start_time": "2021-10-04T11:22:26.599010Z",
                "end_time": "2021-10-04T11:22:26.599010Z",
                "src_ip": "10.156.2.2",
                "dst_ip": "10.156.2.3",
                "src_port": 59102,
                "dst_port": 53,
                "protocol": 6,
                "action": "allow",
                "drop_reason": null,
                "bytes_out": 0,
                "bytes_in": 0,
                "packets_out": 0,
                "packets_in": 1,
                "connections_started": 0,
                "connections_completed": 0,
                "connections_live": 0,
                "policies_enforced": [],
                "policies_pending": [],
                "src_hint": hint("node-local-dns-88zrp", dns_labels("node-local-dns", "node-local-dns")),
                "dst_hint": hint("kube-dns-b4f5c58c7-vnx5s", dns_labels("kube-dns", "kube-dns")),
                "dst_dns_names": [],
                "dns": {
                    "query": "istiod-istio-1611.istio-system.svc.cluster.local",
                    "ips": ["10.160.0.203"],
                    "ttl": 30
                }
            })
        );
        Ok(())
    }

    #[test]
    fn answers_without_addresses_teach_nothing() -> TestResult {
        // NXDOMAIN (rcode 3, ttl 4294967295) and an empty AAAA answer.
        for index in [0, 1, 4, 5] {
            let value = canonical(line("hubble_otel_dns_selected.jsonl", index)?)?;
            assert_eq!(value["dns"], json!(null), "line {}", index + 1);
        }
        Ok(())
    }

    /// A reply from the world to a pod (old `"reply":true`): the event points from the pod
    /// to the world's port 443, and the world endpoint is a `reserved` hint.
    #[test]
    fn reply_from_the_world_is_swapped() -> TestResult {
        let message = line("hubble_otel_basic_10.jsonl", 6)?;
        assert_eq!(
            canonical(message)?,
            json!({
                "event_id": hash(message),
                "cluster_id": "test-cluster",
                "source_format": "hubble",
                "reporter_node": "gke-ilya-otel-demo-1-ilya-otel-demo-1-6114bb84-zr1l",
                "reporter": "src",
                "start_time": "2021-06-16T16:52:13.596426Z",
                "end_time": "2021-06-16T16:52:13.596426Z",
                "src_ip": "10.0.2.13",
                "dst_ip": "35.246.31.234",
                "src_port": 36804,
                "dst_port": 443,
                "protocol": 6,
                "action": "allow",
                "drop_reason": null,
                "bytes_out": 0,
                "bytes_in": 0,
                "packets_out": 0,
                "packets_in": 1,
                "connections_started": 0,
                "connections_completed": 0,
                "connections_live": 0,
                "policies_enforced": [],
                "policies_pending": [],
                "src_hint": {
                    "kind": "pod",
                    "namespace": "kube-system",
                    "name": "event-exporter-gke-67986489c8-svnrf",
                    "aggregated_name": null,
                    "labels": {
                        "io.cilium.k8s.policy.cluster": "default",
                        "io.cilium.k8s.policy.serviceaccount": "event-exporter-sa",
                        "io.kubernetes.pod.namespace": "kube-system",
                        "k8s-app": "event-exporter",
                        "version": "v0.3.4"
                    },
                    "workload_kind": null, "workload_name": null,
                    "service_namespace": null, "service_name": null
                },
                "dst_hint": {
                    "kind": "reserved", "namespace": null, "name": null,
                    "aggregated_name": null, "labels": {"reserved:world": ""},
                    "workload_kind": null, "workload_name": null,
                    "service_namespace": null, "service_name": null
                },
                "dst_dns_names": [],
                "dns": null
            })
        );
        // The request packet of the same connection gives the same direction.
        let request = canonical(line("hubble_otel_basic_10.jsonl", 7)?)?;
        for field in [
            "src_ip", "dst_ip", "src_port", "dst_port", "src_hint", "dst_hint",
        ] {
            assert_eq!(request[field], canonical(message)?[field], "{field}");
        }
        assert_eq!(
            (&request["packets_out"], &request["packets_in"]),
            (&json!(1), &json!(0))
        );
        Ok(())
    }

    /// ICMPv4 echo between the host and the health endpoint: the type is the "port".
    #[test]
    fn icmpv4_echo() -> TestResult {
        let request = line("hubble_otel_icmpv4_18.jsonl", 0)?;
        let reserved = |label: &str| {
            json!({
                "kind": "reserved", "namespace": null, "name": null, "aggregated_name": null,
                "labels": {label: ""}, "workload_kind": null, "workload_name": null,
                "service_namespace": null, "service_name": null
            })
        };
        assert_eq!(
            canonical(request)?,
            json!({
                "event_id": hash(request),
                "cluster_id": "test-cluster",
                "source_format": "hubble",
                "reporter_node": "kind-control-plane",
                "reporter": "dst",
                "start_time": "2021-11-10T10:41:26.095336Z",
                "end_time": "2021-11-10T10:41:26.095336Z",
                "src_ip": "10.244.0.148",
                "dst_ip": "10.244.0.160",
                "src_port": null,
                "dst_port": 8,
                "protocol": 1,
                "action": "allow",
                "drop_reason": null,
                "bytes_out": 0,
                "bytes_in": 0,
                "packets_out": 1,
                "packets_in": 0,
                "connections_started": 0,
                "connections_completed": 0,
                "connections_live": 0,
                "policies_enforced": [],
                "policies_pending": [],
                "src_hint": reserved("reserved:host"),
                "dst_hint": reserved("reserved:health"),
                "dst_dns_names": [],
                "dns": null
            })
        );
        // The echo reply (`"ICMPv4":{}`: type 0 left out by proto3) is swapped back to
        // host → health, with its own type.
        let reply = canonical(line("hubble_otel_icmpv4_18.jsonl", 1)?)?;
        assert_eq!(reply["src_ip"], "10.244.0.148");
        assert_eq!(reply["dst_ip"], "10.244.0.160");
        assert_eq!(
            (&reply["src_port"], &reply["dst_port"]),
            (&json!(null), &json!(0))
        );
        assert_eq!(reply["src_hint"], reserved("reserved:host"));
        assert_eq!(reply["packets_in"], 1);
        Ok(())
    }

    /// The legacy bare flow and the jsonpb wrapper of the same flow decode alike.
    #[test]
    fn bare_and_wrapped_flows_agree() -> TestResult {
        let bare = line("hubble_cli_printer_json_legacy_expected.jsonl", 0)?;
        let wrapped = line("hubble_cli_printer_jsonpb_expected.jsonl", 0)?;
        let mut bare = canonical(bare)?;
        let mut wrapped = canonical(wrapped)?;
        assert_ne!(bare["event_id"], wrapped["event_id"]);
        bare["event_id"] = json!("");
        wrapped["event_id"] = json!("");
        assert_eq!(bare, wrapped);
        assert_eq!(bare["start_time"], "1970-01-01T00:20:34.567800Z");
        assert_eq!(bare["action"], "deny");
        assert_eq!(bare["reporter_node"], "k8s1");
        Ok(())
    }

    /// A flow with the fields the fixtures lack (newer Cilium: uuid, cluster_name,
    /// workloads, services, names, policy correlation), written from flow.proto. Also uses
    /// protobuf's lowerCamelCase names and numeric enums, which proto3 JSON allows.
    #[test]
    fn full_flow_from_the_proto() -> TestResult {
        let message = r#"{"flow":{"time":"2025-03-01T08:00:00.123456789Z","uuid":"6b0f-uuid",
            "verdict":2,"dropReason":133,"IP":{"source":"10.0.0.5","destination":"::ffff:10.96.0.10"},
            "l4":{"SCTP":{"sourcePort":3868,"destinationPort":3869}},
            "source":{"clusterName":"eu-1","namespace":"shop","podName":"web-5d4","labels":["k8s:app=web","container:x"],
                "workloads":[{"name":"web","kind":"Deployment"},{"name":"other","kind":"Job"}]},
            "destination":{"cluster_name":"eu-2","namespace":"db","labels":["reserved:world","reserved:kube-apiserver"]},
            "destination_service":{"namespace":"db","name":"pg"},
            "destinationNames":["pg.db.example"],
            "trafficDirection":"INGRESS",
            "egress_denied_by":[{"name":"deny-db","namespace":"shop",
                "labels":["k8s:io.cilium.k8s.policy.derived-from=NetworkPolicy"]}],
            "ingress_allowed_by":[{"name":"allow-all","kind":"CiliumClusterwideNetworkPolicy"},{"name":"x"}]},
            "node_name":"eu-1/node-a"}"#;
        let (_, event) = accepted(crate::decode(message.as_bytes(), &ctx()?))?;
        assert_eq!(
            event,
            FlowEvent {
                event_id: "6b0f-uuid".to_owned(),
                cluster_id: "eu-2".to_owned(),
                source_format: "hubble".to_owned(),
                reporter_node: Some("eu-1/node-a".to_owned()),
                reporter: Reporter::Dst,
                start_time: Timestamp::from_micros(1_740_816_000_123_456),
                end_time: Timestamp::from_micros(1_740_816_000_123_456),
                src_ip: Some("10.0.0.5".parse()?),
                dst_ip: Some("10.96.0.10".parse()?),
                src_port: Some(3868),
                dst_port: Some(3869),
                protocol: Some(132),
                action: Action::Deny,
                drop_reason: Some("133".to_owned()),
                packets_out: 1,
                policies_enforced: vec![
                    PolicyHit {
                        kind: "NetworkPolicy".to_owned(),
                        namespace: Some("shop".to_owned()),
                        name: "deny-db".to_owned(),
                        action: Action::Deny,
                        ..PolicyHit::default()
                    },
                    PolicyHit {
                        kind: "CiliumClusterwideNetworkPolicy".to_owned(),
                        name: "allow-all".to_owned(),
                        action: Action::Allow,
                        ..PolicyHit::default()
                    },
                    PolicyHit {
                        kind: "CiliumNetworkPolicy".to_owned(),
                        name: "x".to_owned(),
                        action: Action::Allow,
                        ..PolicyHit::default()
                    },
                ],
                src_hint: Some(EndpointHint {
                    kind: Some("pod".to_owned()),
                    namespace: Some("shop".to_owned()),
                    name: Some("web-5d4".to_owned()),
                    labels: [("app", "web"), ("container:x", "")]
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .into(),
                    workload_kind: Some("Deployment".to_owned()),
                    workload_name: Some("web".to_owned()),
                    ..EndpointHint::default()
                }),
                dst_hint: Some(EndpointHint {
                    kind: Some("reserved".to_owned()),
                    namespace: Some("db".to_owned()),
                    labels: [("reserved:kube-apiserver", ""), ("reserved:world", "")]
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .into(),
                    service_namespace: Some("db".to_owned()),
                    service_name: Some("pg".to_owned()),
                    ..EndpointHint::default()
                }),
                dst_dns_names: vec!["pg.db.example".to_owned()],
                ..FlowEvent::default()
            }
        );
        Ok(())
    }

    #[test]
    fn the_wrapper_fills_time_and_node() -> TestResult {
        let message =
            r#"{"flow":{"verdict":"FORWARDED"},"node_name":"n1","time":"2025-03-01T08:00:00Z"}"#;
        let (_, event) = accepted(crate::decode(message.as_bytes(), &ctx()?))?;
        assert_eq!(event.start_time, Timestamp::from_secs(1_740_816_000));
        assert_eq!(event.end_time, event.start_time);
        assert_eq!(event.reporter_node.as_deref(), Some("n1"));
        assert_eq!(
            (event.src_ip, event.protocol, event.action),
            (None, None, Action::Allow)
        );
        let bad = r#"{"flow":{"verdict":"FORWARDED"},"time":"soon"}"#;
        assert_eq!(
            rejection(bad)?,
            (
                reject::INVALID_TIME,
                "`time`: \"soon\" is not an RFC 3339 time: premature end of input".to_owned()
            )
        );
        Ok(())
    }

    #[test]
    fn replies_swap_names_and_services_too() -> TestResult {
        let message = r#"{"time":"2025-03-01T08:00:00Z","verdict":"FORWARDED","is_reply":true,
            "reply":false,"IP":{"source":"10.96.0.10","destination":"10.0.0.5"},
            "l4":{"TCP":{"source_port":5432,"destination_port":40000,"flags":{"SYN":true,"ACK":true}}},
            "source_names":["pg.db.example"],"destination_names":["client.example"],
            "source_service":{"namespace":"db","name":"pg"}}"#;
        let (_, event) = accepted(crate::decode(message.as_bytes(), &ctx()?))?;
        assert_eq!(event.dst_dns_names, vec!["pg.db.example".to_owned()]);
        assert_eq!(
            event.dst_hint.and_then(|h| h.service_name).as_deref(),
            Some("pg")
        );
        assert_eq!((event.src_port, event.dst_port), (Some(40_000), Some(5432)));
        // A SYN-ACK starts nothing: the SYN did.
        assert_eq!(event.connections_started, 0);
        Ok(())
    }

    #[test]
    fn cluster_comes_from_the_reporter_side() -> TestResult {
        let flow = |direction: &str, src: &str, dst: &str| {
            format!(
                r#"{{"flow":{{"time":"2025-03-01T08:00:00Z","traffic_direction":"{direction}",
                "source":{{"cluster_name":"{src}"}},"destination":{{"cluster_name":"{dst}"}}}}}}"#
            )
        };
        let cluster = |message: String| -> Result<String, Box<dyn std::error::Error>> {
            Ok(accepted(crate::decode(message.as_bytes(), &ctx()?))?
                .1
                .cluster_id)
        };
        assert_eq!(cluster(flow("EGRESS", "a", "b"))?, "a");
        assert_eq!(cluster(flow("INGRESS", "a", "b"))?, "b");
        assert_eq!(cluster(flow("INGRESS", "a", ""))?, "a");
        assert_eq!(cluster(flow("TRAFFIC_DIRECTION_UNKNOWN", "a", "b"))?, "a");
        // Cilium's unset default says nothing about which cluster this is.
        assert_eq!(
            cluster(flow("EGRESS", "default", "default"))?,
            "test-cluster"
        );
        Ok(())
    }

    #[test]
    fn verdicts() {
        let names = [
            ("FORWARDED", Action::Allow),
            ("REDIRECTED", Action::Allow),
            ("TRACED", Action::Allow),
            ("TRANSLATED", Action::Allow),
            ("AUDIT", Action::Allow),
            ("DROPPED", Action::Deny),
            ("ERROR", Action::Unknown),
            ("VERDICT_UNKNOWN", Action::Unknown),
            ("SOMETHING_NEW", Action::Unknown),
        ];
        for (name, expected) in names {
            let verdict = ProtoEnum::Name(Str(name.into()));
            assert_eq!(action(Some(&verdict)), expected, "{name}");
        }
        assert_eq!(action(Some(&ProtoEnum::Number(5))), Action::Allow);
        assert_eq!(action(Some(&ProtoEnum::Number(3))), Action::Unknown);
        assert_eq!(action(None), Action::Unknown);
    }

    #[test]
    fn tcp_connection_counters() -> TestResult {
        let flow = |flags: &str, reply: bool| {
            format!(
                r#"{{"time":"2025-03-01T08:00:00Z","verdict":"FORWARDED","is_reply":{reply},
                "l4":{{"TCP":{{"source_port":1,"destination_port":2,"flags":{{{flags}}}}}}}}}"#
            )
        };
        let counters = |message: String| -> Result<(i64, i64), Box<dyn std::error::Error>> {
            let (_, e) = accepted(crate::decode(message.as_bytes(), &ctx()?))?;
            Ok((e.connections_started, e.connections_completed))
        };
        assert_eq!(counters(flow(r#""SYN":true"#, false))?, (1, 0));
        assert_eq!(counters(flow(r#""SYN":true"#, true))?, (0, 0));
        assert_eq!(counters(flow(r#""SYN":true,"ACK":true"#, false))?, (0, 0));
        assert_eq!(counters(flow(r#""FIN":true,"ACK":true"#, true))?, (0, 1));
        assert_eq!(counters(flow(r#""RST":true"#, false))?, (0, 1));
        assert_eq!(counters(flow(r#""PSH":true"#, false))?, (0, 0));
        Ok(())
    }

    #[test]
    fn event_ids_are_stable_content_hashes() -> TestResult {
        let message = line("hubble_otel_tcp_selected.jsonl", 0)?;
        let first = canonical(message)?;
        assert_eq!(first["event_id"], canonical(message)?["event_id"]);
        assert_eq!(first["event_id"].as_str().map(str::len), Some(32));
        let other = canonical(line("hubble_otel_tcp_selected.jsonl", 1)?)?;
        assert_ne!(first["event_id"], other["event_id"]);
        Ok(())
    }

    #[test]
    fn malformed_flows_are_rejected_by_class() -> TestResult {
        let base = line("cilium_docs_export_dropped.jsonl", 1)?;
        let cases: Vec<(String, &str, &str)> = vec![
            (
                base.replace("10.244.1.60", "10.244.1.600"),
                reject::INVALID_IP,
                "`flow.IP.source`: \"10.244.1.600\" is not an IP address",
            ),
            (
                base.replace(r#""destination_port":80"#, r#""destination_port":70000"#),
                reject::INVALID_PORT,
                "`flow.l4.TCP.destination_port`: 70000 is outside 0..=65535",
            ),
            (
                base.replace(r#""source_port":44916"#, r#""source_port":-1"#),
                reject::INVALID_PORT,
                "`flow.l4.TCP.source_port`: -1 is outside 0..=65535",
            ),
            (
                base.replace("2023-08-21T12:12:18.510175415Z", "2031-01-01T00:00:00Z"),
                reject::FUTURE_TIME,
                "`start_time` 2031-01-01T00:00:00.000000Z is more than 10m after \
                 2027-01-15T08:00:00.000000Z (ingest.max_future_skew)",
            ),
            (
                base.replace("2023-08-21T12:12:18.510175415Z", "yesterday"),
                reject::INVALID_TIME,
                "`flow.time`: \"yesterday\" is not an RFC 3339 time: premature end of input",
            ),
            (
                base.replace(r#""verdict":"DROPPED""#, r#""verdict":true"#),
                reject::INVALID_FIELD,
                "hubble flow: field `flow.verdict`: invalid type: boolean `true`, expected an \
                 enum name or number at line 1 column 63",
            ),
            (
                base[..base.len() / 2].to_owned(),
                reject::NOT_JSON,
                "not JSON: EOF while parsing a string at line 1 column 250",
            ),
            (
                r#"{"flow":{"verdict":"DROPPED"}}"#.to_owned(),
                reject::MISSING_FIELD,
                "`flow.time`: hubble flow has no time",
            ),
            (
                r#"{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"3"},"time":"2025-01-01T00:00:00Z"}"#
                    .to_owned(),
                reject::NOT_A_FLOW,
                "hubble response carries `lost_events`, not a flow",
            ),
            (
                r#"{"time":"2025-01-01T00:00:00Z","verdict":"FORWARDED","l4":{"ICMPv4":{"type":300}}}"#
                    .to_owned(),
                reject::INVALID_FIELD,
                "`l4.ICMPv4.type`: ICMP type 300 is outside 0..=255",
            ),
            (
                r#"{"time":"2025-01-01T00:00:00Z","verdict":"FORWARDED","l7":{"dns":{"ips":["x"]}}}"#
                    .to_owned(),
                reject::INVALID_IP,
                "`l7.dns.ips[0]`: \"x\" is not an IP address",
            ),
            (
                r#"{"colour":"blue","size":3}"#.to_owned(),
                reject::UNKNOWN_FORMAT,
                "JSON object matches no known format (hubble, calico-goldmane, calico-enterprise, \
                 netobserv, canonical-json, canonical-avro); keys: \"colour\", \"size\"",
            ),
            (
                "hubble says hi".to_owned(),
                reject::NOT_JSON,
                "not JSON: expected value at line 1 column 1",
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
