//! What a lookup answers: the identity of an address's holder (pod, node or Service), as
//! the table stores it — names, labels and workloads shared between objects.

use std::fmt;
use std::sync::Arc;

use flowlake_schemas::{EnrichmentStatus, Labels};

use crate::pod_name::PodName;
use crate::table::uid::Uid;
use crate::workload::Workload;

/// A pod that holds an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodIdentity {
    /// Pod name (in place: see [`PodName`]).
    pub name: PodName,
    /// Node the pod runs on.
    pub node: Option<Arc<str>>,
    /// Pod labels (shared with every pod that has the same set).
    pub labels: Arc<Labels>,
    /// Namespace, owner and service account.
    pub workload: Arc<Workload>,
}

/// A node address (or a hostNetwork pod's, which is its node's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIdentity {
    /// Node name.
    pub name: Arc<str>,
    /// Node labels (empty when the node object was not known when the address was added).
    pub labels: Arc<Labels>,
}

/// A Service address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceIdentity {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Service name.
    pub name: Arc<str>,
}

/// What an address belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// A pod IP.
    Pod(PodIdentity),
    /// A node address.
    Node(NodeIdentity),
    /// A ClusterIP, external IP or load-balancer IP.
    Service(ServiceIdentity),
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Pod(pod) => write!(f, "pod {}/{}", pod.workload.namespace, pod.name),
            Identity::Node(node) => write!(f, "node {}", node.name),
            Identity::Service(service) => {
                write!(f, "service {}/{}", service.namespace, service.name)
            }
        }
    }
}

/// The answer of a lookup: the holder and whether it held the address at the time asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found<'a> {
    /// The holder's identity.
    pub identity: &'a Identity,
    /// The holder's uid (a pod's is the endpoint's `pod_uid`).
    pub uid: &'a Uid,
    /// `Hit` when the holder held the address at the time asked, `Stale` when it is only
    /// the nearest holder in time.
    pub status: EnrichmentStatus,
}
