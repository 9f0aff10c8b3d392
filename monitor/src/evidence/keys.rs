//! Signing keys in the minisign format: `monitor keygen` writes a password-less pair (secret key
//! mode 0600, refused when group or others can read it), bundles and exports are signed with it,
//! and Debian's `minisign -V -p <public key>` checks the signatures.

use std::{
    fs::OpenOptions,
    io::Write as _,
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::Path,
};

use minisign::{KeyPair, PublicKey, PublicKeyBox, SecretKey, SecretKeyBox, SignatureBox};

use super::{Error, KeyFileError};
use crate::files;

/// Largest key file read.
const KEY_MAX_BYTES: u64 = 4096;
/// Untrusted comment of the secret key file.
const SECRET_COMMENT: &str = "monitor evidence signing key (no password: protect this file)";

/// A loaded key pair.
pub struct SigningKey {
    secret: SecretKey,
    public: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("key_id", &self.key_id()).finish_non_exhaustive()
    }
}

/// Writes a new password-less key pair: the secret key (mode 0600) and the public key (0644).
/// Existing files are kept unless `force`. Nothing is written when both paths name one file, and
/// the secret key is removed again when the public key cannot be written (no half-made pair).
///
/// # Errors
/// [`Error::SameKeyFile`], [`Error::KeyExists`], [`Error::KeyGen`] when minisign cannot make the
/// pair, or [`Error::WriteKey`] when a file cannot be written.
pub fn keygen(secret: &Path, public: &Path, force: bool) -> Result<SigningKey, Error> {
    if same_file(secret, public) {
        return Err(Error::SameKeyFile { path: public.to_path_buf() });
    }
    let secret_err = |source| Error::KeyGen { path: secret.to_path_buf(), source };
    let pair = KeyPair::generate_encrypted_keypair(Some(String::new())).map_err(secret_err)?;
    let sk_text = pair.sk.to_box(Some(SECRET_COMMENT)).map_err(secret_err)?.into_string();
    let pk_text =
        pair.pk.to_box().map_err(|source| Error::KeyGen { path: public.to_path_buf(), source })?.into_string();
    if force {
        // Both written beside their places first, then renamed: a failed write leaves the old
        // pair as it was (an existing key is replaced only by a complete new pair).
        let secret_tmp = staged(secret, &sk_text, 0o600)?;
        let public_tmp = staged(public, &pk_text, 0o644)?;
        public_tmp.persist(public).map_err(|e| Error::WriteKey { path: public.to_path_buf(), source: e.error })?;
        secret_tmp.persist(secret).map_err(|e| Error::WriteKey { path: secret.to_path_buf(), source: e.error })?;
        return Ok(SigningKey { secret: pair.sk, public: pair.pk });
    }
    write_key(secret, &sk_text, 0o600, force)?;
    if let Err(e) = write_key(public, &pk_text, 0o644, force) {
        if let Err(rm) = std::fs::remove_file(secret) {
            log::warn!("cannot remove the secret key without its public key path={} error={rm}", secret.display());
        }
        return Err(e);
    }
    Ok(SigningKey { secret: pair.sk, public: pair.pk })
}

/// Whether `a` and `b` name one file: one existing file (also through hard links), or, as key
/// files do not exist yet, the same name in the same canonical directory (`k/o.key`, `./k/o.key`).
fn same_file(a: &Path, b: &Path) -> bool {
    if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        return (ma.dev(), ma.ino()) == (mb.dev(), mb.ino());
    }
    let place = |p: &Path| {
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        (std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()), p.file_name().map(ToOwned::to_owned))
    };
    place(a) == place(b)
}

/// A temporary file beside `path` holding `text` with `mode`, synced, for renaming onto `path`.
fn staged(path: &Path, text: &str, mode: u32) -> Result<tempfile::NamedTempFile, Error> {
    let err = |source| Error::WriteKey { path: path.to_path_buf(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut file = tempfile::Builder::new().prefix(".monitor-key").tempfile_in(dir).map_err(err)?;
    file.as_file().set_permissions(std::fs::Permissions::from_mode(mode)).map_err(err)?;
    file.write_all(text.as_bytes()).and_then(|()| file.as_file().sync_all()).map_err(err)?;
    Ok(file)
}

/// Writes one key file with `mode` (never through a symlink; an existing file only with `force`).
fn write_key(path: &Path, text: &str, mode: u32, force: bool) -> Result<(), Error> {
    let mut options = OpenOptions::new();
    options.write(true).mode(mode).custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits());
    if force {
        options.create(true).truncate(true)
    } else {
        options.create_new(true)
    };
    let mut file = options.open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => Error::KeyExists { path: path.to_path_buf() },
        _ => Error::WriteKey { path: path.to_path_buf(), source },
    })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| Error::WriteKey { path: path.to_path_buf(), source })
}

impl SigningKey {
    /// Loads the secret key file of `monitor keygen`.
    ///
    /// # Errors
    /// [`Error::KeyMissing`]; [`Error::KeyReadable`] for a file others can read; [`Error::Key`]
    /// for a file that cannot be read, a password-protected key or anything that is not a
    /// minisign secret key.
    pub fn load(secret: &Path) -> Result<Self, Error> {
        let bad = |source: KeyFileError| Error::Key { path: secret.to_path_buf(), source };
        let text = files::read_regular_to_string(secret, KEY_MAX_BYTES).map_err(|e| match e {
            files::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Error::KeyMissing { path: secret.to_path_buf() }
            }
            other => bad(other.into()),
        })?;
        let mode = std::fs::metadata(secret)
            .map_err(|source| bad(files::Error::Io { path: secret.to_path_buf(), source }.into()))?
            .mode();
        if mode & 0o077 != 0 {
            return Err(Error::KeyReadable { path: secret.to_path_buf(), mode: mode & 0o777 });
        }
        let not_secret = |e| bad(KeyFileError::NotSecretKey(e));
        let sk = SecretKey::from_box(SecretKeyBox::from_string(&text).map_err(not_secret)?, Some(String::new()))
            .map_err(not_secret)?;
        let public = PublicKey::from_secret_key(&sk).map_err(not_secret)?;
        Ok(Self { secret: sk, public })
    }

    /// The key id as minisign prints it (16 hex digits).
    #[must_use]
    pub fn key_id(&self) -> String {
        key_id(self.public.keynum())
    }

    /// The public key file's text (`minisign -V -p` reads it).
    ///
    /// # Errors
    /// [`Error::Sign`] when the key cannot be encoded.
    pub fn public_text(&self) -> Result<String, Error> {
        Ok(self.public.to_box().map_err(Error::Sign)?.into_string())
    }

    /// A minisign signature file of `data` with `trusted_comment`.
    ///
    /// # Errors
    /// [`Error::Sign`].
    pub fn sign(&self, data: &[u8], trusted_comment: &str) -> Result<String, Error> {
        let sig =
            minisign::sign(Some(&self.public), &self.secret, data, Some(trusted_comment), Some("monitor signature"))
                .map_err(Error::Sign)?;
        Ok(sig.into_string())
    }
}

/// Signs the file at `path` with the secret key at `secret`, writing `<path>.minisig` beside it
/// (replaced when present; never through a symlink). Returns the signature's path.
///
/// # Errors
/// The key errors of [`SigningKey::load`], [`Error::Write`] when a file cannot be read or written.
pub fn sign_file(path: &Path, secret: &Path) -> Result<std::path::PathBuf, Error> {
    let key = SigningKey::load(secret)?;
    let data = std::fs::read(path).map_err(|source| Error::Write { path: path.to_path_buf(), source })?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let sig = key.sign(&data, &format!("monitor export {name}"))?;
    let mut out = path.as_os_str().to_owned();
    out.push(".minisig");
    let out = std::path::PathBuf::from(out);
    let io = |source| Error::Write { path: out.clone(), source };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(&out)
        .map_err(io)?;
    file.write_all(sig.as_bytes()).and_then(|()| file.sync_all()).map_err(io)?;
    Ok(out)
}

/// minisign's key id of `keynum` (little-endian u64, upper-case hex).
fn key_id(keynum: &[u8]) -> String {
    keynum.iter().rev().map(|b| format!("{b:02X}")).collect()
}

/// Reads the public key file a user trusts (`--public-key`, `evidence.public_key`).
///
/// # Errors
/// [`Error::PublicKey`] when the file cannot be read or is not a minisign public key.
pub(super) fn load_public(path: &Path) -> Result<PublicKey, Error> {
    let bad = |source: KeyFileError| Error::PublicKey { path: path.to_path_buf(), source };
    let text = files::read_regular_to_string(path, KEY_MAX_BYTES).map_err(|e| bad(e.into()))?;
    parse_public(&text).map_err(|e| bad(KeyFileError::NotPublicKey(e)))
}

fn parse_public(text: &str) -> Result<PublicKey, minisign::PError> {
    PublicKeyBox::from_string(text).and_then(PublicKeyBox::into_public_key)
}

/// Why a signature does not hold (a problem of the checked files, not a failure of the check).
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The public key text is not a minisign public key.
    #[error("not a minisign public key")]
    PublicKey(#[source] minisign::PError),
    /// The signature text is not a minisign signature.
    #[error("not a minisign signature")]
    Format(#[source] minisign::PError),
    /// The signature does not match the data and key (minisign says how).
    #[error(transparent)]
    Mismatch(minisign::PError),
}

/// Checks signature file text `sig` over `data` with the public key file text `public`.
/// Returns the key id and the trusted comment.
///
/// # Errors
/// [`SignatureError`]: why the signature does not hold.
pub fn verify(public: &str, sig: &str, data: &[u8]) -> Result<(String, String), SignatureError> {
    verify_with(&parse_public(public).map_err(SignatureError::PublicKey)?, sig, data)
}

/// [`verify`] with a key already read.
pub(super) fn verify_with(pk: &PublicKey, sig: &str, data: &[u8]) -> Result<(String, String), SignatureError> {
    let sig = SignatureBox::from_string(sig).map_err(SignatureError::Format)?;
    minisign::verify(pk, &sig, std::io::Cursor::new(data), true, false, false).map_err(SignatureError::Mismatch)?;
    Ok((key_id(pk.keynum()), sig.trusted_comment().unwrap_or_default()))
}
