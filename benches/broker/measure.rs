//! Measuring a run: the processor wrapper that samples wall clock and CPU (this process's
//! and the broker's) from the first record to the last acknowledgement, and what a run
//! measured.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use flowlake_runtime::{Input, Outputs, Processor, ProcessorError, Rejection, TopicPartition};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::RunKind;

/// `/proc/*/stat` counts CPU time in USER_HZ ticks, which Linux fixes at 100 for user space
/// (reading `sysconf(_SC_CLK_TCK)` would need `unsafe`, which the workspace forbids).
const USER_HZ: u64 = 100;

/// Counters the benchmark reads while a run goes on.
#[derive(Default)]
pub(super) struct Progress {
    pub(super) processed: AtomicU64,
    pub(super) outputs: AtomicU64,
    pub(super) rejected: AtomicU64,
}

/// Wall clock and CPU times at one moment.
#[derive(Clone, Copy)]
pub(super) struct Sample {
    pub(super) at: Instant,
    pub(super) process_cpu: Duration,
    pub(super) broker_cpu: Duration,
}

impl Sample {
    pub(super) fn take(broker_pid: u32) -> std::io::Result<Sample> {
        Ok(Sample {
            at: Instant::now(),
            process_cpu: cpu_time(Path::new("/proc/self/stat"))?,
            broker_cpu: cpu_time(&Path::new("/proc").join(broker_pid.to_string()).join("stat"))?,
        })
    }
}

/// From the first record processed to the point where all its output was acknowledged.
pub(super) struct Window {
    pub(super) start: Sample,
    pub(super) end: Sample,
}

/// User + system CPU time of the process whose `stat` file is `path` (all its threads).
pub(super) fn cpu_time(path: &Path) -> std::io::Result<Duration> {
    let stat = std::fs::read_to_string(path)?;
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, "unexpected stat line");
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    // utime and stime are fields 14 and 15, so the 12th and 13th after the name.
    let after_name = stat.rsplit_once(')').ok_or_else(invalid)?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(invalid)
    };
    let (user, system) = (ticks(11)?, ticks(12)?);
    Ok(Duration::from_millis((user + system) * 1000 / USER_HZ))
}

/// Wraps a stage's processor: counts records and outputs, samples the clocks at the first
/// record, and cancels `shutdown` at the N-th. `run_stage` still finishes that batch and
/// sends its outputs before it sees the cancellation; its drain calls `on_shutdown`, waits
/// for every acknowledgement, checkpoints and calls `on_shutdown` again: the end of the
/// window is sampled at that second call, when all output is durable.
pub(super) struct Measured<P> {
    pub(super) inner: P,
    pub(super) expected: u64,
    pub(super) processed: u64,
    pub(super) first: Option<std::io::Result<Sample>>,
    pub(super) window: Option<oneshot::Sender<std::io::Result<Window>>>,
    pub(super) progress: Arc<Progress>,
    pub(super) shutdown: CancellationToken,
    pub(super) broker_pid: u32,
    /// `on_shutdown` calls so far.
    pub(super) shutdown_calls: u32,
}

impl<P: Processor> Processor for Measured<P> {
    fn process(&mut self, input: &Input<'_>, out: &mut Outputs) -> Result<(), Rejection> {
        if self.first.is_none() {
            self.first = Some(Sample::take(self.broker_pid));
        }
        let before = out.len();
        let result = self.inner.process(input, out);
        self.processed += 1;
        self.progress
            .processed
            .store(self.processed, Ordering::Relaxed);
        self.progress
            .outputs
            .fetch_add((out.len() - before) as u64, Ordering::Relaxed);
        if result.is_err() {
            self.progress.rejected.fetch_add(1, Ordering::Relaxed);
        }
        if self.processed == self.expected {
            self.shutdown.cancel();
        }
        result
    }

    fn flush_due(
        &mut self,
        now: SystemTime,
        out: &mut Outputs,
    ) -> impl Future<Output = Result<(), ProcessorError>> + Send {
        self.inner.flush_due(now, out)
    }

    fn on_shutdown(
        &mut self,
        out: &mut Outputs,
    ) -> impl Future<Output = Result<(), ProcessorError>> + Send {
        self.shutdown_calls += 1;
        if self.processed == self.expected
            && self.shutdown_calls == 2
            && let Some(sender) = self.window.take()
        {
            let window = self
                .first
                .take()
                .unwrap_or_else(|| Err(std::io::Error::other("no record was processed")))
                .and_then(|start| {
                    Ok(Window {
                        start,
                        end: Sample::take(self.broker_pid)?,
                    })
                });
            // The receiver is gone only when the benchmark already gave up on this run.
            let _ = sender.send(window);
        }
        self.inner.on_shutdown(out)
    }

    fn held_from(&self, partition: &TopicPartition) -> Option<i64> {
        self.inner.held_from(partition)
    }

    fn on_revoked(&mut self, partitions: &[TopicPartition]) {
        self.inner.on_revoked(partitions);
    }

    fn awaits_checkpoint(&self) -> bool {
        self.inner.awaits_checkpoint()
    }
}

/// One measured run.
pub(super) struct RunResult {
    pub(super) kind: RunKind,
    pub(super) round: usize,
    pub(super) records: u64,
    pub(super) wall: Duration,
    pub(super) cpu: Duration,
    pub(super) broker_cpu: Duration,
}

impl RunResult {
    pub(super) fn records_per_second(&self) -> f64 {
        self.records as f64 / self.wall.as_secs_f64()
    }

    pub(super) fn cpu_micros_per_record(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.records as f64
    }

    pub(super) fn broker_cpu_micros_per_record(&self) -> f64 {
        self.broker_cpu.as_secs_f64() * 1e6 / self.records as f64
    }

    /// Cores this process kept busy on average.
    pub(super) fn process_cores(&self) -> f64 {
        self.cpu.as_secs_f64() / self.wall.as_secs_f64()
    }

    /// Cores the broker kept busy on average.
    pub(super) fn broker_cores(&self) -> f64 {
        self.broker_cpu.as_secs_f64() / self.wall.as_secs_f64()
    }
}
