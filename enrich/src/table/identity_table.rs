//! The identity table of every cluster: routes lookups to a cluster's [`ClusterTable`],
//! sums statistics, prunes per cluster and sweeps the shared interner. Records are applied
//! in `records`, snapshots read in `snapshots`.

use std::net::IpAddr;

use flowlake_schemas::{Labels, Timestamp};

use crate::table::cluster::{ClusterTable, TableStats};
use crate::table::identity::Found;
use crate::workload::Interner;

/// Pruned objects between two sweeps of the interner.
const INTERNER_SWEEP_EVERY: u64 = 4_096;

/// Identity of every known address, by cluster. See the module doc.
#[derive(Clone, Debug, Default)]
pub struct IdentityTable {
    /// Looked up by name for every flow: hashbrown's default hasher (foldhash) costs a
    /// fraction of std's SipHash on a short name.
    pub(super) clusters: hashbrown::HashMap<Box<str>, ClusterTable>,
    pub(super) interner: Interner,
    pruned_since_sweep: u64,
}

impl IdentityTable {
    /// The holder of `ip` in `cluster` at `at`: `hit` when it held the address then,
    /// `stale` when it is only the nearest holder in time (see the module doc).
    pub fn lookup(&self, cluster: &str, ip: IpAddr, at: Timestamp) -> Option<Found<'_>> {
        self.clusters.get(cluster)?.lookup(ip, at)
    }

    /// One cluster's identities.
    pub fn cluster(&self, cluster: &str) -> Option<&ClusterTable> {
        self.clusters.get(cluster)
    }

    /// Labels of `namespace` in `cluster`, when the namespace is known.
    pub fn namespace_labels(&self, cluster: &str, namespace: &str) -> Option<&Labels> {
        self.clusters.get(cluster)?.namespace_labels(namespace)
    }

    /// Entry counts, summed over clusters.
    pub fn stats(&self) -> TableStats {
        let mut total = TableStats::default();
        for cluster in self.clusters.values() {
            let s = cluster.stats();
            total.pods += s.pods;
            total.nodes += s.nodes;
            total.services += s.services;
            total.namespaces += cluster.namespaces.len() as u64;
            total.owners += cluster.owners.len() as u64;
            total.network_sets += cluster.network_sets.len() as u64;
            total.addresses += cluster.by_ip.len() as u64;
            total.ended += s.ended;
            total.conflicts += s.conflicts;
            total.pruned += s.pruned;
            total.ignored += s.ignored;
        }
        total
    }

    /// Clusters with identities, sorted.
    pub fn clusters(&self) -> Vec<&str> {
        let mut clusters: Vec<&str> = self.clusters.keys().map(|c| c.as_ref()).collect();
        clusters.sort_unstable();
        clusters
    }

    /// `cluster`'s table, created empty when the cluster is new.
    pub(super) fn cluster_mut(&mut self, cluster: &str) -> &mut ClusterTable {
        self.clusters.entry_ref(cluster).or_default()
    }

    /// Forgets, per cluster, objects whose interval ended before that cluster's horizon
    /// (`horizon(cluster)`; None keeps everything). Returns how many were pruned.
    pub fn prune(&mut self, mut horizon: impl FnMut(&str) -> Option<Timestamp>) -> u64 {
        let mut pruned = 0;
        for (name, cluster) in &mut self.clusters {
            if let Some(h) = horizon(name) {
                pruned += cluster.prune(h);
            }
        }
        self.pruned_since_sweep += pruned;
        if self.pruned_since_sweep >= INTERNER_SWEEP_EVERY {
            self.interner.collect();
            self.pruned_since_sweep = 0;
        }
        pruned
    }
}
