//! Writing and checking a bundle directory (layout: the module docs).

use std::{
    collections::BTreeMap,
    fs::{DirBuilder, OpenOptions},
    io::Write as _,
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{Error, SigningKey, keys};
use crate::{
    errors::chain,
    escape,
    journal::{DatabaseRow, Integrity, RecordRow},
    report::{Format, Report},
};

/// The manifest's file name.
pub const MANIFEST: &str = "MANIFEST";
/// The manifest's signature.
pub const SIGNATURE: &str = "MANIFEST.minisig";
/// The public key written beside a signature.
const PUBLIC_KEY: &str = "evidence.pub";
/// Largest manifest, signature or public key read back.
const SMALL_MAX_BYTES: u64 = 1 << 20;

/// What a bundle is made of (gathered by the caller from the journal).
pub struct BundleInput<'a> {
    /// What the bundle covers: `2026-W47` or `session build-42`.
    pub label: String,
    /// The report (every endpoint).
    pub report: &'a Report,
    /// The connection records of the report's period (and session cgroup).
    pub records: &'a [RecordRow],
    /// The journal's geolocation databases.
    pub databases: &'a [DatabaseRow],
    /// The journal's hash chain check.
    pub integrity: Option<&'a Integrity>,
    /// The effective configuration (TOML).
    pub config_toml: String,
    /// SEAM (claims): the verdicts JSON of `monitor verify` for the same period, written as
    /// `verdicts.json`; `None` until the claims module is wired in.
    pub verdicts: Option<Value>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// SHA-256 of a file, streamed (databases can be large); `None` when it cannot be read.
fn file_sha256(path: &Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut h = Sha256::new();
    std::io::copy(&mut file, &mut h).ok()?;
    Some(hex(&h.finalize()))
}

/// Creates `dir` (mode 0750) or accepts it when it is an empty directory.
fn prepare(dir: &Path) -> Result<(), Error> {
    let io = |source| Error::BundleDir { path: dir.to_path_buf(), source };
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if !meta.is_dir() => return Err(Error::BundleNotDir { path: dir.to_path_buf() }),
        Ok(_) => {
            let mut entries = std::fs::read_dir(dir).map_err(io)?;
            if entries.next().is_some() {
                return Err(Error::BundleNotEmpty { path: dir.to_path_buf() });
            }
        }
        Err(_) => DirBuilder::new().recursive(true).mode(0o750).create(dir).map_err(io)?,
    }
    Ok(())
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Error> {
    let path = dir.join(name);
    let io = |source| Error::Write { path: path.clone(), source };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(&path)
        .map_err(io)?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(io)
}

/// The records as CSV (text cells through [`escape::csv_cell`]).
fn records_csv(records: &[RecordRow]) -> Result<Vec<u8>, Error> {
    let err = |e: csv::Error| Error::Write { path: PathBuf::from("connections.csv"), source: e.into() };
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in records {
        let mut r = r.clone();
        for s in [&mut r.app, &mut r.comm, &mut r.event, &mut r.protocol, &mut r.direction] {
            *s = escape::csv_cell(s);
        }
        for s in [&mut r.exe, &mut r.as_org, &mut r.scope, &mut r.country, &mut r.local_ip, &mut r.remote_ip]
            .into_iter()
            .flatten()
        {
            *s = escape::csv_cell(s);
        }
        w.serialize(r).map_err(err)?;
    }
    if records.is_empty() {
        w.write_record(["id"]).map_err(err)?;
    }
    w.into_inner().map_err(|e| Error::Write { path: PathBuf::from("connections.csv"), source: e.into_error() })
}

fn databases_json(databases: &[DatabaseRow]) -> Value {
    let list: Vec<Value> = databases
        .iter()
        .map(|d| {
            let build = i64::try_from(d.build_epoch).ok().and_then(|s| Timestamp::from_second(s).ok());
            json!({
                "id": d.id, "role": d.role, "database_type": d.database_type, "build_epoch": d.build_epoch,
                "build_date": build.map(|t| t.strftime("%Y-%m-%d").to_string()), "path": d.path,
                "in_use": d.in_use, "sha256": d.path.as_deref().and_then(file_sha256),
            })
        })
        .collect();
    Value::Array(list)
}

fn pretty(v: &impl Serialize) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    escape::json::to_writer_pretty(&mut out, v).map_err(|e| Error::Write { path: "json".into(), source: e.into() })?;
    out.push(b'\n');
    Ok(out)
}

/// Writes the bundle into `dir` (new or empty) and signs its manifest with `key`. Returns the
/// files written, manifest and signature last.
///
/// # Errors
/// [`Error::BundleDir`], [`Error::BundleNotDir`], [`Error::BundleNotEmpty`], [`Error::Write`],
/// [`Error::Sign`].
pub fn write_bundle(dir: &Path, input: &BundleInput<'_>, key: Option<&SigningKey>) -> Result<Vec<PathBuf>, Error> {
    prepare(dir)?;
    let mut files: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    let mut json_report = Vec::new();
    input.report.render(Format::Json, &mut json_report)?;
    files.insert("report.json", json_report);
    let mut md = Vec::new();
    input.report.render(Format::Markdown, &mut md)?;
    files.insert("report.md", md);
    files.insert("connections.csv", records_csv(input.records)?);
    files.insert("databases.json", pretty(&databases_json(input.databases))?);
    files.insert("config.toml", input.config_toml.clone().into_bytes());
    if let Some(v) = &input.verdicts {
        files.insert("verdicts.json", pretty(v)?);
    }
    if let Some(key) = key {
        files.insert(PUBLIC_KEY, key.public_text()?.into_bytes());
    }
    let bundle = json!({
        "schema": "monitor.evidence/1",
        "label": input.label,
        "monitor_version": env!("CARGO_PKG_VERSION"),
        "created": Timestamp::now(),
        "period": input.report.period,
        "session": input.report.session,
        "records": input.records.len(),
        "journal_integrity": input.integrity,
        "verdicts": input.verdicts.as_ref().map(|_| "verdicts.json"),
        "signed_by": key.map(SigningKey::key_id),
    });
    files.insert("bundle.json", pretty(&bundle)?);
    let mut manifest = String::new();
    let mut written = Vec::new();
    for (name, bytes) in &files {
        write_file(dir, name, bytes)?;
        manifest.push_str(&format!("{}  {name}\n", hex(&Sha256::digest(bytes))));
        written.push(dir.join(name));
    }
    write_file(dir, MANIFEST, manifest.as_bytes())?;
    written.push(dir.join(MANIFEST));
    if let Some(key) = key {
        let head = input.integrity.and_then(|i| i.head.as_deref()).unwrap_or("none");
        let comment = format!("monitor evidence {} journal-head {head}", input.label);
        write_file(dir, SIGNATURE, key.sign(manifest.as_bytes(), &comment)?.as_bytes())?;
        written.push(dir.join(SIGNATURE));
    }
    Ok(written)
}

/// What [`verify_bundle`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleCheck {
    /// Files whose hash matches the manifest.
    pub files_ok: Vec<String>,
    /// Every mismatch: changed, missing or unlisted files, a bad signature.
    pub problems: Vec<String>,
    /// `valid`, `invalid` or `unsigned`.
    pub signature: &'static str,
    /// Key id of a valid signature.
    pub key_id: Option<String>,
    /// Its trusted comment.
    pub trusted_comment: Option<String>,
    /// Where the public key came from: the given file, or `bundle` (its own `evidence.pub`).
    pub key_source: Option<String>,
}

fn read_small(path: &Path) -> Result<Vec<u8>, Error> {
    crate::files::read_regular(path, SMALL_MAX_BYTES).map_err(|source| Error::Read { path: path.to_path_buf(), source })
}

/// Checks every file of the bundle in `dir` against its manifest, and the manifest's signature
/// with the trusted `public_key` (or the bundle's own `evidence.pub` when `None`). With a trusted
/// key, an unsigned bundle is a problem: anyone can re-hash changed files and drop the signature.
///
/// # Errors
/// [`Error::PublicKey`] when the trusted key cannot be read or is not a key (checked first);
/// [`Error::Read`] when the manifest or the bundle's signature or own public key cannot be read,
/// [`Error::ReadDir`] when the bundle directory cannot be listed.
pub fn verify_bundle(dir: &Path, public_key: Option<&Path>) -> Result<BundleCheck, Error> {
    let trusted =
        public_key.map(|p| keys::load_public(p).map(|k| (k, p.to_string_lossy().into_owned()))).transpose()?;
    let manifest = read_small(&dir.join(MANIFEST))?;
    let text = String::from_utf8_lossy(&manifest);
    let mut check = BundleCheck {
        files_ok: Vec::new(),
        problems: Vec::new(),
        signature: "unsigned",
        key_id: None,
        trusted_comment: None,
        key_source: None,
    };
    let mut listed = Vec::new();
    for line in text.lines() {
        let Some((hash, name)) = line.split_once("  ") else {
            check.problems.push(format!("manifest line is malformed: {}", escape::terminal(line)));
            continue;
        };
        if name.contains('/') || name.starts_with('.') || name == MANIFEST || name == SIGNATURE {
            check.problems.push(format!("manifest names a file outside the bundle: {}", escape::terminal(name)));
            continue;
        }
        listed.push(name.to_string());
        let path = dir.join(name);
        let actual =
            std::fs::symlink_metadata(&path).ok().filter(std::fs::Metadata::is_file).and_then(|_| file_sha256(&path));
        match actual {
            None => check.problems.push(format!("{} is missing", escape::terminal(name))),
            Some(h) if h != hash => check.problems.push(format!("{} was changed (sha256 {h})", escape::terminal(name))),
            Some(_) => check.files_ok.push(name.to_string()),
        }
    }
    let entries = std::fs::read_dir(dir).map_err(|source| Error::ReadDir { path: dir.to_path_buf(), source })?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != MANIFEST && name != SIGNATURE && !listed.contains(&name) {
            check.problems.push(format!("{} is not in the manifest", escape::terminal(&name)));
        }
    }
    let sig_path = dir.join(SIGNATURE);
    if sig_path.exists() {
        let sig = read_small(&sig_path)?;
        let sig = String::from_utf8_lossy(&sig);
        let (result, source) = match &trusted {
            Some((pk, source)) => (keys::verify_with(pk, &sig, &manifest), source.clone()),
            None => {
                let pk = read_small(&dir.join(PUBLIC_KEY))?;
                (keys::verify(&String::from_utf8_lossy(&pk), &sig, &manifest), "bundle".to_string())
            }
        };
        match result {
            Ok((id, comment)) => {
                check.signature = "valid";
                check.key_id = Some(id);
                check.trusted_comment = Some(comment);
            }
            Err(e) => {
                check.signature = "invalid";
                // A finding of the check, shown as text in its output (not an error of the check).
                check.problems.push(format!("signature: {}", chain(&e)));
            }
        }
        check.key_source = Some(source);
    } else if trusted.is_some() {
        check.problems.push("the bundle is not signed, but a trusted public key was given".into());
    }
    Ok(check)
}
