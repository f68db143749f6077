//! Printing for people and for scripts: aligned tables, values as a person would type them,
//! JSON documents, and a progress line that redraws itself only on a terminal. Nothing here
//! talks to the network.

use std::io::{IsTerminal, Write};

use serde_json::Value;

/// Prints `value` as pretty JSON (the `-o json` form of every verb but `watch`).
pub fn json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// A value as a person reads it: a string as its text (as `jq -r` would), anything else as
/// pretty JSON.
pub fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_else(|_| other.to_string()),
    }
}

/// A value on one line, cut to `max` characters (for tables).
pub fn brief(value: &Value, max: usize) -> String {
    let text = match value {
        Value::String(text) => text.replace('\n', "\\n"),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    if text.chars().count() > max {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// A table cell from a JSON field: strings bare, null or missing as `-`.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(text) if text.is_empty() => "-".to_owned(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Prints rows under a header, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Progress of a long operation on stderr: redrawn in place on a terminal; on anything else
/// (a pipe, a CI log) one plain line per change, never repeated.
pub struct Progress {
    terminal: bool,
    last: Option<String>,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            terminal: std::io::stderr().is_terminal(),
            last: None,
        }
    }

    pub fn terminal(&self) -> bool {
        self.terminal
    }

    pub fn update(&mut self, line: &str) {
        if self.last.as_deref() == Some(line) {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.terminal {
            // Carriage return + clear line: the status stays on one line.
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
        self.last = Some(line.to_owned());
    }

    /// Ends the redrawn line so what follows starts on its own.
    pub fn finish(&mut self) {
        if self.terminal && self.last.is_some() {
            eprintln!();
        }
        self.last = None;
    }
}

/// `[#####-----]` for a percentage.
pub fn bar(percent: u64) -> String {
    let filled = usize::try_from(percent.min(100) / 5).unwrap_or(20);
    format!("[{}{}]", "#".repeat(filled), "-".repeat(20 - filled))
}
