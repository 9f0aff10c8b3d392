//! Whether the name (`comm`) the kernel recorded for a socket's creator names the process that
//! holds its pid now: a first read from /proc is only taken when it does (else the program running
//! now exec'd since, or took the pid within the same hundredth of a second).

use std::{
    io::Read as _,
    os::unix::{ffi::OsStrExt as _, fs::MetadataExt as _},
    path::{Path, PathBuf},
};

use procfs::process::Process;

use super::without_deleted;
use crate::escape;

/// How much of a command line is read for the names it was started under (it can be megabytes
/// long; the first arguments are at its start).
const ARGS_READ: u64 = 4096;

/// Links followed from a name beside the executable to the executable.
const MAX_HOPS: usize = 8;

/// The name (`comm`) of process `tgid` as the monitor writes names: its bytes from
/// `/proc/<tgid>/comm` (the kernel's own, whatever they are) through `escape::utf8_or_hex`, as the
/// kernel's record of an owner is written, so both compare and `[[apps]] comm` rules match either
/// the same way; `stat`'s (lossy: procfs decodes with replacement) when the file cannot be read.
pub(super) fn process_comm(tgid: u32, stat: &procfs::process::Stat) -> String {
    match std::fs::read(format!("/proc/{tgid}/comm")) {
        Ok(mut raw) => {
            if raw.last() == Some(&b'\n') {
                raw.pop();
            }
            escape::utf8_or_hex(&raw).into_owned()
        }
        Err(_) => escape::utf8_or_hex(stat.comm.as_bytes()).into_owned(),
    }
}

/// Whether `comm` (as the kernel's record is written) is the name of process `tgid` (written as
/// `proc_comm`) or of one of its threads now; procfs' lossy text is taken too (owners found in
/// /proc carry it).
pub(super) fn names_a_thread(tgid: u32, stat: &procfs::process::Stat, proc_comm: &str, comm: &str) -> bool {
    let written = |raw: &[u8]| {
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        escape::utf8_or_hex(raw) == comm
    };
    if proc_comm == comm || written(stat.comm.as_bytes()) {
        return true;
    }
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{tgid}/task")) else { return false };
    tasks.flatten().any(|t| std::fs::read(t.path().join("comm")).is_ok_and(|raw| written(&raw)))
}

/// Whether `comm` (as the kernel's record is written) is a name the program `p` runs now was
/// started under; the kernel names a process after the path given to `execve`, its first 15 bytes
/// (`TASK_COMM_LEN` less its NUL). That is its executable's file name; a link to it of that name
/// beside it (`python3` for `/usr/bin/python3.11`); its first argument's file name (a link
/// elsewhere, as shells pass it); or, for a script started by its `#!` line, the script's: the
/// interpreter's next argument, or the one after a single option (`#!/usr/bin/python3 -u`). A
/// program that renamed itself since (`prctl`, `setproctitle`) is found this way; one that
/// exec'd another program is not, unless that one was started with the old name as one of those
/// arguments.
pub(super) fn names_the_program(p: &Process, comm: &str) -> bool {
    let Ok(exe) = p.exe() else { return false };
    let path = Path::new(without_deleted(&exe));
    if path.file_name().is_some_and(|name| comm_of(name.as_bytes()) == comm) {
        return true;
    }
    let exe_file = p.open_relative("exe").and_then(|f| Ok(f.metadata()?)).map(|m| (m.dev(), m.ino()));
    if let Ok(id) = exe_file
        && links_beside(path, comm, id)
    {
        return true;
    }
    let mut raw = Vec::new();
    let read = p.open_relative("cmdline").and_then(|f| Ok(f.take(ARGS_READ).read_to_end(&mut raw)?));
    read.is_ok_and(|_| started_as(&raw).any(|arg| file_comm(arg).is_some_and(|name| name == comm)))
}

/// The arguments of command line `raw` (NUL-separated) that can name the program: the first, the
/// second, and the third when the second is an option.
fn started_as(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut args = raw.split(|&b| b == 0);
    let (first, second, third) = (args.next(), args.next(), args.next());
    let option = |a: &&[u8]| a.starts_with(b"-");
    let third = third.filter(|a| second.as_ref().is_some_and(option) && !option(a));
    [first, second.filter(|a| !option(a)), third].into_iter().flatten()
}

/// The name the kernel gives a process started by path `arg`: its file name's first 15 bytes,
/// written as the monitor writes names (`None` without a file name).
fn file_comm(arg: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    let name = arg.rsplit(|&b| b == b'/').next().filter(|n| !n.is_empty())?;
    Some(comm_of(name))
}

/// A file name as the kernel names a process started by it: its first 15 bytes, written as the
/// monitor writes names.
fn comm_of(name: &[u8]) -> std::borrow::Cow<'_, str> {
    escape::utf8_or_hex(&name[..name.len().min(15)])
}

/// Whether `name` (a name as the monitor writes it) beside executable `exe` (device and inode
/// `id`) is the executable: a hard link, or a chain of symbolic links within that directory ending
/// at it. Nothing outside the directory is looked at (a link chosen by the program's owner could
/// lead the daemon anywhere, e.g. to a mount that never answers). A written name with an escape
/// (a backslash) is not the file's name and is not looked up.
fn links_beside(exe: &Path, name: &str, id: (u64, u64)) -> bool {
    let Some(dir) = exe.parent() else { return false };
    if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
        return false;
    }
    let mut at: PathBuf = dir.join(name);
    for _ in 0..MAX_HOPS {
        let Ok(meta) = std::fs::symlink_metadata(&at) else { return false };
        if !meta.file_type().is_symlink() {
            return meta.is_file() && (meta.dev(), meta.ino()) == id;
        }
        let Ok(target) = std::fs::read_link(&at) else { return false };
        at = dir.join(target);
        if at == exe {
            return true;
        }
        if at.parent() != Some(dir) {
            return false;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::started_as;

    #[test]
    fn the_names_a_command_line_was_started_under() {
        let args = |raw: &[u8]| {
            started_as(raw)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(args(b"python3\0/srv/my-daemon.py\0--flag\0"), ["python3", "/srv/my-daemon.py"]);
        assert_eq!(args(b"/usr/bin/python3\0-u\0/srv/d.py\0x\0"), ["/usr/bin/python3", "/srv/d.py"]);
        assert_eq!(args(b"sleep\0"), ["sleep"]);
        assert_eq!(args(b"a\0-x\0"), ["a"]);
        assert_eq!(args(b"a\0-x\0-y\0z\0"), ["a"], "one option only, as a `#!` line gives");
        assert!(args(b"").is_empty());
    }
}
