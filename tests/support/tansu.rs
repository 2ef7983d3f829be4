//! Tansu, a Kafka-API broker, as a child process.

use std::ffi::OsStr;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use tempfile::TempDir;

use super::{START_ATTEMPTS, START_TIMEOUT, Server, client_config, free_port, log_tail, tansu_bin};

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
