//! Presenting a [`Report`]: JSON (the data as is), CSV (rows), a document (headings,
//! paragraphs, tables) rendered as Markdown or terminal tables, and an HTML page with maps and
//! charts (`html.rs`, template in `templates/`). Every string that did not come
//! from the monitor (app names, the app filter, database strings) is escaped for the format by
//! [`crate::escape`]; JSON strings are escaped by its [`SafeFormatter`](crate::escape::json::SafeFormatter).

mod csv;
mod doc;
mod fleet;
mod html;
mod join;
mod markdown;
mod text;
mod truth;

use std::io::Write;

pub(crate) use doc::Block;

use super::{Error, Format, Report};
use crate::escape;

impl Report {
    /// Writes the report in `format`. Same report, same bytes.
    ///
    /// # Errors
    /// When writing to `out` fails.
    pub fn render(&self, format: Format, out: &mut impl Write) -> Result<(), Error> {
        let io = |source| Error::Write { format: format.name(), source };
        match format {
            Format::Json => {
                escape::json::to_writer_pretty(&mut *out, self).map_err(Error::Json)?;
                writeln!(out).map_err(io)
            }
            Format::Csv => csv::write(self, out),
            Format::Markdown => markdown::write(&doc::document(self, escape::markdown), out).map_err(io),
            Format::Table => text::write(&doc::document(self, escape::terminal), out).map_err(io),
            Format::Html => html::write(self, out),
        }
    }
}

/// Writes a document (other stages' documents, e.g. claim verdicts) as Markdown.
pub(crate) fn write_markdown(doc: &[Block], out: &mut impl Write) -> std::io::Result<()> {
    markdown::write(doc, out)
}

/// Writes a document for a terminal.
pub(crate) fn write_table(doc: &[Block], out: &mut impl Write) -> std::io::Result<()> {
    text::write(doc, out)
}
