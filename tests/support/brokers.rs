//! Every Kafka-API broker the suite runs on, behind one handle, plus the standalone mock
//! cluster (`flowlake broker`) and a consumer-group member in a process of its own that a
//! test can SIGKILL. `tests/broker_conformance.rs` pins what each broker does on a crash;
//! a test that kills or restarts a client must run on a broker that passes it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{START_TIMEOUT, Tansu, eventually, http, log_tail, python, repo_root};

/// The brokers the suite uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerKind {
    /// Tansu 0.6, `memory://` storage: fast, loses everything on a restart.
    TansuMemory,
    /// Tansu 0.6, `sqlite://` storage in a temporary directory: survives a restart.
    TansuSqlite,
    /// librdkafka's mock cluster served by `flowlake broker` (in memory).
    MockCluster,
}

/// A running broker of any [`BrokerKind`], stopped on drop.
pub struct TestBroker {
    /// What it is.
    pub kind: BrokerKind,
    /// `bootstrap.servers` for clients.
    pub bootstrap: String,
    inner: Inner,
}

enum Inner {
    Tansu {
        tansu: Tansu,
        // Holds the SQLite file; dropped after the broker.
        _dir: Option<TempDir>,
    },
    Mock(MockBroker),
}

impl TestBroker {
    /// Starts a broker of `kind` on loopback.
    pub fn start(kind: BrokerKind) -> TestBroker {
        let inner = match kind {
            BrokerKind::TansuMemory => Inner::Tansu {
                tansu: Tansu::start(),
                _dir: None,
            },
            BrokerKind::TansuSqlite => {
                let dir = tempfile::Builder::new()
                    .prefix("flowlake-sqlite-")
                    .tempdir()
                    .expect("tempdir");
                let tansu = Tansu::start_sqlite(&dir.path().join("tansu.db"));
                Inner::Tansu {
                    tansu,
                    _dir: Some(dir),
                }
            }
            BrokerKind::MockCluster => Inner::Mock(MockBroker::start(1, &[])),
        };
        let bootstrap = match &inner {
            Inner::Tansu { tansu, .. } => tansu.bootstrap.clone(),
            Inner::Mock(mock) => mock.bootstrap.clone(),
        };
        TestBroker {
            kind,
            bootstrap,
            inner,
        }
    }

    /// Creates `topics` as `(name, partitions)` and waits until clients see them.
    pub async fn create_topics(&self, topics: &[(&str, i32)]) {
        match &self.inner {
            Inner::Tansu { .. } => super::create_topics(&self.bootstrap, topics).await,
            Inner::Mock(mock) => mock.create_topics(topics),
        }
    }

    /// The Tansu broker, for restarts; `None` for the mock cluster.
    pub fn tansu(&mut self) -> Option<&mut Tansu> {
        match &mut self.inner {
            Inner::Tansu { tansu, .. } => Some(tansu),
            Inner::Mock(_) => None,
        }
    }

    /// The mock cluster, for outages; `None` for Tansu.
    pub fn mock(&self) -> Option<&MockBroker> {
        match &self.inner {
            Inner::Mock(mock) => Some(mock),
            Inner::Tansu { .. } => None,
        }
    }
}

/// `flowlake broker`: librdkafka's mock cluster in a process of its own, killed on drop.
pub struct MockBroker {
    /// `bootstrap.servers` for clients (every broker of the cluster).
    pub bootstrap: String,
    /// `http://127.0.0.1:PORT` of its control port.
    pub control: String,
    control_port: u16,
    child: Child,
    log: PathBuf,
    _dir: TempDir,
}

impl MockBroker {
    /// Starts a cluster of `brokers` brokers with `topics` (`(name, partitions)`) created.
    pub fn start(brokers: u32, topics: &[(&str, i32)]) -> MockBroker {
        let dir = tempfile::Builder::new()
            .prefix("flowlake-mock-broker-")
            .tempdir()
            .expect("tempdir");
        let log = dir.path().join("broker.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flowlake"));
        cmd.arg("broker").args(["--brokers", &brokers.to_string()]);
        for (name, partitions) in topics {
            cmd.args(["--topic", &format!("{name}:{partitions}")]);
        }
        let err = std::fs::File::create(&log).expect("broker log");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start flowlake broker: {e}"));
        let stdout = child.stdout.take().expect("stdout pipe");
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut bootstrap, mut control) = (None, None);
        let deadline = Instant::now() + START_TIMEOUT;
        while bootstrap.is_none() || control.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = received.recv_timeout(left).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "flowlake broker printed no addresses within {START_TIMEOUT:?}:\n{}",
                    log_tail(&log, 40)
                )
            });
            if let Some(v) = line.strip_prefix("bootstrap=") {
                bootstrap = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("control=") {
                control = Some(v.to_owned());
            }
        }
        let control = control.expect("control line");
        let control_port = control
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {control}"));
        MockBroker {
            bootstrap: bootstrap.expect("bootstrap line"),
            control,
            control_port,
            child,
            log,
            _dir: dir,
        }
    }

    /// Creates `topics` as `(name, partitions)` through the control port (the mock cluster
    /// does not implement CreateTopics) and waits until clients see them.
    pub fn create_topics(&self, topics: &[(&str, i32)]) {
        for (name, partitions) in topics {
            self.control_post(&format!("/topics/{name}/{partitions}"));
            let want = usize::try_from(*partitions).expect("partitions > 0");
            eventually(
                Duration::from_secs(10),
                &format!("topic {name} in metadata"),
                || (super::partition_count(&self.bootstrap, name) == Some(want)).then_some(()),
            );
        }
    }

    /// Takes broker `id` (1-based) down: its connections close and it refuses new ones,
    /// keeping its port and data.
    pub fn down(&self, id: u32) {
        self.control_post(&format!("/brokers/{id}/down"));
    }

    /// Brings broker `id` back up.
    pub fn up(&self, id: u32) {
        self.control_post(&format!("/brokers/{id}/up"));
    }

    fn control_post(&self, path: &str) {
        let (status, body) = http(self.control_port, "POST", path, &[])
            .unwrap_or_else(|e| panic!("POST {}{path}: {e}", self.control));
        assert_eq!(
            status,
            200,
            "POST {path}: {}",
            String::from_utf8_lossy(&body)
        );
    }

    /// The broker's log (stderr).
    pub fn log_tail(&self) -> String {
        log_tail(&self.log, 40)
    }
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of the flowlake broker log ---\n{}\n---",
                self.log_tail()
            );
        }
    }
}

/// What a [`GroupMember`] reported: `("assigned" | "revoked", partitions)`, in order.
type GroupEvents = Arc<Mutex<Vec<(String, Vec<i32>)>>>;

/// A consumer-group member in its own process (`tests/py/group_member.py`, confluent-kafka,
/// eager `range` assignment), so that it can be killed with SIGKILL. Killed on drop.
pub struct GroupMember {
    child: Option<Child>,
    events: GroupEvents,
}

impl GroupMember {
    /// Joins `group` on `topic` with the given session timeout (heartbeat every second).
    pub fn start(bootstrap: &str, topic: &str, group: &str, session: Duration) -> GroupMember {
        let script = repo_root().join("tests/py/group_member.py");
        let mut child = Command::new(python())
            .arg(&script)
            .args(["--bootstrap", bootstrap, "--topic", topic, "--group", group])
            .args(["--session-timeout-ms", &session.as_millis().to_string()])
            .args(["--heartbeat-interval-ms", "1000"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", script.display()));
        let stdout = child.stdout.take().expect("stdout pipe");
        let events: GroupEvents = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let event = value["event"].as_str().unwrap_or_default().to_owned();
                let partitions = value["partitions"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|p| p.as_i64().and_then(|p| i32::try_from(p).ok()))
                            .collect()
                    })
                    .unwrap_or_default();
                sink.lock().expect("events lock").push((event, partitions));
            }
        });
        GroupMember {
            child: Some(child),
            events,
        }
    }

    /// The partitions it holds now: `None` before its first assignment, empty after a
    /// revoke that no assignment followed yet.
    pub fn assignment(&self) -> Option<Vec<i32>> {
        let events = self.events.lock().expect("events lock");
        events
            .iter()
            .rev()
            .find(|(event, _)| event == "assigned" || event == "revoked")
            .map(|(event, partitions)| {
                if event == "assigned" {
                    partitions.clone()
                } else {
                    Vec::new()
                }
            })
    }

    /// Every assignment and revoke it reported, in order.
    pub fn history(&self) -> Vec<(String, Vec<i32>)> {
        self.events.lock().expect("events lock").clone()
    }

    /// Kills it with SIGKILL (no LeaveGroup, no commit) and waits until it is gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `timeout` for an assignment equal to `partitions`.
    pub fn wait_for(&self, partitions: &[i32], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.assignment().as_deref() == Some(partitions) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Waits until `members` hold every partition `0..partitions` between them, each one at
/// least one, and returns their assignments.
pub fn wait_for_split(
    members: &[&GroupMember],
    partitions: i32,
    timeout: Duration,
) -> Vec<Vec<i32>> {
    eventually(timeout, "the group to split the partitions", || {
        let held: Vec<Vec<i32>> = members
            .iter()
            .map(|m| m.assignment().unwrap_or_default())
            .collect();
        let mut all: Vec<i32> = held.iter().flatten().copied().collect();
        all.sort_unstable();
        (held.iter().all(|h| !h.is_empty()) && all == (0..partitions).collect::<Vec<_>>())
            .then_some(held)
    })
}
