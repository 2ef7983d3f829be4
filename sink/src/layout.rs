//! Object names in the lake: Hive layout, deterministic.
//!
//! ```text
//! {root}/{dataset}/cluster_id={cluster}/date=YYYY-MM-DD/hour=HH/part-{topic}-{partition}-{first_offset:020}.parquet
//! ```
//!
//! `date` and `hour` are the UTC hour of the record's event time (a flow's `start_time`, an
//! edge's `window_start`). An object is named by the input coordinates of its first record,
//! so a replay after a crash, which re-reads the same input in the same order, produces the
//! same names and overwrites objects instead of adding duplicates.
//!
//! Escaping: a `cluster_id` is free text, but a path segment must not contain `/` (a new
//! directory) or `=` (Hive's key/value separator), and object stores and file systems treat
//! many other bytes specially. Every byte of a partition value other than ASCII letters,
//! digits, `-`, `_` and `.` is written as `%XX` (uppercase hex, UTF-8 bytes for non-ASCII),
//! which is the URI encoding that Hive, Spark, Trino, pyarrow and DuckDB decode back into
//! the value. An empty value is written as `__HIVE_DEFAULT_PARTITION__`, Hive's marker for
//! a null partition value. Ordinary cluster ids (`prod-eu-1`) are left as they are.

use chrono::{DateTime, Timelike};
use flowlake_schemas::Timestamp;
use object_store::path::{Path, PathPart};

use crate::columns::Dataset;

/// Hive's name for a null or empty partition value.
const HIVE_DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// First microsecond of year 0000 and last of year 9999: the `date=YYYY-MM-DD` range.
const MIN_PARTITION_MICROS: i64 = -62_167_219_200_000_000;
const MAX_PARTITION_MICROS: i64 = 253_402_300_799_999_999;

/// Why a record has no place in the layout.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    /// The event time is outside years 0000–9999 and cannot name a `date=` partition.
    #[error("event time {micros} µs since the epoch is outside years 0000-9999")]
    TimeOutOfRange {
        /// The event time in microseconds since the epoch.
        micros: i64,
    },
}

/// The Hive partition of a record: cluster and UTC hour.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HivePartition {
    cluster_id: String,
    /// Hours since the Unix epoch (floor), so that comparing partitions is cheap.
    hour: i64,
}

impl HivePartition {
    /// The partition of a record of `cluster_id` whose event time is `time`.
    pub fn new(cluster_id: &str, time: Timestamp) -> Result<Self, LayoutError> {
        let hour = hour_of(time)?;
        Ok(HivePartition {
            cluster_id: cluster_id.to_owned(),
            hour,
        })
    }

    /// True when a record of `cluster_id` at `time` belongs here (no allocation).
    pub fn contains(&self, cluster_id: &str, time: Timestamp) -> bool {
        self.hour == time.as_micros().div_euclid(MICROS_PER_HOUR) && self.cluster_id == cluster_id
    }

    /// The cluster.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The `cluster_id=…/date=…/hour=…` segments.
    fn segments(&self) -> [String; 3] {
        let start = DateTime::from_timestamp_micros(self.hour * MICROS_PER_HOUR);
        // Invariant: `hour` comes from a time checked by `hour_of` to be within chrono's range.
        let (date, hour) = start.map_or_else(
            || ("0000-01-01".to_owned(), 0),
            |t| (t.date_naive().format("%Y-%m-%d").to_string(), t.hour()),
        );
        [
            format!("cluster_id={}", escape_partition_value(&self.cluster_id)),
            format!("date={date}"),
            format!("hour={hour:02}"),
        ]
    }
}

/// The UTC hour (hours since the epoch) of `time`, checked to be in the layout's range.
pub fn hour_of(time: Timestamp) -> Result<i64, LayoutError> {
    let micros = time.as_micros();
    if (MIN_PARTITION_MICROS..=MAX_PARTITION_MICROS).contains(&micros) {
        Ok(micros.div_euclid(MICROS_PER_HOUR))
    } else {
        Err(LayoutError::TimeOutOfRange { micros })
    }
}

/// Where the object of a buffer goes: `root/dataset/cluster_id=…/date=…/hour=…/part-….parquet`.
pub fn object_path(
    root: &Path,
    dataset: Dataset,
    partition: &HivePartition,
    topic: &str,
    input_partition: i32,
    first_offset: i64,
) -> Path {
    let [cluster, date, hour] = partition.segments();
    let file = format!(
        "part-{}-{input_partition}-{first_offset:020}.parquet",
        escape_partition_value(topic)
    );
    let segments = [dataset.name().to_owned(), cluster, date, hour, file];
    // Every segment is made of `[A-Za-z0-9._%=-]` and starts with a letter, so it is a
    // valid path part as it is; `PathPart::parse` keeps it verbatim (`From` would escape
    // the `%` a second time).
    let parts = segments
        .iter()
        .map(|s| PathPart::parse(s).unwrap_or_else(|_| PathPart::from(s.as_str())));
    Path::from_iter(root.parts().chain(parts))
}

/// Percent-encodes every byte of `value` other than ASCII letters, digits, `-`, `_`, `.`;
/// an empty value becomes Hive's `__HIVE_DEFAULT_PARTITION__`.
pub fn escape_partition_value(value: &str) -> String {
    if value.is_empty() {
        return HIVE_DEFAULT_PARTITION.to_owned();
    }
    let mut escaped = String::with_capacity(value.len());
    for &byte in value.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.') {
            escaped.push(char::from(byte));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            escaped.push('%');
            escaped.push(char::from(HEX[usize::from(byte >> 4)]));
            escaped.push(char::from(HEX[usize::from(byte & 0xF)]));
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(dataset: Dataset, cluster: &str, time: Timestamp, offset: i64) -> String {
        let partition = match HivePartition::new(cluster, time) {
            Ok(p) => p,
            Err(e) => return format!("error: {e}"),
        };
        object_path(
            &Path::from("lake/prefix"),
            dataset,
            &partition,
            "flows.enriched",
            3,
            offset,
        )
        .to_string()
    }

    #[test]
    fn exact_object_paths() {
        // 2023-11-14T22:13:20.123456Z
        let t = Timestamp::from_micros(1_700_000_000_123_456);
        assert_eq!(
            path(Dataset::Flows, "prod-eu-1", t, 42),
            "lake/prefix/flows/cluster_id=prod-eu-1/date=2023-11-14/hour=22/part-flows.enriched-3-00000000000000000042.parquet"
        );
        assert_eq!(
            path(Dataset::Edges, "prod-eu-1", t, i64::MAX),
            "lake/prefix/edges/cluster_id=prod-eu-1/date=2023-11-14/hour=22/part-flows.enriched-3-09223372036854775807.parquet"
        );
        let at_root = object_path(
            &Path::default(),
            Dataset::Flows,
            &HivePartition {
                cluster_id: "c".into(),
                hour: 0,
            },
            "t",
            0,
            0,
        );
        assert_eq!(
            at_root.to_string(),
            "flows/cluster_id=c/date=1970-01-01/hour=00/part-t-0-00000000000000000000.parquet"
        );
    }

    #[test]
    fn hour_boundary() {
        // 2023-11-14T22:59:59.999999Z and 23:00:00Z; 23:59:59.999999 and the next day.
        let last_of_22 = Timestamp::from_micros(1_700_002_799_999_999);
        let first_of_23 = Timestamp::from_micros(1_700_002_800_000_000);
        let first_of_15th = Timestamp::from_micros(1_700_006_400_000_000);
        assert!(path(Dataset::Flows, "c", last_of_22, 1).contains("/date=2023-11-14/hour=22/"));
        assert!(path(Dataset::Flows, "c", first_of_23, 1).contains("/date=2023-11-14/hour=23/"));
        assert!(
            path(
                Dataset::Flows,
                "c",
                Timestamp::from_micros(1_700_006_399_999_999),
                1
            )
            .contains("/date=2023-11-14/hour=23/")
        );
        assert!(path(Dataset::Flows, "c", first_of_15th, 1).contains("/date=2023-11-15/hour=00/"));
        // Before the epoch, hours floor towards the past.
        assert!(
            path(Dataset::Flows, "c", Timestamp::from_micros(-1), 1)
                .contains("/date=1969-12-31/hour=23/")
        );

        let partition = HivePartition::new("c", last_of_22);
        assert!(
            partition
                .as_ref()
                .is_ok_and(|p| p.contains("c", last_of_22))
        );
        assert!(
            partition
                .as_ref()
                .is_ok_and(|p| !p.contains("c", first_of_23))
        );
        assert!(
            partition
                .as_ref()
                .is_ok_and(|p| !p.contains("d", last_of_22))
        );
    }

    #[test]
    fn partition_values_are_escaped() {
        let t = Timestamp::from_secs(0);
        assert_eq!(escape_partition_value("prod-eu_1.x"), "prod-eu_1.x");
        assert_eq!(escape_partition_value("a/b=c"), "a%2Fb%3Dc");
        assert_eq!(escape_partition_value("tab\there\n"), "tab%09here%0A");
        assert_eq!(escape_partition_value("50% off"), "50%25%20off");
        assert_eq!(escape_partition_value("zürich"), "z%C3%BCrich");
        assert_eq!(escape_partition_value(".."), "..");
        assert_eq!(escape_partition_value(""), "__HIVE_DEFAULT_PARTITION__");
        assert_eq!(
            path(Dataset::Flows, "eu/west=1", t, 7),
            "lake/prefix/flows/cluster_id=eu%2Fwest%3D1/date=1970-01-01/hour=00/part-flows.enriched-3-00000000000000000007.parquet"
        );
        assert_eq!(
            path(Dataset::Flows, "", t, 7),
            "lake/prefix/flows/cluster_id=__HIVE_DEFAULT_PARTITION__/date=1970-01-01/hour=00/part-flows.enriched-3-00000000000000000007.parquet"
        );
    }

    #[test]
    fn times_outside_the_date_range_are_refused() {
        assert_eq!(
            HivePartition::new("c", Timestamp::from_micros(i64::MAX)),
            Err(LayoutError::TimeOutOfRange { micros: i64::MAX })
        );
        assert!(HivePartition::new("c", Timestamp::from_micros(MAX_PARTITION_MICROS)).is_ok());
        assert!(HivePartition::new("c", Timestamp::from_micros(MIN_PARTITION_MICROS)).is_ok());
        assert!(HivePartition::new("c", Timestamp::from_micros(MIN_PARTITION_MICROS - 1)).is_err());
        assert_eq!(
            path(
                Dataset::Flows,
                "c",
                Timestamp::from_micros(MAX_PARTITION_MICROS),
                0
            ),
            "lake/prefix/flows/cluster_id=c/date=9999-12-31/hour=23/part-flows.enriched-3-00000000000000000000.parquet"
        );
    }

    /// What Hive-aware readers do with a partition value: `%XX` back to bytes.
    fn unescape(escaped: &str) -> Option<String> {
        let bytes = escaped.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = escaped.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).ok()
    }

    proptest::proptest! {
        /// Any cluster id makes one safe path segment that decodes back to itself.
        #[test]
        fn escaping_round_trips(value in "\\PC*|[/=% a-z\\x00-\\x1f]*") {
            let escaped = escape_partition_value(&value);
            proptest::prop_assert!(escaped
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'%')));
            if value.is_empty() {
                proptest::prop_assert_eq!(escaped, HIVE_DEFAULT_PARTITION);
            } else {
                proptest::prop_assert_eq!(unescape(&escaped), Some(value));
            }
        }
    }
}
