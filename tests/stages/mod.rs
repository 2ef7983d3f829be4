//! Helpers for running the stage binaries as separate processes, as they run in production.

#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::support;

/// Directory holding the workspace's binaries (the same profile as this test).
pub fn bin_dir() -> PathBuf {
    let cli = PathBuf::from(env!("CARGO_BIN_EXE_flowlake"));
    cli.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Path of a stage binary; panics with the fix when it was not built.
pub fn stage_bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A stage process with its HTTP port; killed on drop unless terminated.
pub struct StageProcess {
    pub name: String,
    pub http: SocketAddr,
    pub log: PathBuf,
    child: Option<Child>,
}

impl StageProcess {
    /// Starts `binary` with `args` (plus `--http-listen` on a free port) and `env`, logging
    /// to a file in `log_dir`.
    pub fn start(
        binary: &str,
        args: &[String],
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> StageProcess {
        let http: SocketAddr = format!("127.0.0.1:{}", support::free_port())
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let log = log_dir.join(format!("{binary}.log"));
        let out =
            fs::File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let mut command = Command::new(stage_bin(binary));
        command
            .args(args)
            .arg("--http-listen")
            .arg(http.to_string())
            .env("RUST_LOG", "info,librdkafka=warn")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary}: {e}"));
        StageProcess {
            name: binary.to_owned(),
            http,
            log,
            child: Some(child),
        }
    }

    /// GET `path` on the stage's HTTP port: (status, body).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.http, path)
    }

    /// The stage's /metrics text (waits for the port to answer).
    pub fn metrics(&self) -> String {
        support::eventually(
            Duration::from_secs(30),
            &format!("{} /metrics", self.name),
            || {
                self.get("/metrics")
                    .filter(|(status, _)| *status == 200)
                    .map(|(_, body)| body)
            },
        )
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        let Some(mut child) = self.child.take() else {
            panic!("{} already stopped", self.name)
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "{} did not exit within {within:?} of SIGTERM:\n{}",
                    self.name,
                    support::log_tail(&self.log, 40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the stage with SIGKILL, as a crash or an OOM kill would: no drain, no final
    /// commit. Returns once the process is gone.
    pub fn kill9(&mut self) -> ExitStatus {
        let Some(mut child) = self.child.take() else {
            panic!("{} already stopped", self.name)
        };
        // std's Child::kill sends SIGKILL on Unix.
        child
            .kill()
            .unwrap_or_else(|e| panic!("kill -9 {}: {e}", self.name));
        child
            .wait()
            .unwrap_or_else(|e| panic!("wait for {}: {e}", self.name))
    }

    /// Waits up to `within` for the process to exit by itself (a crash the test injected);
    /// its status, or None while it still runs.
    pub fn exited(&mut self, within: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Last lines of the stage's log.
    pub fn log_tail(&self) -> String {
        support::log_tail(&self.log, 40)
    }
}

impl Drop for StageProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Minimal HTTP/1.1 GET: enough for /metrics and the probes.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Some((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Sum of every sample of `metric` (any labels) in Prometheus text.
pub fn metric_sum(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
