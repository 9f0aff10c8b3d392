//! What bounds the churn ratio on this machine, from the run's own figures: the machine's CPU per
//! exchange without and with the monitor, the daemon's share of it, and the ratio the rest would
//! still allow with the daemon at its goal. A closed-loop load that keeps every core busy turns
//! each microsecond the monitor spends per exchange into a lower rate; the note says so in
//! numbers, so that a missed ratio comes with its bottleneck.

/// One churn run's figures needed here.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// Exchanges completed.
    pub exchanges: u64,
    /// CPU seconds the whole machine was busy from the load's start until the monitor had worked
    /// off its queue (the load alone for runs without it).
    pub machine_busy_s: f64,
    /// Cores busy during the load (to tell whether the load was CPU-bound).
    pub load_busy_cores: f64,
    /// Monitor runs: the daemon's CPU seconds over the same span.
    pub daemon_cpu_s: Option<f64>,
}

impl Run {
    /// µs per exchange of `seconds`.
    fn per_exchange(&self, seconds: f64) -> Option<f64> {
        (self.exchanges > 0).then(|| 1e6 * seconds / self.exchanges as f64)
    }
}

/// Medians of the figures, µs per exchange.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// The machine's CPU per exchange without the monitor.
    pub none_us: f64,
    /// Cores busy without the monitor (≈ all of them: the load is CPU-bound).
    pub none_busy_cores: f64,
    /// The machine's CPU per exchange with the monitor, its catch-up after the load included.
    pub monitor_us: f64,
    /// The daemon's part of it.
    pub daemon_us: f64,
    /// The rest of the monitor's cost: its BPF programs, the kernel work they add (`monitor_us`
    /// − `none_us` − `daemon_us`, at least 0).
    pub kernel_us: f64,
    /// The best ratio with the daemon at `goal_us` per record and the kernel's share as measured.
    pub ratio_at_daemon_goal: f64,
    /// The whole monitor's CPU per exchange that the ratio goal allows.
    pub allowed_us: f64,
}

/// The budget from the runs without (`none`) and with the monitor, or `None` when either has no
/// usable run. `records_per_exchange`: flow records per exchange (both sides); `goal_us`: the
/// daemon's goal per record; `ratio_goal`: the churn ratio's goal.
pub fn of(none: &[Run], monitor: &[Run], records_per_exchange: f64, goal_us: f64, ratio_goal: f64) -> Option<Budget> {
    let median = |v: Vec<f64>| super::stats::Summary::of(&v).map(|s| s.median);
    let none_us = median(none.iter().filter_map(|r| r.per_exchange(r.machine_busy_s)).collect())?;
    let none_busy_cores = median(none.iter().map(|r| r.load_busy_cores).collect())?;
    let monitor_us = median(monitor.iter().filter_map(|r| r.per_exchange(r.machine_busy_s)).collect())?;
    let daemon_us = median(monitor.iter().filter_map(|r| r.per_exchange(r.daemon_cpu_s?)).collect())?;
    let kernel_us = (monitor_us - none_us - daemon_us).max(0.0);
    let ratio_at_daemon_goal = none_us / (none_us + kernel_us + records_per_exchange * goal_us);
    let allowed_us = none_us / ratio_goal - none_us;
    Some(Budget { none_us, none_busy_cores, monitor_us, daemon_us, kernel_us, ratio_at_daemon_goal, allowed_us })
}

impl Budget {
    /// The note printed under the churn table for protocol `p` ("tcp", "udp").
    pub fn note(&self, p: &str, records_per_exchange: f64, goal_us: f64, ratio_goal: f64) -> String {
        let Self { none_us, none_busy_cores, monitor_us, daemon_us, kernel_us, ratio_at_daemon_goal, allowed_us } =
            *self;
        format!(
            "{p} churn, what bounds the ratio (medians): without the monitor the load kept {none_busy_cores:.2} cores busy, \
             {none_us:.1} µs of CPU per exchange; with it the machine spent {monitor_us:.1} µs per exchange (until the daemon had worked off its queue): the daemon \
             {daemon_us:.1} µs ({records_per_exchange:.0} records of {:.1} µs), the monitor's BPF programs and the kernel \
             work they add {kernel_us:.1} µs. With that kernel share and the daemon at its goal of {goal_us} µs per record \
             the ratio could reach {ratio_at_daemon_goal:.2}; {ratio_goal} leaves {allowed_us:.1} µs per exchange for the \
             whole monitor{}. {}",
            daemon_us / records_per_exchange,
            if none_busy_cores < 0.9 * cores() {
                " (the load did not keep every core busy: this bound assumes it does)"
            } else {
                ""
            },
            self.closing(ratio_goal)
        )
    }

    /// What would let the ratio reach `ratio_goal`: the whole monitor's cost per exchange cut to
    /// what the goal allows (and whether the kernel share alone is already above it), or a load
    /// whose exchange costs enough CPU that the monitor's cost as measured is small beside it.
    fn closing(&self, ratio_goal: f64) -> String {
        let Self { none_us, monitor_us, kernel_us, allowed_us, .. } = *self;
        let cost = (monitor_us - none_us).max(0.0);
        if cost <= allowed_us {
            return format!("The monitor's {cost:.1} µs per exchange are within that.");
        }
        // none ÷ (none + cost) ≥ goal  ⇔  none ≥ cost × goal ÷ (1 − goal).
        let load_us = cost * ratio_goal / (1.0 - ratio_goal);
        let kernel = if kernel_us > allowed_us {
            format!(
                "; the kernel share alone is above it: a daemon costing nothing would read {:.2}",
                none_us / (none_us + kernel_us)
            )
        } else {
            String::new()
        };
        format!(
            "What would close it: the whole monitor at {allowed_us:.1} µs per exchange instead of {cost:.1}{kernel}; \
             or a machine where one exchange costs the load itself {load_us:.0} µs of CPU or more (here {none_us:.1}), \
             beside which the monitor's cost as measured would be small enough"
        )
    }
}

/// Where the daemon's CPU went in one run, from its closing log line (`cpu account: ...`, written
/// by the sink thread on its way out).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Account {
    /// CPU seconds of the sink thread (journal, identities, enrichment, names, buffering).
    pub sink_thread_s: f64,
    /// The part of it spent in journal flushes (SQLite).
    pub journal_flush_s: f64,
    /// Connection records those flushes wrote.
    pub journal_records: u64,
}

impl Account {
    /// The account in the monitor's log `log`, or `None` when the line is missing or malformed.
    pub fn from_log(log: &str) -> Option<Self> {
        let line = log.lines().rev().find(|l| l.contains("cpu account:"))?;
        let field = |name: &str| line.split_whitespace().find_map(|w| w.strip_prefix(name)?.strip_prefix('='));
        let account = Self {
            sink_thread_s: field("sink_thread_s")?.parse().ok()?,
            journal_flush_s: field("journal_flush_s")?.parse().ok()?,
            journal_records: field("journal_records")?.parse().ok()?,
        };
        (account.sink_thread_s.is_finite() && account.journal_flush_s.is_finite()).then_some(account)
    }

    /// µs per record of `seconds`.
    fn per_record(&self, seconds: f64) -> Option<f64> {
        (self.journal_records > 0).then(|| 1e6 * seconds / self.journal_records as f64)
    }
}

/// The note on where the daemon's `daemon_us` per record go (medians of `accounts`), against the
/// goal of `goal_us`; `None` without an account.
pub fn account_note(p: &str, daemon_us: f64, accounts: &[Account], goal_us: f64) -> Option<String> {
    let median = |v: Vec<f64>| super::stats::Summary::of(&v).map(|s| s.median);
    let journal = median(accounts.iter().filter_map(|a| a.per_record(a.journal_flush_s)).collect())?;
    let sink_rest =
        median(accounts.iter().filter_map(|a| a.per_record((a.sink_thread_s - a.journal_flush_s).max(0.0))).collect())?;
    let other = (daemon_us - journal - sink_rest).max(0.0);
    let bound = if journal >= goal_us {
        format!(
            "the journal's writes alone exceed the goal of {goal_us} µs: closing it needs a cheaper stored row per \
             record (BENCHMARKS.md, \"What the rows cost\")"
        )
    } else if daemon_us > goal_us {
        format!("the journal's writes are within the goal of {goal_us} µs; the rest of the daemon exceeds it")
    } else {
        format!("within the goal of {goal_us} µs")
    };
    Some(format!(
        "{p} churn, where the daemon's {daemon_us:.1} µs per record go (medians; journal and sink from its closing \
         `cpu account` log line, over its whole run; the rest of the load window's figure is its other threads): \
         {journal:.1} µs in journal flushes (SQLite: the `connection_rows` row and its indexes, the weekly \
         rollups, commit and checkpoint), {sink_rest:.1} µs in the rest of the sink thread (identities, enrichment, \
         names, buffering), {other:.1} µs in its other threads (ring-buffer drain, tracker); {bound}"
    ))
}

/// This machine's cores.
pub fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of 100,000 exchanges at `rate` per second on 2 busy cores; `daemon_us` per exchange.
    fn run(rate: f64, busy_cores: f64, daemon_us: Option<f64>) -> Run {
        let exchanges = 100_000;
        let machine_busy_s = busy_cores * exchanges as f64 / rate.max(f64::MIN_POSITIVE);
        Run {
            exchanges: if rate > 0.0 { exchanges } else { 0 },
            machine_busy_s,
            load_busy_cores: busy_cores,
            daemon_cpu_s: daemon_us.map(|u| u * exchanges as f64 / 1e6),
        }
    }

    #[test]
    fn the_bound_follows_from_the_machines_cpu_per_exchange() {
        // 2 cores at 50,000/s: 40 µs per exchange. With the monitor 2 cores at 30,000/s: 66.7 µs,
        // of which the daemon 20 µs (two records of 10 µs): 6.7 µs for the kernel side.
        let none = [run(50_000.0, 2.0, None), run(49_000.0, 2.0, None), run(51_000.0, 2.0, None)];
        let monitor = [run(30_000.0, 2.0, Some(20.0))];
        let b = of(&none, &monitor, 2.0, 3.0, 0.85).expect("figures");
        assert!((b.none_us - 40.0).abs() < 1e-9, "{b:?}");
        assert!((b.monitor_us - 66.666_666).abs() < 1e-3, "{b:?}");
        assert!((b.kernel_us - 6.666_666).abs() < 1e-3, "{b:?}");
        // 40 ÷ (40 + 6.67 + 6) = 0.759; 0.85 leaves 40 ÷ 0.85 − 40 = 7.06 µs.
        assert!((b.ratio_at_daemon_goal - 0.7595).abs() < 1e-3, "{b:?}");
        assert!((b.allowed_us - 7.0588).abs() < 1e-3, "{b:?}");
        let note = b.note("tcp", 2.0, 3.0, 0.85);
        assert!(note.contains("the daemon 20.0 µs (2 records of 10.0 µs)"), "{note}");
        assert!(note.contains("could reach 0.76"), "{note}");
        // The monitor costs 26.7 µs per exchange, 7.06 allowed; the kernel share (6.67) is
        // below that. 26.7 × 0.85 ÷ 0.15 = 151 µs per exchange of load would read 0.85.
        assert!(note.contains("at 7.1 µs per exchange instead of 26.7;"), "{note}");
        assert!(note.contains("costs the load itself 151 µs of CPU or more (here 40.0)"), "{note}");
        assert!(!note.contains("kernel share alone"), "{note}");
        // A kernel share above what the goal allows: said, with the ratio of a free daemon.
        let heavy = [run(25_000.0, 2.0, Some(20.0))];
        let note = of(&none, &heavy, 2.0, 3.0, 0.85).expect("figures").note("tcp", 2.0, 3.0, 0.85);
        // 80 µs with the monitor: kernel 20 µs, a free daemon reads 40 ÷ 60 = 0.67.
        assert!(
            note.contains("the kernel share alone is above it: a daemon costing nothing would read 0.67"),
            "{note}"
        );
        // A cheap monitor: within the goal, nothing to close.
        let cheap = [run(48_000.0, 2.0, Some(1.0))];
        let note = of(&none, &cheap, 2.0, 3.0, 0.85).expect("figures").note("tcp", 2.0, 3.0, 0.85);
        assert!(note.contains("are within that"), "{note}");
        assert!(!note.contains("What would close it"), "{note}");
    }

    #[test]
    fn the_daemons_closing_line_says_where_a_record_goes() {
        let log = "[INFO ] started\n[INFO ] cpu account: sink_thread_s=1.500000 journal_flush_s=1.000000 \
                   journal_records=200000 flushes=40 (per record: 5.00 us in journal flushes, 2.50 us in the rest)\n";
        let a = Account::from_log(log).expect("the line");
        assert_eq!(a, Account { sink_thread_s: 1.5, journal_flush_s: 1.0, journal_records: 200_000 });
        // 5 µs of journal and 2.5 µs of the rest of the sink per record, of 9 µs: 1.5 µs elsewhere.
        let note = account_note("tcp", 9.0, &[a], 3.0).expect("a note");
        assert!(note.contains("5.0 µs in journal flushes"), "{note}");
        assert!(note.contains("2.5 µs in the rest of the sink thread"), "{note}");
        assert!(note.contains("1.5 µs in its other threads"), "{note}");
        assert!(note.contains("alone exceed the goal"), "{note}");
        let cheap = Account { journal_flush_s: 0.2, ..a };
        let note = account_note("tcp", 9.0, &[cheap], 3.0).expect("a note");
        assert!(note.contains("the rest of the daemon exceeds it"), "{note}");
        assert_eq!(Account::from_log("[INFO ] cpu account: sink_thread_s=x"), None, "malformed");
        assert_eq!(Account::from_log("[INFO ] started"), None, "absent");
        assert_eq!(account_note("tcp", 9.0, &[], 3.0), None);
        let empty = Account { journal_records: 0, ..a };
        assert_eq!(account_note("tcp", 9.0, &[empty], 3.0), None, "no records, no figure per record");
    }

    #[test]
    fn no_monitor_figures_no_budget() {
        let none = [run(50_000.0, 2.0, None)];
        assert_eq!(of(&none, &[], 2.0, 3.0, 0.85), None);
        assert_eq!(of(&none, &[run(30_000.0, 2.0, None)], 2.0, 3.0, 0.85), None, "no daemon figure");
        assert_eq!(of(&[run(0.0, 2.0, None)], &[run(30_000.0, 2.0, Some(5.0))], 2.0, 3.0, 0.85), None, "no rate");
    }

    #[test]
    fn a_noisy_run_never_gives_the_kernel_a_negative_share() {
        let b = of(&[run(50_000.0, 2.0, None)], &[run(49_000.0, 2.0, Some(5.0))], 2.0, 3.0, 0.85).expect("figures");
        assert!(b.kernel_us.abs() < 1e-12, "{b:?}");
    }
}
