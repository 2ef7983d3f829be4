//! A stand-in Kubernetes API server for the identity tests: the list/watch protocol over
//! plain HTTP on 127.0.0.1, with real object JSON.
//!
//! Collections: `GET /api/v1/{pods,services,nodes,namespaces}`,
//! `/apis/apps/v1/replicasets`, `/apis/batch/v1/jobs`, and — only when started with
//! [`FakeApi::start_with_calico`], else 404 as from an API without the CRDs —
//! `/apis/crd.projectcalico.org/v1/{networksets,globalnetworksets}`. Without `watch` the answer is a
//! typed list (`PodList`) whose `metadata.resourceVersion` is the server's current version.
//! With `watch=true&resourceVersion=N` the answer is a chunked stream of newline-delimited
//! `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK","object":{…}}`: first the recorded events
//! after N, then live ones. A version older than the last [`FakeApi::expire`] gets an
//! `ERROR` event with a 410 `Status` (what a real apiserver sends for "too old resource
//! version"), and `expire` also ends every open watch that way, forcing clients to list
//! again. Changes made with `silently` are not sent to watchers: they are what a client
//! misses while its watch is down, and must find by relisting.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The collections served, with their list kind and object kind.
pub const COLLECTIONS: [(&str, &str); 8] = [
    ("/api/v1/pods", "Pod"),
    ("/api/v1/services", "Service"),
    ("/api/v1/nodes", "Node"),
    ("/api/v1/namespaces", "Namespace"),
    ("/apis/apps/v1/replicasets", "ReplicaSet"),
    ("/apis/batch/v1/jobs", "Job"),
    (NETWORK_SETS, "NetworkSet"),
    (GLOBAL_NETWORK_SETS, "GlobalNetworkSet"),
];

/// Calico's NetworkSets, all namespaces.
pub const NETWORK_SETS: &str = "/apis/crd.projectcalico.org/v1/networksets";
/// Calico's GlobalNetworkSets.
pub const GLOBAL_NETWORK_SETS: &str = "/apis/crd.projectcalico.org/v1/globalnetworksets";

fn kind_of(path: &str) -> Option<&'static str> {
    COLLECTIONS
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, kind)| *kind)
}

fn path_of(kind: &str) -> &'static str {
    COLLECTIONS
        .iter()
        .find(|(_, k)| *k == kind)
        .map(|(p, _)| *p)
        .unwrap_or_else(|| panic!("kind {kind} is not served"))
}

fn api_version(kind: &str) -> &'static str {
    match kind {
        "ReplicaSet" => "apps/v1",
        "Job" => "batch/v1",
        "NetworkSet" | "GlobalNetworkSet" => "crd.projectcalico.org/v1",
        _ => "v1",
    }
}

#[derive(Default)]
struct Inner {
    version: u64,
    /// Collection path → uid → object.
    objects: HashMap<&'static str, BTreeMap<String, Value>>,
    /// Events since the last expiry: (version, path, event line).
    history: Vec<(u64, &'static str, String)>,
    /// Versions below this are gone (410).
    oldest: u64,
    watchers: Vec<(&'static str, mpsc::UnboundedSender<String>)>,
    /// Requests served: (path, watch?).
    requests: Vec<(String, bool)>,
    /// Calico's CRDs are installed.
    calico: bool,
}

/// The fake API server; stops with the test's runtime.
#[derive(Clone)]
pub struct FakeApi {
    inner: Arc<Mutex<Inner>>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl FakeApi {
    /// Starts serving on a free port of 127.0.0.1 (inside the current Tokio runtime),
    /// without Calico's CRDs.
    pub async fn start() -> FakeApi {
        FakeApi::serve(false).await
    }

    /// Like [`FakeApi::start`], with Calico's NetworkSet and GlobalNetworkSet CRDs.
    pub async fn start_with_calico() -> FakeApi {
        FakeApi::serve(true).await
    }

    async fn serve(calico: bool) -> FakeApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind fake api: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("fake api address: {e}"));
        let api = FakeApi {
            inner: Arc::new(Mutex::new(Inner {
                version: 100,
                calico,
                ..Inner::default()
            })),
            addr,
        };
        let app = Router::new().fallback(serve).with_state(api.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        api
    }

    /// A kubeconfig naming this server (no credentials), written into `dir`.
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig.yaml");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: nobody\ncurrent-context: fake\nusers:\n- name: nobody\n  user: {{}}\n",
            self.addr
        );
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write kubeconfig: {e}"));
        path
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates or replaces `object` (its `kind` and `metadata.uid` say where), sending
    /// ADDED or MODIFIED to the watchers.
    pub fn apply(&self, object: Value) {
        self.change(object, false, false);
    }

    /// Deletes the object of `kind` with `uid`, sending DELETED with its last state.
    pub fn delete(&self, kind: &str, uid: &str) {
        let object = self
            .lock()
            .objects
            .get(path_of(kind))
            .and_then(|o| o.get(uid))
            .cloned();
        let object = object.unwrap_or_else(|| panic!("no {kind} {uid} to delete"));
        self.change(object, true, false);
    }

    /// Like [`FakeApi::apply`] without telling any watcher (a change a client misses).
    pub fn apply_silently(&self, object: Value) {
        self.change(object, false, true);
    }

    /// Like [`FakeApi::delete`] without telling any watcher.
    pub fn delete_silently(&self, kind: &str, uid: &str) {
        let object = self
            .lock()
            .objects
            .get(path_of(kind))
            .and_then(|o| o.get(uid))
            .cloned();
        let object = object.unwrap_or_else(|| panic!("no {kind} {uid} to delete"));
        self.change(object, true, true);
    }

    fn change(&self, mut object: Value, delete: bool, silently: bool) {
        let kind = object["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("object without kind: {object}"))
            .to_owned();
        let uid = object["metadata"]["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("object without uid: {object}"))
            .to_owned();
        let path = path_of(&kind);
        let mut inner = self.lock();
        inner.version += 1;
        let version = inner.version;
        object["apiVersion"] = json!(api_version(&kind));
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        let collection = inner.objects.entry(path).or_default();
        let kind_of_event = if delete {
            collection.remove(&uid);
            "DELETED"
        } else if collection.insert(uid, object.clone()).is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        if silently {
            return;
        }
        let line = format!("{}\n", json!({"type": kind_of_event, "object": object}));
        inner.history.push((version, path, line.clone()));
        inner
            .watchers
            .retain(|(p, tx)| *p != path || tx.send(line.clone()).is_ok());
    }

    /// Sends a BOOKMARK at the current version to every open watch.
    pub fn bookmark(&self) {
        let mut inner = self.lock();
        let version = inner.version.to_string();
        inner.watchers.retain(|(path, tx)| {
            let kind = kind_of(path).unwrap_or("Pod");
            let bookmark = json!({"type": "BOOKMARK", "object": {
                "kind": kind, "apiVersion": api_version(kind),
                "metadata": {"resourceVersion": version}}});
            tx.send(format!("{bookmark}\n")).is_ok()
        });
    }

    /// Forgets the history: every version so far is too old. Open watches get a 410
    /// `ERROR` event and end, so their clients list again.
    pub fn expire(&self) {
        let mut inner = self.lock();
        inner.oldest = inner.version + 1;
        inner.history.clear();
        for (_, tx) in inner.watchers.drain(..) {
            let _ = tx.send(gone_event());
        }
    }

    /// How many watch requests `path` got.
    pub fn watches(&self, path: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|(p, watch)| p == path && *watch)
            .count()
    }

    /// How many list requests `path` got.
    pub fn lists(&self, path: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|(p, watch)| p == path && !watch)
            .count()
    }

    /// How many watch requests (all collections) are open.
    pub fn open_watches(&self) -> usize {
        let mut inner = self.lock();
        inner.watchers.retain(|(_, tx)| !tx.is_closed());
        inner.watchers.len()
    }
}

fn gone_event() -> String {
    let status = json!({"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": "too old resource version", "reason": "Expired",
        "code": 410}});
    format!("{status}\n")
}

async fn serve(State(api): State<FakeApi>, uri: Uri) -> Response {
    let path = uri.path().to_owned();
    let Some(kind) = kind_of(&path) else {
        return (StatusCode::NOT_FOUND, format!("no such collection {path}")).into_response();
    };
    let query: HashMap<String, String> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let mut inner = api.lock();
    inner.requests.push((path.clone(), watch));
    if !inner.calico && path.starts_with("/apis/crd.projectcalico.org/") {
        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": "the server could not find the requested resource",
            "reason": "NotFound", "code": 404});
        return (StatusCode::NOT_FOUND, status.to_string()).into_response();
    }
    let collection = kind_of(&path).map(path_of).unwrap_or("/api/v1/pods");
    if !watch {
        let items: Vec<Value> = inner
            .objects
            .get(collection)
            .map(|objects| objects.values().cloned().collect())
            .unwrap_or_default();
        let list = json!({"apiVersion": api_version(kind), "kind": format!("{kind}List"),
            "metadata": {"resourceVersion": inner.version.to_string()}, "items": items});
        return (
            [(header::CONTENT_TYPE, "application/json")],
            list.to_string(),
        )
            .into_response();
    }
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(inner.version);
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    if from < inner.oldest {
        let _ = tx.send(gone_event());
        drop(tx);
    } else {
        for (version, p, line) in &inner.history {
            if *p == collection && *version > from {
                let _ = tx.send(line.clone());
            }
        }
        inner.watchers.push((collection, tx));
    }
    drop(inner);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (Ok::<_, Infallible>(line), rx))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}
