//! The error answers of the OpenAPI document: one shared response per HTTP status
//! (`#/components/responses/{Name}`), each an `ErrorBody` whose `code` is limited to the
//! [`ErrorCode`]s that map to that status — taken from `ErrorCode::ALL` and
//! `ErrorCode::http_status`, so a new code or a changed status changes the document with it.
//!
//! Handlers name the answers they can give with the marker types here
//! (`responses(..., errors::NotFound)`); [`super::Door`] adds what the middleware answers for
//! every operation behind it (401, 429, and the standby's 307 on writes).

use std::collections::BTreeMap;

use serde_json::{Value, json};
use setpoint_serving::error::ErrorCode;
use utoipa::openapi::{Ref, RefOr, Response};

macro_rules! error_responses {
    ($($(#[$doc:meta])* $name:ident = $status:literal;)*) => {
        $(
            $(#[$doc])*
            pub struct $name;

            impl utoipa::IntoResponses for $name {
                fn responses() -> BTreeMap<String, RefOr<Response>> {
                    BTreeMap::from([(
                        $status.to_string(),
                        RefOr::Ref(Ref::from_response_name(stringify!($name))),
                    )])
                }
            }
        )*

        /// Every shared error answer: (component name, HTTP status).
        pub const ALL: &[(&str, u16)] = &[$((stringify!($name), $status)),*];
    };
}

error_responses! {
    /// A malformed request: body, path, query parameter, header, format or schema.
    BadRequest = 400;
    /// No valid API key: missing, malformed, unknown, expired or revoked.
    Unauthenticated = 401;
    /// The key's grants do not allow this.
    Forbidden = 403;
    NotFound = 404;
    /// The state does not allow it (exists already, in use, not pending, a lost race).
    Conflict = 409;
    /// `If-Match` does not match the current version.
    PreconditionFailed = 412;
    /// A value over 1 MiB, a body over 8 MiB, or a transaction over the store's limit.
    TooLarge = 413;
    /// Schema or validator violations, or references that cannot be resolved: every one in
    /// `details`.
    Unprocessable = 422;
    /// Too many failed authentications from this address; `Retry-After` says when to retry.
    TooManyRequests = 429;
    Internal = 500;
    Unimplemented = 501;
    /// The store, the secret provider or the leader cannot be reached now; retry.
    Unavailable = 503;
}

/// The response components: each status's answer, its `code` limited to that status's codes.
pub fn components() -> Vec<(String, RefOr<Response>)> {
    ALL.iter()
        .filter_map(|&(name, status)| {
            let codes: Vec<&str> = ErrorCode::ALL
                .iter()
                .filter(|code| code.http_status() == status)
                .map(|code| code.as_str())
                .collect();
            let response = serde_json::from_value::<Response>(answer(name, status, &codes)).ok()?;
            Some((name.to_owned(), RefOr::T(response)))
        })
        .collect()
}

fn answer(name: &str, status: u16, codes: &[&str]) -> Value {
    let description = format!(
        "{name}: {{\"error\": {{\"code\", \"message\", \"details\"?}}}}, code {}",
        codes.join(" or ")
    );
    let schema = json!({
        "allOf": [
            {"$ref": "#/components/schemas/ErrorBody"},
            {"type": "object", "properties": {"error": {
                "type": "object",
                "properties": {"code": {"type": "string", "enum": codes}}
            }}}
        ]
    });
    let mut response = json!({
        "description": description,
        "content": {"application/json": {"schema": schema}},
    });
    if matches!(status, 429 | 503) {
        response["headers"] = json!({"Retry-After": {
            "description": "Seconds to wait before retrying",
            "schema": {"type": "integer", "minimum": 0}
        }});
    }
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_status_of_the_error_vocabulary_has_one_shared_answer() {
        let components = components();
        assert_eq!(components.len(), ALL.len(), "every answer serializes");
        for code in ErrorCode::ALL {
            assert!(
                ALL.iter().any(|&(_, status)| status == code.http_status()),
                "no shared answer for {} ({})",
                code.as_str(),
                code.http_status()
            );
        }
        let (_, not_found) = components
            .iter()
            .find(|(name, _)| name == "NotFound")
            .unwrap();
        let json = serde_json::to_value(not_found).unwrap();
        assert_eq!(
            json["content"]["application/json"]["schema"]["allOf"][1]["properties"]["error"]["properties"]
                ["code"]["enum"],
            json!(["not_found"])
        );
    }
}
