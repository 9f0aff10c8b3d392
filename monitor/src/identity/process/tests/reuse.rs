//! Programs that exec and pids reused: the kernel's mark of the program and the owner's start
//! tell a socket's process apart from another one with the same pid or name.

use super::*;

/// Waits (3 s at most) until process `pid` is named `comm` (its exec done).
fn named(pid: u32, comm: &str) {
    for _ in 0..300 {
        if std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == comm) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The mark of the program `pid` runs now, as `/proc/<pid>/stat` shows it.
fn mark_of(pid: u32) -> u32 {
    let stat = Process::new(i32::try_from(pid).unwrap()).unwrap().stat().unwrap();
    monitor_common::sock::exec_mark_number(stat.startstack)
}

/// A process that execs another executable of the same file name right after making a socket
/// (a wrapper `/usr/local/bin/foo` starting `/opt/foo/bin/foo`; an adversarial pass: the socket
/// was charged to the new program, whose name is the socket's). The kernel's mark of the program
/// that made the socket tells them apart: read after the exec, the socket is named from the
/// kernel's record; read before, it keeps the old program's entry while the new program's
/// sockets get their own. With the marks equal, a name the program no longer has is no exec.
#[test]
fn an_exec_to_a_program_of_the_same_name_keeps_the_socket_with_the_program_that_made_it() {
    use std::process::Command;
    if std::fs::read_to_string("/proc/sys/kernel/randomize_va_space").is_ok_and(|v| v.trim() == "0") {
        eprintln!("SKIP: stacks are not placed at random here (kernel.randomize_va_space = 0)");
        return;
    }
    let clock = Clock::now();
    let now = || clock.wall(Clock::boot_ns());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a")).unwrap();
    std::fs::create_dir_all(dir.path().join("b")).unwrap();
    let (wrapper, real) = (dir.path().join("a/same-name"), dir.path().join("b/same-name"));
    std::os::unix::fs::symlink("/bin/sh", &wrapper).unwrap();
    std::fs::copy("/bin/sleep", &real).unwrap();
    let script = "echo ready; read go; exec \"$0\" 30";
    let child =
        spawn_copy(Command::new(&wrapper).args(["-c", script]).arg(&real).stdin(Stdio::piped()).stdout(Stdio::piped()));
    let (child, pid) = once_ready(child);
    let mut children = Children(vec![child]);
    let before = mark_of(pid);
    let socket = |comm: &str, exec_mark: u32| Owner { comm: comm.into(), exec_mark, ..owner(pid) };
    // One cache reads the wrapper before the exec; a name it never had, with its mark, is still it.
    let mut early = Identities::new(AppRules::default(), clock);
    early.observe(pid, Clock::boot_ns(), "same-name", 0, before);
    let wrapper_app = early.app_for(&socket("same-name", before), now());
    let renamed = Identities::new(AppRules::default(), clock).app_for(&socket("stranger", before), now());
    // The exec.
    let stdin = children.0[0].stdin.as_mut().unwrap();
    std::io::Write::write_all(stdin, b"go\n").unwrap();
    let exe_now = || std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    for _ in 0..300 {
        if exe_now().as_deref() == Some(real.as_path()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(exe_now().as_deref(), Some(real.as_path()), "the exec happened");
    let after = mark_of(pid);
    if before == after {
        eprintln!("SKIP: the two programs' stacks are at the same place (no address space randomization)");
        return;
    }
    let old_socket = early.app_for(&socket("same-name", before), now());
    let new_socket = early.app_for(&socket("same-name", after), now());
    // A cache that first sees the process after the exec.
    let mut late = Identities::new(AppRules::default(), clock);
    let late_old = late.app_for(&socket("same-name", before), now());
    let late_new = late.app_for(&socket("same-name", after), now());
    // Without marks only the names decide, and both programs have the socket's.
    let unmarked = Identities::new(AppRules::default(), clock).app_for(&socket("same-name", 0), now());
    drop(children);
    let real = real.to_str();
    assert_eq!(wrapper_app.source, AppSource::Proc, "{wrapper_app:?}");
    assert!(wrapper_app.exe.is_some() && wrapper_app.exe.as_deref() != real, "the shell: {wrapper_app:?}");
    assert_eq!((renamed.source, &renamed.exe), (AppSource::Proc, &wrapper_app.exe), "{renamed:?}");
    assert!(Arc::ptr_eq(&old_socket, &wrapper_app), "the wrapper's socket keeps its entry: {old_socket:?}");
    assert_eq!((new_socket.source, new_socket.exe.as_deref()), (AppSource::Proc, real), "{new_socket:?}");
    assert_eq!(
        (late_old.source, late_old.exe.as_deref(), late_old.name.as_str()),
        (AppSource::Kernel, None, "same-name")
    );
    assert_eq!((late_new.source, late_new.exe.as_deref()), (AppSource::Proc, real), "{late_new:?}");
    assert_eq!((unmarked.source, unmarked.exe.as_deref()), (AppSource::Proc, real), "{unmarked:?}");
}

/// Equal marks prove the same program only where the kernel places stacks at random: in a
/// process that turned that off (`setarch -R`, as debuggers do) the names decide, as without
/// marks, so a name the program does not have is not taken for it.
#[test]
fn equal_marks_without_stack_randomization_leave_it_to_the_names() {
    use std::process::Command;
    let clock = Clock::now();
    let now = || clock.wall(Clock::boot_ns());
    // `setarch -R` needs `personality(2)`, which some sandboxes refuse.
    if !Command::new("setarch").args(["-R", "true"]).status().is_ok_and(|s| s.success()) {
        eprintln!("SKIP: setarch -R does not run here");
        return;
    }
    let mut setarch = Command::new("setarch");
    let child = setarch.args(["-R", "sh", "-c", "echo ready; exec sleep 30"]).stdout(Stdio::piped()).spawn().unwrap();
    let (child, pid) = once_ready(child);
    let children = Children(vec![child]);
    named(pid, "sleep");
    let mark = mark_of(pid);
    let socket = |comm: &str| Owner { comm: comm.into(), exec_mark: mark, ..owner(pid) };
    let stranger = Identities::new(AppRules::default(), clock).app_for(&socket("stranger"), now());
    let mut ids = Identities::new(AppRules::default(), clock);
    let own = ids.app_for(&socket("sleep"), now());
    // Another mark is another program all the same (a check: a wrapper's entry under `setarch -R`
    // took the socket of the program it exec'd, of the same name, by that name).
    let other_mark = if mark == 1 { 2 } else { 1 };
    let other = ids.app_for(&Owner { exec_mark: other_mark, ..socket("sleep") }, now());
    drop(children);
    assert_eq!((stranger.source, stranger.exe.as_deref()), (AppSource::Kernel, None), "{stranger:?}");
    assert_eq!(own.source, AppSource::Proc, "{own:?}");
    assert_eq!((other.source, other.exe.as_deref()), (AppSource::Kernel, None), "{other:?}");
}

/// A reused pid: a cached entry answers only sockets of the process it was read from (the
/// owner's start as the kernel recorded it), not those of another process that held or holds the
/// pid under the same name or executable (an adversarial pass: 68 of 600 processes that reused
/// pids were charged to the processes that held them before, command lines included).
#[test]
fn a_reused_pid_with_the_same_name_is_not_the_process_that_held_it() {
    let clock = Clock::now();
    let mut ids = Identities::new(AppRules::default(), clock);
    let pid = std::process::id();
    let stat = procfs::process::Process::myself().unwrap().stat().unwrap();
    let start_cs = start_cs_of_ticks(stat.starttime);
    assert_ne!(start_cs, 0, "this test started after the first hundredth of a second of boot");
    let mine = Owner { comm: stat.comm.as_str().into(), start_cs, ..owner(pid) };
    let now = || clock.wall(Clock::boot_ns());
    let app = ids.app_for(&mine, now());
    assert_eq!((app.source, app.pid, app.start_time), (AppSource::Proc, pid, stat.starttime));
    // The same pid and name, another start: a process gone while this one holds the pid (or,
    // as the cache sees it, one that held it before this one was read).
    let stranger = Owner { start_cs: start_cs.wrapping_add(500), ..mine.clone() };
    let other = ids.app_for(&stranger, now());
    assert_eq!((other.source, other.name.as_str(), other.pid), (AppSource::Kernel, stat.comm.as_str(), pid));
    assert_eq!((other.exe.as_deref(), other.cmdline.as_deref()), (None, None), "nothing of this process's");
    if procfs::ticks_per_second() == 100 {
        assert_eq!(other.start_time, stat.starttime + 500, "its start from the kernel's record");
    }
    let again = ids.app_for(&stranger, now());
    assert!(Arc::ptr_eq(&other, &again), "remembered as gone, by its start");
    assert!(Arc::ptr_eq(&ids.app_for(&mine, now()), &app), "the entry still answers its own process");
    // /proc's tick is the unit here: one unit off is another process (one that took the pid a
    // hundredth of a second later: an adversarial pass forced that through `ns_last_pid`).
    let next = ids.app_for(&Owner { start_cs: start_cs.wrapping_add(1), ..mine.clone() }, now());
    let tick_is_the_unit = procfs::ticks_per_second() == 100;
    assert_eq!(next.source, if tick_is_the_unit { AppSource::Kernel } else { AppSource::Proc }, "{next:?}");
    // The start unknown (kernels without the task offsets): the cached entry, as before.
    assert!(Arc::ptr_eq(&ids.app_for(&Owner { start_cs: 0, ..mine.clone() }, now()), &app));
    let expected = if tick_is_the_unit { (3, 3) } else { (4, 2) };
    assert_eq!((ids.stats.from_proc, ids.stats.from_kernel), expected);
    // Not cached yet: read from /proc and refused there too.
    let mut fresh = Identities::new(AppRules::default(), clock);
    assert_eq!(fresh.app_for(&stranger, now()).source, AppSource::Kernel);
    assert_eq!(fresh.app_for(&mine, now()).source, AppSource::Proc);
}

/// A process that took the pid within the same hundredth of a second as the one that made a
/// socket, running the same executable (an adversarial pass forced that through `ns_last_pid`:
/// 26 % of 2,000 short clients were charged to the other program, `source: proc`, the cached
/// entry having taken on the foreign name once the executable now running matched its own): the
/// two programs' marks differ, so the socket is the kernel's record, and the entry does not take
/// the stranger's name on.
#[test]
fn a_pid_taken_within_the_same_hundredth_of_a_second_is_told_apart_by_its_mark() {
    let clock = Clock::now();
    let now = || clock.wall(Clock::boot_ns());
    let Ok(child) =
        std::process::Command::new("sh").args(["-c", "echo ready; exec sleep 30"]).stdout(Stdio::piped()).spawn()
    else {
        eprintln!("SKIP: no sh");
        return;
    };
    let (child, pid) = once_ready(child);
    let children = Children(vec![child]);
    named(pid, "sleep");
    let stat = Process::new(i32::try_from(pid).unwrap()).unwrap().stat().unwrap();
    let mark = mark_of(pid);
    let running =
        Owner { comm: "sleep".into(), start_cs: start_cs_of_ticks(stat.starttime), exec_mark: mark, ..owner(pid) };
    let mut ids = Identities::new(AppRules::default(), clock);
    let app = ids.app_for(&running, now());
    // Another process's socket: same pid and start, another name and program mark.
    let other_mark = if mark == 1 { 2 } else { 1 };
    let stranger = Owner { comm: "other-client".into(), exec_mark: other_mark, ..running.clone() };
    let other = ids.app_for(&stranger, now());
    let other_again = ids.app_for(&stranger, now());
    let own_again = ids.app_for(&running, now());
    // Without marks only the executable now running is checked, which is the entry's own.
    let unmarked = ids.app_for(&Owner { exec_mark: 0, ..stranger.clone() }, now());
    drop(children);
    assert_eq!((app.source, app.name.as_str()), (AppSource::Proc, "sleep"), "{app:?}");
    assert_eq!((other.source, other.name.as_str(), other.exe.as_deref()), (AppSource::Kernel, "other-client", None));
    assert!(Arc::ptr_eq(&other_again, &other), "remembered: that program will not run under the pid again");
    assert!(Arc::ptr_eq(&own_again, &app), "the entry still answers its own program");
    assert!(Arc::ptr_eq(&unmarked, &app), "without marks the names and the executable decide, as before");
}
