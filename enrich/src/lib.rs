//! flowlake's enrich stage: attaches Kubernetes identity to each end of a flow.
//!
//! [`EnrichProcessor`] reads Avro `FlowEvent`s, resolves source and destination through an
//! [`Enricher`] and writes Avro `EnrichedFlow`s. Identity lives in an as-of
//! [`IdentityTable`] keyed by (cluster, IP), built from `kubectl get … -o json` snapshots
//! and kept current by the identity records that live sources send through a channel;
//! snapshots, sources and channel are the `flowlake-identity` crate's, and every one of
//! them reaches the table as records ([`IdentityTable::apply`]). Addresses it does not
//! hold are named by network sets ([`netsets`]) and DNS names learned from flows
//! ([`dns`]), or classified as public or private ([`classify`]). Each endpoint records
//! how it was resolved (hit, hint, stale, miss).

mod addresses;
pub mod classify;
pub mod dns;
pub mod enricher;
pub mod metrics;
pub mod netsets;
pub mod pod_name;
pub mod processor;
pub mod settings;
mod slab;
pub mod table;
mod workload;

pub use enricher::Enricher;
pub use processor::EnrichProcessor;
pub use settings::{EnrichSettings, ParseSnapshotSourceError, SnapshotSource};
pub use table::{
    ClusterTable, Found, Identity, IdentityTable, IdentityTableBuilder, TableStats, Uid,
};

#[cfg(test)]
pub(crate) mod test_support {
    //! Helpers shared by the unit tests.

    use std::path::{Path, PathBuf};

    use flowlake_identity::{Snapshot, SnapshotError};

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
