//! Selection policies: from per-piece scores to a [`PrunePlan`]. No tensors here.

use serde::{Deserialize, Serialize};

use super::plan::{LayerPlan, PLAN_FORMAT_VERSION, PrunePlan};
use crate::error::{Error, Result};
use crate::model::spec::ArchSpec;
use crate::relevance::Relevance;

/// How many pieces to remove, given their scores. Every policy but `units` keeps at least one
/// piece per unit. Among equal scores the piece (or unit) with the higher index goes first.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "kebab-case")]
pub enum Policy {
    /// Remove the `n` least relevant pieces of every unit (the paper: n = 1 per step).
    PerUnit {
        /// Pieces removed per unit and step.
        n: usize,
    },
    /// Remove every piece whose score is below `tau`.
    Threshold {
        /// Score threshold (a win frequency for `argmax`).
        tau: f64,
    },
    /// Remove the lowest-scored `fraction` of a layer's pieces.
    Global {
        /// Fraction of the layer's pieces, in `[0, 1)`.
        fraction: f64,
    },
    /// Remove whole units: the `fraction` of a layer's units whose pieces' scores sum lowest
    /// (the consumer loses the inputs that read them). Needs a criterion whose sums rank units,
    /// such as `contribution`; at least one unit stays.
    Units {
        /// Fraction of the layer's units, in `[0, 1)`.
        fraction: f64,
    },
}

/// As reports show it: the policy's name as `--policy` takes it, and its number.
impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Policy::PerUnit { n } => write!(f, "per-unit, {n} per unit"),
            Policy::Threshold { tau } => write!(f, "threshold, tau {tau}"),
            Policy::Global { fraction } => write!(f, "global, fraction {fraction}"),
            Policy::Units { fraction } => write!(f, "units, fraction {fraction}"),
        }
    }
}

impl Policy {
    /// Checks the policy's number: `n >= 1` pieces per step, a finite threshold `tau >= 0`, a
    /// fraction in `[0, 1)` (NaN is none of these).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid("policy", m));
        match *self {
            Policy::PerUnit { n: 0 } => bad("per-unit: expected at least 1 piece per unit and step, found 0".into()),
            Policy::Threshold { tau } if !(tau.is_finite() && tau >= 0.0) => {
                bad(format!("threshold: expected a finite score >= 0, found {tau}"))
            }
            Policy::Global { fraction } | Policy::Units { fraction } if !(0.0..1.0).contains(&fraction) => {
                bad(format!("fraction: expected [0, 1), found {fraction}"))
            }
            _ => Ok(()),
        }
    }
}

/// Indices ordered for removal (the pieces of a unit, or units by their totals): lowest score
/// first, higher index first on ties.
fn removal_order(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(b.cmp(&a)));
    order
}

/// Turns scores into a plan for `spec` (checked against the relevance's fingerprint).
pub fn select(relevance: &Relevance, spec: &ArchSpec, policy: Policy) -> Result<PrunePlan> {
    relevance.check_spec(spec, "relevance")?;
    policy.validate()?;
    if matches!(policy, Policy::Units { .. }) && !relevance.criterion.ranks_units() {
        return Err(Error::invalid(
            "policy",
            "units: arg-max frequencies sum to 1 in every unit, so they cannot rank units; use the \
             contribution criterion",
        ));
    }
    let layers = relevance
        .layers
        .iter()
        .map(|lr| {
            let mut drop: Vec<Vec<usize>> = vec![Vec::new(); lr.scores.len()];
            match policy {
                Policy::PerUnit { n } => {
                    for (u, s) in lr.scores.iter().enumerate() {
                        drop[u] = removal_order(s).into_iter().take(n.min(s.len() - 1)).collect();
                    }
                }
                Policy::Threshold { tau } => {
                    for (u, s) in lr.scores.iter().enumerate() {
                        let below: Vec<usize> = removal_order(s).into_iter().filter(|&j| s[j] < tau).collect();
                        drop[u] = below.into_iter().take(s.len() - 1).collect();
                    }
                }
                Policy::Global { fraction } => {
                    let total: usize = lr.scores.iter().map(Vec::len).sum();
                    let mut budget = (fraction * total as f64).floor() as usize;
                    let mut all: Vec<(usize, usize)> = lr
                        .scores
                        .iter()
                        .enumerate()
                        .flat_map(|(u, s)| (0..s.len()).map(move |j| (u, j)))
                        .collect();
                    all.sort_by(|&(ua, ja), &(ub, jb)| {
                        lr.scores[ua][ja]
                            .total_cmp(&lr.scores[ub][jb])
                            .then(ub.cmp(&ua))
                            .then(jb.cmp(&ja))
                    });
                    for (u, j) in all {
                        if budget == 0 {
                            break;
                        }
                        if drop[u].len() + 1 < lr.scores[u].len() {
                            drop[u].push(j);
                            budget -= 1;
                        }
                    }
                }
                Policy::Units { fraction } => {
                    let units = lr.scores.len();
                    let totals: Vec<f64> = lr.scores.iter().map(|s| s.iter().sum()).collect();
                    let remove = ((fraction * units as f64).floor() as usize).min(units.saturating_sub(1));
                    for u in removal_order(&totals).into_iter().take(remove) {
                        drop[u] = (0..lr.scores[u].len()).collect();
                    }
                }
            }
            LayerPlan {
                layer: lr.layer,
                keep: lr
                    .scores
                    .iter()
                    .zip(&drop)
                    .map(|(s, d)| (0..s.len()).filter(|j| !d.contains(j)).collect())
                    .collect(),
            }
        })
        .collect();
    let plan = PrunePlan {
        format_version: PLAN_FORMAT_VERSION,
        spec_fingerprint: relevance.spec_fingerprint.clone(),
        layers,
    };
    plan.validate(spec)?;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_order_is_lowest_first_and_higher_index_on_ties() {
        assert_eq!(removal_order(&[0.5, 0.1, 0.1, 0.3]), vec![2, 1, 3, 0]);
    }
}
