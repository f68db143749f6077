//! The Setpoint edge node: holds every config in memory and serves reads and watches.
//!
//! Layout:
//! - [`holder`]: the current [`setpoint_core::snapshot::Snapshot`] behind an atomic pointer, the
//!   ring of recent applied batches, staleness, and the broadcast of applied batches.
//! - [`subscriber`]: the QUIC link to the writer that feeds the holder (snapshot, then batches).
//!
//! Architecture invariant: the edge never talks to etcd; everything it serves comes from the
//! writer's replication stream (or its own disk snapshot after a restart).

pub mod holder;
pub mod subscriber;
