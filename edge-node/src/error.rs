//! The edge's errors: [`setpoint_serving::Error`], shared with the writer, so HTTP answers with
//! the writer's body (`{"error": {"code", "message", "details"?}}`) and gRPC with the code's
//! `tonic::Code`. Here only the conversion from the watch hub's own error.

pub use setpoint_serving::error::{Error as ApiError, ErrorCode};

impl From<crate::watch::WatchError> for ApiError {
    fn from(err: crate::watch::WatchError) -> ApiError {
        match err {
            crate::watch::WatchError::Environment(error) => {
                setpoint_core::read::Failure::from(error).into()
            }
            reserved @ crate::watch::WatchError::Reserved { .. } => {
                ApiError::bad_request(reserved.to_string())
            }
            behind @ crate::watch::WatchError::Behind { .. } => ApiError {
                code: setpoint_core::error::ErrorCode::Behind,
                message: behind.to_string(),
                details: None,
            },
        }
    }
}
