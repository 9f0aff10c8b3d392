//! Presenting a [`Report`]: JSON (the data as is), CSV (rows), and a document (headings,
//! paragraphs, tables) rendered as Markdown or terminal tables.

mod csv;
mod doc;
mod markdown;
mod text;

use std::io::Write;

use super::{Error, Format, Report};

impl Report {
    /// Writes the report in `format`. Same report, same bytes.
    ///
    /// # Errors
    /// When writing to `out` fails.
    pub fn render(&self, format: Format, out: &mut impl Write) -> Result<(), Error> {
        let io = |source| Error::Write { format: format.name(), source };
        match format {
            Format::Json => {
                serde_json::to_writer_pretty(&mut *out, self).map_err(Error::Json)?;
                writeln!(out).map_err(io)
            }
            Format::Csv => csv::write(self, out),
            Format::Markdown => markdown::write(&doc::document(self), out).map_err(io),
            Format::Table => text::write(&doc::document(self), out).map_err(io),
        }
    }
}
