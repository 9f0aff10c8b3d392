//! `monitor config dump`.
//!
//! It prints the configuration in the file's own terms (the `RawConfig`: every key, the file's
//! values and the built-in defaults for the rest), and only once it has validated into
//! [`Settings`]. Not the `Settings` themselves: they hold compiled `[[apps]]` rules and
//! converted units that could not be written back as a config file, and the keys are what the
//! user edits. Command-line flags of other commands are not part of it; the header says so.

use std::process::ExitCode;

use anyhow::Context as _;
use monitor::settings::{RawConfig, Settings};

use super::{
    args::{ConfigArgs, ConfigCommand},
    exit,
};

/// Prints `raw`, which `settings` were resolved from, as TOML with a header saying what it is.
pub fn execute(args: &ConfigArgs, raw: &RawConfig, settings: &Settings) -> anyhow::Result<ExitCode> {
    let ConfigArgs { command: ConfigCommand::Dump } = args;
    settings.check_run_files()?;
    let text = toml::to_string(raw).context("cannot encode the configuration")?;
    let origin = settings.source.as_ref().map_or_else(
        || "built-in defaults (no config file)".to_owned(),
        |p| format!("{}, with built-in defaults for the keys it does not set", p.display()),
    );
    let out = format!(
        "# configuration in effect: {origin}; validated.\n\
         # Command-line flags such as `run --journal` or `--time-zone` are not applied here.\n{text}\n"
    );
    // A failed write (`config dump > file` on a full disk) is an error, not a silent success.
    super::write_stdout(out.as_bytes()).context("cannot write the configuration")?;
    Ok(ExitCode::from(exit::OK))
}
