//! Joining a flow's two endpoints with identity.
//!
//! Each end is resolved in order of trust, and the first answer wins:
//! 1. the identity table at the flow's start time (status `hit`);
//! 2. the agent's own hint, when it names something — a pod by namespace and name or by
//!    workload, a node, a host endpoint or a network set (status `hint`): the agent knew
//!    the endpoint at the flow's time. A Hubble `reserved:world` hint names nothing: the
//!    agent only says "not mine";
//! 3. the table's holder nearest in time when none held the address then (status
//!    `stale`, see [`crate::table`]);
//! 4. a network set containing the address — from `[enrich.network_sets]` or from the
//!    cluster's `network_set` records, longest prefix wins, the config on a tie (kind
//!    `network_set`, status `hit`);
//! 5. the address itself: `external_private` or `external_public` (status `miss`), or
//!    `unknown` when the agent gave no address either.
//!
//! External and network-set endpoints also get the DNS names learned from earlier flows'
//! DNS answers ([`crate::dns`]) after the agent's own names.
//!
//! The stage's hot paths write both endpoints straight into the output record as Avro: an
//! endpoint the table answered is written from the table's shared strings, with nothing
//! copied ([`Resolved`]). [`Enricher::enrich_fast_into`] does so from the undecoded datum
//! for the common flow (each end a table hit or an address that is plainly outside the
//! table), [`Enricher::enrich_into`] for any decoded flow. [`Enricher::enrich`] builds the
//! same endpoints as owned values; debug builds check that every hot path gives the same
//! bytes for every flow it enriches. A flow's DNS answer is learned
//! before the flow itself is resolved, so flows are enriched in input order against
//! everything earlier flows taught. Enrichment never fails: every flow comes out with both
//! ends set.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flowlake_schemas::binary::{AvroBinary, Reader};
use flowlake_schemas::view::{FlowEventView, HintView};
use flowlake_schemas::{
    Endpoint, EndpointHint, EndpointKind, EnrichedFlow, EnrichmentStatus, FlowEvent, Ip, Labels,
    RESERVED_LABEL_PREFIX, Timestamp,
};
use hashbrown::HashMap;

use crate::classify::{self, PRIVATE_AGGREGATED_NAME, PUBLIC_AGGREGATED_NAME};
use crate::dns::DnsNames;
use crate::metrics::ClusterCounters;
use crate::netsets::{self, CidrError, NetworkSet, PrefixMap};
use crate::settings::EnrichSettings;
use crate::table::{ClusterTable, Found, IdentityTable};

mod endpoint;

use self::endpoint::Resolved;

/// What the enricher learns from one cluster's flows.
struct FlowState {
    /// Latest flow end time seen (µs): the cluster's event-time clock.
    high_water: i64,
    dns: DnsNames,
    counters: ClusterCounters,
}

/// Attaches identity to flows: owns the [`IdentityTable`], the network sets and the DNS
/// names learned from flows.
pub struct Enricher {
    table: IdentityTable,
    network_sets: PrefixMap<Arc<NetworkSet>>,
    flows: HashMap<Box<str>, FlowState>,
    deleted_retention: Duration,
    dns_max_entries: usize,
    dns_ttl_grace: Duration,
}

impl std::fmt::Debug for Enricher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enricher")
            .field("stats", &self.table.stats())
            .field("network_sets", &self.network_sets.len())
            .finish_non_exhaustive()
    }
}

impl Enricher {
    /// An enricher over `table` with default settings and no network sets. A table still
    /// shared elsewhere is copied once: the enricher owns and updates its own.
    pub fn new(table: Arc<IdentityTable>) -> Self {
        let table = Arc::try_unwrap(table).unwrap_or_else(|shared| IdentityTable::clone(&shared));
        let defaults = EnrichSettings::default();
        Enricher {
            table,
            network_sets: PrefixMap::default(),
            flows: HashMap::new(),
            deleted_retention: defaults.deleted_retention,
            dns_max_entries: defaults.dns_max_entries,
            dns_ttl_grace: defaults.dns_ttl_grace,
        }
    }

    /// An enricher over `table` configured by `settings` (network sets, retention, DNS
    /// limits). The error names the network-set entry that does not parse.
    pub fn with_settings(
        table: IdentityTable,
        settings: &EnrichSettings,
    ) -> Result<Self, (String, CidrError)> {
        Ok(Enricher {
            table,
            network_sets: netsets::from_config(&settings.network_sets)?,
            flows: HashMap::new(),
            deleted_retention: settings.deleted_retention,
            dns_max_entries: settings.dns_max_entries,
            dns_ttl_grace: settings.dns_ttl_grace,
        })
    }

    /// The table in use.
    pub fn table(&self) -> &IdentityTable {
        &self.table
    }

    /// The table, to apply updates to.
    pub fn table_mut(&mut self) -> &mut IdentityTable {
        &mut self.table
    }

    /// Addresses with learned DNS names, over all clusters.
    pub fn dns_entries(&self) -> usize {
        self.flows.values().map(|state| state.dns.len()).sum()
    }

    /// Forgets deleted objects and DNS names older than each cluster's horizon: its latest
    /// flow time (never later than `now`, so one flow stamped in the future cannot evict
    /// everything) minus the deleted retention. Event time, so a stage catching up on a
    /// backlog still resolves the backlog's flows; a cluster without flows keeps
    /// everything. Returns the identity objects pruned.
    pub fn prune(&mut self, now: SystemTime) -> u64 {
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let retention = i64::try_from(self.deleted_retention.as_micros()).unwrap_or(i64::MAX);
        let horizon = |state: &FlowState| {
            Timestamp::from_micros(state.high_water.min(now).saturating_sub(retention))
        };
        for state in self.flows.values_mut() {
            let h = horizon(state);
            state.dns.expire(h);
        }
        let flows = &self.flows;
        self.table.prune(|cluster| flows.get(cluster).map(&horizon))
    }

    /// Adds each cluster's endpoint counts since the last call to its counters.
    pub fn flush_cluster_counts(&mut self) {
        for state in self.flows.values_mut() {
            state.counters.flush();
        }
    }

    /// Resolves both ends of `flow`, after learning its DNS answer.
    pub fn enrich(&mut self, flow: FlowEvent) -> EnrichedFlow {
        let [src, dst] = self.resolve(&flow, |src, dst| [src.into_endpoint(), dst.into_endpoint()]);
        EnrichedFlow { flow, src, dst }
    }

    /// Resolves both ends of `flow`, after learning its DNS answer, and appends them to
    /// `out` as the Avro of two `Endpoint`s (the tail of an `EnrichedFlow` whose `flow` is
    /// already in `out`). Returns their statuses, source first.
    pub fn enrich_into(&mut self, flow: &FlowEvent, out: &mut Vec<u8>) -> [EnrichmentStatus; 2] {
        let start = out.len();
        let statuses = self.resolve(flow, |src, dst| {
            src.write_avro(out);
            dst.write_avro(out);
            [src.status(), dst.status()]
        });
        self.check_against_owned(flow, &out[start..]);
        statuses
    }

    /// The stage's fast path, for the common flow: each end is a table hit at the flow's
    /// time, or an address the table does not know and the agent's hint does not name
    /// (no hint, or Hubble's `reserved:world`), which becomes its network set or an
    /// external endpoint with the DNS names learned for it. The flow must teach nothing (no
    /// DNS answer) and name nothing (no agent DNS names). Appends the two endpoints to
    /// `out` and returns their statuses; returns None, having written and counted nothing,
    /// for any other flow, which then takes [`Self::enrich_into`] on the decoded event (so
    /// does a datum that does not read). `datum` is a `FlowEvent` in our own schema;
    /// nothing of it is copied.
    pub fn enrich_fast_into(
        &mut self,
        datum: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<[EnrichmentStatus; 2]> {
        let table = &self.table;
        let (view, cluster) = FlowEventView::read_then(datum, |cluster_id, src, dst| {
            let cluster = table.cluster(cluster_id)?;
            cluster.warm([src, dst].map(|ip| Some(ip?.canonical().0)));
            Some(cluster)
        })
        .ok()?;
        if view.has_dns || view.has_dst_dns_names {
            return None;
        }
        let state = Self::flow_state(
            &mut self.flows,
            (self.dns_max_entries, self.dns_ttl_grace),
            view.cluster_id,
        );
        let context = Context {
            cluster,
            network_sets: &self.network_sets,
            dns: &state.dns,
            at: view.start_time,
        };
        let src = context.resolve_plain(view.src_ip, view.src_hint)?;
        let dst = context.resolve_plain(view.dst_ip, view.dst_hint)?;
        let start = out.len();
        src.write_avro(out);
        dst.write_avro(out);
        let statuses = [src.status(), dst.status()];
        state.high_water = state.high_water.max(view.end_time.as_micros());
        state.counters.record(statuses[0]);
        state.counters.record(statuses[1]);
        if cfg!(debug_assertions)
            && let Ok(flow) = FlowEvent::read_avro(&mut Reader::new(datum), "FlowEvent")
        {
            self.check_against_owned(&flow, &out[start..]);
        }
        Some(statuses)
    }

    /// Debug builds: `written`, the endpoints a hot path wrote for `flow`, must be the Avro
    /// of the owned endpoints the same resolution builds (without learning from the flow
    /// again). Release builds skip it.
    fn check_against_owned(&self, flow: &FlowEvent, written: &[u8]) {
        if !cfg!(debug_assertions) {
            return;
        }
        let Some(state) = self.flows.get(flow.cluster_id.as_str()) else {
            panic!(
                "cluster {:?} has no state after one of its flows",
                flow.cluster_id
            );
        };
        let context = Context {
            cluster: self.table.cluster(&flow.cluster_id),
            network_sets: &self.network_sets,
            dns: &state.dns,
            at: flow.start_time,
        };
        let (src, dst) = context.resolve_both(flow);
        let mut expected = Vec::new();
        src.into_endpoint().write_avro(&mut expected);
        dst.into_endpoint().write_avro(&mut expected);
        assert!(
            written == expected,
            "the hot path and the owned endpoints disagree for {flow:?}"
        );
    }

    /// What the enricher keeps of `cluster`'s flows in `flows`, created with its first
    /// flow. (Takes the map, not `self`: callers hold the identity table at the same time.)
    fn flow_state<'f>(
        flows: &'f mut HashMap<Box<str>, FlowState>,
        (dns_max_entries, dns_ttl_grace): (usize, Duration),
        cluster: &str,
    ) -> &'f mut FlowState {
        flows.entry_ref(cluster).or_insert_with(|| FlowState {
            high_water: i64::MIN,
            dns: DnsNames::new(dns_max_entries, dns_ttl_grace),
            counters: ClusterCounters::register(cluster),
        })
    }

    /// Learns from `flow` (event time, DNS answer), resolves its two ends, counts their
    /// statuses, and hands both to `use_ends`.
    fn resolve<R>(
        &mut self,
        flow: &FlowEvent,
        use_ends: impl FnOnce(Resolved<'_>, Resolved<'_>) -> R,
    ) -> R {
        let state = Self::flow_state(
            &mut self.flows,
            (self.dns_max_entries, self.dns_ttl_grace),
            &flow.cluster_id,
        );
        state.high_water = state.high_water.max(flow.end_time.as_micros());
        if let Some(dns) = &flow.dns {
            state.dns.observe(dns, flow.end_time);
        }
        let context = Context {
            cluster: self.table.cluster(&flow.cluster_id),
            network_sets: &self.network_sets,
            dns: &state.dns,
            at: flow.start_time,
        };
        let (src, dst) = context.resolve_both(flow);
        state.counters.record(src.status());
        state.counters.record(dst.status());
        use_ends(src, dst)
    }
}

/// What resolving one flow's endpoints looks at.
struct Context<'a> {
    cluster: Option<&'a ClusterTable>,
    network_sets: &'a PrefixMap<Arc<NetworkSet>>,
    dns: &'a DnsNames,
    /// The start of the flow's observation interval: addresses resolve to what held them
    /// then.
    at: Timestamp,
}

impl<'a> Context<'a> {
    /// Both ends of `flow`: the agent's DNS names for the destination first, then learned
    /// ones.
    fn resolve_both(&self, flow: &'a FlowEvent) -> (Resolved<'a>, Resolved<'a>) {
        let reporter_node = flow.reporter_node.as_deref();
        let src = self.resolve(flow.src_ip, flow.src_hint.as_ref(), reporter_node);
        let mut dst = self.resolve(flow.dst_ip, flow.dst_hint.as_ref(), reporter_node);
        if !flow.dst_dns_names.is_empty() {
            match &mut dst {
                // Table entries learn no names: the agent's are all there are.
                Resolved::Table { dns_names, .. } => *dns_names = &flow.dst_dns_names,
                Resolved::Owned(endpoint) => {
                    let learned =
                        std::mem::replace(&mut endpoint.dns_names, flow.dst_dns_names.clone());
                    for name in learned {
                        if !endpoint.dns_names.contains(&name) {
                            endpoint.dns_names.push(name);
                        }
                    }
                }
            }
        }
        (src, dst)
    }

    /// One end, in the order of trust of the module doc.
    fn resolve(
        &self,
        ip: Option<Ip>,
        hint: Option<&'a EndpointHint>,
        reporter_node: Option<&str>,
    ) -> Resolved<'a> {
        let ip = ip.map(|ip| ip.canonical().0);
        let found = ip.and_then(|ip| self.lookup(ip));
        if let Some(found) = found
            && found.status == EnrichmentStatus::Hit
        {
            // A pod reached through a Service: the agent may know the Service, the table
            // (which maps addresses) cannot.
            let service = hint.and_then(|hint| {
                let name = hint.service_name.as_deref()?;
                Some((hint.service_namespace.as_deref(), name))
            });
            return Resolved::hit(found, service);
        }
        if let Some(hint) = hint
            && let Some(endpoint) = hint_endpoint(hint, ip, reporter_node)
        {
            return Resolved::Owned(endpoint);
        }
        if let Some(found) = found {
            return Resolved::Table {
                found,
                service: None,
                dns_names: &[],
            };
        }
        match ip {
            Some(ip) => Resolved::Owned(self.outside_table(ip)),
            None => Resolved::Owned(Endpoint {
                kind: EndpointKind::Unknown,
                status: EnrichmentStatus::Miss,
                ..Endpoint::default()
            }),
        }
    }

    /// [`Self::resolve`] for the ends the fast path takes, from what a [`FlowEventView`]
    /// says of them: a table hit, or an address the table does not know with a hint that
    /// names nothing (none, or `reserved:world`, which [`hint_kind`] turns down first).
    /// None for any other end (a stale holder, a hint that may name it, no address).
    fn resolve_plain(&self, ip: Option<Ip>, hint: Option<HintView<'a>>) -> Option<Resolved<'a>> {
        let ip = ip?.canonical().0;
        match self.lookup(ip) {
            Some(found) if found.status == EnrichmentStatus::Hit => {
                Some(Resolved::hit(found, hint.and_then(|hint| hint.service)))
            }
            None if hint.is_none_or(|hint| hint.world) => {
                Some(Resolved::Owned(self.outside_table(ip)))
            }
            _ => None,
        }
    }

    /// The table's answer for `ip` at the flow's time.
    fn lookup(&self, ip: IpAddr) -> Option<Found<'a>> {
        self.cluster?.lookup(ip, self.at)
    }

    /// An address the table does not know: its network set, or an external endpoint, with
    /// the DNS names learned for it.
    fn outside_table(&self, ip: IpAddr) -> Endpoint {
        let mut endpoint = match self.network_set(ip) {
            Some(set) => network_set_endpoint(set),
            None => external_endpoint(ip),
        };
        self.dns.names_into(ip, self.at, &mut endpoint.dns_names);
        endpoint
    }

    /// The longest-prefix network set of `ip`: the config's, or the cluster's own when
    /// strictly longer.
    fn network_set(&self, ip: IpAddr) -> Option<&'a Arc<NetworkSet>> {
        let configured = self.network_sets.longest_match(ip);
        let own = self.cluster.and_then(|c| c.network_set(ip));
        match (configured, own) {
            (Some((len, set)), Some((own_len, own_set))) => {
                Some(if own_len > len { own_set } else { set })
            }
            (Some((_, set)), None) | (None, Some((_, set))) => Some(set),
            (None, None) => None,
        }
    }
}

/// An address inside a network set.
fn network_set_endpoint(set: &NetworkSet) -> Endpoint {
    Endpoint {
        kind: EndpointKind::NetworkSet,
        namespace: set.namespace.as_deref().map(str::to_owned),
        name: Some(set.name.to_string()),
        labels: Labels::clone(&set.labels),
        network_set: Some(set.name.to_string()),
        status: EnrichmentStatus::Hit,
        ..Endpoint::default()
    }
}

/// An address nobody in the cluster holds.
fn external_endpoint(ip: IpAddr) -> Endpoint {
    let kind = classify::classify(ip);
    Endpoint {
        kind,
        aggregated_name: classify::aggregated_name(kind).map(str::to_owned),
        status: EnrichmentStatus::Miss,
        ..Endpoint::default()
    }
}

/// What the agent's hint says an endpoint is; None when it names nothing we can use.
fn hint_endpoint(
    hint: &EndpointHint,
    ip: Option<IpAddr>,
    reporter_node: Option<&str>,
) -> Option<Endpoint> {
    let kind = hint_kind(hint, ip)?;
    let mut endpoint = Endpoint {
        kind,
        namespace: hint.namespace.clone(),
        name: hint.name.clone(),
        workload_kind: hint.workload_kind.clone(),
        workload_name: hint.workload_name.clone(),
        aggregated_name: hint.aggregated_name.clone(),
        labels: hint.labels.clone(),
        service_namespace: hint.service_namespace.clone(),
        service_name: hint.service_name.clone(),
        status: EnrichmentStatus::Hint,
        ..Endpoint::default()
    };
    match kind {
        // Cilium's `reserved:host` is the node that observed the flow.
        EndpointKind::Node if endpoint.name.is_none() && hint.has_reserved("host") => {
            endpoint.name = reporter_node.map(str::to_owned);
        }
        EndpointKind::NetworkSet => endpoint.network_set = hint.name.clone(),
        EndpointKind::Service if endpoint.service_name.is_none() => {
            endpoint.service_namespace = hint.namespace.clone();
            endpoint.service_name = hint.name.clone();
        }
        _ => {}
    }
    Some(endpoint)
}

/// The endpoint kind a hint names, if any.
fn hint_kind(hint: &EndpointHint, ip: Option<IpAddr>) -> Option<EndpointKind> {
    // Hubble: an address outside the cluster. The hint says nothing beyond that, and the
    // address says more (public or private), even when Hubble attached a pod name it
    // remembered for the address.
    if hint.has_reserved("world") {
        return None;
    }
    let names_pod = (hint.namespace.is_some()
        && (hint.name.is_some() || hint.aggregated_name.is_some()))
        || hint.workload_name.is_some();
    let declared = hint.kind.as_deref().map(normalise_kind).unwrap_or_default();
    match declared.as_str() {
        // Hubble pods, Calico workload endpoints (flow logs `wep`, Goldmane
        // `WorkloadEndpoint`).
        "pod" | "wep" | "workloadendpoint" | "workload" => names_pod.then_some(EndpointKind::Pod),
        "node" | "remotenode" => Some(EndpointKind::Node),
        // Calico host endpoints: a host known to the agent, maybe outside Kubernetes.
        "host" | "hep" | "hostendpoint" => Some(EndpointKind::Host),
        "ns" | "networkset" | "globalnetworkset" => Some(EndpointKind::NetworkSet),
        "service" | "svc" => Some(EndpointKind::Service),
        // Calico `net`: an address outside every known set. Only without an address is the
        // agent's public/private grouping worth more than our own classification.
        "net" | "network" => match (ip, hint.aggregated_name.as_deref()) {
            (None, Some(PUBLIC_AGGREGATED_NAME)) => Some(EndpointKind::ExternalPublic),
            (None, Some(PRIVATE_AGGREGATED_NAME)) => Some(EndpointKind::ExternalPrivate),
            _ => None,
        },
        "reserved" => {
            if hint.has_reserved("host") || hint.has_reserved("remote-node") {
                Some(EndpointKind::Node)
            } else if names_pod {
                Some(EndpointKind::Pod)
            } else if hint
                .labels
                .keys()
                .any(|k| k.starts_with(RESERVED_LABEL_PREFIX))
            {
                // Cilium's own endpoints (health, ingress, init): in the cluster, not a pod
                // we can name.
                Some(EndpointKind::Unknown)
            } else {
                None
            }
        }
        _ => names_pod.then_some(EndpointKind::Pod),
    }
}

/// Lower case without separators: `WorkloadEndpoint`, `workload_endpoint` → `workloadendpoint`.
fn normalise_kind(kind: &str) -> String {
    kind.chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{hubble_table, table};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// One of each identity kind: a Deployment pod known through its ReplicaSet, a
    /// hostNetwork pod on a node without addresses of its own, a Service.
    const SNAPSHOT: &str = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"kind": "Pod",
         "metadata": {"name": "web-6b7f9c8d5-x2x9q", "namespace": "shop", "uid": "0b8c5f1e-uid",
                      "labels": {"app": "web", "pod-template-hash": "6b7f9c8d5"},
                      "ownerReferences": [{"kind": "ReplicaSet", "name": "web-6b7f9c8d5", "controller": true}]},
         "spec": {"nodeName": "node-a", "serviceAccountName": "web"},
         "status": {"phase": "Running", "podIP": "10.1.0.5"}},
        {"kind": "Pod",
         "metadata": {"name": "kube-proxy-7xq2p", "namespace": "kube-system", "uid": "kp-uid",
                      "ownerReferences": [{"kind": "DaemonSet", "name": "kube-proxy", "controller": true}]},
         "spec": {"nodeName": "node-a", "hostNetwork": true},
         "status": {"phase": "Running", "podIP": "192.168.0.10"}},
        {"kind": "Service",
         "metadata": {"name": "web", "namespace": "shop"},
         "spec": {"clusterIP": "10.96.5.5", "clusterIPs": ["10.96.5.5"]}},
        {"kind": "Node", "metadata": {"name": "node-a", "labels": {"zone": "eu-1a"}}}
    ]}"#;

    fn enricher(json: &str) -> Result<Enricher, flowlake_identity::SnapshotError> {
        // `mut` for callers: enriching learns DNS names.
        Ok(Enricher::new(Arc::new(table("prod", json)?)))
    }

    /// A canonical-JSON flow between `src` and `dst` (null for an absent address), with
    /// `extra` fields spliced in.
    fn flow(src: &str, dst: &str, extra: &str) -> Result<FlowEvent, serde_json::Error> {
        let quote = |ip: &str| {
            if ip == "null" {
                ip.to_owned()
            } else {
                format!("\"{ip}\"")
            }
        };
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(", {extra}")
        };
        serde_json::from_str(&format!(
            r#"{{"event_id": "e1", "cluster_id": "prod", "source_format": "hubble",
                "reporter_node": "node-a", "reporter": "src",
                "start_time": "2024-03-01T12:00:00Z", "end_time": "2024-03-01T12:00:01Z",
                "src_ip": {}, "dst_ip": {}, "src_port": 40000, "dst_port": 80, "protocol": 6,
                "action": "allow"{extra}}}"#,
            quote(src),
            quote(dst)
        ))
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn some(text: &str) -> Option<String> {
        Some(text.to_owned())
    }

    #[test]
    fn pod_hit_names_the_deployment_and_service_hit_names_the_service() -> TestResult {
        let mut enricher = enricher(SNAPSHOT)?;
        let event = flow(
            "10.1.0.5",
            "10.96.5.5",
            r#""dst_dns_names": ["web.shop.svc.cluster.local"]"#,
        )?;
        let enriched = enricher.enrich(event.clone());
        assert_eq!(enriched.flow, event, "the flow passes through unchanged");
        assert_eq!(
            enriched.src,
            Endpoint {
                kind: EndpointKind::Pod,
                namespace: some("shop"),
                name: some("web-6b7f9c8d5-x2x9q"),
                pod_uid: some("0b8c5f1e-uid"),
                workload_kind: some("Deployment"),
                workload_name: some("web"),
                service_account: some("web"),
                labels: labels(&[("app", "web"), ("pod-template-hash", "6b7f9c8d5")]),
                node: some("node-a"),
                status: EnrichmentStatus::Hit,
                ..Endpoint::default()
            }
        );
        assert_eq!(
            enriched.dst,
            Endpoint {
                kind: EndpointKind::Service,
                namespace: some("shop"),
                name: some("web"),
                service_namespace: some("shop"),
                service_name: some("web"),
                dns_names: vec!["web.shop.svc.cluster.local".to_owned()],
                status: EnrichmentStatus::Hit,
                ..Endpoint::default()
            }
        );
        Ok(())
    }

    #[test]
    fn host_network_pod_address_is_its_node() -> TestResult {
        let enriched = enricher(SNAPSHOT)?.enrich(flow("192.168.0.10", "10.1.0.5", "")?);
        assert_eq!(
            enriched.src,
            Endpoint {
                kind: EndpointKind::Node,
                name: some("node-a"),
                labels: labels(&[("zone", "eu-1a")]),
                status: EnrichmentStatus::Hit,
                ..Endpoint::default()
            }
        );
        Ok(())
    }

    #[test]
    fn unknown_addresses_are_private_or_public() -> TestResult {
        let enriched = enricher(SNAPSHOT)?.enrich(flow("10.20.30.40", "8.8.8.8", "")?);
        assert_eq!(
            enriched.src,
            Endpoint {
                kind: EndpointKind::ExternalPrivate,
                aggregated_name: some("pvt"),
                status: EnrichmentStatus::Miss,
                ..Endpoint::default()
            }
        );
        assert_eq!(
            enriched.dst,
            Endpoint {
                kind: EndpointKind::ExternalPublic,
                aggregated_name: some("pub"),
                status: EnrichmentStatus::Miss,
                ..Endpoint::default()
            }
        );
        // Another cluster's table does not answer for this one.
        let mut elsewhere = flow("10.1.0.5", "10.96.5.5", "")?;
        elsewhere.cluster_id = "staging".into();
        let enriched = enricher(SNAPSHOT)?.enrich(elsewhere);
        assert_eq!(enriched.src.kind, EndpointKind::ExternalPrivate);
        assert_eq!(enriched.src.status, EnrichmentStatus::Miss);
        Ok(())
    }

    #[test]
    fn ipv4_mapped_ipv6_resolves_like_ipv4() -> TestResult {
        let enriched = enricher(SNAPSHOT)?.enrich(flow("::ffff:10.1.0.5", "::ffff:8.8.8.8", "")?);
        assert_eq!(enriched.src.kind, EndpointKind::Pod);
        assert_eq!(enriched.src.name, some("web-6b7f9c8d5-x2x9q"));
        assert_eq!(enriched.src.status, EnrichmentStatus::Hit);
        assert_eq!(enriched.dst.kind, EndpointKind::ExternalPublic);
        Ok(())
    }

    #[test]
    fn hint_is_kept_when_the_table_does_not_know_the_address() -> TestResult {
        let hint = r#""src_hint": {"kind": "pod", "namespace": "shop", "name": "cart-5c9d7b-abcde",
            "labels": {"app": "cart"}, "workload_kind": "Deployment", "workload_name": "cart"}"#;
        let enriched = enricher(SNAPSHOT)?.enrich(flow("10.1.0.99", "10.1.0.5", hint)?);
        assert_eq!(
            enriched.src,
            Endpoint {
                kind: EndpointKind::Pod,
                namespace: some("shop"),
                name: some("cart-5c9d7b-abcde"),
                workload_kind: some("Deployment"),
                workload_name: some("cart"),
                labels: labels(&[("app", "cart")]),
                status: EnrichmentStatus::Hint,
                ..Endpoint::default()
            }
        );
        // The table wins over a hint; a Service the hint names is added to the pod.
        let hint = r#""dst_hint": {"kind": "pod", "namespace": "other", "name": "stale-name",
            "service_namespace": "shop", "service_name": "web"}"#;
        let enriched = enricher(SNAPSHOT)?.enrich(flow("10.1.0.99", "10.1.0.5", hint)?);
        assert_eq!(enriched.dst.status, EnrichmentStatus::Hit);
        assert_eq!(enriched.dst.name, some("web-6b7f9c8d5-x2x9q"));
        assert_eq!(
            (enriched.dst.service_namespace, enriched.dst.service_name),
            (some("shop"), some("web"))
        );
        Ok(())
    }

    #[test]
    fn hubble_reserved_hints() -> TestResult {
        let mut enricher = enricher(SNAPSHOT)?;
        // reserved:world names nothing, even with a pod name Hubble remembered.
        for world in [
            r#"{"reserved:world": ""}"#,
            r#"{"reserved": "world"}"#,
            r#"{"reserved:world-ipv4": ""}"#,
        ] {
            let hint = format!(
                r#""dst_hint": {{"kind": "reserved", "namespace": "kube-system", "name": "kube-dns-b4f5c58c7-7qmtw", "labels": {world}}}"#
            );
            let enriched = enricher.enrich(flow("10.1.0.5", "10.156.3.6", &hint)?);
            assert_eq!(enriched.dst.kind, EndpointKind::ExternalPrivate, "{world}");
            assert_eq!(enriched.dst.status, EnrichmentStatus::Miss, "{world}");
            assert_eq!(enriched.dst.name, None, "{world}");
        }
        // reserved:host is the reporting node.
        let hint = r#""dst_hint": {"kind": "reserved", "labels": {"reserved:host": ""}}"#;
        let enriched = enricher.enrich(flow("10.1.0.5", "10.1.0.1", hint)?);
        assert_eq!(enriched.dst.kind, EndpointKind::Node);
        assert_eq!(enriched.dst.name, some("node-a"));
        assert_eq!(enriched.dst.status, EnrichmentStatus::Hint);
        // reserved:health is Cilium's, in the cluster but not nameable.
        let hint = r#""dst_hint": {"kind": "reserved", "labels": {"reserved:health": ""}}"#;
        let enriched = enricher.enrich(flow("10.1.0.5", "10.1.0.2", hint)?);
        assert_eq!(enriched.dst.kind, EndpointKind::Unknown);
        assert_eq!(enriched.dst.status, EnrichmentStatus::Hint);
        Ok(())
    }

    #[test]
    fn endpoints_without_an_address() -> TestResult {
        let mut enricher = enricher(SNAPSHOT)?;
        let enriched = enricher.enrich(flow("10.1.0.5", "null", "")?);
        assert_eq!(
            enriched.dst,
            Endpoint {
                kind: EndpointKind::Unknown,
                status: EnrichmentStatus::Miss,
                ..Endpoint::default()
            }
        );
        // Calico aggregates: a name-less pod group, and the public network.
        let hints = r#""src_hint": {"kind": "wep", "namespace": "shop", "aggregated_name": "cart-5c9d7b-*"},
                       "dst_hint": {"kind": "net", "aggregated_name": "pub"}"#;
        let enriched = enricher.enrich(flow("null", "null", hints)?);
        assert_eq!(enriched.src.kind, EndpointKind::Pod);
        assert_eq!(enriched.src.aggregated_name, some("cart-5c9d7b-*"));
        assert_eq!(enriched.src.status, EnrichmentStatus::Hint);
        assert_eq!(enriched.dst.kind, EndpointKind::ExternalPublic);
        assert_eq!(enriched.dst.aggregated_name, some("pub"));
        assert_eq!(enriched.dst.status, EnrichmentStatus::Hint);
        // A hint that names nothing leaves the endpoint unknown.
        let enriched = enricher.enrich(flow("null", "10.1.0.5", r#""src_hint": {"kind": "pod"}"#)?);
        assert_eq!(enriched.src.kind, EndpointKind::Unknown);
        assert_eq!(enriched.src.status, EnrichmentStatus::Miss);
        Ok(())
    }

    #[test]
    fn hubble_sample_flows_against_the_fixture() -> TestResult {
        let mut enricher = Enricher::new(Arc::new(hubble_table("prod")?));
        // hubble_otel_basic_10, line 1: reviews-v1 → reserved:host on the GKE node.
        let hints = r#""src_hint": {"kind": "pod", "namespace": "bookinfo", "name": "reviews-v1-545db77b95-s6jb8",
                                    "labels": {"app": "reviews", "version": "v1"}},
                       "dst_hint": {"kind": "reserved", "labels": {"reserved:host": ""}}"#;
        let enriched = enricher.enrich(flow("10.0.2.16", "10.0.2.1", hints)?);
        assert_eq!(enriched.src.kind, EndpointKind::Pod);
        assert_eq!(enriched.src.status, EnrichmentStatus::Hit);
        assert_eq!(enriched.src.workload_name, some("reviews-v1"));
        assert_eq!(enriched.dst.kind, EndpointKind::Node);
        assert_eq!(enriched.dst.status, EnrichmentStatus::Hit);
        assert_eq!(
            enriched.dst.name,
            some("gke-ilya-otel-demo-1-ilya-otel-demo-1-6114bb84-zr1l")
        );
        // hubble_otel_http_5: prometheus → reserved:world 10.128.0.4.
        let hints = r#""dst_hint": {"kind": "reserved", "labels": {"reserved:world": ""}}"#;
        let enriched = enricher.enrich(flow("10.156.2.7", "10.128.0.4", hints)?);
        assert_eq!(enriched.src.name, some("prometheus-6655946b9f-6xcpf"));
        assert_eq!(enriched.dst.kind, EndpointKind::ExternalPrivate);
        assert_eq!(enriched.dst.status, EnrichmentStatus::Miss);
        // cilium_docs_export_dropped: xwing → deathstar, and an IPv6 router solicitation.
        let enriched = enricher.enrich(flow("10.244.1.60", "10.244.1.5", "")?);
        assert_eq!(
            (enriched.src.workload_kind, enriched.src.workload_name),
            (some("Pod"), some("xwing"))
        );
        assert_eq!(
            (enriched.dst.workload_kind, enriched.dst.workload_name),
            (some("Deployment"), some("deathstar"))
        );
        let enriched = enricher.enrich(flow("fe80::64d8:8aff:fe72:fc14", "ff02::2", "")?);
        assert_eq!(enriched.src.kind, EndpointKind::ExternalPrivate);
        assert_eq!(enriched.dst.kind, EndpointKind::ExternalPrivate);
        // hubble_otel_basic_10: the public destination.
        let enriched = enricher.enrich(flow("10.0.2.13", "35.246.31.234", "")?);
        assert_eq!(enriched.dst.kind, EndpointKind::ExternalPublic);
        Ok(())
    }
    /// The hot path's bytes are the owned endpoints' Avro, for every way an end resolves:
    /// pod, node and Service hits, a hostNetwork pod, a pod with the agent's Service,
    /// hints of each kind, reserved identities, private and public
    /// addresses, no address, the agent's DNS names and names learned from an answer.
    #[test]
    fn enrich_into_writes_what_enrich_builds() -> TestResult {
        use flowlake_schemas::AvroCodec;
        let snapshot = table("prod", SNAPSHOT)?;
        let mut owned = Enricher::new(Arc::new(snapshot.clone()));
        let mut hot = Enricher::new(Arc::new(snapshot.clone()));
        let mut fast = Enricher::new(Arc::new(snapshot));
        let events = AvroCodec::<FlowEvent>::new()?;
        let enriched = AvroCodec::<EnrichedFlow>::new()?;
        let flows = [
            flow("10.1.0.5", "10.96.5.5", "")?,
            flow(
                "192.168.0.10",
                "10.1.0.5",
                r#""dst_hint": {"service_namespace": "shop", "service_name": "web"}"#,
            )?,
            flow("10.1.0.5", "8.8.8.8", r#""dst_dns_names": ["dns.google"]"#)?,
            flow(
                "10.1.0.5",
                "10.1.0.5",
                r#""dst_dns_names": ["web.shop.svc"]"#,
            )?,
            flow(
                "10.9.9.9",
                "172.16.0.1",
                r#""src_hint": {"kind": "pod", "namespace": "a", "name": "p", "labels": {"x": "y"}, "workload_name": "w"}"#,
            )?,
            flow(
                "10.9.9.8",
                "10.9.9.7",
                r#""src_hint": {"kind": "reserved", "labels": {"reserved:host": ""}}, "dst_hint": {"kind": "svc", "namespace": "n", "name": "s"}"#,
            )?,
            flow(
                "10.9.9.8",
                "10.9.9.7",
                r#""src_hint": {"kind": "ns", "name": "corp"}, "dst_hint": {"kind": "reserved", "labels": {"reserved:world": ""}}"#,
            )?,
            flow(
                "null",
                "null",
                r#""src_hint": {"kind": "net", "aggregated_name": "pub"}, "dst_hint": {"kind": "hep", "name": "h"}"#,
            )?,
            flow("fe80::1", "2001:db8::1", "")?,
            flow(
                "10.1.0.5",
                "1.1.1.1",
                r#""dns": {"query": "one.one", "ips": ["1.1.1.1"], "ttl": 60}"#,
            )?,
            flow("10.1.0.5", "1.1.1.1", r#""dst_dns_names": ["cloudflare"]"#)?,
            // An outside address with its learned name, behind Hubble's world hint.
            flow(
                "10.1.0.5",
                "1.1.1.1",
                r#""dst_hint": {"kind": "reserved", "labels": {"reserved:world-ipv4": ""}}"#,
            )?,
            // A world hint on an address the table holds: the table wins.
            flow(
                "10.1.0.5",
                "10.96.5.5",
                r#""dst_hint": {"labels": {"reserved": "world"}}"#,
            )?,
            // A hint that names the end: not the fast path's.
            flow(
                "10.9.9.9",
                "1.1.1.1",
                r#""src_hint": {"kind": "pod", "namespace": "a", "name": "p"}"#,
            )?,
        ];
        let mut fast_path_flows = Vec::new();
        for (n, event) in flows.into_iter().enumerate() {
            let expected = enriched.encode(&owned.enrich(event.clone()));
            let message = events.encode(&event);
            let (decoded, datum) = (events.decode(&message)?, events.own_datum(&message));
            let mut bytes = Vec::new();
            enriched.encode_header(&mut bytes);
            bytes.extend_from_slice(datum.ok_or("our own schema has a datum")?);
            let statuses = hot.enrich_into(&decoded, &mut bytes);
            assert_eq!(bytes, expected, "{event:?}");
            let back = enriched.decode(&bytes)?;
            assert_eq!(statuses, [back.src.status, back.dst.status]);

            // The stage's way: the fast path when it applies, the full one otherwise.
            let datum = datum.ok_or("our own schema has a datum")?;
            let mut bytes = Vec::new();
            enriched.encode_header(&mut bytes);
            bytes.extend_from_slice(datum);
            let fast_statuses = match fast.enrich_fast_into(datum, &mut bytes) {
                Some(statuses) => {
                    fast_path_flows.push(n);
                    statuses
                }
                None => fast.enrich_into(&decoded, &mut bytes),
            };
            assert_eq!(bytes, expected, "fast path: {event:?}");
            assert_eq!(fast_statuses, statuses);
        }
        // Pod → Service, hostNetwork pod → pod with the agent's Service, two addresses
        // nobody holds, pod → learned name behind a world hint, pod → Service behind one.
        assert_eq!(fast_path_flows, [0, 1, 8, 11, 12]);
        Ok(())
    }
}

/// Identity from records: the as-of join, clusters, Services, nodes, network sets and DNS.
#[cfg(test)]
mod record_tests {
    use std::time::{Duration, SystemTime};

    use flowlake_schemas::{DnsObservation, IdentityKind, IdentityRecord, OwnerRef};

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const T0: i64 = 1_700_000_000;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_secs(T0 + secs)
    }

    fn ips(list: &[&str]) -> Vec<Ip> {
        list.iter().filter_map(|i| i.parse().ok()).collect()
    }

    fn pod(cluster: &str, name: &str, addr: &str, created: i64) -> IdentityRecord {
        IdentityRecord {
            cluster_id: cluster.into(),
            kind: IdentityKind::Pod,
            uid: format!("uid-{name}"),
            namespace: Some("shop".into()),
            name: name.into(),
            ips: ips(&[addr]),
            owner: Some(OwnerRef {
                kind: "StatefulSet".into(),
                name: name
                    .trim_end_matches(char::is_numeric)
                    .trim_end_matches('-')
                    .into(),
                uid: String::new(),
            }),
            node: Some("node-a".into()),
            created_at: Some(ts(created)),
            observed_at: ts(created),
            ..IdentityRecord::default()
        }
    }

    fn deleted(mut record: IdentityRecord, at: i64) -> IdentityRecord {
        record.deleted_at = Some(ts(at));
        record.observed_at = ts(at);
        record
    }

    fn flow(cluster: &str, src: &str, dst: &str, at: i64) -> FlowEvent {
        FlowEvent {
            event_id: "e".into(),
            cluster_id: cluster.into(),
            start_time: ts(at),
            end_time: ts(at),
            src_ip: src.parse().ok(),
            dst_ip: dst.parse().ok(),
            ..FlowEvent::default()
        }
    }

    fn some(text: &str) -> Option<String> {
        Some(text.to_owned())
    }

    fn pod_endpoint(name: &str, workload: &str, status: EnrichmentStatus) -> Endpoint {
        Endpoint {
            kind: EndpointKind::Pod,
            namespace: some("shop"),
            name: some(name),
            pod_uid: Some(format!("uid-{name}")),
            workload_kind: some("StatefulSet"),
            workload_name: some(workload),
            node: some("node-a"),
            status,
            ..Endpoint::default()
        }
    }

    fn enricher(records: &[IdentityRecord]) -> Enricher {
        let mut enricher = Enricher::new(Arc::new(IdentityTable::default()));
        for record in records {
            enricher.table_mut().apply(record);
        }
        enricher
    }

    /// Pod a-0 holds 10.0.0.5 from 0 s until 100 s; b-0 gets it at 130 s.
    fn reuse_records() -> [IdentityRecord; 3] {
        [
            pod("c1", "a-0", "10.0.0.5", 0),
            deleted(pod("c1", "a-0", "10.0.0.5", 0), 100),
            pod("c1", "b-0", "10.0.0.5", 130),
        ]
    }

    #[test]
    fn a_reused_address_resolves_to_its_holder_at_the_flow_time() {
        let [a, a_gone, b] = reuse_records();
        // Updates in every order a source may deliver them.
        for updates in [
            vec![a.clone(), a_gone.clone(), b.clone()],
            vec![a.clone(), b.clone(), a_gone.clone()],
            vec![b.clone(), a_gone.clone(), a.clone()],
            vec![a_gone.clone(), b.clone()],
        ] {
            let mut enricher = enricher(&updates);
            // Flows in and out of order.
            for times in [[99, 131, 115], [131, 115, 99]] {
                for at in times {
                    let dst = enricher.enrich(flow("c1", "8.8.8.8", "10.0.0.5", at)).dst;
                    let expected = match at {
                        99 => pod_endpoint("a-0", "a", EnrichmentStatus::Hit),
                        131 => pod_endpoint("b-0", "b", EnrichmentStatus::Hit),
                        // In the gap: the nearest holder (a-0 left 15 s before, b-0 came
                        // 15 s after; the tie goes to the newer), marked stale.
                        _ => pod_endpoint("b-0", "b", EnrichmentStatus::Stale),
                    };
                    assert_eq!(dst, expected, "flow at {at} s after {updates:?}");
                }
            }
            // Nearer to a-0's end, the gap names a-0 — stale, never a hit.
            let dst = enricher.enrich(flow("c1", "8.8.8.8", "10.0.0.5", 101)).dst;
            assert_eq!(dst, pod_endpoint("a-0", "a", EnrichmentStatus::Stale));
        }
    }

    /// Stale holders, written by the hot path, are what the owned path builds.
    #[test]
    fn stale_holders_write_what_enrich_builds() {
        use flowlake_schemas::AvroCodec;
        let [a, a_gone, b] = reuse_records();
        let records = [a, a_gone, b];
        let (mut owned, mut hot) = (enricher(&records), enricher(&records));
        let codec = AvroCodec::<EnrichedFlow>::new().unwrap_or_else(|e| panic!("{e}"));
        for at in [99, 101, 115, 131] {
            let event = flow("c1", "10.0.0.5", "10.0.0.5", at);
            let expected = codec.encode(&owned.enrich(event.clone()));
            let mut bytes = Vec::new();
            codec.encode_header(&mut bytes);
            event.write_avro(&mut bytes);
            hot.enrich_into(&event, &mut bytes);
            assert_eq!(bytes, expected, "flow at {at} s");
        }
    }

    #[test]
    fn an_agent_hint_beats_a_stale_holder() {
        let mut enricher = enricher(&reuse_records());
        let mut event = flow("c1", "8.8.8.8", "10.0.0.5", 115);
        event.dst_hint = Some(EndpointHint {
            kind: some("pod"),
            namespace: some("shop"),
            name: some("b-0"),
            ..EndpointHint::default()
        });
        let dst = enricher.enrich(event).dst;
        assert_eq!(dst.status, EnrichmentStatus::Hint);
        assert_eq!(dst.name, some("b-0"));
        assert_eq!(dst.pod_uid, None);
    }

    #[test]
    fn deleted_holders_are_pruned_after_the_retention_in_event_time() {
        let mut enricher = enricher(&reuse_records());
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs((T0 + 10_000) as u64);
        // No flow of c1 yet: nothing is pruned.
        assert_eq!(enricher.prune(now), 0);
        // c1's clock reaches 100 s + 10 min: a-0 (ended at 100 s) is still kept...
        enricher.enrich(flow("c1", "8.8.8.8", "8.8.4.4", 700));
        assert_eq!(enricher.prune(now), 0);
        assert_eq!(enricher.table().stats().ended, 1);
        // ...and goes one microsecond later.
        let mut late = flow("c1", "8.8.8.8", "8.8.4.4", 700);
        late.end_time = Timestamp::from_micros(ts(700).as_micros() + 1);
        enricher.enrich(late);
        assert_eq!(enricher.prune(now), 1);
        let stats = enricher.table().stats();
        assert_eq!((stats.pods, stats.ended, stats.pruned), (1, 0, 1));
        let dst = enricher.enrich(flow("c1", "8.8.8.8", "10.0.0.5", 99)).dst;
        assert_eq!(dst, pod_endpoint("b-0", "b", EnrichmentStatus::Stale));
        // A flow stamped far in the future moves the horizon no further than `now`.
        enricher.enrich(flow("c1", "8.8.8.8", "8.8.4.4", 1_000_000));
        enricher
            .table_mut()
            .apply(&deleted(pod("c1", "b-0", "10.0.0.5", 130), 9_500));
        assert_eq!(enricher.prune(now), 0);
    }

    #[test]
    fn clusters_sharing_a_pod_cidr_resolve_their_own_pods() {
        let mut enricher = enricher(&[
            pod("east", "web-0", "10.0.0.5", 0),
            pod("west", "db-0", "10.0.0.5", 0),
        ]);
        let east = enricher.enrich(flow("east", "10.0.0.5", "8.8.8.8", 10));
        let west = enricher.enrich(flow("west", "10.0.0.5", "8.8.8.8", 10));
        assert_eq!(
            east.src,
            pod_endpoint("web-0", "web", EnrichmentStatus::Hit)
        );
        assert_eq!(west.src, pod_endpoint("db-0", "db", EnrichmentStatus::Hit));
        let elsewhere = enricher.enrich(flow("north", "10.0.0.5", "8.8.8.8", 10));
        assert_eq!(elsewhere.src.kind, EndpointKind::ExternalPrivate);
        assert_eq!(elsewhere.src.status, EnrichmentStatus::Miss);
    }

    #[test]
    fn services_nodes_and_host_network_pods_from_records() {
        let service = IdentityRecord {
            cluster_id: "c1".into(),
            kind: IdentityKind::Service,
            uid: "6f1d3c2a-0000-4000-8000-000000000001".into(),
            namespace: Some("shop".into()),
            name: "checkout".into(),
            // ClusterIP, external IP, load-balancer ingress IP.
            ips: ips(&["10.96.0.20", "203.0.113.7", "198.51.100.9"]),
            observed_at: ts(0),
            ..IdentityRecord::default()
        };
        let node = IdentityRecord {
            cluster_id: "c1".into(),
            kind: IdentityKind::Node,
            uid: "node-a-uid".into(),
            name: "node-a".into(),
            ips: ips(&["192.168.0.10"]),
            labels: [("zone".to_owned(), "eu-1a".to_owned())].into(),
            observed_at: ts(0),
            ..IdentityRecord::default()
        };
        let host_pod = IdentityRecord {
            host_network: true,
            ips: ips(&["192.168.0.11"]),
            ..pod("c1", "exporter-0", "192.168.0.11", 0)
        };
        let namespace = IdentityRecord {
            cluster_id: "c1".into(),
            kind: IdentityKind::Namespace,
            uid: "ns-uid".into(),
            name: "shop".into(),
            labels: [("team".to_owned(), "payments".to_owned())].into(),
            observed_at: ts(0),
            ..IdentityRecord::default()
        };
        let mut enricher = enricher(&[node, service, host_pod, namespace]);
        let service_endpoint = Endpoint {
            kind: EndpointKind::Service,
            namespace: some("shop"),
            name: some("checkout"),
            service_namespace: some("shop"),
            service_name: some("checkout"),
            status: EnrichmentStatus::Hit,
            ..Endpoint::default()
        };
        for addr in ["10.96.0.20", "203.0.113.7", "198.51.100.9"] {
            let dst = enricher.enrich(flow("c1", "192.168.0.10", addr, 5)).dst;
            assert_eq!(dst, service_endpoint, "{addr}");
        }
        let node_a = Endpoint {
            kind: EndpointKind::Node,
            name: some("node-a"),
            labels: [("zone".to_owned(), "eu-1a".to_owned())].into(),
            status: EnrichmentStatus::Hit,
            ..Endpoint::default()
        };
        let enriched = enricher.enrich(flow("c1", "192.168.0.10", "192.168.0.11", 5));
        assert_eq!(enriched.src, node_a);
        assert_eq!(
            enriched.dst, node_a,
            "a hostNetwork pod's address is its node"
        );
        assert_eq!(
            enricher
                .table()
                .namespace_labels("c1", "shop")
                .and_then(|l| l.get("team")),
            Some("payments")
        );
        let found = enricher.table().lookup(
            "c1",
            "10.96.0.20".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            ts(5),
        );
        assert_eq!(
            found.map(|f| f.uid.to_string()),
            Some("6f1d3c2a-0000-4000-8000-000000000001".to_owned())
        );
    }

    #[test]
    fn network_sets_from_config_and_records_longest_prefix_wins() -> TestResult {
        let mut settings = EnrichSettings::default();
        settings.network_sets.insert(
            "stripe".into(),
            vec!["54.187.0.0/16".into(), "2600:1f00::/24".into()],
        );
        settings
            .network_sets
            .insert("aws".into(), vec!["54.0.0.0/8".into()]);
        let mut enricher = Enricher::with_settings(IdentityTable::default(), &settings)
            .map_err(|(field, e)| format!("{field}: {e}"))?;
        enricher.table_mut().apply(&IdentityRecord {
            cluster_id: "c1".into(),
            kind: IdentityKind::NetworkSet,
            uid: "ns-1".into(),
            namespace: Some("shop".into()),
            name: "stripe-webhooks".into(),
            cidrs: vec!["54.187.200.0/24".into(), "not-a-cidr".into()],
            labels: [("role".to_owned(), "partner".to_owned())].into(),
            observed_at: ts(0),
            ..IdentityRecord::default()
        });
        let set = |name: &str, namespace: Option<&str>, labels: Labels| Endpoint {
            kind: EndpointKind::NetworkSet,
            namespace: namespace.map(str::to_owned),
            name: some(name),
            labels,
            network_set: some(name),
            status: EnrichmentStatus::Hit,
            ..Endpoint::default()
        };
        let dst = |e: &mut Enricher, cluster: &str, addr: &str| {
            e.enrich(flow(cluster, "10.0.0.1", addr, 1)).dst
        };
        assert_eq!(
            dst(&mut enricher, "c1", "54.187.3.4"),
            set("stripe", None, Labels::new())
        );
        assert_eq!(
            dst(&mut enricher, "c1", "54.9.9.9"),
            set("aws", None, Labels::new())
        );
        assert_eq!(
            dst(&mut enricher, "c1", "54.187.200.1"),
            set(
                "stripe-webhooks",
                Some("shop"),
                [("role".to_owned(), "partner".to_owned())].into()
            )
        );
        // The record's set is c1's only.
        assert_eq!(
            dst(&mut enricher, "c2", "54.187.200.1"),
            set("stripe", None, Labels::new())
        );
        assert_eq!(
            dst(&mut enricher, "c1", "2600:1f00::5"),
            set("stripe", None, Labels::new())
        );
        assert_eq!(
            dst(&mut enricher, "c1", "8.8.8.8").kind,
            EndpointKind::ExternalPublic
        );
        assert_eq!(
            enricher.table().stats().ignored,
            1,
            "the bad CIDR is counted"
        );
        // Deleting the record removes its CIDRs.
        enricher.table_mut().apply(&IdentityRecord {
            cluster_id: "c1".into(),
            kind: IdentityKind::NetworkSet,
            uid: "ns-1".into(),
            namespace: Some("shop".into()),
            name: "stripe-webhooks".into(),
            deleted_at: Some(ts(2)),
            ..IdentityRecord::default()
        });
        assert_eq!(
            dst(&mut enricher, "c1", "54.187.200.1"),
            set("stripe", None, Labels::new())
        );
        Ok(())
    }

    #[test]
    fn dns_answers_name_later_external_flows_of_the_same_cluster() {
        let mut enricher = enricher(&[pod("c1", "web-0", "10.0.0.5", 0)]);
        let mut answer = flow("c1", "10.0.0.5", "10.96.0.10", 10);
        answer.dns = Some(DnsObservation {
            query: "api.stripe.com.".into(),
            ips: ips(&["54.187.3.4"]),
            ttl: Some(60),
        });
        enricher.enrich(answer);
        let mut egress = flow("c1", "10.0.0.5", "54.187.3.4", 20);
        egress.dst_dns_names = vec!["stripe-proxy.example".into()];
        let enriched = enricher.enrich(egress);
        assert_eq!(
            enriched.dst,
            Endpoint {
                kind: EndpointKind::ExternalPublic,
                aggregated_name: some("pub"),
                dns_names: vec!["stripe-proxy.example".into(), "api.stripe.com".into()],
                status: EnrichmentStatus::Miss,
                ..Endpoint::default()
            }
        );
        // Another cluster learned nothing; past TTL + grace (60 s + 5 min) the name is gone.
        let other = enricher.enrich(flow("c2", "10.0.0.5", "54.187.3.4", 20));
        assert!(other.dst.dns_names.is_empty());
        let expired = enricher.enrich(flow("c1", "10.0.0.5", "54.187.3.4", 10 + 60 + 301));
        assert!(expired.dst.dns_names.is_empty());
        let kept = enricher.enrich(flow("c1", "10.0.0.5", "54.187.3.4", 10 + 60 + 300));
        assert_eq!(kept.dst.dns_names, vec!["api.stripe.com".to_owned()]);
        // Pods are named by the table, not by DNS.
        assert!(kept.src.dns_names.is_empty());
    }

    #[test]
    fn a_finished_pod_releases_its_address_at_the_record_time() {
        let a = pod("c1", "job-0", "10.0.0.7", 0);
        let finished = IdentityRecord {
            ips: Vec::new(),
            observed_at: ts(50),
            ..a.clone()
        };
        let mut enricher = enricher(&[a, finished]);
        let at = |e: &mut Enricher, t| e.enrich(flow("c1", "10.0.0.7", "8.8.8.8", t)).src.status;
        assert_eq!(at(&mut enricher, 49), EnrichmentStatus::Hit);
        assert_eq!(at(&mut enricher, 50), EnrichmentStatus::Stale);
        // A deletion is final: an older state arriving late does not revive the pod.
        let mut enricher = enricher_after_delete();
        assert_eq!(at(&mut enricher, 200), EnrichmentStatus::Stale);
        assert_eq!(enricher.table().stats().ignored, 1);
    }

    fn enricher_after_delete() -> Enricher {
        let a = pod("c1", "job-0", "10.0.0.7", 0);
        enricher(&[deleted(a.clone(), 100), a])
    }
}
