//! enrich's live identity sources — the Kubernetes watch and the `k8s.identity` reader —
//! started together from `[identity]` settings, each delivering to its clone of one
//! [`IdentitySink`] (see [`crate::sink`] for the delivery protocol). A source marks its
//! `Readiness` once it has delivered everything that existed when it started; the process
//! is ready when every source is and what they sent has been applied.

use std::path::PathBuf;

use flowlake_runtime::config::{self, ConfigError, KafkaSettings};
use flowlake_runtime::http::Readiness;
use serde::Deserialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::identity_topic::{self, FollowError};
use crate::sink::{IdentityReadiness, IdentitySink};
use crate::watch::{self, WatchError};

/// Records buffered between the live sources and the table (see [`crate::sink`]): enough to
/// absorb a burst of pod churn, small enough to bound memory (~1 KiB a record).
pub const DEFAULT_CHANNEL_CAPACITY: usize = 4096;

/// How often the process's `/readyz` looks at its sources while they bootstrap.
const READINESS_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// `[identity]`: enrich's live identity sources (snapshot files are `[enrich]`'s).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentitySourceSettings {
    /// Compacted identity topic (`k8s.identity`) to read from its beginning and follow;
    /// none by default.
    pub topic: Option<String>,
    /// Watch one cluster's Kubernetes API directly.
    pub kube: bool,
    /// The `cluster_id` of the watched cluster's flows; required with `kube`.
    pub kube_cluster_id: Option<String>,
    /// kubeconfig for the direct watch; default: in-cluster service account,
    /// `KUBECONFIG`, `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Records buffered on their way to the table.
    pub channel_capacity: usize,
}

/// The command-line flags of enrich's live identity sources; each overrides its
/// `[identity]` setting ([`IdentitySourceArgs::apply`]).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct IdentitySourceArgs {
    /// Compacted identity topic written by flowlake-identity-publisher (e.g. k8s.identity):
    /// read from its beginning before /readyz says ready, then followed.
    #[arg(long, env = "FLOWLAKE_IDENTITY_TOPIC")]
    pub identity_topic: Option<String>,
    /// Watch one cluster's Kubernetes API directly (needs --kube-cluster-id).
    #[arg(long)]
    pub kube: bool,
    /// The cluster_id the watched cluster's flows carry.
    #[arg(long, env = "FLOWLAKE_KUBE_CLUSTER_ID")]
    pub kube_cluster_id: Option<String>,
    /// kubeconfig for --kube (default: in-cluster service account, KUBECONFIG,
    /// ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

impl IdentitySourceArgs {
    /// Overrides `settings` with the flags given.
    pub fn apply(&self, settings: &mut IdentitySourceSettings) {
        if let Some(topic) = &self.identity_topic {
            settings.topic = Some(topic.clone());
        }
        settings.kube |= self.kube;
        if let Some(cluster) = &self.kube_cluster_id {
            settings.kube_cluster_id = Some(cluster.clone());
        }
        if let Some(path) = &self.kubeconfig {
            settings.kubeconfig = Some(path.clone());
        }
    }
}

impl Default for IdentitySourceSettings {
    fn default() -> Self {
        IdentitySourceSettings {
            topic: None,
            kube: false,
            kube_cluster_id: None,
            kubeconfig: None,
            channel_capacity: DEFAULT_CHANNEL_CAPACITY,
        }
    }
}

impl IdentitySourceSettings {
    /// True when at least one live source is configured.
    pub fn is_configured(&self) -> bool {
        self.topic.is_some() || self.kube
    }

    /// Checks the fields; errors name them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(topic) = &self.topic {
            config::validate_topic("identity.topic", topic)?;
        }
        if self.kube {
            match self.kube_cluster_id.as_deref().map(str::trim) {
                None | Some("") => {
                    return Err(ConfigError::invalid(
                        "identity.kube_cluster_id",
                        "required with --kube: set --kube-cluster-id to the cluster_id the watched cluster's flows carry",
                    ));
                }
                Some(_) => {}
            }
        } else if self.kube_cluster_id.is_some() || self.kubeconfig.is_some() {
            return Err(ConfigError::invalid(
                "identity.kube",
                "kube_cluster_id/kubeconfig are set but the watch is off: add --kube",
            ));
        }
        if self.channel_capacity == 0 {
            return Err(ConfigError::invalid(
                "identity.channel_capacity",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Why a live source could not start or stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The Kubernetes API cannot be reached at all.
    #[error(transparent)]
    Watch(#[from] WatchError),
    /// The identity topic cannot be read.
    #[error(transparent)]
    Topic(#[from] FollowError),
    /// A source task panicked.
    #[error("identity source task failed: {0}")]
    Task(String),
}

/// The running live sources of a process.
pub struct LiveSources {
    tasks: JoinSet<Result<(), SourceError>>,
    ready: Vec<(&'static str, Readiness)>,
}

impl LiveSources {
    /// Starts the configured sources, each sending to its clone of `sink`, until
    /// `shutdown`. Fails when the Kubernetes configuration cannot be loaded.
    pub async fn start<S>(
        settings: &IdentitySourceSettings,
        kafka: &KafkaSettings,
        sink: S,
        shutdown: &CancellationToken,
    ) -> Result<LiveSources, SourceError>
    where
        S: IdentitySink + Clone + 'static,
    {
        let mut tasks = JoinSet::new();
        let mut ready = Vec::new();
        if let Some(topic) = &settings.topic {
            let flag = Readiness::default();
            let (kafka, topic, mut sink, stop) =
                (kafka.clone(), topic.clone(), sink.clone(), shutdown.clone());
            let task_flag = flag.clone();
            tasks.spawn(async move {
                identity_topic::follow(&kafka, &topic, &mut sink, task_flag, stop)
                    .await
                    .map_err(SourceError::from)
            });
            ready.push(("identity-topic", flag));
        }
        if settings.kube {
            let client = watch::client(settings.kubeconfig.as_deref()).await?;
            let cluster = settings.kube_cluster_id.clone().unwrap_or_default();
            let flag = Readiness::default();
            let (mut sink, stop, task_flag) = (sink.clone(), shutdown.clone(), flag.clone());
            tasks.spawn(async move {
                // Err only when the table's channel closed: the process is stopping.
                let _ = watch::run(client, &cluster, Vec::new(), &mut sink, task_flag, stop).await;
                Ok(())
            });
            ready.push(("kube-watch", flag));
        }
        Ok(LiveSources { tasks, ready })
    }

    /// Sets `ready` (and each of `flags`, the processor's view) once every source has
    /// sent its initial state and `pending()` — records sent but not yet applied — is 0.
    /// Returns at once when there are no sources.
    pub fn report_readiness(
        &self,
        ready: Readiness,
        flags: Vec<IdentityReadiness>,
        pending: impl Fn() -> usize + Send + 'static,
    ) {
        let sources: Vec<Readiness> = self.ready.iter().map(|(_, r)| r.clone()).collect();
        tokio::spawn(async move {
            let mut poll = tokio::time::interval(READINESS_POLL);
            loop {
                poll.tick().await;
                let bootstrapped = sources.iter().all(Readiness::get);
                for flag in &flags {
                    flag.set(bootstrapped);
                }
                if bootstrapped && pending() == 0 {
                    tracing::info!("identity sources bootstrapped");
                    ready.set(true);
                    return;
                }
            }
        });
    }

    /// Resolves when a source stopped with an error (never, while they run).
    pub async fn failed(&mut self) -> SourceError {
        loop {
            match self.tasks.join_next().await {
                Some(Ok(Err(e))) => return e,
                Some(Err(e)) => return SourceError::Task(e.to_string()),
                Some(Ok(Ok(()))) => {}
                None => std::future::pending::<()>().await,
            }
        }
    }
}
