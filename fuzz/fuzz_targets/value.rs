//! Values as requests and stored records carry them: `ParsedValue::from_stored` on any text in
//! each format, `from_request` on any JSON value, and texts right at the 1 MiB limit.
//!
//! Invariants: the stored bytes are kept verbatim; what a request gives back as stored reads back
//! from storage as the same value (JSON numbers included); a YAML document's structured view is
//! a JSON value that survives storage as JSON; the borrowed and owned API views serialize alike;
//! a stored value is never over the limit, and the limit is exact; `inexact_integer` flags a
//! JSON text exactly when some integer in it would not survive parsing (a float holds it).

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use setpoint_core::{Format, MAX_VALUE_BYTES, ParsedValue, ValueError};

const FORMATS: [Format; 3] = [Format::Json, Format::Yaml, Format::Text];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if mode & 0x80 != 0 {
        check_limit(mode, text);
        return;
    }
    for format in FORMATS {
        if let Ok(value) = ParsedValue::from_stored(format, text) {
            check_stored(&value, format, text);
        }
    }
    if let Ok(json) = serde_json::from_str::<Value>(text) {
        check_exact_integers(text, &json);
        check_request(json);
    }
    for format in [Format::Yaml, Format::Text] {
        let request = ParsedValue::from_request(Value::String(text.to_owned()), Some(format));
        let stored = ParsedValue::from_stored(format, text);
        match (&request, &stored) {
            (Ok(request), Ok(stored)) => assert_eq!(request, stored, "{format} request vs stored"),
            (Err(_), Err(_)) => {}
            _ => panic!("{format}: request {request:?} but stored {stored:?}"),
        }
    }
});

fn check_stored(value: &ParsedValue, format: Format, text: &str) {
    assert_eq!(value.format(), format);
    assert_eq!(value.stored(), text, "stored bytes are verbatim");
    let api = serde_json::to_string(&value.api_value()).expect("api value serializes");
    let owned = serde_json::to_string(&value.to_api_value()).expect("api value serializes");
    assert_eq!(api, owned, "borrowed and owned API views");
    match format {
        Format::Text => assert_eq!(value.structured(), &Value::String(text.to_owned())),
        // The structured view of any format must be storable as a JSON value.
        Format::Json | Format::Yaml => check_request(value.structured().clone()),
    }
}

/// A request's JSON value: stored as compact JSON that reads back as the same value.
fn check_request(json: Value) {
    match ParsedValue::from_request(json.clone(), None) {
        Ok(value) => {
            assert_eq!(value.format(), Format::Json);
            assert!(value.stored().len() <= MAX_VALUE_BYTES);
            assert_eq!(value.structured(), &json);
            let again = ParsedValue::from_stored(Format::Json, value.stored())
                .expect("stored JSON reads back");
            assert_eq!(again, value, "JSON value survives storage");
        }
        Err(ValueError::TooLarge { size, .. }) => assert!(size > MAX_VALUE_BYTES),
        Err(error) => panic!("a JSON value was refused: {error}"),
    }
    if !json.is_string() {
        for format in [Format::Yaml, Format::Text] {
            let refused = ParsedValue::from_request(json.clone(), Some(format));
            assert!(
                matches!(refused, Err(ValueError::NotAString { .. })),
                "{format} took a non-string: {refused:?}"
            );
        }
    }
}

/// A text padded to the limit plus or minus a few bytes (the mode's low bits), in each format.
fn check_limit(mode: u8, text: &str) {
    let size = (MAX_VALUE_BYTES + usize::from(mode & 0x07)).saturating_sub(4);
    // Only comments: valid YAML (null) whatever `text` said, and ASCII, so any length is a
    // char boundary.
    let mut padded: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(64)
        .collect();
    padded.insert_str(0, "# ");
    padded.push('\n');
    if padded.len() > size {
        return;
    }
    padded.push_str(&"#".repeat(size - padded.len()));
    assert_eq!(padded.len(), size);
    for format in [Format::Yaml, Format::Text] {
        let outcome = ParsedValue::from_request(Value::String(padded.clone()), Some(format));
        match outcome {
            Err(ValueError::TooLarge { size: got, limit }) => {
                assert!(size > MAX_VALUE_BYTES, "{size} bytes refused as too large");
                assert_eq!((got, limit), (size, MAX_VALUE_BYTES));
            }
            Ok(value) => {
                assert!(size <= MAX_VALUE_BYTES, "{size} bytes accepted");
                assert_eq!(value.stored().len(), size);
            }
            Err(error) => panic!("{format}: {size} bytes of comment refused: {error}"),
        }
    }
    // As a JSON string, the quotes count: the stored form is two bytes longer.
    let json = Value::String(padded);
    match ParsedValue::from_request(json, None) {
        Ok(value) => assert!(value.stored().len() <= MAX_VALUE_BYTES),
        Err(ValueError::TooLarge { size: got, .. }) => assert!(got > MAX_VALUE_BYTES),
        Err(error) => panic!("json: {error}"),
    }
}

/// A JSON text holds an integer beyond 64 bits exactly when parsing it produced a float that no
/// fraction or exponent asked for; a text without one parses to numbers that print back alike.
fn check_exact_integers(text: &str, json: &Value) {
    match setpoint_core::value::inexact_integer(text.as_bytes()) {
        Some(literal) => {
            let number: Value = serde_json::from_str(&literal).expect("a JSON number");
            assert!(number.is_f64(), "{literal} flagged but parses as {number}");
        }
        None => {
            // Every integer literal fitted: reprinting and reparsing changes nothing.
            let again: Value = serde_json::from_str(&json.to_string()).expect("reparses");
            assert_eq!(&again, json);
        }
    }
}
