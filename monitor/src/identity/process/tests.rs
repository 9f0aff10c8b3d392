//! The process cache against real processes this test starts: start times, exec, binaries
//! replaced on disk, zombies, non-UTF-8 names and arguments, gone processes, Android UIDs.

use super::*;
use crate::{identity::rules::AppRule, tracker::record::OwnerSource};

mod reuse;

fn owner(tgid: u32) -> Owner {
    Owner {
        tgid,
        pid: tgid,
        uid: 4242,
        gid: 0,
        comm: "gone-proc".into(),
        cgroup_id: 0,
        source: OwnerSource::SockCreate,
        start_cs: 0,
        exec_mark: 0,
    }
}

#[test]
fn units_and_containers_from_cgroup_paths() {
    assert_eq!(unit_of("/system.slice/nginx.service").as_deref(), Some("nginx.service"));
    assert_eq!(
        unit_of("/user.slice/user-1000.slice/user@1000.service/app.slice/app-firefox-12.scope").as_deref(),
        Some("app-firefox-12.scope")
    );
    assert_eq!(unit_of("/"), None);
    let id = "a".repeat(64);
    assert_eq!(container_of(&format!("/system.slice/docker-{id}.scope")), Some(id.clone()));
    assert_eq!(container_of(&format!("/kubepods/besteffort/pod1/cri-containerd-{id}.scope")), Some(id.clone()));
    assert_eq!(container_of(&format!("/docker/{id}")), Some(id));
    assert_eq!(container_of("/user.slice"), None);
    // Nested (docker in docker): the process's own container, the innermost.
    let inner = "b".repeat(64);
    assert_eq!(container_of(&format!("/docker/{}/docker/{inner}", "a".repeat(64))), Some(inner));
}

#[test]
fn live_process_is_read_from_proc_with_its_start_time() {
    let clock = Clock::now();
    let mut ids = Identities::new(AppRules::default(), clock);
    // The socket's thread name must be the process's or one of its threads' (a first read).
    let name = std::fs::read("/proc/self/comm").unwrap();
    let me = Owner { comm: crate::escape::utf8_or_hex(name.trim_ascii_end()).into(), ..owner(std::process::id()) };
    let app = ids.app_for(&me, clock.wall(Clock::boot_ns()));
    assert_eq!(app.source, AppSource::Proc);
    // A name that is no thread's of the process now: the process running under the pid is not
    // the socket's (it exec'd since, or took the pid in the same hundredth of a second as the
    // socket's process): the kernel's record.
    let stranger =
        Identities::new(AppRules::default(), clock).app_for(&owner(std::process::id()), clock.wall(Clock::boot_ns()));
    assert_eq!((stranger.source, stranger.name.as_str()), (AppSource::Kernel, "gone-proc"));
    assert_eq!(app.pid, std::process::id());
    let exe = std::env::current_exe().unwrap();
    assert_eq!(app.exe.as_deref(), exe.to_str());
    assert_eq!(app.name, exe.file_name().unwrap().to_str().unwrap());
    assert!(app.start_time > 0);
    assert!(app.cmdline.is_some());
}

/// A process that `execve`s another program keeps its pid and start time: sockets of the new
/// program (another thread name) are charged to it, those of the old one stay charged to the
/// old program, and another thread of the new program costs no second read (the audit's
/// case: the new program's sockets were charged to the old one).
#[test]
fn a_new_program_after_execve_is_a_new_app_and_the_old_ones_sockets_keep_theirs() {
    use std::process::{Command, Stdio};
    let clock = Clock::now();
    let mut ids = Identities::new(AppRules::default(), clock);
    let mut child = Command::new("sh").args(["-c", "read go; exec sleep 30"]).stdin(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let proc_exe = || std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    // Until the spawn's own exec is done (before it, the child is a copy of this test).
    let sh_exe = {
        let me = std::env::current_exe().ok();
        let mut exe = proc_exe();
        for _ in 0..200 {
            if exe.is_some() && exe != me {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            exe = proc_exe();
        }
        exe.unwrap()
    };
    let socket_of = |comm: &str| Owner { comm: comm.into(), ..owner(pid) };
    let now = || clock.wall(Clock::boot_ns());
    let before = ids.app_for(&socket_of("sh"), now());
    assert_eq!(before.exe.as_deref(), sh_exe.to_str());
    // Many thread names before the exec (the audit's case: past 32 names the exec went unseen).
    for i in 0..40 {
        assert!(Arc::ptr_eq(&ids.app_for(&socket_of(&format!("t{i}")), now()), &before));
    }
    // The exec.
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"go\n").unwrap();
    let mut exe = proc_exe();
    for _ in 0..200 {
        if exe.as_ref().is_some_and(|e| e.ends_with("sleep")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        exe = proc_exe();
    }
    let sleep_exe = exe.unwrap();
    assert!(sleep_exe.ends_with("sleep"), "{sleep_exe:?}");
    // A socket of a program between the two (its name is neither's: it exec'd again before its
    // socket was read): what the kernel recorded, not the program running now.
    let between = ids.app_for(&socket_of("bash"), now());
    let after = ids.app_for(&socket_of("sleep"), now());
    let old_socket = ids.app_for(&socket_of("sh"), now());
    let other_thread = ids.app_for(&socket_of("worker"), now());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((after.exe.as_deref(), after.name.as_str()), (sleep_exe.to_str(), "sleep"));
    assert!(after.cmdline.as_deref().is_some_and(|c| c.starts_with("sleep 30")), "{:?}", after.cmdline);
    assert_eq!(after.pid, before.pid);
    assert_eq!(old_socket.exe, before.exe, "a socket of the program before the exec keeps its app");
    assert!(Arc::ptr_eq(&other_thread, &after), "another thread of the new program: the same entry");
    assert_eq!((between.name.as_str(), between.source, between.exe.as_deref()), ("bash", AppSource::Kernel, None));
    assert_eq!((ids.stats.from_proc, ids.stats.from_kernel), (44, 1));
    // Gone: a name it never answered may be a program it exec'd last and whose executable can no
    // longer be read (an adversarial pass: such sockets were charged to the program before it):
    // the kernel's record. A name it answered keeps its entry.
    let gone_new = ids.app_for(&socket_of("wexit"), now());
    assert_eq!((gone_new.name.as_str(), gone_new.source, gone_new.exe.as_deref()), ("wexit", AppSource::Kernel, None));
    assert!(Arc::ptr_eq(&ids.app_for(&socket_of("sleep"), now()), &after), "a name it answered keeps its entry");
}

/// Runs `command`, whose program the test has just copied: a test forking in another thread
/// while the copy was open for writing holds a writable descriptor of it until its child execs,
/// and the kernel refuses to run the file until then (`ETXTBSY`, a flaky failure under load).
fn spawn_copy(command: &mut std::process::Command) -> std::process::Child {
    (0..100)
        .find_map(|_| match command.spawn() {
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
                None
            }
            spawned => Some(spawned.expect("spawn")),
        })
        .expect("the copy runs once no other process holds it open for writing")
}

/// A binary replaced on disk while it runs (a package upgrade renames the new file over it:
/// `/proc/<pid>/exe` then reads `... (deleted)`) is no exec: a socket of another thread keeps
/// the app read first (review finding: it was read again and named `mysleep (deleted)`).
/// More thread names than an entry remembers keep it too.
#[test]
fn a_binary_replaced_on_disk_while_it_runs_is_not_an_exec() {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("mysleep");
    let sleep =
        String::from_utf8(Command::new("sh").args(["-c", "command -v sleep"]).output().unwrap().stdout).unwrap();
    std::fs::copy(sleep.trim(), &bin).unwrap();
    let mut child = spawn_copy(Command::new(&bin).arg("30"));
    let pid = child.id();
    for _ in 0..200 {
        if std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == bin) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let clock = Clock::now();
    let mut ids = Identities::new(AppRules::default(), clock);
    let socket_of = |comm: &str| Owner { comm: comm.into(), ..owner(pid) };
    let now = || clock.wall(Clock::boot_ns());
    let first = ids.app_for(&socket_of("mysleep"), now());
    assert_eq!(first.name, "mysleep");
    // The upgrade: a new file renamed over the old one.
    let new = dir.path().join("mysleep.new");
    std::fs::copy(sleep.trim(), &new).unwrap();
    std::fs::rename(&new, &bin).unwrap();
    let link = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let other_thread = ids.app_for(&socket_of("worker"), now());
    let many: Vec<Arc<App>> = (0..2 * MAX_COMMS).map(|i| ids.app_for(&socket_of(&format!("w{i}")), now())).collect();
    let _ = child.kill();
    let _ = child.wait();
    // A second process of the old file, first read after the replacement: named after the
    // file, not `mysleep (deleted)` (audit).
    let mut later = spawn_copy(Command::new(&bin).arg("30"));
    let later_exe = format!("/proc/{}/exe", later.id());
    for _ in 0..200 {
        if std::fs::read_link(&later_exe).is_ok_and(|e| e == bin) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::fs::copy(sleep.trim(), &new).unwrap();
    std::fs::rename(&new, &bin).unwrap();
    let late_link = std::fs::read_link(&later_exe).unwrap();
    let read_late = ids.app_for(&Owner { comm: "mysleep".into(), ..owner(later.id()) }, now());
    let _ = later.kill();
    let _ = later.wait();
    assert!(late_link.to_string_lossy().ends_with("mysleep (deleted)"), "{late_link:?}");
    assert_eq!(read_late.name, "mysleep", "{read_late:?}");
    assert_eq!(read_late.exe.as_deref(), bin.to_str(), "{read_late:?}");
    assert!(link.to_string_lossy().ends_with("(deleted)"), "{link:?}");
    assert!(Arc::ptr_eq(&other_thread, &first), "{other_thread:?}");
    assert!(many.iter().all(|a| Arc::ptr_eq(a, &first)), "every thread name: the same app");
}

/// A process that exited and was not waited for (a zombie) has no executable or command
/// line left: its app is what the kernel recorded (`source: kernel`), not a /proc read with
/// nothing in it (audit: `source: proc` without exe and cmdline).
#[test]
fn a_zombie_is_a_gone_process() {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    let stat = || Process::new(i32::try_from(pid).unwrap()).and_then(|p| p.stat()).map(|s| s.state);
    for _ in 0..200 {
        if matches!(stat(), Ok('Z')) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(matches!(stat(), Ok('Z')), "{:?}", stat());
    let clock = Clock::now();
    let mut ids = Identities::new(AppRules::default(), clock);
    let app = ids.app_for(&Owner { comm: "true".into(), ..owner(pid) }, clock.wall(Clock::boot_ns()));
    let _ = child.wait();
    assert_eq!((app.source, app.name.as_str()), (AppSource::Kernel, "true"));
}

/// A Python process running `script`, once it printed its first line (`None`, said as a skip,
/// without python3).
fn python_child(script: &str) -> Option<(std::process::Child, u32)> {
    let Ok(child) = std::process::Command::new("python3").args(["-c", script]).stdout(Stdio::piped()).spawn() else {
        eprintln!("SKIP: no python3 for this process");
        return None;
    };
    Some(once_ready(child))
}

use std::process::Stdio;

/// `child` (its stdout piped), once it printed its first line, and its pid.
fn once_ready(mut child: std::process::Child) -> (std::process::Child, u32) {
    use std::io::BufRead as _;
    let mut line = String::new();
    let out = child.stdout.take().expect("the child's stdout is piped");
    std::io::BufReader::new(out).read_line(&mut line).expect("the child's first line");
    assert_eq!(line, "ready\n", "the child's first line");
    let pid = child.id();
    (child, pid)
}

/// Children killed when dropped (a failed assertion must not leave them sleeping).
struct Children(Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A program started by a link of another name renames itself right after its first socket
/// (a re-check: `python3`, a link to `python3.11`, whose name a library changed within
/// milliseconds, read `source: kernel` in 8 of 12 processes). The name it was started under is
/// still its first argument; where the program overwrote that too (Perl's `$0`), the link
/// beside its executable names it; a script started by its `#!` line (named after the script)
/// is named by the interpreter's next argument (a review). Another name is still no name of the
/// program.
#[test]
fn a_program_started_by_a_link_that_renamed_itself_is_read_from_proc() {
    use std::process::Command;
    let clock = Clock::now();
    let now = || clock.wall(Clock::boot_ns());
    let dir = tempfile::tempdir().unwrap();
    // The interpreter itself (`python3` on PATH may be a version manager's shim script).
    let exe = "import os, sys; print(os.path.realpath(sys.executable))";
    let (Ok(python), true) =
        (Command::new("python3").args(["-c", exe]).output(), std::path::Path::new("/usr/bin/perl").exists())
    else {
        eprintln!("SKIP: python3 and /usr/bin/perl are needed for these processes");
        return;
    };
    let python = String::from_utf8(python.stdout).unwrap().trim().to_owned();
    let link = dir.path().join("started-as");
    std::os::unix::fs::symlink(&python, &link).unwrap();
    let rename = "import ctypes, time\nctypes.CDLL(None).prctl(15, b'renamed', 0, 0, 0)\n\
                  print('ready', flush=True)\ntime.sleep(30)\n";
    let mut children = Children(Vec::new());
    let mut ready = |child: std::process::Child| {
        let (child, pid) = once_ready(child);
        children.0.push(child);
        pid
    };
    let py = ready(Command::new(&link).args(["-c", rename]).stdout(Stdio::piped()).spawn().unwrap());
    // Perl copied beside a link of another name, started through the link, `$0` set: its name
    // and its first argument are `renamed` (perl calls `prctl` too).
    let perl = dir.path().join("real-prog");
    std::fs::copy("/usr/bin/perl", &perl).unwrap();
    std::os::unix::fs::symlink("real-prog", dir.path().join("link-prog")).unwrap();
    let script = "$0 = 'renamed'; $| = 1; print \"ready\\n\"; sleep 30";
    let pl = ready(spawn_copy(Command::new(dir.path().join("link-prog")).args(["-e", script]).stdout(Stdio::piped())));
    // A script with a `#!` line and an option, started directly.
    let file = dir.path().join("my-daemon.py");
    std::fs::write(&file, format!("#!{python} -u\n{rename}")).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let sh = ready(spawn_copy(Command::new(&file).stdout(Stdio::piped())));
    let mut ids = Identities::new(AppRules::default(), clock);
    let app =
        |ids: &mut Identities, pid: u32, comm: &str| ids.app_for(&Owner { comm: comm.into(), ..owner(pid) }, now());
    let py_app = app(&mut ids, py, "started-as");
    let pl_app = app(&mut ids, pl, "link-prog");
    let sh_app = app(&mut ids, sh, "my-daemon.py");
    // A first read of another name (a fresh cache: a read process answers any name).
    let mut fresh = Identities::new(AppRules::default(), clock);
    let others = [py, pl, sh].map(|pid| app(&mut fresh, pid, "stranger").source);
    let names = [py, pl, sh].map(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap());
    drop(children);
    assert_eq!(names, ["renamed\n", "renamed\n", "renamed\n"], "all renamed themselves");
    assert_eq!((py_app.source, py_app.pid), (AppSource::Proc, py), "{py_app:?}");
    assert!(py_app.cmdline.as_deref().is_some_and(|c| c.contains("started-as")), "{py_app:?}");
    assert_eq!((pl_app.source, pl_app.exe.as_deref()), (AppSource::Proc, perl.to_str()), "{pl_app:?}");
    assert_eq!((sh_app.source, sh_app.exe.as_deref()), (AppSource::Proc, Some(python.as_str())), "{sh_app:?}");
    assert_eq!(others, [AppSource::Kernel; 3]);
}

/// A process name with a backslash: `/proc`'s name and the kernel's record read alike (a
/// backslash doubled, as the monitor writes names), and an `[[apps]] comm` rule names the
/// process alive and gone alike (a review: the live process was matched on procfs' raw text,
/// the gone one on the written text, so the rule named only one of them).
#[test]
fn a_name_with_a_backslash_is_named_by_its_rule_alive_and_gone() {
    let script = "import ctypes, sys, time\nctypes.CDLL(None).prctl(15, b'q\\\\z', 0, 0, 0)\n\
                  print('ready', flush=True)\ntime.sleep(30)\n";
    let Some((mut child, pid)) = python_child(script) else { return };
    assert_eq!(std::fs::read(format!("/proc/{pid}/comm")).unwrap(), b"q\\z\n");
    let rules = AppRules::compile(&[AppRule { name: "named".into(), comm: vec!["q\\z".into()], ..AppRule::default() }])
        .unwrap();
    let clock = Clock::now();
    // The kernel's record of the name, as the tracker writes it.
    let written: std::sync::Arc<str> = crate::escape::utf8_or_hex(b"q\\z").into();
    let mut ids = Identities::new(rules.clone(), clock);
    let alive = ids.app_for(&Owner { comm: written.clone(), ..owner(pid) }, clock.wall(Clock::boot_ns()));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((alive.source, alive.name.as_str()), (AppSource::Proc, "named"), "{alive:?}");
    let mut later = Identities::new(rules, clock);
    let gone = later.app_for(&Owner { comm: written, ..owner(pid) }, clock.wall(Clock::boot_ns()));
    assert_eq!((gone.source, gone.name.as_str()), (AppSource::Kernel, "named"), "{gone:?}");
}

/// A process whose main thread exited (`pthread_exit`) while another runs is alive: read through
/// that thread (its executable and command line), not taken for a gone process named from the
/// kernel's record (an adversarial pass: such a program could name itself anything).
#[test]
fn a_process_whose_main_thread_exited_is_read_through_a_running_thread() {
    let script = "import threading, time, ctypes\nprint('ready', flush=True)\n\
                  t = threading.Thread(target=time.sleep, args=(30,)); t.start()\n\
                  ctypes.CDLL(None).pthread_exit(None)\n";
    let Some((mut child, pid)) = python_child(script) else { return };
    let zombie_leader = || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "));
    for _ in 0..200 {
        if zombie_leader() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(zombie_leader(), "the main thread exited, the process runs on");
    let clock = Clock::now();
    let mut ids = Identities::new(AppRules::default(), clock);
    let app = ids.app_for(&Owner { comm: "python3".into(), ..owner(pid) }, clock.wall(Clock::boot_ns()));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(app.source, AppSource::Proc, "{app:?}");
    assert!(app.exe.as_deref().is_some_and(|e| e.contains("python3")), "{app:?}");
    assert!(app.cmdline.as_deref().is_some_and(|c| c.contains("pthread_exit")), "{app:?}");
}

/// A process whose executable is "not found" although it is no zombie yet has exited (its memory
/// is freed before it becomes one): gone, also while `stat` still says it runs (1 flow in a run
/// of 53 short-lived processes was `source: proc` without exe or command line: found by an
/// adversarial pass). A kernel thread has no executable and is not gone; a permission error
/// says nothing of the kind.
#[test]
fn an_executable_not_found_outside_a_kernel_thread_means_the_process_exited() {
    let not_found = || Err(procfs::ProcError::NotFound(None));
    assert!(exited_while_read(&not_found(), 0x0040_0040, || true));
    assert!(!exited_while_read(&not_found(), PF_KTHREAD | 0x40, || true));
    assert!(exited_while_read(&not_found(), PF_KTHREAD, || false));
    assert!(!exited_while_read(&Err(procfs::ProcError::PermissionDenied(None)), 0, || true));
    assert!(exited_while_read(&Err(procfs::ProcError::PermissionDenied(None)), 0, || false));
    assert!(!exited_while_read(&Ok("/usr/bin/true".into()), 0, || false));
    // kthreadd (pid 2): its executable is not found, and it is alive.
    let kthreadd = Process::new(2).unwrap();
    let stat = kthreadd.stat().unwrap();
    assert!(stat.flags & PF_KTHREAD != 0, "{:x}", stat.flags);
    assert!(!exited_while_read(&kthreadd.exe(), stat.flags, || kthreadd.is_alive()));
}

/// A process that exits while it is read (alive at its `stat`, a zombie by the time its
/// executable is read) is what the kernel recorded too, not a /proc read with no executable
/// (3 of 20 short-lived processes were `source: proc` without exe or command line: found by an
/// adversarial pass).
#[test]
fn a_process_that_exits_while_it_is_read_is_a_gone_process() {
    let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id();
    let p = Process::new(i32::try_from(pid).unwrap()).unwrap();
    let alive = p.stat().unwrap();
    assert_ne!(alive.state, 'Z');
    child.kill().unwrap();
    for _ in 0..200 {
        if p.stat().is_ok_and(|s| s.state == 'Z') {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut ids = Identities::new(AppRules::default(), Clock::now());
    let read = ids.read_process(&p, &alive, pid, 0, ("sleep", "sleep"), (0, false)).map(|a| a.name.clone());
    let _ = child.wait();
    assert!(matches!(read, Err(Miss::Gone)), "{read:?}");
}

#[test]
fn non_utf8_arguments_keep_the_command_line_and_its_argument_boundaries() {
    use std::{ffi::OsStr, os::unix::ffi::OsStrExt as _, process::Command};
    let args: [&[u8]; 6] = [b"-c", b"sleep 30; :", b"x\xff\x1b]0;t\x07", b"a b", b"", b"end"];
    let mut child = Command::new("sh").args(args.map(OsStr::from_bytes)).spawn().unwrap();
    let p = Process::new(i32::try_from(child.id()).unwrap()).unwrap();
    // The spawn returns when exec is past its point of no return, before the kernel has set up
    // the new arguments: until then the command line reads empty.
    let mut line = None;
    for _ in 0..200 {
        line = cmdline(&p).0;
        if line.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let line = line.expect("a command line, although one argument is not UTF-8");
    assert_eq!(line, r"sh -c $'sleep 30; :' $'x\xFF\e]0;t\a' $'a b' '' end");
    // bash reads it back as the same arguments.
    let out = Command::new("bash").arg("-c").arg(format!("printf '%s\\0' {line}")).output().unwrap();
    let expected: Vec<u8> = [b"sh".as_slice()].iter().chain(&args).flat_map(|a| a.iter().copied().chain([0])).collect();
    assert_eq!(out.stdout, expected);
}

#[test]
fn process_with_a_non_utf8_name_keeps_its_uid_exe_and_command_line() {
    use std::{
        ffi::OsStr,
        fs,
        os::unix::{ffi::OsStrExt as _, fs::PermissionsExt as _, process::CommandExt as _},
        process::Command,
    };
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join(OsStr::from_bytes(b"sl\xffp"));
    fs::copy("/bin/sleep", &exe).unwrap();
    let mut command = Command::new(&exe);
    command.arg("30");
    // As root (CI), run it as another user, so a fallback to uid 0 cannot pass.
    let uid = if nix::unistd::geteuid().is_root() { 4242 } else { nix::unistd::getuid().as_raw() };
    if nix::unistd::geteuid().is_root() {
        command.uid(uid);
    }
    let mut child = spawn_copy(&mut command);
    let pid = child.id();
    assert!(Process::new(i32::try_from(pid).unwrap()).unwrap().status().is_err(), "procfs cannot read its status");
    let clock = Clock::now();
    let mut ids = Identities::new(AppRules::default(), clock);
    // The kernel's record of its name (`sl\xffp`, as the tracker writes it).
    let socket = Owner { comm: crate::escape::utf8_or_hex(b"sl\xffp").into(), ..owner(pid) };
    let mut app = ids.app_for(&socket, clock.wall(Clock::boot_ns()));
    for _ in 0..200 {
        if app.cmdline.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10)); // exec still setting up
        ids = Identities::new(AppRules::default(), clock);
        app = ids.app_for(&socket, clock.wall(Clock::boot_ns()));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(app.source, AppSource::Proc);
    assert_eq!(app.uid, uid);
    assert_eq!(app.name, "sl\\xffp");
    let dir = dir.path().to_str().unwrap();
    assert_eq!(app.exe.as_deref(), Some(format!("{dir}/sl\\xffp").as_str()));
    assert_eq!(app.cmdline.as_deref(), Some(format!("$'{dir}/sl\\xFFp' 30").as_str()));
}

/// A gone process costs one /proc lookup: its later records share the kernel-data app, for
/// sockets created before it was found gone (a later socket of that pid is another process).
#[test]
fn records_of_a_gone_process_share_one_kernel_data_app() {
    let clock = Clock::now();
    let mut ids = Identities::new(AppRules::default(), clock);
    let mut child = std::process::Command::new("true").spawn().unwrap();
    child.wait().unwrap();
    let (pid, before) = (child.id(), clock.wall(Clock::boot_ns()));
    let first = ids.app_for(&owner(pid), before);
    assert_eq!((first.source, first.name.as_str(), first.pid), (AppSource::Kernel, "gone-proc", pid));
    let again = ids.app_for(&owner(pid), before);
    assert!(Arc::ptr_eq(&first, &again), "the second record takes the remembered app");
    let mut renamed = owner(pid);
    renamed.comm = "other".into();
    let other = ids.app_for(&renamed, before);
    assert_eq!((other.name.as_str(), Arc::ptr_eq(&first, &other)), ("other", false));
    let later = ids.app_for(&owner(pid), clock.wall(Clock::boot_ns() + 10_000_000_000));
    assert!(!Arc::ptr_eq(&first, &later), "a socket created after the check is looked up again");
    assert_eq!((ids.stats.from_kernel, ids.stats.from_proc), (4, 0));
}

/// In a PID namespace of its own the daemon's /proc shows other pids than the kernel records (an
/// adversarial pass: a host process was charged to a `sleep` of the daemon's namespace with the
/// same pid): every app comes from the kernel's record, once per process.
#[test]
fn without_proc_every_app_is_the_kernels_record() {
    let clock = Clock::now();
    let mut ids = Identities::new(AppRules::default(), clock).without_proc();
    let stat = procfs::process::Process::myself().unwrap().stat().unwrap();
    let me = Owner {
        comm: stat.comm.as_str().into(),
        start_cs: start_cs_of_ticks(stat.starttime),
        exec_mark: 0,
        ..owner(std::process::id())
    };
    let now = clock.wall(Clock::boot_ns());
    ids.observe(me.tgid, Clock::boot_ns(), &me.comm, me.start_cs, me.exec_mark);
    let app = ids.app_for(&me, now);
    assert_eq!((app.source, app.exe.as_deref(), app.name.as_str()), (AppSource::Kernel, None, stat.comm.as_str()));
    assert!(Arc::ptr_eq(&app, &ids.app_for(&me, now)), "made once per process");
    assert_eq!((ids.stats.from_proc, ids.stats.from_kernel), (0, 2));
}

#[test]
fn socket_older_than_the_process_holding_its_pid_falls_back_to_kernel_data() {
    let clock = Clock::now();
    let rules =
        AppRules::compile(&[AppRule { name: "grouped".into(), uid: vec![4242], ..AppRule::default() }]).unwrap();
    let mut ids = Identities::new(rules, clock);
    // A socket "created" at boot time 1 s: this test process started later, so a pid match
    // must not charge the socket to it.
    let app = ids.app_for(&owner(std::process::id()), clock.wall(1_000_000_000));
    assert_eq!(app.source, AppSource::Kernel);
    assert_eq!(app.name, "grouped", "rules apply to kernel-only identities too");
    assert_eq!(ids.stats.from_kernel, 1);
    let gone = ids.app_for(&owner(u32::MAX - 1), clock.wall(Clock::boot_ns()));
    assert_eq!((gone.source, gone.name.as_str()), (AppSource::Kernel, "grouped"));
}

#[test]
fn android_app_uids_are_named_by_their_package_unless_a_rule_names_them() {
    let clock = Clock::now();
    let packages = Packages::parse(
        "com.zhiliaoapp.musically 10123 0 /data/user/0/com.zhiliaoapp.musically default 3003\n\
         com.android.shell 2000 0 /data/user_de/0/com.android.shell platform none\n",
    );
    let mut ids = Identities::new(AppRules::default(), clock).with_android(packages.clone());
    let gone = |uid: u32| Owner {
        tgid: u32::MAX - 1,
        pid: u32::MAX - 1,
        uid,
        gid: uid,
        comm: "Binder:123_4".into(),
        cgroup_id: 0,
        source: OwnerSource::SockCreate,
        start_cs: 0,
        exec_mark: 0,
    };
    let now = clock.wall(Clock::boot_ns());
    let tiktok = ids.app_for(&gone(10_123), now);
    assert_eq!(tiktok.name, "com.zhiliaoapp.musically");
    let android = tiktok.android.as_ref().expect("android identity");
    assert_eq!((android.package.as_deref(), android.user_id, android.app_id), (Some(tiktok.name.as_str()), 0, 10_123));
    let work = ids.app_for(&gone(1_010_123), now);
    assert_eq!(work.name, "com.zhiliaoapp.musically", "second user");
    assert_eq!(work.android.as_ref().map(|a| (a.user_id, a.app_id)), Some((10, 10_123)));
    let sandbox = ids.app_for(&gone(20_123), now);
    assert_eq!(sandbox.android.as_ref().map(|a| a.kind), Some(UidKind::SdkSandbox));
    assert_eq!(sandbox.name, "com.zhiliaoapp.musically", "an SDK sandbox is charged to its app's package");
    let system = ids.app_for(&gone(2000), now);
    assert_eq!(system.name, "Binder:123_4", "system uids keep their process name");
    assert_eq!(system.android, None);
    assert_eq!(ids.app_for(&gone(10_124), now).name, "Binder:123_4", "unknown app id");
    let rules =
        AppRules::compile(&[AppRule { name: "tiktok".into(), uid: vec![10_123], ..AppRule::default() }]).unwrap();
    let mut ids = Identities::new(rules, clock).with_android(packages.clone());
    assert_eq!(ids.app_for(&gone(10_123), now).name, "tiktok");
    let rules = AppRules::compile(&[AppRule {
        name: "tiktok".into(),
        package: vec!["com.zhiliaoapp.*".into()],
        ..AppRule::default()
    }])
    .unwrap();
    let mut ids = Identities::new(rules, clock).with_android(packages);
    let app = ids.app_for(&gone(1_010_123), now);
    assert_eq!(app.name, "tiktok", "package rule");
    assert_eq!(app.android.as_ref().and_then(|a| a.package.as_deref()), Some("com.zhiliaoapp.musically"));
}

#[test]
fn flow_without_any_owner_gets_a_clear_app_name_not_an_empty_one() {
    let clock = Clock::now();
    let mut ids = Identities::new(AppRules::default(), clock);
    let nobody = Owner {
        tgid: 0,
        pid: 0,
        uid: 0,
        gid: 0,
        comm: "".into(),
        cgroup_id: 0,
        source: OwnerSource::Unknown,
        start_cs: 0,
        exec_mark: 0,
    };
    let app = ids.app_for(&nobody, clock.wall(Clock::boot_ns()));
    assert_eq!((app.name.as_str(), app.source), (UNKNOWN_APP, AppSource::Kernel));
}

/// A program run from memory (`memfd_create`, exec'd through `/proc/self/fd`): the kernel shows
/// `/memfd:<name> (deleted)` as its executable, and its app is `memfd:<name>`, not the file name
/// the program gave its memory (an adversarial pass: a memfd named `usr/sbin/sshd` was the app
/// `sshd`, grouped with the real one).
#[test]
fn a_program_run_from_memory_is_named_after_its_memory_file() {
    use std::io::Write as _;
    assert_eq!(name_of_executable("/usr/sbin/sshd", false), "sshd");
    assert_eq!(name_of_executable("memfd:usr/sbin/sshd", true), "memfd:usr/sbin/sshd");
    // A file on disk under a directory named `/memfd:` is named as any other.
    assert_eq!(name_of_executable("/memfd:usr/sbin/sshd", false), "sshd");
    assert!(!run_from_memory(std::path::Path::new("/memfd:x")), "no ` (deleted)`: a file");
    assert!(run_from_memory(std::path::Path::new("/memfd:x (deleted)")));
    let memfd = nix::sys::memfd::memfd_create("usr/sbin/mon-memfd", nix::sys::memfd::MFdFlags::empty()).unwrap();
    let mut file = std::fs::File::from(memfd);
    file.write_all(&std::fs::read("/bin/sleep").unwrap()).unwrap();
    use std::os::fd::AsRawFd as _;
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    let mut child = spawn_copy(std::process::Command::new(&path).arg("30"));
    let pid = child.id();
    // Until the child has exec'd, it is a copy of this test (its thread's name).
    let exe = || std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    for _ in 0..200 {
        if exe().as_os_str().as_encoded_bytes().starts_with(b"/memfd:") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    let clock = Clock::now();
    let me = Owner { comm: comm.trim_end().into(), ..owner(pid) };
    let app = Identities::new(AppRules::default(), clock).app_for(&me, clock.wall(Clock::boot_ns()));
    // Rules see `memfd:<name>` too: a pattern for paths does not take the memory file (a
    // review: `*/sbin/mon-memfd` did), one for memory files does.
    let rule = |name: &str, exe: &str| AppRule { name: name.into(), exe: vec![exe.into()], ..AppRule::default() };
    let ruled = |rules: &[AppRule]| {
        let rules = AppRules::compile(rules).expect("rules");
        Identities::new(rules, clock).app_for(&me, clock.wall(Clock::boot_ns())).name.clone()
    };
    let by_path = ruled(&[rule("on-disk", "*/sbin/mon-memfd")]);
    let by_memory = ruled(&[rule("in-memory", "memfd:*")]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(app.source, AppSource::Proc, "{app:?}");
    assert_eq!((app.name.as_str(), app.exe.as_deref()), ("memfd:usr/sbin/mon-memfd", Some("memfd:usr/sbin/mon-memfd")));
    assert_eq!((by_path.as_str(), by_memory.as_str()), ("memfd:usr/sbin/mon-memfd", "in-memory"));
}

/// The cache stays within its byte budget with long command lines (a review: 65,536 entries of
/// JVM-sized command lines took about a gigabyte), dropping the oldest entries, and its count of
/// bytes goes back to what the remaining entries take.
#[test]
fn long_command_lines_keep_the_cache_within_its_byte_budget() {
    let mut ids = Identities::new(AppRules::default(), Clock::now());
    let entry = |pid: u32| Cached {
        start_ns: u64::from(pid),
        app: Arc::new(App {
            cmdline: Some("x".repeat(MAX_CMDLINE)),
            pid,
            ..(*crate::journal::tests::fixtures::app(&format!("java{pid}"))).clone()
        }),
        exe: None,
        exe_checked_ns: 0,
        comms: foldhash::HashSet::default(),
        exec_mark: 0,
        randomized: false,
    };
    let per_entry = entry(1).cost();
    assert!(per_entry > MAX_CMDLINE, "{per_entry}");
    let inserted = 2 * MAX_CACHE_BYTES / per_entry;
    for pid in 1..=u32::try_from(inserted).expect("pids") {
        ids.insert(pid, entry(pid));
    }
    let kept: usize = ids.cache.values().map(Vec::len).sum();
    assert!(ids.bytes <= MAX_CACHE_BYTES, "{} bytes", ids.bytes);
    assert_eq!(ids.bytes, ids.cache.values().flatten().map(Cached::cost).sum::<usize>());
    assert!(ids.bytes + 2 * per_entry > MAX_CACHE_BYTES, "as many as fit: {kept} of {inserted}");
    assert!(ids.cache.contains_key(&u32::try_from(inserted).expect("pid")), "the newest kept");
    assert!(!ids.cache.contains_key(&1), "the oldest dropped");
}
