//! Shared helpers for the end-to-end tests: real servers on loopback, real clients.
//!
//! Every server a test starts (Tansu, moto) is a child process owned by a guard value: it
//! listens on a fresh loopback port, logs into a temporary directory, and is killed when the
//! guard drops — also when the test panics, in which case the tail of its log is printed.
//! The binaries come from `scripts/install-test-deps.sh` (run by `scripts/test.sh`), which
//! exports `FLOWLAKE_TANSU_BIN`, `FLOWLAKE_PYTHON` and `FLOWLAKE_PROMTOOL`; without them the
//! helpers look in the places that script installs to.
//!
//! This is test code: a helper that cannot do its job panics with a message saying why.

// Each test crate includes this module with `mod support;` and uses only part of it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

// The mock cluster served by `flowlake broker`, every broker behind one handle, and a
// consumer-group member that can be SIGKILLed (tests/broker_conformance.rs).
pub mod brokers;

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tempfile::TempDir;

/// How long a server may take to become ready before the test gives up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// `consume_all` stops this long after the last record once it has what it expected.
const QUIET_PERIOD: Duration = Duration::from_secs(2);
/// Tansu exits when its port was taken between `free_port` and its bind; it is retried.
const START_ATTEMPTS: usize = 5;

// ---------------------------------------------------------------------------------------------
// Where things are
// ---------------------------------------------------------------------------------------------

/// The repository root: the nearest ancestor of this crate holding `tests/py/requirements.txt`.
pub fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|dir| dir.join("tests/py/requirements.txt").is_file())
        .unwrap_or_else(|| panic!("no tests/py/requirements.txt above {}", manifest.display()))
        .to_path_buf()
}

/// `${FLOWLAKE_CACHE:-$HOME/.cache/flowlake}`, where the installer puts what it installs.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("FLOWLAKE_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => home().join(".cache/flowlake"),
    }
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The first of: `$env_var`, then `candidates` in order, that is an existing file.
fn locate(env_var: &str, candidates: Vec<Option<PathBuf>>, what: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{env_var}={} does not exist; run scripts/test.sh (it installs {what})",
            path.display()
        );
        return path;
    }
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{what} not found ({env_var} unset); run scripts/test.sh (it installs {what})")
        })
}

/// The Tansu broker binary.
pub fn tansu_bin() -> PathBuf {
    let cargo_home = std::env::var_os("CARGO_HOME").map(PathBuf::from);
    locate(
        "FLOWLAKE_TANSU_BIN",
        vec![
            on_path("tansu"),
            cargo_home.map(|h| h.join("bin/tansu")),
            Some(home().join(".cargo/bin/tansu")),
        ],
        "tansu",
    )
}

/// The test venv's python, with duckdb, pyarrow, fastavro, confluent-kafka and moto.
pub fn python() -> PathBuf {
    locate(
        "FLOWLAKE_PYTHON",
        vec![Some(cache_dir().join("venv/bin/python"))],
        "the python venv",
    )
}

/// `promtool`, from Debian's `prometheus` package.
pub fn promtool() -> PathBuf {
    locate(
        "FLOWLAKE_PROMTOOL",
        vec![
            on_path("promtool"),
            Some(cache_dir().join("prometheus/usr/bin/promtool")),
        ],
        "promtool",
    )
}

/// The Prometheus server, from the same Debian package as promtool.
pub fn prometheus() -> PathBuf {
    locate(
        "FLOWLAKE_PROMETHEUS",
        vec![
            on_path("prometheus"),
            Some(cache_dir().join("prometheus/usr/bin/prometheus")),
        ],
        "prometheus",
    )
}

/// `kubectl`, when one is installed (`FLOWLAKE_KUBECTL` or on `PATH`): its built-in
/// kustomize cross-checks the manifests' rendering. No registry the tests install from
/// carries it, so it is optional.
pub fn kubectl() -> Option<PathBuf> {
    match std::env::var_os("FLOWLAKE_KUBECTL").filter(|p| !p.is_empty()) {
        Some(path) => Some(PathBuf::from(path)).filter(|p| p.is_file()),
        None => on_path("kubectl"),
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read, release).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Polls `probe` every 50 ms until it returns `Some`, or panics naming `what` after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last `lines` lines of a log file, for failure messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A child process that is killed and reaped when dropped.
struct Server {
    child: Child,
    log: PathBuf,
    name: &'static str,
}

impl Server {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Server {
        let out = File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log file handle");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({:?}): {e}", cmd.get_program()));
        Server { child, log, name }
    }

    /// `Some(status)` once the process has exited.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    fn kill(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of the {} log {} ---\n{}\n---",
                self.name,
                self.log.display(),
                log_tail(&self.log, 60)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tansu, a Kafka-API broker
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Storage {
    /// `memory://tansu/`: lost when the process stops.
    Memory,
    /// `sqlite://`: survives a restart. Tansu resolves the URL's path against its working
    /// directory (an absolute path gets the cwd prepended), so the broker runs in `dir` and
    /// is given `sqlite:///<file>`.
    Sqlite { dir: PathBuf, file: String },
}

/// A Tansu broker on 127.0.0.1, killed on drop.
///
/// ```ignore
/// let tansu = Tansu::start();
/// create_topics(&tansu.bootstrap, &[("flows.raw", 3)]).await;
/// ```
pub struct Tansu {
    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub bootstrap: String,
    port: u16,
    storage: Storage,
    server: Option<Server>,
    spawns: usize,
    tmpdir: TempDir,
}

impl Tansu {
    /// A broker with in-memory storage.
    pub fn start() -> Tansu {
        Tansu::launch(Storage::Memory)
    }

    /// A broker storing into the SQLite file `path` (created if missing; its directory must
    /// exist). Start a new one on the same file, or [`Tansu::restart`], to see the data again.
    pub fn start_sqlite(path: &Path) -> Tansu {
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir().expect("cwd").join(path)
        };
        let dir = path
            .parent()
            .expect("sqlite path has a parent")
            .to_path_buf();
        let file = path
            .file_name()
            .and_then(OsStr::to_str)
            .expect("sqlite file name is UTF-8")
            .to_owned();
        assert!(dir.is_dir(), "directory {} does not exist", dir.display());
        Tansu::launch(Storage::Sqlite { dir, file })
    }

    fn launch(storage: Storage) -> Tansu {
        let mut tansu = Tansu {
            bootstrap: String::new(),
            port: 0,
            storage,
            server: None,
            spawns: 0,
            tmpdir: tempfile::Builder::new()
                .prefix("flowlake-tansu-")
                .tempdir()
                .expect("tempdir"),
        };
        for attempt in 1..=START_ATTEMPTS {
            tansu.port = free_port();
            tansu.bootstrap = format!("127.0.0.1:{}", tansu.port);
            match tansu.spawn_and_wait() {
                Ok(()) => return tansu,
                Err(e) if attempt < START_ATTEMPTS && e.contains("AddrInUse") => continue,
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The port the broker listens on (kept across [`Tansu::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id of the running broker (`None` after [`Tansu::kill`]): benchmarks read
    /// its CPU time from `/proc/<pid>/stat`.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(|server| server.child.id())
    }

    /// The log file of the running (or last) broker process.
    pub fn log_path(&self) -> PathBuf {
        self.tmpdir
            .path()
            .join(format!("tansu.{}.log", self.spawns))
    }

    /// Kills the broker at once (SIGKILL), as a crash would. [`Tansu::restart`] brings it back.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.kill();
        }
    }

    /// Kills the broker and starts it again on the same port and storage (memory storage
    /// comes back empty), then waits until it answers metadata requests.
    pub fn restart(&mut self) {
        self.kill();
        // The old socket may linger for a moment; a bind failure here is retried on the same
        // port, since clients already hold this address.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(e) if e.contains("AddrInUse") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        self.spawns += 1;
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let (cwd, url) = match &self.storage {
            Storage::Memory => (
                self.tmpdir.path().to_path_buf(),
                "memory://tansu/".to_owned(),
            ),
            Storage::Sqlite { dir, file } => (dir.clone(), format!("sqlite:///{file}")),
        };
        let mut cmd = Command::new(tansu_bin());
        cmd.arg("broker")
            .args(["--listener-url", &listener])
            .args(["--advertised-listener-url", &listener])
            .args(["--storage-engine", &url])
            // Tansu reads a `.env` from its working directory and these variables from the
            // environment; neither may leak in from the developer's shell.
            .current_dir(&cwd)
            .env_remove("CLUSTER_ID")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("STORAGE_ENGINE")
            .env_remove("SCHEMA_REGISTRY")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("NO_COLOR", "1");
        // Tansu logs errors only unless told otherwise (it reads RUST_LOG).
        match std::env::var("FLOWLAKE_TANSU_LOG") {
            Ok(filter) => cmd.env("RUST_LOG", filter),
            Err(_) => cmd.env_remove("RUST_LOG"),
        };
        let log = self.log_path();
        let mut server = Server::spawn("tansu", cmd, log.clone());

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = server.exited() {
                let tail = log_tail(&log, 40);
                return Err(format!(
                    "tansu exited ({status}) before it was ready on {}; log {}:\n{tail}",
                    self.bootstrap,
                    log.display()
                ));
            }
            // Tansu prints "ready in …" once its listener is bound; until then the port may
            // belong to another test's broker, so metadata alone proves nothing.
            let ready = fs::read_to_string(&log).is_ok_and(|t| t.contains("ready in"));
            if ready && tcp_open(self.port) && metadata_ok(&self.bootstrap) {
                self.server = Some(server);
                return Ok(());
            }
            if Instant::now() > deadline {
                let tail = log_tail(&log, 40);
                return Err(format!(
                    "tansu did not answer metadata on {} within {START_TIMEOUT:?}; log {}:\n{tail}",
                    self.bootstrap,
                    log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn tcp_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

fn metadata_ok(bootstrap: &str) -> bool {
    let Ok(consumer) = client_config(bootstrap).create::<BaseConsumer>() else {
        return false;
    };
    consumer
        .fetch_metadata(None, Duration::from_secs(2))
        .is_ok_and(|md| !md.brokers().is_empty())
}

/// The client settings every helper uses; tests may start from it for their own clients.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "10000");
    config
}

/// Partition counts of `topic` as the broker reports them, `None` while it does not know it.
pub fn partition_count(bootstrap: &str, topic: &str) -> Option<usize> {
    let consumer: BaseConsumer = client_config(bootstrap).create().expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .ok()?;
    let t = md.topics().iter().find(|t| t.name() == topic)?;
    if t.error().is_some() || t.partitions().is_empty() {
        return None;
    }
    if t.partitions().iter().any(|p| p.leader() < 0) {
        return None;
    }
    Some(t.partitions().len())
}

/// Creates `topics` as `(name, partitions)` with replication 1 and waits until the broker
/// reports every partition with a leader. A topic that already exists is an error.
pub async fn create_topics(bootstrap: &str, topics: &[(&str, i32)]) {
    create_topics_with(bootstrap, topics, &[]).await;
}

/// Creates compacted topics (`cleanup.policy=compact`, as for `k8s.identity` and the
/// checkpoint topic). Tansu 0.6 accepts and reports the setting but does not compact, so a
/// reader sees every version of a key; the last one wins.
pub async fn create_compacted_topics(bootstrap: &str, topics: &[(&str, i32)]) {
    create_topics_with(bootstrap, topics, &[("cleanup.policy", "compact")]).await;
}

/// Creates `topics` with the topic configs `configs`; see [`create_topics`].
pub async fn create_topics_with(bootstrap: &str, topics: &[(&str, i32)], configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> =
        client_config(bootstrap).create().expect("admin client");
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| {
            configs.iter().fold(
                NewTopic::new(name, *partitions, TopicReplication::Fixed(1)),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(new_topics.iter(), &opts)
        .await
        .unwrap_or_else(|e| panic!("create topics {topics:?} on {bootstrap}: {e}"));
    for result in results {
        if let Err((topic, code)) = result {
            panic!("create topic {topic} on {bootstrap}: {code:?}");
        }
    }
    for (name, partitions) in topics {
        let want = usize::try_from(*partitions).expect("partitions > 0");
        eventually(
            Duration::from_secs(10),
            &format!("topic {name} in metadata"),
            || (partition_count(bootstrap, name) == Some(want)).then_some(()),
        );
    }
}

/// One record for [`produce_records`].
#[derive(Clone, Copy, Debug, Default)]
pub struct TestRecord<'a> {
    /// The message key.
    pub key: Option<&'a [u8]>,
    /// The message value.
    pub payload: &'a [u8],
    /// Headers, in order.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// A fixed partition; `None` lets the partitioner choose (by key).
    pub partition: Option<i32>,
}

/// `count` distinct Hubble exporter lines: the real samples of `files` (under
/// `tests/fixtures/hubble/`) cycled, each copy with its own `flow.uuid` —
/// `{prefix}-{index:05}`, which becomes the flow's `event_id` — so every input is a
/// different flow and can be counted in the lake.
pub fn unique_hubble_lines(files: &[&str], count: usize, prefix: &str) -> Vec<String> {
    let dir = repo_root().join("tests/fixtures/hubble");
    let mut samples = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        for line in text.lines() {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{file}: {e}"));
            samples.push(value);
        }
    }
    (0..count)
        .map(|i| {
            let mut record = samples[i % samples.len()].clone();
            record["flow"]["uuid"] = serde_json::Value::String(format!("{prefix}-{i:05}"));
            record.to_string()
        })
        .collect()
}

/// Produces `(key, payload)` records to `topic` and waits for every acknowledgement.
/// Returns `(partition, offset)` per record, in order.
pub async fn produce(
    bootstrap: &str,
    topic: &str,
    records: &[(Option<&[u8]>, &[u8])],
) -> Vec<(i32, i64)> {
    let records: Vec<TestRecord<'_>> = records
        .iter()
        .map(|(key, payload)| TestRecord {
            key: *key,
            payload,
            ..TestRecord::default()
        })
        .collect();
    produce_records(bootstrap, topic, &records).await
}

/// Produces `records` to `topic` with an idempotent producer and waits for every
/// acknowledgement; panics on the first failed delivery. Returns `(partition, offset)` per
/// record, in order.
///
/// Each record is a batch of its own, so that a consumer can resume at any offset. Tansu
/// 0.6 (`memory://` storage) answers a fetch at an offset inside a batch with the batches
/// that start at or after it: the rest of the batch the offset falls in is skipped, for
/// good. A stage restarted from a committed offset (kill test, rebalance) would lose those
/// records through no fault of its own. `test_input_can_be_resumed_at_any_offset` in
/// `tests/support_smoke.rs` pins both the broker's behaviour and this workaround.
pub async fn produce_records(
    bootstrap: &str,
    topic: &str,
    records: &[TestRecord<'_>],
) -> Vec<(i32, i64)> {
    produce_records_with(bootstrap, topic, records, &[("batch.num.messages", "1")]).await
}

/// [`produce_records`] with extra producer `settings` (e.g. larger batches).
pub async fn produce_records_with(
    bootstrap: &str,
    topic: &str,
    records: &[TestRecord<'_>],
    settings: &[(&str, &str)],
) -> Vec<(i32, i64)> {
    let mut config = client_config(bootstrap);
    config
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "15000")
        .set("linger.ms", "5");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    let producer: FutureProducer = config.create().expect("producer");
    let mut pending = Vec::with_capacity(records.len());
    for r in records {
        let headers = r
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |h, (key, value)| {
                h.insert(Header {
                    key,
                    value: Some(*value),
                })
            });
        let mut record = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(r.payload)
            .headers(headers);
        if let Some(key) = r.key {
            record = record.key(key);
        }
        if let Some(partition) = r.partition {
            record = record.partition(partition);
        }
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((e, _)) => panic!("enqueue to {topic}: {e}"),
            }
        }
    }
    let mut acks = Vec::with_capacity(pending.len());
    for delivery in pending {
        match delivery.await.expect("producer dropped a delivery") {
            Ok(d) => acks.push((d.partition, d.offset)),
            Err((e, _)) => panic!("produce to {topic} on {bootstrap}: {e}"),
        }
    }
    acks
}

/// Reads `topic`, all partitions from the beginning, without a consumer group (assign, no
/// commits). Stops when at least `expected_at_least` records arrived and none came for 2 s,
/// or at `timeout` (then returns what it has: the caller asserts on the count). Records are
/// in arrival order: per partition by offset, partitions interleaved.
pub fn consume_all(
    bootstrap: &str,
    topic: &str,
    expected_at_least: usize,
    timeout: Duration,
) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", format!("flowlake-test-{}", unique_suffix()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer");
    let partitions = eventually(timeout, &format!("topic {topic} in metadata"), || {
        partition_count(bootstrap, topic)
    });
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        let p = i32::try_from(p).expect("partition index fits i32");
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .expect("add partition");
    }
    consumer.assign(&assignment).expect("assign");

    let deadline = Instant::now() + timeout;
    let mut last_record = Instant::now();
    let mut out = Vec::new();
    while Instant::now() < deadline {
        if out.len() >= expected_at_least && last_record.elapsed() >= QUIET_PERIOD {
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(msg)) => {
                out.push(msg.detach());
                last_record = Instant::now();
            }
            Some(Err(e)) => eprintln!("consume {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// The value of the first header named `name`, if any.
pub fn header<'m>(msg: &'m OwnedMessage, name: &str) -> Option<&'m [u8]> {
    msg.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
}

/// `header` as UTF-8.
pub fn header_str<'m>(msg: &'m OwnedMessage, name: &str) -> Option<&'m str> {
    header(msg, name).map(|v| std::str::from_utf8(v).expect("header is UTF-8"))
}

fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------------------------
// Prometheus, the server
// ---------------------------------------------------------------------------------------------

/// A Prometheus server on 127.0.0.1 scraping `targets` every second, with its data in a
/// temporary directory; killed on drop.
pub struct Prometheus {
    /// `http://127.0.0.1:PORT`, for the HTTP API.
    pub url: String,
    server: Server,
    tmpdir: TempDir,
}

impl Prometheus {
    /// Starts Debian's Prometheus server scraping `targets` (`host:port`, path `/metrics`)
    /// under job `job`, and waits until it is ready.
    pub fn start(job: &str, targets: &[String]) -> Prometheus {
        let tmpdir = tempfile::Builder::new()
            .prefix("flowlake-prometheus-")
            .tempdir()
            .expect("tempdir");
        let config = tmpdir.path().join("prometheus.yml");
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ),
        )
        .expect("write prometheus.yml");
        let port = free_port();
        let mut cmd = Command::new(prometheus());
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmpdir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .current_dir(tmpdir.path());
        let log = tmpdir.path().join("prometheus.log");
        let mut server = Server::spawn("prometheus", cmd, log);
        let url = format!("http://127.0.0.1:{port}");
        eventually(START_TIMEOUT, "prometheus /-/ready", || {
            assert!(
                server.exited().is_none(),
                "prometheus exited:\n{}",
                log_tail(&server.log, 30)
            );
            matches!(http(port, "GET", "/-/ready", b""), Ok((200, _))).then_some(())
        });
        Prometheus {
            url,
            server,
            tmpdir,
        }
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        &self.server.log
    }
}

// ---------------------------------------------------------------------------------------------
// moto, an S3 server
// ---------------------------------------------------------------------------------------------

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

    /// Creates bucket `name` (path-style `PUT /name`).
    pub fn create_bucket(&self, name: &str) {
        let (status, body) = http(self.port, "PUT", &format!("/{name}"), &[])
            .unwrap_or_else(|e| panic!("PUT /{name}: {e}"));
        assert_eq!(
            status,
            200,
            "create bucket {name}: {}",
            String::from_utf8_lossy(&body)
        );
    }

    /// Keys under `prefix` in `bucket`, sorted.
    pub fn list_objects(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let path = format!(
            "/{bucket}?list-type=2&max-keys=100000&prefix={}",
            percent_encode(prefix)
        );
        let (status, body) =
            http(self.port, "GET", &path, &[]).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "list {bucket}/{prefix}: {body}");
        let mut keys: Vec<String> = body
            .split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(xml_unescape)
            .collect();
        keys.sort();
        keys
    }

    /// Stores `body` as `bucket/key`.
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) {
        let path = format!("/{bucket}/{}", percent_encode_path(key));
        let (status, resp) =
            http(self.port, "PUT", &path, body).unwrap_or_else(|e| panic!("PUT {path}: {e}"));
        assert_eq!(
            status,
            200,
            "put {bucket}/{key}: {}",
            String::from_utf8_lossy(&resp)
        );
    }

    /// The bytes of `bucket/key`.
    pub fn get_object(&self, bucket: &str, key: &str) -> Vec<u8> {
        let path = format!("/{bucket}/{}", percent_encode_path(key));
        let (status, body) =
            http(self.port, "GET", &path, &[]).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(
            status,
            200,
            "get {bucket}/{key}: {}",
            String::from_utf8_lossy(&body)
        );
        body
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
    pub fn log_path(&self) -> &Path {
        &self.server.log
    }
}

/// A minimal HTTP/1.1 exchange with the moto server on 127.0.0.1:`port` (`Connection: close`).
/// Returns the status code and the (de-chunked) body.
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    // moto does not check signatures, but it treats a request without credentials as
    // anonymous and refuses it object reads; a form content type would make it parse away
    // the body of a PUT.
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/s3/aws4_request, \
         SignedHeaders=host, Signature=0\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut rest = raw[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    if chunked {
        let mut body = Vec::new();
        loop {
            let eol = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| bad("bad chunk"))?;
            let size_line = String::from_utf8_lossy(&rest[..eol]).to_string();
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                break;
            }
            let start = eol + 2;
            body.extend_from_slice(
                rest.get(start..start + size)
                    .ok_or_else(|| bad("short chunk"))?,
            );
            rest = rest.get(start + size + 2..).unwrap_or_default().to_vec();
        }
        rest = body;
    }
    Ok((status, rest))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn percent_encode_path(s: &str) -> String {
    s.split('/')
        .map(percent_encode)
        .collect::<Vec<_>>()
        .join("/")
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

// ---------------------------------------------------------------------------------------------
// Python readers and promtool
// ---------------------------------------------------------------------------------------------

/// Runs `tests/py/<script>` with the venv python and returns its stdout; panics with its
/// stderr when it fails.
pub fn run_python(script: &str, args: &[&str]) -> String {
    run_python_stdin(script, args, b"")
}

/// [`run_python`] with `stdin` fed to the script.
pub fn run_python_stdin(script: &str, args: &[&str], stdin: &[u8]) -> String {
    let path = repo_root().join("tests/py").join(script);
    assert!(path.is_file(), "{} does not exist", path.display());
    let mut cmd = Command::new(python());
    cmd.arg(&path).args(args);
    let (ok, stdout, stderr) = run_with_stdin(cmd, stdin);
    assert!(
        ok,
        "{script} {args:?} failed:\n--- stderr ---\n{stderr}\n--- stdout ---\n{stdout}"
    );
    stdout
}

/// [`run_python`] for scripts that print one JSON document.
pub fn run_python_json(script: &str, args: &[&str]) -> serde_json::Value {
    let out = run_python(script, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{script} printed no JSON ({e}):\n{out}"))
}

fn run_with_stdin(mut cmd: Command, stdin: &[u8]) -> (bool, String, String) {
    let program = format!("{:?}", cmd.get_program());
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let mut pipe = child.stdin.take().expect("stdin pipe");
    let input = stdin.to_vec();
    // A separate writer thread: a child that prints a lot before reading all its input would
    // otherwise deadlock against us.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait {program}: {e}"));
    let _ = writer.join();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Pipes Prometheus exposition `text` into `promtool check metrics`; panics with promtool's
/// findings when it reports any (it exits non-zero on lint problems too).
pub fn promtool_check_metrics(text: &str) {
    let mut cmd = Command::new(promtool());
    cmd.args(["check", "metrics"]);
    let (ok, stdout, stderr) = run_with_stdin(cmd, text.as_bytes());
    assert!(
        ok,
        "promtool check metrics failed:\n{stdout}{stderr}\n--- metrics text ---\n{text}"
    );
}

/// `promtool check rules FILE…`; panics with its output on failure.
pub fn promtool_check_rules(files: &[&Path]) {
    let mut cmd = Command::new(promtool());
    cmd.args(["check", "rules"]).args(files);
    let (ok, stdout, stderr) = run_with_stdin(cmd, b"");
    assert!(
        ok,
        "promtool check rules {files:?} failed:\n{stdout}{stderr}"
    );
}

/// `promtool test rules FILE…` (rule unit tests); panics with its output on failure.
pub fn promtool_test_rules(files: &[&Path]) -> String {
    let mut cmd = Command::new(promtool());
    cmd.args(["test", "rules"]).args(files);
    let (ok, stdout, stderr) = run_with_stdin(cmd, b"");
    assert!(
        ok,
        "promtool test rules {files:?} failed:\n{stdout}{stderr}"
    );
    stdout
}
