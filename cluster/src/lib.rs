//! What the writer and the edges share to form one fleet.
//!
//! - [`tls`]: the dev CA and certificates (`setpoint certs`), and the rustls/quinn configs for
//!   mutual TLS on the replication link.
//! - [`gossip`]: SWIM membership over UDP (foca): who is in the fleet and whether it is alive.
//!
//! This crate exists because both services need it and neither may depend on the other.

pub mod gossip;
pub mod tls;
