//! Alternation and statistics. Every comparison runs its configurations in turn (A B C A B C ...)
//! for a number of rounds, so that slow drifts of a shared, noisy machine (other people's tests,
//! thermal limits) touch every configuration alike; results are medians with min and max.

use serde::Serialize;

/// Median, minimum and maximum of a set of samples.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Summary {
    /// Median (mean of the two middle samples for an even count).
    pub median: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Number of samples.
    pub n: usize,
}

impl Summary {
    /// Summarises `samples`; `None` when there are none (or only NaNs).
    pub fn of(samples: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { f64::midpoint(v[n / 2 - 1], v[n / 2]) };
        Some(Self { median, min: v[0], max: v[n - 1], n })
    }

    /// "median (min–max)" with `digits` decimals, or just the value for one sample.
    pub fn show(&self, digits: usize) -> String {
        if self.n == 1 {
            format!("{:.digits$}", self.median)
        } else {
            format!("{:.digits$} ({:.digits$}–{:.digits$})", self.median, self.min, self.max)
        }
    }
}

/// Shows an optional summary, or "n/a".
pub fn show(s: Option<Summary>, digits: usize) -> String {
    s.map_or_else(|| "n/a".to_owned(), |s| s.show(digits))
}

/// Runs `sample(config, round)` for every configuration in turn, `rounds` times, and returns the
/// samples per configuration in the order of `configs`. A failed sample is reported on stderr
/// and kept as an error (benchmarks do not stop on one bad sample).
pub fn alternate<C: Copy + std::fmt::Debug, T>(
    configs: &[C],
    rounds: usize,
    mut sample: impl FnMut(C, usize) -> anyhow::Result<T>,
) -> Vec<Vec<anyhow::Result<T>>> {
    let mut out: Vec<Vec<anyhow::Result<T>>> = configs.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (i, &config) in configs.iter().enumerate() {
            if super::interrupted() {
                out[i].push(Err(anyhow::anyhow!("interrupted")));
                continue;
            }
            let started = std::time::Instant::now();
            let result = sample(config, round);
            match &result {
                Err(e) => eprintln!("bench: {config:?} round {}: {e:#}", round + 1),
                Ok(_) => eprintln!(
                    "bench:   {config:?} round {}/{rounds}: {:.1} s",
                    round + 1,
                    started.elapsed().as_secs_f64()
                ),
            }
            out[i].push(result);
        }
    }
    out
}

/// Per-round ratios `x / base` of two sample series measured in the same rounds (skipping rounds
/// where either failed).
pub fn paired_ratios(x: &[Option<f64>], base: &[Option<f64>]) -> Vec<f64> {
    x.iter()
        .zip(base)
        .filter_map(|(x, b)| match (x, b) {
            (Some(x), Some(b)) if *b > 0.0 => Some(x / b),
            _ => None,
        })
        .collect()
}

/// Baseline for each round: the mean of this round's baseline sample and the next round's (the
/// baseline runs first in every round, so a round's other samples sit between the two), or this
/// round's alone for the last round or when the next one failed. Cancels a linear drift.
pub fn bracketing_baseline(base: &[Option<f64>]) -> Vec<Option<f64>> {
    (0..base.len())
        .map(|r| match (base[r], base.get(r + 1).copied().flatten()) {
            (Some(a), Some(b)) => Some(f64::midpoint(a, b)),
            (a, _) => a,
        })
        .collect()
}

/// A CPU-bound rate scaled to the CPU the hypervisor left (`rate ÷ (1 − steal)`), so that
/// samples taken while a neighbour stole time compare with the others. Steal is capped at 90 %.
pub fn steal_adjusted(rate: f64, steal_percent: f64) -> f64 {
    rate / (1.0 - steal_percent.clamp(0.0, 90.0) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(Summary::of(&[3.0, 1.0, 2.0]).map(|s| s.median), Some(2.0));
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.5, 1.0, 4.0, 4));
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn bracketing_uses_the_next_round() {
        assert_eq!(bracketing_baseline(&[Some(10.0), Some(20.0), None]), vec![Some(15.0), Some(20.0), None]);
        assert_eq!(bracketing_baseline(&[Some(10.0), None]), vec![Some(10.0), None]);
    }

    #[test]
    fn ratios_skip_failed_rounds() {
        let r = paired_ratios(&[Some(9.0), None, Some(5.0)], &[Some(10.0), Some(10.0), Some(0.0)]);
        assert_eq!(r, vec![0.9]);
    }
}
