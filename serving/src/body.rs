//! The typed bodies of the reads the writer and the edges both answer, serialized straight from
//! what they hold (no copy of the value), and the schemas the writer's OpenAPI document derives
//! from them. An edge's entry is the writer's without the metadata only the writer keeps.

use serde::Serialize;
use serde_json::Value;
use setpoint_core::snapshot::Entry;
use setpoint_core::value::ApiValue;
use setpoint_core::{Revision, Version};
use utoipa::ToSchema;

/// One version of a config: `{path, value, format, version, revision, updated_at, …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntryBody<'a> {
    pub path: &'a str,
    /// Any JSON for `json`; the text for `yaml` and `text`; `null` for a deletion.
    #[schema(value_type = Value)]
    pub value: Option<ApiValue<'a>>,
    /// `json`, `yaml` or `text`.
    pub format: &'static str,
    pub version: Version,
    /// The store revision of the commit that wrote this version.
    pub revision: Revision,
    /// RFC 3339.
    pub updated_at: &'a str,
    /// Writer only: who wrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<&'a str>,
    /// Writer only, current version: the JSON Schema in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub schema: Option<&'a Value>,
    /// Writer only, current version: the validators in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub validators: Option<&'a Value>,
    /// Present (true) on a deletion (an old version read with `?version=`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl<'a> EntryBody<'a> {
    /// A snapshot entry, as the edges and the writer's read model hold it.
    pub fn of(entry: &'a Entry) -> EntryBody<'a> {
        EntryBody {
            path: entry.path.as_str(),
            value: Some(setpoint_core::auth::shown_value(&entry.path, &entry.value)),
            format: entry.value.format().as_str(),
            version: entry.version,
            revision: entry.revision,
            updated_at: &entry.updated_at,
            updated_by: None,
            description: None,
            owner: None,
            schema: None,
            validators: None,
            deleted: false,
        }
    }
}

/// The children of a prefix: `{path, children, revision, entries?}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListingBody<'a> {
    pub path: &'a str,
    /// Names of the immediate children the caller can read something below.
    pub children: Vec<String>,
    pub revision: Revision,
    /// With `recursive=true`: every live path below the prefix the caller may read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<Vec<ListedEntry<'a>>>,
}

/// One path of a recursive listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListedEntry<'a> {
    pub path: &'a str,
    pub version: Version,
    pub format: &'static str,
    pub updated_at: &'a str,
}

impl<'a> ListedEntry<'a> {
    pub fn of(entry: &'a Entry) -> ListedEntry<'a> {
        ListedEntry {
            path: entry.path.as_str(),
            version: entry.version,
            format: entry.value.format().as_str(),
            updated_at: &entry.updated_at,
        }
    }
}

/// Every error: `{"error": {"code", "message", "details"?}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail<'a> {
    /// Machine-readable: `not_found`, `validation_failed`, `unauthenticated`, …
    pub code: &'static str,
    pub message: &'a str,
    /// Structured details where the code has them (violations, problems, the batch index).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<&'a Value>,
}
