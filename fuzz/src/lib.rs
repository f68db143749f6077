//! What the fuzz targets share: JSON values and texts built from the fuzzer's bytes, biased
//! towards what Setpoint's parsers treat specially (references, schema keywords, paths), and
//! small readers that check an exporter's output the way its consumer would read it.
//!
//! Nothing here is fuzzed itself; a target panics (a finding) only on a broken invariant.

use arbitrary::{Result, Unstructured};
use serde_json::{Map, Number, Value};

/// Pieces a text is often made of: the substitution grammar, path and name characters, YAML and
/// JSON punctuation, characters the exporters escape.
const TOKENS: &[&str] = &[
    "${",
    "$${",
    "$",
    "}",
    ":",
    "secret:",
    "#",
    "/",
    ".",
    "..",
    "-",
    "_",
    "A",
    "B",
    "C",
    "DB_HOST",
    "x",
    "1",
    " ",
    "\n",
    "\r",
    "\t",
    "'",
    "\"",
    "\\",
    "`",
    "\0",
    "é",
    "\u{85}",
    "\u{2028}",
    "\u{feff}",
    "\u{1f512}",
    "env",
    "_setpoint",
    "history",
    "- ",
    ": ",
    "{",
    "[",
    "]",
    "&a",
    "*a",
    "!!str",
    "yes",
    "~",
    "null",
    "0x1F",
    "1e400",
    "-0",
    ".inf",
    ".nan",
];

/// A text made of [`TOKENS`] and arbitrary strings, at most `max_pieces` pieces.
pub fn text(u: &mut Unstructured<'_>, max_pieces: usize) -> Result<String> {
    let pieces = u.int_in_range(0..=max_pieces)?;
    let mut out = String::new();
    for _ in 0..pieces {
        if u.ratio(3, 4)? {
            out.push_str(u.choose(TOKENS)?);
        } else {
            let piece: &str = u.arbitrary()?;
            out.push_str(piece);
        }
    }
    Ok(out)
}

/// A JSON number: integers at the edges of i64/u64, floats (never NaN or infinite, which JSON
/// cannot hold).
pub fn number(u: &mut Unstructured<'_>) -> Result<Number> {
    Ok(match u.int_in_range(0..=3)? {
        0 => Number::from(u.arbitrary::<i64>()?),
        1 => Number::from(u.arbitrary::<u64>()?),
        2 => Number::from(u.int_in_range(-3i64..=3)?),
        _ => Number::from_f64(u.arbitrary::<f64>()?).unwrap_or_else(|| Number::from(0)),
    })
}

/// A JSON value at most `depth` levels deep whose strings come from `string`, and whose object
/// keys from `key`.
pub fn json_with(
    u: &mut Unstructured<'_>,
    depth: usize,
    string: &mut impl FnMut(&mut Unstructured<'_>) -> Result<String>,
    key: &mut impl FnMut(&mut Unstructured<'_>) -> Result<String>,
) -> Result<Value> {
    let kinds = if depth == 0 { 4 } else { 6 };
    Ok(match u.int_in_range(0..=kinds - 1)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::Number(number(u)?),
        3 => Value::String(string(u)?),
        4 => {
            let len = u.int_in_range(0..=4)?;
            let mut items = Vec::with_capacity(len);
            for _ in 0..len {
                items.push(json_with(u, depth - 1, string, key)?);
            }
            Value::Array(items)
        }
        _ => {
            let len = u.int_in_range(0..=4)?;
            let mut map = Map::new();
            for _ in 0..len {
                let name = key(u)?;
                map.insert(name, json_with(u, depth - 1, string, key)?);
            }
            Value::Object(map)
        }
    })
}

/// A JSON value at most `depth` deep with texts from [`text`].
pub fn json(u: &mut Unstructured<'_>, depth: usize) -> Result<Value> {
    json_with(u, depth, &mut |u| text(u, 6), &mut |u| text(u, 2))
}

/// Every string of `value` (object keys included).
pub fn strings(value: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    let mut stack = vec![value];
    while let Some(node) = stack.pop() {
        match node {
            Value::String(text) => out.push(text.as_str()),
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => {
                for (key, member) in map {
                    out.push(key.as_str());
                    stack.push(member);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    out
}

/// Reads a `.env` file as bash would read the lines `KEY='…'` / `KEY="…"` the dotenv exporter
/// writes: single quotes literal, `\'` between them an escaped quote, double quotes literal (the
/// exporter uses them only for values with none of `"`, `$`, `` ` ``, `\`). `None` when the
/// text is not made of such lines.
pub fn read_dotenv(text: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\n' => break,
                '\'' => loop {
                    match chars.next()? {
                        '\'' => break,
                        c => value.push(c),
                    }
                },
                '"' => loop {
                    match chars.next()? {
                        '"' => break,
                        '$' | '`' | '\\' => return None,
                        c => value.push(c),
                    }
                },
                '\\' => value.push(chars.next()?),
                _ => return None,
            }
        }
        out.push((key, value));
    }
    Some(out)
}

/// Decodes standard, padded base64; `None` when `text` is not that.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let sextet = |c: u8| -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    };
    let bytes = text.as_bytes();
    if bytes.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let padding = chunk.iter().rev().take_while(|b| **b == b'=').count();
        if padding > 2 {
            return None;
        }
        let mut group = 0u32;
        for (index, byte) in chunk.iter().enumerate() {
            let value = if index >= 4 - padding {
                0
            } else {
                sextet(*byte)?
            };
            group = group << 6 | value;
        }
        let decoded = [(group >> 16) as u8, (group >> 8) as u8, group as u8];
        out.extend_from_slice(&decoded[..3 - padding]);
    }
    Some(out)
}
