//! The serde view of Hubble's proto3 JSON: only the fields ingest reads, borrowing strings
//! from the message. Every field is optional (proto3 leaves out zero values, field masks
//! leave out anything), so every struct is `#[serde(default)]`; unknown fields are skipped.

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::formats::json::{ProtoEnum, Str};

/// The fields of `flow.Flow` (and of its `GetFlowsResponse` wrapper) that ingest reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawFlow<'a> {
    /// Set on the wrapper only.
    #[serde(borrow)]
    pub(super) flow: Option<Box<RawFlow<'a>>>,
    #[serde(borrow)]
    pub(super) time: Option<Str<'a>>,
    #[serde(borrow)]
    pub(super) uuid: Option<Str<'a>>,
    #[serde(borrow)]
    pub(super) verdict: Option<ProtoEnum<'a>>,
    #[serde(alias = "dropReason")]
    pub(super) drop_reason: Option<u64>,
    #[serde(borrow, alias = "dropReasonDesc")]
    pub(super) drop_reason_desc: Option<ProtoEnum<'a>>,
    #[serde(borrow, rename = "IP")]
    pub(super) ip: Option<RawIp<'a>>,
    pub(super) l4: Option<RawL4>,
    #[serde(borrow)]
    pub(super) source: Option<RawEndpoint<'a>>,
    #[serde(borrow)]
    pub(super) destination: Option<RawEndpoint<'a>>,
    #[serde(borrow, alias = "nodeName")]
    pub(super) node_name: Option<Str<'a>>,
    #[serde(borrow, alias = "sourceNames")]
    pub(super) source_names: Vec<Str<'a>>,
    #[serde(borrow, alias = "destinationNames")]
    pub(super) destination_names: Vec<Str<'a>>,
    #[serde(borrow)]
    pub(super) l7: Option<RawL7<'a>>,
    pub(super) reply: Option<bool>,
    #[serde(alias = "isReply")]
    pub(super) is_reply: Option<bool>,
    #[serde(borrow, alias = "sourceService")]
    pub(super) source_service: Option<RawService<'a>>,
    #[serde(borrow, alias = "destinationService")]
    pub(super) destination_service: Option<RawService<'a>>,
    #[serde(borrow, alias = "trafficDirection")]
    pub(super) traffic_direction: Option<ProtoEnum<'a>>,
    #[serde(borrow, alias = "egressAllowedBy")]
    pub(super) egress_allowed_by: Vec<RawPolicy<'a>>,
    #[serde(borrow, alias = "ingressAllowedBy")]
    pub(super) ingress_allowed_by: Vec<RawPolicy<'a>>,
    #[serde(borrow, alias = "egressDeniedBy")]
    pub(super) egress_denied_by: Vec<RawPolicy<'a>>,
    #[serde(borrow, alias = "ingressDeniedBy")]
    pub(super) ingress_denied_by: Vec<RawPolicy<'a>>,
    // The other `GetFlowsResponse` payloads: not flows.
    #[serde(alias = "lostEvents")]
    pub(super) lost_events: Option<IgnoredAny>,
    #[serde(alias = "agentEvent")]
    pub(super) agent_event: Option<IgnoredAny>,
    #[serde(alias = "debugEvent")]
    pub(super) debug_event: Option<IgnoredAny>,
    #[serde(alias = "nodeStatus")]
    pub(super) node_status: Option<IgnoredAny>,
}

impl RawFlow<'_> {
    /// The name of the non-flow payload a `GetFlowsResponse` carries, if any.
    pub(super) fn non_flow_response(&self) -> Option<&'static str> {
        [
            ("lost_events", self.lost_events.is_some()),
            ("agent_event", self.agent_event.is_some()),
            ("debug_event", self.debug_event.is_some()),
            ("node_status", self.node_status.is_some()),
        ]
        .into_iter()
        .find_map(|(name, present)| present.then_some(name))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawIp<'a> {
    #[serde(borrow)]
    pub(super) source: Option<Str<'a>>,
    #[serde(borrow)]
    pub(super) destination: Option<Str<'a>>,
}

/// `Layer4`, a protobuf oneof: at most one field is set.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawL4 {
    #[serde(rename = "TCP")]
    pub(super) tcp: Option<RawTcp>,
    #[serde(rename = "UDP")]
    pub(super) udp: Option<RawPorts>,
    #[serde(rename = "SCTP")]
    pub(super) sctp: Option<RawPorts>,
    #[serde(rename = "ICMPv4")]
    pub(super) icmp_v4: Option<RawIcmp>,
    #[serde(rename = "ICMPv6")]
    pub(super) icmp_v6: Option<RawIcmp>,
}

/// Ports are uint32 in the proto; read wide so that an out-of-range value is an
/// `invalid_port` naming the field rather than a type error. Absent means 0 (proto3).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawPorts {
    #[serde(alias = "sourcePort")]
    pub(super) source_port: i64,
    #[serde(alias = "destinationPort")]
    pub(super) destination_port: i64,
}

/// TCP ports and flags (the ports are repeated rather than flattened from [`RawPorts`]:
/// `serde(flatten)` buffers the whole object first).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawTcp {
    #[serde(alias = "sourcePort")]
    pub(super) source_port: i64,
    #[serde(alias = "destinationPort")]
    pub(super) destination_port: i64,
    pub(super) flags: Option<RawTcpFlags>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawTcpFlags {
    #[serde(rename = "SYN")]
    pub(super) syn: bool,
    #[serde(rename = "ACK")]
    pub(super) ack: bool,
    #[serde(rename = "FIN")]
    pub(super) fin: bool,
    #[serde(rename = "RST")]
    pub(super) rst: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawIcmp {
    pub(super) r#type: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawEndpoint<'a> {
    #[serde(borrow, alias = "clusterName")]
    pub(super) cluster_name: Option<Str<'a>>,
    #[serde(borrow)]
    pub(super) namespace: Option<Str<'a>>,
    #[serde(borrow)]
    pub(super) labels: Vec<Str<'a>>,
    #[serde(borrow, alias = "podName")]
    pub(super) pod_name: Option<Str<'a>>,
    #[serde(borrow)]
    pub(super) workloads: Vec<RawWorkload<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawWorkload<'a> {
    #[serde(borrow)]
    pub(super) name: Option<Str<'a>>,
    #[serde(borrow)]
    pub(super) kind: Option<Str<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawService<'a> {
    #[serde(borrow)]
    pub(super) name: Option<Str<'a>>,
    #[serde(borrow)]
    pub(super) namespace: Option<Str<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawPolicy<'a> {
    #[serde(borrow)]
    pub(super) name: Option<Str<'a>>,
    #[serde(borrow)]
    pub(super) namespace: Option<Str<'a>>,
    #[serde(borrow)]
    pub(super) labels: Vec<Str<'a>>,
    #[serde(borrow)]
    pub(super) kind: Option<Str<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawL7<'a> {
    #[serde(borrow)]
    pub(super) dns: Option<RawDns<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawDns<'a> {
    #[serde(borrow)]
    pub(super) query: Option<Str<'a>>,
    #[serde(borrow)]
    pub(super) ips: Vec<Str<'a>>,
    pub(super) ttl: Option<i64>,
}
