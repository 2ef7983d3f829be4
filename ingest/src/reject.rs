//! The rejection classes of ingest: every reason a raw message can end up in the dead-letter
//! topic instead of `flows.events`.
//!
//! A class is a short, stable identifier (a DLQ header and a metric label), so the set is
//! closed and listed in [`ALL`]; the human-readable [`Rejection::message`] carries the detail
//! (which field, which value). Renaming a class breaks users' alerts: add, never rename.
//!
//! [`Rejection::message`]: flowlake_runtime::Rejection::message

/// The message has no bytes (or is a tombstone).
pub const EMPTY_MESSAGE: &str = "empty_message";
/// The message is larger than `ingest.max_message_bytes`.
pub const MESSAGE_TOO_LARGE: &str = "message_too_large";
/// The message is not JSON (nor Avro), or is truncated JSON.
pub const NOT_JSON: &str = "not_json";
/// The message is JSON (or a pinned format name is unknown) but no known format matches.
pub const UNKNOWN_FORMAT: &str = "unknown_format";
/// The message is a Hubble response that carries no flow (lost events, agent events, ...).
pub const NOT_A_FLOW: &str = "not_a_flow";
/// A field has the wrong JSON type or an impossible value (the message names its path).
pub const INVALID_FIELD: &str = "invalid_field";
/// A canonical Avro message whose framing or datum does not decode.
pub const MALFORMED_AVRO: &str = "malformed_avro";
/// A required field is missing or empty.
pub const MISSING_FIELD: &str = "missing_field";
/// An address field is not an IPv4 or IPv6 address.
pub const INVALID_IP: &str = "invalid_ip";
/// A port is outside 0..=65535.
pub const INVALID_PORT: &str = "invalid_port";
/// A protocol number is outside 0..=255.
pub const INVALID_PROTOCOL: &str = "invalid_protocol";
/// A time does not parse, or the interval ends before it starts.
pub const INVALID_TIME: &str = "invalid_time";
/// The flow starts further in the future than `ingest.max_future_skew` allows.
pub const FUTURE_TIME: &str = "future_time";
/// A byte, packet or connection counter is negative.
pub const NEGATIVE_COUNTER: &str = "negative_counter";
/// Canonical Avro framed in a way flowlake does not read: the schema id travels in a
/// Kafka header (`__value_schema_id` / `__key_schema_id`) instead of the payload.
pub const UNSUPPORTED_FRAMING: &str = "unsupported_framing";
/// The Schema Registry has no schema under a Confluent schema id, or the schema there is
/// not a `flowlake.FlowEvent` (the message names the id and what was found).
pub const UNKNOWN_SCHEMA: &str = "unknown_schema";
/// The Schema Registry could not be asked (unreachable, timeout, error status). Not a
/// defect of the record: replay it from the DLQ once the registry answers.
pub const SCHEMA_REGISTRY_UNAVAILABLE: &str = "schema_registry_unavailable";

/// Every class, in a fixed order (metric handles are registered in this order).
pub const ALL: [&str; 17] = [
    EMPTY_MESSAGE,
    MESSAGE_TOO_LARGE,
    NOT_JSON,
    UNKNOWN_FORMAT,
    NOT_A_FLOW,
    INVALID_FIELD,
    MALFORMED_AVRO,
    MISSING_FIELD,
    INVALID_IP,
    INVALID_PORT,
    INVALID_PROTOCOL,
    INVALID_TIME,
    FUTURE_TIME,
    NEGATIVE_COUNTER,
    UNSUPPORTED_FRAMING,
    UNKNOWN_SCHEMA,
    SCHEMA_REGISTRY_UNAVAILABLE,
];

/// Position of `class` in [`ALL`]; None for a class ingest does not define.
pub fn index_of(class: &str) -> Option<usize> {
    ALL.iter().position(|c| *c == class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_distinct_snake_case_and_indexed() {
        for (i, class) in ALL.iter().enumerate() {
            assert_eq!(index_of(class), Some(i), "{class} listed twice");
            assert!(
                class.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{class} is not a snake_case metric label"
            );
        }
        assert_eq!(index_of("no_such_class"), None);
    }
}
