//! How identity sources reach the processor that owns the table: a bounded channel of
//! [`IdentityRecord`]s and a readiness flag.
//!
//! Protocol: a source (live watch, identity topic, publisher) sends records in the order
//! it observed them; [`crate::EnrichProcessor`] drains the channel between batches
//! (`flush_due`), at most `max_updates_per_flush` records per call, so lookups never take
//! a lock and a flood of updates delays each batch by a bounded amount instead of starving
//! flows. A full channel makes the source wait (`send().await`): backpressure, not memory.
//! A source sets its [`IdentityReadiness`] once its initial state (list, or the topic up
//! to its end offsets) has been sent; the process reports ready when every source is and
//! the processor has applied what they sent ([`crate::EnrichProcessor::identity_ready`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use flowlake_schemas::IdentityRecord;
use tokio::sync::mpsc;

/// Sends identity records to the processor (clone one per source).
pub type IdentitySender = mpsc::Sender<IdentityRecord>;
/// The processor's end of the channel.
pub type IdentityReceiver = mpsc::Receiver<IdentityRecord>;

/// A bounded channel of identity records holding at most `capacity` (at least 1).
pub fn identity_channel(capacity: usize) -> (IdentitySender, IdentityReceiver) {
    mpsc::channel(capacity.max(1))
}

/// Whether a source has sent its initial state. Clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct IdentityReadiness(Arc<AtomicBool>);

impl IdentityReadiness {
    /// A flag that is not ready yet.
    pub fn new() -> Self {
        IdentityReadiness::default()
    }

    /// A flag that is ready from the start (snapshot-only identity).
    pub fn ready() -> Self {
        let readiness = IdentityReadiness::default();
        readiness.set(true);
        readiness
    }

    /// Marks the source bootstrapped (or not, after it lost its state and relists).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// True once the source has sent its initial state.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}
