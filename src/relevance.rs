//! Relevance of maxout pieces: criteria that score every piece of every maxout layer (or of
//! the unit layers asked for: a plain conv or dense layer's outputs are units of one piece).
//!
//! The paper's criterion ([`ArgmaxFrequency`]) counts, over a data split and with the network
//! in evaluation mode (no dropout), how often each piece is the maximum of its unit. Pieces are
//! scored as the max sees them: after the `relu` where the spec rectifies them. For a conv
//! maxout layer every spatial position of every example is one contest. Other criteria share
//! the [`Criterion`] trait; none of them knows how tensors are cut.

use burn::tensor::{Tensor, TensorData};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::data::split::Split;
use crate::data::split::batch;
use crate::data::transform::Normalization;
use crate::error::{Error, Result};
use crate::model::finite::check_forward;
use crate::model::layout;
use crate::model::network::{LayerParams, Network};
use crate::model::spec::ArchSpec;
use crate::progress::{Observer, Silent};
use crate::rng::SplitMix64;

/// Who is credited when several pieces of a unit share the maximum.
///
/// With rectified pieces (a `relu` between the producer and the maxout, as in the paper's
/// network) every contest whose pieces are all negative is a tie at 0, and such contests are
/// common. `split` then adds the same share to every piece of the unit, which shifts the
/// unit's scores equally and leaves the order of its pieces as `nobody` has it: the per-unit
/// policy removes the same pieces under either. Policies that compare scores across units
/// (`threshold`, `global`) do differ: under `split` a unit that is often silent has every piece
/// raised towards `1/k`, under `nobody` its pieces keep only their real wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TiePolicy {
    /// The contest's one unit of credit is split equally among the tied pieces.
    #[default]
    Split,
    /// A tied contest credits no piece.
    Nobody,
}

/// The available criteria (closed set, for the CLI and for reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CriterionKind {
    /// How often the piece is its unit's arg-max (the paper's local relevance).
    #[default]
    Argmax,
    /// Mean pre-activation of the piece over the data.
    MeanActivation,
    /// L2 norm of the piece's incoming weights (its row or filter, with its bias).
    WeightNorm,
    /// L1 norm of the piece's incoming weights, bias excluded: on a plain layer's units, the
    /// filter ranking of Li et al. 2017 ("Pruning filters for efficient ConvNets").
    L1Norm,
    /// Seeded uniform random scores: the baseline any criterion must beat.
    Random,
    /// The unit's output magnitude while the piece wins, times the norm of the weights that
    /// read the unit: a unit's pieces sum to its contribution to the next layer (for
    /// `--policy units`).
    Contribution,
}

impl CriterionKind {
    /// The name users type (`--criterion`) and reports show.
    pub fn name(self) -> &'static str {
        match self {
            CriterionKind::Argmax => "argmax",
            CriterionKind::MeanActivation => "mean-activation",
            CriterionKind::WeightNorm => "weight-norm",
            CriterionKind::L1Norm => "l1-norm",
            CriterionKind::Random => "random",
            CriterionKind::Contribution => "contribution",
        }
    }

    /// Whether the sums of a unit's piece scores rank units (`--policy units`): not for
    /// `argmax`, whose frequencies sum to 1 in every unit.
    pub fn ranks_units(self) -> bool {
        self != CriterionKind::Argmax
    }
}

/// Scores of one unit layer (a maxout layer, or a plain layer's units of one piece).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRelevance {
    /// Index of the unit layer in the spec.
    pub layer: usize,
    /// Name of the conv or dense layer that produces the pieces.
    pub producer: String,
    /// Contests seen (examples, times spatial positions for conv); 0 for data-free criteria.
    pub contests: usize,
    /// Raw values per unit and piece: win counts for `argmax`, sums of pre-activations for
    /// `mean-activation`, sums of the winning magnitudes for `contribution`, the score for
    /// data-free criteria.
    pub counts: Vec<Vec<f64>>,
    /// Scores per unit and piece, comparable within the layer: win frequencies in `[0, 1]`
    /// for `argmax` (each unit's sum to 1, or less with ties credited to nobody).
    pub scores: Vec<Vec<f64>>,
}

/// Scores of every maxout layer of one network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Relevance {
    /// The criterion that produced them.
    pub criterion: CriterionKind,
    /// Tie policy (used by `argmax` and `contribution`; the data-free criteria have no ties).
    pub ties: TiePolicy,
    /// Examples scored (0 for data-free criteria).
    pub examples: usize,
    /// Fingerprint of the spec scored; plans and relevance files are checked against it.
    pub spec_fingerprint: String,
    /// One entry per scored unit layer, in spec order (by default every maxout layer).
    pub layers: Vec<LayerRelevance>,
}

impl Relevance {
    /// Checks that these scores were made for `spec`: same fingerprint, unit layers in spec
    /// order, and their piece counts.
    pub fn check_spec(&self, spec: &ArchSpec, source: &str) -> Result<()> {
        let fp = spec.fingerprint();
        if self.spec_fingerprint != fp {
            return Err(Error::invalid(
                "relevance",
                format!(
                    "{source}: made for another spec (fingerprint {}, the network's is {fp})",
                    self.spec_fingerprint
                ),
            ));
        }
        let layers: Vec<usize> = self.layers.iter().map(|l| l.layer).collect();
        if let Some(m) = layers_problem(spec, &layers) {
            return Err(Error::invalid("relevance", format!("{source}: {m}")));
        }
        for l in &self.layers {
            let pieces = spec
                .unit_pieces(l.layer)
                .expect("the layers were checked to be unit layers");
            let found: Vec<usize> = l.scores.iter().map(Vec::len).collect();
            if found != pieces.counts() || l.counts.len() != pieces.units() {
                return Err(Error::invalid(
                    "relevance",
                    format!(
                        "{source}: layer {}: expected {} units with {} pieces each, found scores for {} units \
                         with {found:?} pieces",
                        l.layer,
                        pieces.units(),
                        pieces,
                        found.len()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Checks that `layers` are unit layers of `spec` ([`ArchSpec::unit_layers`]), increasing,
/// at least one.
pub fn check_layers(spec: &ArchSpec, layers: &[usize]) -> Result<()> {
    layers_problem(spec, layers).map_or(Ok(()), |m| Err(Error::invalid("layers", m)))
}

/// What is wrong with `layers` as unit layers of `spec`, if anything.
fn layers_problem(spec: &ArchSpec, layers: &[usize]) -> Option<String> {
    let units = spec.unit_layers();
    if layers.is_empty() {
        return Some(format!(
            "{}: expected at least one layer to score, found none",
            spec.name
        ));
    }
    if let Some(l) = layers.iter().find(|l| !units.contains(l)) {
        return Some(format!(
            "layer {l} of {} is not a unit layer; expected some of {units:?}",
            spec.name
        ));
    }
    layers
        .windows(2)
        .any(|w| w[0] >= w[1])
        .then(|| format!("layers {layers:?}: expected each once, in spec order"))
}

/// Scores every piece of every unit layer asked for (by default, every maxout layer).
pub trait Criterion {
    /// Which criterion this is.
    fn kind(&self) -> CriterionKind;
    /// Scores the pieces of `net`'s unit layers `pass.layers` (checked by [`check_layers`]),
    /// using `pass.data` if the criterion needs data, and reports each batch of a pass over the
    /// data to `obs`.
    fn score_layers(&self, net: &Network, pass: Pass, obs: Listener) -> Result<Relevance>;

    /// [`score_layers`](Self::score_layers) of the default unit layers
    /// ([`ArchSpec::default_unit_layers`]), on pixels scaled to `[0, 1]`
    /// ([`Normalization::default`]).
    fn score_observed(&self, net: &Network, data: &Split, batch: usize, observer: Listener) -> Result<Relevance> {
        let layers = net.spec().default_unit_layers();
        self.score_layers(
            net,
            Pass {
                layers: &layers,
                data,
                batch,
                norm: &Normalization::default(),
            },
            observer,
        )
    }

    /// [`score_observed`](Self::score_observed) with nobody listening.
    fn score(&self, net: &Network, data: &Split, batch_size: usize) -> Result<Relevance> {
        self.score_observed(net, data, batch_size, &mut Silent)
    }
}

/// What a relevance pass scores, and on what.
#[derive(Clone, Copy)]
pub struct Pass<'a> {
    /// The unit layers scored (spec indices, increasing; see [`ArchSpec::unit_layers`]).
    pub layers: &'a [usize],
    /// The examples traced (unused by data-free criteria).
    pub data: &'a Split,
    /// Examples per traced batch.
    pub batch: usize,
    /// How the examples' pixels become inputs (the run's normalisation).
    pub norm: &'a Normalization,
}

/// Who hears of a relevance pass.
pub type Listener<'a> = &'a mut dyn Observer<RelevanceEvent>;

/// A relevance pass's progress (see [`crate::progress`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelevanceEvent {
    /// `done` of the pass's `total` examples have been traced.
    Traced {
        /// Examples traced so far.
        done: usize,
        /// Examples in the pass.
        total: usize,
    },
}

/// Builds the criterion of the given kind.
pub fn criterion(kind: CriterionKind, ties: TiePolicy, seed: u64) -> Box<dyn Criterion> {
    match kind {
        CriterionKind::Argmax => Box::new(ArgmaxFrequency { ties }),
        CriterionKind::MeanActivation => Box::new(MeanActivation),
        CriterionKind::WeightNorm => Box::new(WeightNorm { l1: false }),
        CriterionKind::L1Norm => Box::new(WeightNorm { l1: true }),
        CriterionKind::Random => Box::new(RandomScores { seed }),
        CriterionKind::Contribution => Box::new(Contribution { ties }),
    }
}

/// The paper's local relevance: arg-max frequency, with an explicit tie policy.
pub struct ArgmaxFrequency {
    /// Tie policy.
    pub ties: TiePolicy,
}

/// Mean pre-activation of each piece.
pub struct MeanActivation;

/// How much each piece feeds the next layer: over the contests, the unit's output magnitude
/// `|h_u|` credited to the winning piece (ties follow the tie policy), averaged, times the L2
/// norm of the consumer weights that read unit `u` (1 when no conv or dense layer reads it). A
/// unit's pieces sum to `E|h_u| * ||w_out,u||`, the usual magnitude estimate of what removing
/// the whole unit changes, so units can be ranked by it.
pub struct Contribution {
    /// Tie policy.
    pub ties: TiePolicy,
}

/// A norm of each piece's incoming weights: L2 with the bias, or L1 without it.
pub struct WeightNorm {
    /// L1 of the weights alone (`l1-norm`) instead of L2 of weights and bias (`weight-norm`).
    pub l1: bool,
}

/// Seeded random scores.
pub struct RandomScores {
    /// Seed.
    pub seed: u64,
}

/// The unit layers `layers` (checked): `(layer, pieces per unit, producer name)`.
fn unit_meta(spec: &ArchSpec, layers: &[usize]) -> Result<Vec<(usize, Vec<usize>, String)>> {
    check_layers(spec, layers)?;
    Ok(layers
        .iter()
        .map(|&l| {
            let pieces = spec.unit_pieces(l).expect("checked unit layers");
            (l, pieces.counts(), spec.unit_name(l).to_string())
        })
        .collect())
}

/// Runs the traced forward over `data` and hands the pieces of each of the unit layers
/// `layers`, as `[contests, units, k_max]` values, to `visit(layer_slot, values, contests,
/// units, k_max)`. The first batch's forward pass must be finite
/// ([`check_forward`]).
fn for_each_trace(
    net: &Network,
    Pass {
        layers,
        data,
        batch: size,
        norm,
    }: Pass,
    observer: &mut dyn Observer<RelevanceEvent>,
    mut visit: impl FnMut(usize, &[f32], usize, usize, usize),
) -> Result<()> {
    let net = net.clone().into_inference();
    let order: Vec<usize> = (0..data.len()).collect();
    let mut done = 0;
    for chunk in order.chunks(size.max(1)) {
        let (x, _) = batch(data, chunk, &net.spec().input, norm, net.device());
        let (logits, traces) = net.forward_traced_at(x.clone(), layers);
        if done == 0 {
            check_forward(&net, x, logits)?;
        }
        for (slot, t) in traces.into_iter().enumerate() {
            let [n, units, k] = t.pieces.dims();
            let values: Vec<f32> = t.pieces.into_data().iter::<f32>().collect();
            visit(slot, &values, n, units, k);
        }
        done += chunk.len();
        observer.event(&RelevanceEvent::Traced {
            done,
            total: data.len(),
        });
    }
    Ok(())
}

fn relevance(
    kind: CriterionKind,
    ties: TiePolicy,
    net: &Network,
    examples: usize,
    layers: Vec<LayerRelevance>,
) -> Relevance {
    Relevance {
        criterion: kind,
        ties,
        examples,
        spec_fingerprint: net.spec().fingerprint(),
        layers,
    }
}

/// Runs the traced forward over `data` and folds every contest into per-piece accumulators:
/// `add(row, acc)` sees one unit's real pieces and its accumulators. Returns one
/// [`LayerRelevance`] per unit layer of `pass.layers` with `counts` = the accumulators and `scores`
/// = the accumulators divided by the number of contests.
fn accumulate(
    net: &Network,
    pass: Pass,
    observer: &mut dyn Observer<RelevanceEvent>,
    mut add: impl FnMut(&[f32], &mut [f64]),
) -> Result<Vec<LayerRelevance>> {
    let meta = unit_meta(net.spec(), pass.layers)?;
    let mut acc: Vec<Vec<Vec<f64>>> = meta
        .iter()
        .map(|(_, c, _)| c.iter().map(|&k| vec![0.0; k]).collect())
        .collect();
    let mut contests = vec![0usize; meta.len()];
    for_each_trace(net, pass, observer, |slot, values, n, units, k_max| {
        contests[slot] += n;
        for c in 0..n {
            for (u, unit) in acc[slot].iter_mut().enumerate().take(units) {
                add(&values[(c * units + u) * k_max..][..unit.len()], unit);
            }
        }
    })?;
    Ok(meta
        .into_iter()
        .zip(acc)
        .zip(contests)
        .map(|(((layer, _, producer), counts), contests)| LayerRelevance {
            layer,
            producer,
            contests,
            scores: counts
                .iter()
                .map(|u| u.iter().map(|&c| c / contests.max(1) as f64).collect())
                .collect(),
            counts,
        })
        .collect())
}

impl Criterion for ArgmaxFrequency {
    fn kind(&self) -> CriterionKind {
        CriterionKind::Argmax
    }

    fn score_layers(&self, net: &Network, pass: Pass, obs: Listener) -> Result<Relevance> {
        let mut tied = Vec::new();
        let scored = accumulate(net, pass, obs, |row, wins| {
            credit_winners(row, self.ties, &mut tied, wins, |_| 1.0);
        })?;
        Ok(relevance(self.kind(), self.ties, net, pass.data.len(), scored))
    }
}

/// Credits `value(max)` to the piece of `row` that is the maximum; tied maxima follow `ties`
/// (`tied` is scratch space).
fn credit_winners(row: &[f32], ties: TiePolicy, tied: &mut Vec<usize>, acc: &mut [f64], value: impl Fn(f32) -> f64) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    tied.clear();
    tied.extend((0..row.len()).filter(|&j| row[j] == max));
    match (ties, tied.len()) {
        (_, 1) => acc[tied[0]] += value(max),
        (TiePolicy::Split, t) => tied.iter().for_each(|&j| acc[j] += value(max) / t as f64),
        (TiePolicy::Nobody, _) => {}
    }
}

/// The L2 norm of the consumer weights that read each of the `units` units of the unit layer
/// `layer` (all 1 when no conv or dense layer reads them).
fn consumer_norms(net: &Network, layer: usize, units: usize) -> Vec<f64> {
    let squares = |w: Tensor<2>| -> Vec<f64> {
        (w.clone() * w)
            .sum_dim(1)
            .into_data()
            .iter::<f32>()
            .map(f64::from)
            .collect()
    };
    let Some(rows) = net.spec().consumer_of(layer).and_then(|c| net.params()[c].input_rows()) else {
        return vec![1.0; units];
    };
    let per_input = squares(rows);
    let spatial = per_input.len() / units.max(1);
    (0..units)
        .map(|u| {
            layout::flat_features(&[u], spatial)
                .iter()
                .map(|&f| per_input[f])
                .sum::<f64>()
                .sqrt()
        })
        .collect()
}

impl Criterion for Contribution {
    fn kind(&self) -> CriterionKind {
        CriterionKind::Contribution
    }

    fn score_layers(&self, net: &Network, pass: Pass, obs: Listener) -> Result<Relevance> {
        let mut tied = Vec::new();
        let mut scored = accumulate(net, pass, obs, |row, acc| {
            credit_winners(row, self.ties, &mut tied, acc, |max| f64::from(max.abs()));
        })?;
        for l in &mut scored {
            let norms = consumer_norms(net, l.layer, l.scores.len());
            for (unit, norm) in l.scores.iter_mut().zip(norms) {
                unit.iter_mut().for_each(|s| *s *= norm);
            }
        }
        Ok(relevance(self.kind(), self.ties, net, pass.data.len(), scored))
    }
}

impl Criterion for MeanActivation {
    fn kind(&self) -> CriterionKind {
        CriterionKind::MeanActivation
    }

    fn score_layers(&self, net: &Network, pass: Pass, obs: Listener) -> Result<Relevance> {
        let scored = accumulate(net, pass, obs, |row, sums| {
            sums.iter_mut().zip(row).for_each(|(s, &v)| *s += f64::from(v));
        })?;
        Ok(relevance(
            self.kind(),
            TiePolicy::default(),
            net,
            pass.data.len(),
            scored,
        ))
    }
}

/// Per output row (dense) or filter (conv): the L2 norm (not squared) with the bias, or the
/// L1 norm of the weights alone. Callers pass the producer with a batch norm that follows it
/// folded in ([`Network::folded_params`]), so the norms are of what the units compute.
fn row_norms(params: &LayerParams, l1: bool) -> Vec<f64> {
    let Some((w, b)) = params.output_rows() else {
        return Vec::new();
    };
    let rows = w.dims()[0];
    let norms = if l1 {
        w.abs().sum_dim(1).reshape([rows])
    } else {
        ((w.clone() * w).sum_dim(1).reshape([rows]) + b.clone() * b).sqrt()
    };
    let data: TensorData = norms.into_data();
    data.iter::<f32>().map(f64::from).collect()
}

/// Scores that need no data: `score(layer, pieces per unit)` gives one score per piece of each
/// of the unit layers `layers`.
fn data_free(
    net: &Network,
    layers: &[usize],
    kind: CriterionKind,
    mut score: impl FnMut(usize, &[usize]) -> Vec<Vec<f64>>,
) -> Result<Relevance> {
    let layers = unit_meta(net.spec(), layers)?
        .into_iter()
        .map(|(layer, counts, producer)| {
            let scores = score(layer, &counts);
            LayerRelevance {
                layer,
                producer,
                contests: 0,
                counts: scores.clone(),
                scores,
            }
        })
        .collect();
    Ok(relevance(kind, TiePolicy::default(), net, 0, layers))
}

impl Criterion for WeightNorm {
    fn kind(&self) -> CriterionKind {
        if self.l1 {
            CriterionKind::L1Norm
        } else {
            CriterionKind::WeightNorm
        }
    }

    fn score_layers(&self, net: &Network, pass: Pass, _: Listener) -> Result<Relevance> {
        let spec = net.spec();
        data_free(net, pass.layers, self.kind(), |layer, counts| {
            let pieces = spec.unit_pieces(layer).expect("data_free visits unit layers");
            let p = spec.producer_of(layer).expect("a unit layer has a producer");
            let norms = row_norms(&net.folded_params(p), self.l1);
            counts
                .iter()
                .enumerate()
                .map(|(u, &k)| (0..k).map(|j| norms[layout::piece_index(&pieces, u, j)]).collect())
                .collect()
        })
    }
}

impl Criterion for RandomScores {
    fn kind(&self) -> CriterionKind {
        CriterionKind::Random
    }

    fn score_layers(&self, net: &Network, pass: Pass, _: Listener) -> Result<Relevance> {
        data_free(net, pass.layers, self.kind(), |layer, counts| {
            let mut rng = SplitMix64::derive(self.seed, "random-relevance", layer as u64);
            counts
                .iter()
                .map(|&k| (0..k).map(|_| f64::from(rng.next_f32())).collect())
                .collect()
        })
    }
}
