//! Setpoint's Rust SDK: an application's live, local copy of its configuration.
//!
//! A [`Client`] holds one gRPC `Session` stream with an edge (`proto/edge.proto`), keeps every
//! entry under its prefixes in memory (and, optionally, in a cache file), answers [`Client::get`]
//! from there, and calls [`Client::watch`] callbacks for each change, acknowledging every update
//! with a receipt that NACKs the callbacks that failed. The behaviour is the contract in
//! `sdk/README.md`, shared by the Go, Python and Node SDKs and checked by `tests/conformance`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), setpoint_sdk::Error> {
//! use std::time::Duration;
//! use setpoint_sdk::{Client, Options};
//!
//! let client = Client::new("127.0.0.1:8000", Options {
//!     environment: Some("prod".into()),
//!     prefixes: vec!["/myapp".into()],
//!     ..Options::default()
//! })?;
//! client.wait_ready(Duration::from_secs(5)).await?;
//! let host = client.get("/myapp/database/host")?;
//! let _watch = client.watch("/myapp/database", |event| {
//!     println!("{} is now {:?}", event.path, event.value);
//!     Ok::<(), String>(())
//! })?;
//! # Ok(()) }
//! ```
//!
//! Layout: `client` (the handle), `session` (the one task per client: stream, heartbeats,
//! reconnects), `store` (pure: applying batches and diffing resets), `watch` (callbacks and
//! NACKs), `cache_file` (the shared on-disk format), `backoff`, `options`, `value`, `error`.
//! This crate never depends on the server crates; the wire comes from `setpoint-proto`.

mod backoff;
mod cache_file;
mod client;
mod error;
mod options;
mod session;
mod store;
mod value;
mod watch;

pub use client::Client;
pub use error::Error;
pub use options::{Options, TlsOptions};
pub use value::{Event, Value};
pub use watch::WatchHandle;
