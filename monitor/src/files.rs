//! Reading input files (config, geolocation databases, claims) that a user or another program
//! named: only regular files, never more than a stated size.
//!
//! A FIFO named as an input would block the reader forever (on SIGHUP: the journal writes and
//! the shutdown behind it); `/dev/zero` or a huge file would be read until memory runs out. The
//! file is opened without blocking (`O_NONBLOCK`, which a FIFO honours at `open`), checked with
//! `fstat` on the opened descriptor (so a rename in between cannot swap the checked file), and
//! read with a cap that also holds when the file grows while it is read. Symbolic links are
//! followed: these files are only read, and distributions install databases behind links.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read as _},
    os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use nix::fcntl::OFlag;

/// Why an input file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Opening, inspecting or reading failed (missing file, no permission...).
    #[error("cannot read `{}`", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// A directory, FIFO, device or socket.
    #[error("`{}` is {kind}, not a regular file", path.display())]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is instead ("a FIFO", "a character device"...).
        kind: &'static str,
    },
    /// Larger than the cap.
    #[error("`{}` is larger than the limit of {max} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap.
        max: u64,
    },
}

impl Error {
    /// The I/O error, for callers that treat a missing file specially.
    #[must_use]
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Self::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

/// Reads the regular file `path` whole, refusing anything else and anything above `max_bytes`.
///
/// # Errors
/// [`Error::Io`], [`Error::NotRegular`], [`Error::TooLarge`], each naming `path`.
pub fn read_regular(path: &Path, max_bytes: u64) -> Result<Vec<u8>, Error> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let file = open_regular(path)?;
    let len = file.metadata().map_err(io)?.len();
    if len > max_bytes {
        return Err(Error::TooLarge { path: path.to_path_buf(), max: max_bytes });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // One byte more than allowed tells a file that grew past the cap from one that did not.
    file.take(max_bytes.saturating_add(1)).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > max_bytes {
        return Err(Error::TooLarge { path: path.to_path_buf(), max: max_bytes });
    }
    Ok(bytes)
}

/// [`read_regular`] for text.
///
/// # Errors
/// As [`read_regular`]; invalid UTF-8 is [`Error::Io`] with kind `InvalidData`.
pub fn read_regular_to_string(path: &Path, max_bytes: u64) -> Result<String, Error> {
    let bytes = read_regular(path, max_bytes)?;
    String::from_utf8(bytes)
        .map_err(|e| Error::Io { path: path.to_path_buf(), source: io::Error::new(io::ErrorKind::InvalidData, e) })
}

/// Opens `path` for reading without blocking on a FIFO and checks the opened descriptor.
/// Opens `path` for reading without blocking (a FIFO would block a plain open) and checks, on
/// the opened descriptor, that it is a regular file of at most `max_bytes`: for callers that map
/// the file instead of reading it.
///
/// # Errors
/// As [`read_regular`].
pub fn open_regular_capped(path: &Path, max_bytes: u64) -> Result<File, Error> {
    let file = open_regular(path)?;
    let len = file.metadata().map_err(|source| Error::Io { path: path.to_path_buf(), source })?.len();
    if len > max_bytes {
        return Err(Error::TooLarge { path: path.to_path_buf(), max: max_bytes });
    }
    Ok(file)
}

fn open_regular(path: &Path) -> Result<File, Error> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).bits())
        .open(path)
        .map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    let kind = file.metadata().map_err(|source| Error::Io { path: path.to_path_buf(), source })?.file_type();
    if kind.is_file() {
        return Ok(file);
    }
    Err(Error::NotRegular { path: path.to_path_buf(), kind: describe(kind) })
}

/// What a file that is not a regular file is, for messages ("a FIFO", "a symbolic link"...).
#[must_use]
pub fn describe(kind: std::fs::FileType) -> &'static str {
    if kind.is_file() {
        "a regular file"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_regular_file_up_to_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_regular(&path, 10).unwrap(), b"0123456789");
        assert!(matches!(read_regular(&path, 9), Err(Error::TooLarge { max: 9, .. })));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert_eq!(read_regular_to_string(&link, 100).unwrap(), "0123456789", "links to regular files are read");
    }

    #[test]
    fn refuses_fifos_devices_and_directories_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // No writer: a blocking open would never return.
        let err = read_regular(&fifo, 100).unwrap_err();
        assert!(matches!(err, Error::NotRegular { kind: "a FIFO", .. }), "{err}");
        assert!(err.to_string().contains(fifo.to_str().unwrap()), "{err}");
        let err = read_regular(Path::new("/dev/zero"), 100).unwrap_err();
        assert!(matches!(err, Error::NotRegular { kind: "a character device", .. }), "{err}");
        assert!(matches!(read_regular(dir.path(), 100), Err(Error::NotRegular { kind: "a directory", .. })));
        let missing = read_regular(&dir.path().join("missing"), 100).unwrap_err();
        assert_eq!(missing.io_kind(), Some(io::ErrorKind::NotFound));
    }
}
