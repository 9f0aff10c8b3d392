//! Terminal escaping: control and invisible characters made visible, one line, reversible.

use std::fmt::{self, Write};

use super::is_invisible;

/// Displays a string with every control or invisible character escaped (see the module docs of
/// [`crate::escape`]); for log lines: `info!("app={}", Terminal(&name))`.
#[derive(Debug, Clone, Copy)]
pub struct Terminal<'a>(pub &'a str);

impl fmt::Display for Terminal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_str(f, self.0)
    }
}

/// `s` escaped for a terminal: see [`Terminal`].
#[must_use]
pub fn terminal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let _ = write_str(&mut out, s); // writing to a String cannot fail
    out
}

/// Bytes escaped for a terminal: UTF-8 sequences as in [`terminal`], every other byte as `\xNN`.
#[must_use]
pub fn terminal_bytes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        let _ = write_str(&mut out, chunk.valid());
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}

fn write_str(out: &mut impl Write, s: &str) -> fmt::Result {
    let mut plain = 0;
    for (i, c) in s.char_indices() {
        if c != '\\' && !is_invisible(c) {
            continue;
        }
        out.write_str(&s[plain..i])?;
        plain = i + c.len_utf8();
        match c {
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if c.is_ascii() => write!(out, "\\x{:02x}", u32::from(c))?,
            c => write!(out, "\\u{{{:x}}}", u32::from(c))?,
        }
    }
    out.write_str(&s[plain..])
}
