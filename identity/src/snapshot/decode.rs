//! Kubernetes API objects as enrich reads them: one list item (a JSON value) in, one
//! [`Object`] out. The `Raw*` structs mirror the API, reduced to the fields enrich uses;
//! everything else in the JSON is ignored, and addresses are parsed here, so an object of a
//! known kind with a malformed field is an [`ObjectError`] that names it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use flowlake_schemas::{Labels, OwnerRef, Timestamp};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::objects::{NamespaceObject, NodeObject, OwnerObject, PodObject, ServiceObject};

/// Node annotations in which Cilium publishes the node's own addresses inside the pod CIDR:
/// the `cilium_host` router IP (source of host-to-pod traffic, `reserved:host` or
/// `reserved:remote-node` in Hubble) and the cilium-health endpoint IP. Cilium up to 1.11
/// wrote the `io.cilium.network.*` names, later versions `network.cilium.io/*`.
const CILIUM_NODE_ADDRESS_ANNOTATIONS: [&str; 8] = [
    "network.cilium.io/ipv4-cilium-host",
    "network.cilium.io/ipv6-cilium-host",
    "network.cilium.io/ipv4-health-ip",
    "network.cilium.io/ipv6-health-ip",
    "io.cilium.network.ipv4-cilium-host",
    "io.cilium.network.ipv6-cilium-host",
    "io.cilium.network.ipv4-health-ip",
    "io.cilium.network.ipv6-health-ip",
];

/// The kinds enrich reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum KnownKind {
    Pod,
    Service,
    Node,
    Namespace,
    ReplicaSet,
    Job,
}

impl KnownKind {
    pub(super) fn from_name(kind: &str) -> Option<KnownKind> {
        Some(match kind {
            "Pod" => KnownKind::Pod,
            "Service" => KnownKind::Service,
            "Node" => KnownKind::Node,
            "Namespace" => KnownKind::Namespace,
            "ReplicaSet" => KnownKind::ReplicaSet,
            "Job" => KnownKind::Job,
            _ => return None,
        })
    }
}

/// One decoded item.
pub(super) enum Object {
    Pod(PodObject),
    Service(ServiceObject),
    Node(NodeObject),
    Namespace(NamespaceObject),
    Owner(OwnerObject),
    Skipped(String),
    /// An item without `kind`, kept until the list's own kind says what it is.
    Untyped(Value),
}

/// An item of a known kind with the wrong shape; names the object.
pub(super) struct ObjectError {
    kind: String,
    name: String,
    message: String,
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.kind, self.name, self.message)
    }
}

impl Object {
    pub(super) fn from_value(mut value: Value) -> Result<Object, ObjectError> {
        let Some(kind_name) = value.get("kind").and_then(Value::as_str).map(str::to_owned) else {
            return Ok(Object::Untyped(value));
        };
        let Some(kind) = KnownKind::from_name(&kind_name) else {
            return Ok(Object::Skipped(kind_name));
        };
        let name = object_name(&value);
        if let Some(map) = value.as_object_mut() {
            map.remove("kind");
        }
        let fail = |e: serde_json::Error| ObjectError {
            kind: kind_name.clone(),
            name: name.clone(),
            message: e.to_string(),
        };
        Ok(match kind {
            KnownKind::Pod => Object::Pod(decode::<RawPod>(value).map_err(fail)?.into_object()),
            KnownKind::Service => {
                Object::Service(decode::<RawService>(value).map_err(fail)?.into_object())
            }
            KnownKind::Node => {
                let raw = decode::<RawNode>(value).map_err(fail)?;
                Object::Node(raw.into_object().map_err(|message| ObjectError {
                    kind: kind_name.clone(),
                    name: name.clone(),
                    message,
                })?)
            }
            KnownKind::Namespace => {
                let meta = decode::<RawObject>(value).map_err(fail)?.metadata;
                Object::Namespace(NamespaceObject {
                    name: meta.name,
                    uid: meta.uid,
                    labels: meta.labels,
                })
            }
            KnownKind::ReplicaSet | KnownKind::Job => {
                let meta = decode::<RawObject>(value).map_err(fail)?.metadata;
                let controller = meta.controller();
                Object::Owner(OwnerObject {
                    kind: kind_name.clone(),
                    namespace: meta.namespace.unwrap_or_default(),
                    name: meta.name,
                    uid: meta.uid,
                    controller,
                })
            }
        })
    }
}

fn decode<T: DeserializeOwned>(value: Value) -> Result<T, serde_json::Error> {
    serde_json::from_value(value)
}

/// `namespace/name` (or `name`) of an item, for error messages.
fn object_name(value: &Value) -> String {
    let metadata = value.get("metadata");
    let field = |key: &str| metadata.and_then(|m| m.get(key)).and_then(Value::as_str);
    match (field("namespace"), field("name")) {
        (Some(namespace), Some(name)) => format!("{namespace}/{name}"),
        (None, Some(name)) => name.to_owned(),
        _ => "<unnamed>".to_owned(),
    }
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RawMeta {
    name: String,
    namespace: Option<String>,
    uid: String,
    labels: Labels,
    owner_references: Vec<RawOwnerRef>,
    creation_timestamp: Option<Timestamp>,
    deletion_timestamp: Option<Timestamp>,
}

impl RawMeta {
    /// The controlling owner; the first owner when none is marked (hand-written files).
    fn controller(&self) -> Option<OwnerRef> {
        self.owner_references
            .iter()
            .find(|o| o.controller)
            .or_else(|| self.owner_references.first())
            .map(|o| OwnerRef {
                kind: o.kind.clone(),
                name: o.name.clone(),
                uid: o.uid.clone(),
            })
    }
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawOwnerRef {
    kind: String,
    name: String,
    uid: String,
    controller: bool,
}

/// An object of which only the metadata is read (Namespace, ReplicaSet, Job).
#[derive(Default, Deserialize)]
#[serde(default)]
struct RawObject {
    metadata: RawMeta,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawPod {
    metadata: RawMeta,
    spec: RawPodSpec,
    status: RawPodStatus,
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RawPodSpec {
    node_name: Option<String>,
    host_network: bool,
    service_account_name: Option<String>,
    /// Deprecated alias of `serviceAccountName`, still filled in by the API server.
    service_account: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawPodStatus {
    #[serde(rename = "podIP")]
    pod_ip: Option<IpAddr>,
    #[serde(rename = "podIPs")]
    pod_ips: Vec<RawPodIp>,
    phase: Option<String>,
}

#[derive(Deserialize)]
struct RawPodIp {
    ip: IpAddr,
}

impl RawPod {
    fn into_object(self) -> PodObject {
        let controller = self.metadata.controller();
        let RawPod {
            metadata,
            spec,
            status,
        } = self;
        // podIPs lists podIP first when both are set; older servers set only podIP.
        let mut ips: Vec<IpAddr> = status.pod_ips.iter().map(|p| p.ip).collect();
        if let Some(ip) = status.pod_ip
            && !ips.contains(&ip)
        {
            ips.insert(0, ip);
        }
        PodObject {
            namespace: metadata.namespace.unwrap_or_default(),
            name: metadata.name,
            uid: metadata.uid,
            labels: metadata.labels,
            controller,
            node_name: spec.node_name.filter(|n| !n.is_empty()),
            host_network: spec.host_network,
            service_account: spec
                .service_account_name
                .or(spec.service_account)
                .filter(|s| !s.is_empty()),
            ips,
            finished: matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")),
            created_at: metadata.creation_timestamp,
            deleted_at: metadata.deletion_timestamp,
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawService {
    metadata: RawMeta,
    spec: RawServiceSpec,
    status: RawServiceStatus,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawServiceSpec {
    /// A string, not an address: headless Services say `None`.
    #[serde(rename = "clusterIP")]
    cluster_ip: Option<String>,
    #[serde(rename = "clusterIPs")]
    cluster_ips: Vec<String>,
    #[serde(rename = "externalIPs")]
    external_ips: Vec<IpAddr>,
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RawServiceStatus {
    load_balancer: RawLoadBalancer,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawLoadBalancer {
    ingress: Vec<RawLoadBalancerIngress>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawLoadBalancerIngress {
    /// Absent for load balancers known by hostname only (AWS ELB).
    ip: Option<IpAddr>,
}

impl RawService {
    fn into_object(self) -> ServiceObject {
        let mut ips = Vec::new();
        let cluster_ips = self
            .spec
            .cluster_ip
            .iter()
            .chain(self.spec.cluster_ips.iter());
        for text in cluster_ips {
            // "None" (headless) and "" (ExternalName) are not addresses.
            if let Ok(ip) = text.parse::<IpAddr>() {
                push_unique(&mut ips, ip);
            }
        }
        for ip in self.spec.external_ips {
            push_unique(&mut ips, ip);
        }
        for ingress in self.status.load_balancer.ingress {
            if let Some(ip) = ingress.ip {
                push_unique(&mut ips, ip);
            }
        }
        ServiceObject {
            namespace: self.metadata.namespace.unwrap_or_default(),
            name: self.metadata.name,
            uid: self.metadata.uid,
            ips,
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawNode {
    metadata: RawNodeMeta,
    status: RawNodeStatus,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawNodeMeta {
    name: String,
    uid: String,
    labels: Labels,
    annotations: BTreeMap<String, String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawNodeStatus {
    addresses: Vec<RawNodeAddress>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawNodeAddress {
    #[serde(rename = "type")]
    kind: String,
    /// A string: `Hostname` and `InternalDNS` addresses are names.
    address: String,
}

impl RawNode {
    fn into_object(self) -> Result<NodeObject, String> {
        let mut ips = Vec::new();
        for address in &self.status.addresses {
            if address.kind == "InternalIP" || address.kind == "ExternalIP" {
                let ip = address.address.parse::<IpAddr>().map_err(|_| {
                    format!(
                        "status.addresses: {} {:?} is not an IP address",
                        address.kind, address.address
                    )
                })?;
                push_unique(&mut ips, ip);
            }
        }
        for key in CILIUM_NODE_ADDRESS_ANNOTATIONS {
            if let Some(text) = self.metadata.annotations.get(key) {
                let ip = text
                    .parse::<IpAddr>()
                    .map_err(|_| format!("annotation {key}: {text:?} is not an IP address"))?;
                push_unique(&mut ips, ip);
            }
        }
        Ok(NodeObject {
            name: self.metadata.name,
            uid: self.metadata.uid,
            labels: self.metadata.labels,
            ips,
        })
    }
}

fn push_unique(ips: &mut Vec<IpAddr>, ip: IpAddr) {
    if !ips.contains(&ip) {
        ips.push(ip);
    }
}
