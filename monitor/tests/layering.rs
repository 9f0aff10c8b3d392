//! Data flows forward only: no pipeline stage imports a stage downstream of it, and the shared
//! leaves import no stage (the order of `lib.rs`'s `# Layout`). Reads the crate's sources for
//! `crate::` paths; test code (`tests` directories, `tests.rs` files, an inline `mod tests { }`
//! at a file's end) and comments (doc links) are left out. Relative paths (`super::super::`)
//! are not followed.
#![expect(clippy::expect_used, reason = "test helpers panic on failure (house style R16)")]

use std::{
    fs,
    path::{Path, PathBuf},
};

/// Stages in pipeline order. `settings` holds every stage's settings, so it comes after them;
/// `daemon`, which wires the stages from the settings, after it.
const STAGES: [&str; 15] = [
    "probe",
    "tracker",
    "identity",
    "naming",
    "enrich",
    "residency",
    "journal",
    "report",
    "claims",
    "diff",
    "evidence",
    "metrics",
    "settings",
    "daemon",
    "privileges",
];

/// Shared leaves: they import no stage.
const LEAVES: [&str; 11] =
    ["stats", "week", "zone", "variant", "names", "escape", "files", "sys", "world", "clock", "errors"];

fn sources(module: &str) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let file = src.join(format!("{module}.rs"));
    if file.is_file() {
        out.push(file);
    }
    let mut dirs = vec![src.join(module)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.expect("directory entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            if path.is_dir() {
                if name != "tests" {
                    dirs.push(path);
                }
            } else if name.ends_with(".rs") && name != "tests.rs" {
                out.push(path);
            }
        }
    }
    out
}

/// The crate's modules that `text`'s code (comments and an inline test module cut off) names
/// as `crate::<module>`, also inside a group (`use crate::{journal::X, report};`).
fn imports(text: &str) -> Vec<String> {
    // An inline test module ends the file's code; `mod tests;` (in a file of its own, outside
    // the check) does not.
    let code = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or_default();
    let code: String = code.lines().map(|l| l.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n");
    let ident =
        |s: &str| -> String { s.trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect() };
    let mut found: Vec<String> = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let names = match rest.strip_prefix('{') {
            Some(group) => {
                // The group's top-level items, up to its closing brace.
                let (mut depth, mut items, mut item_start) = (0usize, Vec::new(), 0);
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            items.push(&group[item_start..j]);
                            break;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            items.push(&group[item_start..j]);
                            item_start = j + 1;
                        }
                        _ => {}
                    }
                }
                items.into_iter().map(ident).collect()
            }
            None => vec![ident(rest)],
        };
        for name in names {
            if !name.is_empty() && name != "self" && !found.contains(&name) {
                found.push(name);
            }
        }
    }
    found
}

/// Whether `module` importing `imported` goes against the flow of data.
fn against_the_flow(module: &str, imported: &str) -> bool {
    let rank = |m: &str| STAGES.iter().position(|s| *s == m);
    match (rank(module), rank(imported)) {
        (_, None) => false,
        (None, Some(_)) => true, // a leaf imports a stage
        (Some(own), Some(other)) => other > own,
    }
}

/// Imports of `module` that break the order: `(file, imported module)`.
fn violations(module: &str) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for path in sources(module) {
        let text = fs::read_to_string(&path).expect("read source");
        out.extend(imports(&text).into_iter().filter(|m| against_the_flow(module, m)).map(|m| (path.clone(), m)));
    }
    out
}

#[test]
fn no_stage_imports_a_stage_downstream_and_no_leaf_imports_a_stage() {
    let mut all = Vec::new();
    for module in STAGES.iter().chain(LEAVES.iter()) {
        assert!(!sources(module).is_empty(), "{module}: no source found (renamed? update this test and lib.rs)");
        all.extend(violations(module));
    }
    assert!(all.is_empty(), "imports against the flow of data: {all:#?}");
}

#[test]
fn every_module_of_the_crate_is_placed() {
    let lib = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).expect("lib.rs");
    for line in lib.lines() {
        if let Some(name) = line.strip_prefix("pub mod ").and_then(|r| r.strip_suffix(';')) {
            assert!(
                STAGES.contains(&name) || LEAVES.contains(&name),
                "module {name} is neither a stage nor a leaf here"
            );
        }
    }
}

#[test]
fn the_check_finds_imports_against_the_flow() {
    let text = "use crate::journal::JournalWriter;\nuse crate::{\n    stats::{A, B},\n    report, // a comment\n};\n/// [`crate::metrics`]\n#[cfg(test)]\nmod tests;\nuse crate::claims;\n#[cfg(test)]\nmod tests {\n use crate::daemon;\n}";
    assert_eq!(imports(text), ["journal", "stats", "report", "claims"], "code only: no doc link, no test module");
    assert!(against_the_flow("tracker", "journal"));
    assert!(against_the_flow("week", "journal"), "a leaf imports a stage");
    assert!(!against_the_flow("journal", "tracker"));
    assert!(!against_the_flow("journal", "week"));
    assert!(!against_the_flow("journal", "journal"));
}

/// Rust files of the workspace longer than `limit` lines (`target` directories left out).
fn longer_than(limit: usize) -> Vec<(PathBuf, usize)> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let mut dirs: Vec<PathBuf> =
        ["monitor", "monitor-common", "monitor-ebpf", "xtask"].iter().map(|c| workspace.join(c)).collect();
    let mut long = Vec::new();
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "target") {
                    dirs.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let lines = fs::read_to_string(&path).expect("source file").lines().count();
                if lines > limit {
                    long.push((path, lines));
                }
            }
        }
    }
    long
}

/// The house style's cap (R20: split a file past 800 lines), tests included.
#[test]
fn no_source_file_is_past_800_lines() {
    let long = longer_than(800);
    assert!(long.is_empty(), "split these files (house style R20): {long:#?}");
    assert!(!longer_than(400).is_empty(), "the walk finds the workspace's sources");
}
