//! Markdown rendering of a document (GitHub-flavoured tables). Foreign text in the document is
//! already escaped by [`crate::escape::markdown`]: nothing in it can open a cell, a line or a link.

use std::io::{self, Write};

use super::doc::Block;

/// Writes `doc` as Markdown.
pub(super) fn write(doc: &[Block], out: &mut impl Write) -> io::Result<()> {
    for (i, block) in doc.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        match block {
            Block::Heading(level, text) => writeln!(out, "{} {}", "#".repeat(usize::from(*level)), text)?,
            Block::Para(text) => writeln!(out, "{text}")?,
            Block::List(items) => {
                for item in items {
                    writeln!(out, "- {item}")?;
                }
            }
            Block::Table { headers, numeric, rows } => {
                writeln!(out, "| {} |", headers.join(" | "))?;
                let rule: Vec<&str> = numeric.iter().map(|n| if *n { "---:" } else { "---" }).collect();
                writeln!(out, "| {} |", rule.join(" | "))?;
                for row in rows {
                    writeln!(out, "| {} |", row.join(" | "))?;
                }
            }
        }
    }
    Ok(())
}
