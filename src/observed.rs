//! A transparent [`Processor`] wrapper that counts what a stage did, so the in-process
//! demo can report progress and tell when the pipeline has gone quiet.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use flowlake_runtime::{Input, Outputs, Processor, ProcessorError, Rejection, TopicPartition};

/// Counters of one stage.
#[derive(Debug, Default)]
pub struct StageProgress {
    /// Records read.
    pub inputs: AtomicU64,
    /// Records produced to Kafka.
    pub outputs: AtomicU64,
    /// Records dead-lettered.
    pub rejected: AtomicU64,
    /// Per partition, whether the stage still holds records in memory.
    held: Mutex<HashMap<TopicPartition, bool>>,
}

impl StageProgress {
    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// True when the stage holds no record in memory (every window emitted, every file
    /// written).
    pub fn holds_nothing(&self) -> bool {
        self.held
            .lock()
            .map(|h| h.values().all(|held| !held))
            .unwrap_or(false)
    }
}

/// `inner`, counted into `progress`.
pub struct Observed<P> {
    inner: P,
    progress: Arc<StageProgress>,
}

impl<P> Observed<P> {
    /// Wraps `inner`.
    pub fn new(inner: P, progress: Arc<StageProgress>) -> Self {
        Observed { inner, progress }
    }
}

impl<P: Processor> Processor for Observed<P> {
    fn process(&mut self, input: &Input<'_>, out: &mut Outputs) -> Result<(), Rejection> {
        let before = out.len();
        let result = self.inner.process(input, out);
        self.progress.inputs.fetch_add(1, Ordering::Relaxed);
        self.progress
            .outputs
            .fetch_add((out.len() - before) as u64, Ordering::Relaxed);
        if result.is_err() {
            self.progress.rejected.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn flush_due(
        &mut self,
        now: SystemTime,
        out: &mut Outputs,
    ) -> Result<(), ProcessorError> {
        let before = out.len();
        let result = self.inner.flush_due(now, out).await;
        self.progress
            .outputs
            .fetch_add((out.len() - before) as u64, Ordering::Relaxed);
        result
    }

    async fn on_shutdown(&mut self, out: &mut Outputs) -> Result<(), ProcessorError> {
        let before = out.len();
        let result = self.inner.on_shutdown(out).await;
        self.progress
            .outputs
            .fetch_add((out.len() - before) as u64, Ordering::Relaxed);
        result
    }

    fn held_from(&self, partition: &TopicPartition) -> Option<i64> {
        let held = self.inner.held_from(partition);
        if let Ok(mut map) = self.progress.held.lock() {
            map.insert(partition.clone(), held.is_some());
        }
        held
    }

    fn on_revoked(&mut self, partitions: &[TopicPartition]) {
        self.inner.on_revoked(partitions);
    }

    fn checkpoint_state(&self, partition: &TopicPartition) -> Option<String> {
        let state = self.inner.checkpoint_state(partition);
        // Aggregate keeps its windows in the checkpoint rather than holding offsets: a
        // partition with open windows still holds records for the demo's purposes.
        if let Some(state) = &state
            && (state.contains("\"open\":[[") || state.contains("\"corrections\":[["))
            && let Ok(mut map) = self.progress.held.lock()
        {
            map.insert(partition.clone(), true);
        }
        state
    }

    fn restore(
        &mut self,
        partition: &TopicPartition,
        state: Option<&str>,
    ) -> Result<(), ProcessorError> {
        self.inner.restore(partition, state)
    }

    fn on_end_of_partition(&mut self, partition: &TopicPartition) {
        self.inner.on_end_of_partition(partition);
    }

    fn acts_on_commit(&self) -> bool {
        self.inner.acts_on_commit()
    }

    fn awaits_checkpoint(&self) -> bool {
        self.inner.awaits_checkpoint()
    }

    fn on_committed(&mut self) {
        self.inner.on_committed();
    }
}
