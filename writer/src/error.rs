//! The writer's one error vocabulary: [`setpoint_serving::Error`], shared with the edges (core's
//! `ErrorCode` + message + details; it renders as `{"error": {"code", "message", "details"?}}`
//! with the code's HTTP status). Here only the conversions from the writer's own errors.

use crate::store::StoreError;

pub use setpoint_serving::error::{Error, ErrorCode};

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Error {
        let code = match err {
            StoreError::Unavailable(_) => ErrorCode::StoreUnavailable,
            StoreError::TooLarge(_) => ErrorCode::TooLarge,
            StoreError::NotLeader(_) => ErrorCode::NotLeader,
            StoreError::Compacted { .. } | StoreError::LeaseNotFound(_) | StoreError::Other(_) => {
                ErrorCode::Internal
            }
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
