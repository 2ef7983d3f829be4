//! Naming a pod's workload from its controlling owner, and the interner that makes pods of
//! one workload share their strings, label sets and [`Workload`].
//!
//! A pod's owner is usually a ReplicaSet or a Job, which are not what people call the
//! workload: the ReplicaSet's Deployment and the Job's CronJob are. Owners known to the
//! table (snapshot ReplicaSets and Jobs, `owner` identity records) are looked up by uid
//! (or by namespace/name when an object carries no uid); unknown ones are inferred from the
//! controllers' naming conventions.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use flowlake_schemas::{Labels, OwnerRef};

/// Label the Deployment controller puts on a ReplicaSet's pods; its value is the suffix of
/// the ReplicaSet name.
const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// The CronJob controller names Jobs `<cronjob>-<scheduled time>`, in minutes since the
/// epoch (seconds before Kubernetes 1.21): at least 8 digits for any date after 1990. A
/// shorter numeric suffix (`migrate-2`) is a hand-named Job, not a CronJob's.
const MIN_CRON_JOB_SUFFIX_DIGITS: usize = 8;

/// What the pods of one workload share.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Workload {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Workload kind: `Deployment`, `StatefulSet`, `DaemonSet`, `CronJob`, `Job`,
    /// `ReplicaSet` (no Deployment known), another controller's kind, or `Pod` for a pod
    /// without a controller.
    pub kind: Arc<str>,
    /// Workload name (the pod's own name for kind `Pod`).
    pub name: Arc<str>,
    /// Service account of the pods.
    pub service_account: Option<Arc<str>>,
}

/// What the table remembers of a ReplicaSet or Job: its own controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OwnerLink {
    /// Controller kind and name (a Deployment, a CronJob), when it has one.
    pub(crate) controller: Option<(Arc<str>, Arc<str>)>,
}

/// The key owners are stored and found under: the uid, or `namespace/name` without one.
pub(crate) fn owner_key(uid: &str, namespace: &str, name: &str) -> Box<str> {
    if uid.is_empty() {
        format!("{namespace}/{name}").into_boxed_str()
    } else {
        uid.into()
    }
}

/// The workload kind and name of pod `name` in `namespace` with controller `owner`.
pub(crate) fn workload_of<'a>(
    namespace: &str,
    name: &'a str,
    owner: Option<&'a OwnerRef>,
    labels: &Labels,
    owners: &'a HashMap<Box<str>, OwnerLink>,
) -> (&'a str, &'a str) {
    let Some(owner) = owner else {
        return ("Pod", name);
    };
    match owner.kind.as_str() {
        // A mirror pod (static pod) is owned by its Node, which is not a workload.
        "Node" => ("Pod", name),
        "ReplicaSet" | "Job" => {
            let key = owner_key(&owner.uid, namespace, &owner.name);
            if let Some(listed) = owners.get(&key) {
                // The owner is known: its own controller (if any) is the workload.
                return match &listed.controller {
                    Some((kind, top)) if owner.kind == "ReplicaSet" || &**kind == "CronJob" => {
                        (kind, top)
                    }
                    _ => (&owner.kind, &owner.name),
                };
            }
            let inferred = if owner.kind == "ReplicaSet" {
                deployment_of(&owner.name, labels).map(|d| ("Deployment", d))
            } else {
                cron_job_of(&owner.name).map(|c| ("CronJob", c))
            };
            inferred.unwrap_or((&owner.kind, &owner.name))
        }
        _ => (&owner.kind, &owner.name),
    }
}

/// `reviews-v1` for ReplicaSet `reviews-v1-545db77b95` when the pod's `pod-template-hash`
/// label is `545db77b95` (the Deployment controller's naming).
fn deployment_of<'a>(replica_set: &'a str, labels: &Labels) -> Option<&'a str> {
    let (deployment, hash) = replica_set.rsplit_once('-')?;
    let hash_matches = labels
        .get(POD_TEMPLATE_HASH_LABEL)
        .is_some_and(|label| label == hash);
    (hash_matches && !deployment.is_empty()).then_some(deployment)
}

/// `backup` for Job `backup-28734120` (the CronJob controller's naming).
fn cron_job_of(job: &str) -> Option<&str> {
    let (cron_job, suffix) = job.rsplit_once('-')?;
    let scheduled =
        suffix.len() >= MIN_CRON_JOB_SUFFIX_DIGITS && suffix.bytes().all(|b| b.is_ascii_digit());
    (scheduled && !cron_job.is_empty()).then_some(cron_job)
}

/// Shares equal strings, label sets and workloads. Entries nobody else holds any more are
/// dropped by [`Interner::collect`], so a long-running table does not keep the names of
/// every pod it ever saw.
#[derive(Clone, Debug, Default)]
pub(crate) struct Interner {
    strings: HashSet<Arc<str>>,
    labels: HashSet<Arc<Labels>>,
    workloads: HashSet<Arc<Workload>>,
}

impl Interner {
    pub(crate) fn string(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.strings.get(text) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(text);
        self.strings.insert(Arc::clone(&shared));
        shared
    }

    pub(crate) fn labels(&mut self, labels: Labels) -> Arc<Labels> {
        if let Some(shared) = self.labels.get(&labels) {
            return Arc::clone(shared);
        }
        let shared = Arc::new(labels);
        self.labels.insert(Arc::clone(&shared));
        shared
    }

    pub(crate) fn workload(&mut self, workload: Workload) -> Arc<Workload> {
        if let Some(shared) = self.workloads.get(&workload) {
            return Arc::clone(shared);
        }
        let shared = Arc::new(workload);
        self.workloads.insert(Arc::clone(&shared));
        shared
    }

    /// Drops what only the interner still holds. Workloads go first: they hold strings.
    pub(crate) fn collect(&mut self) {
        self.workloads.retain(|w| Arc::strong_count(w) > 1);
        self.labels.retain(|l| Arc::strong_count(l) > 1);
        self.strings.retain(|s| Arc::strong_count(s) > 1);
    }
}
