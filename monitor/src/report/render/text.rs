//! Terminal rendering of a document: underlined headings, comfy-table tables. Independent of the
//! terminal (no width detection, no colour), so the same report prints the same bytes. Foreign
//! text in the document is already escaped by [`crate::escape::terminal`].

use std::io::{self, Write};

use comfy_table::{CellAlignment, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};

use super::doc::Block;

/// Writes `doc` for a terminal.
pub(super) fn write(doc: &[Block], out: &mut impl Write) -> io::Result<()> {
    for (i, block) in doc.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        match block {
            Block::Heading(level, text) => {
                writeln!(out, "{text}")?;
                let rule = match level {
                    1 => '=',
                    2 => '-',
                    _ => '~',
                };
                writeln!(out, "{}", rule.to_string().repeat(text.chars().count()))?;
            }
            Block::Para(text) => writeln!(out, "{text}")?,
            Block::List(items) => {
                for item in items {
                    writeln!(out, "  * {item}")?;
                }
            }
            Block::Table { headers, numeric, rows } => {
                let mut table = Table::new();
                table.load_style(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Disabled);
                table.set_header(headers.clone());
                for row in rows {
                    table.add_row(row.clone());
                }
                for (i, n) in numeric.iter().enumerate() {
                    if let Some(column) = table.column_mut(i) {
                        column.set_cell_alignment(if *n { CellAlignment::Right } else { CellAlignment::Left });
                    }
                }
                writeln!(out, "{table}")?;
            }
        }
    }
    Ok(())
}
