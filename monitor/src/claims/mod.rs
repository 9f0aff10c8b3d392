//! Claims: residency claims ("this app sends nothing to CN", "≥ 99 % of upload bytes go to US
//! servers of Oracle") judged with a verdict and evidence.
//!
//! Owns the claims file ([`ClaimSet`], `config/claims.example.toml`), judging claims over the
//! report model ([`evaluate`] → [`Verdicts`], schema [`VERDICTS_SCHEMA`] in `SCHEMA.md`) and
//! over records as they arrive ([`live::Alerts`]), and running the configured alert command
//! ([`command::AlertCommand`]). Never reads SQLite: reports come from `report`, and the journal
//! stores the alerts it is handed by the daemon.
//!
//! A destination breaks a rule only on known facts; a rule that needs an unknown fact (country,
//! ASN, hostname) leaves its bytes unknown, and too many unknown bytes (or lost events) make a
//! claim `INCONCLUSIVE` rather than `PASS`. Non-public addresses are exempt.

pub mod command;
mod config;
mod eval;
mod export;
mod file;
mod iso;
pub mod live;
mod render;
mod summary;
mod verdict;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use config::{CONFIG_DOC, ClaimsConfig, MAX_ALERT_TIMEOUT_SECS, ValueError};
pub use eval::{Facts, Judgement, ShareStatus, evaluate};
pub use export::export_verdicts;
pub use file::{
    CLAIMS_MAX_BYTES, Claim, ClaimSet, Direction, Globs, Inconclusive, MinShare, RULE_KEYS, RawClaim, RawClaims,
    RawMinShare,
};
pub use summary::{annotate, summaries};
pub use verdict::{ClaimBytes, ClaimVerdict, Summary, Verdict, Verdicts, Violation};

use crate::files;

/// Version tag of the JSON verdicts (`"schema"`).
pub const VERDICTS_SCHEMA: &str = "monitor.verdicts/1";

/// Claims errors (usage/config errors: exit code 2).
#[expect(missing_docs, reason = "variant fields are described by the error messages")]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The claims file could not be read.
    #[error("the claims file")]
    Read {
        path: PathBuf,
        #[source]
        source: files::Error,
    },
    /// Not valid TOML for the claims schema (unknown key, wrong type...).
    #[error("invalid claims file `{}`", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    /// The file has no claim (empty, or `claims = []`).
    #[error("the claims file `{}` has no claims: add a `[[claims]]` entry (keys in config/claims.example.toml)", path.display())]
    Empty { path: PathBuf },
    /// A claim selects traffic but has no rule to judge it by.
    #[error("claim `{claim}` has no rule to check: add one of {}", file::RULE_KEYS.join(", "))]
    NoRule { claim: String },
    /// A value is invalid.
    #[error("invalid claim `{claim}`: `{key}`: {reason}")]
    Invalid { claim: String, key: &'static str, reason: String },
    /// A glob does not compile.
    #[error("invalid claim `{claim}`: `{key}`: bad pattern `{pattern}`")]
    Glob {
        claim: String,
        key: &'static str,
        pattern: String,
        #[source]
        source: globset::Error,
    },
    /// Building the report the verdicts are judged on, or writing an export, failed.
    #[error(transparent)]
    Report(#[from] crate::report::Error),
    /// Writing verdicts failed.
    #[error("cannot write the {format} verdicts")]
    Write {
        format: &'static str,
        #[source]
        source: std::io::Error,
    },
}
