//! The one write path into the table: [`IdentityTable::apply`] upserts one
//! [`IdentityRecord`] by (cluster, kind, uid). Every source — snapshot files, the live
//! watch, the `k8s.identity` topic — arrives here as records, so uids, claims and intervals
//! are derived in one place and a pod means the same whichever source described it.

use std::net::IpAddr;
use std::sync::Arc;

use flowlake_schemas::{IdentityKind, IdentityRecord, Labels, OwnerRef, Timestamp};

use crate::netsets::{Cidr, NetworkSet};
use crate::table::cluster::{Claim, ClusterTable, Spec};
use crate::table::identity::{Identity, NodeIdentity, PodIdentity, ServiceIdentity};
use crate::table::identity_table::IdentityTable;
use crate::table::uid::Uid;
use crate::workload::{Interner, OwnerLink, Workload, owner_key, workload_of};

impl IdentityTable {
    /// Applies one identity record: upsert by (cluster, kind, uid); a record with
    /// `deleted_at` ends the object's interval (see the module doc).
    pub fn apply(&mut self, record: &IdentityRecord) {
        let interner = &mut self.interner;
        let cluster = self
            .clusters
            .entry_ref(record.cluster_id.as_str())
            .or_default();
        let uid = if record.uid.is_empty() {
            Uid::Text(
                format!(
                    "{}/{}",
                    record.namespace.as_deref().unwrap_or(""),
                    record.name
                )
                .into_boxed_str(),
            )
        } else {
            Uid::new(&record.uid)
        };
        let deleted_at = record.deleted_at.map(Timestamp::as_micros);
        let from = record.created_at.unwrap_or(record.observed_at).as_micros();
        let namespace = record.namespace.as_deref().unwrap_or_default();
        let ips: Vec<IpAddr> = record.ips.iter().map(|ip| ip.0).collect();
        let spec = |kind, claim, identity| Spec {
            kind,
            uid: uid.clone(),
            ips: ips.clone(),
            from,
            deleted_at,
            observed_at: record.observed_at.as_micros(),
            claim,
            identity,
        };
        match record.kind {
            IdentityKind::Pod => {
                let spec = if record.host_network {
                    let Some(node) = record.node.as_deref() else {
                        return;
                    };
                    let identity = node_identity(cluster, interner, node);
                    spec(
                        IdentityKind::Pod,
                        Claim::HostNetworkPod,
                        Identity::Node(identity),
                    )
                } else {
                    let identity = pod_identity(
                        cluster,
                        interner,
                        PodFields {
                            namespace,
                            name: &record.name,
                            owner: record.owner.as_ref(),
                            labels: &record.labels,
                            node: record.node.as_deref(),
                            service_account: record.service_account.as_deref(),
                        },
                    );
                    spec(IdentityKind::Pod, Claim::Pod, Identity::Pod(identity))
                };
                cluster.upsert(spec);
            }
            IdentityKind::Service => {
                let identity = ServiceIdentity {
                    namespace: interner.string(namespace),
                    name: interner.string(&record.name),
                };
                cluster.upsert(spec(
                    IdentityKind::Service,
                    Claim::Service,
                    Identity::Service(identity),
                ));
            }
            IdentityKind::Node => {
                let name = interner.string(&record.name);
                let labels = interner.labels(record.labels.clone());
                if deleted_at.is_some() {
                    cluster.node_labels.remove(&name);
                } else {
                    cluster
                        .node_labels
                        .insert(Arc::clone(&name), Arc::clone(&labels));
                }
                cluster.upsert(spec(
                    IdentityKind::Node,
                    Claim::Node,
                    Identity::Node(NodeIdentity { name, labels }),
                ));
            }
            IdentityKind::Namespace => {
                if deleted_at.is_some() {
                    cluster.namespaces.remove(record.name.as_str());
                } else {
                    let name = interner.string(&record.name);
                    let labels = interner.labels(record.labels.clone());
                    cluster.namespaces.insert(name, labels);
                }
            }
            IdentityKind::Owner => {
                let key = owner_key(&record.uid, namespace, &record.name);
                if deleted_at.is_some() {
                    cluster.owners.remove(&key);
                } else {
                    let controller = record
                        .owner
                        .as_ref()
                        .map(|o| (interner.string(&o.kind), interner.string(&o.name)));
                    cluster.owners.insert(key, OwnerLink { controller });
                }
            }
            IdentityKind::NetworkSet => apply_network_set(cluster, interner, record, deleted_at),
        }
    }
}

/// The pod fields a [`PodIdentity`] is made of.
struct PodFields<'a> {
    namespace: &'a str,
    name: &'a str,
    owner: Option<&'a OwnerRef>,
    labels: &'a Labels,
    node: Option<&'a str>,
    service_account: Option<&'a str>,
}

fn pod_identity(
    cluster: &ClusterTable,
    interner: &mut Interner,
    pod: PodFields<'_>,
) -> PodIdentity {
    let (kind, name) = workload_of(
        pod.namespace,
        pod.name,
        pod.owner,
        pod.labels,
        &cluster.owners,
    );
    let workload = Workload {
        namespace: interner.string(pod.namespace),
        kind: interner.string(kind),
        name: interner.string(name),
        service_account: pod.service_account.map(|s| interner.string(s)),
    };
    PodIdentity {
        name: pod.name.into(),
        node: pod.node.map(|n| interner.string(n)),
        labels: interner.labels(pod.labels.clone()),
        workload: interner.workload(workload),
    }
}

fn node_identity(cluster: &ClusterTable, interner: &mut Interner, node: &str) -> NodeIdentity {
    let name = interner.string(node);
    let labels = match cluster.node_labels.get(&name) {
        Some(labels) => Arc::clone(labels),
        None => interner.labels(Labels::new()),
    };
    NodeIdentity { name, labels }
}

fn apply_network_set(
    cluster: &mut ClusterTable,
    interner: &mut Interner,
    record: &IdentityRecord,
    deleted_at: Option<i64>,
) {
    let key: Box<str> = owner_key(
        &record.uid,
        record.namespace.as_deref().unwrap_or_default(),
        &record.name,
    );
    if let Some(old) = cluster.network_set_cidrs.remove(&key) {
        for cidr in old {
            cluster.network_sets.remove(cidr);
        }
    }
    if deleted_at.is_some() {
        return;
    }
    let set = Arc::new(NetworkSet {
        name: interner.string(&record.name),
        namespace: record.namespace.as_deref().map(|n| interner.string(n)),
        labels: interner.labels(record.labels.clone()),
    });
    let mut cidrs = Vec::with_capacity(record.cidrs.len());
    for text in &record.cidrs {
        match text.parse::<Cidr>() {
            Ok(cidr) => {
                cluster.network_sets.insert(cidr, Arc::clone(&set));
                cidrs.push(cidr);
            }
            Err(e) => {
                cluster.stats.ignored += 1;
                tracing::warn!(cluster = %record.cluster_id, network_set = %record.name, error = %e, "network set CIDR ignored");
            }
        }
    }
    cluster.network_set_cidrs.insert(key, cidrs);
}
