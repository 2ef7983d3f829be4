//! Calico's network sets from the API: `NetworkSet` (namespaced) and `GlobalNetworkSet`
//! (cluster) of `crd.projectcalico.org/v1`, read through kube's dynamic API because no
//! typed bindings exist for them.
//!
//! They are CRDs, installed only where Calico runs. Before watching one, [`installed`]
//! lists it once: a `404` means the CRD is absent, which is logged once at info and the
//! resource is skipped for the life of the watch (it counts as listed, so it never holds
//! readiness back). Any other answer starts the watch, whose errors are retried like the
//! built-in resources'. A CRD installed after start-up is picked up at the next restart.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::{Api, Client};

use crate::watch::resource::{CALICO_GROUP, Resource};
/// The CRDs' version.
const VERSION: &str = "v1";

/// The dynamic API description of a Calico resource; `None` for the built-in ones.
pub fn api_resource(resource: Resource) -> Option<ApiResource> {
    let kind = match resource {
        Resource::NetworkSets => "NetworkSet",
        Resource::GlobalNetworkSets => "GlobalNetworkSet",
        _ => return None,
    };
    let gvk = GroupVersionKind::gvk(CALICO_GROUP, VERSION, kind);
    Some(ApiResource::from_gvk_with_plural(&gvk, resource.plural()))
}

/// All objects of `resource` in every namespace (cluster-scoped ones have none).
pub fn api(client: &Client, resource: &ApiResource) -> Api<DynamicObject> {
    Api::all_with(client.clone(), resource)
}

/// False when the API does not serve `resource` (its CRD is not installed). Any other
/// failure answers true: the watch then retries it with backoff.
pub async fn installed(client: &Client, resource: Resource, api_resource: &ApiResource) -> bool {
    match api(client, api_resource)
        .list(&ListParams::default().limit(1))
        .await
    {
        Err(kube::Error::Api(status)) if status.code == 404 => {
            tracing::info!(
                resource = resource.plural(),
                group = CALICO_GROUP,
                "calico crd not installed; not watching it"
            );
            false
        }
        _ => true,
    }
}
