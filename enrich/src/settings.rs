//! `[enrich]`: where identity comes from.
//!
//! For now identity comes from snapshot files, one or more per cluster
//! (`[[enrich.snapshots]]` in the config file, or `--snapshot CLUSTER=PATH`). Settings are
//! checked once at start-up by [`EnrichSettings::validate`]; an error names the field.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use flowlake_runtime::ConfigError;
use serde::Deserialize;

/// `[enrich]` settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichSettings {
    /// Identity snapshot files (`kubectl get pods,services,nodes,namespaces -A -o json`),
    /// each for one cluster. Several files of one cluster are merged. Default: none, which
    /// [`EnrichSettings::validate`] rejects: without identity every endpoint is external.
    pub snapshots: Vec<SnapshotSource>,
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
    /// Checks that identity is configured and every snapshot file can be read.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.snapshots.is_empty() {
            return Err(ConfigError::invalid(
                "enrich.snapshots",
                "no identity source configured: add a snapshot (--snapshot CLUSTER=PATH or [[enrich.snapshots]])",
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
        };
        assert!(ok.validate().is_ok());

        let blank_cluster = EnrichSettings {
            snapshots: vec![source("a", &file), source(" ", &file)],
        };
        let (field, _) = invalid_field(blank_cluster.validate()).unwrap_or_default();
        assert_eq!(field, "enrich.snapshots[1].cluster_id");

        let missing = dir.path().join("missing.json");
        let (field, reason) = invalid_field(
            EnrichSettings {
                snapshots: vec![source("a", &missing)],
            }
            .validate(),
        )
        .unwrap_or_default();
        assert_eq!(field, "enrich.snapshots[0].path");
        assert!(reason.contains(&missing.display().to_string()), "{reason}");

        let (field, reason) = invalid_field(
            EnrichSettings {
                snapshots: vec![source("a", dir.path())],
            }
            .validate(),
        )
        .unwrap_or_default();
        assert_eq!(field, "enrich.snapshots[0].path");
        assert!(reason.contains("is a directory"), "{reason}");
        Ok(())
    }

    #[test]
    fn config_file_shape() -> Result<(), serde_json::Error> {
        let settings: EnrichSettings = serde_json::from_str(
            r#"{"snapshots": [{"cluster_id": "kind", "path": "/tmp/k.json"}]}"#,
        )?;
        assert_eq!(settings.snapshots, vec![source("kind", "/tmp/k.json")]);
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
