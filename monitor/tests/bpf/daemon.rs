//! The real `monitor` binary, run as a user would: `monitor run --json --cgroup <test cgroup>`.
//! `MONITOR_BIN` (e.g. `target/dist/x86_64/monitor`, from `cargo xtask dist`) replaces the binary
//! cargo built for this test run.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use monitor::tracker::{FlowRecord, record::RecordKind};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;

/// The monitor binary under test: `MONITOR_BIN` when set (a static build), else the one cargo
/// built with this test binary.
pub fn monitor_bin() -> PathBuf {
    std::env::var_os("MONITOR_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_monitor")), PathBuf::from)
}

/// A running monitor, with its own journal and export directory in a temporary directory.
pub struct Monitor {
    child: Child,
    lines: mpsc::Receiver<Value>,
    collected: Vec<Value>,
    stderr: Option<thread::JoinHandle<String>>,
    dir: tempfile::TempDir,
}

/// A test that panics must not leave its daemon running (it would hold the root-test lock and
/// keep its programs attached): kill it on drop unless it has already exited.
impl Drop for Monitor {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Everything the monitor printed.
pub struct Output {
    pub records: Vec<FlowRecord>,
    /// Every `flow` line as printed (with `app` and `destination`).
    pub flows: Vec<Value>,
    pub stats: Value,
    /// Degradations the monitor announced in its `started` line (snake_case names).
    pub degradations: Vec<String>,
    pub log: String,
    /// Holds the journal (`journal.db`), the config (`monitor.toml`) and exports (`reports/`).
    pub dir: tempfile::TempDir,
}

impl Output {
    /// Records with `event = close`.
    pub fn closed(&self) -> Vec<&FlowRecord> {
        self.records.iter().filter(|r| r.event == RecordKind::Close).collect()
    }

    /// `monitor report --format json` over this run's whole journal.
    pub fn report_json(&self) -> Value {
        let report = Command::new(monitor_bin())
            .args(["report", "--format", "json", "--since", "2000-01-01T00:00:00Z", "--until", "2100-01-01T00:00:00Z"])
            .arg("--journal")
            .arg(self.dir.path().join("journal.db"))
            .output()
            .unwrap();
        assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stderr));
        serde_json::from_slice(&report.stdout).unwrap()
    }

    /// Asserts the completeness counters: nothing lost, every event received and decoded.
    pub fn assert_nothing_lost(&self) {
        let s = &self.stats;
        let k = &s["kernel"];
        assert_eq!(k["events_lost"], 0, "events lost: {s}");
        assert_eq!(s["decode_errors"], 0, "decode errors: {s}");
        assert_eq!(k["events_submitted"], s["events_received"], "submitted != received: {s}");
        assert_eq!(k["storage_failures"], 0, "storage failures: {s}");
        assert!(s["last"].as_bool().unwrap(), "final statistics missing: {s}");
    }
}

/// Config of a test monitor: journal and exports in `dir`, flushed every second, plus `extra`.
pub fn config_text(dir: &Path, extra: &str) -> String {
    format!(
        "[journal]\npath = \"{}\"\nflush_interval_secs = 1\n\n[report]\nexport_dir = \"{}\"\n\n{extra}\n",
        dir.join("journal.db").display(),
        dir.join("reports").display()
    )
}

impl Monitor {
    /// Starts the monitor on `cgroup` and waits until its programs are attached.
    pub fn start(cgroup: &Path, extra_config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(cgroup, dir, extra_config)
    }

    /// Like [`Monitor::start`], on an existing directory (journal kept from an earlier run).
    pub fn start_in(cgroup: &Path, dir: tempfile::TempDir, extra_config: &str) -> Self {
        let text = config_text(dir.path(), extra_config);
        Self::start_raw(cgroup, dir, &text)
    }

    /// Starts with exactly this config text (written to `dir/monitor.toml`).
    pub fn start_raw(cgroup: &Path, dir: tempfile::TempDir, config_text: &str) -> Self {
        Self::start_under(cgroup, dir, config_text, &[], &[])
    }

    /// Like [`Monitor::start_raw`], run through `wrapper` (e.g. `setpriv --bounding-set …`: its
    /// last word is followed by the monitor's path), with `env` added.
    pub fn start_under(
        cgroup: &Path,
        dir: tempfile::TempDir,
        config_text: &str,
        wrapper: &[String],
        env: &[(&str, String)],
    ) -> Self {
        let config = dir.path().join("monitor.toml");
        std::fs::write(&config, config_text).unwrap();
        let mut command = match wrapper.split_first() {
            None => Command::new(monitor_bin()),
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(monitor_bin());
                c
            }
        };
        command.envs(env.iter().map(|(k, v)| (k, v)));
        let mut child = command
            .arg("--config")
            .arg(&config)
            .args(["run", "--json", "--cgroup"])
            .arg(cgroup)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_LOG", std::env::var("MONITOR_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("monitor printed {line:?}: {e}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let mut m = Self { child, lines: rx, collected: Vec::new(), stderr: Some(stderr), dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match m.lines.recv_timeout(left) {
                Ok(v) if v["type"] == "started" => {
                    m.collected.push(v);
                    break;
                }
                Ok(v) => m.collected.push(v),
                Err(_) => {
                    let _ = m.child.kill();
                    let log = m.stderr_log();
                    panic!("monitor did not start within 20 s; log:\n{log}");
                }
            }
        }
        m
    }

    fn stderr_log(mut self) -> String {
        self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default()
    }

    /// Kills the daemon with SIGKILL (no shutdown at all) and returns its directory.
    pub fn kill9(self) -> tempfile::TempDir {
        self.kill9_with_output().0
    }

    /// Like [`Monitor::kill9`], also returning what the daemon logged and every line it printed
    /// (for a failing test's message).
    pub fn kill9_with_output(mut self) -> (tempfile::TempDir, String, Vec<Value>) {
        kill(self.pid(), Signal::SIGKILL).unwrap();
        let _ = self.child.wait();
        let mut printed = std::mem::take(&mut self.collected);
        // The reader ends at the end of the killed daemon's output, and with it this iterator.
        printed.extend(self.lines.iter());
        let log = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        (std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap()), log, printed)
    }

    /// The directory with the journal (`journal.db`) and the config (`monitor.toml`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Waits (up to 20 s) until the monitor has printed a flow line for which `matches` holds,
    /// keeping every line for [`Monitor::stop`]. Used to order a test's steps after the daemon's
    /// own processing (e.g. a reload) instead of sleeping.
    pub fn wait_for_flow(&mut self, matches: impl Fn(&Value) -> bool) {
        if self.collected.iter().any(|v| v["type"] == "flow" && matches(v)) {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self.lines.recv_timeout(left).unwrap_or_else(|_| panic!("no matching flow line within 20 s"));
            let found = v["type"] == "flow" && matches(&v);
            self.collected.push(v);
            if found {
                return;
            }
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap())
    }

    /// SIGINT, wait for a clean exit, and return what it printed.
    pub fn stop(self) -> Output {
        self.stop_with(Signal::SIGINT)
    }

    /// `signal`, wait for a clean exit, and return what it printed.
    pub fn stop_with(self, signal: Signal) -> Output {
        // Let close events of the last flows arrive (FIN exchanges on veth take microseconds).
        thread::sleep(Duration::from_millis(300));
        kill(self.pid(), signal).unwrap();
        self.stopped()
    }

    /// Whether the daemon still runs (a stop signal sent with [`Monitor::pid`] has not ended it).
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits (up to 20 s) for the daemon to exit after a stop signal sent with [`Monitor::pid`]
    /// and collects what it printed (as [`Monitor::stop_with`], which sends the signal too).
    pub fn stopped(self) -> Output {
        let (status, out) = self.exited();
        assert!(status.success(), "monitor exited with {status}; log:\n{}", out.log);
        out
    }

    /// As [`Monitor::stopped`], for a stop that may fail: its exit status and what it printed.
    pub fn exited(mut self) -> (std::process::ExitStatus, Output) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "monitor did not stop within 20 s of its stop signal");
            thread::sleep(Duration::from_millis(20));
        };
        while let Ok(v) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.collected.push(v);
        }
        let collected = std::mem::take(&mut self.collected);
        let dir = tempfile::tempdir().unwrap();
        let dir = std::mem::replace(&mut self.dir, dir);
        let log = self.stderr_log();
        if std::env::var_os("MONITOR_TEST_LOG").is_some() {
            eprintln!("--- monitor log ---\n{log}--- end of monitor log ---");
        }
        let mut records = Vec::new();
        let mut flows = Vec::new();
        let mut stats = Value::Null;
        let mut degradations = Vec::new();
        for v in collected {
            match v["type"].as_str() {
                Some("started") => {
                    degradations = v["degradations"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|d| d.as_str().map(str::to_string)).collect())
                        .unwrap_or_default();
                }
                Some("flow") => {
                    records.push(serde_json::from_value(v.clone()).unwrap());
                    flows.push(v);
                }
                Some("stats") => stats = v,
                _ => {}
            }
        }
        (status, Output { records, flows, stats, degradations, log, dir })
    }
}
