//! Enum names in the journal's SQL. Queries take them from `names::sql!` (one list, checked
//! against the stored names there); only the migrations of `schema.rs` spell literals (frozen
//! history), each the stored name of its variant, so renaming a variant fails here instead of
//! silently emptying a query.

use crate::{journal::names, names::NameSource};

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
fn literals() -> [(&'static str, &'static str, &'static [&'static str]); 1] {
    [
        // `schema.rs`: the connections view and its insert trigger (records without names).
        ("'none'", names::name(NameSource::None), &["schema.rs"]),
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

/// No query spells a name [`names::sql!`] has (tests and the migrations of `schema.rs` aside):
/// the macro is the one spelling.
#[test]
fn queries_spell_no_name_the_sql_macro_has() {
    for (file, text) in sources() {
        if file == "schema.rs" || file == "names.rs" || file.ends_with("tests.rs") {
            continue;
        }
        let code = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or_default();
        for (literal, _) in names::sql_names() {
            assert!(!code.contains(literal), "journal/{file} spells {literal}: take it from `names::sql!`");
        }
    }
}
