//! Markdown escaping (CommonMark + GitHub extensions): foreign text that forms no syntax.

use super::terminal;

/// Characters escaped wherever they are: inline syntax (code spans, emphasis, strikethrough,
/// links, images, autolinks, raw HTML, entities, GFM table cells, math) and the ATX heading
/// closing sequence. `:` and `@` break GFM extended autolinks (`https://…`, `user@host.example`).
const ALWAYS: &[char] = &['\\', '`', '*', '_', '~', '[', ']', '<', '>', '&', '|', '#', '$', '@', ':'];
/// Characters escaped only first: block syntax at the start of a line (list items, setext
/// underline, thematic break, an image's `!`).
const LEADING: &[char] = &['-', '+', '=', '.', '!'];

/// `s` for Markdown: one line, rendered as the [`terminal`] form of `s`, forming no link, tag or
/// other syntax whether it stands in a table cell, a heading, a list item or at the start of a
/// paragraph. See the module docs of [`crate::escape`].
#[must_use]
pub fn markdown(s: &str) -> String {
    let t = terminal(s);
    // "1." / "1)" at the start of a line would open an ordered list.
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let last = t.len().saturating_sub(1);
    let mut out = String::with_capacity(t.len() + t.len() / 4);
    for (i, c) in t.char_indices() {
        if c == ' ' && (i == 0 || i == last) {
            out.push_str("&#32;"); // stripped by renderers when raw; four would open a code block
            continue;
        }
        let www = c == '.' && out.len() >= 3 && out.as_bytes()[out.len() - 3..].eq_ignore_ascii_case(b"www");
        if ALWAYS.contains(&c)
            || (i == 0 && LEADING.contains(&c))
            || (digits > 0 && i == digits && matches!(c, '.' | ')'))
            || www
        {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
