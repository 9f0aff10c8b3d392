//! The real `monitor` binary, run as a user would: `monitor run --json --cgroup <test cgroup>`.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    path::Path,
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

/// A running monitor.
pub struct Monitor {
    child: Child,
    lines: mpsc::Receiver<Value>,
    collected: Vec<Value>,
    stderr: thread::JoinHandle<String>,
}

/// Everything the monitor printed.
pub struct Output {
    pub records: Vec<FlowRecord>,
    pub stats: Value,
    pub log: String,
}

impl Output {
    /// Records with `event = close`.
    pub fn closed(&self) -> Vec<&FlowRecord> {
        self.records.iter().filter(|r| r.event == RecordKind::Close).collect()
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

impl Monitor {
    /// Starts the monitor on `cgroup` and waits until its programs are attached.
    pub fn start(cgroup: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_monitor"))
            .args(extra)
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
        let mut m = Self { child, lines: rx, collected: Vec::new(), stderr };
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

    fn stderr_log(self) -> String {
        self.stderr.join().unwrap_or_default()
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap())
    }

    /// SIGINT, wait for a clean exit, and return what it printed.
    pub fn stop(mut self) -> Output {
        // Let close events of the last flows arrive (FIN exchanges on veth take microseconds).
        thread::sleep(Duration::from_millis(300));
        kill(self.pid(), Signal::SIGINT).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "monitor did not stop within 20 s of SIGINT");
            thread::sleep(Duration::from_millis(20));
        };
        while let Ok(v) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.collected.push(v);
        }
        let collected = std::mem::take(&mut self.collected);
        let log = self.stderr_log();
        if std::env::var_os("MONITOR_TEST_LOG").is_some() {
            eprintln!("--- monitor log ---\n{log}--- end of monitor log ---");
        }
        assert!(status.success(), "monitor exited with {status}; log:\n{log}");
        let mut records = Vec::new();
        let mut stats = Value::Null;
        for v in collected {
            match v["type"].as_str() {
                Some("flow") => records.push(serde_json::from_value(v).unwrap()),
                Some("stats") => stats = v,
                _ => {}
            }
        }
        Output { records, stats, log }
    }
}
