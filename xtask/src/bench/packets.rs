//! What bounds a per-packet figure of the kernel benchmark. The figure over the whole workload is
//! its phases' figures weighted by their runs, so when it misses its goal the note names each
//! phase's figure and share, the phase that costs most per packet (and the figure without it),
//! and what the phase with the largest share would have to cost for the whole to meet the goal.

/// One workload phase's per-packet figure on one hook (medians over the rounds).
#[derive(Debug, Clone, Copy)]
pub struct PhaseFigure<'a> {
    /// "iperf3 bulk transfer", "TCP churn", "UDP churn".
    pub name: &'a str,
    /// ns per run, net of the measurement floor.
    pub net_ns: f64,
    /// Runs of the program in the phase.
    pub runs: f64,
}

/// The note for `hook` when its figure over the whole workload, `whole_ns` (net), misses
/// `goal_ns`; `None` when it meets it or no phase has runs.
pub fn note(hook: &str, whole_ns: f64, goal_ns: f64, phases: &[PhaseFigure<'_>]) -> Option<String> {
    let phases: Vec<&PhaseFigure<'_>> = phases.iter().filter(|p| p.runs > 0.0 && p.net_ns.is_finite()).collect();
    let total: f64 = phases.iter().map(|p| p.runs).sum();
    if whole_ns <= goal_ns || total <= 0.0 {
        return None;
    }
    let share = |p: &PhaseFigure<'_>| p.net_ns * p.runs / total;
    let weighted: f64 = phases.iter().map(|p| share(p)).sum();
    let parts: Vec<String> = phases
        .iter()
        .map(|p| format!("{} {:.1} ns × {:.0} % of the runs", p.name, p.net_ns, 100.0 * p.runs / total))
        .collect();
    let costliest = phases.iter().max_by(|a, b| a.net_ns.total_cmp(&b.net_ns))?;
    let others: Vec<&&PhaseFigure<'_>> = phases.iter().filter(|p| p.name != costliest.name).collect();
    let others_runs: f64 = others.iter().map(|p| p.runs).sum();
    let without = if others_runs > 0.0 {
        format!(
            "; without it the figure would read {:.1}",
            others.iter().map(|p| p.net_ns * p.runs).sum::<f64>() / others_runs
        )
    } else {
        String::new()
    };
    let heaviest = phases.iter().max_by(|a, b| share(a).total_cmp(&share(b)))?;
    // The heaviest share's phase at `needed`, the others as they are: the weighted sum at the goal.
    let needed = heaviest.net_ns - (weighted - goal_ns) * total / heaviest.runs;
    let closing = if needed > 0.0 {
        format!(
            "the {} phase at {needed:.0} ns per packet or less (now {:.1}), the others as they are",
            heaviest.name, heaviest.net_ns
        )
    } else {
        format!(
            "no single phase: even the {} phase at nothing would leave {:.1}",
            heaviest.name,
            weighted - share(heaviest)
        )
    };
    Some(format!(
        "per-packet program [{hook}]: {whole_ns:.1} ns net over the whole workload, above the goal of {goal_ns} ns; it \
         is the phases' figures weighted by their runs ({:.1} from these medians): {}. The {} phase costs most per \
         packet{without}. What would close it: {closing}",
        weighted,
        parts.join(", "),
        costliest.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures() -> [PhaseFigure<'static>; 3] {
        [
            PhaseFigure { name: "iperf3 bulk transfer", net_ns: 90.0, runs: 800.0 },
            PhaseFigure { name: "TCP churn", net_ns: 70.0, runs: 100.0 },
            PhaseFigure { name: "UDP churn", net_ns: 350.0, runs: 100.0 },
        ]
    }

    #[test]
    fn a_miss_names_each_phase_and_what_would_close_it() {
        // 0.8 × 90 + 0.1 × 70 + 0.1 × 350 = 114; without UDP churn (800 × 90 + 100 × 70) ÷ 900 =
        // 87.8. The largest share is bulk's (72): at 90 − 14 ÷ 0.8 = 72.5 ns the whole reads 100.
        let n = note("cgroup_skb/ingress", 114.0, 100.0, &figures()).expect("a miss");
        assert!(n.contains("114.0 ns net over the whole workload"), "{n}");
        assert!(n.contains("(114.0 from these medians)"), "{n}");
        assert!(n.contains("iperf3 bulk transfer 90.0 ns × 80 % of the runs"), "{n}");
        assert!(n.contains("UDP churn 350.0 ns × 10 % of the runs"), "{n}");
        assert!(n.contains("The UDP churn phase costs most per packet; without it the figure would read 87.8"), "{n}");
        assert!(n.contains("the iperf3 bulk transfer phase at 72 ns per packet or less (now 90.0)"), "{n}");
    }

    #[test]
    fn met_goals_and_empty_phases_give_no_note() {
        assert_eq!(note("cgroup_skb/egress", 99.9, 100.0, &figures()), None);
        let none = [PhaseFigure { name: "UDP churn", net_ns: 350.0, runs: 0.0 }];
        assert_eq!(note("cgroup_skb/egress", 120.0, 100.0, &none), None);
    }

    #[test]
    fn a_phase_that_cannot_close_it_alone_is_said() {
        // Half the runs at 300 and half at 250: bulk at 0 still leaves 125.
        let two = [
            PhaseFigure { name: "iperf3 bulk transfer", net_ns: 300.0, runs: 1.0 },
            PhaseFigure { name: "UDP churn", net_ns: 250.0, runs: 1.0 },
        ];
        let n = note("cgroup_skb/ingress", 275.0, 100.0, &two).expect("a miss");
        assert!(n.contains("no single phase: even the iperf3 bulk transfer phase at nothing would leave 125.0"), "{n}");
    }
}
