//! Writing a resolved endpoint: [`Resolved`] is one end of a flow as the enricher found
//! it — a table entry borrowed from the identity table, or an owned endpoint — and is
//! written either as an owned [`Endpoint`] or straight into the output record as Avro,
//! field for field the same.

use flowlake_schemas::binary::AvroBinary;
use flowlake_schemas::{Endpoint, EndpointKind, EndpointRef, EnrichmentStatus, Labels};

use crate::table::{Found, Identity};

/// One end of a flow, resolved.
// Two live on the stack for one flow at a time; boxing the owned endpoint would only add
// an allocation to the path that already allocates.
#[allow(clippy::large_enum_variant)]
pub(super) enum Resolved<'a> {
    /// The table's entry for the address (`hit`, or `stale`), borrowed.
    Table {
        found: Found<'a>,
        /// The Service the agent's hint names (namespace, name), when the entry is not
        /// one: a pod reached through a Service (the table maps addresses, the agent saw
        /// the Service).
        service: Option<(Option<&'a str>, &'a str)>,
        /// The agent's DNS names for the address (destination only).
        dns_names: &'a [String],
    },
    /// Anything else, built as an owned endpoint (hints, network sets, external addresses).
    Owned(Endpoint),
}

impl<'a> Resolved<'a> {
    /// A table hit, with the Service the agent named unless the address is a Service's.
    pub(super) fn hit(found: Found<'a>, service: Option<(Option<&'a str>, &'a str)>) -> Self {
        let service = service.filter(|_| !matches!(found.identity, Identity::Service(_)));
        Resolved::Table {
            found,
            service,
            dns_names: &[],
        }
    }

    pub(super) fn status(&self) -> EnrichmentStatus {
        match self {
            Resolved::Table { found, .. } => found.status,
            Resolved::Owned(endpoint) => endpoint.status,
        }
    }

    pub(super) fn into_endpoint(self) -> Endpoint {
        match self {
            Resolved::Table {
                found,
                service,
                dns_names,
            } => {
                let mut endpoint = table_endpoint(&found);
                if let Some((namespace, name)) = service {
                    endpoint.service_namespace = namespace.map(str::to_owned);
                    endpoint.service_name = Some(name.to_owned());
                }
                endpoint.dns_names = dns_names.to_vec();
                endpoint
            }
            Resolved::Owned(endpoint) => endpoint,
        }
    }

    /// The endpoint's Avro, field for field what [`Self::into_endpoint`]'s would be.
    pub(super) fn write_avro(&self, out: &mut Vec<u8>) {
        let (found, service, dns_names) = match self {
            Resolved::Owned(endpoint) => return endpoint.write_avro(out),
            Resolved::Table {
                found,
                service,
                dns_names,
            } => (found, service, dns_names),
        };
        let (service_namespace, service_name) = match service {
            Some((namespace, name)) => (*namespace, Some(*name)),
            None => (None, None),
        };
        let common = EndpointRef {
            service_namespace,
            service_name,
            dns_names,
            status: found.status,
            ..EndpointRef::default()
        };
        match found.identity {
            Identity::Pod(pod) => found.uid.with_text(|uid| {
                EndpointRef {
                    kind: EndpointKind::Pod,
                    namespace: Some(&pod.workload.namespace),
                    name: Some(pod.name.as_str()),
                    pod_uid: Some(uid),
                    workload_kind: Some(&pod.workload.kind),
                    workload_name: Some(&pod.workload.name),
                    service_account: pod.workload.service_account.as_deref(),
                    labels: &pod.labels,
                    node: pod.node.as_deref(),
                    ..common
                }
                .write_avro(out)
            }),
            Identity::Node(node) => EndpointRef {
                kind: EndpointKind::Node,
                name: Some(&node.name),
                labels: &node.labels,
                ..common
            }
            .write_avro(out),
            Identity::Service(service) => EndpointRef {
                kind: EndpointKind::Service,
                namespace: Some(&service.namespace),
                name: Some(&service.name),
                service_namespace: Some(&service.namespace),
                service_name: Some(&service.name),
                ..common
            }
            .write_avro(out),
        }
    }
}

/// The identity of a table entry, `hit` or `stale` as the table found it.
fn table_endpoint(found: &Found<'_>) -> Endpoint {
    let status = found.status;
    match found.identity {
        Identity::Pod(pod) => Endpoint {
            kind: EndpointKind::Pod,
            namespace: Some(pod.workload.namespace.to_string()),
            name: Some(pod.name.to_string()),
            pod_uid: Some(found.uid.to_string()),
            workload_kind: Some(pod.workload.kind.to_string()),
            workload_name: Some(pod.workload.name.to_string()),
            service_account: pod.workload.service_account.as_deref().map(str::to_owned),
            labels: Labels::clone(&pod.labels),
            node: pod.node.as_deref().map(str::to_owned),
            status,
            ..Endpoint::default()
        },
        Identity::Node(node) => Endpoint {
            kind: EndpointKind::Node,
            name: Some(node.name.to_string()),
            labels: Labels::clone(&node.labels),
            status,
            ..Endpoint::default()
        },
        Identity::Service(service) => Endpoint {
            kind: EndpointKind::Service,
            namespace: Some(service.namespace.to_string()),
            name: Some(service.name.to_string()),
            service_namespace: Some(service.namespace.to_string()),
            service_name: Some(service.name.to_string()),
            status,
            ..Endpoint::default()
        },
    }
}
