//! flowlake's identity sources: where the Kubernetes identity that enrich attaches to flows
//! comes from, as [`IdentityRecord`](flowlake_schemas::IdentityRecord)s.
//!
//! Every source speaks records: [`snapshot`] files (`kubectl get … -o json`; tests, the
//! demo, air-gapped use) are decoded into plain [`objects`] and turned into records by
//! [`objects_to_identity`], the same conversion the live Kubernetes [`watch`] uses, so a
//! pod read from a file and the same pod read from the API give the same record. The
//! [`publisher`] (binary `flowlake-identity-publisher`) writes one cluster's watch to the
//! compacted `k8s.identity` topic ([`identity_topic`]), which a central enrich follows.
//! enrich starts its live sources through [`sources`]; every source delivers to an
//! [`IdentitySink`] ([`sink`]), usually the bounded channel to the processor that owns the
//! identity table (the table itself is enrich's). The metric names of all of them are in
//! [`metrics`].

pub mod identity_topic;
pub mod metrics;
pub mod objects;
pub mod objects_to_identity;
pub mod publisher;
pub mod sink;
pub mod snapshot;
pub mod sources;
pub mod watch;

pub use objects::{NamespaceObject, NodeObject, OwnerObject, PodObject, ServiceObject};
pub use sink::{
    IdentityReadiness, IdentityReceiver, IdentitySender, IdentitySink, SinkClosed, identity_channel,
};
pub use snapshot::{Snapshot, SnapshotError};

#[cfg(test)]
pub(crate) mod test_support {
    //! Helpers shared by the unit tests.

    use std::path::{Path, PathBuf};

    use crate::snapshot::{Snapshot, SnapshotError};

    /// The snapshot behind the Hubble samples (see its README).
    pub fn hubble_fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/identity/hubble-snapshot.json")
    }

    /// Parses an inline snapshot.
    pub fn snapshot(json: &str) -> Result<Snapshot, SnapshotError> {
        Snapshot::from_slice(json.as_bytes(), Path::new("inline.json"))
    }
}
