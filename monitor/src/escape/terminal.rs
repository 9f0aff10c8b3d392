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

/// Whether `s` needs quotes as one value among others: empty, or holding white space (any
/// Unicode space), a quote, `=` or its full-width look-alike, or one of `extra`.
fn needs_quotes(s: &str, extra: &[char]) -> bool {
    s.is_empty() || s.chars().any(|c| c.is_whitespace() || matches!(c, '"' | '=' | '\u{ff1d}') || extra.contains(&c))
}

/// `s` as the value of a `key=value` pair in a log line: escaped for a terminal ([`terminal`]),
/// and in double quotes (a quote inside escaped) when it is empty or holds white space (any
/// Unicode space), a quote, `=` or its full-width look-alike, so that foreign text (an
/// app or thread name) cannot end its pair and forge the next ones.
#[must_use]
pub fn log_value(s: &str) -> String {
    let text = terminal(s);
    if !needs_quotes(&text, &[]) {
        return text;
    }
    in_quotes(&text)
}

/// `s` escaped for a terminal ([`terminal`]) in double quotes, a quote inside escaped: a log
/// line's value that is quoted whatever it holds ([`log_value`] quotes only where needed).
#[must_use]
pub fn log_quoted(s: &str) -> String {
    in_quotes(&terminal(s))
}

fn in_quotes(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\\\""))
}

/// `s` as one item of a list of names in a `key=value` line or a table cell (before the output
/// format's own escaping, which it leaves alone: no backslash is added): in double quotes, a
/// quote inside doubled, when it holds a comma or needs them as a log value does ([`log_value`]);
/// as it is otherwise. An app
/// named `a,b` or `x judged=0` then cannot read as two apps or forge a field.
#[must_use]
pub fn list_item(s: &str) -> std::borrow::Cow<'_, str> {
    if !needs_quotes(s, &[',']) {
        return s.into();
    }
    format!("\"{}\"", s.replace('"', "\"\"")).into()
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
