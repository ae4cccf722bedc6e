//! When a pruning schedule stops, and what a step's validation change is measured as: the
//! paired change of accuracy against the network the tolerance counts from, with its 95%
//! interval; and which steps are timed.

use std::path::PathBuf;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The standard normal quantile of a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// How a schedule decides that a step fell too far below the validation accuracy it counts
/// from (the starting network's, or the reference run's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopRule {
    /// The step's validation accuracy is more than the tolerance below: a point comparison,
    /// which the sampling noise of the validation split can trip.
    #[default]
    Point,
    /// The whole 95% paired interval of the change ([`PairedChange::interval`]) lies more than
    /// the tolerance below 0: the drop exceeds the tolerance with 95% confidence.
    Paired,
    /// No rule: every step is kept and the schedule runs to its end (the paper's k=4 -> 1, as
    /// the original code ran it); the changes are still reported.
    None,
}

impl StopRule {
    /// Whether this is the default rule (left out of saved configurations, so schedules saved
    /// before the rule was a choice resume unchanged).
    pub fn is_point(&self) -> bool {
        *self == StopRule::Point
    }

    /// Whether a step with validation accuracy `accuracy` and paired change `change` is kept,
    /// against the validation accuracy `from` and a tolerance of `tolerance` points (all
    /// accuracies fractions). Without a paired change (no validation split) the paired rule
    /// keeps the step.
    pub fn keeps(self, tolerance: f64, from: f64, accuracy: f64, change: Option<&PairedChange>) -> bool {
        match self {
            StopRule::Point => within_tolerance(from, accuracy, tolerance),
            StopRule::Paired => change.is_none_or(|c| 100.0 * c.interval().1 >= -tolerance - 1e-9),
            StopRule::None => true,
        }
    }
}

/// Whether `accuracy` is at most `tolerance` percentage points below `start` (both fractions).
/// A drop of exactly the tolerance is within it: the margin absorbs the rounding of the
/// fractions (0.9056 - 0.9026 is 0.30000000000000027 points in f64).
pub fn within_tolerance(start: f64, accuracy: f64, tolerance: f64) -> bool {
    100.0 * (start - accuracy) <= tolerance + 1e-9
}

/// Which steps of a schedule are timed against the starting network and plain LeNet-5
/// ([`crate::bench::speedups`]: 3 batch sizes, alternating rounds). Not part of a schedule's
/// saved configuration: a resumed schedule may time differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchSteps {
    /// None.
    None,
    /// The schedule's result (its last kept step), once the schedule has ended.
    #[default]
    Last,
    /// Every step, and the starting network against plain LeNet-5.
    All,
}

/// A network's validation accuracy against another's on the same examples: `lost` examples only
/// the other got right, `gained` only this one did, out of `examples`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairedChange {
    /// Examples compared.
    pub examples: usize,
    /// Examples the network compared with classified correctly and this one did not (b).
    pub lost: usize,
    /// Examples this network classified correctly and the one compared with did not (c).
    pub gained: usize,
}

impl PairedChange {
    /// The change from the network whose per-example hits are `from` to the one whose hits are
    /// `to`, on the same examples in the same order.
    ///
    /// # Panics
    /// When the two differ in length: they must be scored on one split.
    pub fn of(from: &[bool], to: &[bool]) -> PairedChange {
        assert_eq!(from.len(), to.len(), "paired hits come from one split");
        let count = |f: fn(bool, bool) -> bool| from.iter().zip(to).filter(|(a, b)| f(**a, **b)).count();
        PairedChange {
            examples: from.len(),
            lost: count(|a, b| a && !b),
            gained: count(|a, b| !a && b),
        }
    }

    /// The change of accuracy, `(gained - lost) / examples` (a fraction; 0 without examples).
    pub fn change(&self) -> f64 {
        (self.gained as f64 - self.lost as f64) / self.examples.max(1) as f64
    }

    /// The 95% Wald interval of the paired change (the McNemar variance): `change ± 1.96 ·
    /// sqrt(b + c - (c - b)² / n) / n`, with b = `lost`, c = `gained`, n = `examples`. It is
    /// `[0, 0]` when no example changed (b = c = 0).
    pub fn interval(&self) -> (f64, f64) {
        let (b, c, n) = (self.lost as f64, self.gained as f64, self.examples.max(1) as f64);
        let half = Z95 * (b + c - (c - b).powi(2) / n).max(0.0).sqrt() / n;
        (self.change() - half, self.change() + half)
    }

    /// The change and its interval in percentage points, as `+0.12 (-0.20, +0.44)`.
    pub fn cell(&self) -> String {
        let (lo, hi) = self.interval();
        format!("{:+.2} ({:+.2}, {:+.2})", 100.0 * self.change(), 100.0 * lo, 100.0 * hi)
    }
}

/// A FLOP target that ends a schedule once the network's FLOP ratio against a reference (the
/// reference's FLOPs over the network's, as report rows show it) reaches `ratio`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlopTarget {
    /// The FLOP ratio to reach, above 1.
    pub ratio: f64,
    /// FLOPs for one example of the network the ratio counts from.
    pub reference: usize,
    /// The speedup asked for, when the target was given as one: the measured speedup of the
    /// result is reported against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speedup: Option<f64>,
    /// The run whose network the ratio counts from (absolute path); `None`: the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub against: Option<PathBuf>,
}

impl FlopTarget {
    /// A target of FLOP ratio `ratio` (default: `speedup`) against a network of
    /// `reference_flops` FLOPs for one example, that of the run `against` (`None`: the start).
    /// Both numbers must be finite and above 1, and at least one given.
    pub fn new(
        ratio: Option<f64>,
        speedup: Option<f64>,
        reference_flops: usize,
        against: Option<PathBuf>,
    ) -> Result<FlopTarget> {
        for (field, v) in [("FLOP ratio", ratio), ("speedup", speedup)] {
            if let Some(v) = v.filter(|v| !(v.is_finite() && *v > 1.0)) {
                return Err(Error::invalid(
                    "target",
                    format!("{field}: expected a finite number above 1, found {v}"),
                ));
            }
        }
        let ratio = ratio
            .or(speedup)
            .ok_or_else(|| Error::invalid("target", "expected a speedup or a FLOP ratio, found neither"))?;
        Ok(FlopTarget {
            ratio,
            reference: reference_flops,
            speedup,
            against,
        })
    }
}

impl FlopTarget {
    /// FLOPs for one example the network must come down to: the reference's over the ratio.
    pub fn flops(&self) -> usize {
        (self.reference as f64 / self.ratio).floor() as usize
    }
}

/// What ended a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ended {
    /// Its own limit: the steps, the piece count, or the FLOP target.
    Limit,
    /// A step outside the validation tolerance (after any recovery epochs).
    Tolerance,
    /// Nothing more could be removed.
    Exhausted,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ended::Limit => "its limit (steps, piece count or FLOP target) was reached",
            Ended::Tolerance => "a step fell outside the validation tolerance",
            Ended::Exhausted => "nothing more could be removed",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paired_interval_equals_the_hand_computed_wald_interval() {
        // 10 examples: 3 only the start got right, 1 only the pruned network, 6 agree.
        // change = (1 - 3) / 10 = -0.2; variance numerator 3 + 1 - (1 - 3)² / 10 = 3.6;
        // half width = 1.959964 · sqrt(3.6) / 10 = 1.959964 · 0.1897367 = 0.3718770.
        let start = [true, true, true, false, true, true, true, false, false, true];
        let pruned = [false, false, false, true, true, true, true, false, false, true];
        let c = PairedChange::of(&start, &pruned);
        assert_eq!((c.examples, c.lost, c.gained), (10, 3, 1));
        assert!((c.change() + 0.2).abs() < 1e-12);
        let (lo, hi) = c.interval();
        assert!(
            (lo + 0.571_877_0).abs() < 1e-6 && (hi - 0.171_877_0).abs() < 1e-6,
            "{lo} {hi}"
        );
        assert_eq!(c.cell(), "-20.00 (-57.19, +17.19)");
        // 5,000 examples, b = 120, c = 83: -0.74 points, interval (-1.298, -0.182) points.
        let c = PairedChange {
            examples: 5000,
            lost: 120,
            gained: 83,
        };
        let (lo, hi) = c.interval();
        assert!(
            (lo + 0.012_981_27).abs() < 1e-8 && (hi + 0.001_818_73).abs() < 1e-8,
            "{lo} {hi}"
        );
        // No example changed: no spread.
        let same = PairedChange::of(&start, &start);
        assert_eq!((same.change(), same.interval()), (0.0, (0.0, 0.0)));
    }

    #[test]
    fn the_paired_rule_stops_only_when_the_whole_interval_is_below_the_tolerance() {
        // -0.74 points, interval (-1.30, -0.18): the point rule stops at 0.3 points, the paired
        // rule does not (the drop may be under 0.3 points); at a 0.1-point tolerance both stop.
        let c = PairedChange {
            examples: 5000,
            lost: 120,
            gained: 83,
        };
        let (from, acc) = (0.9108, 0.9034);
        assert!(!StopRule::Point.keeps(0.3, from, acc, Some(&c)));
        assert!(StopRule::Paired.keeps(0.3, from, acc, Some(&c)));
        assert!(!StopRule::Paired.keeps(0.1, from, acc, Some(&c)));
        assert!(StopRule::None.keeps(0.0, from, 0.0, Some(&c)));
        assert!(StopRule::Paired.keeps(0.0, from, 0.0, None));
    }

    #[test]
    fn a_drop_of_exactly_the_tolerance_is_within_it() {
        assert!(within_tolerance(0.9056, 0.9026, 0.3));
        assert!(within_tolerance(0.9056, 0.9100, 0.3));
        assert!(!within_tolerance(0.9056, 0.9024, 0.3));
        assert!(!within_tolerance(0.9, 0.9, -0.1));
    }
}
