//! `ConfigPath::parse` on any text: a path that parses is canonical (parses to itself, with or
//! without its slashes), within the limits, made of valid segments, and its parent, name,
//! ancestors and `join` agree with one another; the questions asked of a path (writable,
//! environment override, export key) never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use setpoint_core::path::{MAX_PATH_BYTES, MAX_SEGMENTS};
use setpoint_core::{ConfigPath, auth, env, export};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(path) = ConfigPath::parse(input) else {
        return;
    };
    check(&path);
    if path.is_root() {
        return;
    }
    // The same path written with one leading and one trailing slash, or neither.
    let body = path.as_str().trim_start_matches('/');
    for written in [body.to_owned(), format!("/{body}/"), format!("{body}/")] {
        let again = ConfigPath::parse(&written);
        assert_eq!(again.as_ref(), Ok(&path), "{written:?}");
    }
});

fn check(path: &ConfigPath) {
    let text = path.as_str();
    assert_eq!(
        ConfigPath::parse(text).as_ref(),
        Ok(path),
        "canonical form re-parses"
    );
    assert_eq!(path.to_string(), text);
    assert!(text.starts_with('/'), "{text:?}");
    assert!(text.len() <= MAX_PATH_BYTES, "{text:?}");
    assert!(path.segment_count() <= MAX_SEGMENTS, "{text:?}");
    assert_eq!(path.is_root(), text == "/");
    if !path.is_root() {
        assert!(!text.ends_with('/'), "{text:?}");
    }
    for segment in path.segments() {
        assert!(segment != "." && segment != "..", "{text:?}");
        assert!(
            segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')),
            "{text:?}"
        );
    }

    let ancestors = path.ancestors_and_self();
    assert_eq!(ancestors.len(), path.segment_count() + 1, "{text:?}");
    assert_eq!(ancestors.first(), Some(&ConfigPath::root()));
    assert_eq!(ancestors.last(), Some(path));
    for (depth, ancestor) in ancestors.iter().enumerate() {
        assert_eq!(ancestor.segment_count(), depth);
        assert!(path.starts_with(ancestor), "{text:?} below {ancestor}");
        assert_eq!(ConfigPath::parse(ancestor.as_str()).as_ref(), Ok(ancestor));
    }

    match (path.parent(), path.name()) {
        (Some(parent), Some(name)) => {
            assert!(path.starts_with(&parent));
            assert!(!parent.starts_with(path), "{text:?}");
            assert_eq!(parent.join(name).as_ref(), Ok(path), "{text:?}");
        }
        (None, None) => assert!(path.is_root()),
        other => panic!("{text:?}: parent and name disagree: {other:?}"),
    }

    let _ = path.check_writable();
    let _ = auth::is_system(path);
    let key = export::env_key(path);
    assert_eq!(key.is_empty(), path.is_root(), "{text:?}");
    if let Some((environment, base)) = env::split_override(path) {
        if let Ok(rebuilt) = env::override_path(environment, &base) {
            assert_eq!(&rebuilt, path, "override path round trip");
        }
    }
    if let Some(name) = env::definition_name(path) {
        if let Ok(definition) = env::definition_path(name) {
            assert_eq!(&definition, path, "definition path round trip");
        }
    }
}
