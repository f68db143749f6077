//! Configuration paths: parsing and the rules a path must follow.
//!
//! A path is `/app/service/key`: segments of `[A-Za-z0-9._-]+` (never `.` or `..`), at most
//! [`MAX_SEGMENTS`] segments and [`MAX_PATH_BYTES`] bytes. The root `/` (no segments) is a valid
//! *prefix* but never holds a value. The first segment `env` is reserved for environment overrides
//! (`/env/{environment}/{path}`); the final segment names in [`RESERVED_NAMES`] are sub-resources
//! of the REST API (`…/history`, `…/diff`) and cannot be written.
//!
//! This module must not know about storage keys or HTTP; it only parses and answers questions.

use std::fmt;

pub const MAX_SEGMENTS: usize = 32;
pub const MAX_PATH_BYTES: usize = 512;
/// Final segment names that address sub-resources in the REST API.
pub const RESERVED_NAMES: &[&str] = &["history", "diff", "rollout"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path has an empty segment at position {position} (`//` is not allowed)")]
    EmptySegment { position: usize },
    #[error("path segment {segment:?} is not allowed (`.` and `..` are reserved)")]
    DotSegment { segment: String },
    #[error(
        "path segment {segment:?} contains {character:?}; allowed are A-Z, a-z, 0-9, `.`, `_`, `-`"
    )]
    InvalidCharacter { segment: String, character: char },
    #[error("path has {count} segments; the limit is {limit}")]
    TooManySegments { count: usize, limit: usize },
    #[error("path is {size} bytes; the limit is {limit} bytes")]
    TooLong { size: usize, limit: usize },
    #[error("the root path `/` cannot hold a value")]
    Root,
    #[error("final segment {name:?} is reserved for API sub-resources and cannot be written")]
    ReservedName { name: String },
    #[error(
        "path {path:?} is under the reserved `env` segment but is not `/env/{{environment}}/{{path}}`"
    )]
    IncompleteEnvOverride { path: String },
    #[error("path {path:?} is in the reserved `_setpoint` namespace (system records)")]
    SystemNamespace { path: String },
}

/// A validated path. `as_str()` is canonical: leading `/`, no trailing `/`, root is `/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigPath {
    canonical: String,
}

/// Checks one segment against the segment grammar. `position` is 1-based, for messages.
fn check_segment(segment: &str, position: usize) -> Result<(), PathError> {
    if segment.is_empty() {
        return Err(PathError::EmptySegment { position });
    }
    if segment == "." || segment == ".." {
        return Err(PathError::DotSegment {
            segment: segment.to_owned(),
        });
    }
    if let Some(character) = segment
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(PathError::InvalidCharacter {
            segment: segment.to_owned(),
            character,
        });
    }
    Ok(())
}

/// Checks the whole-path limits on a canonical string with `count` segments.
fn check_limits(canonical: &str, count: usize) -> Result<(), PathError> {
    if count > MAX_SEGMENTS {
        return Err(PathError::TooManySegments {
            count,
            limit: MAX_SEGMENTS,
        });
    }
    if canonical.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong {
            size: canonical.len(),
            limit: MAX_PATH_BYTES,
        });
    }
    Ok(())
}

impl ConfigPath {
    /// Parses `a/b/c`, `/a/b/c` or `/a/b/c/` (one leading and one trailing slash are optional).
    /// `""` and `"/"` give the root. Rejects empty segments (`a//b`), `.`/`..`, bad characters,
    /// too many segments, too many bytes.
    pub fn parse(input: &str) -> Result<ConfigPath, PathError> {
        let body = input.strip_prefix('/').unwrap_or(input);
        let body = body.strip_suffix('/').unwrap_or(body);
        if body.is_empty() {
            // Covers "", "/" and "//" — the last has an empty segment.
            return if input.len() <= 1 {
                Ok(ConfigPath::root())
            } else {
                Err(PathError::EmptySegment { position: 1 })
            };
        }
        // Reject oversize input before walking it, so a huge string costs nothing.
        let canonical_len = body.len() + 1;
        if canonical_len > MAX_PATH_BYTES {
            return Err(PathError::TooLong {
                size: canonical_len,
                limit: MAX_PATH_BYTES,
            });
        }
        let mut count = 0;
        for (index, segment) in body.split('/').enumerate() {
            check_segment(segment, index + 1)?;
            count += 1;
        }
        let canonical = format!("/{body}");
        check_limits(&canonical, count)?;
        Ok(ConfigPath { canonical })
    }
    pub fn root() -> ConfigPath {
        ConfigPath {
            canonical: "/".to_owned(),
        }
    }
    pub fn as_str(&self) -> &str {
        &self.canonical
    }
    pub fn is_root(&self) -> bool {
        self.canonical == "/"
    }
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.canonical
            .split('/')
            .filter(|segment| !segment.is_empty())
    }
    /// Number of segments; 0 for the root.
    pub fn segment_count(&self) -> usize {
        self.segments().count()
    }
    /// Last segment; `None` for the root.
    pub fn name(&self) -> Option<&str> {
        self.segments().last()
    }
    /// Parent path; `None` for the root.
    pub fn parent(&self) -> Option<ConfigPath> {
        if self.is_root() {
            return None;
        }
        let cut = self.canonical.rfind('/').unwrap_or(0);
        let canonical = if cut == 0 {
            "/".to_owned()
        } else {
            self.canonical[..cut].to_owned()
        };
        Some(ConfigPath { canonical })
    }
    /// Appends one segment (validated).
    pub fn join(&self, segment: &str) -> Result<ConfigPath, PathError> {
        let count = self.segment_count() + 1;
        check_segment(segment, count)?;
        let canonical = if self.is_root() {
            format!("/{segment}")
        } else {
            format!("{}/{segment}", self.canonical)
        };
        check_limits(&canonical, count)?;
        Ok(ConfigPath { canonical })
    }
    /// True when `self` equals `prefix` or lies below it (segment-wise: `/ab` is not below `/a`).
    pub fn starts_with(&self, prefix: &ConfigPath) -> bool {
        if prefix.is_root() {
            return true;
        }
        match self.canonical.strip_prefix(prefix.canonical.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
    /// The root, then every proper ancestor, ending with `self`: `/`, `/a`, `/a/b`.
    pub fn ancestors_and_self(&self) -> Vec<ConfigPath> {
        let mut out = vec![ConfigPath::root()];
        for (index, _) in self.canonical.match_indices('/').skip(1) {
            out.push(ConfigPath {
                canonical: self.canonical[..index].to_owned(),
            });
        }
        if !self.is_root() {
            out.push(self.clone());
        }
        out
    }
    /// Checks the rules for paths that hold a value: not the root, not a reserved final name, and
    /// `env` only as `/env/{environment}/{at least one more segment}`.
    pub fn check_writable(&self) -> Result<(), PathError> {
        let Some(name) = self.name() else {
            return Err(PathError::Root);
        };
        if RESERVED_NAMES.contains(&name) {
            return Err(PathError::ReservedName {
                name: name.to_owned(),
            });
        }
        if self.segments().next() == Some("_setpoint") {
            return Err(PathError::SystemNamespace {
                path: self.canonical.clone(),
            });
        }
        if self.segments().next() == Some("env") && self.segment_count() < 3 {
            return Err(PathError::IncompleteEnvOverride {
                path: self.canonical.clone(),
            });
        }
        Ok(())
    }
}

impl fmt::Display for ConfigPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `expected`: the canonical form, or the start of the error message.
    fn check(input: &str, expected: Result<&str, &str>) {
        let got = ConfigPath::parse(input);
        match (&got, expected) {
            (Ok(path), Ok(canonical)) => assert_eq!(path.as_str(), canonical, "input {input:?}"),
            (Err(error), Err(message)) => {
                let shown = error.to_string();
                assert!(
                    shown.starts_with(message),
                    "input {input:?}: {shown:?} does not start with {message:?}"
                );
            }
            _ => panic!("input {input:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn parse() {
        let long_segment = "a".repeat(MAX_PATH_BYTES);
        let max_segment = "a".repeat(MAX_PATH_BYTES - 1);
        let max_canonical = format!("/{max_segment}");
        let thirty_two = "/a".repeat(MAX_SEGMENTS);
        let thirty_three = "/a".repeat(MAX_SEGMENTS + 1);
        let cases: Vec<(&str, Result<&str, &str>)> = vec![
            ("", Ok("/")),
            ("/", Ok("/")),
            ("a", Ok("/a")),
            ("/a/b/c", Ok("/a/b/c")),
            ("a/b/c/", Ok("/a/b/c")),
            ("/a/b/c/", Ok("/a/b/c")),
            ("/My_app-1.0/x.y", Ok("/My_app-1.0/x.y")),
            ("/...", Ok("/...")),
            ("/.hidden", Ok("/.hidden")),
            ("//", Err("path has an empty segment at position 1")),
            ("a//b", Err("path has an empty segment at position 2")),
            ("/a/b//", Err("path has an empty segment at position 3")),
            ("/a/./b", Err("path segment \".\" is not allowed")),
            ("/a/..", Err("path segment \"..\" is not allowed")),
            ("/a b", Err("path segment \"a b\" contains ' '")),
            (
                "/caf\u{e9}",
                Err("path segment \"caf\u{e9}\" contains '\u{e9}'"),
            ),
            ("/a:b", Err("path segment \"a:b\" contains ':'")),
            (&max_segment, Ok(&max_canonical)),
            (
                &long_segment,
                Err("path is 513 bytes; the limit is 512 bytes"),
            ),
            (&thirty_two, Ok(&thirty_two)),
            (&thirty_three, Err("path has 33 segments; the limit is 32")),
        ];
        for (input, expected) in cases {
            check(input, expected);
        }
    }

    fn path(input: &str) -> ConfigPath {
        ConfigPath::parse(input).expect("test path is valid")
    }

    #[test]
    fn navigation() {
        let root = ConfigPath::root();
        assert!(root.is_root());
        assert_eq!(root.segments().count(), 0);
        assert_eq!(root.name(), None);
        assert_eq!(root.parent(), None);
        assert_eq!(root.ancestors_and_self(), vec![root.clone()]);

        let abc = path("/a/b/c");
        assert!(!abc.is_root());
        assert_eq!(abc.segments().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(abc.segment_count(), 3);
        assert_eq!(abc.name(), Some("c"));
        assert_eq!(abc.parent(), Some(path("/a/b")));
        assert_eq!(path("/a").parent(), Some(root.clone()));
        assert_eq!(
            abc.ancestors_and_self(),
            vec![root.clone(), path("/a"), path("/a/b"), abc.clone()]
        );
        assert_eq!(root.join("x"), Ok(path("/x")));
        assert_eq!(abc.join("d"), Ok(path("/a/b/c/d")));
        assert!(abc.join("").is_err());
        assert!(abc.join("d/e").is_err());
        assert!(abc.join("..").is_err());
        assert_eq!(abc.to_string(), "/a/b/c");
    }

    #[test]
    fn starts_with() {
        let cases = [
            ("/a/b", "/", true),
            ("/", "/", true),
            ("/a/b", "/a", true),
            ("/a/b", "/a/b", true),
            ("/ab", "/a", false),
            ("/a", "/a/b", false),
            ("/", "/a", false),
            ("/b/a", "/a", false),
        ];
        for (subject, prefix, expected) in cases {
            assert_eq!(
                path(subject).starts_with(&path(prefix)),
                expected,
                "{subject} under {prefix}"
            );
        }
    }

    #[test]
    fn check_writable() {
        let cases: [(&str, Result<(), &str>); 9] = [
            ("/a", Ok(())),
            ("/app/history/x", Ok(())),
            ("/env/prod/app", Ok(())),
            ("/environment", Ok(())),
            ("/", Err("the root path `/` cannot hold a value")),
            ("/app/history", Err("final segment \"history\" is reserved")),
            ("/app/diff", Err("final segment \"diff\" is reserved")),
            (
                "/env",
                Err("path \"/env\" is under the reserved `env` segment"),
            ),
            (
                "/env/prod",
                Err("path \"/env/prod\" is under the reserved `env` segment"),
            ),
        ];
        for (input, expected) in cases {
            let got = path(input).check_writable().map_err(|e| e.to_string());
            match (got, expected) {
                (Ok(()), Ok(())) => {}
                (Err(shown), Err(message)) => {
                    assert!(shown.starts_with(message), "{input}: {shown}")
                }
                (got, expected) => panic!("{input}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    fn segment() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._-]{1,8}".prop_filter("not a dot segment", |s| s != "." && s != "..")
    }

    fn any_path() -> impl Strategy<Value = ConfigPath> {
        paths_of(segment())
    }

    /// Paths over a tiny alphabet, so that one is often a (segment-wise or byte-wise) prefix of
    /// another.
    fn close_path() -> impl Strategy<Value = ConfigPath> {
        paths_of("a|b|ab".prop_map(String::from))
    }

    fn paths_of(segment: impl Strategy<Value = String>) -> impl Strategy<Value = ConfigPath> {
        proptest::collection::vec(segment, 0..6).prop_map(|segments| {
            segments
                .iter()
                .try_fold(ConfigPath::root(), |path, segment| path.join(segment))
                .expect("generated segments are valid and short")
        })
    }

    proptest! {
        #[test]
        fn parse_round_trips(path in any_path()) {
            prop_assert_eq!(ConfigPath::parse(path.as_str()), Ok(path.clone()));
            let trailing = format!("{}/", path.as_str().trim_start_matches('/'));
            prop_assert_eq!(ConfigPath::parse(&trailing), Ok(path));
        }

        #[test]
        fn parse_never_panics(input in "\\PC{0,40}") {
            let _ = ConfigPath::parse(&input);
        }

        #[test]
        fn starts_with_is_segment_wise(a in close_path(), b in close_path()) {
            let a_segments: Vec<&str> = a.segments().collect();
            let b_segments: Vec<&str> = b.segments().collect();
            prop_assert_eq!(a.starts_with(&b), a_segments.starts_with(&b_segments));
        }

        #[test]
        fn ancestors_are_prefixes(a in any_path()) {
            let ancestors = a.ancestors_and_self();
            prop_assert_eq!(ancestors.len(), a.segment_count() + 1);
            for ancestor in &ancestors {
                prop_assert!(a.starts_with(ancestor));
            }
        }
    }
}
