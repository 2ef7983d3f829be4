//! The Kubernetes resources the watch lists and watches, by API group; the RBAC in
//! `deploy/kubernetes/base/rbac.yaml` grants exactly these (tests/identity.rs checks it).

use flowlake_schemas::{IdentityKind, IdentityRecord};

/// The API group of Calico's CRDs (`NetworkSet`, `GlobalNetworkSet`; see [`super::calico`]).
pub const CALICO_GROUP: &str = "crd.projectcalico.org";

/// The resources watched; the RBAC in `deploy/kubernetes/base/rbac.yaml` grants exactly these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resource {
    /// `pods` (core).
    Pods,
    /// `services` (core).
    Services,
    /// `nodes` (core).
    Nodes,
    /// `namespaces` (core).
    Namespaces,
    /// `replicasets` (apps).
    ReplicaSets,
    /// `jobs` (batch).
    Jobs,
    /// `networksets` (crd.projectcalico.org), when installed.
    NetworkSets,
    /// `globalnetworksets` (crd.projectcalico.org), when installed.
    GlobalNetworkSets,
}

impl Resource {
    /// Every watched resource.
    pub const ALL: [Resource; 8] = [
        Resource::Pods,
        Resource::Services,
        Resource::Nodes,
        Resource::Namespaces,
        Resource::ReplicaSets,
        Resource::Jobs,
        Resource::NetworkSets,
        Resource::GlobalNetworkSets,
    ];

    /// The API's plural name.
    pub fn plural(self) -> &'static str {
        match self {
            Resource::Pods => "pods",
            Resource::Services => "services",
            Resource::Nodes => "nodes",
            Resource::Namespaces => "namespaces",
            Resource::ReplicaSets => "replicasets",
            Resource::Jobs => "jobs",
            Resource::NetworkSets => "networksets",
            Resource::GlobalNetworkSets => "globalnetworksets",
        }
    }

    /// The API group (`""` for core).
    pub fn group(self) -> &'static str {
        match self {
            Resource::Pods | Resource::Services | Resource::Nodes | Resource::Namespaces => "",
            Resource::ReplicaSets => "apps",
            Resource::Jobs => "batch",
            Resource::NetworkSets | Resource::GlobalNetworkSets => CALICO_GROUP,
        }
    }

    /// The resource whose objects became `record`; owners (ReplicaSets and Jobs both) are
    /// ambiguous. A network set with a namespace is a NetworkSet, without a
    /// GlobalNetworkSet.
    pub(super) fn of_record(record: &IdentityRecord) -> Option<Resource> {
        match record.kind {
            IdentityKind::Pod => Some(Resource::Pods),
            IdentityKind::Service => Some(Resource::Services),
            IdentityKind::Node => Some(Resource::Nodes),
            IdentityKind::Namespace => Some(Resource::Namespaces),
            IdentityKind::NetworkSet if record.namespace.is_some() => Some(Resource::NetworkSets),
            IdentityKind::NetworkSet => Some(Resource::GlobalNetworkSets),
            IdentityKind::Owner => None,
        }
    }
}
