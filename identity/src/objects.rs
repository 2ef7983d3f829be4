//! The Kubernetes objects identity is made of — pods, Services, nodes, namespaces and the
//! owners that name a workload — with only the fields identity uses, addresses parsed.
//! Snapshot files and the live watch decode into these same structs
//! ([`crate::snapshot`]), so both interpret an object identically.

use std::net::IpAddr;

use flowlake_schemas::{Labels, OwnerRef, Timestamp};

/// A pod, as far as identity needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodObject {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// uid.
    pub uid: String,
    /// Labels.
    pub labels: Labels,
    /// The controlling owner reference (or the first one when none is marked controller).
    pub controller: Option<OwnerRef>,
    /// Node the pod is scheduled on.
    pub node_name: Option<String>,
    /// The pod shares its node's network namespace (its IP is the node's).
    pub host_network: bool,
    /// Service account.
    pub service_account: Option<String>,
    /// Pod IPs (`status.podIPs`, or `status.podIP`), in the API's order.
    pub ips: Vec<IpAddr>,
    /// Phase is `Succeeded` or `Failed`: the pod no longer holds its IP, which may have been
    /// given to another pod since.
    pub finished: bool,
    /// Creation time.
    pub created_at: Option<Timestamp>,
    /// Deletion time (set while a pod terminates).
    pub deleted_at: Option<Timestamp>,
}

/// A Service and the addresses that reach it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceObject {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// uid.
    pub uid: String,
    /// ClusterIPs (headless `None` left out), external IPs and load-balancer ingress IPs.
    pub ips: Vec<IpAddr>,
}

/// A node and its addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeObject {
    /// Name.
    pub name: String,
    /// uid.
    pub uid: String,
    /// Labels.
    pub labels: Labels,
    /// `InternalIP` and `ExternalIP` addresses, then the Cilium router and health IPs the
    /// node's annotations name.
    pub ips: Vec<IpAddr>,
}

/// A namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceObject {
    /// Name.
    pub name: String,
    /// uid.
    pub uid: String,
    /// Labels.
    pub labels: Labels,
}

/// A ReplicaSet or Job: the link between a pod and the workload that owns it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnerObject {
    /// `ReplicaSet` or `Job`.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// uid.
    pub uid: String,
    /// Its own controlling owner (a Deployment, a CronJob).
    pub controller: Option<OwnerRef>,
}
