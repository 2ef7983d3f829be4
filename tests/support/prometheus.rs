//! Prometheus: the server (scraping the stages) and promtool, its linter and rule tester.

use std::fs;
use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

use super::{
    START_TIMEOUT, Server, eventually, free_port, http, log_tail, prometheus, promtool,
    run_with_stdin,
};

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
