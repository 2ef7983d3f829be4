//! The identity crate's metrics, all in one place (described at start-up by [`describe`]).
//!
//! Counted by the Kubernetes watch ([`crate::watch`]), the `k8s.identity` reader
//! ([`crate::identity_topic`]) and the publisher ([`crate::publisher`]). The first three
//! names keep their `flowlake_enrich_` prefix: enrich runs these sources in its own process
//! and dashboards and alerts already use the names. Labels are bounded (kind, change,
//! outcome, watched resource).

/// Records read from the identity topic, by outcome (`applied`, `tombstone`, `invalid`).
pub const TOPIC_RECORDS: &str = "flowlake_enrich_identity_topic_records_total";
/// Records produced by a Kubernetes watch, by kind (`pod`, `service`, …) and change
/// (`upsert`, `delete`).
pub const WATCH_RECORDS: &str = "flowlake_enrich_identity_watch_records_total";
/// Kubernetes watch errors (the watch retries with backoff), by watched resource.
pub const WATCH_ERRORS: &str = "flowlake_enrich_identity_watch_errors_total";

/// Records and tombstones the identity publisher produced, by change (`upsert`, `delete`,
/// `tombstone`).
pub const PUBLISHED_RECORDS: &str = "flowlake_identity_publisher_records_total";

/// Describes the identity-source metrics (once, at start-up).
pub fn describe() {
    metrics::describe_counter!(
        PUBLISHED_RECORDS,
        "Identity records and tombstones the publisher produced, by change"
    );
    metrics::describe_counter!(
        TOPIC_RECORDS,
        "Identity records read from the identity topic, by outcome"
    );
    metrics::describe_counter!(
        WATCH_RECORDS,
        "Identity records produced by the Kubernetes watch, by kind and change"
    );
    metrics::describe_counter!(
        WATCH_ERRORS,
        "Kubernetes watch errors, by resource; the watch retries with backoff"
    );
}
