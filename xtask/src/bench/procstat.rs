//! What a process costs, read from /proc: CPU time (`/proc/<pid>/stat`), peak and current
//! resident memory (`/proc/<pid>/status`), and resident memory split by kind (`/proc/<pid>/smaps`).

use std::fs;

use nix::unistd::{SysconfVar, sysconf};
use serde::Serialize;

/// CPU time used so far, in seconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Cpu {
    /// User mode.
    pub user_s: f64,
    /// Kernel mode (system calls, page faults; not BPF programs run in other tasks' context).
    pub system_s: f64,
}

impl Cpu {
    /// Change since `before`.
    pub fn since(self, before: Self) -> Self {
        Self { user_s: self.user_s - before.user_s, system_s: self.system_s - before.system_s }
    }

    /// User + system.
    pub fn total(self) -> f64 {
        self.user_s + self.system_s
    }
}

fn ticks_per_second() -> f64 {
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

/// CPU time of `pid` (all its threads), or `None` when it is gone.
pub fn cpu(pid: u32) -> Option<Cpu> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised comm (which may contain spaces): state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let hz = ticks_per_second();
    Some(Cpu { user_s: utime / hz, system_s: stime / hz })
}

/// A `kB` field of /proc/<pid>/status (`VmHWM`, `VmRSS`) in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resident memory of a process by kind, in KiB.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Resident {
    /// All resident pages (`VmRSS`).
    pub total_kib: u64,
    /// Anonymous pages (heap, stacks): what the goal is about.
    pub anon_kib: u64,
    /// File-backed pages other than databases (the binary, shared libraries).
    pub file_kib: u64,
    /// File-backed pages of memory-mapped geolocation databases (`*.mmdb`), reported separately.
    pub mmdb_kib: u64,
}

impl Resident {
    /// Resident memory less the memory-mapped databases.
    pub fn without_mmdb_kib(self) -> u64 {
        self.total_kib.saturating_sub(self.mmdb_kib)
    }
}

/// Splits the resident memory of `pid` by walking /proc/<pid>/smaps.
pub fn resident(pid: u32) -> Option<Resident> {
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let mut r = Resident::default();
    let mut path = String::new();
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if first.contains('-') && !first.ends_with(':') {
            // Mapping header: "start-end perms offset dev inode [path]".
            path = words.nth(4).unwrap_or("").to_owned();
            continue;
        }
        let value = || words.clone().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        match first {
            "Rss:" => {
                let kib = value();
                r.total_kib += kib;
                if path.ends_with(".mmdb") {
                    r.mmdb_kib += kib;
                }
            }
            "Anonymous:" => r.anon_kib += value(),
            _ => {}
        }
    }
    r.file_kib = r.total_kib.saturating_sub(r.anon_kib).saturating_sub(r.mmdb_kib);
    Some(r)
}

/// Machine-wide CPU time from the first line of /proc/stat, in clock ticks.
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineTicks {
    busy: u64,
    steal: u64,
    total: u64,
}

/// How busy the whole machine was over a sample (all cores together, 100 % = every core busy).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MachineLoad {
    /// Non-idle time, the load under test included.
    pub busy_percent: f64,
    /// Time the hypervisor gave to someone else (`steal`): a noisy neighbour.
    pub steal_percent: f64,
}

impl MachineTicks {
    /// Reads /proc/stat now.
    pub fn now() -> Self {
        let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
        let v: Vec<u64> =
            stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        // user nice system idle iowait irq softirq steal (guest time is already in user).
        let idle = at(3) + at(4);
        let steal = at(7);
        let total = (0..8).map(at).sum();
        Self { busy: total - idle - steal, steal, total }
    }

    /// CPU seconds the whole machine was busy since `self` (every core, steal left out).
    pub fn busy_seconds_since(self) -> f64 {
        Self::now().busy.saturating_sub(self.busy) as f64 / ticks_per_second()
    }

    /// Load since `self`.
    pub fn load_since(self) -> MachineLoad {
        let now = Self::now();
        let total = now.total.saturating_sub(self.total).max(1) as f64;
        MachineLoad {
            busy_percent: 100.0 * now.busy.saturating_sub(self.busy) as f64 / total,
            steal_percent: 100.0 * now.steal.saturating_sub(self.steal) as f64 / total,
        }
    }
}
