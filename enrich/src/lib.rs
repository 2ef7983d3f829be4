//! flowlake's enrich stage: attaches Kubernetes identity to each end of a flow.
//!
//! [`EnrichProcessor`] reads Avro `FlowEvent`s, resolves source and destination through an
//! [`Enricher`] and writes Avro `EnrichedFlow`s. Identity lives in an as-of
//! [`IdentityTable`] keyed by (cluster, IP), built from `kubectl get … -o json` snapshots
//! ([`Snapshot`]) and kept current by identity records that sources send through an
//! [`identity_channel`]; addresses it does not hold are named by network sets
//! ([`netsets`]) and DNS names learned from flows ([`dns`]), or classified as public or
//! private ([`classify`]). Each endpoint records how it was resolved (hit, hint, stale,
//! miss).

mod addresses;
pub mod classify;
pub mod dns;
pub mod enricher;
pub mod identity_topic;
pub mod metrics;
pub mod netsets;
pub mod objects_to_identity;
pub mod pod_name;
pub mod processor;
pub mod publisher;
pub mod settings;
mod slab;
pub mod snapshot;
pub mod sources;
pub mod table;
pub mod updates;
pub mod watch;
mod workload;

pub use enricher::Enricher;
pub use processor::EnrichProcessor;
pub use settings::{EnrichSettings, ParseSnapshotSourceError, SnapshotSource};
pub use snapshot::{Snapshot, SnapshotError};
pub use table::{
    ClusterTable, Found, Identity, IdentityTable, IdentityTableBuilder, TableStats, Uid,
};
pub use updates::{IdentityReadiness, IdentityReceiver, IdentitySender, identity_channel};

#[cfg(test)]
pub(crate) mod test_support {
    //! Helpers shared by the unit tests.

    use std::path::{Path, PathBuf};

    use crate::snapshot::{Snapshot, SnapshotError};
    use crate::table::IdentityTable;

    /// The snapshot behind the Hubble samples (see its README).
    pub fn hubble_fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/identity/hubble-snapshot.json")
    }

    /// Parses an inline snapshot.
    pub fn snapshot(json: &str) -> Result<Snapshot, SnapshotError> {
        Snapshot::from_slice(json.as_bytes(), Path::new("inline.json"))
    }

    /// A table of one cluster from an inline snapshot.
    pub fn table(cluster: &str, json: &str) -> Result<IdentityTable, SnapshotError> {
        let mut builder = IdentityTable::builder();
        builder.add_snapshot(cluster, snapshot(json)?);
        Ok(builder.build())
    }

    /// A table of one cluster from the Hubble fixture.
    pub fn hubble_table(cluster: &str) -> Result<IdentityTable, SnapshotError> {
        let mut builder = IdentityTable::builder();
        builder.add_snapshot(cluster, Snapshot::read(&hubble_fixture())?);
        Ok(builder.build())
    }
}
