//! The `[ingest]` section of the configuration.
//!
//! Loaded by the binary (file, then flags and environment), then checked once at start-up
//! by [`IngestSettings::validate`]; a stage never starts with settings that fail it.

use std::time::Duration;

use flowlake_runtime::ConfigError;
use serde::{Deserialize, Serialize};

use crate::formats::Format;

/// Default for [`IngestSettings::max_message_bytes`]: 1 MiB, Kafka's default
/// `message.max.bytes` (1 MB + overhead), so a default broker cannot hand us a larger one
/// anyway; one flow record is well under 4 KiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Default for [`IngestSettings::max_future_skew`]: 10 minutes. Node clocks are
/// NTP-synchronised to well under a second; ten minutes tolerates a badly drifting node
/// while still catching times written in the wrong unit or time zone.
pub const DEFAULT_MAX_FUTURE_SKEW: Duration = Duration::from_secs(10 * 60);

fn default_max_message_bytes() -> usize {
    DEFAULT_MAX_MESSAGE_BYTES
}

fn default_max_future_skew() -> Duration {
    DEFAULT_MAX_FUTURE_SKEW
}

/// Settings of the ingest stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    /// Cluster every record is attributed to when the record itself names none (Hubble
    /// endpoints may carry `cluster_name`). Required.
    #[serde(default)]
    pub cluster_id: String,
    /// Input format of every message: the name of one of
    /// [`FORMATS`](crate::formats::FORMATS) (validated against it); unset = detect per
    /// message. A `flowlake.format` header on a message overrides it.
    #[serde(default)]
    pub format: Option<String>,
    /// Largest message accepted; larger ones are dead-lettered as `message_too_large`.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// How far after the message's Kafka timestamp (or the wall clock, when it has none) a
    /// flow may start; later ones are dead-lettered as `future_time`.
    #[serde(default = "default_max_future_skew", with = "humantime_serde")]
    pub max_future_skew: Duration,
    /// Confluent Schema Registry ids under which flowlake's own `FlowEvent` schema is
    /// registered: read without asking a registry. Confluent-framed canonical Avro with any
    /// other id is looked up in `schema_registry_url`, or dead-lettered when none is set.
    #[serde(default)]
    pub confluent_schema_ids: Vec<u32>,
    /// Confluent Schema Registry base URL (`http://` or `https://`, credentials may go in
    /// the URL). Confluent-framed canonical Avro whose id is not in `confluent_schema_ids` is
    /// looked up there (`GET {url}/schemas/ids/{id}`) once; unset = no lookups.
    #[serde(default)]
    pub schema_registry_url: Option<String>,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            cluster_id: String::new(),
            format: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_future_skew: DEFAULT_MAX_FUTURE_SKEW,
            confluent_schema_ids: Vec::new(),
            schema_registry_url: None,
        }
    }
}

impl IngestSettings {
    /// Settings with every default and `cluster_id` set.
    pub fn for_cluster(cluster_id: impl Into<String>) -> Self {
        IngestSettings {
            cluster_id: cluster_id.into(),
            ..IngestSettings::default()
        }
    }

    /// Checks the settings; the error names the field and how to fix it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cluster_id.trim().is_empty() {
            return Err(ConfigError::invalid(
                "ingest.cluster_id",
                "must be set: every record carries the cluster it came from; set --cluster-id, \
                 FLOWLAKE_CLUSTER_ID or ingest.cluster_id",
            ));
        }
        self.pinned_format()?;
        if self.max_message_bytes == 0 {
            return Err(ConfigError::invalid(
                "ingest.max_message_bytes",
                "must be greater than 0",
            ));
        }
        if let Some(url) = &self.schema_registry_url {
            // The value is not echoed: it may carry credentials.
            let scheme = reqwest::Url::parse(url).map(|u| u.scheme().to_owned());
            if !matches!(scheme.as_deref(), Ok("http" | "https")) {
                return Err(ConfigError::invalid(
                    "ingest.schema_registry_url",
                    "must be an http:// or https:// URL, e.g. http://schema-registry:8081",
                ));
            }
        }
        Ok(())
    }

    /// The configured format, if one is pinned.
    pub fn pinned_format(&self) -> Result<Option<Format>, ConfigError> {
        self.format
            .as_deref()
            .map(|name| {
                name.parse::<Format>()
                    .map_err(|e| ConfigError::invalid("ingest.format", e.to_string()))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<IngestSettings, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn defaults_apply() -> Result<(), serde_json::Error> {
        let settings = parse(r#"{"cluster_id":"prod"}"#)?;
        assert_eq!(settings, IngestSettings::for_cluster("prod"));
        assert_eq!(settings.max_message_bytes, 1_048_576);
        assert_eq!(settings.max_future_skew, Duration::from_secs(600));
        assert!(settings.validate().is_ok());
        Ok(())
    }

    #[test]
    fn fields_parse() -> Result<(), serde_json::Error> {
        let settings = parse(
            r#"{"cluster_id":"c","format":"hubble","max_message_bytes":4096,
                "max_future_skew":"1h 30s","confluent_schema_ids":[7],
                "schema_registry_url":"http://sr:8081"}"#,
        )?;
        assert_eq!(settings.max_future_skew, Duration::from_secs(3630));
        assert_eq!(
            settings.pinned_format().ok(),
            Some(Some(Format::named("hubble")))
        );
        assert_eq!(settings.confluent_schema_ids, vec![7]);
        assert_eq!(
            settings.schema_registry_url.as_deref(),
            Some("http://sr:8081")
        );
        Ok(())
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = parse(r#"{"cluster_id":"c","max_skew":"1m"}"#).map_err(|e| e.to_string());
        assert!(
            err.as_ref()
                .is_err_and(|e| e.starts_with("unknown field `max_skew`")),
            "{err:?}"
        );
    }

    #[test]
    fn validation_names_the_field() {
        let message = |s: IngestSettings| s.validate().map_err(|e| e.to_string()).err();
        assert_eq!(
            message(IngestSettings::default()),
            Some(
                "invalid configuration: `ingest.cluster_id`: must be set: every record carries \
                 the cluster it came from; set --cluster-id, FLOWLAKE_CLUSTER_ID or \
                 ingest.cluster_id"
                    .to_owned()
            )
        );
        assert_eq!(
            message(IngestSettings {
                format: Some("calico".to_owned()),
                ..IngestSettings::for_cluster("c")
            }),
            Some(
                "invalid configuration: `ingest.format`: unknown format \"calico\": expected one \
                 of hubble, calico-goldmane, calico-enterprise, netobserv, canonical-json, \
                 canonical-avro"
                    .to_owned()
            )
        );
        assert_eq!(
            message(IngestSettings {
                max_message_bytes: 0,
                ..IngestSettings::for_cluster("c")
            }),
            Some(
                "invalid configuration: `ingest.max_message_bytes`: must be greater than 0"
                    .to_owned()
            )
        );
        let registry = |url: &str| IngestSettings {
            schema_registry_url: Some(url.to_owned()),
            ..IngestSettings::for_cluster("c")
        };
        assert!(registry("http://schema-registry:8081").validate().is_ok());
        assert!(
            registry("https://user:secret@sr.example.com/base/")
                .validate()
                .is_ok()
        );
        for bad in ["schema-registry:8081", "ftp://sr", "https//sr"] {
            let message = message(registry(bad));
            assert_eq!(
                message.as_deref(),
                Some(
                    "invalid configuration: `ingest.schema_registry_url`: must be an http:// or \
                     https:// URL, e.g. http://schema-registry:8081"
                ),
                "{bad}"
            );
        }
    }
}
