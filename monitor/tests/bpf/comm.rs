//! A socket's `comm` is its process's name, and the process is read from /proc while it lives,
//! whichever thread made the socket and whatever the process calls itself since: against the
//! process the helper is, its executable and the bytes it moved.

use std::net::SocketAddr;

use serde_json::Value;

use crate::{
    cases::{CLIENT_UID, s, server_addr},
    daemon::{Monitor, Output, config_text},
    env::{Pair, Place, TestCgroup, spawn, spawn_program},
};

/// How the daemon under test has its kernel programs read the current task (the process's name,
/// start and program mark): as it chooses (through the kernel's BTF pointer to the task where the
/// kernel takes that), or with `bpf_probe_read_kernel` (`MONITOR_TASK_READS=probe`, the way it
/// falls back to where the kernel refuses the first).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reads {
    Chosen,
    Probe,
    /// A first load through BTF that the verifier refuses (`MONITOR_TASK_READS=refuse-btf`).
    Refused,
}

/// The daemon's log line when the task is read through BTF (`probe::load`).
const BTF_READS: &str = "read through the kernel's BTF pointer to the task";

/// Starts the monitor on `cg` reading the task as `reads` says.
fn start_reading(cg: &TestCgroup, reads: Reads) -> Monitor {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), "");
    let env = match reads {
        Reads::Chosen => vec![],
        Reads::Probe => vec![("MONITOR_TASK_READS", "probe".to_owned())],
        Reads::Refused => vec![("MONITOR_TASK_READS", "refuse-btf".to_owned())],
    };
    Monitor::start_under(&cg.path, dir, &text, &[], &env)
}

/// The daemon read the task as `reads` asked: through BTF when it chose (unless this kernel
/// refused that, which it says), with probe reads when told.
fn assert_read(out: &Output, reads: Reads) {
    let btf = out.log.contains(BTF_READS);
    match reads {
        Reads::Probe => assert!(!btf && out.log.contains("MONITOR_TASK_READS=probe"), "{}", out.log),
        Reads::Refused if out.log.contains("refuse-btf has no effect") => {
            eprintln!("NOTE: this kernel gives no task reads through BTF to refuse; the probe reads were tested");
        }
        // The refused load said so, and everything was loaded again with probe reads.
        Reads::Refused => assert!(
            out.log.contains("the kernel refused")
                && out.log.contains("loading again with the current task read through bpf_probe_read_kernel")
                && out.log.matches(BTF_READS).count() == 1,
            "{}",
            out.log
        ),
        Reads::Chosen if !btf && out.log.contains("reading the current task through BTF") => {
            eprintln!("NOTE: this kernel refused the task reads through BTF; the probe reads were tested");
        }
        Reads::Chosen => assert!(btf, "{}", out.log),
    }
}

/// A connection made by a named thread that ends right after `connect` (a pool's worker), used
/// by the main thread while the process runs on: it is the process's, read from /proc (its
/// executable), and its `comm` is the process's name (an adversarial pass: the app was named
/// after the thread, `source: kernel`, because no thread of that name ran when the process was
/// read; a claim by app name missed its bytes).
pub(crate) fn socket_of_an_ended_thread() {
    connection_of_a_renamed_creator("tcp-from-thread", 5217, "mon-threader", None, Reads::Chosen);
}

/// The same with the task read by `bpf_probe_read_kernel`, the way kernels that refuse the reads
/// through BTF take: the process's name is its main thread's.
pub(crate) fn socket_of_an_ended_thread_probe_reads() {
    connection_of_a_renamed_creator("tcp-from-thread", 5233, "mon-threader", None, Reads::Probe);
}

/// The same on a kernel that refuses the task reads through BTF (simulated: the first load reads
/// at an offset past `task_struct`, which every verifier refuses): the daemon loads everything
/// again with probe reads and attributes the connection as well (the fallback was untested).
pub(crate) fn socket_of_an_ended_thread_btf_refused() {
    connection_of_a_renamed_creator("tcp-from-thread", 5243, "mon-threader", None, Reads::Refused);
}

/// A program that renames its main thread right after connecting (as `setproctitle` does): its
/// connection, made under the name its exec gave it, is still read from /proc.
pub(crate) fn socket_then_rename() {
    let exe = std::env::current_exe().unwrap();
    let file = exe.file_name().unwrap().as_encoded_bytes().to_vec();
    let comm = String::from_utf8(file[..file.len().min(15)].to_vec()).unwrap();
    connection_of_a_renamed_creator("tcp-then-rename", 5218, &comm, None, Reads::Chosen);
}

/// The same, started by a link of another name (`python3` for `python3.11`): its connection,
/// made under the link's name, is still read from /proc (a re-check: 8 of 12 such processes
/// read `source: kernel`).
pub(crate) fn linked_then_rename() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("mon-linked");
    std::os::unix::fs::symlink(std::env::current_exe().unwrap(), &link).unwrap();
    connection_of_a_renamed_creator("tcp-then-rename", 5219, "mon-linked", Some(&link), Reads::Chosen);
}

/// A socket made by one program and connected by another of the same file name that the
/// process exec'd in between (a wrapper starting the real program; an adversarial pass: such a
/// socket was charged to the new program, read from /proc, its name being the socket's). The
/// kernel's mark of the program that made the socket tells the two apart: the socket is the
/// first program's as the kernel recorded it, not the second's. The monitor hears of the socket
/// only at its connection, after the exec, so it cannot read the first program from /proc.
pub(crate) fn exec_to_the_same_name() {
    exec_to_the_same_name_read(Reads::Chosen, 5220);
}

/// The same with the program mark read by `bpf_probe_read_kernel` (see [`Reads`]).
pub(crate) fn exec_to_the_same_name_probe_reads() {
    exec_to_the_same_name_read(Reads::Probe, 5234);
}

fn exec_to_the_same_name_read(reads: Reads, port: u16) {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let server = server_addr(&pair, false, 0, port);
    let send = 12_345usize;
    let mut srv = spawn("tcp-server", &[s(server), s(321), s(1)], Place { netns: Some(&pair.b), ..Place::default() });
    srv.line();
    let mon = start_reading(&cg, reads);
    // A link to this binary in another directory of its file system: another executable path
    // with the same file name.
    let exe = std::env::current_exe().unwrap();
    let dir = tempfile::tempdir_in(exe.parent().unwrap()).unwrap();
    let link = dir.path().join(exe.file_name().unwrap());
    std::fs::hard_link(&exe, &link).unwrap();
    let place = Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: None };
    let client = spawn("tcp-exec-same", &[s(server), s(send), link.display().to_string()], place);
    // The second program lives on while the monitor reads the process.
    let (line, out, f) = flow_of_a_lasting_client(client, srv, mon, server);
    let file = exe.file_name().unwrap().as_encoded_bytes();
    let comm = String::from_utf8(file[..file.len().min(15)].to_vec()).unwrap();
    assert_eq!((&f["app"]["pid"], &f["owner"]["comm"]), (&line["pid"], &comm.into()), "{f:#}");
    assert_eq!((&f["app"]["source"], &f["app"]["exe"]), (&"kernel".into(), &serde_json::Value::Null), "{f:#}");
    assert_eq!((&f["payload"]["tx_bytes"], &f["payload"]["rx_bytes"]), (&send.into(), &321.into()), "{f:#}");
    assert_read(&out, reads);
    out.assert_nothing_lost();
}

/// A launcher that listens and execs the server in its own process (`systemd-socket-activate`,
/// a server that re-execs itself): the connections the server accepts on the inherited listener
/// are the server's, read from /proc, not the launcher's (an adversarial pass: they were charged
/// to the program that made the listener, whose clone of the owner they carry).
pub(crate) fn accepted_after_an_exec() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let server = server_addr(&pair, false, 0, 5223);
    let mon = Monitor::start(&cg.path, "");
    let exe = std::env::current_exe().unwrap();
    let dir = tempfile::tempdir_in(exe.parent().unwrap()).unwrap();
    let served = dir.path().join("mon-served");
    std::fs::hard_link(&exe, &served).unwrap();
    let place = Place { netns: Some(&pair.b), cgroup: Some(&cg), uid: None };
    let mut srv = spawn("tcp-listen-exec", &[s(server), s(3_000), s(700), served.display().to_string()], place);
    srv.line();
    let mut client =
        spawn("tcp-hold-client", &[s(server), s(3_000), s(700)], Place { netns: Some(&pair.a), ..Place::default() });
    client.line();
    let served_line = srv.line();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    client.send("exit");
    client.finish();
    srv.send("exit");
    srv.finish();
    let out = mon.stop();
    let local: std::net::SocketAddr = served_line["local"].as_str().unwrap().parse().unwrap();
    let f = out
        .flows
        .iter()
        .find(|f| f["event"] == "close" && f["local"] == local.to_string() && !f["remote"].is_null())
        .unwrap_or_else(|| panic!("no closed accepted connection at {local}: {:#?}", out.flows));
    assert_eq!((&f["app"]["pid"], &f["app"]["source"]), (&served_line["pid"], &"proc".into()), "{f:#}");
    assert_eq!(
        (&f["app"]["exe"], &f["owner"]["comm"]),
        (&served.display().to_string().into(), &"mon-served".into()),
        "{f:#}"
    );
    assert_eq!((&f["payload"]["rx_bytes"], &f["payload"]["tx_bytes"]), (&3_000.into(), &700.into()), "{f:#}");
    out.assert_nothing_lost();
}

/// Runs helper `role` (a connection whose creating thread's name no thread has by the time the
/// monitor reads the process), through `program` if given, and checks its flow: charged to the
/// live process, read from /proc, with owner `comm`, exact bytes.
fn connection_of_a_renamed_creator(role: &str, port: u16, comm: &str, program: Option<&std::path::Path>, reads: Reads) {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let server = server_addr(&pair, false, 0, port);
    let send = 23_456usize;
    let mut srv = spawn("tcp-server", &[s(server), s(4_321), s(1)], Place { netns: Some(&pair.b), ..Place::default() });
    srv.line();
    let mon = start_reading(&cg, reads);
    let place = Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(CLIENT_UID) };
    let exe = std::env::current_exe().unwrap();
    let client = spawn_program(program.unwrap_or(&exe), role, &[s(server), s(send)], place);
    // The process lives on while the monitor reads it.
    let (line, out, f) = flow_of_a_lasting_client(client, srv, mon, server);
    assert_eq!(f["app"]["pid"], line["pid"], "{f:#}");
    assert_eq!((&f["app"]["source"], &f["owner"]["comm"]), (&"proc".into(), &comm.into()), "{f:#}");
    // The ids the kernel recorded (read through BTF or by the helpers): the process, the thread
    // that made the socket (another one than the main thread's for `tcp-from-thread`), its uid.
    assert_eq!((&f["owner"]["tgid"], &f["owner"]["uid"]), (&line["pid"], &CLIENT_UID.into()), "{f:#}");
    let by_thread = f["owner"]["pid"] != f["owner"]["tgid"];
    assert_eq!(by_thread, role == "tcp-from-thread", "{f:#}");
    assert_eq!(f["app"]["exe"], std::env::current_exe().unwrap().display().to_string(), "{f:#}");
    assert_eq!((&f["payload"]["tx_bytes"], &f["payload"]["rx_bytes"]), (&send.into(), &4_321.into()), "{f:#}");
    assert_read(&out, reads);
    out.assert_nothing_lost();
}

/// The client's first line, what the monitor printed and the flow to `server`, the client (which
/// lives on for 1.5 s after its line, while the monitor reads it) and the server finished.
fn flow_of_a_lasting_client(
    mut client: crate::env::Helper,
    srv: crate::env::Helper,
    mon: Monitor,
    server: std::net::SocketAddr,
) -> (serde_json::Value, crate::daemon::Output, serde_json::Value) {
    let line = client.line();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    client.send("exit");
    client.finish();
    srv.finish();
    let out = mon.stop();
    let f = closed_flow_to(&out, server).clone();
    (line, out, f)
}

/// A process that opens a connection, then `execve`s bash, which opens its own: one pid and one
/// start time, two programs. Each connection is charged to the program that made it (the
/// audit's case: the second was charged to the first program's name, executable and command
/// line).
pub(crate) fn execve_then_new_socket() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let (first, second) = (server_addr(&pair, false, 0, 5208), server_addr(&pair, false, 0, 5209));
    let send = 12_345usize;
    let b = Place { netns: Some(&pair.b), ..Place::default() };
    let mut srv1 = spawn("tcp-hold-server", &[s(first), s(send), s(0)], b);
    let mut srv2 = spawn("tcp-hold-server", &[s(second), s(send), s(0)], b);
    srv1.line();
    srv2.line();
    let mon = Monitor::start(&cg.path, "");
    let helper = spawn(
        "tcp-then-exec",
        &[s(first), s(second), s(send)],
        Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(CLIENT_UID) },
    );
    let line = helper.finish().remove(0);
    let pid = line["pid"].as_u64().unwrap();
    srv1.line();
    srv2.line();
    srv1.send("exit");
    srv2.send("exit");
    srv1.finish();
    srv2.finish();
    let out = mon.stop();
    let bash = std::process::Command::new("bash").args(["-c", "readlink -f \"$(command -v bash)\""]).output().unwrap();
    let bash = String::from_utf8(bash.stdout).unwrap().trim().to_owned();
    let (before, after) = (closed_flow_to(&out, first), closed_flow_to(&out, second));
    for f in [before, after] {
        assert_eq!(f["app"]["pid"], pid, "{f:#}");
        assert_eq!(f["payload"]["tx_bytes"], send, "{f:#}");
    }
    assert_eq!((&before["owner"]["comm"], &after["owner"]["comm"]), (&"mon-pre-exec".into(), &"bash".into()));
    assert_eq!((&after["app"]["name"], &after["app"]["exe"]), (&"bash".into(), &bash.clone().into()), "{after:#}");
    assert!(after["app"]["cmdline"].as_str().is_some_and(|c| c.starts_with("bash -c ")), "{after:#}");
    assert_ne!(before["app"]["exe"], after["app"]["exe"], "{before:#}");
    assert_eq!(before["app"]["exe"], std::env::current_exe().unwrap().display().to_string(), "{before:#}");
    out.assert_nothing_lost();
}

/// The `close` line of the flow to `server`.
fn closed_flow_to(out: &Output, server: SocketAddr) -> &Value {
    out.flows
        .iter()
        .find(|f| f["event"] == "close" && f["remote"] == server.to_string())
        .unwrap_or_else(|| panic!("no closed flow to {server}: {:#?}", out.flows))
}

/// A pid reused by another run of the same program (same name, same executable) after the
/// monitor had read the first from /proc: the second's connection is charged to the second
/// process (its start time and command line), not to the one that held the pid before. Fails
/// when the kernel's owners carry no process start (`TASK_START_BOOTTIME_OFFSET` 0): both
/// connections then show the first process's command line.
pub(crate) fn pid_reused_by_the_same_program() {
    use std::time::Duration;
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let (first, second) = (server_addr(&pair, false, 0, 5213), server_addr(&pair, false, 0, 5214));
    let b = Place { netns: Some(&pair.b), ..Place::default() };
    let mut srv1 = spawn("tcp-hold-server", &[s(first), s(1_111), s(0)], b);
    let mut srv2 = spawn("tcp-hold-server", &[s(second), s(2_222), s(0)], b);
    srv1.line();
    srv2.line();
    let mon = Monitor::start(&cg.path, "");
    let client = Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(CLIENT_UID) };
    let mut old = spawn("tcp-hold-client-on-go", &[s(first), s(1_111), s(0)], client);
    let pid = old.pid();
    old.send("go");
    old.line();
    // Long enough for the monitor to read the process from /proc while it runs.
    std::thread::sleep(Duration::from_millis(500));
    old.send("exit");
    old.finish();
    // The kernel hands out the pid after `ns_last_pid` next; another fork on the host may take it
    // first: try again (a helper waits for "go" before it makes any socket).
    let mut new = None;
    for _ in 0..50 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
        let h = spawn("tcp-hold-client-on-go", &[s(second), s(2_222), s(0)], client);
        if h.pid() == pid {
            new = Some(h);
            break;
        }
    }
    let mut new = new.unwrap_or_else(|| panic!("pid {pid} was not handed out again in 50 tries"));
    let start = procfs::process::Process::new(i32::try_from(pid).unwrap()).unwrap().stat().unwrap().starttime;
    new.send("go");
    new.line();
    std::thread::sleep(Duration::from_millis(500));
    new.send("exit");
    new.finish();
    for srv in [&mut srv1, &mut srv2] {
        srv.line();
        srv.send("exit");
    }
    srv1.finish();
    srv2.finish();
    let out = mon.stop();
    let (before, after) = (closed_flow_to(&out, first), closed_flow_to(&out, second));
    for (f, send) in [(before, 1_111), (after, 2_222)] {
        assert_eq!((&f["app"]["pid"], &f["app"]["source"]), (&pid.into(), &"proc".into()), "{f:#}");
        assert_eq!(f["payload"]["tx_bytes"], send, "{f:#}");
        let cmdline = f["app"]["cmdline"].as_str().unwrap_or_default();
        assert!(cmdline.ends_with(&format!(" {send} 0")), "its own command line: {f:#}");
    }
    assert_eq!(after["app"]["start_time"], start, "the new process's start: {after:#}");
    assert_ne!(before["app"]["start_time"], start, "{before:#}");
    out.assert_nothing_lost();
}
