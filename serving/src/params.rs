//! A query string, read alike by the writer and the edges: typed getters that reject a bad value
//! with a `bad_request` naming the parameter. Booleans follow core's rule
//! ([`setpoint_core::read::flag`]), the one environment-aware reads use too. And [`Path`], the
//! path parameters, refused as JSON like every other error.

use std::collections::HashMap;
use std::str::FromStr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// Path parameters, as axum's `Path` reads them, but a parameter that cannot be read (percent-
/// encoded bytes that are not UTF-8) is a `bad_request` in the API's JSON error body, not axum's
/// plain-text rejection.
#[derive(Debug, Clone)]
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Path<T>, Error> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|rejection| Error::bad_request(rejection.body_text()))
    }
}

/// The query string as a map.
#[derive(Debug, Clone, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn new(map: HashMap<String, String>) -> Params {
        Params(map)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Every parameter, as given.
    pub fn map(&self) -> &HashMap<String, String> {
        &self.0
    }

    pub fn flag(&self, name: &str) -> Result<bool, Error> {
        Ok(setpoint_core::read::flag(name, self.get(name))?)
    }

    /// A non-negative integer (a version, a revision, a page size).
    pub fn number<T: FromStr>(&self, name: &str) -> Result<Option<T>, Error> {
        self.get(name)
            .map(|raw| {
                raw.parse::<T>().map_err(|_| {
                    Error::bad_request(format!(
                        "query parameter {name}={raw:?} must be a non-negative integer"
                    ))
                })
            })
            .transpose()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn flags_and_numbers_name_the_bad_parameter() {
        let p = params(&[
            ("a", ""),
            ("b", "no"),
            ("c", "maybe"),
            ("n", "7"),
            ("m", "-1"),
        ]);
        assert!(p.flag("a").unwrap());
        assert!(!p.flag("b").unwrap());
        assert!(!p.flag("absent").unwrap());
        assert!(p.flag("c").unwrap_err().message.contains("c=\"maybe\""));
        assert_eq!(p.number::<u64>("n").unwrap(), Some(7));
        assert_eq!(p.number::<u64>("absent").unwrap(), None);
        assert!(
            p.number::<u64>("m")
                .unwrap_err()
                .message
                .contains("m=\"-1\"")
        );
    }
}
