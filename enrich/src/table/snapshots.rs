//! Identity from snapshot files (`kubectl get … -o json`), read by `flowlake-identity` and
//! applied as the same [`IdentityRecord`](flowlake_schemas::IdentityRecord)s the live
//! sources send ([`IdentityTable::apply`]): a snapshot is one observation of every object
//! it lists, so an object holds its addresses from its `creationTimestamp` (or since ever,
//! the file saying nothing about when it was taken) on, and a pod the snapshot shows
//! finished (`Succeeded`/`Failed`) holds none, exactly as when the watch first sees it
//! finished.

use flowlake_identity::objects_to_identity::snapshot_records;
use flowlake_identity::{Snapshot, SnapshotError};
use flowlake_schemas::Timestamp;

use crate::settings::EnrichSettings;
use crate::table::identity_table::IdentityTable;

/// When a snapshot's objects were observed: the file does not say, so "since ever". Objects
/// without a `creationTimestamp` then hold their addresses from −∞, as they did before
/// snapshots went through records.
const SNAPSHOT_OBSERVED_AT: Timestamp = Timestamp::from_micros(i64::MIN);

impl IdentityTable {
    /// A builder.
    pub fn builder() -> IdentityTableBuilder {
        IdentityTableBuilder::default()
    }

    /// Reads every configured snapshot and builds the table.
    pub fn load(settings: &EnrichSettings) -> Result<IdentityTable, SnapshotError> {
        let mut builder = IdentityTable::builder();
        for source in &settings.snapshots {
            let snapshot = Snapshot::read(&source.path)?;
            tracing::info!(
                cluster = %source.cluster_id,
                path = %source.path.display(),
                pods = snapshot.pods.len(),
                services = snapshot.services.len(),
                nodes = snapshot.nodes.len(),
                namespaces = snapshot.namespaces.len(),
                owners = snapshot.owners.len(),
                skipped = snapshot.skipped_total(),
                "read identity snapshot"
            );
            if !snapshot.skipped.is_empty() {
                tracing::debug!(path = %source.path.display(), skipped = ?snapshot.skipped, "skipped kinds enrich does not read");
            }
            builder.add_snapshot(&source.cluster_id, snapshot);
        }
        let table = builder.build();
        let stats = table.stats();
        tracing::info!(
            clusters = table.clusters.len(),
            pods = stats.pods,
            nodes = stats.nodes,
            services = stats.services,
            namespaces = stats.namespaces,
            conflicts = stats.conflicts,
            "identity table built"
        );
        Ok(table)
    }

    /// Adds one snapshot of `cluster_id` as records (see the module doc); the cluster exists
    /// afterwards even when the snapshot held nothing.
    pub fn add_snapshot(&mut self, cluster_id: &str, snapshot: Snapshot) {
        self.cluster_mut(cluster_id);
        for record in snapshot_records(cluster_id, snapshot, SNAPSHOT_OBSERVED_AT) {
            self.apply(&record);
        }
        self.cluster_mut(cluster_id).by_ip.shrink_to_fit();
    }
}

/// Collects snapshots per cluster and builds an [`IdentityTable`]. A cluster's files are
/// merged before any is applied, and owners are applied first, so a cluster's pods and
/// ReplicaSets may come from different files.
#[derive(Debug, Default)]
pub struct IdentityTableBuilder {
    clusters: std::collections::BTreeMap<String, Snapshot>,
}

impl IdentityTableBuilder {
    /// Adds the objects of one snapshot of `cluster_id`.
    pub fn add_snapshot(&mut self, cluster_id: &str, snapshot: Snapshot) {
        match self.clusters.get_mut(cluster_id) {
            Some(existing) => existing.merge(snapshot),
            None => {
                self.clusters.insert(cluster_id.to_owned(), snapshot);
            }
        }
    }

    /// Builds the table.
    pub fn build(self) -> IdentityTable {
        let mut table = IdentityTable::default();
        for (cluster_id, snapshot) in self.clusters {
            table.add_snapshot(&cluster_id, snapshot);
        }
        table
    }
}
