//! The optional `getaddrinfo` probe: finds the host's libc, attaches the entry and return uprobes
//! of `monitor-ebpf/src/probes/getaddrinfo.rs` to its `getaddrinfo`, and decodes the results
//! (`monitor_common::gai`) the kernel sends through the event ring buffer.
//!
//! libc is, in order: `[names] getaddrinfo_libc`; the `libc.so*` this process has mapped (from
//! `/proc/self/maps`, so the file dynamically linked programs on this host use); `libc.so.6` as
//! `/etc/ld.so.cache` names it (aya's lookup). aya attaches through the perf `uprobe` PMU
//! (no tracefs, no kprobes). Uprobes are per file: programs with another libc (static binaries,
//! Flatpak or container runtimes, Go's own resolver) are not seen. Anything that fails here is a
//! reason for the degradation `no_getaddrinfo_names`, never an error of the monitor.

use std::{
    mem::size_of,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use aya::{
    Ebpf,
    programs::{UProbe, uprobe::UProbeScope},
};
use monitor_common::{
    AF_INET, AF_INET6,
    gai::{GAI_ADDRS_MAX, GAI_NAME_MAX, GaiData},
    maps::programs,
};
use procfs::process::{MMapPath, Process};

use super::{Error, load::program};
use crate::errors::chain;

/// Name `/etc/ld.so.cache` knows glibc by.
const LIBC_SONAME: &str = "libc.so.6";

/// What became of the probe.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Both probes attached to `getaddrinfo` in this file.
    Attached(PathBuf),
    /// Not attached, and why (the degradation's reason).
    Unavailable(String),
}

/// Loads and attaches both probes to the libc `configured` (else the one found).
///
/// # Errors
/// Only when a program is missing from our object or of the wrong kind (a build bug); everything
/// the host refuses is [`Outcome::Unavailable`].
pub(super) fn attach(ebpf: &mut Ebpf, configured: Option<&Path>) -> Result<Outcome, Error> {
    let libc = match libc_path(configured) {
        Ok(path) => path,
        Err(e) => return Ok(Outcome::Unavailable(chain(&e))),
    };
    for name in [programs::GAI_ENTRY, programs::GAI_RETURN] {
        let prog: &mut UProbe = program(ebpf, name)?;
        if let Err(e) = prog.load() {
            return Ok(Outcome::Unavailable(format!("the kernel refused program `{name}`: {}", chain(&e))));
        }
        if let Err(e) = prog.attach(programs::GAI_FN, &libc, UProbeScope::AllProcesses) {
            return Ok(Outcome::Unavailable(format!(
                "cannot attach `{name}` to `{}` in `{}`: {}",
                programs::GAI_FN,
                libc.display(),
                chain(&e)
            )));
        }
    }
    Ok(Outcome::Attached(libc))
}

/// The libc to probe: `configured` when it is a file, else this process's, else the soname for
/// aya's `/etc/ld.so.cache` lookup.
///
/// # Errors
/// [`Error::LibcNotAFile`] or [`Error::Libc`] when `configured` is not a readable file.
pub(super) fn libc_path(configured: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(path) = configured {
        return match std::fs::metadata(path) {
            Ok(m) if m.is_file() => Ok(path.to_path_buf()),
            Ok(_) => Err(Error::LibcNotAFile { path: path.to_path_buf() }),
            Err(source) => Err(Error::Libc { path: path.to_path_buf(), source }),
        };
    }
    Ok(mapped_libc().unwrap_or_else(|| PathBuf::from(LIBC_SONAME)))
}

/// The `libc.so*` file mapped into this process, if it is dynamically linked against one.
fn mapped_libc() -> Option<PathBuf> {
    let maps = Process::myself().ok()?.maps().ok()?;
    maps.into_iter().find_map(|m| match m.pathname {
        MMapPath::Path(p) if p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libc.so")) => Some(p),
        _ => None,
    })
}

/// A decoded `getaddrinfo` result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The name the process asked for, as it passed it (hostile: validate before use).
    pub name: Vec<u8>,
    /// IPv4 and IPv6 addresses of the answer, duplicates removed, in answer order.
    pub addrs: Vec<IpAddr>,
}

/// Decodes the data part of a `getaddrinfo` record (`Copied::data` of a record whose header kind
/// is `GAI_KIND`); `None` when it is too short. Lengths are clamped to the arrays.
#[must_use]
pub fn decode_gai(data: &[u8]) -> Option<Resolution> {
    if data.len() < size_of::<GaiData>() {
        return None;
    }
    // SAFETY: length checked; `GaiData` is plain old data (every bit pattern valid), and
    // read_unaligned copes with any alignment.
    let d: GaiData = unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
    let name_len = (d.name_len as usize).min(GAI_NAME_MAX);
    let name = d.name.get(..name_len).unwrap_or_default();
    let name = name.iter().position(|&b| b == 0).map_or(name, |end| name.get(..end).unwrap_or_default()).to_vec();
    let count = (d.count as usize).min(GAI_ADDRS_MAX);
    let mut addrs: Vec<IpAddr> = Vec::with_capacity(count);
    for (family, bytes) in d.families.iter().zip(d.addrs.iter()).take(count) {
        let addr = match *family {
            AF_INET => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
            AF_INET6 => IpAddr::V6(Ipv6Addr::from(*bytes)),
            _ => continue,
        };
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    Some(Resolution { name, addrs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(d: &GaiData) -> Vec<u8> {
        // SAFETY: GaiData is repr(C) plain data.
        unsafe { std::slice::from_raw_parts(std::ptr::from_ref(d).cast::<u8>(), size_of::<GaiData>()) }.to_vec()
    }

    fn data(name: &[u8], addrs: &[(u16, [u8; 16])]) -> GaiData {
        let mut d = GaiData {
            name_len: u32::try_from(name.len()).unwrap(),
            count: u32::try_from(addrs.len()).unwrap(),
            families: [0; GAI_ADDRS_MAX],
            addrs: [[0; 16]; GAI_ADDRS_MAX],
            name: [0; GAI_NAME_MAX],
        };
        d.name[..name.len()].copy_from_slice(name);
        for (i, (f, a)) in addrs.iter().enumerate() {
            d.families[i] = *f;
            d.addrs[i] = *a;
        }
        d
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut out = [0; 16];
        out[..4].copy_from_slice(&a);
        out
    }

    #[test]
    fn decodes_name_and_both_families_without_duplicates() {
        let v6: Ipv6Addr = "fd77::2".parse().unwrap();
        let d = data(
            b"api.gai-test.example",
            &[
                (AF_INET, v4([89, 160, 20, 112])),
                (AF_INET6, v6.octets()),
                (AF_INET, v4([89, 160, 20, 112])),
                (99, [1; 16]),
            ],
        );
        let r = decode_gai(&bytes(&d)).unwrap();
        assert_eq!(r.name, b"api.gai-test.example");
        assert_eq!(r.addrs, [IpAddr::from([89, 160, 20, 112]), IpAddr::V6(v6)]);
        assert_eq!(decode_gai(&bytes(&d)[..size_of::<GaiData>() - 1]), None);
    }

    #[test]
    fn hostile_lengths_are_clamped() {
        let mut d = data(b"x.test\0junk", &[(AF_INET, v4([10, 0, 0, 1]))]);
        d.name_len = u32::MAX;
        d.count = u32::MAX;
        let r = decode_gai(&bytes(&d)).unwrap();
        assert_eq!(r.name, b"x.test", "cut at the NUL");
        assert_eq!(r.addrs, [IpAddr::from([10, 0, 0, 1])], "families 0 beyond the first are skipped");
    }

    #[test]
    fn libc_is_this_processs_or_the_configured_file() {
        // The test binary is dynamically linked against glibc.
        let found = libc_path(None).unwrap();
        assert!(found.is_absolute() && found.is_file(), "{}", found.display());
        assert!(found.file_name().unwrap().to_string_lossy().starts_with("libc.so"));
        let reason = chain(&libc_path(Some(Path::new("/nonexistent/libc.so.6"))).unwrap_err());
        assert!(reason.contains("/nonexistent/libc.so.6") && reason.contains("No such file"), "{reason}");
        let reason = chain(&libc_path(Some(Path::new("/"))).unwrap_err());
        assert!(reason.contains("is not a file"), "{reason}");
    }
}
