//! The one API error of the writer and the edges.
//!
//! [`Error`] carries what core's [`setpoint_core::error::Error`] carries (code, message, details;
//! core's reads fail with that one and convert losslessly), and is the one rendering of it: HTTP
//! as `{"error": {"code", "message", "details"?}}` with the code's status, gRPC as a status with
//! the code's `tonic::Code` and the message. Conversions from core's own errors (paths, values,
//! rules, environments) live here because only this crate may write them. A struct of its own
//! (not a wrapper) so handlers build, match and take apart errors as plain values.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::body::{ErrorBody, ErrorDetail};

pub use setpoint_core::error::ErrorCode;

/// An API error.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<Value>,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for Error {}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Error {
        self.details = Some(details);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::NotFound, message)
    }

    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::Internal, message)
    }

    /// An edge asked for a version it does not hold (edges keep only the current one).
    pub fn version_not_held(path: &str, version: u64) -> Error {
        Error::not_found(format!(
            "edges hold only the current version of each config; {path} is not at version \
             {version} here (ask the writer for older versions)"
        ))
    }

    /// Adds `"index": i` (the change's place in a batch) to the details.
    pub fn at_index(mut self, index: usize) -> Error {
        let mut details = match self.details.take() {
            Some(Value::Object(map)) => map,
            Some(other) => [("details".to_owned(), other)].into_iter().collect(),
            None => serde_json::Map::new(),
        };
        details.insert("index".to_owned(), json!(index));
        self.details = Some(Value::Object(details));
        self
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The JSON body, `{"error": {"code", "message", "details"?}}`.
    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.as_str(),
                message: &self.message,
                details: self.details.as_ref(),
            },
        }
    }
}

impl From<setpoint_core::error::Error> for Error {
    fn from(error: setpoint_core::error::Error) -> Error {
        Error {
            code: error.code,
            message: error.message,
            details: error.details,
        }
    }
}

impl From<setpoint_core::PathError> for Error {
    fn from(err: setpoint_core::PathError) -> Error {
        Error::new(ErrorCode::InvalidPath, err.to_string())
    }
}

impl From<setpoint_core::ValueError> for Error {
    fn from(err: setpoint_core::ValueError) -> Error {
        use setpoint_core::ValueError;
        let code = match &err {
            ValueError::TooLarge { .. } => ErrorCode::TooLarge,
            ValueError::UnknownFormat(_) => ErrorCode::BadRequest,
            ValueError::Corrupt { .. } => ErrorCode::Internal,
            _ => ErrorCode::InvalidValue,
        };
        Error::new(code, err.to_string())
    }
}

impl From<setpoint_core::validate::RuleError> for Error {
    fn from(err: setpoint_core::validate::RuleError) -> Error {
        Error::new(ErrorCode::InvalidSchema, err.to_string())
    }
}

/// An environment definition a write relies on is wrong (reads map it through
/// `setpoint_core::read::Failure`, where a broken chain is a resolution failure).
impl From<setpoint_core::env::EnvError> for Error {
    fn from(error: setpoint_core::env::EnvError) -> Error {
        use setpoint_core::env::EnvError;
        let code = match &error {
            EnvError::Unknown { .. } => ErrorCode::NotFound,
            EnvError::InvalidName { .. } | EnvError::Malformed { .. } => ErrorCode::BadRequest,
            _ => ErrorCode::ValidationFailed,
        };
        Error::new(code, error.to_string())
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> tonic::Status {
        tonic::Status::new(setpoint_proto::grpc_code(err.code), err.message)
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        // A writer lost leadership while this request was in flight: retrying reaches the new
        // leader (through a standby's redirect) once one is known.
        if self.code == ErrorCode::NotLeader {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(error: Error, status: u16, expected: Value) {
        assert_eq!(error.status().as_u16(), status);
        assert_eq!(serde_json::to_value(error.body()).unwrap(), expected);
    }

    #[test]
    fn the_body_names_code_and_message_and_details_only_when_given() {
        check(
            Error::not_found("nothing at /a"),
            404,
            json!({"error": {"code": "not_found", "message": "nothing at /a"}}),
        );
        check(
            Error::new(ErrorCode::ValidationFailed, "bad")
                .with_details(json!({"violations": []}))
                .at_index(2),
            422,
            json!({"error": {"code": "validation_failed", "message": "bad",
                             "details": {"violations": [], "index": 2}}}),
        );
    }

    #[test]
    fn grpc_gets_the_codes_status_and_the_message() {
        let status = tonic::Status::from(Error::new(ErrorCode::Forbidden, "no"));
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert_eq!(status.message(), "no");
    }
}
