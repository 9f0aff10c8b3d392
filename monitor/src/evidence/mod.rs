//! Evidence bundles: a directory an auditor can check with standard tools. It holds the report
//! (`report.json`, `report.md`), the claim verdicts when given (`verdicts.json`), the connection
//! records behind every figure (`connections.csv`), the geolocation databases' type, build date
//! and SHA-256 (`databases.json`), the monitor version, journal chain head and bundle facts
//! (`bundle.json`), the effective configuration (`config.toml`), and `MANIFEST`: one
//! `<sha256>  <file>` line per file (`sha256sum -c MANIFEST` reads it). With a signing key,
//! `MANIFEST.minisig` signs the manifest (`minisign -V -p evidence.pub -m MANIFEST`) and
//! `evidence.pub` is the public key (check it against the one you trust).
//!
//! Reads the journal only through [`JournalReader`](crate::journal::JournalReader) (done by the
//! caller); writes only inside the bundle directory, which must be new or empty.

mod bundle;
mod keys;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

#[cfg(test)]
mod config_tests {
    #[test]
    fn config_doc_parses_to_default() {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            evidence: super::EvidenceConfig,
        }
        let file: File = toml::from_str(super::CONFIG_DOC).unwrap();
        assert_eq!(file.evidence, super::EvidenceConfig::default());
    }
}

pub use bundle::{BundleCheck, BundleInput, MANIFEST, SIGNATURE, verify_bundle, write_bundle};
pub use keys::{SignatureError, SigningKey, keygen, sign_file, verify as verify_signature};
use serde::{Deserialize, Serialize};

/// The documented `[evidence]` section (every key is unset by default, shown commented out).
pub const CONFIG_DOC: &str = r#"[evidence]
# Secret key of `monitor keygen` (minisign format, password-less: protect the file, mode 0600; a
# key readable by group or others is refused). When set, `monitor evidence` signs each bundle's
# MANIFEST (MANIFEST.minisig, checked by `minisign -V -p evidence.pub -m MANIFEST`) and the
# daemon signs each weekly export (<file>.minisig, `minisign -V -p evidence.pub -m <file>`). A
# configured key that is missing is an error for `monitor evidence`; the daemon logs a warning
# and leaves that export unsigned.
# secret_key = "/etc/monitor/evidence.key"
# Public key `monitor evidence verify` checks signatures with; an unsigned bundle then fails.
# Unset: the bundle's own evidence.pub (proves the bundle is unchanged since signing, not who
# signed it).
# public_key = "/etc/monitor/evidence.pub"
"#;

/// `[evidence]` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvidenceConfig {
    /// Secret key of `monitor keygen` (password-less, mode 0600): bundles and weekly exports
    /// are signed with it. Unset: unsigned.
    pub secret_key: Option<PathBuf>,
    /// Public key `monitor evidence verify` checks signatures with; an unsigned bundle then fails
    /// (unset: the bundle's own `evidence.pub`, which proves integrity but not origin).
    pub public_key: Option<PathBuf>,
}

/// Evidence errors (exit code 2, except [`Error::Journal`]: 5).
#[expect(missing_docs, reason = "variant fields are described by the error messages")]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the journal failed.
    #[error(transparent)]
    Journal(#[from] crate::journal::Error),
    /// The configured key file does not exist.
    #[error("signing key `{}` does not exist (create it with `monitor keygen`, or unset `evidence.secret_key`)", path.display())]
    KeyMissing { path: PathBuf },
    /// The key file is unusable.
    #[error("cannot use signing key `{}`", path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: KeyFileError,
    },
    /// Group or others can read the secret key file.
    #[error("cannot use signing key `{}`: it is readable by other users (mode {mode:o}): chmod 600 it", path.display())]
    KeyReadable { path: PathBuf, mode: u32 },
    /// minisign cannot make or encode a new key pair.
    #[error("cannot create key `{}`", path.display())]
    KeyGen {
        path: PathBuf,
        #[source]
        source: minisign::PError,
    },
    /// `keygen` would overwrite a key.
    #[error("`{}` exists; keygen does not overwrite keys (use --force to replace it)", path.display())]
    KeyExists { path: PathBuf },
    /// The secret and the public key paths name one file.
    #[error("the secret and the public key would be the same file `{}`: give two different paths", path.display())]
    SameKeyFile { path: PathBuf },
    /// The trusted public key file (`--public-key`, `evidence.public_key`) is unusable.
    #[error("cannot use public key `{}`", path.display())]
    PublicKey {
        path: PathBuf,
        #[source]
        source: KeyFileError,
    },
    /// A key file cannot be written.
    #[error("cannot write key file `{}`", path.display())]
    WriteKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Signing (or encoding the public key beside the signature) failed.
    #[error("cannot sign")]
    Sign(#[source] minisign::PError),
    /// The bundle directory cannot be inspected or created.
    #[error("cannot write the evidence bundle to `{}`", path.display())]
    BundleDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bundle path exists and is not a directory.
    #[error("cannot write the evidence bundle to `{}`: it exists and is not a directory", path.display())]
    BundleNotDir { path: PathBuf },
    /// The bundle directory is not empty.
    #[error(
        "cannot write the evidence bundle to `{}`: the directory is not empty (bundles are written to a new directory)",
        path.display()
    )]
    BundleNotEmpty { path: PathBuf },
    /// A bundle file cannot be written.
    #[error("cannot write `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file of a bundle to verify cannot be read.
    #[error("cannot read the evidence bundle `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: crate::files::Error,
    },
    /// The directory of a bundle to verify cannot be listed.
    #[error("cannot read the evidence bundle `{}`", path.display())]
    ReadDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Rendering the report failed.
    #[error(transparent)]
    Report(#[from] crate::report::Error),
}

/// What is wrong with a key file (the cause of [`Error::Key`] and [`Error::PublicKey`]).
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file cannot be read (missing, not a regular file, too large, no permission).
    #[error(transparent)]
    Read(#[from] crate::files::Error),
    /// The file is not a password-less minisign secret key.
    #[error("not a password-less minisign secret key (create one with `monitor keygen`)")]
    NotSecretKey(#[source] minisign::PError),
    /// The file is not a minisign public key.
    #[error("not a minisign public key")]
    NotPublicKey(#[source] minisign::PError),
}
