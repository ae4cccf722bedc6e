//! Selection policies: from per-piece scores to a [`PrunePlan`]. No tensors here.

use serde::{Deserialize, Serialize};

use super::plan::{LayerPlan, PLAN_FORMAT_VERSION, PrunePlan};
use crate::bench::LayerProfile;
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
    /// Remove the lowest-scored `fraction` of all pieces, ranked together across every layer it
    /// cuts (as Torch-Pruning's global pruning ranks across layers), so a layer whose pieces
    /// score lower loses more; scores are compared as they are, which suits criteria on one
    /// scale in every layer (arg-max win frequencies of equal k).
    Global {
        /// Fraction of the pieces of all layers it cuts, in `(0, 1)`.
        fraction: f64,
    },
    /// Remove whole units: the `fraction` of a layer's units whose pieces' scores sum lowest
    /// (the consumer loses the inputs that read them). Needs a criterion whose sums rank units,
    /// such as `contribution`; at least one unit stays.
    Units {
        /// Fraction of the layer's units, in `(0, 1)`.
        fraction: f64,
    },
    /// Remove whole units ranked together across every layer it cuts by score per FLOP: a
    /// unit's summed score over its layer's mean unit score (so layers compare on one scale),
    /// divided by the FLOPs the unit costs ([`ArchSpec::unit_flops`]; a schedule may rank by
    /// measured time instead, [`CostModel`]); the lowest go first until `fraction` of the
    /// network's FLOPs are removed. Needs a criterion whose sums rank units;
    /// every layer keeps a unit.
    Cost {
        /// Fraction of the network's FLOPs removed per step, in `(0, 1)`.
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
            Policy::Cost { fraction } => write!(f, "cost, fraction {fraction} of the FLOPs"),
        }
    }
}

impl Policy {
    /// Checks the policy's number: `n >= 1` pieces per step, a finite threshold `tau >= 0`, a
    /// fraction in `(0, 1)` (NaN is none of these; a fraction of 0 would remove nothing).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid("policy", m));
        match *self {
            Policy::PerUnit { n: 0 } => bad("per-unit: expected at least 1 piece per unit and step, found 0".into()),
            Policy::Threshold { tau } if !(tau.is_finite() && tau >= 0.0) => {
                bad(format!("threshold: expected a finite score >= 0, found {tau}"))
            }
            Policy::Global { fraction } | Policy::Units { fraction } | Policy::Cost { fraction }
                if !(fraction > 0.0 && fraction < 1.0) =>
            {
                bad(format!("fraction: expected (0, 1), found {fraction}"))
            }
            _ => Ok(()),
        }
    }
}

/// What the cost policy ranks a unit's cost by. Either way the budget of a step and a FLOP
/// target count FLOPs; only the ranking changes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "kebab-case")]
pub enum CostModel {
    /// The FLOPs the unit costs ([`ArchSpec::unit_flops`]).
    #[default]
    Flops,
    /// Measured time: a unit layer's time is the summed time of its producer, the layers after
    /// it up to and including its consumer (activations, maxout, pooling, flatten), shared
    /// among its units in proportion to their FLOPs. The profile is of the network a schedule
    /// starts from; a pruned network's layer keeps the milliseconds per FLOP it had there.
    Measured {
        /// Per-layer profile (a batch of 256) of the network the schedule started from.
        profile: LayerProfile,
    },
}

impl CostModel {
    /// Whether this is [`CostModel::Flops`].
    pub fn is_flops(&self) -> bool {
        *self == CostModel::Flops
    }

    /// What each unit of unit layer `layer` of `spec` costs, in unit order: its FLOPs, or its
    /// FLOPs times its layer's measured milliseconds per FLOP. The profile must list `spec`'s
    /// layers (by kind, in order), each timed at a finite time above 0.
    pub fn unit_costs(&self, spec: &ArchSpec, layer: usize) -> Result<Vec<f64>> {
        let flops = spec.unit_flops(layer)?;
        let CostModel::Measured { profile } = self else {
            return Ok(flops);
        };
        let kinds: Vec<&str> = spec.validate()?.iter().map(|l| l.kind).collect();
        let timed: Vec<&str> = profile.layers.iter().map(|l| l.kind.as_str()).collect();
        if kinds != timed {
            return Err(Error::invalid(
                "cost profile",
                format!(
                    "expected the layers of {} ({}), found {}",
                    spec.name,
                    kinds.join(", "),
                    timed.join(", ")
                ),
            ));
        }
        if let Some(l) = profile.layers.iter().find(|l| !(l.ms.is_finite() && l.ms > 0.0)) {
            return Err(Error::invalid(
                "cost profile",
                format!("layer {}: expected a time above 0 ms, found {}", l.index, l.ms),
            ));
        }
        let first = spec.producer_of(layer).unwrap_or(layer);
        let last = spec.consumer_of(layer).unwrap_or(spec.layers.len() - 1);
        let group = &profile.layers[first..=last];
        let ms: f64 = group.iter().map(|l| l.ms).sum();
        let group_flops: usize = group.iter().map(|l| l.flops).sum();
        let per_flop = ms / group_flops.max(1) as f64;
        Ok(flops.into_iter().map(|f| f * per_flop).collect())
    }
}

/// Indices ordered for removal (the pieces of a unit, or units by their totals): lowest score
/// first, higher index first on ties.
fn removal_order(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(b.cmp(&a)));
    order
}

/// A per-layer budget (`--fraction-per-layer`): the fraction of a unit layer's units a schedule
/// removes in all, in equal increments over its steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerBudget {
    /// The unit layer, by the name of the layer that produces its units.
    pub layer: String,
    /// Fraction of its units removed by the end of the schedule, in `(0, 1)`.
    pub fraction: f64,
    /// Its units in the network the schedule starts from.
    pub units: usize,
}

impl LayerBudget {
    /// Units removed in all after step `step` of `steps`: the budget's share, rounded.
    pub fn removed_after(&self, step: usize, steps: usize) -> usize {
        let share = self.fraction * self.units as f64 * step.min(steps) as f64 / steps.max(1) as f64;
        share.round() as usize
    }
}

/// Splits a comma-separated list given as text (`conv1,fc1`, `conv1=0.3, fc1=0.5`): each item
/// trimmed of surrounding spaces, none empty, at least one. `what` names the list in errors.
pub fn list_items<'a>(text: &'a str, what: &'static str) -> Result<Vec<&'a str>> {
    let items: Vec<&str> = text.split(',').map(str::trim).collect();
    if items.iter().any(|i| i.is_empty()) {
        return Err(Error::invalid(
            what,
            format!("'{text}': expected comma-separated items, found an empty one"),
        ));
    }
    Ok(items)
}

/// The unit layers of `spec` named in `names` (as [`ArchSpec::unit_layers_named`]), each named
/// once: the one rule for every list of unit layers.
pub fn unit_layers_once(names: &[String], spec: &ArchSpec) -> Result<Vec<usize>> {
    if let Some((_, name)) = names.iter().enumerate().find(|(i, n)| names[..*i].contains(n)) {
        return Err(Error::invalid("layers", format!("'{name}' is given twice")));
    }
    spec.unit_layers_named(names)
}

/// Parses a list of unit layer names, `conv1,fc1`, for `spec`: items as [`list_items`], each
/// a unit layer named once ([`unit_layers_once`]).
pub fn parse_layer_names(text: &str, spec: &ArchSpec) -> Result<Vec<String>> {
    let names: Vec<String> = list_items(text, "layers")?.into_iter().map(String::from).collect();
    unit_layers_once(&names, spec)?;
    Ok(names)
}

/// Parses per-layer budgets, `conv1=0.3,conv2=0.5,fc1=0.75`, for `spec`: items as
/// [`list_items`], each name a unit layer named once ([`unit_layers_once`]), each fraction in
/// `(0, 1)` and leaving the layer at least one unit.
pub fn parse_budgets(text: &str, spec: &ArchSpec) -> Result<Vec<LayerBudget>> {
    let bad = |m: String| Err(Error::invalid("fraction per layer", m));
    let mut budgets: Vec<LayerBudget> = Vec::new();
    for item in list_items(text, "fraction per layer")? {
        let Some((name, value)) = item.split_once('=') else {
            return bad(format!("'{item}': expected LAYER=FRACTION, such as conv1=0.3"));
        };
        let name = name.trim();
        let Ok(fraction) = value.trim().parse::<f64>() else {
            return bad(format!("{name}: expected a number in (0, 1), found '{}'", value.trim()));
        };
        if !(fraction > 0.0 && fraction < 1.0) {
            return bad(format!("{name}: expected a fraction in (0, 1), found {fraction}"));
        }
        let layer = spec.unit_layers_named(&[name.to_string()])?[0];
        let units = spec.unit_pieces(layer).expect("a unit layer").units();
        let budget = LayerBudget {
            layer: name.into(),
            fraction,
            units,
        };
        if budget.removed_after(1, 1) >= units {
            return bad(format!(
                "{name}: {fraction} of its {units} units rounds to {}, which would remove every unit",
                budget.removed_after(1, 1)
            ));
        }
        budgets.push(budget);
    }
    unit_layers_once(&budgets.iter().map(|b| b.layer.clone()).collect::<Vec<_>>(), spec)?;
    Ok(budgets)
}

/// What one layer of a plan loses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LayerCut {
    /// What the policy removes.
    Policy(Policy),
    /// This many whole units, lowest summed scores first.
    Units(usize),
    /// Whole units ranked with those of every layer cut by the same budget, lowest score per
    /// FLOP first (as [`Policy::Cost`]), until this many FLOPs for one example are removed.
    Flops(f64),
}

/// Marks every piece of the `remove` units whose scores sum lowest (at most all units but one).
fn drop_lowest_units(scores: &[Vec<f64>], remove: usize, drop: &mut [Vec<usize>]) {
    let totals: Vec<f64> = scores.iter().map(|s| s.iter().sum()).collect();
    for u in removal_order(&totals)
        .into_iter()
        .take(remove.min(scores.len().saturating_sub(1)))
    {
        drop[u] = (0..scores[u].len()).collect();
    }
}

/// Marks the lowest-scored `fraction` of the pieces of the layers `pooled` (indices into
/// `relevance.layers`), ranked together; every unit keeps a piece. Among equal scores the later
/// layer, then the higher unit, then the higher piece goes first.
fn drop_lowest_pieces(relevance: &Relevance, pooled: &[usize], fraction: f64, drops: &mut [Vec<Vec<usize>>]) {
    let score = |(i, u, j): (usize, usize, usize)| relevance.layers[i].scores[u][j];
    let mut all: Vec<(usize, usize, usize)> = pooled
        .iter()
        .flat_map(|&i| {
            relevance.layers[i]
                .scores
                .iter()
                .enumerate()
                .flat_map(move |(u, s)| (0..s.len()).map(move |j| (i, u, j)))
        })
        .collect();
    let mut budget = (fraction * all.len() as f64).floor() as usize;
    all.sort_by(|&a, &b| score(a).total_cmp(&score(b)).then(b.cmp(&a)));
    for (i, u, j) in all {
        if budget == 0 {
            break;
        }
        if drops[i][u].len() + 1 < relevance.layers[i].scores[u].len() {
            drops[i][u].push(j);
            budget -= 1;
        }
    }
}

/// Marks the whole units of the layers `pooled` (indices into `relevance.layers`) with the
/// lowest score per cost (as `cost` counts it), ranked together, until their FLOPs reach
/// `budget` (the last unit taken may pass it); every layer keeps a unit. A unit's score is its
/// summed score over its layer's mean unit score (1 where that mean is 0). Among equal ratios
/// the later layer, then the higher unit goes first.
fn drop_cheapest_units(
    relevance: &Relevance,
    spec: &ArchSpec,
    pooled: &[usize],
    budget: f64,
    cost: &CostModel,
    drops: &mut [Vec<Vec<usize>>],
) -> Result<()> {
    let mut all: Vec<(f64, usize, usize, f64)> = Vec::new();
    for &i in pooled {
        let scores = &relevance.layers[i].scores;
        let totals: Vec<f64> = scores.iter().map(|s| s.iter().sum()).collect();
        let mean = totals.iter().sum::<f64>() / totals.len().max(1) as f64;
        let mean = if mean > 0.0 { mean } else { 1.0 };
        let layer = relevance.layers[i].layer;
        let flops = spec.unit_flops(layer)?;
        let costs = cost.unit_costs(spec, layer)?;
        for (u, ((t, c), f)) in totals.iter().zip(costs).zip(flops).enumerate() {
            all.push((t / mean / c.max(f64::MIN_POSITIVE), i, u, f));
        }
    }
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then((b.1, b.2).cmp(&(a.1, a.2))));
    let mut removed = 0.0;
    for (_, i, u, cost) in all {
        if removed >= budget {
            break;
        }
        let units = relevance.layers[i].scores.len();
        if drops[i].iter().filter(|d| !d.is_empty()).count() + 1 < units {
            drops[i][u] = (0..relevance.layers[i].scores[u].len()).collect();
            removed += cost;
        }
    }
    Ok(())
}

/// Turns scores into a plan for `spec` (checked against the relevance's fingerprint): every
/// scored layer cut by `policy`.
pub fn select(relevance: &Relevance, spec: &ArchSpec, policy: Policy) -> Result<PrunePlan> {
    policy.validate()?;
    if let Policy::Cost { fraction } = policy {
        let budget = fraction * spec.flops()? as f64;
        return select_each(relevance, spec, |_| LayerCut::Flops(budget));
    }
    select_each(relevance, spec, |_| LayerCut::Policy(policy))
}

/// Turns scores into a plan for `spec`, each scored layer cut as `cut(layer)` says, units
/// cut by FLOPs ranked by their FLOPs.
pub fn select_each(relevance: &Relevance, spec: &ArchSpec, cut: impl Fn(usize) -> LayerCut) -> Result<PrunePlan> {
    select_each_costed(relevance, spec, cut, &CostModel::Flops)
}

/// [`select_each`], with the units of [`LayerCut::Flops`] ranked by score per unit of `cost`.
pub fn select_each_costed(
    relevance: &Relevance,
    spec: &ArchSpec,
    cut: impl Fn(usize) -> LayerCut,
    cost: &CostModel,
) -> Result<PrunePlan> {
    relevance.check_spec(spec, "relevance")?;
    let by_units = |c: LayerCut| {
        matches!(
            c,
            LayerCut::Units(_) | LayerCut::Flops(_) | LayerCut::Policy(Policy::Units { .. } | Policy::Cost { .. })
        )
    };
    if relevance.layers.iter().any(|l| by_units(cut(l.layer))) && !relevance.criterion.ranks_units() {
        return Err(Error::invalid(
            "policy",
            "units: arg-max frequencies sum to 1 in every unit, so they cannot rank units; use the \
             contribution criterion",
        ));
    }
    let total = spec.flops()? as f64;
    let cuts: Vec<LayerCut> = relevance
        .layers
        .iter()
        .map(|l| match cut(l.layer) {
            LayerCut::Policy(Policy::Cost { fraction }) => LayerCut::Flops(fraction * total),
            c => c,
        })
        .collect();
    let mut drops: Vec<Vec<Vec<usize>>> = relevance
        .layers
        .iter()
        .map(|l| vec![Vec::new(); l.scores.len()])
        .collect();
    for ((lr, c), drop) in relevance.layers.iter().zip(&cuts).zip(&mut drops) {
        match *c {
            LayerCut::Policy(Policy::PerUnit { n }) => {
                for (u, s) in lr.scores.iter().enumerate() {
                    drop[u] = removal_order(s).into_iter().take(n.min(s.len() - 1)).collect();
                }
            }
            LayerCut::Policy(Policy::Threshold { tau }) => {
                for (u, s) in lr.scores.iter().enumerate() {
                    let below: Vec<usize> = removal_order(s).into_iter().filter(|&j| s[j] < tau).collect();
                    drop[u] = below.into_iter().take(s.len() - 1).collect();
                }
            }
            // Ranked across layers below.
            LayerCut::Policy(Policy::Global { .. } | Policy::Cost { .. }) | LayerCut::Flops(_) => {}
            LayerCut::Policy(Policy::Units { fraction }) => {
                let remove = (fraction * lr.scores.len() as f64).floor() as usize;
                drop_lowest_units(&lr.scores, remove, drop);
            }
            LayerCut::Units(remove) => drop_lowest_units(&lr.scores, remove, drop),
        }
    }
    let mut fractions: Vec<f64> = cuts
        .iter()
        .filter_map(|c| match c {
            LayerCut::Policy(Policy::Global { fraction }) => Some(*fraction),
            _ => None,
        })
        .collect();
    fractions.sort_by(f64::total_cmp);
    fractions.dedup();
    for fraction in fractions {
        let pooled: Vec<usize> = (0..cuts.len())
            .filter(|&i| cuts[i] == LayerCut::Policy(Policy::Global { fraction }))
            .collect();
        drop_lowest_pieces(relevance, &pooled, fraction, &mut drops);
    }
    let mut budgets: Vec<f64> = cuts
        .iter()
        .filter_map(|c| match c {
            LayerCut::Flops(budget) => Some(*budget),
            _ => None,
        })
        .collect();
    budgets.sort_by(f64::total_cmp);
    budgets.dedup();
    for budget in budgets {
        let pooled: Vec<usize> = (0..cuts.len())
            .filter(|&i| cuts[i] == LayerCut::Flops(budget))
            .collect();
        drop_cheapest_units(relevance, spec, &pooled, budget, cost, &mut drops)?;
    }
    let layers = relevance
        .layers
        .iter()
        .zip(&drops)
        .map(|(lr, drop)| LayerPlan {
            layer: lr.layer,
            keep: lr
                .scores
                .iter()
                .zip(drop)
                .map(|(s, d)| (0..s.len()).filter(|j| !d.contains(j)).collect())
                .collect(),
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
    fn budgets_name_unit_layers_and_leave_every_layer_a_unit() {
        let spec = crate::model::presets::Preset::Lenet5MaxoutConv.spec();
        let b = parse_budgets("conv1=0.5, conv2=0.64,fc1=0.3", &spec).unwrap();
        assert_eq!(
            b.iter().map(|b| (b.layer.as_str(), b.units)).collect::<Vec<_>>(),
            [("conv1", 20), ("conv2", 50), ("fc1", 125)]
        );
        // 32 of conv2's 50 units in all, in two equal increments.
        assert_eq!([b[1].removed_after(1, 2), b[1].removed_after(2, 2)], [16, 32]);
        let err = |text: &str| parse_budgets(text, &spec).unwrap_err().to_string();
        assert!(err("conv1=1").contains("conv1: expected a fraction in (0, 1), found 1"));
        assert!(err("conv1=0").contains("found 0"));
        assert!(err("conv1=x").contains("conv1: expected a number in (0, 1), found 'x'"));
        assert!(err("conv1").contains("expected LAYER=FRACTION"));
        let e = err("fc2=0.5");
        assert!(
            e.contains("'fc2' is not a layer whose units can be pruned; expected one of conv1, conv2, fc1"),
            "{e}"
        );
        let e = err("conv1=0.98");
        assert!(
            e.contains("conv1: 0.98 of its 20 units rounds to 20, which would remove every unit"),
            "{e}"
        );
        assert!(err("conv1=0.1,conv1=0.2").contains("given twice"));
    }

    /// Input 1x2x2, flatten, dense `a` 4 (relu), dense `b` 3 (relu), dense `out` 2: FLOPs
    /// a 2x4x4 = 32, b 2x4x3 = 24, out 2x3x2 = 12, 68 in all. A unit of `a` costs 32/4 + 24/4 =
    /// 14 FLOPs, one of `b` 24/3 + 12/3 = 12.
    fn two_plain_layers() -> ArchSpec {
        use crate::model::spec::{Init, InputShape, LayerSpec, SPEC_FORMAT_VERSION};
        ArchSpec {
            format_version: SPEC_FORMAT_VERSION,
            name: "two-plain".into(),
            input: InputShape {
                channels: 1,
                height: 2,
                width: 2,
            },
            layers: vec![
                LayerSpec::flatten(),
                LayerSpec::dense("a", 4),
                LayerSpec::relu(),
                LayerSpec::dense("b", 3),
                LayerSpec::relu(),
                LayerSpec::dense("out", 2),
            ],
            init: Init::Xavier,
        }
    }

    /// Contribution-like scores of `two_plain_layers`: unit totals `a` and `b`.
    fn scores_of(spec: &ArchSpec, a: &[f64], b: &[f64]) -> Relevance {
        use crate::relevance::{CriterionKind, LayerRelevance, TiePolicy};
        let layer = |layer: usize, producer: &str, t: &[f64]| LayerRelevance {
            layer,
            producer: producer.into(),
            contests: 1,
            counts: t.iter().map(|&v| vec![v]).collect(),
            scores: t.iter().map(|&v| vec![v]).collect(),
        };
        Relevance {
            criterion: CriterionKind::Contribution,
            ties: TiePolicy::Split,
            examples: 1,
            spec_fingerprint: spec.fingerprint(),
            layers: vec![layer(1, "a", a), layer(3, "b", b)],
        }
    }

    /// The units each layer of `plan` keeps.
    fn kept(plan: &PrunePlan) -> Vec<Vec<usize>> {
        plan.layers
            .iter()
            .map(|l| (0..l.keep.len()).filter(|&u| !l.keep[u].is_empty()).collect())
            .collect()
    }

    #[test]
    fn the_cost_policy_removes_the_unit_with_the_lowest_score_per_flop_across_layers() {
        let spec = two_plain_layers();
        assert_eq!(spec.flops().unwrap(), 68);
        assert_eq!(spec.unit_flops(1).unwrap(), [14.0; 4]);
        assert_eq!(spec.unit_flops(3).unwrap(), [12.0; 3]);
        // Over their layer's mean: a 0.8, 1.2, 1, 1 (per FLOP: 0.057 lowest); b 1.125, 1.125,
        // 0.75 (per FLOP 0.0625). b's unit 2 has the lowest raw and the lowest normalised score,
        // a's unit 0 the lowest per FLOP.
        let rel = scores_of(&spec, &[0.8, 1.2, 1.0, 1.0], &[0.1125, 0.1125, 0.075]);
        // 0.1 of 68 FLOPs: the first unit (14 FLOPs) covers it.
        let plan = select(&rel, &spec, Policy::Cost { fraction: 0.1 }).unwrap();
        assert_eq!(kept(&plan), [vec![1, 2, 3], vec![0, 1, 2]]);
        // 20 FLOPs: a's unit 0 (14), then b's unit 2 (12).
        let plan = select_each(&rel, &spec, |_| LayerCut::Flops(20.0)).unwrap();
        assert_eq!(kept(&plan), [vec![1, 2, 3], vec![0, 1]]);
        // Any budget leaves every layer a unit.
        let plan = select(&rel, &spec, Policy::Cost { fraction: 0.99 }).unwrap();
        assert_eq!(kept(&plan).iter().map(Vec::len).collect::<Vec<_>>(), [1, 1]);
        // Every unit but one per layer leaves a 1 of its 4 outputs (32 / 4 = 8 FLOPs), b 1 of 4
        // inputs and 1 of 3 outputs (24 / 12 = 2), out 1 of 3 inputs (12 / 3 = 4).
        assert_eq!(spec.flops_keeping_one_unit(&[1, 3]).unwrap(), 14);
        let e = select(&rel, &spec, Policy::Cost { fraction: 1.0 })
            .unwrap_err()
            .to_string();
        assert!(e.contains("fraction: expected (0, 1), found 1"), "{e}");
    }

    #[test]
    fn a_measured_cost_ranks_by_score_per_millisecond() {
        use crate::bench::{LayerProfile, LayerTime};
        let spec = two_plain_layers();
        let rel = scores_of(&spec, &[0.8, 1.2, 1.0, 1.0], &[0.1125, 0.1125, 0.075]);
        // Hand-set: 1 ms per layer, `out` 10 ms. a's layers (a, relu, b) take 3 ms for 56 FLOPs,
        // b's (b, relu, out) 12 ms for 36: a unit of a costs 14 x 3/56 = 0.75 ms, one of b
        // 12 x 12/36 = 4 ms. Per ms b's unit 2 is lowest (0.75 / 4), where per FLOP a's unit 0
        // was.
        let ms = [1.0, 1.0, 1.0, 1.0, 1.0, 10.0];
        let infos = spec.validate().unwrap();
        let profile = |ms: &[f64]| LayerProfile {
            batch: 256,
            rounds: 1,
            layers: infos
                .iter()
                .zip(ms)
                .map(|(i, &ms)| LayerTime {
                    index: i.index,
                    kind: i.kind.into(),
                    name: i.name.clone(),
                    flops: i.flops,
                    ms,
                    share: ms / 15.0,
                })
                .collect(),
        };
        let cost = CostModel::Measured { profile: profile(&ms) };
        let costs = |l| cost.unit_costs(&spec, l).unwrap();
        assert_eq!((costs(1)[0], costs(3)[0]), (14.0 * 3.0 / 56.0, 4.0));
        // The budget still counts FLOPs: 0.1 of 68 is covered by b's unit 2 (12 FLOPs).
        let budget = |_| LayerCut::Flops(6.8);
        let plan = select_each_costed(&rel, &spec, budget, &cost).unwrap();
        assert_eq!(kept(&plan), [vec![0, 1, 2, 3], vec![0, 1]]);
        let by_flops = select_each_costed(&rel, &spec, budget, &CostModel::Flops).unwrap();
        assert_eq!(kept(&by_flops), [vec![1, 2, 3], vec![0, 1, 2]]);
        // A profile of another network, or a layer timed at 0, is refused.
        let e = |ms: &[f64]| {
            CostModel::Measured { profile: profile(ms) }
                .unit_costs(&spec, 1)
                .unwrap_err()
                .to_string()
        };
        assert!(e(&ms[..5]).contains("expected the layers of two-plain (flatten, dense, relu, dense, relu, dense), found flatten, dense, relu, dense, relu"));
        assert!(e(&[1.0, 0.0, 1.0, 1.0, 1.0, 1.0]).contains("layer 1: expected a time above 0 ms, found 0"));
    }

    #[test]
    fn removal_order_is_lowest_first_and_higher_index_on_ties() {
        assert_eq!(removal_order(&[0.5, 0.1, 0.1, 0.3]), vec![2, 1, 3, 0]);
    }
}
