//! `[claims]` configuration section.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::{ClaimSet, Error};

/// The documented `[claims]` section: every key with its default. Parses to
/// [`ClaimsConfig::default`] (checked by a test); pasted into `config/monitor.toml`.
pub const CONFIG_DOC: &str = r#"[claims]
# Claims file (TOML, every key documented in config/claims.example.toml): residency claims that
# `monitor verify` judges and the daemon watches live. Empty: no claims (`monitor verify` then
# needs --claims). Reread on SIGHUP; a file that fails to load keeps the previous claims.
file = ""
# Command run for every live alert (the first violation of a claim by a destination in an ISO
# week), as an argument list (no shell), with the alert as one JSON object on stdin. Runs on its
# own thread, at most 64 waiting (more are dropped and counted); failures are logged. Empty: none.
# Example: alert_command = ["/usr/local/bin/notify-residency", "--channel", "ops"]
alert_command = []
# Seconds an alert command may run before it is killed (1 to 3600).
alert_timeout_secs = 10
"#;

/// `[claims]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimsConfig {
    /// Claims file; empty for none.
    pub file: PathBuf,
    /// Alert command (argv); empty for none.
    pub alert_command: Vec<String>,
    /// Timeout of the alert command, seconds.
    pub alert_timeout_secs: u64,
    /// The `[[apps]]` names of the config, which claims' `groups` must name (not a key of the
    /// section: set where the config is validated).
    #[serde(skip)]
    pub groups: Vec<String>,
    /// The configured file as read when the config was validated ([`Self::keep_loaded`]): every
    /// command judges the claims it validated, not a second read of the file.
    #[serde(skip)]
    loaded: Loaded,
}

/// A `[claims]` value out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// `alert_timeout_secs` outside 1 to [`MAX_ALERT_TIMEOUT_SECS`].
    #[error("alert_timeout_secs must be from 1 to {MAX_ALERT_TIMEOUT_SECS} (an hour), not {secs}")]
    AlertTimeout {
        /// The configured value.
        secs: u64,
    },
    /// `alert_command` starts with an empty program.
    #[error("alert_command: the program (first element) is empty")]
    EmptyProgram,
}

/// Claims read from the configured file: state derived from the config, equal only to itself.
#[derive(Debug, Clone, Default)]
struct Loaded(Option<Arc<ClaimSet>>);

impl PartialEq for Loaded {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Default for ClaimsConfig {
    fn default() -> Self {
        // No claims unless configured; 10 s is ample for a notifier and bounds a hung one.
        Self {
            file: PathBuf::new(),
            alert_command: Vec::new(),
            alert_timeout_secs: 10,
            groups: Vec::new(),
            loaded: Loaded(None),
        }
    }
}

/// Longest `alert_timeout_secs`: an hour (a command that runs longer is stuck; larger values
/// would overflow the deadline).
pub const MAX_ALERT_TIMEOUT_SECS: u64 = 3600;

impl ClaimsConfig {
    /// The claims file, if one is configured.
    #[must_use]
    pub fn file(&self) -> Option<&std::path::Path> {
        (!self.file.as_os_str().is_empty()).then_some(self.file.as_path())
    }

    /// Reads and validates the configured file once (where the config is validated), for
    /// [`Self::load`] to hand out.
    ///
    /// # Errors
    /// As [`Self::read`].
    pub fn keep_loaded(&mut self) -> Result<(), Error> {
        self.loaded = Loaded(match self.file() {
            Some(file) => Some(Arc::new(self.read(file)?)),
            None => None,
        });
        Ok(())
    }

    /// The claims of file `path`: those [`Self::keep_loaded`] read when `path` is the configured
    /// file, else read now ([`Self::read`]).
    ///
    /// # Errors
    /// As [`Self::read`].
    pub fn load(&self, path: &Path) -> Result<Arc<ClaimSet>, Error> {
        match &self.loaded.0 {
            Some(set) if self.file() == Some(path) => Ok(Arc::clone(set)),
            _ => self.read(path).map(Arc::new),
        }
    }

    /// Reads and validates claims file `path` (again: the daemon's reload on SIGHUP), whose
    /// claims' `groups` must be `[[apps]]` names of the config (a group no entry defines selects
    /// nothing, and its claim would pass on no bytes).
    ///
    /// # Errors
    /// As [`ClaimSet::load`]; [`Error::Invalid`] (key `groups`) naming a group no `[[apps]]`
    /// entry defines.
    pub fn read(&self, path: &Path) -> Result<ClaimSet, Error> {
        let set = ClaimSet::load(path)?;
        for claim in &set.claims {
            if let Some(group) = claim.groups.iter().find(|g| !self.groups.contains(g)) {
                let defined = if self.groups.is_empty() {
                    "the config defines none".to_string()
                } else {
                    format!(
                        "the config defines {}",
                        self.groups.iter().map(|g| format!("`{g}`")).collect::<Vec<_>>().join(", ")
                    )
                };
                return Err(Error::Invalid {
                    claim: claim.name.clone(),
                    key: "groups",
                    reason: format!(
                        "`{group}` is not the name of an `[[apps]]` entry of the config ({defined}); name apps as reports show them in `apps`"
                    ),
                });
            }
        }
        Ok(set)
    }

    /// Timeout of the alert command.
    #[must_use]
    pub fn alert_timeout(&self) -> Duration {
        Duration::from_secs(self.alert_timeout_secs)
    }

    /// Checks the values.
    ///
    /// # Errors
    /// [`ValueError`], naming the key.
    pub fn validate(&self) -> Result<(), ValueError> {
        if !(1..=MAX_ALERT_TIMEOUT_SECS).contains(&self.alert_timeout_secs) {
            return Err(ValueError::AlertTimeout { secs: self.alert_timeout_secs });
        }
        if self.alert_command.first().is_some_and(String::is_empty) {
            return Err(ValueError::EmptyProgram);
        }
        Ok(())
    }
}
