//! The SDK's one error type. Every variant maps to one of the conformance protocol's kinds
//! ([`Error::kind`]), so all four SDKs report the same failure the same way.

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Synced (or serving a cache file), and no entry at this path.
    #[error("not found: {0}")]
    NotFound(String),
    /// No sync has completed yet and no cache file was loaded: nothing to answer from.
    #[error("not synced yet: no session has completed its first sync and no cache file was loaded")]
    NotSynced,
    /// The edge refused the token (`UNAUTHENTICATED` or `PERMISSION_DENIED`).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// `wait_ready` gave up.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The client was closed.
    #[error("client closed")]
    Closed,
    /// A bad argument or option (a watch prefix outside the client's prefixes, an address that
    /// is no URI, no tokio runtime), or a request the edge rejected as invalid.
    #[error("invalid: {0}")]
    Invalid(String),
    /// Anything else the edge or the transport answered (for `resolve`).
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The conformance protocol's name for this error: `not_found`, `not_synced`,
    /// `unauthorized`, `timeout`, `closed`, `invalid` or `other`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotFound(_) => "not_found",
            Error::NotSynced => "not_synced",
            Error::Unauthorized(_) => "unauthorized",
            Error::Timeout(_) => "timeout",
            Error::Closed => "closed",
            Error::Invalid(_) => "invalid",
            Error::Other(_) => "other",
        }
    }

    /// How a gRPC status becomes an SDK error; `path` names what was asked for (NOT_FOUND).
    pub(crate) fn from_status(status: &tonic::Status, path: &str) -> Error {
        let message = status.message().to_owned();
        match status.code() {
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
                Error::Unauthorized(message)
            }
            tonic::Code::NotFound => Error::NotFound(path.to_owned()),
            tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => {
                Error::Invalid(message)
            }
            code => Error::Other(format!("{code:?}: {message}")),
        }
    }
}
