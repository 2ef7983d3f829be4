//! Shared helpers for the end-to-end tests: real servers on loopback, real clients.
//!
//! Every server a test starts (Tansu, moto, Prometheus) is a child process owned by a guard value: it
//! listens on a fresh loopback port, logs into a temporary directory, and is killed when the
//! guard drops — also when the test panics, in which case the tail of its log is printed.
//! The binaries come from `scripts/install-test-deps.sh` (run by `scripts/test.sh`), which
//! exports `FLOWLAKE_TANSU_BIN`, `FLOWLAKE_PYTHON` and `FLOWLAKE_PROMTOOL`; without them the
//! helpers look in the places that script installs to.
//!
//! This is test code: a helper that cannot do its job panics with a message saying why.

// Each test crate includes this module with `mod support;` and uses only part of it (and
// of the re-exports below).
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

// The mock cluster served by `flowlake broker`, every broker behind one handle, and a
// consumer-group member that can be SIGKILLed (tests/broker_conformance.rs).
pub mod brokers;
// One module per server or client; their items are re-exported so tests say `support::X`.
pub mod kafka;
pub mod moto;
pub mod prometheus;
pub mod python;
pub mod tansu;

pub use kafka::*;
pub use moto::Moto;
pub use prometheus::*;
pub use python::*;
pub use tansu::Tansu;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// The directory of this build's binaries (`flowlake` and the four stages), for scripts
/// that take `--bin-dir`.
pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_flowlake"))
        .parent()
        .unwrap_or_else(|| panic!("no directory above the flowlake binary"))
        .to_path_buf()
}

/// Runs `scripts/<script>` under bash with `args`, the test venv's python and Tansu, and
/// returns its (stdout, stderr); panics with both, after `failure`, when it exits non-zero.
pub fn run_script<I, S>(script: &str, args: I, failure: &str) -> (String, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let output = Command::new("bash")
        .arg(repo_root().join("scripts").join(script))
        .args(args)
        .env("FLOWLAKE_PYTHON", python())
        .env("FLOWLAKE_TANSU_BIN", tansu_bin())
        .output()
        .unwrap_or_else(|e| panic!("run scripts/{script}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{failure} ({}):\n{stdout}\n--- stderr ---\n{stderr}",
        output.status
    );
    (stdout, stderr)
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
// Processes and HTTP probes
// ---------------------------------------------------------------------------------------------

/// A minimal HTTP/1.1 exchange with a server on 127.0.0.1:`port` (`Connection: close`):
/// readiness probes and the mock broker's control port, callable from sync and async tests
/// alike. Returns the status code and the (de-chunked) body.
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

/// Runs `cmd` with `stdin` fed to it; returns whether it succeeded, its stdout and stderr.
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
