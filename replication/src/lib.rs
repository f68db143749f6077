//! The replication protocol's server half, one implementation for every node that feeds edges:
//! the writer (fed by its store's watch) and a regional edge relaying to the edges of its region
//! (fed by its own snapshot holder).
//!
//! Layout:
//! - [`feed`]: the snapshot, the bounded ring of encoded batches and the broadcast to sessions.
//! - [`server`]: the QUIC sessions (mutual TLS, ALPN `setpoint/1`): hello, snapshot or ring
//!   catch-up, live batches, heartbeats, acks and client reports, handed to a [`server::Host`]
//!   that says what the node does with them (the writer's fleet view; a relay's upstream report).
//! - [`sessions`]: the registry of downstream edges both hosts keep (who, since when, how far).
//!
//! Must not: know where batches come from (store or holder), bind sockets or load certificates
//! (the caller makes the endpoint), or keep any node-specific registry.

pub mod feed;
pub mod server;
pub mod sessions;
