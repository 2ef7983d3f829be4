//! Kubernetes objects → [`IdentityRecord`]s, the one shape identity travels in between the
//! sources (live watch, publisher, snapshot files) and the table.
//!
//! Objects are interpreted by the snapshot reader's code ([`Snapshot::from_api_object`]),
//! so a pod read from a file and the same pod read from the API give the same record. A
//! record carries only what enrich uses. Invariants: `deleted_at` is `None` for every
//! object that still exists (a terminating pod still holds its address; the time its
//! deletion was requested travels separately in [`Converted::deletion_requested`]); a pod
//! in phase `Succeeded` or `Failed` is recorded without addresses, because the kubelet has
//! released them and another pod may hold them already. `observed_at` is when the source
//! saw the state, never taken from the object. Calico `NetworkSet` / `GlobalNetworkSet`
//! objects become `NetworkSet` records with `spec.nets` as their CIDRs, kept as written
//! (the table counts and skips a CIDR that does not parse).

use flowlake_schemas::{IdentityKind, IdentityRecord, Ip, Timestamp};
use serde_json::Value;

use crate::objects::{NamespaceObject, NodeObject, OwnerObject, PodObject, ServiceObject};
use crate::snapshot::Snapshot;

/// One API object as a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Converted {
    /// The record, alive (`deleted_at` = None).
    pub record: IdentityRecord,
    /// A pod's `metadata.deletionTimestamp`: the end of its grace period, by which it is gone.
    pub deletion_requested: Option<Timestamp>,
}

/// Decodes one API object (JSON with `kind`) of `cluster_id`. `Ok(None)` for kinds that
/// carry no identity; the error names the object.
pub fn from_api_object(
    cluster_id: &str,
    value: Value,
    observed_at: Timestamp,
) -> Result<Option<Converted>, String> {
    if let Some(kind @ ("NetworkSet" | "GlobalNetworkSet")) =
        value.get("kind").and_then(Value::as_str)
    {
        let record = network_set_record(cluster_id, kind, &value, observed_at)?;
        return Ok(Some(Converted {
            record,
            deletion_requested: None,
        }));
    }
    let snapshot = Snapshot::from_api_object(value)?;
    let deletion_requested = snapshot.pods.first().and_then(|p| p.deleted_at);
    Ok(snapshot_records(cluster_id, snapshot, observed_at)
        .into_iter()
        .next()
        .map(|record| Converted {
            record,
            deletion_requested,
        }))
}

/// Every object of a snapshot of `cluster_id` as a record, observed at `observed_at`, in
/// the order a table must apply them: owners before the pods whose workload they name,
/// nodes before the hostNetwork pods that take their labels.
pub fn snapshot_records(
    cluster_id: &str,
    snapshot: Snapshot,
    observed_at: Timestamp,
) -> Vec<IdentityRecord> {
    let Snapshot {
        pods,
        services,
        nodes,
        namespaces,
        owners,
        skipped: _,
    } = snapshot;
    let mut records = Vec::with_capacity(
        owners.len() + nodes.len() + services.len() + pods.len() + namespaces.len(),
    );
    records.extend(
        owners
            .into_iter()
            .map(|o| owner_record(cluster_id, o, observed_at)),
    );
    records.extend(
        nodes
            .into_iter()
            .map(|n| node_record(cluster_id, n, observed_at)),
    );
    records.extend(
        services
            .into_iter()
            .map(|s| service_record(cluster_id, s, observed_at)),
    );
    records.extend(
        pods.into_iter()
            .map(|p| pod_record(cluster_id, p, observed_at)),
    );
    records.extend(
        namespaces
            .into_iter()
            .map(|n| namespace_record(cluster_id, n, observed_at)),
    );
    records
}

/// A pod. Finished pods hold no address (see the module doc).
pub fn pod_record(cluster_id: &str, pod: PodObject, observed_at: Timestamp) -> IdentityRecord {
    let ips = if pod.finished {
        Vec::new()
    } else {
        pod.ips.into_iter().map(Ip::from).collect()
    };
    IdentityRecord {
        cluster_id: cluster_id.to_owned(),
        kind: IdentityKind::Pod,
        uid: pod.uid,
        namespace: Some(pod.namespace),
        name: pod.name,
        ips,
        labels: pod.labels,
        owner: pod.controller,
        host_network: pod.host_network,
        node: pod.node_name,
        service_account: pod.service_account,
        created_at: pod.created_at,
        observed_at,
        ..IdentityRecord::default()
    }
}

/// A Service with its ClusterIPs, external IPs and load-balancer IPs.
pub fn service_record(
    cluster_id: &str,
    service: ServiceObject,
    observed_at: Timestamp,
) -> IdentityRecord {
    IdentityRecord {
        cluster_id: cluster_id.to_owned(),
        kind: IdentityKind::Service,
        uid: service.uid,
        namespace: Some(service.namespace),
        name: service.name,
        ips: service.ips.into_iter().map(Ip::from).collect(),
        observed_at,
        ..IdentityRecord::default()
    }
}

/// A node with its addresses.
pub fn node_record(cluster_id: &str, node: NodeObject, observed_at: Timestamp) -> IdentityRecord {
    IdentityRecord {
        cluster_id: cluster_id.to_owned(),
        kind: IdentityKind::Node,
        uid: node.uid,
        name: node.name,
        ips: node.ips.into_iter().map(Ip::from).collect(),
        labels: node.labels,
        observed_at,
        ..IdentityRecord::default()
    }
}

/// A namespace and its labels.
pub fn namespace_record(
    cluster_id: &str,
    namespace: NamespaceObject,
    observed_at: Timestamp,
) -> IdentityRecord {
    IdentityRecord {
        cluster_id: cluster_id.to_owned(),
        kind: IdentityKind::Namespace,
        uid: namespace.uid,
        name: namespace.name,
        labels: namespace.labels,
        observed_at,
        ..IdentityRecord::default()
    }
}

/// A ReplicaSet or Job: the link from a pod's owner reference (by uid) to the workload
/// that controls it (a Deployment, a CronJob).
pub fn owner_record(
    cluster_id: &str,
    owner: OwnerObject,
    observed_at: Timestamp,
) -> IdentityRecord {
    IdentityRecord {
        cluster_id: cluster_id.to_owned(),
        kind: IdentityKind::Owner,
        uid: owner.uid,
        namespace: Some(owner.namespace),
        name: owner.name,
        owner: owner.controller,
        observed_at,
        ..IdentityRecord::default()
    }
}

/// A Calico `NetworkSet` (namespaced) or `GlobalNetworkSet` (`kind`): its CIDRs from
/// `spec.nets`, its labels; the namespace only for the namespaced kind. The error names
/// the object.
pub fn network_set_record(
    cluster_id: &str,
    kind: &str,
    value: &Value,
    observed_at: Timestamp,
) -> Result<IdentityRecord, String> {
    let metadata = &value["metadata"];
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let name = text(&metadata["name"]).ok_or_else(|| format!("{kind} without metadata.name"))?;
    let namespace = if kind == "NetworkSet" {
        Some(
            text(&metadata["namespace"])
                .ok_or_else(|| format!("{kind} {name}: no metadata.namespace"))?,
        )
    } else {
        None
    };
    let label = namespace
        .as_deref()
        .map_or_else(|| name.clone(), |ns| format!("{ns}/{name}"));
    let uid = text(&metadata["uid"]).ok_or_else(|| format!("{kind} {label}: no metadata.uid"))?;
    let labels = match &metadata["labels"] {
        Value::Null => Default::default(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                text(v)
                    .map(|v| (k.clone(), v))
                    .ok_or_else(|| format!("{kind} {label}: label {k} is not a string"))
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(format!("{kind} {label}: metadata.labels is not a map")),
    };
    let cidrs = match &value["spec"]["nets"] {
        Value::Null => Vec::new(),
        Value::Array(nets) => nets
            .iter()
            .map(|n| text(n).ok_or_else(|| format!("{kind} {label}: spec.nets holds a non-string")))
            .collect::<Result<_, _>>()?,
        _ => return Err(format!("{kind} {label}: spec.nets is not a list")),
    };
    Ok(IdentityRecord {
        cluster_id: cluster_id.to_owned(),
        kind: IdentityKind::NetworkSet,
        uid,
        namespace,
        name,
        cidrs,
        labels,
        observed_at,
        ..IdentityRecord::default()
    })
}

/// The kind as it appears in keys (`pod`, `service`, `node`, `namespace`, `network_set`,
/// `owner`: the Avro symbols).
pub fn kind_name(kind: IdentityKind) -> &'static str {
    match kind {
        IdentityKind::Pod => "pod",
        IdentityKind::Service => "service",
        IdentityKind::Node => "node",
        IdentityKind::Namespace => "namespace",
        IdentityKind::NetworkSet => "network_set",
        IdentityKind::Owner => "owner",
    }
}

/// The compacted-topic key of a record: `cluster/kind/uid`. Every state of one object
/// shares it, so compaction keeps the latest.
pub fn record_key(record: &IdentityRecord) -> String {
    format!(
        "{}/{}/{}",
        record.cluster_id,
        kind_name(record.kind),
        record.uid
    )
}

#[cfg(test)]
mod tests {
    use flowlake_schemas::Labels;

    use flowlake_schemas::OwnerRef;
    use serde_json::json;

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn ip(text: &str) -> Result<Ip, std::net::AddrParseError> {
        Ok(Ip(text.parse()?))
    }

    const OBSERVED: Timestamp = Timestamp::from_secs(1_700_000_000);

    #[test]
    fn a_pod_from_the_api_becomes_the_exact_record() -> TestResult {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-7d4b9c-x2x9q", "namespace": "shop", "uid": "u-1",
                         "labels": {"app": "web"},
                         "creationTimestamp": "2024-01-02T03:04:05Z",
                         "deletionTimestamp": "2024-01-02T05:00:00Z",
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                             "name": "web-7d4b9c", "uid": "u-rs", "controller": true}]},
            "spec": {"nodeName": "node-a", "serviceAccountName": "web-sa",
                     "containers": [{"name": "web", "image": "nginx"}]},
            "status": {"phase": "Running", "podIP": "10.1.0.5",
                       "podIPs": [{"ip": "10.1.0.5"}, {"ip": "fd00::5"}]}
        });
        let converted = from_api_object("prod", pod, OBSERVED)?.ok_or("no record")?;
        let expected = IdentityRecord {
            cluster_id: "prod".into(),
            kind: IdentityKind::Pod,
            uid: "u-1".into(),
            namespace: Some("shop".into()),
            name: "web-7d4b9c-x2x9q".into(),
            ips: vec![ip("10.1.0.5")?, ip("fd00::5")?],
            cidrs: vec![],
            labels: Labels::from([("app", "web")]),
            owner: Some(OwnerRef {
                kind: "ReplicaSet".into(),
                name: "web-7d4b9c".into(),
                uid: "u-rs".into(),
            }),
            host_network: false,
            node: Some("node-a".into()),
            service_account: Some("web-sa".into()),
            created_at: Some(Timestamp::parse_rfc3339("2024-01-02T03:04:05Z")?),
            deleted_at: None,
            observed_at: OBSERVED,
        };
        assert_eq!(converted.record, expected);
        assert_eq!(
            converted.deletion_requested,
            Some(Timestamp::parse_rfc3339("2024-01-02T05:00:00Z")?)
        );
        assert_eq!(record_key(&converted.record), "prod/pod/u-1");
        Ok(())
    }

    #[test]
    fn a_finished_pod_holds_no_address() -> TestResult {
        let pod = json!({"kind": "Pod",
            "metadata": {"name": "job-x", "namespace": "batch", "uid": "u-2"},
            "status": {"phase": "Succeeded", "podIP": "10.1.0.9"}});
        let record = from_api_object("c", pod, OBSERVED)?
            .ok_or("no record")?
            .record;
        assert!(record.ips.is_empty(), "{record:?}");
        assert_eq!(record.deleted_at, None);
        Ok(())
    }

    #[test]
    fn services_nodes_namespaces_and_owners() -> TestResult {
        let service = json!({"kind": "Service",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-s"},
            "spec": {"clusterIP": "10.96.5.5", "clusterIPs": ["10.96.5.5"],
                     "externalIPs": ["192.0.2.10"]},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}});
        let record = from_api_object("c", service, OBSERVED)?
            .ok_or("no record")?
            .record;
        assert_eq!(record.kind, IdentityKind::Service);
        assert_eq!(
            record.ips,
            vec![ip("10.96.5.5")?, ip("192.0.2.10")?, ip("203.0.113.7")?]
        );
        assert_eq!(record_key(&record), "c/service/u-s");

        let node = json!({"kind": "Node",
            "metadata": {"name": "node-a", "uid": "u-n", "labels": {"zone": "a"}},
            "status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.2"},
                                     {"type": "Hostname", "address": "node-a"}]}});
        let record = from_api_object("c", node, OBSERVED)?
            .ok_or("no record")?
            .record;
        assert_eq!(
            (record.kind, record.name.as_str(), record.namespace.clone()),
            (IdentityKind::Node, "node-a", None)
        );
        assert_eq!(record.ips, vec![ip("172.18.0.2")?]);

        let namespace = json!({"kind": "Namespace",
            "metadata": {"name": "shop", "uid": "u-ns", "labels": {"team": "a"}}});
        let record = from_api_object("c", namespace, OBSERVED)?
            .ok_or("no record")?
            .record;
        assert_eq!(record.kind, IdentityKind::Namespace);
        assert_eq!(record.labels.get("team"), Some("a"));

        let rs = json!({"kind": "ReplicaSet",
            "metadata": {"name": "web-7d4b9c", "namespace": "shop", "uid": "u-rs",
                "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "u-d",
                                     "controller": true}]}});
        let record = from_api_object("c", rs, OBSERVED)?
            .ok_or("no record")?
            .record;
        assert_eq!(record.kind, IdentityKind::Owner);
        assert_eq!(
            record.owner,
            Some(OwnerRef {
                kind: "Deployment".into(),
                name: "web".into(),
                uid: "u-d".into()
            })
        );
        assert_eq!(record_key(&record), "c/owner/u-rs");
        Ok(())
    }

    #[test]
    fn other_kinds_carry_no_identity_and_bad_objects_are_named() -> TestResult {
        let config_map = json!({"kind": "ConfigMap", "metadata": {"name": "x"}});
        assert_eq!(from_api_object("c", config_map, OBSERVED)?, None);
        let bad = json!({"kind": "Pod", "metadata": {"name": "p", "namespace": "n"},
                         "status": {"podIP": "10.0.0.300"}});
        let err = from_api_object("c", bad, OBSERVED)
            .err()
            .unwrap_or_default();
        assert!(err.starts_with("Pod n/p:"), "{err}");
        Ok(())
    }

    #[test]
    fn calico_network_sets_become_network_set_records() -> TestResult {
        let global = json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "GlobalNetworkSet",
            "metadata": {"name": "stripe", "uid": "u-gns", "labels": {"vendor": "stripe"}},
            "spec": {"nets": ["54.187.174.169/32", "2600:1f00::/24"]}});
        let converted = from_api_object("c", global, OBSERVED)?.ok_or("no record")?;
        assert_eq!(converted.deletion_requested, None);
        assert_eq!(
            converted.record,
            IdentityRecord {
                cluster_id: "c".into(),
                kind: IdentityKind::NetworkSet,
                uid: "u-gns".into(),
                namespace: None,
                name: "stripe".into(),
                cidrs: vec!["54.187.174.169/32".into(), "2600:1f00::/24".into()],
                labels: Labels::from([("vendor", "stripe")]),
                observed_at: OBSERVED,
                ..IdentityRecord::default()
            }
        );
        assert_eq!(record_key(&converted.record), "c/network_set/u-gns");

        let namespaced = json!({"kind": "NetworkSet",
            "metadata": {"name": "partners", "namespace": "shop", "uid": "u-ns"},
            "spec": {"nets": ["198.51.100.0/24"]}});
        let record = from_api_object("c", namespaced, OBSERVED)?
            .ok_or("no record")?
            .record;
        assert_eq!(
            (
                record.namespace.as_deref(),
                record.name.as_str(),
                record.cidrs
            ),
            (Some("shop"), "partners", vec!["198.51.100.0/24".to_owned()])
        );
        assert!(record.labels.is_empty());

        let bad = json!({"kind": "NetworkSet",
            "metadata": {"name": "x", "namespace": "shop", "uid": "u"},
            "spec": {"nets": "10.0.0.0/8"}});
        let err = from_api_object("c", bad, OBSERVED)
            .err()
            .unwrap_or_default();
        assert_eq!(err, "NetworkSet shop/x: spec.nets is not a list");
        Ok(())
    }

    #[test]
    fn the_hubble_fixture_gives_one_record_per_object() -> TestResult {
        let snapshot = Snapshot::read(&crate::test_support::hubble_fixture())?;
        let records = snapshot_records("c", snapshot, OBSERVED);
        assert_eq!(records.len(), 23 + 2 + 6 + 5);
        let keys: std::collections::HashSet<String> = records.iter().map(record_key).collect();
        assert_eq!(keys.len(), records.len(), "keys are unique");
        Ok(())
    }
}
