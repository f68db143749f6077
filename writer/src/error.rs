//! The writer's one error vocabulary.
//!
//! Every error carries an [`ErrorCode`] (shared with the edge, from `setpoint_core::error`) that
//! fixes its HTTP status and its gRPC code, a message for humans and optional structured details. REST handlers
//! return [`Error`]; it renders as `{"error": {"code", "message", "details"?}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::store::StoreError;

pub use setpoint_core::error::ErrorCode;

fn status(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<Value>,
}

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
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Error {
        let code = match err {
            StoreError::Unavailable(_) => ErrorCode::StoreUnavailable,
            StoreError::TooLarge(_) => ErrorCode::TooLarge,
            StoreError::Compacted { .. } | StoreError::Other(_) => ErrorCode::Internal,
        };
        Error::new(code, err.to_string())
    }
}

impl From<crate::model::records::CorruptRecord> for Error {
    fn from(err: crate::model::records::CorruptRecord) -> Error {
        tracing::error!(%err, "corrupt record in the store");
        Error::internal(err.to_string())
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

impl From<setpoint_core::read::Failure> for Error {
    fn from(failure: setpoint_core::read::Failure) -> Error {
        Error {
            code: failure.code,
            message: failure.message,
            details: failure.details,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut body = json!({ "code": self.code.as_str(), "message": self.message });
        if let Some(details) = self.details {
            body["details"] = details;
        }
        (status(self.code), axum::Json(json!({ "error": body }))).into_response()
    }
}
