//! Configuration shared by every stage: loaded from an optional TOML file, overridden by
//! flags and environment variables ([`CommonArgs`]), validated once at start-up. A bad value
//! stops the stage with a [`ConfigError`] naming the field and how to set it.
//!
//! A stage's file has the sections `[kafka]`, `[http]`, `[log]`, `[runtime]`, `[topics]` and
//! one named after the stage (`[ingest]`, …). Unknown fields are errors, so a typo cannot
//! silently fall back to a default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A configuration problem found at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A field has a value that cannot work.
    #[error("invalid configuration: `{field}`: {reason}")]
    Invalid {
        /// Dotted path of the field in the config file, e.g. `kafka.brokers`.
        field: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// Path given.
        path: String,
        /// I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML for this stage (unknown or mistyped field).
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// Path given.
        path: String,
        /// Parser message, naming the field.
        message: String,
    },
}

impl ConfigError {
    /// An invalid-field error.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// librdkafka properties that the runtime sets itself: overriding them would break the
/// offset protocol (offsets are stored only after the output they produced is durable).
const MANAGED_KAFKA_PROPERTIES: [&str; 4] = [
    "bootstrap.servers",
    "group.id",
    "enable.auto.offset.store",
    "enable.auto.commit",
];

/// Substrings of property names whose values are secrets and never logged.
const SECRET_MARKERS: [&str; 6] = [
    "password",
    "secret",
    "ssl.key",
    "token",
    "credentials",
    "sasl.jaas",
];

/// `[kafka]`: how to reach the brokers.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSettings {
    /// Bootstrap servers, comma-separated `host:port`.
    pub brokers: String,
    /// Consumer group id; defaults to `flowlake-<stage>`. Instances with the same group id
    /// share the input partitions.
    pub group_id: Option<String>,
    /// Raw librdkafka properties for everything flowlake does not model (TLS, SASL,
    /// timeouts, compression). Secrets here are redacted from logs.
    pub properties: BTreeMap<String, String>,
}

impl KafkaSettings {
    /// Checks the brokers and that no managed property is overridden.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.brokers.trim().is_empty() {
            return Err(ConfigError::invalid(
                "kafka.brokers",
                "must not be empty: set --brokers, FLOWLAKE_BROKERS or kafka.brokers (e.g. \"kafka-0:9092,kafka-1:9092\")",
            ));
        }
        for broker in self.brokers.split(',') {
            let broker = broker.trim();
            let port_ok = broker
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return Err(ConfigError::invalid(
                    "kafka.brokers",
                    format!("{broker:?} is not host:port"),
                ));
            }
        }
        if let Some(group) = &self.group_id
            && group.trim().is_empty()
        {
            return Err(ConfigError::invalid(
                "kafka.group_id",
                "must not be empty when set",
            ));
        }
        for key in self.properties.keys() {
            if MANAGED_KAFKA_PROPERTIES.contains(&key.as_str()) {
                return Err(ConfigError::invalid(
                    format!("kafka.properties.\"{key}\""),
                    "is managed by flowlake (use kafka.brokers / kafka.group_id; offsets are stored only after output is durable)",
                ));
            }
        }
        Ok(())
    }

    /// The properties with secret values replaced, for logging.
    pub fn redacted_properties(&self) -> BTreeMap<String, String> {
        self.properties
            .iter()
            .map(|(k, v)| {
                let secret = SECRET_MARKERS
                    .iter()
                    .any(|m| k.to_ascii_lowercase().contains(m));
                (
                    k.clone(),
                    if secret {
                        "<redacted>".to_owned()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect()
    }
}

/// Default HTTP address: all interfaces, so Prometheus can scrape the pod.
fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9090))
}

/// `[http]`: the one port serving `/metrics`, `/healthz` and `/readyz`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Address to listen on.
    pub listen: SocketAddr,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: default_http_listen(),
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// `[log]`: logging.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// Output format.
    pub format: LogFormat,
    /// Filter in `tracing` syntax (e.g. `info,flowlake_sink=debug`); `RUST_LOG` wins.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// Records per batch: large enough to amortise the per-batch costs (rebalance check,
/// processor flush, one `send` loop), small enough that several batches' outputs fit in
/// librdkafka's queue (100k) while earlier ones are acknowledged.
const DEFAULT_BATCH_MAX_RECORDS: usize = 10_000;

/// `[runtime]`: batching, commits and shutdown.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSettings {
    /// Most records read and processed at a time (offsets move at checkpoints).
    pub batch_max_records: usize,
    /// How often the stage is asked to emit what is due when no input arrives.
    #[serde(with = "humantime_serde")]
    pub tick_interval: Duration,
    /// Longest time between checkpoints while input keeps arriving (a stage checkpoints
    /// whenever it has caught up with its input, and at least this often otherwise).
    /// Between checkpoints batches are read and processed while earlier output is being
    /// acknowledged; a crash replays what came after the last checkpoint (the next stage
    /// drops the copies).
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// How often stored offsets are committed to the group coordinator.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// On SIGTERM, how long to wait for in-flight output before committing and exiting.
    /// Kubernetes' default grace period is 30 s; stay under it.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Topic holding every stage's partition checkpoints (resume offset, replay marks,
    /// processor state); created with one partition when missing. Shared by all stages
    /// and groups: records are keyed by group, topic and partition.
    pub checkpoint_topic: String,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            batch_max_records: DEFAULT_BATCH_MAX_RECORDS,
            tick_interval: Duration::from_secs(1),
            checkpoint_interval: Duration::from_secs(1),
            commit_interval: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(25),
            checkpoint_topic: DEFAULT_CHECKPOINT_TOPIC.to_owned(),
        }
    }
}

impl RuntimeSettings {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.batch_max_records == 0 || self.batch_max_records > 100_000 {
            return Err(ConfigError::invalid(
                "runtime.batch_max_records",
                "must be between 1 and 100000",
            ));
        }
        if self.tick_interval < Duration::from_millis(10) {
            return Err(ConfigError::invalid(
                "runtime.tick_interval",
                "must be at least 10ms",
            ));
        }
        if self.checkpoint_interval < Duration::from_millis(10)
            || self.checkpoint_interval > Duration::from_secs(60)
        {
            return Err(ConfigError::invalid(
                "runtime.checkpoint_interval",
                "must be between 10ms and 60s (default \"1s\")",
            ));
        }
        if self.commit_interval < Duration::from_millis(100) {
            return Err(ConfigError::invalid(
                "runtime.commit_interval",
                "must be at least 100ms",
            ));
        }
        if self.checkpoint_topic.trim().is_empty() {
            return Err(ConfigError::invalid(
                "runtime.checkpoint_topic",
                "must not be empty (default \"flowlake.checkpoints\")",
            ));
        }
        Ok(())
    }
}

/// Flags and environment variables every stage accepts; they override the config file.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct CommonArgs {
    /// TOML config file (sections: kafka, http, log, runtime, topics and the stage's own).
    #[arg(long, env = "FLOWLAKE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(long, env = "FLOWLAKE_BROKERS", value_name = "HOST:PORT,...")]
    pub brokers: Option<String>,
    /// Consumer group id (default flowlake-<stage>).
    #[arg(long, env = "FLOWLAKE_GROUP_ID")]
    pub group_id: Option<String>,
    /// Extra librdkafka property, repeatable (e.g. security.protocol=SASL_SSL).
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub kafka_properties: Vec<(String, String)>,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "FLOWLAKE_HTTP_LISTEN", value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,
    /// Log format.
    #[arg(long, env = "FLOWLAKE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// Parses `KEY=VALUE`.
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

impl CommonArgs {
    /// Applies the flags to the file's settings.
    pub fn apply(&self, kafka: &mut KafkaSettings, http: &mut HttpSettings, log: &mut LogSettings) {
        if let Some(brokers) = &self.brokers {
            kafka.brokers = brokers.clone();
        }
        if let Some(group) = &self.group_id {
            kafka.group_id = Some(group.clone());
        }
        for (k, v) in &self.kafka_properties {
            kafka.properties.insert(k.clone(), v.clone());
        }
        if let Some(listen) = self.http_listen {
            http.listen = listen;
        }
        if let Some(format) = self.log_format {
            log.format = format;
        }
    }
}

/// Reads a stage's config file, or the all-defaults config when there is none.
pub fn load_file<T: DeserializeOwned>(path: Option<&Path>) -> Result<T, ConfigError> {
    let (text, shown) = match path {
        Some(p) => (
            std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.display().to_string(),
                source,
            })?,
            p.display().to_string(),
        ),
        None => (String::new(), "(defaults)".to_owned()),
    };
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: shown,
        message: e.to_string(),
    })
}

/// Checks that a topic name is usable; `field` is its dotted path.
pub fn validate_topic(field: &str, topic: &str) -> Result<(), ConfigError> {
    let valid = !topic.is_empty()
        && topic.len() <= 249
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            field,
            format!("{topic:?} is not a valid Kafka topic name (1-249 of [a-zA-Z0-9._-])"),
        ))
    }
}

/// Default checkpoint topic.
pub const DEFAULT_CHECKPOINT_TOPIC: &str = "flowlake.checkpoints";

/// Default dead-letter topic of every stage.
pub const DEFAULT_DLQ_TOPIC: &str = "flows.dlq";

/// `[topics]` of a stage that reads one topic and writes one.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicSettings {
    /// Topic to read.
    pub input: Option<String>,
    /// Topic to write.
    pub output: Option<String>,
    /// Dead-letter topic (default `flows.dlq`).
    pub dlq: Option<String>,
}

/// Topic flags of a stage that reads one topic and writes one; they override `[topics]`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct TopicArgs {
    /// Topic to read (default depends on the stage).
    #[arg(long, env = "FLOWLAKE_INPUT_TOPIC")]
    pub input_topic: Option<String>,
    /// Topic to write (default depends on the stage).
    #[arg(long, env = "FLOWLAKE_OUTPUT_TOPIC")]
    pub output_topic: Option<String>,
    /// Dead-letter topic.
    #[arg(long, env = "FLOWLAKE_DLQ_TOPIC")]
    pub dlq_topic: Option<String>,
}

/// Resolved, validated topic names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    /// Topic to read.
    pub input: String,
    /// Topic to write.
    pub output: String,
    /// Dead-letter topic.
    pub dlq: String,
}

impl TopicSettings {
    /// Applies flags, fills the stage's defaults and validates the names.
    pub fn resolve(
        &self,
        args: &TopicArgs,
        default_input: &str,
        default_output: &str,
    ) -> Result<Topics, ConfigError> {
        let pick = |flag: &Option<String>, file: &Option<String>, default: &str| {
            flag.clone()
                .or_else(|| file.clone())
                .unwrap_or_else(|| default.to_owned())
        };
        let topics = Topics {
            input: pick(&args.input_topic, &self.input, default_input),
            output: pick(&args.output_topic, &self.output, default_output),
            dlq: pick(&args.dlq_topic, &self.dlq, DEFAULT_DLQ_TOPIC),
        };
        validate_topic("topics.input", &topics.input)?;
        validate_topic("topics.output", &topics.output)?;
        validate_topic("topics.dlq", &topics.dlq)?;
        if topics.input == topics.output {
            return Err(ConfigError::invalid(
                "topics.output",
                "must differ from topics.input (the stage would read its own output)",
            ));
        }
        Ok(topics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FileConfig {
        #[serde(default)]
        kafka: KafkaSettings,
        #[serde(default)]
        runtime: RuntimeSettings,
    }

    #[test]
    fn brokers_are_required_and_named() {
        let err = KafkaSettings::default()
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("`kafka.brokers`") && err.contains("--brokers"),
            "{err}"
        );
        let bad = KafkaSettings {
            brokers: "localhost".into(),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let ok = KafkaSettings {
            brokers: "127.0.0.1:9092, kafka:9093".into(),
            ..Default::default()
        };
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn managed_properties_are_refused_and_secrets_redacted() {
        let mut k = KafkaSettings {
            brokers: "a:1".into(),
            ..Default::default()
        };
        k.properties
            .insert("enable.auto.offset.store".into(), "true".into());
        let err = k
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("kafka.properties.\"enable.auto.offset.store\""),
            "{err}"
        );
        k.properties.clear();
        k.properties
            .insert("sasl.password".into(), "hunter2".into());
        k.properties.insert("ssl.key.location".into(), "/k".into());
        k.properties
            .insert("security.protocol".into(), "SASL_SSL".into());
        let shown = format!("{:?}", k.redacted_properties());
        assert!(
            !shown.contains("hunter2") && !shown.contains("/k") && shown.contains("SASL_SSL"),
            "{shown}"
        );
    }

    #[test]
    fn file_errors_name_the_field() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[kafka]\nbrokers = \"a:1\"\nbrokerz = \"x\"\n")?;
        let err = load_file::<FileConfig>(Some(&path))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("brokerz"), "{err}");
        std::fs::write(&path, "[runtime]\ncommit_interval = \"5 parsecs\"\n")?;
        let err = load_file::<FileConfig>(Some(&path))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("commit_interval"), "{err}");
        std::fs::write(&path, "[runtime]\ncommit_interval = \"250ms\"\n")?;
        let cfg = load_file::<FileConfig>(Some(&path))?;
        assert_eq!(cfg.runtime.commit_interval, Duration::from_millis(250));
        assert!(cfg.kafka.brokers.is_empty());
        Ok(())
    }

    #[test]
    fn topic_names() {
        assert!(validate_topic("topics.input", "flows.raw").is_ok());
        assert!(validate_topic("topics.input", "").is_err());
        assert!(validate_topic("topics.input", "a b").is_err());
    }
}
