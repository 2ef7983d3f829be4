//! The live Kubernetes source: list/watch of Pods, Services, Nodes, Namespaces, the
//! owners that name a workload (ReplicaSets → Deployments, Jobs → CronJobs) and, where
//! Calico's CRDs are installed, its NetworkSets and GlobalNetworkSets ([`calico`]) in one
//! cluster, turned into [`IdentityRecord`]s as they arrive.
//!
//! kube's `watcher` does the protocol: list (paginated), then watch from the list's
//! `resourceVersion` with bookmarks; on `410 Gone` it lists again; a failed request is
//! retried with exponential backoff. Each object is converted at once (only the fields
//! enrich uses are kept, see [`crate::objects_to_identity`]), and a [`Tracker`] per
//! resource decides what to emit: changes only, one deletion per vanished object (also for
//! objects that went while the watch was down, found by the relist). Records go to an
//! [`IdentitySink`] in the order observed; while it is full the watch is not read.
//!
//! The source is ready once every resource has been listed and its records delivered; a
//! CRD the API does not serve counts as listed.

pub mod calico;
pub mod resource;
pub mod tracker;

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::path::Path;

use flowlake_runtime::http::Readiness;
use flowlake_schemas::{IdentityKind, IdentityRecord, Timestamp};
use futures::StreamExt;
use futures::stream::{BoxStream, SelectAll};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Config};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

pub use self::resource::Resource;
pub use self::tracker::Tracker;
use crate::objects_to_identity::{self, kind_name};
use crate::sink::{IdentitySink, SinkClosed};

/// Why the Kubernetes API cannot be reached at all (a watch error after start is retried).
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The kubeconfig could not be read or used.
    #[error("cannot load kubeconfig {path}: {message}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Neither in-cluster configuration nor a kubeconfig was found.
    #[error(
        "cannot find Kubernetes credentials (not in a pod, no KUBECONFIG or ~/.kube/config): {0}"
    )]
    Infer(String),
    /// The client could not be built from the configuration (TLS material, proxy).
    #[error("cannot create the Kubernetes client: {0}")]
    Client(String),
}

/// A client for the cluster of `kubeconfig`, or — without one — the in-cluster service
/// account, `KUBECONFIG` or `~/.kube/config`, in that order.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, WatchError> {
    // rustls cannot pick a crypto provider when the build enables more than one; `Err`
    // means one is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = match kubeconfig {
        Some(path) => {
            let fail = |message: String| WatchError::Kubeconfig {
                path: path.display().to_string(),
                message,
            };
            let file = Kubeconfig::read_from(path).map_err(|e| fail(e.to_string()))?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| fail(e.to_string()))?
        }
        None => Config::infer()
            .await
            .map_err(|e| WatchError::Infer(e.to_string()))?,
    };
    Client::try_from(config).map_err(|e| WatchError::Client(e.to_string()))
}

/// A watch event with the object as JSON, ready for the snapshot decoder.
enum Change {
    Init,
    Apply(serde_json::Value),
    Delete(serde_json::Value),
    InitDone,
}

type Changes = BoxStream<'static, (Resource, Result<Change, String>)>;

fn watch<K>(api: Api<K>, resource: Resource) -> Changes
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + Debug + Send + 'static,
{
    let to_json = |object: K| serde_json::to_value(object).map_err(|e| e.to_string());
    watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .map(move |event| {
            let change = match event {
                Ok(Event::Init) => Ok(Change::Init),
                Ok(Event::InitApply(object) | Event::Apply(object)) => {
                    to_json(object).map(Change::Apply)
                }
                Ok(Event::Delete(object)) => to_json(object).map(Change::Delete),
                Ok(Event::InitDone) => Ok(Change::InitDone),
                Err(e) => Err(e.to_string()),
            };
            (resource, change)
        })
        .boxed()
}

/// The watches of every resource the API serves; returns them with the Calico resources
/// it does not serve (see [`calico`]).
async fn watch_all(client: &Client) -> (SelectAll<Changes>, Vec<Resource>) {
    let mut changes = futures::stream::select_all([
        watch(Api::<Pod>::all(client.clone()), Resource::Pods),
        watch(Api::<Service>::all(client.clone()), Resource::Services),
        watch(Api::<Node>::all(client.clone()), Resource::Nodes),
        watch(Api::<Namespace>::all(client.clone()), Resource::Namespaces),
        watch(
            Api::<ReplicaSet>::all(client.clone()),
            Resource::ReplicaSets,
        ),
        watch(Api::<Job>::all(client.clone()), Resource::Jobs),
    ]);
    let mut absent = Vec::new();
    for resource in [Resource::NetworkSets, Resource::GlobalNetworkSets] {
        let Some(api_resource) = calico::api_resource(resource) else {
            continue;
        };
        if calico::installed(client, resource, &api_resource).await {
            changes.push(watch(calico::api(client, &api_resource), resource));
        } else {
            absent.push(resource);
        }
    }
    (changes, absent)
}

/// Watches the cluster behind `client` as `cluster_id` until `shutdown`, delivering its
/// records to `sink`. `published` is the state already in the identity topic (the
/// publisher reads it back at start; empty otherwise). Sets `ready` once every resource
/// has been listed and delivered. Returns `Err` only when the sink closed.
pub async fn run<S: IdentitySink>(
    client: Client,
    cluster_id: &str,
    published: Vec<IdentityRecord>,
    sink: &mut S,
    ready: Readiness,
    shutdown: CancellationToken,
) -> Result<(), SinkClosed> {
    let mut watch = ClusterWatch::new(cluster_id, published);
    let (mut changes, absent) = tokio::select! {
        biased;
        _ = shutdown.cancelled() => return Ok(()),
        found = watch_all(&client) => found,
    };
    for resource in absent {
        for record in watch.skip(resource, Timestamp::now()) {
            sink.send(record).await?;
        }
    }
    tracing::info!(cluster = cluster_id, resources = ?Resource::ALL.map(Resource::plural), "watching the kubernetes api");
    loop {
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            next = changes.next() => next,
        };
        // select_all of endless streams: None only if every watcher ended, which they don't.
        let Some((resource, change)) = next else {
            return Ok(());
        };
        for record in watch.handle(resource, change, Timestamp::now()) {
            sink.send(record).await?;
        }
        if watch.synced() && !ready.get() {
            tracing::info!(
                cluster = cluster_id,
                objects = watch.live(),
                "kubernetes api listed"
            );
            ready.set(true);
        }
    }
}

/// The trackers of one cluster; pure, so tests drive it without an API server.
struct ClusterWatch {
    cluster_id: String,
    trackers: HashMap<Resource, Tracker>,
    /// Published owners not yet matched to ReplicaSets or Jobs (an owner record does not
    /// say which): claimed by the first list that contains them, deleted when neither does.
    unrouted_owners: HashMap<String, IdentityRecord>,
    listed: HashSet<Resource>,
}

impl ClusterWatch {
    fn new(cluster_id: &str, published: Vec<IdentityRecord>) -> ClusterWatch {
        let mut trackers: HashMap<Resource, Tracker> = Resource::ALL
            .into_iter()
            .map(|r| (r, Tracker::default()))
            .collect();
        let mut unrouted_owners = HashMap::new();
        for record in published {
            if record.cluster_id != cluster_id || record.deleted_at.is_some() {
                continue;
            }
            match Resource::of_record(&record) {
                Some(resource) => {
                    if let Some(tracker) = trackers.get_mut(&resource) {
                        tracker.seed(record);
                    }
                }
                None if record.kind == IdentityKind::Owner => {
                    unrouted_owners.insert(record.uid.clone(), record);
                }
                None => {}
            }
        }
        ClusterWatch {
            cluster_id: cluster_id.to_owned(),
            trackers,
            unrouted_owners,
            listed: HashSet::new(),
        }
    }

    fn synced(&self) -> bool {
        self.listed.len() == Resource::ALL.len()
    }

    /// `resource` is not served (a CRD that is not installed): it counts as listed, and
    /// what was published of it is deleted, as by an empty list.
    fn skip(&mut self, resource: Resource, now: Timestamp) -> Vec<IdentityRecord> {
        self.handle(resource, Ok(Change::Init), now);
        self.handle(resource, Ok(Change::InitDone), now)
    }

    fn live(&self) -> usize {
        self.trackers.values().map(Tracker::len).sum()
    }

    /// The records one watch event turns into.
    fn handle(
        &mut self,
        resource: Resource,
        change: Result<Change, String>,
        now: Timestamp,
    ) -> Vec<IdentityRecord> {
        let change = match change {
            Ok(change) => change,
            Err(e) => {
                // The watcher retries with backoff (a 410 Gone restarts with a list).
                tracing::warn!(resource = resource.plural(), error = %e, "kubernetes watch error; retrying");
                metrics::counter!(crate::metrics::WATCH_ERRORS, "resource" => resource.plural())
                    .increment(1);
                return Vec::new();
            }
        };
        let Some(tracker) = self.trackers.get_mut(&resource) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        match change {
            Change::Init => tracker.init(),
            Change::Apply(object) => {
                if let Some(converted) = convert(&self.cluster_id, resource, object, now) {
                    if let Some(seeded) = self.unrouted_owners.remove(&converted.record.uid) {
                        tracker.seed(seeded);
                    }
                    out.extend(tracker.apply(converted));
                }
            }
            Change::Delete(object) => {
                if let Some(converted) = convert(&self.cluster_id, resource, object, now) {
                    self.unrouted_owners.remove(&converted.record.uid);
                    out.push(tracker.delete(converted, now));
                }
            }
            Change::InitDone => {
                out.extend(tracker.init_done(now));
                self.listed.insert(resource);
                let owners_listed = self.listed.contains(&Resource::ReplicaSets)
                    && self.listed.contains(&Resource::Jobs);
                if owners_listed && !self.unrouted_owners.is_empty() {
                    let mut gone: Vec<IdentityRecord> =
                        self.unrouted_owners.drain().map(|(_, r)| r).collect();
                    gone.sort_by(|a, b| a.uid.cmp(&b.uid));
                    for mut record in gone {
                        record.deleted_at = Some(now);
                        record.observed_at = now;
                        out.push(record);
                    }
                }
            }
        }
        for record in &out {
            let change = if record.deleted_at.is_some() {
                "delete"
            } else {
                "upsert"
            };
            metrics::counter!(crate::metrics::WATCH_RECORDS, "kind" => kind_name(record.kind), "change" => change)
                .increment(1);
        }
        out
    }
}

fn convert(
    cluster_id: &str,
    resource: Resource,
    object: serde_json::Value,
    now: Timestamp,
) -> Option<objects_to_identity::Converted> {
    match objects_to_identity::from_api_object(cluster_id, object, now) {
        Ok(converted) => converted,
        Err(e) => {
            // An object the API accepted but we cannot read (an address that does not
            // parse): skip it rather than stop the whole cluster's identity.
            tracing::warn!(resource = resource.plural(), error = %e, "skipping kubernetes object");
            metrics::counter!(crate::metrics::WATCH_ERRORS, "resource" => resource.plural())
                .increment(1);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn owner_json(kind: &str, uid: &str) -> serde_json::Value {
        json!({"kind": kind, "metadata": {"name": uid, "namespace": "ns", "uid": uid}})
    }

    #[test]
    fn published_owners_are_claimed_by_their_list_or_deleted() {
        let published: Vec<IdentityRecord> = ["rs-kept", "job-gone"]
            .iter()
            .map(|uid| IdentityRecord {
                cluster_id: "c".into(),
                kind: IdentityKind::Owner,
                uid: (*uid).into(),
                namespace: Some("ns".into()),
                name: (*uid).into(),
                ..IdentityRecord::default()
            })
            .collect();
        let mut watch = ClusterWatch::new("c", published);
        let t = Timestamp::from_secs(10);
        for resource in [Resource::ReplicaSets, Resource::Jobs] {
            assert!(watch.handle(resource, Ok(Change::Init), t).is_empty());
        }
        let rs = owner_json("ReplicaSet", "rs-kept");
        // Unchanged from what was published: nothing to emit.
        assert!(
            watch
                .handle(Resource::ReplicaSets, Ok(Change::Apply(rs)), t)
                .is_empty()
        );
        assert!(
            watch
                .handle(Resource::ReplicaSets, Ok(Change::InitDone), t)
                .is_empty()
        );
        let deleted = watch.handle(Resource::Jobs, Ok(Change::InitDone), t);
        assert_eq!(deleted.len(), 1);
        assert_eq!(deleted[0].uid, "job-gone");
        assert_eq!(deleted[0].deleted_at, Some(t));
        assert!(!watch.synced());
    }
}
