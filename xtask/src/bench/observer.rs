//! The configurations compared: nothing watching, our monitor, and each peer. An observer is
//! started before the load, its CPU time is measured over the load window only (startup, e.g.
//! loading and verifying the kernel programs, is excluded), its peak resident memory (`VmHWM`)
//! over its whole life, and it is stopped with SIGINT so that it writes its final output.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::{
    env::{Cgroup, Netns, Place, Proc, wait_for_text},
    procstat::{self, Cpu, Resident},
};

/// A configuration of one comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Observer {
    /// Nothing watching (the baseline).
    None,
    /// `monitor run --output none --cgroup <load cgroup>` (as a service runs; records in its journal).
    Monitor,
    /// `nethogs -t` (Debian), pointed at the device carrying the load.
    Nethogs,
    /// `bandwhich --raw` (installed with `cargo install`), pointed at the device carrying the load.
    Bandwhich,
}

impl Observer {
    /// Every configuration, baseline first.
    pub const ALL: [Self; 4] = [Self::None, Self::Monitor, Self::Nethogs, Self::Bandwhich];

    /// Name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Monitor => "monitor",
            Self::Nethogs => "nethogs",
            Self::Bandwhich => "bandwhich",
        }
    }
}

/// Binaries the benchmarks run.
pub struct Tools {
    /// The release `monitor` binary.
    pub monitor: PathBuf,
    /// The release `xtask` binary (its hidden `bench-load` command is the load generator).
    pub load: PathBuf,
    /// Observers that could not be found, with the reason (they are reported as skipped).
    pub missing: Vec<(Observer, String)>,
    /// Scratch directory for outputs (target/bench/work).
    pub work: PathBuf,
}

impl Tools {
    /// Whether `o` can run here.
    pub fn available(&self, o: Observer) -> bool {
        !self.missing.iter().any(|(m, _)| *m == o)
    }

    /// The observers that can run, baseline first.
    pub fn configs(&self) -> Vec<Observer> {
        Observer::ALL.into_iter().filter(|o| self.available(*o)).collect()
    }
}

/// What an observer watches.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    /// cgroup holding the load (the monitor watches it).
    pub cgroup: &'a Cgroup,
    /// Namespace the peers run in (they see that namespace's devices and /proc/net).
    pub netns: &'a Netns,
    /// Device the peers capture on (`lo` or the veth end).
    pub device: &'a str,
    /// Config file for the monitor (`--config`); none: the built-in defaults.
    pub monitor_config: Option<&'a Path>,
}

/// Config file for the monitor in the churn and kernel benchmarks: `BENCH_MONITOR_CONFIG` (e.g.
/// one with `probe.copy_payloads = false`, for a before/after of the names capture), else none.
pub fn config_from_env() -> Option<PathBuf> {
    std::env::var_os("BENCH_MONITOR_CONFIG").map(PathBuf::from)
}

/// A running observer.
pub struct Running {
    observer: Observer,
    proc: Option<Proc>,
    /// Its output: the monitor's journal, a peer's stdout.
    pub output: PathBuf,
    started: Instant,
    cpu_start: Cpu,
}

/// What an observer cost over a load window.
#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    /// CPU time over the window.
    pub cpu: Cpu,
    /// Length of the window in seconds.
    pub window_s: f64,
    /// Peak resident memory since start (`VmHWM`), KiB.
    pub peak_rss_kib: u64,
    /// Resident memory by kind at the end of the window.
    pub resident: Resident,
    /// Whether it exited cleanly on SIGINT.
    pub clean_exit: bool,
}

impl Cost {
    /// Share of one core over the window, in percent.
    pub fn core_percent(&self) -> f64 {
        if self.window_s > 0.0 { 100.0 * self.cpu.total() / self.window_s } else { 0.0 }
    }
}

/// Starts `observer` on `target` and waits until it is watching.
pub fn start(observer: Observer, target: Target<'_>, tools: &Tools, tag: &str) -> anyhow::Result<Running> {
    start_observer(observer, target, tools, tag, false)
}

/// Starts the monitor with its empty calibration programs attached too
/// (`monitor_common::maps::programs::CALIBRATION_ENV`; see `kernel`).
pub fn start_with_calibration(target: Target<'_>, tools: &Tools, tag: &str) -> anyhow::Result<Running> {
    start_observer(Observer::Monitor, target, tools, tag, true)
}

fn start_observer(
    observer: Observer,
    target: Target<'_>,
    tools: &Tools,
    tag: &str,
    calibration: bool,
) -> anyhow::Result<Running> {
    // The monitor runs as a service does (`--output none`): its records go to a fresh journal
    // per sample in the work directory (figures do not depend on what earlier runs left, and the
    // benchmark never writes to the host's own journal), which is also what the benchmarks
    // check. Its log goes next to the journal. The peers print to a file.
    let (output, errors, stdout) = if observer == Observer::Monitor {
        let journal = tools.work.join(format!("{tag}-journal"));
        let _ = std::fs::remove_dir_all(&journal);
        std::fs::create_dir_all(&journal).with_context(|| format!("cannot create {}", journal.display()))?;
        (journal.join("journal.db"), journal.join("journal.err"), Stdio::null())
    } else {
        let output = tools.work.join(format!("{tag}-{}.out", observer.name()));
        let stdout = File::create(&output).with_context(|| format!("cannot create {}", output.display()))?;
        (output, tools.work.join(format!("{tag}-{}.err", observer.name())), stdout.into())
    };
    let stderr = File::create(&errors).with_context(|| format!("cannot create {}", errors.display()))?;
    let (mut cmd, place) = match observer {
        Observer::None => {
            return Ok(Running { observer, proc: None, output, started: Instant::now(), cpu_start: Cpu::default() });
        }
        Observer::Monitor => {
            let mut cmd = Command::new(&tools.monitor);
            if let Some(config) = target.monitor_config {
                cmd.arg("--config").arg(config);
            }
            cmd.args(["run", "--output", "none", "--journal"]).arg(&output);
            cmd.arg("--cgroup").arg(&target.cgroup.path).env("RUST_LOG", "info");
            if calibration {
                cmd.env(monitor_common::maps::programs::CALIBRATION_ENV, "1");
            }
            (cmd, Place::default())
        }
        Observer::Nethogs => {
            let mut cmd = Command::new("nethogs");
            // -t trace mode (text, no curses), -C TCP and UDP, -v 2 cumulative bytes, -a allow lo.
            cmd.args(["-t", "-C", "-v", "2", "-d", "1", "-a", target.device]);
            (cmd, Place { netns: Some(target.netns), cgroup: None })
        }
        Observer::Bandwhich => {
            let mut cmd = Command::new("bandwhich");
            // --no-resolve: no reverse DNS (the namespace has no route out anyway).
            cmd.args(["--raw", "--no-resolve", "--total-utilization", "--interface", target.device]);
            (cmd, Place { netns: Some(target.netns), cgroup: None })
        }
    };
    cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
    let mut proc = Proc::spawn(observer.name(), &mut cmd, place)?;
    match observer {
        Observer::Monitor => wait_for_text(&errors, "watching cgroup=", Duration::from_secs(30), &mut proc)
            .with_context(|| format!("monitor log in {}", errors.display()))?,
        // The peers print nothing until their first refresh; they open the capture device within
        // a few milliseconds. Give them a moment and make sure they did not fail.
        _ => {
            thread::sleep(Duration::from_millis(700));
            if let Some(status) = proc.child.try_wait()? {
                bail!("{} exited at start ({status}); see {}", observer.name(), errors.display());
            }
        }
    }
    let cpu_start = procstat::cpu(proc.pid()).unwrap_or_default();
    Ok(Running { observer, proc: Some(proc), output, started: Instant::now(), cpu_start })
}

impl Running {
    /// Process id (none for the baseline).
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// Waits until the monitor has worked off what the load left queued: until its CPU time
    /// grows by less than 5 % of a core over 200 ms, at most `max`. The load's records are then
    /// all handled before `SIGINT` (whose shutdown drain is bounded, so a backlog on a slow
    /// machine would otherwise be cut), and the window's CPU time covers every record. Peers and
    /// the baseline return at once. Returns how long it waited.
    pub fn settle(&self, max: Duration) -> Duration {
        let started = Instant::now();
        let (Observer::Monitor, Some(pid)) = (self.observer, self.pid()) else { return Duration::ZERO };
        let step = Duration::from_millis(200);
        let mut last = procstat::cpu(pid).map(Cpu::total);
        while started.elapsed() < max {
            thread::sleep(step);
            let now = procstat::cpu(pid).map(Cpu::total);
            match (last, now) {
                (Some(a), Some(b)) if b - a < 0.05 * step.as_secs_f64() => break,
                (_, None) => break,
                _ => last = now,
            }
        }
        started.elapsed()
    }

    /// Ends the window, stops the observer and returns its cost (`None` for the baseline).
    pub fn stop(mut self) -> anyhow::Result<(Option<Cost>, PathBuf)> {
        let Some(mut proc) = self.proc.take() else { return Ok((None, self.output)) };
        let pid = proc.pid();
        let window_s = self.started.elapsed().as_secs_f64();
        let cpu = procstat::cpu(pid).context("observer vanished before the end of the window")?.since(self.cpu_start);
        let peak_rss_kib = procstat::status_kib(pid, "VmHWM").unwrap_or(0);
        let resident = procstat::resident(pid).unwrap_or_default();
        proc.signal(nix::sys::signal::Signal::SIGINT);
        // The monitor emits every open flow and its final statistics on the way out. The peers
        // have printed their figures already; nethogs can take tens of seconds to notice SIGINT
        // after heavy churn, so they get a short grace before SIGKILL.
        let grace = if self.observer == Observer::Monitor { 60 } else { 3 };
        let clean_exit = proc.wait_timeout(Duration::from_secs(grace))?;
        if !clean_exit && self.observer == Observer::Monitor {
            eprintln!("bench: the monitor did not exit within {grace} s of SIGINT (killed)");
        }
        Ok((Some(Cost { cpu, window_s, peak_rss_kib, resident, clean_exit }), self.output))
    }
}

/// Removes a scratch file (outputs can be large; kept only with `BENCH_KEEP=1`); a monitor's
/// journal goes with its directory.
pub fn discard(path: &Path) {
    if std::env::var_os("BENCH_KEEP").is_none() {
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(path.with_extension("err"));
        if path.file_name().is_some_and(|n| n == "journal.db")
            && let Some(dir) = path.parent()
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
