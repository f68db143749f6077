//! `ETag` and `If-None-Match` on reads of an entry, alike on the writer and the edges.
//!
//! An entry's entity tag is its version, strong: `"3"`. `If-None-Match` (RFC 9110 §13.1.2) is
//! `*` or a list of entity tags, possibly over several header lines; it matches when it is `*`
//! (the entry exists) or when any listed tag equals the current one under the weak comparison
//! (`W/"3"` matches `"3"`). Tags are opaque strings: `"03"` is not `"3"`. A bare `3` (no quotes)
//! is taken as `"3"`, as `If-Match` takes it on writes. Members that are not entity tags are
//! ignored rather than failing the read.

use axum::http::{HeaderMap, HeaderValue, header};
use setpoint_core::Version;

/// The entity tag of `version`.
pub fn etag(version: Version) -> HeaderValue {
    // Digits in quotes are always a valid header value.
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// The opaque part of one `If-None-Match` member (`W/"3"`, `"3"` or bare `3` → `3`), or `None`
/// when it is not an entity tag.
fn opaque(member: &str) -> Option<&str> {
    let tag = member.strip_prefix("W/").unwrap_or(member);
    if let Some(quoted) = tag.strip_prefix('"') {
        let inner = quoted.strip_suffix('"')?;
        return (!inner.contains('"')).then_some(inner);
    }
    (!tag.is_empty() && tag.bytes().all(|b| b.is_ascii_digit())).then_some(tag)
}

/// Whether `If-None-Match` matches the entry at `version` (so the answer is 304).
pub fn if_none_match_hits(headers: &HeaderMap, version: Version) -> bool {
    // Most reads carry no If-None-Match: then nothing is formatted.
    if !headers.contains_key(header::IF_NONE_MATCH) {
        return false;
    }
    if_none_match_hits_tag(headers, &format!("\"{version}\""))
}

/// Whether `If-None-Match` matches the resource whose strong entity tag is `tag` (quoted, as
/// sent in `ETag`), by the same rules.
pub fn if_none_match_hits_tag(headers: &HeaderMap, tag: &str) -> bool {
    let Some(current) = opaque(tag) else {
        return false;
    };
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|text| text.split(','))
        .map(str::trim)
        .any(|member| member == "*" || opaque(member) == Some(current))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hits(lines: &[&str], version: Version) -> bool {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(header::IF_NONE_MATCH, line.parse().unwrap());
        }
        if_none_match_hits(&headers, version)
    }

    #[test]
    fn the_etag_is_the_quoted_version() {
        assert_eq!(etag(3), "\"3\"");
    }

    #[test]
    fn if_none_match_cases() {
        for (lines, version, expected) in [
            (&[][..], 3, false),
            (&["\"3\""][..], 3, true),
            (&["\"2\""][..], 3, false),
            (&["W/\"3\""][..], 3, true),
            (&["3"][..], 3, true),
            (&["*"][..], 3, true),
            (&["\"1\", W/\"3\""][..], 3, true),
            (&["\"1\",\"2\""][..], 3, false),
            // Several header lines make one list.
            (&["\"1\"", "\"3\""][..], 3, true),
            // Opaque: a tag is compared as text, not as a number.
            (&["\"03\""][..], 3, false),
            (&["\"3"][..], 3, false),
            (&["W/*"][..], 3, false),
            (&["\"*\""][..], 3, false),
            (&["garbage, \"3\""][..], 3, true),
        ] {
            assert_eq!(hits(lines, version), expected, "{lines:?} at {version}");
        }
    }

    #[test]
    fn if_none_match_on_an_opaque_tag() {
        let headers = |line: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_NONE_MATCH, line.parse().unwrap());
            headers
        };
        let tag = "\"00ab12\"";
        assert!(if_none_match_hits_tag(&headers("\"00ab12\""), tag));
        assert!(if_none_match_hits_tag(&headers("W/\"00ab12\", \"1\""), tag));
        assert!(if_none_match_hits_tag(&headers("*"), tag));
        assert!(!if_none_match_hits_tag(&headers("\"00ab13\""), tag));
        assert!(!if_none_match_hits_tag(&HeaderMap::new(), tag));
    }
}
