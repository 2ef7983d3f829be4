//! The identity table: (cluster, IP) → the pod, node or Service that held the address at
//! a given time (an as-of join).
//!
//! Protocol: every source — snapshot files, the live watch, the `k8s.identity` topic —
//! reaches the table the same way: as [`IdentityRecord`](flowlake_schemas::IdentityRecord)s
//! upserted one object at a time by [`IdentityTable::apply`] (module `records`), keyed by
//! (cluster, kind, uid). Snapshots are turned into records by `flowlake-identity` (the
//! conversion the watch uses) and applied by [`IdentityTableBuilder`] (module
//! `snapshots`). The table is owned by one processor and changed only between batches, so
//! lookups take no lock.
//!
//! Invariants:
//! - Each object holds its addresses for one interval, `[created_at (or first observed_at),
//!   deleted_at)`; a snapshot, which does not say when it was taken, counts as observed
//!   since ever, so its objects hold from `creationTimestamp` (or −∞). A record with
//!   `deleted_at` ends the interval and a deletion is final for a uid (uids are never
//!   reused): a later non-deleted record of it is ignored.
//! - Finished pods, one rule for every source (as-of: the pod held its address until it
//!   finished). A pod in phase `Succeeded`/`Failed` has released its addresses (the
//!   kubelet frees them; another pod may hold them already), so its record carries none.
//!   A pod seen holding addresses and then seen finished ends its interval at the
//!   `observed_at` of the finished state; a pod first seen finished — in a snapshot, or
//!   by a watch that started after it ended — holds no address, because when it released
//!   it is unknown. Labels and names are the object's latest.
//! - Per (cluster, IP) the table keeps every holder whose interval has not been pruned.
//!   [`ClusterTable::lookup`] answers with the holder whose interval contains the flow's
//!   time (`hit`). When several do (a record of the old holder's deletion has not arrived
//!   yet, a Service and a pod on one address), the strongest claim wins — a pod, a node,
//!   a Service, a hostNetwork pod's node — then the holder whose interval ends first (two
//!   pods cannot hold one address at once, so a pod known to have released it later held
//!   it earlier), then the newest.
//! - When no interval contains the time but the address had holders, the answer is the
//!   holder nearest in time, marked `stale`: the endpoint says who had the address just
//!   before or after, and that it was not them at the flow's time. It is never reported as
//!   a `hit`.
//! - Ended intervals are pruned once they end before the cluster's event-time horizon
//!   (see [`IdentityTable::prune`]); until then late flows still resolve to them.
//! - Keys are canonical (IPv4-mapped IPv6 is stored and looked up as IPv4) and scoped by
//!   cluster, because clusters may reuse pod CIDRs.
//!
//! Memory (target ≤ 300 bytes per pod, measured in BENCHMARKS.md): an object lives once in
//! a slab (its identity, interval, addresses and uid; a Kubernetes uuid is kept as 16
//! bytes, module `uid`), the address index maps an IPv4 address to a slab index in 8
//! bytes (module `addresses`), the uid index is a raw hash table of slab indices hashed by
//! the object's own uid (module `cluster`). What pods share is stored once and
//! reference-counted: one string per namespace, node, workload kind and name, one label
//! map per distinct label set, one [`Workload`] per (namespace, owner, service account).

mod cluster;
mod identity;
mod identity_table;
mod records;
mod snapshots;
mod uid;

pub use self::cluster::{ClusterTable, TableStats};
pub use self::identity::{Found, Identity, NodeIdentity, PodIdentity, ServiceIdentity};
pub use self::identity_table::IdentityTable;
pub use self::snapshots::IdentityTableBuilder;
pub use self::uid::Uid;
pub use crate::workload::Workload;
#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::PathBuf;

    use std::net::IpAddr;
    use std::sync::Arc;

    use flowlake_identity::objects_to_identity::from_api_object;
    use flowlake_identity::{NodeObject, PodObject, ServiceObject, Snapshot, SnapshotError};
    use flowlake_schemas::{EnrichmentStatus, IdentityRecord, Timestamp};
    use proptest::prelude::*;

    use super::*;
    use crate::settings::{EnrichSettings, SnapshotSource};
    use crate::test_support::{hubble_fixture, hubble_table, table};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const AT: Timestamp = Timestamp::from_secs(1_700_000_000);

    fn ip(text: &str) -> IpAddr {
        text.parse()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    fn pod_at<'t>(table: &'t IdentityTable, cluster: &str, addr: &str) -> Option<&'t PodIdentity> {
        match table.lookup(cluster, ip(addr), AT).map(|f| f.identity) {
            Some(Identity::Pod(pod)) => Some(pod),
            _ => None,
        }
    }

    fn workload_at(table: &IdentityTable, addr: &str) -> Option<(String, String)> {
        pod_at(table, "c", addr).map(|p| (p.workload.kind.to_string(), p.workload.name.to_string()))
    }

    fn pair(kind: &str, name: &str) -> Option<(String, String)> {
        Some((kind.to_owned(), name.to_owned()))
    }

    /// A pod item with an owner reference (or none when `owner_kind` is empty).
    fn pod_json(name: &str, addr: &str, owner_kind: &str, owner: &str, labels: &str) -> String {
        let owners = if owner_kind.is_empty() {
            String::new()
        } else {
            format!(
                r#", "ownerReferences": [{{"kind": "{owner_kind}", "name": "{owner}", "controller": true}}]"#
            )
        };
        format!(
            r#"{{"kind": "Pod", "metadata": {{"name": "{name}", "namespace": "ns", "uid": "uid-{name}",
                "labels": {{{labels}}}{owners}}},
                "spec": {{"nodeName": "n1", "serviceAccountName": "sa"}},
                "status": {{"phase": "Running", "podIP": "{addr}"}}}}"#
        )
    }

    fn list(items: &[String]) -> String {
        format!(r#"{{"kind": "List", "items": [{}]}}"#, items.join(","))
    }

    #[test]
    fn uid_text_is_its_display() {
        for text in [
            "0b8c5f1e-2d3c-4e5f-8a9b-0c1d2e3f4a5b",
            "kp-uid",
            "ns/name",
            "",
        ] {
            let uid = Uid::new(text);
            assert_eq!(uid.with_text(str::to_owned), text);
            assert_eq!(uid.with_text(str::to_owned), uid.to_string());
        }
        assert!(matches!(
            Uid::new("0b8c5f1e-2d3c-4e5f-8a9b-0c1d2e3f4a5b"),
            Uid::Uuid(_)
        ));
    }

    #[test]
    fn workloads_are_named_after_the_top_controller() -> TestResult {
        let items = [
            // ReplicaSet of a Deployment, known by the pod-template-hash label.
            pod_json("web-6b7f9c8d5-abcde", "10.0.0.1", "ReplicaSet", "web-6b7f9c8d5", r#""pod-template-hash": "6b7f9c8d5""#),
            // A bare ReplicaSet: no label says a Deployment made it.
            pod_json("rs-only-xk2p4", "10.0.0.2", "ReplicaSet", "rs-only", r#""app": "x""#),
            // A label that does not match the name proves nothing.
            pod_json("api-5d8f-aaaaa", "10.0.0.3", "ReplicaSet", "api-5d8f", r#""pod-template-hash": "0000""#),
            // The ReplicaSet item names its Deployment, whatever the labels.
            pod_json("pay-1a2b-bbbbb", "10.0.0.4", "ReplicaSet", "pay-1a2b", ""),
            // Jobs: CronJob by name when the Job item is absent...
            pod_json("backup-28734120-q8z2m", "10.0.0.5", "Job", "backup-28734120", ""),
            // ...but not for a short numeric suffix...
            pod_json("migrate-2-lm3nq", "10.0.0.6", "Job", "migrate-2", ""),
            // ...and the Job item decides when present.
            pod_json("report-28734120-zzzzz", "10.0.0.7", "Job", "report-28734120", ""),
            pod_json("nightly-x7-ppppp", "10.0.0.8", "Job", "nightly-x7", ""),
            pod_json("db-0", "10.0.0.9", "StatefulSet", "db", ""),
            pod_json("agent-7xq2p", "10.0.0.10", "DaemonSet", "agent", ""),
            pod_json("debug", "10.0.0.11", "", "", ""),
            pod_json("etcd-n1", "10.0.0.12", "Node", "n1", ""),
            r#"{"kind": "ReplicaSet", "metadata": {"name": "pay-1a2b", "namespace": "ns",
                "ownerReferences": [{"kind": "Deployment", "name": "payments", "controller": true}]}}"#.to_owned(),
            r#"{"kind": "Job", "metadata": {"name": "report-28734120", "namespace": "ns"}}"#.to_owned(),
            r#"{"kind": "Job", "metadata": {"name": "nightly-x7", "namespace": "ns",
                "ownerReferences": [{"kind": "CronJob", "name": "nightly", "controller": true}]}}"#.to_owned(),
        ];
        let table = table("c", &list(&items))?;
        assert_eq!(workload_at(&table, "10.0.0.1"), pair("Deployment", "web"));
        assert_eq!(
            workload_at(&table, "10.0.0.2"),
            pair("ReplicaSet", "rs-only")
        );
        assert_eq!(
            workload_at(&table, "10.0.0.3"),
            pair("ReplicaSet", "api-5d8f")
        );
        assert_eq!(
            workload_at(&table, "10.0.0.4"),
            pair("Deployment", "payments")
        );
        assert_eq!(workload_at(&table, "10.0.0.5"), pair("CronJob", "backup"));
        assert_eq!(workload_at(&table, "10.0.0.6"), pair("Job", "migrate-2"));
        assert_eq!(
            workload_at(&table, "10.0.0.7"),
            pair("Job", "report-28734120")
        );
        assert_eq!(workload_at(&table, "10.0.0.8"), pair("CronJob", "nightly"));
        assert_eq!(workload_at(&table, "10.0.0.9"), pair("StatefulSet", "db"));
        assert_eq!(workload_at(&table, "10.0.0.10"), pair("DaemonSet", "agent"));
        assert_eq!(workload_at(&table, "10.0.0.11"), pair("Pod", "debug"));
        assert_eq!(workload_at(&table, "10.0.0.12"), pair("Pod", "etcd-n1"));

        let web = pod_at(&table, "c", "10.0.0.1").ok_or("no pod at 10.0.0.1")?;
        assert_eq!(&*web.name, "web-6b7f9c8d5-abcde");
        let found = table.lookup("c", ip("10.0.0.1"), AT).ok_or("no 10.0.0.1")?;
        assert_eq!(found.uid.to_string(), "uid-web-6b7f9c8d5-abcde");
        assert_eq!(web.node.as_deref(), Some("n1"));
        assert_eq!(&*web.workload.namespace, "ns");
        assert_eq!(web.workload.service_account.as_deref(), Some("sa"));
        Ok(())
    }

    #[test]
    fn pods_of_one_workload_share_labels_and_workload() -> TestResult {
        let labels = r#""app": "web", "pod-template-hash": "6b7f9c8d5""#;
        let items = [
            pod_json(
                "web-6b7f9c8d5-aaaaa",
                "10.0.0.1",
                "ReplicaSet",
                "web-6b7f9c8d5",
                labels,
            ),
            pod_json(
                "web-6b7f9c8d5-bbbbb",
                "10.0.0.2",
                "ReplicaSet",
                "web-6b7f9c8d5",
                labels,
            ),
        ];
        let table = table("c", &list(&items))?;
        let a = pod_at(&table, "c", "10.0.0.1").ok_or("no pod a")?;
        let b = pod_at(&table, "c", "10.0.0.2").ok_or("no pod b")?;
        assert!(Arc::ptr_eq(&a.labels, &b.labels));
        assert!(Arc::ptr_eq(&a.workload, &b.workload));
        assert!(Arc::ptr_eq(&a.workload.namespace, &b.workload.namespace));
        Ok(())
    }

    #[test]
    fn host_network_pods_resolve_to_their_node() -> TestResult {
        let mut host = pod_json(
            "kube-proxy-abcde",
            "192.168.0.10",
            "DaemonSet",
            "kube-proxy",
            "",
        );
        host = host.replace(
            r#""nodeName": "n1""#,
            r#""nodeName": "n1", "hostNetwork": true"#,
        );
        let mut orphan = pod_json(
            "exporter-zzzzz",
            "192.168.0.11",
            "DaemonSet",
            "exporter",
            "",
        );
        orphan = orphan.replace(
            r#""nodeName": "n1""#,
            r#""nodeName": "n2", "hostNetwork": true"#,
        );
        let node =
            r#"{"kind": "Node", "metadata": {"name": "n1", "labels": {"zone": "a"}}}"#.to_owned();
        let table = table("c", &list(&[host, orphan, node]))?;
        match table
            .lookup("c", ip("192.168.0.10"), AT)
            .map(|f| f.identity)
        {
            Some(Identity::Node(node)) => {
                assert_eq!(&*node.name, "n1");
                assert_eq!(node.labels.get("zone"), Some("a"));
            }
            other => panic!("expected node n1, got {other:?}"),
        }
        // Node n2 is not in the snapshot: its name still comes from the pod.
        match table
            .lookup("c", ip("192.168.0.11"), AT)
            .map(|f| f.identity)
        {
            Some(Identity::Node(node)) => {
                assert_eq!(&*node.name, "n2");
                assert!(node.labels.is_empty());
            }
            other => panic!("expected node n2, got {other:?}"),
        }
        // Two hostNetwork pods, one node object; both addresses resolve to nodes.
        assert_eq!(table.stats().pods, 2);
        assert_eq!(table.stats().nodes, 1);
        assert_eq!(table.stats().addresses, 2);
        Ok(())
    }

    #[test]
    fn a_live_pod_wins_over_a_finished_one_and_the_newest_wins_among_equals() -> TestResult {
        let finished = pod_json("job-1-aaaaa", "10.0.0.1", "", "", "")
            .replace(r#""phase": "Running""#, r#""phase": "Succeeded""#);
        let running = pod_json("web-bbbbb", "10.0.0.1", "", "", "");
        for items in [[finished.clone(), running.clone()], [running, finished]] {
            let table = table("c", &list(&items))?;
            assert_eq!(
                pod_at(&table, "c", "10.0.0.1").map(|p| &*p.name),
                Some("web-bbbbb")
            );
            // The finished pod is known but claims no address (see
            // `a_finished_pod_is_the_same_from_a_snapshot_and_from_records`): no conflict.
            assert_eq!(table.stats().pods, 2);
            assert_eq!(table.stats().conflicts, 0);
        }
        let older = pod_json("old", "10.0.0.2", "", "", "").replace(
            r#""uid": "uid-old""#,
            r#""uid": "uid-old", "creationTimestamp": "2023-01-01T00:00:00Z""#,
        );
        let newer = pod_json("new", "10.0.0.2", "", "", "").replace(
            r#""uid": "uid-new""#,
            r#""uid": "uid-new", "creationTimestamp": "2023-01-02T00:00:00Z""#,
        );
        let table = table("c", &list(&[newer, older]))?;
        assert_eq!(
            pod_at(&table, "c", "10.0.0.2").map(|p| &*p.name),
            Some("new")
        );
        Ok(())
    }

    /// The finished-pod rule, decided once for every source (as-of: a pod held its address
    /// until it was seen finished; one first seen finished holds none, because when it
    /// released the address is unknown and another pod may hold it since): the same pod
    /// gives the same table whether a snapshot file or identity records describe it.
    #[test]
    fn a_finished_pod_is_the_same_from_a_snapshot_and_from_records() -> TestResult {
        let running = pod_json("job-1", "10.0.0.1", "", "", "").replace(
            r#""uid": "uid-job-1""#,
            r#""uid": "uid-job-1", "creationTimestamp": "2023-11-14T00:00:00Z""#,
        );
        let finished = running.replace(r#""phase": "Running""#, r#""phase": "Succeeded""#);
        let created = Timestamp::parse_rfc3339("2023-11-14T00:00:00Z")?;
        let seen_finished = AT;
        let record =
            |json: &str, observed_at| -> Result<IdentityRecord, Box<dyn std::error::Error>> {
                let value = serde_json::from_str(json)?;
                let converted = from_api_object("c", value, observed_at)?.ok_or("not a record")?;
                Ok(converted.record)
            };
        let times = [
            Timestamp::from_micros(created.as_micros() - 3_600_000_000),
            created,
            Timestamp::from_micros(seen_finished.as_micros() - 1),
            seen_finished,
            Timestamp::from_micros(seen_finished.as_micros() + 3_600_000_000),
        ];
        let state = |table: &IdentityTable| {
            let found = times.map(|at| {
                table
                    .lookup("c", ip("10.0.0.1"), at)
                    .map(|f| (f.identity.to_string(), f.uid.to_string(), f.status))
            });
            (table.stats(), found)
        };

        // First seen finished: a snapshot, or the watch's first list.
        let from_snapshot = table("c", &list(std::slice::from_ref(&finished)))?;
        let mut from_records = IdentityTable::default();
        from_records.apply(&record(&finished, seen_finished)?);
        assert_eq!(state(&from_snapshot), state(&from_records));
        let (stats, found) = state(&from_snapshot);
        assert_eq!((stats.pods, stats.addresses, stats.ended), (1, 0, 0));
        assert_eq!(found, [None, None, None, None, None]);

        // Seen running, then finished: the snapshot's pod and the record's are one object.
        let mut snapshot_then_record = table("c", &list(std::slice::from_ref(&running)))?;
        snapshot_then_record.apply(&record(&finished, seen_finished)?);
        let mut records_only = IdentityTable::default();
        records_only.apply(&record(&running, created)?);
        records_only.apply(&record(&finished, seen_finished)?);
        assert_eq!(state(&snapshot_then_record), state(&records_only));
        let (stats, found) = state(&records_only);
        assert_eq!((stats.pods, stats.addresses, stats.ended), (1, 1, 1));
        let job = |status| Some(("pod ns/job-1".to_owned(), "uid-job-1".to_owned(), status));
        assert_eq!(
            found,
            [
                job(EnrichmentStatus::Stale),
                job(EnrichmentStatus::Hit),
                job(EnrichmentStatus::Hit),
                job(EnrichmentStatus::Stale),
                job(EnrichmentStatus::Stale),
            ]
        );
        Ok(())
    }

    #[test]
    fn clusters_are_separate_and_keys_canonical() -> TestResult {
        let mut builder = IdentityTable::builder();
        builder.add_snapshot(
            "a",
            crate::test_support::snapshot(&list(&[pod_json("pa", "10.0.0.1", "", "", "")]))?,
        );
        builder.add_snapshot(
            "b",
            crate::test_support::snapshot(&list(&[pod_json("pb", "10.0.0.1", "", "", "")]))?,
        );
        // A second file of cluster a adds to it.
        builder.add_snapshot(
            "a",
            crate::test_support::snapshot(&list(&[pod_json(
                "pa2",
                "::ffff:10.0.0.2",
                "",
                "",
                "",
            )]))?,
        );
        let table = builder.build();
        assert_eq!(
            pod_at(&table, "a", "10.0.0.1").map(|p| &*p.name),
            Some("pa")
        );
        assert_eq!(
            pod_at(&table, "b", "10.0.0.1").map(|p| &*p.name),
            Some("pb")
        );
        assert!(table.lookup("c", ip("10.0.0.1"), AT).is_none());
        // Stored and looked up canonically, whichever way either side wrote it.
        assert_eq!(
            pod_at(&table, "a", "10.0.0.2").map(|p| &*p.name),
            Some("pa2")
        );
        assert_eq!(
            pod_at(&table, "a", "::ffff:10.0.0.1").map(|p| &*p.name),
            Some("pa")
        );
        assert_eq!(table.clusters(), vec!["a", "b"]);
        assert_eq!(table.stats().pods, 3);
        Ok(())
    }

    #[test]
    fn hubble_fixture_resolves_the_sample_endpoints() -> TestResult {
        let table = hubble_table("kind-kind")?;
        let c = "kind-kind";

        // hubble_otel_basic_10: a Deployment pod on the observing GKE node.
        let reviews = pod_at(&table, c, "10.0.2.16").ok_or("reviews-v1")?;
        assert_eq!(&*reviews.name, "reviews-v1-545db77b95-s6jb8");
        assert_eq!(&*reviews.workload.namespace, "bookinfo");
        assert_eq!(
            (&*reviews.workload.kind, &*reviews.workload.name),
            ("Deployment", "reviews-v1")
        );
        assert_eq!(
            reviews.workload.service_account.as_deref(),
            Some("bookinfo-reviews")
        );
        assert_eq!(
            reviews.node.as_deref(),
            Some("gke-ilya-otel-demo-1-ilya-otel-demo-1-6114bb84-zr1l")
        );
        assert_eq!(reviews.labels.get("app"), Some("reviews"));

        // hubble_otel_http_5: shown as reserved:world with a pod name; the pod is known here.
        let kube_dns = pod_at(&table, c, "10.156.3.6").ok_or("kube-dns")?;
        assert_eq!(
            (&*kube_dns.workload.kind, &*kube_dns.workload.name),
            ("Deployment", "kube-dns")
        );
        assert_eq!(kube_dns.node, None);
        let node_local = pod_at(&table, c, "10.156.0.2").ok_or("node-local-dns")?;
        assert_eq!(
            (&*node_local.workload.kind, &*node_local.workload.name),
            ("DaemonSet", "node-local-dns")
        );

        // cilium_docs_export_dropped: a bare pod and a Deployment pod.
        let xwing = pod_at(&table, c, "10.244.1.60").ok_or("xwing")?;
        assert_eq!(
            (&*xwing.workload.kind, &*xwing.workload.name),
            ("Pod", "xwing")
        );
        let deathstar = pod_at(&table, c, "10.244.1.5").ok_or("deathstar")?;
        assert_eq!(
            (&*deathstar.workload.kind, &*deathstar.workload.name),
            ("Deployment", "deathstar")
        );

        // reserved:host / remote-node / health addresses are the nodes'. 172.19.0.3 is also
        // the hostNetwork kube-apiserver pod's, which must not take it.
        for (addr, node) in [
            ("172.19.0.3", "kind-control-plane"),
            ("10.244.0.148", "kind-control-plane"),
            ("10.244.0.160", "kind-control-plane"),
            ("10.244.1.29", "kind-worker"),
            ("10.244.1.204", "kind-worker"),
            (
                "10.0.2.1",
                "gke-ilya-otel-demo-1-ilya-otel-demo-1-6114bb84-zr1l",
            ),
        ] {
            match table.lookup(c, ip(addr), AT).map(|f| f.identity) {
                Some(Identity::Node(n)) => assert_eq!(&*n.name, node, "{addr}"),
                other => panic!("{addr}: expected node {node}, got {other:?}"),
            }
        }
        match table.lookup(c, ip("10.96.0.10"), AT).map(|f| f.identity) {
            Some(Identity::Service(s)) => {
                assert_eq!((&*s.namespace, &*s.name), ("kube-system", "kube-dns"))
            }
            other => panic!("expected kube-dns Service, got {other:?}"),
        }
        // reserved:world addresses are nobody's.
        for addr in [
            "35.246.31.234",
            "10.128.0.4",
            "fe80::64d8:8aff:fe72:fc14",
            "ff02::2",
        ] {
            assert!(table.lookup(c, ip(addr), AT).is_none(), "{addr}");
        }
        assert_eq!(
            table.stats(),
            TableStats {
                // 22 pods with their own address and the hostNetwork kube-apiserver pod.
                pods: 23,
                nodes: 6,
                services: 2,
                namespaces: 5,
                addresses: 30,
                conflicts: 0,
                ..TableStats::default()
            }
        );
        assert_eq!(
            table
                .namespace_labels(c, "bookinfo")
                .and_then(|l| l.get("istio-injection")),
            Some("enabled")
        );
        Ok(())
    }

    #[test]
    fn load_reads_every_configured_snapshot() -> TestResult {
        let dir = tempfile::tempdir()?;
        let extra = dir.path().join("extra.json");
        std::fs::write(&extra, list(&[pod_json("solo", "10.9.9.9", "", "", "")]))?;
        let settings = EnrichSettings {
            snapshots: vec![
                SnapshotSource {
                    cluster_id: "kind".into(),
                    path: hubble_fixture(),
                },
                SnapshotSource {
                    cluster_id: "other".into(),
                    path: extra,
                },
            ],
            ..EnrichSettings::default()
        };
        let table = IdentityTable::load(&settings)?;
        assert_eq!(table.clusters(), vec!["kind", "other"]);
        assert!(pod_at(&table, "kind", "10.0.2.16").is_some());
        assert!(pod_at(&table, "other", "10.0.2.16").is_none());
        assert!(pod_at(&table, "other", "10.9.9.9").is_some());

        let missing = EnrichSettings {
            snapshots: vec![SnapshotSource {
                cluster_id: "x".into(),
                path: PathBuf::from("/nonexistent.json"),
            }],
            ..EnrichSettings::default()
        };
        match IdentityTable::load(&missing) {
            Err(SnapshotError::Read { path, .. }) => {
                assert_eq!(path, PathBuf::from("/nonexistent.json"))
            }
            other => panic!("expected a read error, got {other:?}"),
        }
        Ok(())
    }

    /// An object claiming an address, for the order-independence property.
    #[derive(Clone, Debug)]
    enum Claimant {
        Pod {
            ip: u8,
            finished: bool,
            terminating: bool,
        },
        HostNetworkPod {
            ip: u8,
        },
        Node {
            ip: u8,
        },
        Service {
            ip: u8,
        },
    }

    fn claimant() -> impl Strategy<Value = Claimant> {
        prop_oneof![
            (0u8..6, any::<bool>(), any::<bool>()).prop_map(|(ip, finished, terminating)| {
                Claimant::Pod {
                    ip,
                    finished,
                    terminating,
                }
            }),
            (0u8..6).prop_map(|ip| Claimant::HostNetworkPod { ip }),
            (0u8..6).prop_map(|ip| Claimant::Node { ip }),
            (0u8..6).prop_map(|ip| Claimant::Service { ip }),
        ]
    }

    fn snapshot_of(claimants: &[(usize, Claimant)]) -> Snapshot {
        let mut snapshot = Snapshot::default();
        let addr = |ip: u8| IpAddr::from([10, 0, 0, ip]);
        for (id, claimant) in claimants {
            // Distinct creation times: ties between equal claims are broken by file order,
            // which is the one thing allowed to depend on order.
            let created_at = Some(Timestamp::from_secs(1_000 + *id as i64));
            match claimant {
                Claimant::Pod {
                    ip,
                    finished,
                    terminating,
                } => snapshot.pods.push(PodObject {
                    namespace: "ns".into(),
                    name: format!("pod-{id}"),
                    ips: vec![addr(*ip)],
                    finished: *finished,
                    deleted_at: terminating.then_some(Timestamp::from_secs(5_000)),
                    created_at,
                    ..PodObject::default()
                }),
                Claimant::HostNetworkPod { ip } => snapshot.pods.push(PodObject {
                    namespace: "ns".into(),
                    name: format!("host-{id}"),
                    node_name: Some(format!("node-{id}")),
                    host_network: true,
                    ips: vec![addr(*ip)],
                    created_at,
                    ..PodObject::default()
                }),
                Claimant::Node { ip } => snapshot.nodes.push(NodeObject {
                    name: format!("node-{id}"),
                    ips: vec![addr(*ip)],
                    ..NodeObject::default()
                }),
                Claimant::Service { ip } => snapshot.services.push(ServiceObject {
                    namespace: "ns".into(),
                    name: format!("svc-{id}"),
                    ips: vec![addr(*ip)],
                    ..ServiceObject::default()
                }),
            }
        }
        snapshot
    }

    fn resolved(table: &IdentityTable) -> Vec<Option<String>> {
        (0u8..6)
            .map(|i| {
                table
                    .lookup("c", IpAddr::from([10, 0, 0, i]), AT)
                    .map(|f| f.identity.to_string())
            })
            .collect()
    }

    proptest! {
        /// Which object wins an address does not depend on the order of the file, as long
        /// as pods are told apart by creation time and other kinds never tie.
        #[test]
        fn the_winner_of_an_address_does_not_depend_on_file_order(
            claimants in proptest::collection::vec(claimant(), 1..12),
            seed in any::<u64>(),
        ) {
            // Nodes and Services of equal standing would tie on one address: keep at most
            // one of each per address.
            let mut seen = HashSet::new();
            let claimants: Vec<(usize, Claimant)> = claimants
                .into_iter()
                .enumerate()
                .filter(|(_, c)| match c {
                    Claimant::Node { ip } => seen.insert(("node", *ip)),
                    Claimant::Service { ip } => seen.insert(("svc", *ip)),
                    Claimant::HostNetworkPod { ip } => seen.insert(("host", *ip)),
                    Claimant::Pod { .. } => true,
                })
                .collect();
            let mut shuffled = claimants.clone();
            // A deterministic shuffle from the seed.
            let n = shuffled.len();
            let mut state = seed;
            for i in (1..n).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (state >> 33) as usize % (i + 1));
            }
            let build = |items: &[(usize, Claimant)]| {
                let mut builder = IdentityTable::builder();
                builder.add_snapshot("c", snapshot_of(items));
                builder.build()
            };
            let (a, b) = (build(&claimants), build(&shuffled));
            prop_assert_eq!(resolved(&a), resolved(&b));
            prop_assert_eq!(a.stats(), b.stats());
        }
    }
}
