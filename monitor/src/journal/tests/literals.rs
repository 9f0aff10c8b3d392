//! Enum names the journal's SQL spells as literals (`c.direction = 'inbound'`): each is the stored
//! name of its variant, so renaming a variant fails here instead of silently emptying a query.

use crate::{
    enrich::{Consensus, Scope},
    journal::names::{self, SCOPE_NONE, SCOPE_UNENRICHED},
    names::NameSource,
    tracker::record::{Direction, RecordKind},
};

/// Every source of the journal but its tests, by path under `journal/`, read when the test
/// runs: a new file's SQL is checked too.
fn sources() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/journal");
    let mut out = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("journal sources") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "tests") {
                    dirs.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let name = path.strip_prefix(&root).expect("under journal/").to_string_lossy().into_owned();
                out.push((name, std::fs::read_to_string(&path).expect("read source")));
            }
        }
    }
    assert!(out.len() > 20, "journal sources found: {}", out.len());
    out
}

/// Each literal, the stored name it stands for, and the sources that spell it.
fn literals() -> [(&'static str, &'static str, &'static [&'static str]); 9] {
    [
        (
            "'inbound'",
            names::name(Direction::Inbound),
            &["figures.rs", "narrow.rs", "reader.rs", "rollup/backfill.rs", "rollup/fold.rs"],
        ),
        ("'outbound'", names::name(Direction::Outbound), &["flows.rs"]),
        (
            "'listen'",
            names::name(Direction::Listen),
            &["figures.rs", "rollup/backfill.rs", "rollup/fold.rs", "services.rs"],
        ),
        ("'public'", names::name(Scope::Public), &["narrow.rs", "rollup/read.rs", "rollup/read_names.rs", "truth.rs"]),
        ("'update'", names::name(RecordKind::Update), &["session_rows.rs"]),
        ("'disagree'", names::name(Consensus::Disagree), &["evidence.rs"]),
        // `schema.rs`: the connections view and its insert trigger (records without names).
        ("'none'", names::name(NameSource::None), &["schema.rs"]),
        // Not enums: the `scope` text of records without a remote address or a lookup.
        ("'none'", SCOPE_NONE, &["figures.rs", "session_rows.rs"]),
        ("'unenriched'", SCOPE_UNENRICHED, &["evidence.rs"]),
    ]
}

#[test]
fn sql_literals_are_the_stored_names_of_their_variants() {
    let sources = sources();
    for (literal, name, files) in literals() {
        assert_eq!(literal, format!("'{name}'"), "a query spells {literal}; the stored name is now {name:?}");
        for file in files {
            let text = sources.iter().find(|(f, _)| f == file).map(|(_, t)| t).expect("a journal source");
            assert!(text.contains(literal), "journal/{file} no longer spells {literal}: update this list");
        }
    }
}

/// The list above is complete: every literal compared with (or substituted for) an enum column
/// in these sources is in it.
#[test]
fn every_literal_compared_with_an_enum_column_is_listed() {
    const COLUMNS: [&str; 9] =
        ["event", "protocol", "direction", "owner_source", "payload_source", "source", "scope", "consensus", "kind"];
    const OPERATORS: [&str; 5] = [" = '", " != '", " IS '", " IS NOT '", ", '"];
    let listed = literals();
    for (file, text) in sources() {
        for column in COLUMNS {
            for operator in OPERATORS {
                let pattern = format!("{column}{operator}");
                for (at, _) in text.match_indices(&pattern) {
                    let rest = &text[at + pattern.len()..];
                    let word = &rest[..rest.find('\'').expect("closing quote")];
                    if word.is_empty() {
                        continue; // '' stands for NULL (the rollups' keys), not for a name
                    }
                    let literal = format!("'{word}'");
                    assert!(
                        listed.iter().any(|(l, _, files)| *l == literal && files.contains(&file.as_str())),
                        "journal/{file}: `{column}` compared with {literal}, not in `literals()`"
                    );
                }
            }
        }
    }
}
