//! The Setpoint edge node: holds every config in memory and serves reads and watches.
//!
//! Layout:
//! - [`holder`]: the current [`setpoint_core::snapshot::Snapshot`] behind an atomic pointer, the
//!   ring of recent applied batches, staleness, and the broadcast of applied batches.
//! - [`disk`]: the on-disk snapshot (atomic save, validated load) and the persister task.
//! - [`watch`]: the watch hub — prefix index, shared per-prefix event lists, bounded per-watcher
//!   queues with cut-off and reset, resumption from the holder's ring.
//!
//! Architecture invariant: the edge never talks to etcd; everything it serves comes from the
//! writer's replication stream (or its own disk snapshot after a restart).

pub mod disk;
pub mod holder;
pub mod watch;
