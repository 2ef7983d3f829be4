//! `[enrich]`: where identity comes from and how long the table remembers it.
//!
//! Identity comes from snapshot files, one or more per cluster (`[[enrich.snapshots]]` in
//! the config file, or `--snapshot CLUSTER=PATH`), and from live sources that send
//! identity records. Settings are checked once at start-up by [`EnrichSettings::validate`];
//! an error names the field.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use flowlake_runtime::ConfigError;
use serde::Deserialize;

use crate::netsets::Cidr;

/// How long a deleted object still answers for late flows: aggregate's default allowed
/// lateness (5 min) plus a margin of the same again for agent export intervals and clock
/// skew between nodes and the API server.
pub const DEFAULT_DELETED_RETENTION: Duration = Duration::from_secs(10 * 60);
/// Addresses with learned DNS names kept per cluster: about 10 MB per cluster at ~100
/// bytes per entry.
pub const DEFAULT_DNS_MAX_ENTRIES: usize = 100_000;
/// How long a learned DNS name outlives its TTL: clients keep connections open past the
/// TTL, and flow logs report those connections later.
pub const DEFAULT_DNS_TTL_GRACE: Duration = Duration::from_secs(5 * 60);
/// Identity updates applied between two batches at most: ~10 ms of work, so a flood of
/// updates (a relist, a topic bootstrap) delays flows by little per batch.
pub const DEFAULT_MAX_UPDATES_PER_FLUSH: usize = 10_000;

/// `[enrich]` settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichSettings {
    /// Identity snapshot files (`kubectl get pods,services,nodes,namespaces -A -o json`),
    /// each for one cluster. Several files of one cluster are merged. Default: none, which
    /// [`EnrichSettings::validate`] rejects unless another source is configured: without
    /// identity every endpoint is external.
    pub snapshots: Vec<SnapshotSource>,
    /// How long a deleted pod, Service or node still answers for flows of before its
    /// deletion, in event time. Default [`DEFAULT_DELETED_RETENTION`]; must cover
    /// aggregate's allowed lateness.
    #[serde(with = "humantime_serde")]
    pub deleted_retention: Duration,
    /// User-defined network sets: name → CIDRs (`stripe = ["54.187.0.0/16"]`); applies to
    /// every cluster, longest prefix wins.
    pub network_sets: BTreeMap<String, Vec<String>>,
    /// Addresses with learned DNS names kept per cluster (oldest evicted first). Default
    /// [`DEFAULT_DNS_MAX_ENTRIES`].
    pub dns_max_entries: usize,
    /// How long a learned DNS name stays valid after its TTL. Default
    /// [`DEFAULT_DNS_TTL_GRACE`].
    #[serde(with = "humantime_serde")]
    pub dns_ttl_grace: Duration,
    /// Identity updates applied between two batches at most. Default
    /// [`DEFAULT_MAX_UPDATES_PER_FLUSH`].
    pub max_updates_per_flush: usize,
}

impl Default for EnrichSettings {
    fn default() -> Self {
        EnrichSettings {
            snapshots: Vec::new(),
            deleted_retention: DEFAULT_DELETED_RETENTION,
            network_sets: BTreeMap::new(),
            dns_max_entries: DEFAULT_DNS_MAX_ENTRIES,
            dns_ttl_grace: DEFAULT_DNS_TTL_GRACE,
            max_updates_per_flush: DEFAULT_MAX_UPDATES_PER_FLUSH,
        }
    }
}

/// One identity snapshot file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSource {
    /// The `cluster_id` of the flows this snapshot describes (as ingest sets it).
    pub cluster_id: String,
    /// Path of the JSON file.
    pub path: PathBuf,
}

impl EnrichSettings {
    /// Checks that identity is configured (a snapshot) and every field is usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.snapshots.is_empty() {
            return Err(ConfigError::invalid(
                "enrich.snapshots",
                "no identity source configured: add a snapshot (--snapshot CLUSTER=PATH or [[enrich.snapshots]])",
            ));
        }
        self.validate_fields()
    }

    /// Checks every field, without requiring a snapshot: for a process whose identity comes
    /// from the live watch or the identity topic.
    pub fn validate_fields(&self) -> Result<(), ConfigError> {
        for (name, cidrs) in &self.network_sets {
            if name.trim().is_empty() {
                return Err(ConfigError::invalid(
                    "enrich.network_sets",
                    "a network set needs a name",
                ));
            }
            for (i, text) in cidrs.iter().enumerate() {
                if let Err(e) = text.parse::<Cidr>() {
                    return Err(ConfigError::invalid(
                        format!("enrich.network_sets.{name}[{i}]"),
                        e.to_string(),
                    ));
                }
            }
        }
        if self.dns_max_entries == 0 {
            return Err(ConfigError::invalid(
                "enrich.dns_max_entries",
                "must be at least 1",
            ));
        }
        if self.max_updates_per_flush == 0 {
            return Err(ConfigError::invalid(
                "enrich.max_updates_per_flush",
                "must be at least 1, or identity updates are never applied",
            ));
        }
        for (i, source) in self.snapshots.iter().enumerate() {
            if source.cluster_id.trim().is_empty() {
                return Err(ConfigError::invalid(
                    format!("enrich.snapshots[{i}].cluster_id"),
                    format!(
                        "must not be empty: name the cluster whose flows {} describes",
                        source.path.display()
                    ),
                ));
            }
            let field = format!("enrich.snapshots[{i}].path");
            let path = source.path.display();
            match std::fs::metadata(&source.path) {
                Ok(meta) if meta.is_dir() => {
                    return Err(ConfigError::invalid(
                        field,
                        format!("{path} is a directory, not a snapshot file"),
                    ));
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(ConfigError::invalid(
                        field,
                        format!("cannot read {path}: {e}"),
                    ));
                }
            }
            // Metadata does not tell whether we may read the file; opening does.
            if let Err(e) = std::fs::File::open(&source.path) {
                return Err(ConfigError::invalid(
                    field,
                    format!("cannot read {path}: {e}"),
                ));
            }
        }
        Ok(())
    }
}

/// Why a `CLUSTER=PATH` argument does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseSnapshotSourceError {
    /// No `=` in the argument.
    #[error("expected CLUSTER=PATH, got {0:?}")]
    MissingSeparator(String),
    /// Nothing before the `=`.
    #[error("empty cluster id in {0:?}: expected CLUSTER=PATH")]
    EmptyCluster(String),
    /// Nothing after the `=`.
    #[error("empty path in {0:?}: expected CLUSTER=PATH")]
    EmptyPath(String),
}

impl FromStr for SnapshotSource {
    type Err = ParseSnapshotSourceError;

    /// Parses `CLUSTER=PATH` (the `--snapshot` flag). The cluster id ends at the first `=`;
    /// the path may contain more.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let Some((cluster, path)) = text.split_once('=') else {
            return Err(ParseSnapshotSourceError::MissingSeparator(text.to_owned()));
        };
        let cluster = cluster.trim();
        if cluster.is_empty() {
            return Err(ParseSnapshotSourceError::EmptyCluster(text.to_owned()));
        }
        if path.is_empty() {
            return Err(ParseSnapshotSourceError::EmptyPath(text.to_owned()));
        }
        Ok(SnapshotSource {
            cluster_id: cluster.to_owned(),
            path: PathBuf::from(path),
        })
    }
}

impl fmt::Display for SnapshotSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.cluster_id, self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(cluster_id: &str, path: impl Into<PathBuf>) -> SnapshotSource {
        SnapshotSource {
            cluster_id: cluster_id.to_owned(),
            path: path.into(),
        }
    }

    fn invalid_field(result: Result<(), ConfigError>) -> Option<(String, String)> {
        match result {
            Err(ConfigError::Invalid { field, reason }) => Some((field, reason)),
            _ => None,
        }
    }

    #[test]
    fn parses_cluster_equals_path() {
        assert_eq!(
            "prod-eu=/etc/flowlake/identity.json".parse::<SnapshotSource>(),
            Ok(source("prod-eu", "/etc/flowlake/identity.json"))
        );
        // Only the first `=` separates.
        assert_eq!(
            "kind=./snap=1.json".parse::<SnapshotSource>(),
            Ok(source("kind", "./snap=1.json"))
        );
        assert_eq!(
            "identity.json".parse::<SnapshotSource>(),
            Err(ParseSnapshotSourceError::MissingSeparator(
                "identity.json".into()
            ))
        );
        assert_eq!(
            "=x.json".parse::<SnapshotSource>(),
            Err(ParseSnapshotSourceError::EmptyCluster("=x.json".into()))
        );
        assert_eq!(
            "kind=".parse::<SnapshotSource>(),
            Err(ParseSnapshotSourceError::EmptyPath("kind=".into()))
        );
        let round_trip = source("kind", "/tmp/a.json").to_string();
        assert_eq!(round_trip, "kind=/tmp/a.json");
    }

    #[test]
    fn no_snapshot_is_an_error_naming_the_field_and_the_fix() {
        let (field, reason) =
            invalid_field(EnrichSettings::default().validate()).unwrap_or_default();
        assert_eq!(field, "enrich.snapshots");
        assert_eq!(
            reason,
            "no identity source configured: add a snapshot (--snapshot CLUSTER=PATH or [[enrich.snapshots]])"
        );
    }

    #[test]
    fn validate_names_the_bad_entry() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("snap.json");
        std::fs::write(&file, "{}")?;

        let ok = EnrichSettings {
            snapshots: vec![source("a", &file)],
            ..EnrichSettings::default()
        };
        assert!(ok.validate().is_ok());

        let blank_cluster = EnrichSettings {
            snapshots: vec![source("a", &file), source(" ", &file)],
            ..EnrichSettings::default()
        };
        let (field, _) = invalid_field(blank_cluster.validate()).unwrap_or_default();
        assert_eq!(field, "enrich.snapshots[1].cluster_id");

        let missing = dir.path().join("missing.json");
        let (field, reason) = invalid_field(
            EnrichSettings {
                snapshots: vec![source("a", &missing)],
                ..EnrichSettings::default()
            }
            .validate(),
        )
        .unwrap_or_default();
        assert_eq!(field, "enrich.snapshots[0].path");
        assert!(reason.contains(&missing.display().to_string()), "{reason}");

        let (field, reason) = invalid_field(
            EnrichSettings {
                snapshots: vec![source("a", dir.path())],
                ..EnrichSettings::default()
            }
            .validate(),
        )
        .unwrap_or_default();
        assert_eq!(field, "enrich.snapshots[0].path");
        assert!(reason.contains("is a directory"), "{reason}");
        Ok(())
    }

    #[test]
    fn network_set_errors_name_the_entry() {
        let mut settings = EnrichSettings::default();
        settings.network_sets.insert(
            "stripe".into(),
            vec!["54.187.0.0/16".into(), "54.187.0.0/40".into()],
        );
        let (field, reason) = invalid_field(settings.validate_fields()).unwrap_or_default();
        assert_eq!(field, "enrich.network_sets.stripe[1]");
        assert_eq!(
            reason,
            "\"54.187.0.0/40\" has an invalid prefix length (0-32 for IPv4, 0-128 for IPv6)"
        );
        let zero = EnrichSettings {
            max_updates_per_flush: 0,
            ..EnrichSettings::default()
        };
        let (field, _) = invalid_field(zero.validate_fields()).unwrap_or_default();
        assert_eq!(field, "enrich.max_updates_per_flush");
    }

    #[test]
    fn config_file_shape() -> Result<(), serde_json::Error> {
        let settings: EnrichSettings = serde_json::from_str(
            r#"{"snapshots": [{"cluster_id": "kind", "path": "/tmp/k.json"}]}"#,
        )?;
        assert_eq!(settings.snapshots, vec![source("kind", "/tmp/k.json")]);
        assert_eq!(settings.deleted_retention, Duration::from_secs(600));
        let settings: EnrichSettings = serde_json::from_str(
            r#"{"deleted_retention": "15m", "dns_ttl_grace": "30s",
                "network_sets": {"stripe": ["54.187.0.0/16", "2600:1f00::/24"]}}"#,
        )?;
        assert_eq!(settings.deleted_retention, Duration::from_secs(900));
        assert_eq!(settings.dns_ttl_grace, Duration::from_secs(30));
        assert_eq!(settings.network_sets["stripe"].len(), 2);
        // A typo is an error, not a silently ignored field.
        assert!(serde_json::from_str::<EnrichSettings>(r#"{"snapshot": []}"#).is_err());
        assert!(
            serde_json::from_str::<EnrichSettings>(
                r#"{"snapshots": [{"cluster": "kind", "path": "/tmp/k.json"}]}"#
            )
            .is_err()
        );
        Ok(())
    }
}
