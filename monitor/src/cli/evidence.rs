//! `monitor evidence (--week W | --session S) --out DIR`: a self-contained, optionally signed
//! bundle (see `monitor::evidence`); `monitor evidence verify DIR` checks it; `monitor keygen`
//! creates the signing key.

use std::{fmt::Write as _, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use jiff::Timestamp;
use monitor::{
    claims::evaluate,
    escape,
    evidence::{BundleInput, SigningKey, keygen, verify_bundle, write_bundle},
    journal::{JournalReader, verify_chain},
    report::{Period, Report, ReportQuery},
    settings::{RawConfig, Settings},
};
use serde_json::Value;

use super::{exit, report::UsageError};

/// `monitor evidence`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EvidenceArgs {
    /// Check a bundle instead of writing one.
    #[command(subcommand)]
    pub command: Option<EvidenceCommand>,
    /// ISO week of the bundle. Example: --week 2026-W47
    #[arg(long, conflicts_with = "session")]
    pub week: Option<String>,
    /// Session of the bundle. Example: --session build-42
    #[arg(long)]
    pub session: Option<String>,
    /// Bundle directory (created; an existing one must be empty). Example: --out /tmp/evidence-42
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// IANA time zone of the week (overrides `report.time_zone`). Example: --time-zone Europe/Berlin
    #[arg(long)]
    pub time_zone: Option<String>,
    /// Journal file (overrides `journal.path`). Example: --journal /var/lib/monitor/journal.db
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
}

/// `monitor evidence` subcommands.
#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Check every file's SHA-256 against MANIFEST and MANIFEST's signature (exit 13 on any
    /// mismatch, or an unsigned bundle when a trusted key is given; exit 2 when that key cannot
    /// be read). Example: monitor evidence verify /tmp/evidence-42
    Verify {
        /// The bundle directory. Example: /tmp/evidence-42
        dir: PathBuf,
        /// Trusted public key to check the signature with; an unsigned bundle then fails
        /// (default: `evidence.public_key`, else the bundle's own evidence.pub, which proves
        /// integrity but not origin). Example: --public-key /etc/monitor/evidence.pub
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// JSON output. Example: --json
        #[arg(long)]
        json: bool,
    },
}

/// `monitor keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Secret key file (default: `evidence.secret_key`). Example: --secret-key /etc/monitor/evidence.key
    #[arg(long, value_name = "FILE")]
    pub secret_key: Option<PathBuf>,
    /// Public key file (default: `evidence.public_key`, else the secret key's path with `.pub`).
    /// Example: --public-key /etc/monitor/evidence.pub
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// Replace existing key files. Example: --force
    #[arg(long)]
    pub force: bool,
}

/// Creates a key pair.
pub fn keygen_execute(args: KeygenArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let KeygenArgs { secret_key, public_key, force } = args;
    let secret = secret_key.or_else(|| settings.evidence.secret_key.clone()).ok_or_else(|| {
        UsageError("no key path: give --secret-key FILE or set `evidence.secret_key` in the config".into())
    })?;
    let public =
        public_key.or_else(|| settings.evidence.public_key.clone()).unwrap_or_else(|| secret.with_extension("pub"));
    let key = keygen(&secret, &public, force)?;
    let text = format!(
        "key {} written: secret {} (mode 0600, no password), public {}\n",
        key.key_id(),
        escape::terminal(&secret.to_string_lossy()),
        escape::terminal(&public.to_string_lossy())
    );
    super::write_stdout(text.as_bytes()).context("cannot write the result")?;
    Ok(ExitCode::from(exit::OK))
}

/// Writes or checks a bundle.
pub fn execute(args: EvidenceArgs, raw: &RawConfig, settings: &Settings) -> anyhow::Result<ExitCode> {
    let EvidenceArgs { command, week, session, out, time_zone, journal } = args;
    if let Some(EvidenceCommand::Verify { dir, public_key, json }) = command {
        let key = public_key.or_else(|| settings.evidence.public_key.clone());
        let check = verify_bundle(&dir, key.as_deref())?;
        let code = ExitCode::from(if check.problems.is_empty() { exit::OK } else { exit::TAMPERED });
        let mut text = String::new();
        if json {
            let mut bytes = Vec::new();
            escape::json::to_writer_pretty(&mut bytes, &check)?;
            bytes.push(b'\n');
            super::write_stdout(&bytes).context("cannot write the result")?;
            return Ok(code);
        }
        writeln!(text, "files ok  {}", check.files_ok.len())?;
        let source =
            check.key_source.as_deref().map_or_else(String::new, |s| format!(" (key from {})", escape::terminal(s)));
        let id = check.key_id.as_deref().map_or_else(String::new, |k| format!(" by key {k}"));
        writeln!(text, "signature {}{id}{source}", check.signature)?;
        if let Some(c) = &check.trusted_comment {
            writeln!(text, "comment   {}", escape::terminal(c))?;
        }
        for p in &check.problems {
            writeln!(text, "PROBLEM   {p}")?;
        }
        writeln!(text, "{}", if check.problems.is_empty() { "intact" } else { "TAMPERED" })?;
        super::write_stdout(text.as_bytes()).context("cannot write the result")?;
        return Ok(code);
    }
    let out = out.ok_or_else(|| UsageError("give --out DIR for the bundle".into()))?;
    let zone = super::zone(time_zone.as_deref(), settings)?;
    let journal = journal.unwrap_or_else(|| settings.journal.path.clone());
    let reader = super::report::open_journal(&journal)?;
    let (mut query, label) = match (week, session) {
        (Some(w), None) => (ReportQuery::new(Period::iso_week(&w, &zone)?), w),
        (None, Some(s)) => {
            let (period, info) = super::session::window(&reader, &s, &zone)?;
            let mut q = ReportQuery::new(period);
            q.session = Some(info);
            (q, format!("session {s}"))
        }
        _ => anyhow::bail!(UsageError("give either --week or --session".into())),
    };
    query.top_endpoints = usize::MAX;
    query.generated_at = Some(Timestamp::now());
    // Signing is checked before anything is written: a missing key is an error, not an unsigned bundle.
    let key = settings.evidence.secret_key.as_deref().map(SigningKey::load).transpose()?;
    let report = Report::build(&reader, &query)?;
    let records = reader.records(query.period.time_range(), query.session.as_ref().and_then(|s| s.cgroup_id))?;
    let databases = reader.databases()?;
    let integrity = verify_chain(&journal)?;
    if let Some(why) = &integrity.figures.failed {
        log::warn!("the journal's sums could not be checked against its records ({why}); the bundle records it");
    }
    if !integrity.problems.is_empty() {
        // The bundle records them (`journal_integrity.problems`); whoever makes it should know.
        log::warn!(
            "the journal fails its integrity check ({} problems, run `monitor journal verify`); the bundle records them",
            integrity.problems.len()
        );
    }
    let input = BundleInput {
        label,
        report: &report,
        records: &records,
        databases: &databases,
        integrity: Some(&integrity),
        config_toml: toml::to_string(raw).context("cannot encode the configuration")?,
        verdicts: verdicts(settings, &reader, &query)?,
    };
    let written = write_bundle(&out, &input, key.as_ref())?;
    let mut text = String::new();
    for path in &written {
        writeln!(text, "{}", escape::terminal(&path.to_string_lossy()))?;
    }
    super::write_stdout(text.as_bytes()).context("cannot write the result")?;
    Ok(ExitCode::from(exit::OK))
}

/// The verdicts (`monitor verify`'s JSON) of the configured claims file over the bundle's period
/// and session; `None` without a claims file (no `verdicts.json` is written then).
fn verdicts(settings: &Settings, reader: &JournalReader, query: &ReportQuery) -> anyhow::Result<Option<Value>> {
    let Some(file) = settings.claims.file() else { return Ok(None) };
    let claims = settings.claims.load(file)?;
    let mut query = query.clone();
    query.evidence = true;
    let report = Report::build(reader, &query)?;
    let verdicts = evaluate(&claims, &report, Some(file));
    Ok(Some(serde_json::to_value(&verdicts).context("cannot encode the verdicts")?))
}
