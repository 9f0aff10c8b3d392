//! `monitor exec --session NAME -- COMMAND…`: runs a command in a child cgroup of its own under
//! the watched cgroup and records that cgroup with a new session, so that only the flows of
//! sockets the command (and its children) create belong to the session, whatever else runs.
//!
//! Order: create `<watched>/monitor-session.<name>.<pid>`; record the session (start, cgroup id,
//! command); move this process into the cgroup; run the command (no shell) and wait; stop the
//! session with the command's exit code; move back and remove the cgroup (left in place, with a
//! warning, when processes of the command still live in it).

use std::{
    ffi::OsString,
    os::unix::{ffi::OsStrExt as _, fs::MetadataExt as _, process::ExitStatusExt as _},
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::Context as _;
use clap::Args;
use jiff::Timestamp;
use log::{error, info, warn};
use monitor::{
    escape,
    journal::{SessionCgroup, check_session_name, start_session, stop_session},
    probe::{cgroup2_mount, resolve_cgroup},
    settings::Settings,
};

/// Exit code when the command cannot be started (as `env` and shells use).
pub const CANNOT_RUN: u8 = 127;

/// `monitor exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// New session to record the command's flows under (must not exist yet). Example: --session build-42
    #[arg(long)]
    pub session: String,
    /// Watched cgroup to create the child cgroup in (default: the config's `cgroup`); use the one
    /// the daemon watches. Example: --cgroup system.slice
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
    /// Journal file (overrides `journal.path`). Example: --journal /var/lib/monitor/journal.db
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// The command and its arguments, run without a shell. Example: -- curl https://example.org
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// A cgroup step that failed; permission problems map to exit code 3.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} `{}` (monitor exec needs write access to the watched cgroup: run it as root)", path.display())]
pub struct CgroupError {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

impl CgroupError {
    /// Whether the process lacked the permission.
    pub fn denied(&self) -> bool {
        matches!(self.source.kind(), std::io::ErrorKind::PermissionDenied)
    }
}

/// Runs the command and returns its exit code (128 + signal when a signal ended it).
pub fn execute(args: ExecArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let ExecArgs { session, cgroup, journal, command } = args;
    check_session_name(&session)?;
    let journal = journal.unwrap_or_else(|| settings.journal.path.clone());
    warn_without_daemon(&journal);
    let watched = resolve_cgroup(cgroup.as_deref().unwrap_or(&settings.cgroup))?;
    warn_outside(&watched, settings);
    let dir = watched.join(format!("monitor-session.{session}.{}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|source| CgroupError { action: "create cgroup", path: dir.clone(), source })?;
    let result = run_in(&dir, &session, &journal, &command);
    if let Err(e) = std::fs::remove_dir(&dir) {
        warn!("cgroup left in place (processes of the command still in it?) path={} error={e}", dir.display());
    }
    result
}

fn run_in(dir: &Path, session: &str, journal: &Path, command: &[OsString]) -> anyhow::Result<ExitCode> {
    let id = std::fs::metadata(dir)
        .map_err(|source| CgroupError { action: "read cgroup", path: dir.to_path_buf(), source })?
        .ino();
    let words = escape::shell_words(command.iter().map(|a| a.as_bytes()));
    let record = SessionCgroup { id, path: dir.to_string_lossy().into_owned(), command: words.clone() };
    start_session(journal, session, Timestamp::now(), Some(&record))?;
    let moved = own_cgroup().and_then(|home| move_to(dir).map(|()| home).map_err(anyhow::Error::from));
    let home = match moved {
        Ok(home) => home,
        Err(e) => {
            // Never leave a session open that no command ran in.
            let _ = stop_session(journal, session, Timestamp::now(), None);
            return Err(e);
        }
    };
    info!("session started name={session} cgroup_id={id} command={}", escape::terminal(&words));
    // The terminal sends SIGINT to the command too: this process waits for it and records the end.
    if let Err(e) = ctrlc::set_handler(|| {}) {
        warn!("cannot ignore SIGINT while the command runs: {e}");
    }
    let (program, rest) = command.split_first().context("no command given")?;
    let status = run_forwarding(Command::new(program).args(rest));
    let moved_back = move_to(&home);
    let code = match &status {
        Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        Err(_) => i32::from(CANNOT_RUN),
    };
    let stopped = stop_session(journal, session, Timestamp::now(), Some(code));
    moved_back?;
    stopped?;
    if let Err(e) = status {
        error!("cannot run `{}`: {e}", escape::terminal(&words));
        return Ok(ExitCode::from(CANNOT_RUN));
    }
    info!("session stopped name={session} exit_code={code}");
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// Runs `command` and waits for it, passing on SIGTERM and SIGHUP sent to this process (a
/// service manager stopping it, `timeout`, a closed terminal): the command ends as it would
/// have without `monitor exec` in between, and the session still records its end and exit
/// code (the signals ended this process at once and left the session open, the command
/// running). SIGINT from a terminal reaches the command directly (its process group) and is
/// not passed on twice.
fn run_forwarding(command: &mut Command) -> std::io::Result<std::process::ExitStatus> {
    use signal_hook::{
        consts::{SIGHUP, SIGTERM},
        iterator::Signals,
    };
    // Registered before the command starts: a signal that comes meanwhile waits for it.
    let signals = Signals::new([SIGTERM, SIGHUP])
        .map_err(|e| warn!("cannot pass SIGTERM and SIGHUP on to the command: {e}"))
        .ok();
    let mut child = command.spawn()?;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let forwarder = signals.map(|mut signals| {
        let handle = signals.handle();
        let thread = std::thread::spawn(move || {
            for signal in signals.forever() {
                if let Ok(signal) = nix::sys::signal::Signal::try_from(signal) {
                    info!("passing {signal} on to the command");
                    let _ = nix::sys::signal::kill(pid, signal);
                }
            }
        });
        (handle, thread)
    });
    let status = child.wait();
    if let Some((handle, thread)) = forwarder {
        handle.close();
        let _ = thread.join();
    }
    status
}

/// Warns when `--cgroup` is outside the cgroup the config watches: a daemon started with this
/// config does not see it, and the session's report would be empty without saying why (found by
/// an adversarial pass).
fn warn_outside(cgroup: &Path, settings: &Settings) {
    if let Ok(configured) = resolve_cgroup(&settings.cgroup)
        && !cgroup.starts_with(&configured)
    {
        warn!(
            "`{}` is outside the cgroup the config watches (`{}`): a daemon started with this config does not see \
             the command's flows (give a cgroup under the one the daemon watches)",
            escape::terminal(&cgroup.display().to_string()),
            escape::terminal(&configured.display().to_string())
        );
    }
}

/// Warns when no daemon writes `journal`: the session is recorded, its flows are not (its report
/// would be empty without saying why).
fn warn_without_daemon(journal: &Path) {
    if !super::status::daemon_running(journal) {
        warn!(
            "no monitor daemon is running on the journal `{}`: the session is recorded, but only flows a running \
             daemon sees are (start `monitor run` first, watching this cgroup or one above it)",
            journal.display()
        );
    }
}

/// The cgroup v2 directory this process is in (`0::<path>` of /proc/self/cgroup).
fn own_cgroup() -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").context("cannot read /proc/self/cgroup")?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::")).context("no cgroup v2 entry in /proc/self/cgroup")?;
    Ok(cgroup2_mount()?.join(rel.trim_start_matches('/')))
}

/// Moves this process (every thread) into `dir`.
fn move_to(dir: &Path) -> Result<(), CgroupError> {
    let procs = dir.join("cgroup.procs");
    std::fs::write(&procs, std::process::id().to_string()).map_err(|source| CgroupError {
        action: "move into cgroup",
        path: procs,
        source,
    })
}
