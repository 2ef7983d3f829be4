//! moto, an S3 server, and the object_store client the tests read and write it with.

use std::path::Path as FsPath;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use tempfile::TempDir;

use super::{START_ATTEMPTS, START_TIMEOUT, Server, free_port, http, log_tail, python, run_python};

/// moto's S3 server on 127.0.0.1, killed on drop. Any access key and secret are accepted;
/// the region is `us-east-1`.
pub struct Moto {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    port: u16,
    server: Server,
    tmpdir: TempDir,
}

impl Moto {
    /// Starts `moto_server` from the test venv and waits until it answers HTTP.
    pub fn start() -> Moto {
        let moto_server = python().parent().expect("venv bin dir").join("moto_server");
        assert!(
            moto_server.is_file(),
            "{} missing; run scripts/test.sh (it installs moto)",
            moto_server.display()
        );
        let tmpdir = tempfile::Builder::new()
            .prefix("flowlake-moto-")
            .tempdir()
            .expect("tempdir");
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let mut cmd = Command::new(&moto_server);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .current_dir(tmpdir.path())
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test")
                .env("AWS_DEFAULT_REGION", "us-east-1");
            let log = tmpdir.path().join(format!("moto.{port}.log"));
            let mut server = Server::spawn("moto", cmd, log.clone());
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if let Some(status) = server.exited() {
                    last_error = format!(
                        "moto_server exited ({status}); log:\n{}",
                        log_tail(&log, 40)
                    );
                    break;
                }
                if http(port, "GET", "/", &[]).is_ok_and(|(status, _)| status == 200) {
                    return Moto {
                        endpoint: format!("http://127.0.0.1:{port}"),
                        port,
                        server,
                        tmpdir,
                    };
                }
                if Instant::now() > deadline {
                    panic!(
                        "moto_server did not answer on port {port} within {START_TIMEOUT:?}; log {}:\n{}",
                        log.display(),
                        log_tail(&log, 40)
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("moto_server did not start: {last_error}");
    }

    /// Creates bucket `name` with boto3 (object_store has no bucket API).
    pub fn create_bucket(&self, name: &str) {
        run_python(
            "s3_create_bucket.py",
            &["--endpoint", &self.endpoint, "--bucket", name],
        );
    }

    /// Keys under `prefix` in `bucket`, sorted. `prefix` is a plain S3 key prefix
    /// (`"edges/"`, `"flows/a"`), not only a directory.
    pub fn list_objects(&self, bucket: &str, prefix: &str) -> Vec<String> {
        // object_store lists whole path segments: list the directory, then match the rest.
        let dir = prefix.rsplit_once('/').map(|(dir, _)| Path::from(dir));
        let store = self.store(bucket);
        let listed: Vec<ObjectMeta> = block_on(store.list(dir.as_ref()).try_collect())
            .unwrap_or_else(|e| panic!("list {bucket}/{prefix}: {e}"));
        let mut keys: Vec<String> = listed
            .into_iter()
            .map(|meta| meta.location.to_string())
            .filter(|key| key.starts_with(prefix))
            .collect();
        keys.sort();
        keys
    }

    /// Stores `body` as `bucket/key`.
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) {
        let store = self.store(bucket);
        let payload = PutPayload::from(body.to_vec());
        block_on(store.put(&Path::from(key), payload))
            .unwrap_or_else(|e| panic!("put {bucket}/{key}: {e}"));
    }

    /// The bytes of `bucket/key`.
    pub fn get_object(&self, bucket: &str, key: &str) -> Vec<u8> {
        let store = self.store(bucket);
        let location = Path::from(key);
        block_on(async { store.get(&location).await?.bytes().await })
            .unwrap_or_else(|e| panic!("get {bucket}/{key}: {e}"))
            .to_vec()
    }

    /// An object_store client for `bucket` on this server (path-style, plain HTTP).
    fn store(&self, bucket: &str) -> AmazonS3 {
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap_or_else(|e| panic!("S3 client for {bucket}: {e}"))
    }

    /// Environment for an S3 client (object_store, AWS SDKs) aimed at this server.
    pub fn s3_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_DEFAULT_REGION", "us-east-1".to_owned()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
        ]
    }

    /// The moto server's log file.
    pub fn log_path(&self) -> &FsPath {
        &self.server.log
    }
}

/// Runs `future` to completion on a runtime of its own, on a thread of its own, so that the
/// synchronous helpers work from plain and from `#[tokio::test]` tests alike (a runtime
/// cannot be started, nor blocked on, from inside another one).
fn block_on<T: Send>(future: impl Future<Output = T> + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime")
                    .block_on(future)
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
