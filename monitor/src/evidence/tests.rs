//! Bundles from a real journal: signed, checked by our verifier, by Debian's `minisign -V` and
//! `sha256sum -c`; one changed byte in any file is found; key and directory errors are clear.

use std::{path::Path, process::Command};

use super::{BundleInput, Error, SigningKey, keygen, verify_bundle, write_bundle};
use crate::{
    journal::{
        JournalReader,
        tests::{
            fixtures::{self, Flow, at},
            tempdir, writer_in,
        },
        verify_chain,
    },
    report::{Period, Report, ReportQuery},
    tracker::record::RecordKind::Close,
    zone::Zone,
};

const T: i64 = 1_794_805_200;

/// Writes a signed bundle of a small journal into `dir/bundle`; returns the key's public file.
fn bundle(dir: &Path) -> std::path::PathBuf {
    let mut w = writer_in(dir);
    let us = fixtures::public(Some("US"), Some(396_986), Some("ByteDance Inc."));
    let mut f = Flow::new(1, "203.0.113.10:443", at(T));
    w.append(&f.record(Close, at(T + 1), 1234, 56), &fixtures::app("=cmd|evil"), Some(&us));
    w.flush().unwrap();
    let reader = JournalReader::open(w.path()).unwrap();
    let mut q = ReportQuery::new(Period::range(at(T), at(T + 100), &Zone::get("UTC").unwrap()).unwrap());
    q.top_endpoints = usize::MAX;
    let report = Report::build(&reader, &q).unwrap();
    let records = reader.records(q.period.time_range(), None).unwrap();
    assert_eq!(records.len(), 1);
    let databases = reader.databases().unwrap();
    let integrity = verify_chain(w.path()).unwrap();
    let key = keygen(&dir.join("k.key"), &dir.join("k.pub"), false).unwrap();
    let input = BundleInput {
        label: "test".into(),
        report: &report,
        records: &records,
        databases: &databases,
        integrity: Some(&integrity),
        config_toml: "[journal]\n".into(),
        verdicts: Some(serde_json::json!({"claims": []})),
    };
    write_bundle(&dir.join("bundle"), &input, Some(&key)).unwrap();
    dir.join("k.pub")
}

fn tool(name: &str) -> bool {
    let found = Command::new(name).arg("-v").output().is_ok();
    if !found {
        eprintln!("skipping the {name} check: {name} is not installed (`cargo xtask setup` installs it)");
    }
    found
}

#[test]
fn signed_bundle_verifies_here_with_minisign_and_sha256sum() {
    let dir = tempdir();
    let public = bundle(dir.path());
    let b = dir.path().join("bundle");
    let check = verify_bundle(&b, Some(&public)).unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    assert_eq!(check.signature, "valid");
    assert!(check.trusted_comment.as_deref().unwrap().starts_with("monitor evidence test journal-head "));
    let mut names = check.files_ok.clone();
    names.sort();
    assert_eq!(
        names,
        [
            "bundle.json",
            "config.toml",
            "connections.csv",
            "databases.json",
            "evidence.pub",
            "report.json",
            "report.md",
            "verdicts.json"
        ]
    );
    let csv = std::fs::read_to_string(b.join("connections.csv")).unwrap();
    assert!(csv.contains(",'=cmd|evil,") && csv.contains(",1234,56,"), "{csv}");
    if tool("minisign") {
        let out = Command::new("minisign")
            .arg("-V")
            .arg("-p")
            .arg(&public)
            .arg("-m")
            .arg(b.join("MANIFEST"))
            .output()
            .unwrap();
        assert!(out.status.success(), "minisign -V: {}", String::from_utf8_lossy(&out.stderr));
    }
    if tool("sha256sum") {
        let out = Command::new("sha256sum").args(["-c", "MANIFEST"]).current_dir(&b).output().unwrap();
        assert!(out.status.success(), "sha256sum -c: {}", String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn one_changed_byte_in_any_file_is_detected() {
    let dir = tempdir();
    let public = bundle(dir.path());
    let b = dir.path().join("bundle");
    let names: Vec<String> =
        std::fs::read_dir(&b).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 10, "{names:?}");
    for name in names {
        let path = b.join(&name);
        let original = std::fs::read(&path).unwrap();
        let mut changed = original.clone();
        let i = changed.len() / 2;
        changed[i] ^= 0x01;
        std::fs::write(&path, &changed).unwrap();
        let check = verify_bundle(&b, Some(&public)).unwrap();
        assert!(!check.problems.is_empty(), "{name}: change not detected");
        if name == "MANIFEST" || name == "MANIFEST.minisig" {
            assert_eq!(check.signature, "invalid", "{name}");
        } else {
            assert!(check.problems.iter().any(|p| p.starts_with(&format!("{name} was changed"))), "{name}: {check:?}");
        }
        std::fs::write(&path, &original).unwrap();
    }
    // An extra file and a removed one are named too.
    std::fs::write(b.join("extra.txt"), "x").unwrap();
    std::fs::remove_file(b.join("report.md")).unwrap();
    let check = verify_bundle(&b, Some(&public)).unwrap();
    assert_eq!(check.problems, ["report.md is missing", "extra.txt is not in the manifest"]);
    if tool("minisign") {
        let mut m = std::fs::read(b.join("MANIFEST")).unwrap();
        m[0] ^= 1;
        std::fs::write(b.join("MANIFEST"), m).unwrap();
        let out = Command::new("minisign")
            .arg("-V")
            .arg("-p")
            .arg(&public)
            .arg("-m")
            .arg(b.join("MANIFEST"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "minisign accepted a changed manifest");
    }
}

#[test]
fn key_and_directory_errors_are_clear() {
    let dir = tempdir();
    let missing = SigningKey::load(&dir.path().join("none.key")).unwrap_err();
    assert!(matches!(missing, Error::KeyMissing { .. }), "{missing}");
    assert!(missing.to_string().contains("monitor keygen"));
    let (sk, pk) = (dir.path().join("a.key"), dir.path().join("a.pub"));
    keygen(&sk, &pk, false).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&sk).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(matches!(keygen(&sk, &pk, false), Err(Error::KeyExists { .. })));
    SigningKey::load(&sk).unwrap();
    std::fs::set_permissions(&sk, std::fs::Permissions::from_mode(0o644)).unwrap();
    let open = SigningKey::load(&sk).unwrap_err();
    assert!(open.to_string().contains("readable by other users"), "{open}");
    std::fs::write(dir.path().join("junk.key"), "not a key").unwrap();
    std::fs::set_permissions(dir.path().join("junk.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(SigningKey::load(&dir.path().join("junk.key")), Err(Error::Key { .. })));

    // A bundle directory under a regular file, or a non-empty one, is refused before writing.
    let report_dir = tempdir();
    let r = Report::build(
        &JournalReader::open(writer_in(report_dir.path()).path()).unwrap(),
        &ReportQuery::new(Period::range(at(T), at(T + 1), &Zone::get("UTC").unwrap()).unwrap()),
    )
    .unwrap();
    let input = BundleInput {
        label: "x".into(),
        report: &r,
        records: &[],
        databases: &[],
        integrity: None,
        config_toml: String::new(),
        verdicts: None,
    };
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    assert!(matches!(write_bundle(&file.join("sub"), &input, None), Err(Error::BundleDir { .. })));
    assert!(matches!(write_bundle(dir.path(), &input, None), Err(Error::BundleNotEmpty { .. })));
}

#[test]
fn a_signed_export_verifies_with_minisign() {
    let dir = tempdir();
    let (sk, pk) = (dir.path().join("k.key"), dir.path().join("k.pub"));
    keygen(&sk, &pk, false).unwrap();
    let export = dir.path().join("2026-W47.json");
    std::fs::write(&export, "{\"schema\": \"monitor.report/1\"}\n").unwrap();
    let sig = super::sign_file(&export, &sk).unwrap();
    assert_eq!(sig, dir.path().join("2026-W47.json.minisig"));
    let text = std::fs::read_to_string(&sig).unwrap();
    let (_, comment) =
        super::verify_signature(&std::fs::read_to_string(&pk).unwrap(), &text, &std::fs::read(&export).unwrap())
            .unwrap();
    assert_eq!(comment, "monitor export 2026-W47.json");
    if tool("minisign") {
        let out = Command::new("minisign").arg("-V").arg("-p").arg(&pk).arg("-m").arg(&export).output().unwrap();
        assert!(out.status.success(), "minisign -V: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(matches!(super::sign_file(&export, &dir.path().join("none.key")), Err(Error::KeyMissing { .. })));
}

/// `signed` re-made as an attacker would: `report.md` changed, its new hash in `MANIFEST`, the
/// signature and `evidence.pub` removed with their lines. Only the missing signature shows it.
fn strip_signature(signed: &Path, out: &Path) {
    use sha2::{Digest as _, Sha256};
    std::fs::create_dir(out).unwrap();
    for entry in std::fs::read_dir(signed).unwrap() {
        let name = entry.unwrap().file_name();
        if name != "MANIFEST.minisig" && name != "evidence.pub" {
            std::fs::copy(signed.join(&name), out.join(&name)).unwrap();
        }
    }
    let report = out.join("report.md");
    let mut text = std::fs::read_to_string(&report).unwrap();
    text.push_str("\nnothing to see here\n");
    std::fs::write(&report, &text).unwrap();
    let hash: String = Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let manifest: String = std::fs::read_to_string(out.join("MANIFEST"))
        .unwrap()
        .lines()
        .filter(|l| !l.ends_with("  evidence.pub"))
        .map(|l| if l.ends_with("  report.md") { format!("{hash}  report.md\n") } else { format!("{l}\n") })
        .collect();
    std::fs::write(out.join("MANIFEST"), manifest).unwrap();
}

#[test]
fn an_unsigned_bundle_fails_when_a_trusted_key_is_given() {
    let dir = tempdir();
    let public = bundle(dir.path());
    let resigned = dir.path().join("resigned");
    strip_signature(&dir.path().join("bundle"), &resigned);
    // Without a trusted key only integrity can be checked: intact, reported as unsigned.
    let check = verify_bundle(&resigned, None).unwrap();
    assert_eq!((check.signature, check.problems.as_slice()), ("unsigned", &[] as &[String]), "{check:?}");
    // With one, the missing signature is a failure.
    let check = verify_bundle(&resigned, Some(&public)).unwrap();
    assert_eq!(check.signature, "unsigned");
    assert_eq!(check.problems, ["the bundle is not signed, but a trusted public key was given"]);
}

#[test]
fn a_trusted_key_that_is_missing_or_not_a_key_is_refused_before_the_bundle() {
    let dir = tempdir();
    bundle(dir.path());
    let signed = dir.path().join("bundle");
    let unsigned = dir.path().join("unsigned");
    strip_signature(&signed, &unsigned);
    let missing = dir.path().join("missing.pub");
    let garbage = dir.path().join("garbage.pub");
    std::fs::write(&garbage, "not a key\n").unwrap();
    for key in [&missing, &garbage] {
        for b in [&signed, &unsigned, &dir.path().join("no-such-bundle")] {
            let e = verify_bundle(b, Some(key)).expect_err("a bad trusted key must not verify anything");
            assert!(matches!(&e, Error::PublicKey { path, .. } if path == key), "{e:?}");
            let text = e.to_string();
            assert!(text.starts_with(&format!("cannot use public key `{}`", key.display())), "{text}");
        }
    }
}

#[test]
fn keygen_refuses_one_path_for_both_keys_before_writing() {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("k")).unwrap();
    let secret = dir.path().join("k/o.key");
    for public in [secret.clone(), dir.path().join("k/./o.key"), dir.path().join("k/../k/o.key")] {
        let e = keygen(&secret, &public, false).expect_err("one file cannot hold both keys");
        assert!(matches!(e, Error::SameKeyFile { .. }), "{e:?}");
        assert!(e.to_string().contains("same file"), "{e}");
        assert!(!secret.exists(), "{} was written", secret.display());
    }
}

#[test]
fn keygen_leaves_no_secret_key_when_the_public_key_cannot_be_written() {
    let dir = tempdir();
    let secret = dir.path().join("s.key");
    // A public key in a directory that does not exist, and one that exists already.
    let taken = dir.path().join("taken.pub");
    std::fs::write(&taken, "keep me").unwrap();
    for public in [dir.path().join("no-dir/s.pub"), taken.clone()] {
        keygen(&secret, &public, false).expect_err("the public key cannot be written");
        assert!(!secret.exists(), "a secret key without its public key was left at {}", secret.display());
    }
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "keep me");
}
