//! Settings of the sink stage (the `[sink]` table of its config file).
//!
//! Only `lake_url` is required; every other field has a default that says where its number
//! comes from. [`SinkSettings::validate`] runs at start-up and names the dotted field of
//! anything that cannot work. Object-store credentials may sit in `storage_options`: the
//! `Debug` output and every log line show them as `***`.

use std::collections::BTreeMap;
use std::time::Duration;

use flowlake_runtime::ConfigError;
use object_store::aws::AmazonS3ConfigKey;
use object_store::azure::AzureConfigKey;
use object_store::gcp::GoogleConfigKey;
use serde::Deserialize;
use url::Url;

use crate::writer::{DEFAULT_MAX_ROW_GROUP_SIZE, DEFAULT_ZSTD_LEVEL};

/// Lake URL schemes the sink writes to.
pub const SCHEMES: [&str; 4] = ["file", "s3", "gs", "az"];

/// Shown in place of a secret.
pub const REDACTED: &str = "***";

/// Parts of an option name that mark its value as a secret.
const SECRET_MARKERS: [&str; 6] = ["secret", "key", "token", "password", "credential", "sas"];

/// Where and how the sink writes Parquet.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSettings {
    /// The lake: `file:///absolute/dir` (created if missing), `s3://bucket/prefix`,
    /// `gs://bucket/prefix` or `az://container/prefix`. Credentials come from the usual
    /// environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ENDPOINT_URL`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, …) or
    /// from `storage_options`.
    pub lake_url: String,
    /// S3-compatible endpoint (MinIO, Ceph, moto, R2), e.g. `http://minio:9000`; plain
    /// `http://` is allowed when given here.
    #[serde(default)]
    pub s3_endpoint: Option<String>,
    /// object_store options passed through as they are, e.g. `aws_region`,
    /// `aws_virtual_hosted_style_request`, `google_service_account`,
    /// `azure_storage_account_name`. Unknown names are refused at start-up.
    #[serde(default)]
    pub storage_options: BTreeMap<String, String>,
    /// An object is written when one of its buffers reaches this many rows.
    #[serde(default = "default_max_rows_per_file")]
    pub max_rows_per_file: usize,
    /// An object is written at the latest this long after its first record arrived.
    #[serde(default = "default_roll_interval", with = "humantime_serde")]
    pub roll_interval: Duration,
    /// Maximum rows per Parquet row group.
    #[serde(default = "default_max_row_group_size")]
    pub max_row_group_size: usize,
    /// zstd level of the Parquet pages (1–22).
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// Memory (MiB) of the records held across all open buffers; above it, the input
    /// partition holding the most is written early. Bounds memory when many partitions,
    /// clusters or hours are open at once.
    #[serde(default = "default_max_buffer_memory_mib")]
    pub max_buffer_memory_mib: usize,
}

/// 500k rows: flow rows compress to tens of bytes each in zstd Parquet, so a full object
/// is tens of MiB — the size query engines read efficiently (four row groups of 128 Ki
/// rows to read in parallel, and far fewer objects to list than one per minute and
/// partition of a busy cluster) — while a full buffer, held as Arrow columns at about
/// 1 KiB per fully populated flow, stays near 500 MiB.
fn default_max_rows_per_file() -> usize {
    500_000
}

/// 60 s: data is queryable about a minute after it happened, and a partition produces at
/// most 60 objects per hour and hive partition even when it is quiet.
fn default_roll_interval() -> Duration {
    Duration::from_secs(60)
}

/// See [`DEFAULT_MAX_ROW_GROUP_SIZE`].
fn default_max_row_group_size() -> usize {
    DEFAULT_MAX_ROW_GROUP_SIZE
}

/// See [`DEFAULT_ZSTD_LEVEL`].
fn default_zstd_level() -> i32 {
    DEFAULT_ZSTD_LEVEL
}

/// 1 GiB: two full buffers of flows (see `default_max_rows_per_file`), which a sink pod
/// with a 2 GiB memory limit holds next to the objects being encoded and uploaded.
fn default_max_buffer_memory_mib() -> usize {
    1024
}

/// The lake URL, parsed and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LakeLocation {
    /// A local directory (absolute).
    File(std::path::PathBuf),
    /// An object-store bucket or container: the URL and its scheme.
    Remote {
        /// `s3`, `gs` or `az`.
        scheme: RemoteScheme,
        /// The URL as given.
        url: Url,
    },
}

/// Object stores reached over the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteScheme {
    /// Amazon S3 and compatible stores.
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage.
    Azure,
}

impl SinkSettings {
    /// Settings for `lake_url` with every default.
    pub fn new(lake_url: impl Into<String>) -> Self {
        SinkSettings {
            lake_url: lake_url.into(),
            s3_endpoint: None,
            storage_options: BTreeMap::new(),
            max_rows_per_file: default_max_rows_per_file(),
            roll_interval: default_roll_interval(),
            max_row_group_size: default_max_row_group_size(),
            zstd_level: default_zstd_level(),
            max_buffer_memory_mib: default_max_buffer_memory_mib(),
        }
    }

    /// Checks what serde cannot: the URL, option names and ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let location = self.location()?;
        let scheme = match location {
            LakeLocation::File(_) => None,
            LakeLocation::Remote { scheme, .. } => Some(scheme),
        };
        if let Some(endpoint) = &self.s3_endpoint {
            if scheme != Some(RemoteScheme::S3) {
                return Err(ConfigError::invalid(
                    "sink.s3_endpoint",
                    "is only used with an s3:// lake_url",
                ));
            }
            let valid = Url::parse(endpoint)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
            if !valid {
                return Err(ConfigError::invalid(
                    "sink.s3_endpoint",
                    format!(
                        "{:?} is not an http:// or https:// URL",
                        redact_url(endpoint)
                    ),
                ));
            }
        }
        for key in self.storage_options.keys() {
            let field = format!("sink.storage_options.{key}");
            let known = match scheme {
                None => {
                    return Err(ConfigError::invalid(
                        field,
                        "a file:// lake takes no storage options",
                    ));
                }
                Some(RemoteScheme::S3) => key
                    .to_ascii_lowercase()
                    .parse::<AmazonS3ConfigKey>()
                    .is_ok(),
                Some(RemoteScheme::Gcs) => {
                    key.to_ascii_lowercase().parse::<GoogleConfigKey>().is_ok()
                }
                Some(RemoteScheme::Azure) => {
                    key.to_ascii_lowercase().parse::<AzureConfigKey>().is_ok()
                }
            };
            if !known {
                return Err(ConfigError::invalid(
                    field,
                    "is not an object_store option for this lake (see the object_store \
                     AmazonS3ConfigKey / GoogleConfigKey / AzureConfigKey names)",
                ));
            }
        }
        let positive = [
            ("sink.max_rows_per_file", self.max_rows_per_file),
            ("sink.max_row_group_size", self.max_row_group_size),
            ("sink.max_buffer_memory_mib", self.max_buffer_memory_mib),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(ConfigError::invalid(field, "must be at least 1"));
            }
        }
        if self.roll_interval < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "sink.roll_interval",
                "must be at least 1s (each roll writes one object per open hive partition)",
            ));
        }
        if !(1..=22).contains(&self.zstd_level) {
            return Err(ConfigError::invalid(
                "sink.zstd_level",
                format!("{} is outside zstd's levels 1-22", self.zstd_level),
            ));
        }
        Ok(())
    }

    /// The lake URL, parsed and checked (`sink.lake_url` in errors).
    pub fn location(&self) -> Result<LakeLocation, ConfigError> {
        let invalid = |reason: String| ConfigError::invalid("sink.lake_url", reason);
        let shown = redact_url(&self.lake_url);
        let url = Url::parse(&self.lake_url)
            .map_err(|e| invalid(format!("{shown:?} is not a URL: {e}")))?;
        let scheme = match url.scheme() {
            "file" => {
                // The URL parser reads `file:dir` as `/dir`: insist on the `//` form.
                let written_absolute = self.lake_url.get(5..).is_some_and(|rest| {
                    rest.starts_with("///") || rest.starts_with("//localhost/")
                });
                let local_host = matches!(url.host_str(), None | Some("") | Some("localhost"));
                return match url.to_file_path() {
                    Ok(path) if written_absolute && local_host && path.is_absolute() => {
                        Ok(LakeLocation::File(path))
                    }
                    _ => Err(invalid(format!(
                        "{shown:?} is not an absolute local path; write file:///absolute/dir"
                    ))),
                };
            }
            "s3" => RemoteScheme::S3,
            "gs" => RemoteScheme::Gcs,
            "az" => RemoteScheme::Azure,
            other => {
                return Err(invalid(format!(
                    "scheme {other:?} is not supported; use one of {}",
                    SCHEMES.map(|s| format!("{s}://")).join(", ")
                )));
            }
        };
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid(format!(
                "{shown:?} names no bucket; write {}://bucket/prefix",
                url.scheme()
            )));
        }
        Ok(LakeLocation::Remote { scheme, url })
    }

    /// `storage_options` with secret values replaced by `***`, for logs.
    pub fn redacted_storage_options(&self) -> BTreeMap<&str, &str> {
        self.storage_options
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret_option(k) {
                    REDACTED
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect()
    }
}

impl std::fmt::Debug for SinkSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkSettings")
            .field("lake_url", &redact_url(&self.lake_url))
            .field("s3_endpoint", &self.s3_endpoint.as_deref().map(redact_url))
            .field("storage_options", &self.redacted_storage_options())
            .field("max_rows_per_file", &self.max_rows_per_file)
            .field("roll_interval", &self.roll_interval)
            .field("max_row_group_size", &self.max_row_group_size)
            .field("zstd_level", &self.zstd_level)
            .field("max_buffer_memory_mib", &self.max_buffer_memory_mib)
            .finish()
    }
}

/// True when an option's value is a secret (its name mentions a key, secret, token,
/// password, credential or SAS).
pub fn is_secret_option(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_MARKERS.iter().any(|marker| key.contains(marker))
}

/// `text` with the password of a URL (`scheme://user:password@host`) replaced by `***`.
pub fn redact_url(text: &str) -> String {
    match Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            // Only fails for URLs that cannot have a password, which this one has.
            let _ = url.set_password(Some(REDACTED));
            url.to_string()
        }
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<SinkSettings, toml::de::Error> {
        toml::from_str(toml_text)
    }

    fn field_of(result: Result<(), ConfigError>) -> Option<String> {
        match result {
            Err(ConfigError::Invalid { field, .. }) => Some(field),
            _ => None,
        }
    }

    #[test]
    fn defaults_and_durations() -> Result<(), Box<dyn std::error::Error>> {
        let settings = parse("lake_url = \"s3://lake/flowlake\"")?;
        assert_eq!(settings, SinkSettings::new("s3://lake/flowlake"));
        assert_eq!(settings.max_rows_per_file, 500_000);
        assert_eq!(settings.roll_interval, Duration::from_secs(60));
        assert_eq!(settings.max_row_group_size, 131_072);
        assert_eq!(settings.zstd_level, 3);
        assert_eq!(settings.max_buffer_memory_mib, 1024);
        settings.validate()?;

        let settings = parse(
            "lake_url = \"file:///var/lib/flowlake\"\nroll_interval = \"2m 30s\"\nmax_rows_per_file = 1000",
        )?;
        assert_eq!(settings.roll_interval, Duration::from_secs(150));
        assert_eq!(settings.max_rows_per_file, 1000);
        assert_eq!(
            settings.location()?,
            LakeLocation::File("/var/lib/flowlake".into())
        );
        Ok(())
    }

    #[test]
    fn unknown_and_missing_fields_are_refused() {
        assert!(parse("lake_url = \"s3://b\"\nmax_rows = 5").is_err());
        assert!(parse("max_rows_per_file = 5").is_err());
    }

    #[test]
    fn lake_url_is_checked() {
        let check = |url: &str| field_of(SinkSettings::new(url).validate());
        for good in [
            "file:///tmp/lake",
            "s3://bucket",
            "s3://bucket/a/prefix",
            "gs://bucket/p",
            "az://container/p",
        ] {
            assert_eq!(check(good), None, "{good}");
        }
        for bad in [
            "file://relative/dir",
            "file:relative",
            "http://example.com/lake",
            "hdfs://nn/lake",
            "/tmp/lake",
            "s3:///prefix-without-bucket",
            "",
        ] {
            assert_eq!(check(bad).as_deref(), Some("sink.lake_url"), "{bad}");
        }
    }

    #[test]
    fn options_ranges_and_endpoint_are_checked() {
        let mut settings = SinkSettings::new("s3://bucket/p");
        settings.s3_endpoint = Some("http://127.0.0.1:5000".into());
        settings
            .storage_options
            .insert("aws_region".into(), "eu-west-1".into());
        settings
            .storage_options
            .insert("AWS_SECRET_ACCESS_KEY".into(), "s3cr3t".into());
        assert_eq!(field_of(settings.validate()), None);

        let mut bad = settings.clone();
        bad.storage_options.insert("aws_regoin".into(), "x".into());
        assert_eq!(
            field_of(bad.validate()).as_deref(),
            Some("sink.storage_options.aws_regoin")
        );
        let mut bad = settings.clone();
        bad.s3_endpoint = Some("minio:9000".into());
        assert_eq!(
            field_of(bad.validate()).as_deref(),
            Some("sink.s3_endpoint")
        );
        let mut bad = SinkSettings::new("gs://bucket/p");
        bad.s3_endpoint = Some("http://127.0.0.1:5000".into());
        assert_eq!(
            field_of(bad.validate()).as_deref(),
            Some("sink.s3_endpoint")
        );
        let mut bad = SinkSettings::new("file:///tmp/x");
        bad.storage_options.insert("aws_region".into(), "x".into());
        assert_eq!(
            field_of(bad.validate()).as_deref(),
            Some("sink.storage_options.aws_region")
        );
        let mut gcs = SinkSettings::new("gs://bucket/p");
        gcs.storage_options
            .insert("google_service_account".into(), "/sa.json".into());
        assert_eq!(field_of(gcs.validate()), None);

        let mut bad = settings.clone();
        bad.zstd_level = 0;
        assert_eq!(field_of(bad.validate()).as_deref(), Some("sink.zstd_level"));
        let mut bad = settings.clone();
        bad.max_rows_per_file = 0;
        assert_eq!(
            field_of(bad.validate()).as_deref(),
            Some("sink.max_rows_per_file")
        );
        let mut bad = settings;
        bad.roll_interval = Duration::from_millis(10);
        assert_eq!(
            field_of(bad.validate()).as_deref(),
            Some("sink.roll_interval")
        );
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let mut settings = SinkSettings::new("az://container/p");
        for (key, value) in [
            ("azure_storage_account_key", "k3y-value"),
            ("aws_secret_access_key", "s3cr3t-value"),
            ("aws_session_token", "t0ken-value"),
            ("azure_storage_sas_token", "sas-value"),
            ("azure_storage_account_name", "account-name"),
        ] {
            settings.storage_options.insert(key.into(), value.into());
        }
        settings.s3_endpoint = Some("https://user:hunter2@minio:9000".into());
        let shown = format!("{settings:?}");
        for secret in [
            "k3y-value",
            "s3cr3t-value",
            "t0ken-value",
            "sas-value",
            "hunter2",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert!(shown.contains("account-name"), "{shown}");
        assert!(
            shown.contains("\"azure_storage_account_key\": \"***\""),
            "{shown}"
        );
        assert!(shown.contains("https://user:***@minio:9000"), "{shown}");
    }
}
