//! The edge's one error vocabulary, shared by HTTP and gRPC so both answer alike.
//!
//! Every [`ApiError`] has an [`ErrorCode`] that fixes its HTTP status and its `tonic::Code`; HTTP
//! renders it as the writer does, `{"error": {"code", "message", "details"?}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub use setpoint_core::error::ErrorCode;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::NotFound, message)
    }

    pub fn version_not_held(path: &str, version: u64) -> ApiError {
        ApiError::not_found(format!(
            "edges hold only the current version of each config; {path} is not at version \
             {version} here (ask the writer for older versions)"
        ))
    }
}

impl From<setpoint_core::PathError> for ApiError {
    fn from(err: setpoint_core::PathError) -> ApiError {
        ApiError::new(ErrorCode::InvalidPath, err.to_string())
    }
}

impl From<setpoint_core::read::Failure> for ApiError {
    fn from(failure: setpoint_core::read::Failure) -> ApiError {
        ApiError {
            code: failure.code,
            message: failure.message,
            details: failure.details,
        }
    }
}

impl From<crate::watch::WatchError> for ApiError {
    fn from(err: crate::watch::WatchError) -> ApiError {
        match err {
            crate::watch::WatchError::Environment(error) => {
                setpoint_core::read::Failure::from(error).into()
            }
            reserved @ crate::watch::WatchError::Reserved { .. } => {
                ApiError::bad_request(reserved.to_string())
            }
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(err: ApiError) -> tonic::Status {
        tonic::Status::new(setpoint_proto::grpc_code(err.code), err.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "code": self.code.as_str(), "message": self.message });
        if let Some(details) = self.details {
            body["details"] = details;
        }
        (
            StatusCode::from_u16(self.code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            axum::Json(json!({ "error": body })),
        )
            .into_response()
    }
}
