//! Identity sources end to end: the Kubernetes watch against a local list/watch server
//! (`kube_api`), the identity publisher writing the compacted `k8s.identity` topic on the
//! real broker, enrich bootstrapping from that topic, and the shipped RBAC.

mod kube_api;
mod stages;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flowlake_identity::objects_to_identity::record_key;
use flowlake_identity::watch;
use flowlake_runtime::http::Readiness;
use flowlake_schemas::{
    AvroCodec, EnrichedFlow, FlowEvent, IdentityKind, IdentityRecord, Ip, OwnerRef, Timestamp,
};
use kube_api::FakeApi;
use rdkafka::Message;
use serde_json::{Value, json};
use stages::StageProcess;
use support::Tansu;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const CLUSTER: &str = "prod";
const CREATED: &str = "2024-05-01T10:00:00Z";

fn ts(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn ip(text: &str) -> Ip {
    Ip(text.parse().unwrap_or_else(|e| panic!("{text}: {e}")))
}

fn pod(uid: &str, name: &str, ip: &str, labels: Value) -> Value {
    json!({"kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": uid, "labels": labels,
            "creationTimestamp": CREATED,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "web-7d4b9c", "uid": "u-rs", "controller": true}]},
        "spec": {"nodeName": "node-a", "serviceAccountName": "web-sa",
                 "containers": [{"name": "web", "image": "nginx"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})
}

fn service(cluster_ips: &[&str]) -> Value {
    json!({"kind": "Service",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u-svc", "creationTimestamp": CREATED},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ips[0], "clusterIPs": cluster_ips,
                 "ports": [{"port": 80}]}})
}

/// A small cluster: a namespace, a node, a Deployment's ReplicaSet and pod, a Service, a
/// CronJob's Job.
fn seed_cluster(api: &FakeApi) {
    api.apply(json!({"kind": "Namespace",
        "metadata": {"name": "shop", "uid": "u-ns", "labels": {"team": "checkout"}}}));
    api.apply(json!({"kind": "Node",
        "metadata": {"name": "node-a", "uid": "u-node", "labels": {"zone": "a"}},
        "status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.2"},
                                 {"type": "Hostname", "address": "node-a"}]}}));
    api.apply(json!({"kind": "ReplicaSet",
        "metadata": {"name": "web-7d4b9c", "namespace": "shop", "uid": "u-rs",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                "uid": "u-deploy", "controller": true}]}}));
    api.apply(json!({"kind": "Job",
        "metadata": {"name": "nightly-28000000", "namespace": "shop", "uid": "u-job",
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly",
                "uid": "u-cron", "controller": true}]}}));
    api.apply(pod(
        "u-pod-a",
        "web-7d4b9c-aaaaa",
        "10.1.0.5",
        json!({"app": "web"}),
    ));
    api.apply(service(&["10.96.0.10"]));
}

fn base(kind: IdentityKind, uid: &str, name: &str) -> IdentityRecord {
    IdentityRecord {
        cluster_id: CLUSTER.into(),
        kind,
        uid: uid.into(),
        name: name.into(),
        ..IdentityRecord::default()
    }
}

fn pod_record(uid: &str, name: &str, address: &str, labels: &[(&str, &str)]) -> IdentityRecord {
    IdentityRecord {
        namespace: Some("shop".into()),
        ips: vec![ip(address)],
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        owner: Some(OwnerRef {
            kind: "ReplicaSet".into(),
            name: "web-7d4b9c".into(),
            uid: "u-rs".into(),
        }),
        node: Some("node-a".into()),
        service_account: Some("web-sa".into()),
        created_at: Some(ts(CREATED)),
        ..base(IdentityKind::Pod, uid, name)
    }
}

fn service_record(cluster_ips: &[&str]) -> IdentityRecord {
    IdentityRecord {
        namespace: Some("shop".into()),
        ips: cluster_ips.iter().map(|a| ip(a)).collect(),
        ..base(IdentityKind::Service, "u-svc", "web")
    }
}

/// The records of [`seed_cluster`], by key, observation time zeroed.
fn seeded_records() -> BTreeMap<String, IdentityRecord> {
    let records = vec![
        IdentityRecord {
            labels: [("team".to_owned(), "checkout".to_owned())].into(),
            ..base(IdentityKind::Namespace, "u-ns", "shop")
        },
        IdentityRecord {
            labels: [("zone".to_owned(), "a".to_owned())].into(),
            ips: vec![ip("172.18.0.2")],
            ..base(IdentityKind::Node, "u-node", "node-a")
        },
        IdentityRecord {
            namespace: Some("shop".into()),
            owner: Some(OwnerRef {
                kind: "Deployment".into(),
                name: "web".into(),
                uid: "u-deploy".into(),
            }),
            ..base(IdentityKind::Owner, "u-rs", "web-7d4b9c")
        },
        IdentityRecord {
            namespace: Some("shop".into()),
            owner: Some(OwnerRef {
                kind: "CronJob".into(),
                name: "nightly".into(),
                uid: "u-cron".into(),
            }),
            ..base(IdentityKind::Owner, "u-job", "nightly-28000000")
        },
        pod_record("u-pod-a", "web-7d4b9c-aaaaa", "10.1.0.5", &[("app", "web")]),
        service_record(&["10.96.0.10"]),
    ];
    records.into_iter().map(|r| (record_key(&r), r)).collect()
}

/// `record` with its observation time zeroed, after checking that it is recent.
fn settled(mut record: IdentityRecord, since: Timestamp) -> IdentityRecord {
    assert!(
        record.observed_at >= since && record.observed_at <= Timestamp::now(),
        "observed_at {} not in [{since}, now]: {record:?}",
        record.observed_at
    );
    record.observed_at = Timestamp::EPOCH;
    record
}

/// Exactly `n` records within `timeout`, and no more in the quiet second after.
async fn take(
    rx: &mut mpsc::Receiver<IdentityRecord>,
    n: usize,
    timeout: Duration,
) -> Vec<IdentityRecord> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(record)) => out.push(record),
            Ok(None) => panic!("watch ended after {out:?}"),
            Err(_) => panic!("expected {n} records within {timeout:?}, got {out:#?}"),
        }
    }
    if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
        panic!("expected exactly {n} records; also got {extra:#?} after {out:#?}");
    }
    out
}

fn by_key(records: Vec<IdentityRecord>, since: Timestamp) -> BTreeMap<String, IdentityRecord> {
    records
        .into_iter()
        .map(|r| (record_key(&r), settled(r, since)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_lists_follows_and_relists_after_410_gone() {
    let api = FakeApi::start().await;
    seed_cluster(&api);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let kubeconfig = api.write_kubeconfig(dir.path());
    let client = watch::client(Some(&kubeconfig))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (mut tx, mut rx) = mpsc::channel(64);
    let ready = Readiness::default();
    let stop = CancellationToken::new();
    let started = Timestamp::now();
    let task = {
        let (ready, stop) = (ready.clone(), stop.clone());
        tokio::spawn(
            async move { watch::run(client, CLUSTER, Vec::new(), &mut tx, ready, stop).await },
        )
    };

    // The initial list: one record per object, exactly.
    let listed = by_key(take(&mut rx, 6, Duration::from_secs(20)).await, started);
    assert_eq!(listed, seeded_records());
    support::eventually(Duration::from_secs(5), "watch ready", || {
        ready.get().then_some(())
    });

    // ADDED, MODIFIED, DELETED.
    let t = Timestamp::now();
    api.apply(pod(
        "u-pod-b",
        "web-7d4b9c-bbbbb",
        "10.1.0.6",
        json!({"app": "web"}),
    ));
    let added = take(&mut rx, 1, Duration::from_secs(10)).await;
    let expected_b = pod_record("u-pod-b", "web-7d4b9c-bbbbb", "10.1.0.6", &[("app", "web")]);
    assert_eq!(settled(added[0].clone(), t), expected_b);
    api.apply(pod(
        "u-pod-a",
        "web-7d4b9c-aaaaa",
        "10.1.0.5",
        json!({"app": "web", "v": "2"}),
    ));
    let modified = take(&mut rx, 1, Duration::from_secs(10)).await;
    let expected_a2 = pod_record(
        "u-pod-a",
        "web-7d4b9c-aaaaa",
        "10.1.0.5",
        &[("app", "web"), ("v", "2")],
    );
    assert_eq!(settled(modified[0].clone(), t), expected_a2);
    api.delete("Pod", "u-pod-b");
    let deleted = take(&mut rx, 1, Duration::from_secs(10)).await;
    let deleted = deleted[0].clone();
    assert_eq!(
        deleted.deleted_at,
        Some(deleted.observed_at),
        "a deletion without a grace period ends when observed"
    );
    assert_eq!(
        settled(
            IdentityRecord {
                deleted_at: None,
                ..deleted
            },
            t
        ),
        expected_b,
        "a deletion carries the object's last state"
    );

    // A bookmark moves the watch on without a record and without a relist.
    let pod_lists = api.lists("/api/v1/pods");
    api.bookmark();
    api.apply(service(&["10.96.0.10", "fd00:96::10"]));
    let changed = take(&mut rx, 1, Duration::from_secs(10)).await;
    assert_eq!(
        settled(changed[0].clone(), t),
        service_record(&["10.96.0.10", "fd00:96::10"])
    );
    assert_eq!(api.lists("/api/v1/pods"), pod_lists);

    // Changes the watch misses, then 410 Gone: the relist finds exactly them.
    let t = Timestamp::now();
    api.delete_silently("Pod", "u-pod-a");
    api.apply_silently(pod(
        "u-pod-c",
        "web-7d4b9c-ccccc",
        "10.1.0.7",
        json!({"app": "web"}),
    ));
    api.apply_silently(service(&["10.96.0.10"]));
    api.expire();
    let relisted = take(&mut rx, 3, Duration::from_secs(30)).await;
    let relisted = by_key(relisted, t);
    let gone = relisted
        .get("prod/pod/u-pod-a")
        .cloned()
        .unwrap_or_else(|| panic!("no deletion of pod a: {relisted:#?}"));
    assert!(
        gone.deleted_at.is_some_and(|at| at >= t),
        "pod a deleted during the gap: {gone:?}"
    );
    let expected: BTreeMap<String, IdentityRecord> = [
        IdentityRecord {
            deleted_at: gone.deleted_at,
            ..expected_a2
        },
        pod_record("u-pod-c", "web-7d4b9c-ccccc", "10.1.0.7", &[("app", "web")]),
        service_record(&["10.96.0.10"]),
    ]
    .into_iter()
    .map(|r| (record_key(&r), r))
    .collect();
    assert_eq!(relisted, expected);
    assert!(api.lists("/api/v1/pods") > pod_lists, "410 forced a relist");

    stop.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(5), task).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "watch stops on shutdown: {stopped:?}"
    );
}

/// Runs the watch of `api` until `stop`: its records, readiness and task.
async fn start_watch(
    api: &FakeApi,
    dir: &std::path::Path,
    stop: &CancellationToken,
) -> (
    mpsc::Receiver<IdentityRecord>,
    Readiness,
    tokio::task::JoinHandle<Result<(), flowlake_identity::SinkClosed>>,
) {
    let kubeconfig = api.write_kubeconfig(dir);
    let client = watch::client(Some(&kubeconfig))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (mut tx, rx) = mpsc::channel(64);
    let ready = Readiness::default();
    let task = {
        let (ready, stop) = (ready.clone(), stop.clone());
        tokio::spawn(
            async move { watch::run(client, CLUSTER, Vec::new(), &mut tx, ready, stop).await },
        )
    };
    (rx, ready, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calico_network_sets_are_watched_where_installed_and_skipped_where_not() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let api = FakeApi::start_with_calico().await;
    seed_cluster(&api);
    api.apply(json!({"kind": "GlobalNetworkSet",
        "metadata": {"name": "stripe", "uid": "u-gns", "labels": {"vendor": "stripe"}},
        "spec": {"nets": ["54.187.174.169/32", "2600:1f00::/24"]}}));
    api.apply(json!({"kind": "NetworkSet",
        "metadata": {"name": "partners", "namespace": "shop", "uid": "u-nset"},
        "spec": {"nets": ["198.51.100.0/24"]}}));
    let stop = CancellationToken::new();
    let started = Timestamp::now();
    let (mut rx, ready, task) = start_watch(&api, dir.path(), &stop).await;
    let listed = by_key(take(&mut rx, 8, Duration::from_secs(20)).await, started);
    let global = IdentityRecord {
        cidrs: vec!["54.187.174.169/32".into(), "2600:1f00::/24".into()],
        labels: [("vendor".to_owned(), "stripe".to_owned())].into(),
        ..base(IdentityKind::NetworkSet, "u-gns", "stripe")
    };
    let namespaced = IdentityRecord {
        namespace: Some("shop".into()),
        cidrs: vec!["198.51.100.0/24".into()],
        ..base(IdentityKind::NetworkSet, "u-nset", "partners")
    };
    let mut expected = seeded_records();
    for record in [global.clone(), namespaced] {
        expected.insert(record_key(&record), record);
    }
    assert_eq!(listed, expected);
    support::eventually(Duration::from_secs(5), "watch ready", || {
        ready.get().then_some(())
    });
    // Watched, not only listed: a deletion arrives as one.
    api.delete("GlobalNetworkSet", "u-gns");
    let deleted = take(&mut rx, 1, Duration::from_secs(10)).await;
    assert!(deleted[0].deleted_at.is_some(), "{deleted:?}");
    assert_eq!(
        settled(
            IdentityRecord {
                deleted_at: None,
                ..deleted[0].clone()
            },
            started
        ),
        global
    );
    stop.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(5), task).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");

    // Without the CRDs (404): listed once each, never watched, and readiness is not held.
    let api = FakeApi::start().await;
    seed_cluster(&api);
    let stop = CancellationToken::new();
    let started = Timestamp::now();
    let (mut rx, ready, task) = start_watch(&api, dir.path(), &stop).await;
    let listed = by_key(take(&mut rx, 6, Duration::from_secs(20)).await, started);
    assert_eq!(listed, seeded_records());
    support::eventually(Duration::from_secs(5), "watch ready without calico", || {
        ready.get().then_some(())
    });
    for path in [kube_api::NETWORK_SETS, kube_api::GLOBAL_NETWORK_SETS] {
        assert_eq!((api.lists(path), api.watches(path)), (1, 0), "{path}");
    }
    stop.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(5), task).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
}

fn decode_topic(
    brokers: &str,
    topic: &str,
    at_least: usize,
) -> Vec<(String, Option<IdentityRecord>)> {
    let codec = AvroCodec::<IdentityRecord>::new().unwrap_or_else(|e| panic!("{e}"));
    support::consume_all(brokers, topic, at_least, Duration::from_secs(30))
        .into_iter()
        .map(|m| {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let value = m
                .payload()
                .map(|p| codec.decode(p).unwrap_or_else(|e| panic!("{key}: {e}")));
            (key, value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_writes_the_cluster_to_the_compacted_topic() {
    let tansu = Tansu::start();
    let brokers = format!("127.0.0.1:{}", tansu.port());
    support::create_compacted_topics(&brokers, &[("k8s.identity", 3)]).await;
    let api = FakeApi::start().await;
    seed_cluster(&api);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let kubeconfig = api.write_kubeconfig(dir.path());
    let started = Timestamp::now();
    let args: Vec<String> = vec![
        "--brokers".into(),
        brokers.clone(),
        "--cluster-id".into(),
        CLUSTER.into(),
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "--tombstone-after".into(),
        "2s".into(),
    ];
    let publisher = StageProcess::start("flowlake-identity-publisher", &args, &[], dir.path());
    support::eventually(Duration::from_secs(30), "publisher ready", || {
        (publisher.get("/readyz").map(|(code, _)| code) == Some(200)).then_some(())
    });

    let published = decode_topic(&brokers, "k8s.identity", 6);
    let published: BTreeMap<String, IdentityRecord> = published
        .into_iter()
        .map(|(key, value)| {
            let record = value.unwrap_or_else(|| panic!("unexpected tombstone for {key}"));
            assert_eq!(key, record_key(&record), "key is cluster/kind/uid");
            (key, settled(record, started))
        })
        .collect();
    assert_eq!(published, seeded_records());

    // A deletion is a record with deleted_at, then (after --tombstone-after) a tombstone.
    api.delete("Pod", "u-pod-a");
    let all = decode_topic(&brokers, "k8s.identity", 8);
    let for_pod: Vec<&(String, Option<IdentityRecord>)> = all
        .iter()
        .filter(|(k, _)| k == "prod/pod/u-pod-a")
        .collect();
    assert_eq!(
        for_pod.len(),
        3,
        "created, deleted, tombstoned: {for_pod:#?}"
    );
    let deleted = for_pod[1]
        .1
        .clone()
        .unwrap_or_else(|| panic!("deletion record expected"));
    assert!(deleted.deleted_at.is_some(), "{deleted:?}");
    assert_eq!(for_pod[2].1, None, "tombstone");
    let metrics = publisher.metrics();
    assert_eq!(
        stages::metric_sum(&metrics, "flowlake_identity_publisher_records_total"),
        8.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrich_bootstraps_from_the_identity_topic_and_enriches_with_it() {
    let tansu = Tansu::start();
    let brokers = format!("127.0.0.1:{}", tansu.port());
    support::create_topics(
        &brokers,
        &[("flows.events", 1), ("flows.enriched", 1), ("flows.dlq", 1)],
    )
    .await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // Started before the identity topic exists: it must wait, not ready.
    let args: Vec<String> = vec![
        "--brokers".into(),
        brokers.clone(),
        "--identity-topic".into(),
        "k8s.identity".into(),
    ];
    let enrich = StageProcess::start("flowlake-enrich", &args, &[], dir.path());
    support::eventually(Duration::from_secs(20), "enrich serving http", || {
        enrich.get("/readyz")
    });
    std::thread::sleep(Duration::from_secs(2));
    let (code, body) = enrich.get("/readyz").unwrap_or_default();
    assert_eq!(
        code, 503,
        "not ready before the identity topic is read: {body}"
    );
    assert!(body.contains("identity"), "{body}");

    support::create_compacted_topics(&brokers, &[("k8s.identity", 2)]).await;
    let codec = AvroCodec::<IdentityRecord>::new().unwrap_or_else(|e| panic!("{e}"));
    let observed = Timestamp::parse_rfc3339(CREATED).unwrap_or_else(|e| panic!("{e}"));
    let records: Vec<(String, Vec<u8>)> = seeded_records()
        .into_values()
        .map(|r| {
            let r = IdentityRecord {
                observed_at: observed,
                ..r
            };
            (record_key(&r), codec.encode(&r))
        })
        .collect();
    let batch: Vec<(Option<&[u8]>, &[u8])> = records
        .iter()
        .map(|(k, v)| (Some(k.as_bytes()), v.as_slice()))
        .collect();
    support::produce(&brokers, "k8s.identity", &batch).await;
    // Ready means caught up with the topic as enrich first saw it; the topic may still have
    // been empty then (it was created just before the records were produced), so also wait
    // until the records are in the table. (Tansu also reports a partition's end offset as the
    // start of its last batch plus one, which can make "caught up" early on that broker.)
    let applied = records.len() as f64;
    support::eventually(
        Duration::from_secs(30),
        "enrich ready with the identity applied",
        || {
            let ready = enrich.get("/readyz").map(|(code, _)| code) == Some(200);
            let metrics = enrich
                .get("/metrics")
                .map(|(_, body)| body)
                .unwrap_or_default();
            let updates = stages::metric_sum(&metrics, "flowlake_enrich_identity_updates_total");
            (ready && updates >= applied).then_some(())
        },
    );

    let now = Timestamp::now();
    let event = FlowEvent {
        event_id: "e-1".into(),
        cluster_id: CLUSTER.into(),
        source_format: "hubble".into(),
        start_time: now,
        end_time: now,
        src_ip: Some(ip("10.1.0.5")),
        dst_ip: Some(ip("10.96.0.10")),
        src_port: Some(40000),
        dst_port: Some(80),
        protocol: Some(6),
        ..FlowEvent::default()
    };
    let payload = AvroCodec::<FlowEvent>::new()
        .map(|c| c.encode(&event))
        .unwrap_or_else(|e| panic!("{e}"));
    support::produce(&brokers, "flows.events", &[(None, payload.as_slice())]).await;
    let out = support::consume_all(&brokers, "flows.enriched", 1, Duration::from_secs(30));
    assert_eq!(out.len(), 1, "{}", enrich.log_tail());
    let flow = AvroCodec::<EnrichedFlow>::new()
        .and_then(|c| c.decode(out[0].payload().unwrap_or_default()))
        .unwrap_or_else(|e| panic!("{e}"));
    let src = serde_json::to_value(&flow.src).unwrap_or_default();
    assert_eq!(
        src,
        json!({"kind": "pod", "namespace": "shop", "name": "web-7d4b9c-aaaaa",
            "pod_uid": "u-pod-a", "workload_kind": "Deployment", "workload_name": "web",
            "aggregated_name": null, "service_account": "web-sa",
            "labels": {"app": "web"}, "node": "node-a", "service_namespace": null,
            "service_name": null, "network_set": null, "dns_names": [], "status": "hit"}),
        "{flow:#?}"
    );
    let dst = serde_json::to_value(&flow.dst).unwrap_or_default();
    assert_eq!(dst["kind"], "service", "{flow:#?}");
    assert_eq!(dst["service_name"], "web", "{flow:#?}");
    assert_eq!(dst["status"], "hit", "{flow:#?}");
}

#[test]
fn the_rbac_grants_only_read_access_to_the_identity_kinds() {
    let path = support::repo_root().join("deploy/kubernetes/base/rbac.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    let documents: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            <serde_yaml::Value as serde::Deserialize>::deserialize(d)
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let kinds: Vec<&str> = documents
        .iter()
        .filter_map(|d| d["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"]
    );
    let strings = |v: &serde_yaml::Value| -> Vec<String> {
        v.as_sequence()
            .unwrap_or_else(|| panic!("not a list: {v:?}"))
            .iter()
            .map(|s| s.as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let mut granted: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for rule in documents[1]["rules"]
        .as_sequence()
        .unwrap_or_else(|| panic!("no rules"))
    {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                let mut verbs = strings(&rule["verbs"]);
                verbs.sort();
                granted.insert((group.clone(), resource), verbs);
            }
        }
        assert!(
            rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none(),
            "{rule:?}"
        );
    }
    let read = vec!["get".to_owned(), "list".to_owned(), "watch".to_owned()];
    let expected: BTreeMap<(String, String), Vec<String>> = [
        ("", "pods"),
        ("", "services"),
        ("", "nodes"),
        ("", "namespaces"),
        ("apps", "replicasets"),
        ("batch", "jobs"),
        ("crd.projectcalico.org", "networksets"),
        ("crd.projectcalico.org", "globalnetworksets"),
    ]
    .into_iter()
    .map(|(g, r)| ((g.to_owned(), r.to_owned()), read.clone()))
    .collect();
    assert_eq!(granted, expected);
    // Every resource the watch reads is granted, and nothing else.
    let watched: Vec<&str> = watch::Resource::ALL.iter().map(|r| r.plural()).collect();
    let granted_resources: Vec<&str> = granted.keys().map(|(_, r)| r.as_str()).collect();
    let mut a = watched.clone();
    a.sort_unstable();
    let mut b = granted_resources.clone();
    b.sort_unstable();
    assert_eq!(a, b);
    // The binding gives the role to the service account.
    let binding = &documents[2];
    assert_eq!(binding["roleRef"]["name"], documents[1]["metadata"]["name"]);
    assert_eq!(
        binding["subjects"][0]["name"],
        documents[0]["metadata"]["name"]
    );
    assert_eq!(
        binding["subjects"][0]["namespace"],
        documents[0]["metadata"]["namespace"]
    );
}
