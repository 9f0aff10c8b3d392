//! Markdown rendering of a document (GitHub-flavoured tables).

use std::io::{self, Write};

use super::doc::Block;

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

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
                    let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
                    writeln!(out, "| {} |", cells.join(" | "))?;
                }
            }
        }
    }
    Ok(())
}
