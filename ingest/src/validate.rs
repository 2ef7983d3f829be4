//! Checks every decoded record must pass, whatever its format, before it is produced.
//!
//! Invariant: a `FlowEvent` that leaves ingest names its cluster and its start, spans a
//! non-negative interval that does not start unreasonably far in the future, carries ports
//! and protocol numbers that exist, and has no negative counter. Downstream stages rely on
//! this and do not check again. Each failure is a rejection whose class says which rule
//! broke and whose message names the field and the value.

use std::time::Duration;

use flowlake_runtime::Rejection;
use flowlake_schemas::{FlowEvent, Timestamp};

use crate::reject;

/// Rejects a message before decoding: empty, or larger than `max_message_bytes`.
pub fn check_message(payload: &[u8], max_message_bytes: usize) -> Result<(), Rejection> {
    if payload.is_empty() {
        return Err(Rejection::new(reject::EMPTY_MESSAGE, "message is empty"));
    }
    if payload.len() > max_message_bytes {
        return Err(Rejection::new(
            reject::MESSAGE_TOO_LARGE,
            format!(
                "message is {} bytes, more than ingest.max_message_bytes ({max_message_bytes})",
                payload.len()
            ),
        ));
    }
    Ok(())
}

/// Checks a decoded record. `now` is the reference for `max_future_skew`.
///
/// A `start_time` of exactly the Unix epoch counts as missing: it is what an absent time
/// decodes to, and no agent reports flows from 1970-01-01T00:00:00Z.
pub fn check_event(
    event: &FlowEvent,
    max_future_skew: Duration,
    now: Timestamp,
) -> Result<(), Rejection> {
    if event.cluster_id.is_empty() {
        return Err(Rejection::new(
            reject::MISSING_FIELD,
            "`cluster_id`: the record names no cluster and no default cluster_id is configured",
        ));
    }
    if event.event_id.is_empty() {
        return Err(Rejection::new(reject::MISSING_FIELD, "`event_id` is empty"));
    }
    if event.start_time == Timestamp::EPOCH {
        return Err(Rejection::new(
            reject::MISSING_FIELD,
            "`start_time` is missing",
        ));
    }
    // No flow log predates 1970: a negative time is a clock or unit error. Rejecting it also
    // keeps canonical JSON and Avro in agreement (JSON reads an epoch `end_time` as absent).
    if event.start_time < Timestamp::EPOCH {
        return Err(Rejection::new(
            reject::INVALID_TIME,
            format!("`start_time` {} is before 1970-01-01", event.start_time),
        ));
    }
    for (field, port) in [("src_port", event.src_port), ("dst_port", event.dst_port)] {
        if let Some(port) = port.filter(|p| !(0..=65_535).contains(p)) {
            return Err(Rejection::new(
                reject::INVALID_PORT,
                format!("`{field}`: {port} is outside 0..=65535"),
            ));
        }
    }
    if let Some(protocol) = event.protocol.filter(|p| !(0..=255).contains(p)) {
        return Err(Rejection::new(
            reject::INVALID_PROTOCOL,
            format!("`protocol`: {protocol} is outside 0..=255"),
        ));
    }
    if event.end_time < event.start_time {
        return Err(Rejection::new(
            reject::INVALID_TIME,
            format!(
                "`end_time` {} is before `start_time` {}",
                event.end_time, event.start_time
            ),
        ));
    }
    let skew_micros = i64::try_from(max_future_skew.as_micros()).unwrap_or(i64::MAX);
    let latest = Timestamp(now.0.saturating_add(skew_micros));
    if event.start_time > latest {
        return Err(Rejection::new(
            reject::FUTURE_TIME,
            format!(
                "`start_time` {} is more than {} after {now} (ingest.max_future_skew)",
                event.start_time,
                humantime_serde::re::humantime::format_duration(max_future_skew)
            ),
        ));
    }
    let counters = [
        ("bytes_out", event.bytes_out),
        ("bytes_in", event.bytes_in),
        ("packets_out", event.packets_out),
        ("packets_in", event.packets_in),
        ("connections_started", event.connections_started),
        ("connections_completed", event.connections_completed),
        ("connections_live", event.connections_live),
    ];
    if let Some((field, value)) = counters.into_iter().find(|(_, v)| *v < 0) {
        return Err(Rejection::new(
            reject::NEGATIVE_COUNTER,
            format!("`{field}`: {value} is negative"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowlake_schemas::samples;

    const NOW: Timestamp = Timestamp(1_700_000_000_000_000);
    const SKEW: Duration = Duration::from_secs(600);

    fn rejection(event: &FlowEvent) -> Option<(&'static str, String)> {
        check_event(event, SKEW, NOW)
            .err()
            .map(|r| (r.class, r.message))
    }

    fn valid() -> FlowEvent {
        samples::flow_event()
    }

    #[test]
    fn sample_is_valid() {
        assert_eq!(rejection(&valid()), None);
    }

    #[test]
    fn message_size() {
        assert_eq!(
            check_message(b"", 10).map_err(|r| r.class),
            Err(reject::EMPTY_MESSAGE)
        );
        assert_eq!(check_message(b"0123456789", 10), Ok(()));
        assert_eq!(
            check_message(b"0123456789x", 10).map_err(|r| (r.class, r.message)),
            Err((
                reject::MESSAGE_TOO_LARGE,
                "message is 11 bytes, more than ingest.max_message_bytes (10)".to_owned()
            ))
        );
    }

    #[test]
    fn each_rule_has_its_class_and_names_the_field() {
        let cases: Vec<(FlowEvent, &str, &str)> = vec![
            (
                FlowEvent {
                    cluster_id: String::new(),
                    ..valid()
                },
                reject::MISSING_FIELD,
                "`cluster_id`: the record names no cluster and no default cluster_id is configured",
            ),
            (
                FlowEvent {
                    start_time: Timestamp::EPOCH,
                    ..valid()
                },
                reject::MISSING_FIELD,
                "`start_time` is missing",
            ),
            (
                // Fuzz finding F1: accepted before, and read back differently from JSON.
                FlowEvent {
                    start_time: Timestamp::from_micros(-34),
                    end_time: Timestamp::EPOCH,
                    ..valid()
                },
                reject::INVALID_TIME,
                "`start_time` 1969-12-31T23:59:59.999966Z is before 1970-01-01",
            ),
            (
                FlowEvent {
                    dst_port: Some(65_536),
                    ..valid()
                },
                reject::INVALID_PORT,
                "`dst_port`: 65536 is outside 0..=65535",
            ),
            (
                FlowEvent {
                    src_port: Some(-1),
                    ..valid()
                },
                reject::INVALID_PORT,
                "`src_port`: -1 is outside 0..=65535",
            ),
            (
                FlowEvent {
                    protocol: Some(256),
                    ..valid()
                },
                reject::INVALID_PROTOCOL,
                "`protocol`: 256 is outside 0..=255",
            ),
            (
                FlowEvent {
                    end_time: Timestamp(valid().start_time.0 - 1),
                    ..valid()
                },
                reject::INVALID_TIME,
                "`end_time` 2023-11-14T22:13:20.123455Z is before `start_time` 2023-11-14T22:13:20.123456Z",
            ),
            (
                FlowEvent {
                    start_time: Timestamp(NOW.0 + 600_000_001),
                    end_time: Timestamp(NOW.0 + 600_000_001),
                    ..valid()
                },
                reject::FUTURE_TIME,
                "`start_time` 2023-11-14T22:23:20.000001Z is more than 10m after \
                 2023-11-14T22:13:20.000000Z (ingest.max_future_skew)",
            ),
            (
                FlowEvent {
                    packets_in: -3,
                    ..valid()
                },
                reject::NEGATIVE_COUNTER,
                "`packets_in`: -3 is negative",
            ),
            (
                FlowEvent {
                    connections_live: -1,
                    ..valid()
                },
                reject::NEGATIVE_COUNTER,
                "`connections_live`: -1 is negative",
            ),
        ];
        for (event, class, message) in cases {
            assert_eq!(rejection(&event), Some((class, message.to_owned())));
        }
    }

    #[test]
    fn boundaries_are_accepted() {
        let at_limit = Timestamp(NOW.0 + 600_000_000);
        let ok = [
            FlowEvent {
                src_port: Some(0),
                dst_port: Some(65_535),
                ..valid()
            },
            FlowEvent {
                start_time: at_limit,
                end_time: at_limit,
                ..valid()
            },
            FlowEvent {
                end_time: valid().start_time,
                ..valid()
            },
            FlowEvent {
                src_port: None,
                dst_port: None,
                protocol: None,
                ..valid()
            },
        ];
        for event in ok {
            assert_eq!(rejection(&event), None, "{event:?}");
        }
    }
}
