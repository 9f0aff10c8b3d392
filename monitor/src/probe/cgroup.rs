//! Finding the cgroup v2 hierarchy. On hybrid hosts it is not `/sys/fs/cgroup` (it is e.g.
//! `/sys/fs/cgroup/unified`), so it is read from /proc/mounts, never assumed.

use std::path::{Path, PathBuf};

use super::Error;

/// Mount point of the cgroup v2 hierarchy.
///
/// # Errors
/// [`Error::Mounts`] if /proc/mounts cannot be read, [`Error::NoCgroup2`] if nothing is mounted.
pub fn cgroup2_mount() -> Result<PathBuf, Error> {
    let mounts: Vec<PathBuf> = procfs::mounts()
        .map_err(Error::Mounts)?
        .into_iter()
        .filter(|m| m.fs_vfstype == "cgroup2")
        .map(|m| PathBuf::from(m.fs_file))
        .collect();
    // A mount can be shadowed by a later one over a parent directory (a container that mounts
    // cgroup2 on /sys/fs/cgroup over a host's hybrid layout with /sys/fs/cgroup/unified): take
    // the first whose directory still is a cgroup2 root.
    let visible = mounts.iter().find(|m| m.join("cgroup.controllers").is_file());
    visible.or(mounts.first()).cloned().ok_or(Error::NoCgroup2)
}

/// Turns the configured cgroup into a directory of the cgroup v2 hierarchy. Relative paths (and
/// `/`) are taken relative to the mount; absolute paths must lie inside it.
///
/// # Errors
/// [`Error::NotACgroup`] when the result is not a directory of the hierarchy.
pub fn resolve_cgroup(configured: &Path) -> Result<PathBuf, Error> {
    let mount = cgroup2_mount()?;
    let path = if configured.starts_with(&mount) {
        configured.to_path_buf()
    } else {
        mount.join(configured.strip_prefix("/").unwrap_or(configured))
    };
    if path.join("cgroup.procs").is_file() { Ok(path) } else { Err(Error::NotACgroup { path, mount }) }
}

/// The cgroup v2 id of `cgroup` (the inode number of its directory) and its depth below the
/// hierarchy's root (0 for the root), as `bpf_get_current_ancestor_cgroup_id` takes them.
///
/// # Errors
/// [`Error::OpenCgroup`] when the directory cannot be read; the mount errors of [`cgroup2_mount`].
pub fn cgroup_id_and_level(cgroup: &Path) -> Result<(u64, u32), Error> {
    use std::os::unix::fs::MetadataExt as _;
    let id =
        std::fs::metadata(cgroup).map_err(|source| Error::OpenCgroup { path: cgroup.to_path_buf(), source })?.ino();
    let mount = cgroup2_mount()?;
    let below = cgroup.strip_prefix(&mount).map_or(0, |rest| rest.components().count());
    Ok((id, u32::try_from(below).unwrap_or(u32::MAX)))
}
