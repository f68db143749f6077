//! The serving layer the writer and every edge share, so both answer alike and neither keeps a
//! copy of the other's rules.
//!
//! Layout: [`error`] the one API error (core's [`setpoint_core::error::Error`] rendered as the
//! JSON body `{"error": {"code", "message", "details"?}}` or as a gRPC status); [`auth`] API keys
//! (Bearer parsing, [`auth::AuthMode`], the per-source failure limiter, the refusal messages) and
//! [`accounts::AccountsCache`] (parsed accounts of a snapshot, re-parsed only where a record
//! changed); [`conditional`] `ETag` / `If-None-Match`; [`metrics`] the request metrics
//! middleware (one label set: route, method, status); [`body`] the typed read bodies (entry,
//! listing, error) the OpenAPI document derives from, and the listing rules.
//!
//! Must not: know the store, the model, the replication link or the watch hub. What differs
//! between the services (the writer audits refusals and waits for its read model; the edge
//! answers gRPC callers with a status) stays in each service.

pub mod accounts;
pub mod auth;
pub mod body;
pub mod conditional;
pub mod error;
pub mod listing;
pub mod metrics;
pub mod params;
pub mod server;

pub use error::{Error, ErrorCode};
