//! `monitor config dump`.

use std::{io::Write as _, path::Path, process::ExitCode};

use anyhow::Context as _;
use monitor::settings::RawConfig;

use super::{
    args::{ConfigArgs, ConfigCommand},
    exit,
};

/// Prints the effective configuration as TOML.
pub fn execute(args: &ConfigArgs, raw: &RawConfig, source: Option<&Path>) -> anyhow::Result<ExitCode> {
    let ConfigArgs { command: ConfigCommand::Dump } = args;
    let text = toml::to_string(raw).context("cannot encode the configuration")?;
    let origin = source.map_or_else(|| "built-in defaults".to_owned(), |p| p.display().to_string());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "# effective configuration (from {origin})\n{text}");
    Ok(ExitCode::from(exit::OK))
}
