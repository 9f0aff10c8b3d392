//! Escaping of text that comes from other processes or users (app names, `comm`, exe paths,
//! command lines, users, units, cgroup paths, container ids, the `--app` filter) for each output
//! format. A leaf module: no I/O, no state; used by `cli` (log lines), `report` (table, Markdown,
//! CSV, JSON) and `identity` (command lines).
//!
//! The rules, one function each:
//! - [`Terminal`] / [`terminal`] / [`terminal_bytes`] (log lines, terminal tables, CSV comments):
//!   every control or invisible character ([`is_invisible`]: C0, DEL, C1, Unicode format
//!   characters such as the bidi overrides U+202A–U+202E, line/paragraph separators, unassigned
//!   code points, and the other default-ignorable code points such as the Hangul fillers) becomes visible as `\n`, `\r`, `\t`, `\xNN` (below U+0080) or `\u{NNNN}`;
//!   a byte that is not UTF-8 becomes `\xNN` (always ≥ `\x80`); `\` becomes `\\`. The output is
//!   one line and the escaping is reversible.
//! - [`markdown`]: [`terminal`] first, then a backslash before every character that could start
//!   Markdown or HTML syntax (`\`, `` ` ``, `*`, `_`, `~`, `[`, `]`, `<`, `>`, `&`, `|`, `#`,
//!   `$`, `@`, `:`), before a `.` that follows `www`, and before a leading `-`, `+`, `=`, `.`,
//!   `!` or the `.`/`)` of a leading number; a leading or trailing space becomes `&#32;`. No
//!   link, autolink, tag, code span, emphasis, heading, list or table cell can be formed, and the
//!   rendered text is the [`terminal`] form.
//! - [`csv_cell`]: [`terminal`] first, then the OWASP rule against formula injection: a cell
//!   starting with `=`, `+`, `-`, `@`, tab or carriage return (or their full-width forms) gets a
//!   leading `'`. Quoting is left to the `csv` crate.
//! - [`html`] (for an HTML renderer): [`terminal`] first, then `&`, `<`, `>`, `"` and `'` as
//!   character references; safe in element content and in quoted attribute values (not in URLs,
//!   scripts or styles).
//! - [`json`]: serde_json escapes C0 controls, `"` and `\`; its [`json::SafeFormatter`]
//!   also writes every other [`is_invisible`] character as `\uNNNN`. The JSON value is unchanged.
//! - [`utf8_or_hex`]: paths that are not UTF-8 (`/proc/<pid>/exe`) with `\xNN` for each
//!   byte that is not part of valid UTF-8, instead of U+FFFD.
//! - [`shell_words`]: command-line arguments (bytes) quoted for bash, joined by spaces: lossless,
//!   argument boundaries kept, non-UTF-8 bytes and controls as `$'\xNN'`.
//!
//! Numbers and the monitor's own strings need no escaping; only apply these to foreign text.

pub mod json;
mod markdown;
mod terminal;
#[cfg(test)]
mod tests;

use icu_properties::{
    CodePointMapData, CodePointSetData,
    props::{DefaultIgnorableCodePoint, GeneralCategory},
};
pub use markdown::markdown;
pub use terminal::{Terminal, list_item, log_quoted, log_value, terminal, terminal_bytes};

/// Whether `c` is a control or invisible character that must not reach an output raw: C0
/// controls, DEL and C1 controls (Cc), format characters such as the bidi controls, zero-width
/// characters and the BOM (Cf), the line and paragraph separators (Zl, Zp), unassigned code
/// points (Cn, whose meaning a terminal may know better than this table), and every other
/// default-ignorable code point (Unicode's `Default_Ignorable_Code_Point`: the Hangul fillers
/// U+115F, U+1160, U+3164 and U+FFA0, the combining grapheme joiner U+034F, the variation
/// selectors, ...), which render as nothing or as blank and could make `curl\u{3164}` pass for
/// `curl`.
#[must_use]
pub fn is_invisible(c: char) -> bool {
    // ASCII first: no ASCII character is Cf, Zl, Zp or Cn, so only its controls count. Every
    // char of every printed name passes here; the category table is a binary search.
    if c.is_ascii() {
        return c.is_ascii_control();
    }
    c.is_control()
        || matches!(
            CodePointMapData::<GeneralCategory>::new().get(c),
            GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
                | GeneralCategory::Unassigned
        )
        || CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
}

/// Characters that make a spreadsheet read a CSV cell as a formula when they come first
/// (OWASP "CSV Injection"), plus the full-width forms some spreadsheets map to them.
const FORMULA_PREFIXES: [char; 10] = ['=', '+', '-', '@', '\t', '\r', '＝', '＋', '－', '＠'];

/// `s` for HTML text or a quoted attribute value: [`terminal`] escaping, then `&`, `<`, `>`,
/// `"`, `'` as character references. Not for URLs, `<script>` or `<style>` content.
#[must_use]
pub fn html(s: &str) -> String {
    let t = terminal(s);
    let mut out = String::with_capacity(t.len() + t.len() / 8);
    for c in t.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` as one CSV cell: [`terminal`] escaping, then a `'` before a formula prefix, and before a
/// `'` too, so that no two texts read the same (`=x` is `'=x`, `'=x` is `''=x`): a reader drops
/// one leading `'`.
#[must_use]
pub fn csv_cell(s: &str) -> String {
    let t = terminal(s);
    if t.starts_with(FORMULA_PREFIXES) || t.starts_with('\'') { format!("'{t}") } else { t }
}

/// A `#` comment line of a CSV file (`line` escaped already: one line). Readers that know
/// comments skip it; a spreadsheet reads it as a row, split at its commas (or semicolons, in
/// locales that separate with them). As it is when every such piece is harmless text; as one
/// quoted cell when a piece would start a formula (`=`, `+`, `-`, `@`, tab, CR or their full-width forms, also after spaces) or
/// the line holds a quote (which would open a quoted cell and swallow the lines after it): then
/// foreign text in it (an app name, a host label) cannot make cells of its own.
#[must_use]
pub fn csv_comment(line: &str) -> String {
    let formula = line
        .split([',', ';'])
        .skip(1)
        .any(|piece| piece.starts_with(FORMULA_PREFIXES) || piece.trim_start().starts_with(FORMULA_PREFIXES));
    if formula || line.contains('"') { format!("\"{}\"", line.replace('"', "\"\"")) } else { line.to_owned() }
}

/// `b` as UTF-8 text, each byte that is not part of valid UTF-8 written as `\xNN` (Python's
/// `backslashreplace`) and a backslash as `\\`, so two different byte strings never give the
/// same text (a file named `a<0xFF>` and one named `a\xff` were one app); borrowed when `b` is
/// valid UTF-8 without a backslash. For paths such as `/proc/<pid>/exe`.
#[must_use]
pub fn utf8_or_hex(b: &[u8]) -> std::borrow::Cow<'_, str> {
    use std::fmt::Write as _;
    if let Ok(s) = std::str::from_utf8(b)
        && !s.contains('\\')
    {
        return s.into();
    }
    let mut out = String::with_capacity(b.len() + 8);
    for chunk in b.utf8_chunks() {
        out.push_str(&chunk.valid().replace('\\', "\\\\"));
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out.into()
}

/// Command-line arguments (raw bytes, as in `/proc/<pid>/cmdline`) quoted for bash and joined by
/// spaces: plain arguments stay as they are, others are quoted (`$'…'` with `\xNN` for control
/// characters and bytes that are not UTF-8), an empty argument is `''`. Lossless: bash reads the
/// result back as the same arguments.
#[must_use]
pub fn shell_words<'a>(args: impl IntoIterator<Item = &'a [u8]>) -> String {
    use shell_quote::{Bash, QuoteExt};
    let mut out = String::new();
    for (i, arg) in args.into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_quoted(Bash, arg);
    }
    out
}
