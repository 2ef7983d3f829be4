//! Reading identity snapshots: the output of
//! `kubectl get pods,services,nodes,namespaces -A -o json` (tests, the demo, air-gapped use).
//!
//! The file is a v1 `List` whose items carry their own `kind`; a single object, a typed list
//! straight from the API (`PodList`), and lists that also hold ReplicaSets and Jobs (the owners
//! that name a pod's workload) are accepted too. Only the fields enrich uses are read, into
//! plain [`Snapshot`] objects with parsed addresses, so the table builder never sees JSON.
//! Items are decoded one at a time and only their used fields are kept, so a snapshot of a
//! large cluster costs the size of its identities, not of its JSON. Items of other kinds
//! (ConfigMaps, CRDs, …) are skipped and counted. A file that is not JSON, not a list or
//! object of a known kind, or whose known objects have the wrong shape is a
//! [`SnapshotError`] naming the file: a half-read snapshot would silently turn pods into
//! externals, so nothing of a bad file is used.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::de;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use self::decode::{KnownKind, Object};
use crate::objects::{NamespaceObject, NodeObject, OwnerObject, PodObject, ServiceObject};

mod decode;

/// Why a snapshot file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The file could not be opened or read.
    #[error("cannot read identity snapshot {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not JSON, or an object of a known kind does not have the expected shape
    /// (the message names the object and the position).
    #[error("invalid identity snapshot {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// Parser error.
        #[source]
        source: serde_json::Error,
    },
    /// The document is neither a list nor a single object of a kind enrich reads.
    #[error(
        "identity snapshot {path} is not a Kubernetes List (found {found}): produce it with `kubectl get pods,services,nodes,namespaces -A -o json`"
    )]
    NotAList {
        /// The file.
        path: PathBuf,
        /// What the document is instead.
        found: String,
    },
}

impl SnapshotError {
    /// True when reading again may succeed (a transient I/O failure); a malformed file
    /// stays malformed.
    pub fn is_retryable(&self) -> bool {
        match self {
            SnapshotError::Read { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
            ),
            SnapshotError::Json { .. } | SnapshotError::NotAList { .. } => false,
        }
    }
}

/// The objects of one snapshot file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Pods.
    pub pods: Vec<PodObject>,
    /// Services.
    pub services: Vec<ServiceObject>,
    /// Nodes.
    pub nodes: Vec<NodeObject>,
    /// Namespaces.
    pub namespaces: Vec<NamespaceObject>,
    /// ReplicaSets and Jobs.
    pub owners: Vec<OwnerObject>,
    /// Items of other kinds, skipped: kind → count.
    pub skipped: BTreeMap<String, u64>,
}

impl Snapshot {
    /// Reads and parses a snapshot file.
    pub fn read(path: &Path) -> Result<Snapshot, SnapshotError> {
        let file = File::open(path).map_err(|source| SnapshotError::Read {
            path: path.to_owned(),
            source,
        })?;
        Snapshot::from_reader(BufReader::new(file), path)
    }

    /// Parses a snapshot from `reader`; `path` names it in errors.
    pub fn from_reader<R: BufRead>(mut reader: R, path: &Path) -> Result<Snapshot, SnapshotError> {
        // A JSON array or scalar would otherwise be reported as a confusing type error of
        // the first struct field.
        match first_non_whitespace(&mut reader) {
            Ok(Some(b'{')) => {}
            Ok(Some(other)) => {
                return Err(SnapshotError::NotAList {
                    path: path.to_owned(),
                    found: describe_first_byte(other),
                });
            }
            Ok(None) => {
                return Err(SnapshotError::NotAList {
                    path: path.to_owned(),
                    found: "an empty file".to_owned(),
                });
            }
            Err(source) => {
                return Err(SnapshotError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        let document: Document =
            serde_json::from_reader(reader).map_err(|source| SnapshotError::Json {
                path: path.to_owned(),
                source,
            })?;
        let mut snapshot = Snapshot::default();
        match document.kind.as_deref() {
            Some(kind) if kind.ends_with("List") => {
                // Typed lists from the API (`PodList`) leave `kind` out of their items.
                let item_kind = kind
                    .strip_suffix("List")
                    .filter(|k| KnownKind::from_name(k).is_some());
                for Item(object) in document.items.unwrap_or_default() {
                    let object = match (object, item_kind) {
                        (Object::Untyped(mut value), Some(item_kind)) => {
                            if let Some(map) = value.as_object_mut() {
                                map.insert("kind".to_owned(), Value::String(item_kind.to_owned()));
                            }
                            Object::from_value(value).map_err(|e| SnapshotError::Json {
                                path: path.to_owned(),
                                source: de::Error::custom(e),
                            })?
                        }
                        (object, _) => object,
                    };
                    snapshot.push(object);
                }
            }
            Some(kind) if KnownKind::from_name(kind).is_some() => {
                let single = Value::Object(document.single_object());
                let object = Object::from_value(single).map_err(|e| SnapshotError::Json {
                    path: path.to_owned(),
                    source: de::Error::custom(e),
                })?;
                snapshot.push(object);
            }
            Some(kind) => {
                return Err(SnapshotError::NotAList {
                    path: path.to_owned(),
                    found: format!("a single {kind}"),
                });
            }
            None => {
                return Err(SnapshotError::NotAList {
                    path: path.to_owned(),
                    found: "an object without `kind`".to_owned(),
                });
            }
        }
        Ok(snapshot)
    }

    /// Parses a snapshot held in memory; `path` names it in errors.
    pub fn from_slice(bytes: &[u8], path: &Path) -> Result<Snapshot, SnapshotError> {
        Snapshot::from_reader(bytes, path)
    }

    /// Adds the objects of `other` (another file of the same cluster).
    pub fn merge(&mut self, other: Snapshot) {
        self.pods.extend(other.pods);
        self.services.extend(other.services);
        self.nodes.extend(other.nodes);
        self.namespaces.extend(other.namespaces);
        self.owners.extend(other.owners);
        for (kind, count) in other.skipped {
            *self.skipped.entry(kind).or_default() += count;
        }
    }

    /// Decodes one API object (JSON with its `kind`) exactly as a snapshot item is decoded,
    /// into a snapshot holding just that object (or counting it as skipped). The live
    /// Kubernetes watch uses this so both sources interpret objects identically; the error
    /// names the object.
    pub(crate) fn from_api_object(value: Value) -> Result<Snapshot, String> {
        let object = Object::from_value(value).map_err(|e| e.to_string())?;
        let mut snapshot = Snapshot::default();
        snapshot.push(object);
        Ok(snapshot)
    }

    /// Items skipped because enrich does not read their kind.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    fn push(&mut self, object: Object) {
        match object {
            Object::Pod(pod) => self.pods.push(pod),
            Object::Service(service) => self.services.push(service),
            Object::Node(node) => self.nodes.push(node),
            Object::Namespace(namespace) => self.namespaces.push(namespace),
            Object::Owner(owner) => self.owners.push(owner),
            Object::Skipped(kind) => *self.skipped.entry(kind).or_default() += 1,
            Object::Untyped(_) => *self.skipped.entry("<no kind>".to_owned()).or_default() += 1,
        }
    }
}

/// Skips leading whitespace and returns the first byte without consuming it.
fn first_non_whitespace<R: BufRead>(reader: &mut R) -> std::io::Result<Option<u8>> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(None);
        }
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                let first = buf[i];
                reader.consume(i);
                return Ok(Some(first));
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

fn describe_first_byte(byte: u8) -> String {
    match byte {
        b'[' => "a JSON array".to_owned(),
        b'"' => "a JSON string".to_owned(),
        b'-' | b'0'..=b'9' => "a JSON number".to_owned(),
        b't' | b'f' | b'n' => "a JSON literal".to_owned(),
        other => format!("text starting with {:?}", char::from(other)),
    }
}

/// The top level of the file: a list, or one object whose parts are kept for decoding.
#[derive(Deserialize)]
struct Document {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    items: Option<Vec<Item>>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    spec: Option<Value>,
    #[serde(default)]
    status: Option<Value>,
}

impl Document {
    fn single_object(self) -> serde_json::Map<String, Value> {
        let mut object = serde_json::Map::new();
        if let Some(kind) = self.kind {
            object.insert("kind".to_owned(), Value::String(kind));
        }
        for (key, value) in [
            ("metadata", self.metadata),
            ("spec", self.spec),
            ("status", self.status),
        ] {
            if let Some(value) = value {
                object.insert(key.to_owned(), value);
            }
        }
        object
    }
}

/// One list item, decoded as soon as it is read so the list never exists as JSON values.
struct Item(Object);

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Object::from_value(value)
            .map(Item)
            .map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use flowlake_schemas::{OwnerRef, Timestamp};

    use super::*;
    use crate::test_support::{hubble_fixture, snapshot};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const MIXED_LIST: &str = r#"{
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": [
            {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "web-7d4b9c-x2x9q", "namespace": "shop", "uid": "u-1",
                          "labels": {"app": "web", "pod-template-hash": "7d4b9c"},
                          "creationTimestamp": "2024-01-02T03:04:05Z",
                          "ownerReferences": [
                              {"kind": "SomethingElse", "name": "x", "uid": "u-x"},
                              {"kind": "ReplicaSet", "name": "web-7d4b9c", "uid": "u-rs", "controller": true}]},
             "spec": {"nodeName": "node-a", "serviceAccount": "web-sa",
                      "containers": [{"name": "web", "image": "nginx"}]},
             "status": {"phase": "Running", "podIP": "10.1.0.5",
                        "podIPs": [{"ip": "10.1.0.5"}, {"ip": "fd00::5"}]}},
            {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "old", "namespace": "shop", "uid": "u-2",
                          "deletionTimestamp": "2024-01-02T04:00:00Z"},
             "spec": {"hostNetwork": true},
             "status": {"phase": "Succeeded", "podIP": "10.1.0.6"}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "web", "namespace": "shop", "uid": "u-3"},
             "spec": {"type": "LoadBalancer", "clusterIP": "10.96.5.5",
                      "clusterIPs": ["10.96.5.5", "fd00:96::5"], "externalIPs": ["192.0.2.10"]},
             "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"},
                                                     {"hostname": "lb.example.com"}]}}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "headless", "namespace": "shop", "uid": "u-4"},
             "spec": {"clusterIP": "None", "clusterIPs": ["None"]}},
            {"apiVersion": "v1", "kind": "Node",
             "metadata": {"name": "node-a", "uid": "u-5", "labels": {"zone": "a"},
                          "annotations": {"network.cilium.io/ipv4-cilium-host": "10.1.0.1",
                                          "network.cilium.io/ipv4-pod-cidr": "10.1.0.0/24"}},
             "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.10"},
                                      {"type": "Hostname", "address": "node-a"},
                                      {"type": "ExternalIP", "address": "198.51.100.10"}]}},
            {"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": "shop", "uid": "u-6", "labels": {"team": "payments"}}},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet",
             "metadata": {"name": "web-7d4b9c", "namespace": "shop", "uid": "u-rs",
                          "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "u-d", "controller": true}]}},
            {"apiVersion": "batch/v1", "kind": "Job",
             "metadata": {"name": "report-28734120", "namespace": "shop", "uid": "u-j"}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"spec": "x"}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm2"}},
            {"apiVersion": "cilium.io/v2", "kind": "CiliumNode", "spec": {"nodeName": {"odd": 1}}}
        ]
    }"#;

    fn ip(text: &str) -> IpAddr {
        text.parse()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn reads_the_fields_enrich_uses_and_counts_the_rest() -> TestResult {
        let snap = snapshot(MIXED_LIST)?;
        assert_eq!(
            snap.pods[0],
            PodObject {
                namespace: "shop".into(),
                name: "web-7d4b9c-x2x9q".into(),
                uid: "u-1".into(),
                labels: [("app", "web"), ("pod-template-hash", "7d4b9c")]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                // The controller wins over an earlier non-controller owner.
                controller: Some(OwnerRef {
                    kind: "ReplicaSet".into(),
                    name: "web-7d4b9c".into(),
                    uid: "u-rs".into(),
                }),
                node_name: Some("node-a".into()),
                host_network: false,
                // The deprecated `serviceAccount` stands in for `serviceAccountName`.
                service_account: Some("web-sa".into()),
                ips: vec![ip("10.1.0.5"), ip("fd00::5")],
                finished: false,
                created_at: Some(Timestamp::parse_rfc3339("2024-01-02T03:04:05Z")?),
                deleted_at: None,
            }
        );
        let old = &snap.pods[1];
        assert!(old.host_network && old.finished);
        assert_eq!(old.ips, vec![ip("10.1.0.6")]);
        assert_eq!(
            old.deleted_at,
            Some(Timestamp::parse_rfc3339("2024-01-02T04:00:00Z")?)
        );

        assert_eq!(
            snap.services[0].ips,
            vec![
                ip("10.96.5.5"),
                ip("fd00:96::5"),
                ip("192.0.2.10"),
                ip("203.0.113.7")
            ]
        );
        assert!(
            snap.services[1].ips.is_empty(),
            "headless Services have no address"
        );

        assert_eq!(
            snap.nodes[0].ips,
            vec![ip("192.168.0.10"), ip("198.51.100.10"), ip("10.1.0.1")]
        );
        assert_eq!(snap.nodes[0].labels.get("zone"), Some("a"));
        assert_eq!(snap.namespaces[0].labels.get("team"), Some("payments"));

        assert_eq!(snap.owners.len(), 2);
        assert_eq!(snap.owners[0].kind, "ReplicaSet");
        assert_eq!(
            snap.owners[0].controller.as_ref().map(|o| o.name.as_str()),
            Some("web")
        );
        assert_eq!(snap.owners[1].kind, "Job");
        assert_eq!(snap.owners[1].controller, None);

        // Unknown kinds are skipped whatever their shape.
        assert_eq!(
            snap.skipped,
            BTreeMap::from([("CiliumNode".to_owned(), 1), ("ConfigMap".to_owned(), 2)])
        );
        assert_eq!(snap.skipped_total(), 3);
        Ok(())
    }

    #[test]
    fn accepts_a_single_object_and_typed_lists() -> TestResult {
        let single = snapshot(
            r#"{"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "solo", "namespace": "a"},
                "status": {"podIP": "10.0.0.9"}}"#,
        )?;
        assert_eq!(single.pods.len(), 1);
        assert_eq!(single.pods[0].name, "solo");
        assert_eq!(single.pods[0].ips, vec![ip("10.0.0.9")]);

        // The API's own list type, whose items carry no `kind`; `items` comes first.
        let typed = snapshot(
            r#"{"items": [{"metadata": {"name": "x", "namespace": "a"}}], "kind": "PodList"}"#,
        )?;
        assert_eq!(typed.pods.len(), 1);
        assert_eq!(typed.pods[0].name, "x");
        // In a v1 List an item without `kind` cannot be placed.
        let untyped = snapshot(r#"{"kind": "List", "items": [{"metadata": {"name": "x"}}]}"#)?;
        assert!(untyped.pods.is_empty());
        assert_eq!(untyped.skipped.get("<no kind>"), Some(&1));

        let empty = snapshot(r#"{"kind": "List", "items": []}"#)?;
        assert_eq!(empty, Snapshot::default());
        Ok(())
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let path = Path::new("/snapshots/prod.json");
        let parse = |text: &str| Snapshot::from_slice(text.as_bytes(), path);

        match parse(r#"{"kind": "List", "items": [ {"kind": "Pod" "#) {
            Err(e @ SnapshotError::Json { .. }) => {
                assert!(
                    e.to_string()
                        .starts_with("invalid identity snapshot /snapshots/prod.json:"),
                    "{e}"
                );
                assert!(!e.is_retryable());
            }
            other => panic!("expected a JSON error, got {other:?}"),
        }
        for (text, found) in [
            ("  [1, 2]", "a JSON array"),
            ("", "an empty file"),
            ("\"pods\"", "a JSON string"),
            (r#"{"kind": "ConfigMap"}"#, "a single ConfigMap"),
            (r#"{"items": []}"#, "an object without `kind`"),
        ] {
            match parse(text) {
                Err(SnapshotError::NotAList { path: p, found: f }) => {
                    assert_eq!(p, path);
                    assert_eq!(f, found, "{text}");
                }
                other => panic!("{text}: expected NotAList, got {other:?}"),
            }
        }
        // A known object with a wrong field: the message names the object.
        let bad_pod = r#"{"kind": "List", "items": [
            {"kind": "Pod", "metadata": {"name": "p", "namespace": "n"}, "status": {"podIP": "10.0.0.300"}}]}"#;
        match parse(bad_pod) {
            Err(e @ SnapshotError::Json { .. }) => {
                assert!(e.to_string().contains("Pod n/p:"), "{e}");
            }
            other => panic!("expected a JSON error, got {other:?}"),
        }
        let bad_node = r#"{"kind": "Node", "metadata": {"name": "n1"},
            "status": {"addresses": [{"type": "InternalIP", "address": "node-1.local"}]}}"#;
        match parse(bad_node) {
            Err(e @ SnapshotError::Json { .. }) => {
                assert!(
                    e.to_string()
                        .contains("Node n1: status.addresses: InternalIP \"node-1.local\""),
                    "{e}"
                );
            }
            other => panic!("expected a JSON error, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_file_is_a_read_error_naming_it() {
        let path = Path::new("/nonexistent/flowlake/identity.json");
        match Snapshot::read(path) {
            Err(e @ SnapshotError::Read { .. }) => {
                assert!(
                    e.to_string()
                        .contains("/nonexistent/flowlake/identity.json"),
                    "{e}"
                );
                assert!(!e.is_retryable());
            }
            other => panic!("expected a read error, got {other:?}"),
        }
    }

    #[test]
    fn the_hubble_fixture_parses_completely() -> TestResult {
        let snap = Snapshot::read(&hubble_fixture())?;
        assert_eq!(snap.pods.len(), 23);
        assert_eq!(snap.pods.iter().filter(|p| p.host_network).count(), 1);
        assert_eq!(snap.services.len(), 2);
        assert_eq!(snap.nodes.len(), 6);
        assert_eq!(snap.namespaces.len(), 5);
        assert!(snap.owners.is_empty());
        assert_eq!(snap.skipped_total(), 0);
        Ok(())
    }
}
