//! Settings of the aggregate stage (the `[aggregate]` table of its config file).
//!
//! Every field has a default chosen for the agents flowlake reads (Hubble streams flows as
//! they happen, NetObserv's eBPF agent evicts flows every few seconds, Calico's Goldmane
//! aggregates for 15 s), so a stage runs unconfigured. [`AggregateSettings::validate`] runs
//! at start-up and rejects combinations that cannot work, naming the dotted field.

use std::time::Duration;

use flowlake_runtime::ConfigError;
use serde::{Deserialize, Serialize};

use crate::budget::{DEFAULT_METRIC_MAX_SERIES, METRIC_MAX_SERIES_LIMIT};

/// One day: windows must tile it so that window boundaries fall on the same wall-clock
/// times every day (and match the sink's hourly/daily partitions).
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Upper bound of `max_distinct_src_pods`: keeps the per-edge set at most 32 KiB.
pub const MAX_DISTINCT_SRC_PODS_LIMIT: usize = 4096;

/// How the aggregate stage windows and closes flows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateSettings {
    /// Length of the tumbling event-time windows, aligned to the Unix epoch
    /// (e.g. `"1m"`). Must be at least 1 s and divide a day evenly.
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
    /// How far behind the newest start time seen on an input partition a flow may start
    /// and still be counted in its window's on-time edge (e.g. `"30s"`). Later flows are
    /// emitted as corrections (`revision` > 0), never dropped. Raise it to the agent's
    /// export interval when one agent reports much later than the others on the same
    /// partition (Calico Enterprise flow logs: `"5m"`).
    #[serde(default = "default_allowed_lateness", with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// A partition that receives nothing for this long (processing time) closes all its
    /// open windows, so a quiet cluster or a finite input still produces its edges.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Flows that start more than this far ahead of the stage's clock are rejected to the
    /// dead-letter topic (class `future_event`), so one node with a bad clock cannot drag
    /// a partition's watermark forward and make every other flow late.
    #[serde(default = "default_max_future_skew", with = "humantime_serde")]
    pub max_future_skew: Duration,
    /// Distinct source pods counted exactly per edge and window; beyond it
    /// `distinct_src_pods` is a lower bound. Bounds memory per edge.
    #[serde(default = "default_max_distinct_src_pods")]
    pub max_distinct_src_pods: usize,
    /// Label sets per business metric (`flowlake_denied_flows_total`,
    /// `flowlake_external_egress_flows_total`, `flowlake_external_egress_bytes_total`) that
    /// get their own series; the flows of further label sets are counted in their
    /// cluster's `other` series (see the `budget` module for which label sets win).
    #[serde(default = "default_metric_max_series")]
    pub metric_max_series: usize,
}

/// One minute: fine enough for dashboards and for "what talked to what" questions, coarse
/// enough that a busy edge is one row per minute rather than one per flow record.
fn default_window() -> Duration {
    Duration::from_secs(60)
}

/// 30 s: twice Goldmane's 15 s aggregation interval and several times NetObserv's 5 s
/// eviction and Hubble's streaming delay, so records of healthy agents that share a
/// partition arrive within it; anything later is a correction, not a loss. Longer values
/// only delay every edge by as much and hold more windows in memory.
fn default_allowed_lateness() -> Duration {
    Duration::from_secs(30)
}

/// 30 s: longer than the slowest regular export interval of the streaming agents (15 s),
/// so a partition is not declared idle between two exports, and short enough that a quiet
/// cluster's last window shows up within about a minute.
fn default_idle_timeout() -> Duration {
    Duration::from_secs(30)
}

/// 10 min: NTP-synchronised nodes differ by milliseconds; ten minutes tolerates a badly
/// drifting node while bounding how far a wrong clock can push a watermark ahead.
fn default_max_future_skew() -> Duration {
    Duration::from_secs(10 * 60)
}

/// 64: exact for the replica counts of nearly all workloads; at most 512 bytes of 64-bit
/// pod hashes per edge and window.
fn default_max_distinct_src_pods() -> usize {
    64
}

/// [`DEFAULT_METRIC_MAX_SERIES`]; its doc says where the number comes from.
fn default_metric_max_series() -> usize {
    DEFAULT_METRIC_MAX_SERIES
}

impl Default for AggregateSettings {
    fn default() -> Self {
        AggregateSettings {
            window: default_window(),
            allowed_lateness: default_allowed_lateness(),
            idle_timeout: default_idle_timeout(),
            max_future_skew: default_max_future_skew(),
            max_distinct_src_pods: default_max_distinct_src_pods(),
            metric_max_series: default_metric_max_series(),
        }
    }
}

impl AggregateSettings {
    /// Checks the rules serde cannot: ranges and the window tiling a day.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.window < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "aggregate.window",
                format!(
                    "{} is shorter than the minimum of 1s",
                    humantime_serde::re::humantime::format_duration(self.window)
                ),
            ));
        }
        if !DAY.as_micros().is_multiple_of(self.window.as_micros()) {
            return Err(ConfigError::invalid(
                "aggregate.window",
                format!(
                    "{} does not divide a day evenly; use e.g. 10s, 1m, 5m, 15m or 1h",
                    humantime_serde::re::humantime::format_duration(self.window)
                ),
            ));
        }
        if self.allowed_lateness >= DAY {
            return Err(ConfigError::invalid(
                "aggregate.allowed_lateness",
                "must be shorter than 24h (windows are held in memory that long)",
            ));
        }
        if self.idle_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "aggregate.idle_timeout",
                "must be greater than 0 (it would close every window after each batch)",
            ));
        }
        if self.max_future_skew.is_zero() || self.max_future_skew > DAY {
            return Err(ConfigError::invalid(
                "aggregate.max_future_skew",
                "must be greater than 0 and at most 24h",
            ));
        }
        if self.max_distinct_src_pods == 0
            || self.max_distinct_src_pods > MAX_DISTINCT_SRC_PODS_LIMIT
        {
            return Err(ConfigError::invalid(
                "aggregate.max_distinct_src_pods",
                format!("must be between 1 and {MAX_DISTINCT_SRC_PODS_LIMIT}"),
            ));
        }
        if self.metric_max_series == 0 || self.metric_max_series > METRIC_MAX_SERIES_LIMIT {
            return Err(ConfigError::invalid(
                "aggregate.metric_max_series",
                format!("must be between 1 and {METRIC_MAX_SERIES_LIMIT}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(error: ConfigError) -> String {
        match error {
            ConfigError::Invalid { field, .. } => field,
            other => format!("unexpected error {other}"),
        }
    }

    #[test]
    fn defaults_are_valid() -> Result<(), ConfigError> {
        AggregateSettings::default().validate()
    }

    #[test]
    fn parses_humantime_and_fills_defaults() -> Result<(), toml::de::Error> {
        let settings: AggregateSettings =
            toml::from_str("window = \"5m\"\nallowed_lateness = \"2m 30s\"\n")?;
        assert_eq!(settings.window, Duration::from_secs(300));
        assert_eq!(settings.allowed_lateness, Duration::from_secs(150));
        assert_eq!(settings.idle_timeout, default_idle_timeout());
        assert_eq!(settings.max_distinct_src_pods, 64);
        assert_eq!(settings.metric_max_series, DEFAULT_METRIC_MAX_SERIES);
        Ok(())
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let result = toml::from_str::<AggregateSettings>("windw = \"5m\"\n");
        assert!(result.is_err_and(|e| e.to_string().contains("windw")));
    }

    #[test]
    fn each_invalid_field_is_named() {
        let cases: [(&str, AggregateSettings); 9] = [
            (
                "aggregate.window",
                AggregateSettings {
                    window: Duration::from_millis(500),
                    ..Default::default()
                },
            ),
            (
                "aggregate.window",
                AggregateSettings {
                    window: Duration::from_secs(7),
                    ..Default::default()
                },
            ),
            (
                "aggregate.allowed_lateness",
                AggregateSettings {
                    allowed_lateness: DAY,
                    ..Default::default()
                },
            ),
            (
                "aggregate.idle_timeout",
                AggregateSettings {
                    idle_timeout: Duration::ZERO,
                    ..Default::default()
                },
            ),
            (
                "aggregate.max_future_skew",
                AggregateSettings {
                    max_future_skew: Duration::ZERO,
                    ..Default::default()
                },
            ),
            (
                "aggregate.max_distinct_src_pods",
                AggregateSettings {
                    max_distinct_src_pods: 0,
                    ..Default::default()
                },
            ),
            (
                "aggregate.max_distinct_src_pods",
                AggregateSettings {
                    max_distinct_src_pods: MAX_DISTINCT_SRC_PODS_LIMIT + 1,
                    ..Default::default()
                },
            ),
            (
                "aggregate.metric_max_series",
                AggregateSettings {
                    metric_max_series: 0,
                    ..Default::default()
                },
            ),
            (
                "aggregate.metric_max_series",
                AggregateSettings {
                    metric_max_series: METRIC_MAX_SERIES_LIMIT + 1,
                    ..Default::default()
                },
            ),
        ];
        for (field, settings) in cases {
            let result = settings.validate();
            assert_eq!(
                result.map_err(field_of),
                Err(field.to_owned()),
                "{settings:?}"
            );
        }
    }

    #[test]
    fn windows_that_tile_a_day_are_accepted() {
        for secs in [1, 10, 60, 300, 900, 3600, 86_400] {
            let settings = AggregateSettings {
                window: Duration::from_secs(secs),
                ..Default::default()
            };
            assert!(settings.validate().is_ok(), "{secs}s");
        }
    }
}
