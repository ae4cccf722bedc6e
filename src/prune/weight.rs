//! Weight pruning (Han et al. 2015): magnitude masks per layer, held through retraining.
//!
//! A rule decides, per conv/dense weight tensor (biases are never pruned), which weights are
//! removed; the masks are kept in the optimizer state so masked weights stay exactly zero.

use crate::model::layers::Kind;
use std::collections::BTreeMap;
use std::fmt;

use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::pruner::{Pruned, Pruner, Retrain, nonzeros};
use crate::error::{Error, Result};
use crate::model::network::{Network, ParamMapper, ParamVisitor};
use crate::model::spec::ArchSpec;
use crate::progress::Observer;
use crate::relevance::RelevanceEvent;
use crate::train::Masks;
use crate::train::Splits;

/// How much of each layer to remove.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "kebab-case")]
pub enum WeightRule {
    /// Han et al.: remove weights with `|w| < quality x std` of the layer's surviving weights,
    /// again at every step.
    Quality {
        /// Quality factor for conv layers.
        conv: f64,
        /// Quality factor for dense layers.
        dense: f64,
    },
    /// Reach a target sparsity per layer in equal increments over the schedule's steps.
    /// A layer's own target takes precedence over its kind's.
    Sparsity {
        /// Target fraction of zero weights, in `[0, 1)`.
        targets: BTreeMap<Target, f64>,
    },
}

/// What a sparsity target applies to; written as `conv`, `dense` or the layer's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum Target {
    /// Every conv layer without a target of its own.
    Conv,
    /// Every dense layer without a target of its own.
    Dense,
    /// One layer, by name.
    Layer(String),
}

impl Target {
    /// The kind's target for a weight of this kind.
    fn of_kind(kind: WeightKind) -> Target {
        match kind {
            WeightKind::Conv => Target::Conv,
            WeightKind::Dense => Target::Dense,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Conv => "conv",
            Target::Dense => "dense",
            Target::Layer(name) => name,
        })
    }
}

impl From<String> for Target {
    fn from(s: String) -> Target {
        match s.as_str() {
            "conv" => Target::Conv,
            "dense" => Target::Dense,
            _ => Target::Layer(s),
        }
    }
}

impl From<Target> for String {
    fn from(t: Target) -> String {
        t.to_string()
    }
}

/// Ordered by the written form, so files list targets as they always have.
impl Ord for Target {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.to_string().cmp(&other.to_string())
    }
}

impl PartialOrd for Target {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The two kinds of weight tensor the rules prune.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WeightKind {
    Conv,
    Dense,
}

/// A weight tensor that rules apply to.
struct Prunable {
    /// Parameter name (`<layer>.weight`).
    param: String,
    /// Layer name.
    layer: String,
    kind: WeightKind,
}

/// As reports show it: `quality, conv 1, dense 1` or `sparsity, conv 0.6, dense 0.8, fc1 0.9`.
impl fmt::Display for WeightRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightRule::Quality { conv, dense } => write!(f, "quality, conv {conv}, dense {dense}"),
            WeightRule::Sparsity { targets } => {
                f.write_str("sparsity")?;
                targets.iter().try_for_each(|(t, v)| write!(f, ", {t} {v}"))
            }
        }
    }
}

impl WeightRule {
    /// Checks the rule's numbers: finite quality factors >= 0, sparsity targets in `[0, 1)`.
    pub fn validate(&self) -> Result<()> {
        match self {
            WeightRule::Quality { conv, dense } => match [("conv", *conv), ("dense", *dense)]
                .into_iter()
                .find(|(_, q)| !(q.is_finite() && *q >= 0.0))
            {
                Some((kind, q)) => Err(Error::invalid(
                    "weight rule",
                    format!("quality factor of {kind} layers: expected a finite number >= 0, found {q}"),
                )),
                None => Ok(()),
            },
            WeightRule::Sparsity { targets } => check_targets(targets),
        }
    }
}

/// Every target sparsity must lie in `[0, 1)` (NaN does not).
fn check_targets(targets: &BTreeMap<Target, f64>) -> Result<()> {
    match targets.iter().find(|(_, v)| !(0.0..1.0).contains(*v)) {
        Some((key, v)) => Err(Error::invalid(
            "sparsity targets",
            format!("{key}={v}: expected a value in [0, 1)"),
        )),
        None => Ok(()),
    }
}

/// Parses `conv=0.5,dense=0.9,fc1=0.95` against `spec`: every key must be `conv`, `dense` or
/// a conv/dense layer's name, and every value in `[0, 1)`.
pub fn parse_sparsity(text: &str, spec: &ArchSpec) -> Result<BTreeMap<Target, f64>> {
    let names: Vec<&str> = spec.layers.iter().filter_map(|l| l.name()).collect();
    let mut targets = BTreeMap::new();
    for item in text.split(',').filter(|s| !s.trim().is_empty()) {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| Error::invalid("sparsity targets", format!("'{item}': expected NAME=FRACTION")))?;
        let key = key.trim();
        let target = Target::from(key.to_string());
        if matches!(&target, Target::Layer(name) if !names.contains(&name.as_str())) {
            return Err(Error::invalid(
                "sparsity targets",
                format!(
                    "'{key}': no such layer; expected conv, dense or one of {}",
                    names.join(", ")
                ),
            ));
        }
        let v: f64 = value
            .trim()
            .parse()
            .map_err(|_| Error::invalid("sparsity targets", format!("{key}: '{value}' is not a number")))?;
        if targets.insert(target, v).is_some() {
            return Err(Error::invalid(
                "sparsity targets",
                format!("'{key}' is given twice; expected each name once"),
            ));
        }
    }
    if targets.is_empty() {
        return Err(Error::invalid(
            "sparsity targets",
            "expected at least one NAME=FRACTION",
        ));
    }
    check_targets(&targets)?;
    Ok(targets)
}

/// The weight tensors that rules apply to, in layer order: every layer's `weight` of rank 4
/// (conv filters: the `conv` target) or rank 2 (dense: the `dense` target), whatever its kind.
fn prunable(net: &Network) -> Vec<Prunable> {
    net.spec()
        .layers
        .iter()
        .zip(net.infos())
        .filter_map(|(l, info)| {
            let weight = l.params(info.input).into_iter().find(|d| d.role == "weight")?;
            let kind = match weight.shape.len() {
                4 => WeightKind::Conv,
                2 => WeightKind::Dense,
                _ => return None,
            };
            let layer = l.name()?.to_string();
            Some(Prunable {
                param: format!("{layer}.weight"),
                layer,
                kind,
            })
        })
        .collect()
}

/// Flattened values of every parameter, by name.
fn values(net: &Network) -> BTreeMap<String, Vec<f32>> {
    struct Collect(BTreeMap<String, Vec<f32>>);
    impl ParamVisitor for Collect {
        fn visit<const D: usize>(&mut self, name: &str, t: &Tensor<D>) {
            self.0.insert(name.to_string(), t.to_data().iter::<f32>().collect());
        }
    }
    let mut c = Collect(BTreeMap::new());
    net.visit_params(&mut c);
    c.0
}

/// Shape of every parameter, by name.
fn shapes(net: &Network) -> BTreeMap<String, Vec<usize>> {
    struct Collect(BTreeMap<String, Vec<usize>>);
    impl ParamVisitor for Collect {
        fn visit<const D: usize>(&mut self, name: &str, t: &Tensor<D>) {
            self.0.insert(name.to_string(), t.dims().to_vec());
        }
    }
    let mut c = Collect(BTreeMap::new());
    net.visit_params(&mut c);
    c.0
}

/// New masks after step `step` of `steps` under `rule`; never revives a masked weight.
pub fn magnitude_masks(net: &Network, masks: &Masks, rule: &WeightRule, step: usize, steps: usize) -> Masks {
    let vals = values(net);
    let device = net.device().clone().without_autodiff();
    let mut out = masks.clone();
    for Prunable { param, layer, kind } in prunable(net) {
        let w = &vals[&param];
        let old: Vec<f32> = match masks.get(&param) {
            Some(m) => m.to_data().iter::<f32>().collect(),
            None => vec![1.0; w.len()],
        };
        let keep: Vec<bool> = match rule {
            WeightRule::Quality { conv: qc, dense: qd } => {
                let q = match kind {
                    WeightKind::Conv => *qc,
                    WeightKind::Dense => *qd,
                };
                let alive: Vec<f64> = w
                    .iter()
                    .zip(&old)
                    .filter(|(_, m)| **m > 0.0)
                    .map(|(x, _)| f64::from(*x))
                    .collect();
                let n = alive.len().max(1) as f64;
                let mean = alive.iter().sum::<f64>() / n;
                let std = (alive.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
                let threshold = q * std;
                w.iter()
                    .zip(&old)
                    .map(|(x, m)| *m > 0.0 && f64::from(x.abs()) >= threshold)
                    .collect()
            }
            WeightRule::Sparsity { targets } => {
                let Some(target) = targets
                    .get(&Target::Layer(layer))
                    .or(targets.get(&Target::of_kind(kind)))
                else {
                    continue;
                };
                let goal = (target * step as f64 / steps.max(1) as f64 * w.len() as f64).round() as usize;
                // Masked weights first (they are zero), then by magnitude; ties by index.
                let mut order: Vec<usize> = (0..w.len()).collect();
                order.sort_by(|&a, &b| {
                    (old[a] > 0.0)
                        .cmp(&(old[b] > 0.0))
                        .then(w[a].abs().total_cmp(&w[b].abs()))
                        .then(a.cmp(&b))
                });
                let mut keep: Vec<bool> = old.iter().map(|m| *m > 0.0).collect();
                order.into_iter().take(goal).for_each(|i| keep[i] = false);
                keep
            }
        };
        let m: Vec<f32> = keep.into_iter().map(|k| if k { 1.0 } else { 0.0 }).collect();
        let n = m.len();
        out.insert(param, Tensor::from_data(TensorData::new(m, [n]), &device));
    }
    out
}

/// The fraction of every dense layer's weights to zero (the `dense` target of
/// [`WeightRule::Sparsity`], applied in one step) so that `net` keeps at most `max_nonzeros`
/// nonzero parameters, conv weights and biases untouched. `None` when `net` is already there,
/// or when zeroing every dense weight would not get there.
pub fn dense_sparsity_for(net: &Network, max_nonzeros: usize) -> Option<f64> {
    let total = nonzeros(net);
    if total <= max_nonzeros {
        return None;
    }
    let vals = values(net);
    let dense: Vec<&Vec<f32>> = prunable(net)
        .iter()
        .filter(|p| p.kind == WeightKind::Dense)
        .map(|p| &vals[&p.param])
        .collect();
    let dense_nonzeros: usize = dense.iter().map(|w| w.iter().filter(|x| **x != 0.0).count()).sum();
    let allowed = max_nonzeros.checked_sub(total - dense_nonzeros)?;
    let len: usize = dense.iter().map(|w| w.len()).sum();
    // The rule rounds per layer, so step up from the exact fraction until the rounded
    // per-layer counts fit.
    let mut s = 1.0 - allowed as f64 / len.max(1) as f64;
    while s <= 1.0 {
        let kept: usize = dense
            .iter()
            .map(|w| w.len() - (s * w.len() as f64).round() as usize)
            .sum();
        if kept <= allowed {
            return Some(s);
        }
        s += 1.0 / len as f64;
    }
    None
}

/// `net` with every masked weight set to exactly zero, holding `masks` (which replace any it
/// held) through training and pruning.
///
/// # Panics
/// When a mask names no parameter of `net` or has another size (masks that
/// [`magnitude_masks`] made for the same network never do).
pub fn apply_masks(net: Network, masks: &Masks) -> Network {
    struct Apply<'a>(&'a Masks);
    impl ParamMapper for Apply<'_> {
        fn map<const D: usize>(&mut self, name: &str, t: Tensor<D>) -> Tensor<D> {
            match self.0.get(name) {
                Some(m) => {
                    let dims = t.dims();
                    t * m.clone().reshape(dims)
                }
                None => t,
            }
        }
    }
    net.map_params(&mut Apply(masks))
        .with_masks(masks)
        .expect("masks made for this network")
}

/// A weight-pruning schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightSchedule {
    /// The rule.
    pub rule: WeightRule,
    /// Pruning steps (each followed by retraining).
    pub steps: usize,
    /// Retraining and stopping.
    #[serde(flatten)]
    pub retrain: Retrain,
}

impl Pruner for WeightSchedule {
    fn retrain(&self) -> &Retrain {
        &self.retrain
    }

    fn describe(&self) -> String {
        format!(
            "Weight pruning (Han et al. 2015), rule `{}`, {} steps",
            self.rule, self.steps
        )
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("config serializes")
    }

    fn finished(&self, _: &Network, steps_done: usize) -> bool {
        steps_done >= self.steps
    }

    fn prune(
        &self,
        step: usize,
        net: &Network,
        _: &Splits,
        _: usize,
        _: &mut dyn Observer<RelevanceEvent>,
    ) -> Result<Option<Pruned>> {
        let new = magnitude_masks(net, &net.masks(), &self.rule, step, self.steps);
        let pruned = apply_masks(net.clone(), &new);
        let table = sparsity_markdown(&sparsity(&pruned));
        Ok(Some(Pruned {
            net: pruned,
            files: vec![("sparsity.md".into(), table)],
            plots: Vec::new(),
        }))
    }
}

/// Sparsity of one layer's weights.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerSparsity {
    /// Parameter name.
    pub name: String,
    /// Weights.
    pub params: usize,
    /// Nonzero weights.
    pub nonzeros: usize,
    /// Fraction of zero weights.
    pub sparsity: f64,
    /// Bytes as dense f32.
    pub dense_bytes: usize,
    /// Bytes in maxprune's sparse (CSR) encoding.
    pub sparse_bytes: usize,
}

/// Per weight tensor: nonzeros, sparsity, dense and sparse bytes.
pub fn sparsity(net: &Network) -> Vec<LayerSparsity> {
    let vals = values(net);
    let shapes = shapes(net);
    prunable(net)
        .into_iter()
        .map(|Prunable { param, .. }| {
            let w = &vals[&param];
            let nonzeros = w.iter().filter(|x| **x != 0.0).count();
            let rows = shapes[&param][0];
            LayerSparsity {
                sparsity: 1.0 - nonzeros as f64 / w.len().max(1) as f64,
                dense_bytes: 4 * w.len(),
                sparse_bytes: crate::sparse::csr_bytes(rows, w.len() / rows.max(1), nonzeros),
                params: w.len(),
                nonzeros,
                name: param,
            }
        })
        .collect()
}

/// The per-layer sparsity as a Markdown table.
pub fn sparsity_markdown(layers: &[LayerSparsity]) -> String {
    let mut s = String::from(
        "| weights | params | nonzeros | sparsity | dense bytes | sparse bytes |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for l in layers {
        s += &format!(
            "| `{}` | {} | {} | {:.1}% | {} | {} |\n",
            l.name,
            l.params,
            l.nonzeros,
            100.0 * l.sparsity,
            l.dense_bytes,
            l.sparse_bytes
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::presets::Preset;
    use crate::rng::SplitMix64;
    use crate::train::{Sgd, TrainConfig, cross_entropy};
    use burn::tensor::{Device, Int};

    fn targets(conv: f64, dense: f64) -> WeightRule {
        WeightRule::Sparsity {
            targets: BTreeMap::from([(Target::Conv, conv), (Target::Dense, dense)]),
        }
    }

    #[test]
    fn rules_read_in_reports_as_their_flags_write_them() {
        assert_eq!(targets(0.5, 0.9).to_string(), "sparsity, conv 0.5, dense 0.9");
        let rule = WeightRule::Quality { conv: 1.0, dense: 1.5 };
        assert_eq!(rule.to_string(), "quality, conv 1, dense 1.5");
        let spec = Preset::Lenet5.spec();
        let parsed = parse_sparsity("fc1=0.9,conv=0.5", &spec).unwrap();
        assert_eq!(
            (
                parsed.keys().cloned().collect::<Vec<_>>(),
                serde_json::to_string(&parsed).unwrap()
            ),
            (
                vec![Target::Conv, Target::Layer("fc1".into())],
                r#"{"conv":0.5,"fc1":0.9}"#.to_string()
            )
        );
    }

    #[test]
    fn masked_weights_stay_exactly_zero_through_momentum_and_weight_decay() {
        let d = Device::flex();
        let net = Network::init(&Preset::Lenet5Maxout.spec(), 1, &d).unwrap();
        let masks = magnitude_masks(&net, &Masks::new(), &targets(0.5, 0.9), 1, 1);
        let before = values(&net);
        let mut sgd = Sgd::default();
        let mut train = apply_masks(net, &masks).into_trainable();
        let config = TrainConfig::default();
        let mut rng = SplitMix64::new(4);
        for _ in 0..40 {
            let x: Vec<f32> = (0..16 * 784).map(|_| rng.next_f32()).collect();
            let y: Vec<i64> = (0..16).map(|_| rng.below(10) as i64).collect();
            let x = Tensor::<4>::from_data(TensorData::new(x, [16, 1, 28, 28]), &d);
            let y = Tensor::<1, Int>::from_data(TensorData::new(y, [16]), &d);
            let (logits, stats) = train.forward_train(x, &mut rng);
            let grads = cross_entropy(logits, y).backward();
            train = sgd.step(train, &grads, 0.05, &config).with_running_stats(stats);
        }
        let after = values(&train.into_inference());
        for (name, mask) in &masks {
            let m: Vec<f32> = mask.to_data().iter::<f32>().collect();
            let (w0, w1) = (&before[name], &after[name]);
            let zeros = m.iter().filter(|x| **x == 0.0).count();
            assert!(zeros > 0, "{name}");
            for i in 0..m.len() {
                if m[i] == 0.0 {
                    assert_eq!(w1[i], 0.0, "{name}[{i}] was pruned but is {}", w1[i]);
                }
            }
            assert!(
                w0.iter().zip(w1).zip(&m).any(|((a, b), k)| *k > 0.0 && a != b),
                "{name}: surviving weights train"
            );
        }
    }

    #[test]
    fn sparsity_targets_are_met_and_quality_rule_removes_small_weights() {
        let d = Device::flex();
        let net = Network::init(&Preset::Lenet5.spec(), 2, &d).unwrap();
        let masks = magnitude_masks(&net, &Masks::new(), &targets(0.5, 0.9), 1, 2);
        let pruned = apply_masks(net.clone(), &masks);
        for l in sparsity(&pruned) {
            let goal = if l.name.starts_with("conv") { 0.25 } else { 0.45 };
            assert!((l.sparsity - goal).abs() < 0.01, "{}: {} vs {goal}", l.name, l.sparsity);
        }
        // the second step only adds to the first
        let masks2 = magnitude_masks(&pruned, &masks, &targets(0.5, 0.9), 2, 2);
        for (name, m1) in &masks {
            let (a, b): (Vec<f32>, Vec<f32>) = (m1.to_data().iter().collect(), masks2[name].to_data().iter().collect());
            assert!(a.iter().zip(&b).all(|(x, y)| y <= x), "{name}: no weight is revived");
        }
        let q = magnitude_masks(
            &net,
            &Masks::new(),
            &WeightRule::Quality { conv: 1.0, dense: 1.0 },
            1,
            1,
        );
        let vals = values(&net);
        for (name, m) in &q {
            let w = &vals[name];
            let m: Vec<f32> = m.to_data().iter().collect();
            let max_removed = w
                .iter()
                .zip(&m)
                .filter(|(_, k)| **k == 0.0)
                .map(|(x, _)| x.abs())
                .fold(0.0, f32::max);
            let min_kept = w
                .iter()
                .zip(&m)
                .filter(|(_, k)| **k > 0.0)
                .map(|(x, _)| x.abs())
                .fold(f32::MAX, f32::min);
            assert!(max_removed < min_kept, "{name}");
        }
    }

    #[test]
    fn dense_sparsity_for_reaches_a_nonzero_budget_and_no_further() {
        let d = Device::flex();
        let net = Network::init(&Preset::Lenet5Maxout.spec(), 3, &d).unwrap();
        let masks = magnitude_masks(&net, &Masks::new(), &targets(0.6, 0.5), 1, 1);
        let start = apply_masks(net, &masks);
        let budget = (0.08 * crate::report::lenet5_params() as f64) as usize;
        let s = dense_sparsity_for(&start, budget).expect("half the dense weights are too many");
        let (conv, dense) = (0.6, s);
        let pruned = apply_masks(
            start.clone(),
            &magnitude_masks(&start, &masks, &targets(conv, dense), 1, 1),
        );
        let count = nonzeros(&pruned);
        assert!(count <= budget, "{count} > {budget}");
        let dense_len: usize = sparsity(&start)
            .iter()
            .filter(|l| l.name.starts_with("fc"))
            .map(|l| l.params)
            .sum();
        let looser = targets(conv, dense - 5.0 / dense_len as f64);
        let more = apply_masks(start.clone(), &magnitude_masks(&start, &masks, &looser, 1, 1));
        assert!(nonzeros(&more) > budget, "the fraction is the smallest that fits");
        assert_eq!(dense_sparsity_for(&pruned, budget), None, "already within the budget");
        assert_eq!(dense_sparsity_for(&start, 100), None, "conv weights alone exceed 100");
    }

    #[test]
    fn sparsity_flag_errors_name_the_problem() {
        let spec = Preset::Lenet5.spec();
        assert_eq!(parse_sparsity("conv=0.5,fc1=0.9", &spec).unwrap().len(), 2);
        let e = parse_sparsity("fc9=0.5", &spec).unwrap_err().to_string();
        assert!(
            e.contains("fc9") && e.contains("no such layer") && e.contains("conv1"),
            "{e}"
        );
        assert!(
            parse_sparsity("dense=1.0", &spec)
                .unwrap_err()
                .to_string()
                .contains("[0, 1)")
        );
        assert!(parse_sparsity("dense=-0.1", &spec).is_err());
        assert!(
            parse_sparsity("dense", &spec)
                .unwrap_err()
                .to_string()
                .contains("NAME=FRACTION")
        );
    }

    #[test]
    fn sparse_export_round_trips_and_is_smaller_from_half_sparsity() {
        let d = Device::flex();
        let net = Network::init(&Preset::Lenet5Maxout.spec(), 3, &d).unwrap();
        let mut rng = SplitMix64::new(1);
        let x: Vec<f32> = (0..4 * 784).map(|_| rng.next_f32()).collect();
        let x = Tensor::<4>::from_data(TensorData::new(x, [4, 1, 28, 28]), &d);
        for s in [0.5, 0.7, 0.9] {
            let masks = magnitude_masks(&net, &Masks::new(), &targets(s, s), 1, 1);
            let pruned = apply_masks(net.clone(), &masks);
            let bytes = crate::sparse::encode(
                &pruned,
                &crate::sparse::Recorded {
                    dataset: Some(crate::data::dataset::DatasetName::Embedded),
                    ..Default::default()
                },
            );
            assert!(
                bytes.len() < pruned.to_safetensors().len(),
                "sparsity {s}: {} bytes",
                bytes.len()
            );
            let (back, dataset) = crate::sparse::decode(&bytes, "m.mxs", &d).unwrap();
            assert_eq!(dataset.dataset, Some(crate::data::dataset::DatasetName::Embedded));
            let a: Vec<f32> = pruned.forward(x.clone()).into_data().iter().collect();
            let b: Vec<f32> = back.forward(x.clone()).into_data().iter().collect();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn truncated_or_corrupted_sparse_files_are_clear_errors() {
        let d = Device::flex();
        let net = Network::init(&Preset::Lenet5.spec(), 3, &d).unwrap();
        let masks = magnitude_masks(&net, &Masks::new(), &targets(0.5, 0.9), 1, 1);
        let bytes = crate::sparse::encode(&apply_masks(net, &masks), &Default::default());
        let err = |b: &[u8]| {
            crate::sparse::decode(b, "m.mxs", &d)
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };
        let e = err(&bytes[..bytes.len() - 10]);
        assert!(e.contains("m.mxs") && e.contains("truncated"), "{e}");
        let e = err(&bytes[..30]);
        assert!(e.contains("header") && e.contains("truncated"), "{e}");
        let mut bad = bytes.clone();
        let last = bad.len() - 3;
        bad[last] ^= 0x55;
        let e = err(&bad);
        assert!(e.contains("checksum") && e.contains("corrupted"), "{e}");
        assert!(err(b"safetensors?").contains("magic"));
    }
}
