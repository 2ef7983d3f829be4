//! Where identity sources deliver their records: an [`IdentitySink`], usually the bounded
//! channel to the processor that owns the identity table, and a readiness flag.
//!
//! Protocol: a source (live watch, identity topic reader) produces [`IdentityRecord`]s in
//! the order it observed them and hands each to its sink; `send` waits while the sink is
//! full, so a slow consumer (a broker outage behind the publisher, a busy table) holds the
//! source back instead of buffering without bound: backpressure, not memory. enrich's
//! processor drains the channel between batches (`flush_due`), at most
//! `max_updates_per_flush` records per call, so lookups never take a lock and a flood of
//! updates delays each batch by a bounded amount instead of starving flows. A source sets
//! its [`IdentityReadiness`] once its initial state (list, or the topic up to its end
//! offsets) has been sent; the process reports ready when every source is and the
//! processor has applied what they sent (`EnrichProcessor::identity_ready` in enrich).
//!
//! The watch, the topic reader and the publisher depend on this module for delivery, not
//! on each other nor on [`crate::sources`], which starts them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use flowlake_schemas::IdentityRecord;
use tokio::sync::mpsc;

/// The receiving end of a source is gone (the process is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("identity sink closed")]
pub struct SinkClosed;

/// Where a source delivers its records.
pub trait IdentitySink: Send {
    /// Delivers one record, waiting while the sink is full.
    fn send(
        &mut self,
        record: IdentityRecord,
    ) -> impl Future<Output = Result<(), SinkClosed>> + Send;
}

impl IdentitySink for mpsc::Sender<IdentityRecord> {
    async fn send(&mut self, record: IdentityRecord) -> Result<(), SinkClosed> {
        mpsc::Sender::send(self, record)
            .await
            .map_err(|_| SinkClosed)
    }
}

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
