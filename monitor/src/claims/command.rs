//! The alert command: run for every live alert with the alert as one JSON object on stdin (an
//! argument list, no shell), on a thread of its own behind a bounded queue, so a slow or hung
//! command never blocks the pipeline. A full queue drops the alert (counted, logged); a command
//! that outlives its timeout is killed; failures are logged.

use std::{
    io::Write as _,
    process::{Command, Stdio},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
        mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use log::{debug, warn};

use crate::{claims::MAX_ALERT_TIMEOUT_SECS, escape, journal::AlertRow};

/// Alerts waiting for the command; more are dropped (and counted).
pub const ALERT_QUEUE: usize = 64;
/// How often a running command is polled for its exit.
const POLL: Duration = Duration::from_millis(20);

/// The alert-command thread.
pub struct AlertCommand {
    tx: SyncSender<AlertRow>,
    /// Set by [`AlertCommand::stop`]: alerts still waiting after this instant are dropped.
    stop_by: Arc<OnceLock<Instant>>,
    timeout: Duration,
    dropped: Arc<AtomicU64>,
    thread: JoinHandle<()>,
}

impl AlertCommand {
    /// Starts the thread running `argv` (program first) with `timeout` per alert, at most
    /// [`MAX_ALERT_TIMEOUT_SECS`] (the config's range; a longer one is cut to it here too, so no
    /// caller can overflow the deadline).
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn spawn(argv: Vec<String>, timeout: Duration) -> std::io::Result<Self> {
        let timeout = timeout.min(Duration::from_secs(MAX_ALERT_TIMEOUT_SECS));
        let (tx, rx) = sync_channel::<AlertRow>(ALERT_QUEUE);
        let stop_by = Arc::new(OnceLock::new());
        let dropped = Arc::new(AtomicU64::new(0));
        let (stop, lost) = (Arc::clone(&stop_by), Arc::clone(&dropped));
        let thread = thread::Builder::new()
            .name("alert-command".into())
            .spawn(move || serve(&argv, timeout, &rx, &stop, &lost))?;
        Ok(Self { tx, stop_by, timeout, dropped, thread })
    }

    /// Queues an alert; never blocks (a full queue drops it).
    pub fn send(&self, alert: AlertRow) {
        match self.tx.try_send(alert) {
            Ok(()) => {}
            Err(TrySendError::Full(a) | TrySendError::Disconnected(a)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                warn!(
                    "alert command: queue full ({ALERT_QUEUE} waiting), alert not passed on claim={} destination={} \
                     dropped_total={n}",
                    a.claim, a.destination
                );
            }
        }
    }

    /// Alerts dropped so far.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Runs what waits for at most one more timeout (shutdown stays bounded), then drops the
    /// rest (counted) and ends the thread.
    pub fn stop(self) {
        let _ = self.stop_by.set(Instant::now() + self.timeout);
        drop(self.tx);
        if self.thread.join().is_err() {
            warn!("the alert-command thread panicked");
        }
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            warn!("alert command: {dropped} alerts were not passed on (queue full or shutdown)");
        }
    }
}

fn serve(
    argv: &[String],
    timeout: Duration,
    rx: &Receiver<AlertRow>,
    stop_by: &OnceLock<Instant>,
    dropped: &AtomicU64,
) {
    while let Ok(alert) = rx.recv() {
        if stop_by.get().is_some_and(|t| Instant::now() >= *t) {
            dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let mut json = Vec::new();
        if let Err(e) = escape::json::to_writer(&mut json, &alert) {
            warn!("alert command: cannot encode the alert claim={}: {e}", alert.claim);
            continue;
        }
        json.push(b'\n');
        let limit = stop_by.get().map_or(timeout, |t| t.saturating_duration_since(Instant::now()).min(timeout));
        if let Err(e) = run(argv, &json, limit) {
            warn!(
                "alert command {argv:?} failed claim={} destination={}: {}",
                alert.claim,
                alert.destination,
                crate::errors::chain(&e)
            );
        }
    }
}

/// Why one run of the alert command failed (logged).
#[derive(Debug, thiserror::Error)]
enum RunError {
    /// `alert_command` is empty.
    #[error("no command configured")]
    NoCommand,
    /// The program could not be started.
    #[error("cannot start it")]
    Start(#[source] std::io::Error),
    /// It ended unsuccessfully.
    #[error("it exited with {0}")]
    Exit(std::process::ExitStatus),
    /// It outlived the timeout.
    #[error("it ran longer than {0:?} and was killed")]
    Timeout(Duration),
    /// Its status could not be read.
    #[error("cannot wait for it")]
    Wait(#[source] std::io::Error),
}

/// Runs the command once with `input` on stdin; `Err` says why it failed.
fn run(argv: &[String], input: &[u8], timeout: Duration) -> Result<(), RunError> {
    let (program, args) = argv.split_first().ok_or(RunError::NoCommand)?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(RunError::Start)?;
    // An alert is far smaller than a pipe buffer: the write does not wait for the reader. A
    // command that ignores stdin closes the pipe: that is not an error.
    if let Some(mut stdin) = child.stdin.take()
        && let Err(e) = stdin.write_all(input)
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        debug!("alert command: writing stdin failed: {e}");
    }
    let deadline = Instant::now() + timeout;
    // The child's exit is awaited on its pidfd (readable once it exits), up to the deadline;
    // without one (a kernel before 5.3) its status is looked at every `POLL`.
    let pidfd = crate::sys::pidfd_open(child.id()).ok();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(RunError::Exit(status)),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::Timeout(timeout));
            }
            Ok(None) => exit_or(pidfd.as_ref(), deadline),
            Err(e) => return Err(RunError::Wait(e)),
        }
    }
}

/// Waits until the process of `pidfd` exits or `deadline` passes (at most `POLL` without a
/// pidfd, or when `poll` fails).
fn exit_or(pidfd: Option<&std::os::fd::OwnedFd>, deadline: Instant) {
    use std::os::fd::AsFd as _;

    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let left = deadline.saturating_duration_since(Instant::now());
    let Some(fd) = pidfd else {
        thread::sleep(POLL.min(left));
        return;
    };
    let timeout = PollTimeout::try_from(left.as_millis().saturating_add(1)).unwrap_or(PollTimeout::MAX);
    if poll(&mut [PollFd::new(fd.as_fd(), PollFlags::POLLIN)], timeout).is_err() {
        thread::sleep(POLL.min(left));
    }
}
