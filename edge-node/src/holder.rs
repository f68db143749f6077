//! The snapshot holder: the one place an edge's config state lives.
//!
//! Reads load the current snapshot with one atomic pointer load (arc-swap) and never take a lock.
//! The replication subscriber is the only writer: it applies batches (in revision order) or
//! swaps in a whole snapshot. Every applied batch goes into a bounded ring (for watch resumption)
//! and out on a broadcast channel to the watch hub.

use std::sync::Arc;

use setpoint_core::Revision;
use setpoint_core::snapshot::{AppliedBatch, ApplyError, Batch, Snapshot};

pub struct SnapshotHolder {}

impl SnapshotHolder {
    /// A holder starting from `initial` (e.g. loaded from disk); `stale` until the writer answers.
    pub fn new(initial: Snapshot, stale: bool) -> Arc<SnapshotHolder> {
        todo!()
    }
    /// The current snapshot (cheap: one atomic load + Arc clone).
    pub fn current(&self) -> Arc<Snapshot> {
        todo!()
    }
    pub fn revision(&self) -> Revision {
        todo!()
    }
    /// Applies one batch; out of order → error and nothing changes.
    pub fn apply(&self, batch: &Batch) -> Result<Arc<AppliedBatch>, ApplyError> {
        todo!()
    }
    /// Swaps in a full snapshot (after a snapshot transfer). Watchers of this edge get a reset.
    pub fn replace(&self, snapshot: Snapshot) {
        todo!()
    }
    /// Called by the subscriber: the writer answered (clears the stale flag) or was lost.
    pub fn set_connected(&self, connected: bool) {
        todo!()
    }
    /// True while the writer has not answered since this edge started, or is currently lost.
    pub fn is_stale(&self) -> bool {
        todo!()
    }
    /// Seconds since the last frame from the writer (0 while connected and fresh).
    pub fn staleness_seconds(&self) -> f64 {
        todo!()
    }
    /// Called on every frame from the writer (batches and heartbeats).
    pub fn touch(&self) {
        todo!()
    }
}
