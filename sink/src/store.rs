//! The lake: an object store opened from a URL, and uploads that never give up.
//!
//! Protocol: [`Lake::put`] returns only once the object is durably stored — the store
//! acknowledged the whole object (`put` is atomic on every object_store backend; the local
//! file system writes a temporary file and renames it). Until then it retries with
//! exponential backoff (200 ms doubling to 30 s, with jitter), forever: a store that is down
//! or refuses us must slow the stage down (its consumer waits for the flush), not crash it
//! into a restart loop that re-reads the same input. Errors that retrying rarely fixes
//! (permission denied, missing bucket, bad configuration) are still retried, so that fixing
//! the bucket policy un-sticks the stage, but after a few attempts they are logged at
//! `error` so that someone looks.
//!
//! Credentials: taken from the environment by object_store's builders (`from_env`), or from
//! `storage_options`; they are never logged (see [`SinkSettings::redacted_storage_options`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use metrics::Counter;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use flowlake_runtime::ConfigError;

use crate::settings::{LakeLocation, RemoteScheme, SinkSettings, redact_url};

/// Objects above this size are uploaded in parts: below it one `put` is one request and
/// atomic; the default roll sizes produce objects far smaller.
const MULTIPART_THRESHOLD: usize = 64 * 1024 * 1024;

/// Size of each part of a multipart upload (S3 needs at least 5 MiB per part but the
/// last, and at most 10,000 parts: 16 MiB parts reach 156 GiB).
const MULTIPART_PART_SIZE: usize = 16 * 1024 * 1024;

/// After this many failed attempts, an error that retrying rarely fixes is logged at
/// `error` instead of `warn` (about 3 s of backoff: long enough to ride out a credential
/// refresh, short enough that a wrong bucket policy is noticed).
const PERSISTENT_ERROR_ATTEMPTS: u32 = 5;

/// Why the lake could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The settings are wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The local lake directory could not be created.
    #[error("cannot create lake directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// object_store refused the configuration.
    #[error("cannot open lake {lake}: {source}")]
    Open {
        /// The lake URL (password redacted).
        lake: String,
        /// Why.
        #[source]
        source: object_store::Error,
    },
}

/// Exponential backoff between upload attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Wait after the first failure.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    /// 200 ms doubling to 30 s: a blip costs a fraction of a second, an outage costs one
    /// request per half minute per object, well under any store's request limits.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The wait before retry number `retry` (1-based): doubling from `initial`, capped at
    /// `max`, then jittered to between half and all of it so that many sinks retrying a
    /// recovered store do not arrive in lockstep.
    pub fn delay(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        let base = self.initial.saturating_mul(1 << doublings).min(self.max);
        base.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
}

/// An object store and the prefix the lake lives under.
#[derive(Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    root: Path,
    /// The lake URL for logs (password redacted).
    description: String,
    backoff: Backoff,
    multipart_threshold: usize,
    part_size: usize,
}

impl std::fmt::Debug for Lake {
    /// The URL and prefix only: the store's own configuration may hold credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lake")
            .field("url", &self.description)
            .field("root", &self.root.as_ref())
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

impl Lake {
    /// Opens the lake of `settings` (creating a local directory if needed).
    pub fn open(settings: &SinkSettings) -> Result<Lake, StoreError> {
        settings.validate()?;
        let description = redact_url(&settings.lake_url);
        let open_error = |source| StoreError::Open {
            lake: description.clone(),
            source,
        };
        let (store, root): (Arc<dyn ObjectStore>, Path) = match settings.location()? {
            LakeLocation::File(dir) => {
                std::fs::create_dir_all(&dir).map_err(|source| StoreError::CreateDir {
                    path: dir.display().to_string(),
                    source,
                })?;
                let store = LocalFileSystem::new_with_prefix(&dir).map_err(open_error)?;
                (Arc::new(store), Path::default())
            }
            LakeLocation::Remote { scheme, url } => {
                let root = Path::from_url_path(url.path()).map_err(|e| open_error(e.into()))?;
                let store = remote_store(scheme, &url, settings).map_err(open_error)?;
                (store, root)
            }
        };
        tracing::info!(
            lake = %description,
            storage_options = ?settings.redacted_storage_options(),
            "lake opened"
        );
        Ok(Lake::from_store(store, root, description))
    }

    /// A lake on `store` under `root` (tests, or a store built by the caller).
    pub fn from_store(
        store: Arc<dyn ObjectStore>,
        root: Path,
        description: impl Into<String>,
    ) -> Lake {
        Lake {
            store,
            root,
            description: description.into(),
            backoff: Backoff::default(),
            multipart_threshold: MULTIPART_THRESHOLD,
            part_size: MULTIPART_PART_SIZE,
        }
    }

    /// The same lake with another retry backoff.
    pub fn with_backoff(mut self, backoff: Backoff) -> Lake {
        self.backoff = backoff;
        self
    }

    /// The prefix every object name starts with.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Stores `bytes` at `path`, retrying until the store accepts it; returns the number
    /// of failed attempts (each also counted on `retries`).
    pub async fn put(&self, path: &Path, bytes: Bytes, retries: &Counter) -> u32 {
        let mut failed: u32 = 0;
        loop {
            let started = Instant::now();
            let error = match self.put_once(path, bytes.clone()).await {
                Ok(()) => return failed,
                Err(e) => e,
            };
            failed = failed.saturating_add(1);
            retries.increment(1);
            let wait = self.backoff.delay(failed);
            let class = error_class(&error);
            if class == ErrorClass::Persistent && failed >= PERSISTENT_ERROR_ATTEMPTS {
                tracing::error!(
                    lake = %self.description,
                    object = %path,
                    attempt = failed,
                    error = %error,
                    retry_in = ?wait,
                    "upload refused; check the bucket, its permissions and the credentials (retrying)"
                );
            } else {
                tracing::warn!(
                    lake = %self.description,
                    object = %path,
                    attempt = failed,
                    error = %error,
                    elapsed = ?started.elapsed(),
                    retry_in = ?wait,
                    "upload failed; retrying"
                );
            }
            tokio::time::sleep(wait).await;
        }
    }

    async fn put_once(&self, path: &Path, bytes: Bytes) -> Result<(), object_store::Error> {
        if bytes.len() <= self.multipart_threshold {
            self.store.put(path, PutPayload::from(bytes)).await?;
            return Ok(());
        }
        let mut upload = self.store.put_multipart(path).await?;
        let mut offset = 0;
        while offset < bytes.len() {
            let end = bytes.len().min(offset + self.part_size);
            if let Err(e) = upload
                .put_part(PutPayload::from(bytes.slice(offset..end)))
                .await
            {
                // Best effort: a leftover incomplete upload is cleaned up by lifecycle rules.
                let _ = upload.abort().await;
                return Err(e);
            }
            offset = end;
        }
        match upload.complete().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let _ = upload.abort().await;
                Err(e)
            }
        }
    }

    /// Uses multipart uploads above `threshold` bytes, in parts of `part_size`.
    #[cfg(test)]
    pub(crate) fn with_multipart(mut self, threshold: usize, part_size: usize) -> Lake {
        self.multipart_threshold = threshold;
        self.part_size = part_size.max(1);
        self
    }
}

/// Builds an S3, GCS or Azure store: environment first, then `storage_options`, then the
/// explicit `s3_endpoint`; the bucket comes from the URL.
fn remote_store(
    scheme: RemoteScheme,
    url: &url::Url,
    settings: &SinkSettings,
) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
    // Keys were checked by `SinkSettings::validate`; an unknown one is skipped here.
    let options = settings
        .storage_options
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v));
    match scheme {
        RemoteScheme::S3 => {
            let mut builder = AmazonS3Builder::from_env().with_url(url.as_str());
            for (key, value) in options {
                if let Ok(key) = key.parse::<AmazonS3ConfigKey>() {
                    builder = builder.with_config(key, value);
                }
            }
            if let Some(endpoint) = &settings.s3_endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            // An endpoint given as http:// (moto, MinIO in a cluster) is meant to be used
            // as given, wherever it came from.
            let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
            if endpoint.is_some_and(|e| e.starts_with("http://")) {
                builder = builder.with_allow_http(true);
            }
            Ok(Arc::new(builder.build()?))
        }
        RemoteScheme::Gcs => {
            let mut builder = GoogleCloudStorageBuilder::from_env().with_url(url.as_str());
            for (key, value) in options {
                if let Ok(key) = key.parse::<GoogleConfigKey>() {
                    builder = builder.with_config(key, value);
                }
            }
            Ok(Arc::new(builder.build()?))
        }
        RemoteScheme::Azure => {
            let mut builder = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
            for (key, value) in options {
                if let Ok(key) = key.parse::<AzureConfigKey>() {
                    builder = builder.with_config(key, value);
                }
            }
            Ok(Arc::new(builder.build()?))
        }
    }
}

/// How an upload error is reported while it is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ErrorClass {
    /// Network trouble, throttling, a store restarting: retrying fixes it.
    Transient,
    /// Permissions, credentials, a missing bucket, bad configuration: someone has to act.
    Persistent,
}

fn error_class(error: &object_store::Error) -> ErrorClass {
    use object_store::Error as E;
    match error {
        E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        // A put never reads an object, so "not found" is the bucket or container.
        | E::NotFound { .. }
        | E::UnknownConfigurationKey { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::InvalidPath { .. } => ErrorClass::Persistent,
        _ => ErrorClass::Transient,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::fmt;
    use std::sync::atomic::{AtomicU32, Ordering};

    use async_trait::async_trait;
    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
        PutMultipartOptions, PutOptions, PutResult,
    };

    use super::*;
    use crate::metrics::probe::probed;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// Fast retries for tests.
    pub(crate) const FAST: Backoff = Backoff {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(4),
    };

    /// An in-memory store whose first `failures` writes fail.
    #[derive(Debug)]
    pub(crate) struct FailingStore {
        pub inner: InMemory,
        pub failures: AtomicU32,
        pub attempts: AtomicU32,
        pub written: AtomicU32,
        pub error: fn(&Path) -> object_store::Error,
    }

    impl FailingStore {
        pub(crate) fn new(failures: u32) -> Self {
            FailingStore {
                inner: InMemory::new(),
                failures: AtomicU32::new(failures),
                attempts: AtomicU32::new(0),
                written: AtomicU32::new(0),
                error: |_| object_store::Error::Generic {
                    store: "failing",
                    source: "connection reset by peer".into(),
                },
            }
        }

        fn fail(&self, location: &Path) -> Result<(), object_store::Error> {
            self.attempts.fetch_add(1, Ordering::AcqRel);
            let failing = self
                .failures
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                Err((self.error)(location))
            } else {
                Ok(())
            }
        }
    }

    impl fmt::Display for FailingStore {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "FailingStore({})", self.inner)
        }
    }

    #[async_trait]
    impl ObjectStore for FailingStore {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.fail(location)?;
            let result = self.inner.put_opts(location, payload, opts).await?;
            self.written.fetch_add(1, Ordering::AcqRel);
            Ok(result)
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.fail(location)?;
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    #[tokio::test]
    async fn file_lake_writes_and_reads_back() -> TestResult {
        let dir = tempfile::tempdir()?;
        let lake_dir = dir.path().join("not/yet/there");
        let url = url::Url::from_directory_path(&lake_dir).map_err(|()| "bad path")?;
        let lake = Lake::open(&SinkSettings::new(url.as_str()))?;
        assert!(lake_dir.is_dir());
        let (metrics, probe) = probed();
        let path = Path::from(
            "flows/cluster_id=c/date=2024-01-01/hour=00/part-t-0-00000000000000000000.parquet",
        );
        let retries = lake
            .put(
                &path,
                Bytes::from_static(b"PAR1 data"),
                &metrics.upload_retries,
            )
            .await;
        assert_eq!(retries, 0);
        assert_eq!(probe.retries(), 0);
        let read = lake.store().get(&path).await?.bytes().await?;
        assert_eq!(read, Bytes::from_static(b"PAR1 data"));
        let on_disk = std::fs::read(lake_dir.join(path.as_ref()))?;
        assert_eq!(on_disk, b"PAR1 data");
        // Writing the same name again replaces the object (a replay).
        lake.put(
            &path,
            Bytes::from_static(b"PAR1 again"),
            &metrics.upload_retries,
        )
        .await;
        assert_eq!(std::fs::read(lake_dir.join(path.as_ref()))?, b"PAR1 again");
        Ok(())
    }

    #[tokio::test]
    async fn failed_uploads_are_retried_until_written_once() -> TestResult {
        let store = Arc::new(FailingStore::new(3));
        let lake = Lake::from_store(Arc::clone(&store) as _, Path::from("root"), "memory://")
            .with_backoff(FAST);
        let (metrics, probe) = probed();
        let path = Path::from("root/edges/x.parquet");
        let retries = lake
            .put(
                &path,
                Bytes::from_static(b"object"),
                &metrics.upload_retries,
            )
            .await;
        assert_eq!(retries, 3);
        assert_eq!(probe.retries(), 3);
        assert_eq!(store.attempts.load(Ordering::Acquire), 4);
        assert_eq!(store.written.load(Ordering::Acquire), 1);
        assert_eq!(
            store.inner.get(&path).await?.bytes().await?,
            Bytes::from_static(b"object")
        );
        Ok(())
    }

    #[tokio::test]
    async fn large_objects_go_in_parts() -> TestResult {
        let store = Arc::new(FailingStore::new(1));
        let lake = Lake::from_store(Arc::clone(&store) as _, Path::default(), "memory://")
            .with_backoff(FAST)
            .with_multipart(10, 4);
        let (metrics, probe) = probed();
        let data = Bytes::from_static(b"0123456789abcdefghij-multipart");
        let path = Path::from("big.parquet");
        assert_eq!(
            lake.put(&path, data.clone(), &metrics.upload_retries).await,
            1
        );
        assert_eq!(probe.retries(), 1);
        // The multipart path, not `put`, wrote it.
        assert_eq!(store.written.load(Ordering::Acquire), 0);
        assert_eq!(store.inner.get(&path).await?.bytes().await?, data);
        Ok(())
    }

    #[test]
    fn errors_are_classified() {
        let generic = object_store::Error::Generic {
            store: "S3",
            source: "timeout".into(),
        };
        assert_eq!(error_class(&generic), ErrorClass::Transient);
        let denied = object_store::Error::PermissionDenied {
            path: "x".into(),
            source: "AccessDenied".into(),
        };
        assert_eq!(error_class(&denied), ErrorClass::Persistent);
        let no_bucket = object_store::Error::NotFound {
            path: "x".into(),
            source: "NoSuchBucket".into(),
        };
        assert_eq!(error_class(&no_bucket), ErrorClass::Persistent);
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter() {
        let backoff = Backoff::default();
        for _ in 0..100 {
            let first = backoff.delay(1);
            assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(200));
            let fourth = backoff.delay(4);
            assert!(fourth >= Duration::from_millis(800) && fourth <= Duration::from_millis(1600));
            let late = backoff.delay(40);
            assert!(late >= Duration::from_secs(15) && late <= Duration::from_secs(30));
        }
    }

    #[test]
    fn s3_lakes_open_from_settings() -> TestResult {
        let mut settings = SinkSettings::new("s3://bucket/some/prefix/");
        settings.s3_endpoint = Some("http://127.0.0.1:1".into());
        settings
            .storage_options
            .insert("aws_region".into(), "eu-west-1".into());
        settings
            .storage_options
            .insert("aws_access_key_id".into(), "AKIDEXAMPLE".into());
        settings
            .storage_options
            .insert("aws_secret_access_key".into(), "secret".into());
        let lake = Lake::open(&settings)?;
        assert_eq!(lake.root().as_ref(), "some/prefix");
        assert_eq!(lake.to_string(), "s3://bucket/some/prefix/");
        let mut bad = settings.clone();
        bad.storage_options
            .insert("aws_no_such_option".into(), "x".into());
        assert!(matches!(Lake::open(&bad), Err(StoreError::Config(_))));
        Ok(())
    }
}
