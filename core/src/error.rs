//! Setpoint's one error vocabulary: every error any API returns has one [`ErrorCode`], which
//! fixes its HTTP status here and its gRPC code in `setpoint_proto::grpc_code`, so the writer's
//! REST API, the edge's HTTP API and the edge's gRPC API always agree.
//!
//! [`Error`] is an error as every API shows it — code, message for humans, optional structured
//! details — without any HTTP or gRPC: `setpoint-serving` renders it (JSON body, gRPC status) for
//! the writer and the edge alike, and core's own reads ([`crate::read`]) fail with it.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Malformed request: not JSON, unknown fields, bad query parameters.
    BadRequest,
    /// A path that breaks the path rules.
    InvalidPath,
    /// A value that cannot be parsed in its format (invalid YAML, text that is not a string).
    InvalidValue,
    /// A schema or validator list that cannot be compiled.
    InvalidSchema,
    NotFound,
    /// Lost a race with concurrent writers too many times.
    Conflict,
    /// `If-Match` did not match the current version.
    PreconditionFailed,
    TooLarge,
    /// Schema or validator violations; details list every one.
    ValidationFailed,
    /// A read could not be resolved: missing or cyclic `${VAR}` references, malformed
    /// references, unknown secrets; details name each one (never a secret value).
    ResolutionFailed,
    /// No valid API key (missing, unknown, expired, revoked).
    Unauthenticated,
    /// Too many failed attempts from this source; retry later.
    TooManyRequests,
    /// The caller may not do this (e.g. read resolved secrets without `secrets:read`).
    Forbidden,
    /// The secret provider (Vault/OpenBao) could not be reached or refused this node.
    SecretsUnavailable,
    /// Not supported (yet) by this node.
    Unimplemented,
    StoreUnavailable,
    /// This node is behind what the caller already has (a resume from a newer revision): retry
    /// shortly, or at another node. Never answered with older state.
    Behind,
    /// This writer is a standby or just lost leadership; the change was not committed. Retry
    /// (the leader's address is in the message, or a standby redirects).
    NotLeader,
    Internal,
}

impl ErrorCode {
    /// Every code, so documents and tests can derive from the vocabulary (the OpenAPI
    /// document's error answers: one per status, naming the codes it carries).
    pub const ALL: [ErrorCode; 19] = [
        ErrorCode::BadRequest,
        ErrorCode::InvalidPath,
        ErrorCode::InvalidValue,
        ErrorCode::InvalidSchema,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::PreconditionFailed,
        ErrorCode::TooLarge,
        ErrorCode::ValidationFailed,
        ErrorCode::ResolutionFailed,
        ErrorCode::Unauthenticated,
        ErrorCode::TooManyRequests,
        ErrorCode::Forbidden,
        ErrorCode::SecretsUnavailable,
        ErrorCode::Unimplemented,
        ErrorCode::StoreUnavailable,
        ErrorCode::Behind,
        ErrorCode::NotLeader,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidPath => "invalid_path",
            ErrorCode::InvalidValue => "invalid_value",
            ErrorCode::InvalidSchema => "invalid_schema",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PreconditionFailed => "precondition_failed",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::ResolutionFailed => "resolution_failed",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::SecretsUnavailable => "secrets_unavailable",
            ErrorCode::Unimplemented => "unimplemented",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::Behind => "behind",
            ErrorCode::NotLeader => "not_leader",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest
            | ErrorCode::InvalidPath
            | ErrorCode::InvalidValue
            | ErrorCode::InvalidSchema => 400,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::PreconditionFailed => 412,
            ErrorCode::TooLarge => 413,
            ErrorCode::ValidationFailed | ErrorCode::ResolutionFailed => 422,
            ErrorCode::Forbidden => 403,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::SecretsUnavailable => 503,
            ErrorCode::Unimplemented => 501,
            ErrorCode::StoreUnavailable | ErrorCode::NotLeader => 503,
            ErrorCode::Behind => 503,
            ErrorCode::Internal => 500,
        }
    }
}

/// An error as the APIs show it: `{"error": {"code", "message", "details"?}}` once rendered.
#[derive(Debug, Clone, PartialEq)]
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
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_code_once() {
        // A new variant must be added to `ALL`: this match has no wildcard, so it stops
        // compiling until the variant is named here too.
        let position = |code: ErrorCode| match code {
            ErrorCode::BadRequest
            | ErrorCode::InvalidPath
            | ErrorCode::InvalidValue
            | ErrorCode::InvalidSchema
            | ErrorCode::NotFound
            | ErrorCode::Conflict
            | ErrorCode::PreconditionFailed
            | ErrorCode::TooLarge
            | ErrorCode::ValidationFailed
            | ErrorCode::ResolutionFailed
            | ErrorCode::Unauthenticated
            | ErrorCode::TooManyRequests
            | ErrorCode::Forbidden
            | ErrorCode::SecretsUnavailable
            | ErrorCode::Unimplemented
            | ErrorCode::StoreUnavailable
            | ErrorCode::Behind
            | ErrorCode::NotLeader
            | ErrorCode::Internal => ErrorCode::ALL.iter().position(|c| *c == code),
        };
        let names: std::collections::BTreeSet<&str> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len(), "a code is listed twice");
        for code in ErrorCode::ALL {
            assert!(position(code).is_some());
        }
    }
}
