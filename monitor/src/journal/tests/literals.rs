//! Enum names the journal's SQL spells as literals (`c.direction = 'inbound'`): each is the stored
//! name of its variant, so renaming a variant fails here instead of silently emptying a query.

use crate::{
    enrich::{Consensus, Scope},
    journal::names::{self, SCOPE_NONE, SCOPE_UNENRICHED},
    names::NameSource,
    tracker::record::{Direction, RecordKind},
};

/// The journal sources whose SQL holds such literals, by path under `journal/`.
const SOURCES: [(&str, &str); 12] = [
    ("evidence.rs", include_str!("../evidence.rs")),
    ("figures.rs", include_str!("../figures.rs")),
    ("flows.rs", include_str!("../flows.rs")),
    ("reader.rs", include_str!("../reader.rs")),
    ("rollup/backfill.rs", include_str!("../rollup/backfill.rs")),
    ("rollup/fold.rs", include_str!("../rollup/fold.rs")),
    ("rollup/read.rs", include_str!("../rollup/read.rs")),
    ("rollup/read_names.rs", include_str!("../rollup/read_names.rs")),
    ("schema.rs", include_str!("../schema.rs")),
    ("services.rs", include_str!("../services.rs")),
    ("session_rows.rs", include_str!("../session_rows.rs")),
    ("truth.rs", include_str!("../truth.rs")),
];

/// Each literal, the stored name it stands for, and the sources that spell it.
fn literals() -> [(&'static str, &'static str, &'static [&'static str]); 9] {
    [
        (
            "'inbound'",
            names::name(Direction::Inbound),
            &["figures.rs", "reader.rs", "rollup/backfill.rs", "rollup/fold.rs"],
        ),
        ("'outbound'", names::name(Direction::Outbound), &["flows.rs"]),
        (
            "'listen'",
            names::name(Direction::Listen),
            &["figures.rs", "rollup/backfill.rs", "rollup/fold.rs", "services.rs"],
        ),
        ("'public'", names::name(Scope::Public), &["rollup/read.rs", "rollup/read_names.rs", "truth.rs"]),
        ("'update'", names::name(RecordKind::Update), &["session_rows.rs"]),
        ("'disagree'", names::name(Consensus::Disagree), &["evidence.rs"]),
        // `schema.rs`: the connections view and its insert trigger (records without names).
        ("'none'", names::name(NameSource::None), &["schema.rs"]),
        // Not enums: the `scope` text of records without a remote address or a lookup.
        ("'none'", SCOPE_NONE, &["figures.rs", "session_rows.rs"]),
        ("'unenriched'", SCOPE_UNENRICHED, &["evidence.rs"]),
    ]
}

fn source(file: &str) -> &'static str {
    SOURCES.iter().find(|(f, _)| *f == file).map(|(_, text)| *text).expect("file listed in SOURCES")
}

#[test]
fn sql_literals_are_the_stored_names_of_their_variants() {
    for (literal, name, files) in literals() {
        assert_eq!(literal, format!("'{name}'"), "a query spells {literal}; the stored name is now {name:?}");
        for file in files {
            assert!(source(file).contains(literal), "journal/{file} no longer spells {literal}: update this list");
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
    for (file, text) in SOURCES {
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
                        listed.iter().any(|(l, _, files)| *l == literal && files.contains(&file)),
                        "journal/{file}: `{column}` compared with {literal}, not in `literals()`"
                    );
                }
            }
        }
    }
}
