//! JSON without raw control or invisible characters. serde_json already escapes C0 controls, `"`
//! and `\`; DEL, C1 controls, bidi overrides and other [`is_invisible`] characters it writes as
//! they are (valid JSON, but they reach a terminal that prints the JSON). [`SafeFormatter`] writes
//! them as `\uNNNN` (a surrogate pair above U+FFFF): the parsed value is the same.

use std::io;

use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter, PrettyFormatter, Serializer};

use super::is_invisible;

/// A serde_json formatter that escapes every [`is_invisible`] character, wrapping the compact or
/// pretty formatter (the methods those override are forwarded, so the layout is theirs).
#[derive(Debug, Clone)]
pub struct SafeFormatter<F>(pub F);

/// Writes `value` as compact JSON (one line), escaped by [`SafeFormatter`].
///
/// # Errors
/// When serialisation or writing fails.
pub fn to_writer<W: io::Write, T: Serialize + ?Sized>(writer: W, value: &T) -> serde_json::Result<()> {
    value.serialize(&mut Serializer::with_formatter(writer, SafeFormatter(CompactFormatter)))
}

/// Writes `value` as pretty JSON (two-space indent, as `serde_json::to_writer_pretty`), escaped by
/// [`SafeFormatter`].
///
/// # Errors
/// When serialisation or writing fails.
pub fn to_writer_pretty<W: io::Write, T: Serialize + ?Sized>(writer: W, value: &T) -> serde_json::Result<()> {
    value.serialize(&mut Serializer::with_formatter(writer, SafeFormatter(PrettyFormatter::new())))
}

macro_rules! forward {
    ($($name:ident $(($arg:ident: $ty:ty))?),* $(,)?) => {$(
        fn $name<W: ?Sized + io::Write>(&mut self, writer: &mut W $(, $arg: $ty)?) -> io::Result<()> {
            self.0.$name(writer $(, $arg)?)
        }
    )*};
}

impl<F: Formatter> Formatter for SafeFormatter<F> {
    forward!(
        begin_array,
        end_array,
        begin_array_value(first: bool),
        end_array_value,
        begin_object,
        end_object,
        begin_object_key(first: bool),
        end_object_key,
        begin_object_value,
        end_object_value,
    );

    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        // ASCII without DEL (nearly every fragment: names, addresses, keys) has nothing to
        // escape: serde_json hands over fragments without C0 controls, `"` or `\`, so only DEL
        // and non-ASCII characters can need it. Two word-at-a-time scans (`is_ascii`, memchr)
        // instead of a byte or character walk.
        if fragment.is_ascii() && !fragment.as_bytes().contains(&0x7f) {
            return self.0.write_string_fragment(writer, fragment);
        }
        let mut plain = 0;
        for (i, c) in fragment.char_indices() {
            if !is_invisible(c) {
                continue;
            }
            self.0.write_string_fragment(writer, &fragment[plain..i])?;
            plain = i + c.len_utf8();
            let mut units = [0; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
        }
        self.0.write_string_fragment(writer, &fragment[plain..])
    }
}
