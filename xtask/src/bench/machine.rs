//! Description of the machine the figures were measured on.

use std::{fs, process::Command};

use serde::Serialize;

use crate::exec::output;

/// Machine description stored with the results.
#[derive(Debug, Serialize)]
pub struct Machine {
    /// `uname -r`.
    pub kernel: String,
    /// `uname -v` (build string).
    pub kernel_build: String,
    /// `uname -m`.
    pub arch: String,
    /// Online CPUs.
    pub cores: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// MemTotal in MiB.
    pub memory_mib: u64,
    /// `net.core.bpf_jit_enable` (1 = JIT on).
    pub bpf_jit_enable: String,
    /// 1-minute load average when the run started (other people's work on a shared machine).
    pub load_average_at_start: String,
    /// `git describe --always --dirty` of the checkout.
    pub commit: String,
}

fn trimmed(cmd: &mut Command) -> String {
    output(cmd).map(|s| s.trim().to_owned()).unwrap_or_default()
}

/// Reads the description.
pub fn describe() -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_owned()))
        .unwrap_or_else(|| "unknown".into());
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let read = |p: &str| fs::read_to_string(p).map(|s| s.trim().to_owned()).unwrap_or_default();
    Machine {
        kernel: trimmed(Command::new("uname").arg("-r")),
        kernel_build: trimmed(Command::new("uname").arg("-v")),
        arch: trimmed(Command::new("uname").arg("-m")),
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        cpu_model,
        memory_mib: memory_kib / 1024,
        bpf_jit_enable: read("/proc/sys/net/core/bpf_jit_enable"),
        load_average_at_start: read("/proc/loadavg").split_whitespace().next().unwrap_or("").to_owned(),
        commit: trimmed(
            Command::new("git").args(["describe", "--always", "--dirty"]).current_dir(crate::exec::workspace_root()),
        ),
    }
}

impl Machine {
    /// One line for the table header.
    pub fn summary(&self) -> String {
        format!(
            "Linux {} {}, {} cores ({}), {} MiB RAM, BPF JIT {}, commit {}",
            self.kernel, self.arch, self.cores, self.cpu_model, self.memory_mib, self.bpf_jit_enable, self.commit
        )
    }
}
