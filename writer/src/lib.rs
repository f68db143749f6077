//! The Setpoint writer: the one process that commits configuration changes.
//!
//! Layout:
//! - [`store`]: the revisioned key-value store trait and its two implementations (etcd, embedded).
pub mod store;
