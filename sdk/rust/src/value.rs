//! What users see: a cached [`Value`] and a change [`Event`], both holding decoded JSON. The wire
//! carries values as JSON text (a JSON value for format `json`, a JSON string for `yaml` and
//! `text`); decoding happens once, here, when an update is applied.

use serde::{Deserialize, Serialize};

/// One entry as the client holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Value {
    /// The decoded value: any JSON for format `json`, a string for `yaml` and `text`.
    pub value: serde_json::Value,
    /// `json`, `yaml` or `text`.
    pub format: String,
    /// The entry's version (per path, counting from 1).
    pub version: u64,
    /// The revision of the commit that wrote this version.
    pub revision: i64,
}

impl Value {
    /// The value as a string, when it is one (always for `yaml` and `text`).
    pub fn as_str(&self) -> Option<&str> {
        self.value.as_str()
    }

    /// The value deserialized into `T` (e.g. a config struct).
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.value)
    }
}

/// One change, as a watch callback receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The changed path (a base path like `/myapp/db/host`, also with an environment).
    pub path: String,
    /// The new value; `None` when the path was deleted.
    pub value: Option<serde_json::Value>,
    /// The value before this change; `None` when the path did not exist.
    pub old_value: Option<serde_json::Value>,
    /// The entry's version after the change (for a delete: as the edge reports it).
    pub version: u64,
    /// The revision of the commit (or of the reset that revealed the change).
    pub revision: i64,
    pub deleted: bool,
    /// `json`, `yaml` or `text`; empty for a delete the edge sent without one.
    pub format: String,
}

/// Decodes wire JSON text. A value that is not JSON (an edge bug or a future format) is kept as
/// the raw string rather than dropped, so `get` still answers something inspectable.
pub(crate) fn decode(text: &str) -> serde_json::Value {
    match serde_json::from_str(text) {
        Ok(value) => value,
        Err(error) => {
            tracing::warn!(%error, "value on the wire is not JSON; kept as a string");
            serde_json::Value::String(text.to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decode_json_yaml_text_and_garbage() {
        assert_eq!(decode(r#"{"a":[1,2]}"#), json!({"a": [1, 2]}));
        assert_eq!(decode("42"), json!(42));
        // yaml and text travel as JSON strings and decode to the string itself.
        assert_eq!(decode(r#""a: 1\nb: 2\n""#), json!("a: 1\nb: 2\n"));
        assert_eq!(decode("not json"), json!("not json"));
    }

    #[test]
    fn parse_into_a_struct() {
        #[derive(Deserialize, PartialEq, Debug)]
        struct Db {
            host: String,
            port: u16,
        }
        let value = Value {
            value: json!({"host": "h", "port": 5432}),
            format: "json".into(),
            version: 1,
            revision: 2,
        };
        assert_eq!(
            value.parse::<Db>().ok(),
            Some(Db {
                host: "h".into(),
                port: 5432
            })
        );
        assert_eq!(value.as_str(), None);
    }
}
