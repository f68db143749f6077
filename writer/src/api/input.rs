//! Raw request input → typed values, once, at the boundary.
//!
//! Bodies are read as JSON whatever their `Content-Type` says (`curl -d` labels JSON as a form);
//! a body that is not JSON is a 400 naming the parse error, and so is an integer outside the
//! 64-bit range (it would be stored rounded). Query parameters and headers are
//! parsed here too, each failure a 400 that names the parameter.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorCode};
use crate::model::Precondition;

/// Who made the change, until authentication exists: the `X-Setpoint-Actor` header.
pub const ACTOR_HEADER: &str = "x-setpoint-actor";

pub fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, Error> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::new(
                ErrorCode::TooLarge,
                format!("request body exceeds {} bytes", super::MAX_BODY_BYTES),
            )
        } else {
            Error::bad_request(format!("cannot read the request body: {rejection}"))
        }
    })?;
    if bytes.is_empty() {
        return Err(Error::bad_request(
            "the request body is empty; expected a JSON object",
        ));
    }
    let parsed = serde_json::from_slice(&bytes).map_err(|e| {
        Error::bad_request(format!(
            "the request body is not valid JSON for this call: {e}"
        ))
    })?;
    if let Some(literal) = setpoint_core::value::inexact_integer(&bytes) {
        return Err(Error::bad_request(format!(
            "the integer {literal} is outside the 64-bit range and would be stored rounded; \
             send it as a string, or as a float (with a fraction or exponent) if rounding is meant"
        )));
    }
    Ok(parsed)
}

pub fn actor(headers: &HeaderMap) -> Option<String> {
    headers
        .get(ACTOR_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| v.chars().take(256).collect())
}

/// `If-Match: 3`, `"3"`, `W/"3"` or `*`.
pub fn if_match(headers: &HeaderMap) -> Result<Option<Precondition>, Error> {
    let Some(raw) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = raw
        .to_str()
        .map_err(|_| Error::bad_request("If-Match is not ASCII"))?;
    parse_precondition(text).map(Some)
}

pub fn parse_precondition(text: &str) -> Result<Precondition, Error> {
    Precondition::parse(text)
}

/// The query string as a map, with typed getters that reject bad values by name (shared with
/// the edges).
pub use setpoint_serving::params::Params;
