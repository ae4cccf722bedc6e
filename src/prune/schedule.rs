//! Iterative neuron pruning with retraining: relevance -> plan -> apply -> retrain -> evaluate,
//! step after step, each step a run directory of its own, with a validation stopping rule.
//!
//! Layout of the output directory:
//!
//! | path | content |
//! |---|---|
//! | `schedule.json` | the [`ScheduleConfig`] and the source run's absolute path |
//! | `step-NN/` | a normal run directory, plus `relevance.json`, `plan.json` and `step.json` |
//! | `report.json`, `report.md` | one [`StepRow`] per step |
//! | `accuracy-vs-params.svg`, `relevance-step-NN.svg` | plots |
//!
//! `step.json` is written last: a step directory without it is unfinished and is resumed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::neuron::apply;
use super::plan::{PLAN_FORMAT_VERSION, PrunePlan};
use super::pruner::{Pruned, Pruner, Retrain, nonzeros};
use super::select::{
    CostModel, LayerBudget, LayerCut, Policy, select, select_each, select_each_costed, unit_layers_once,
};
use super::stop::{BenchSteps, Ended, FlopTarget, PairedChange, StopRule};
use crate::bench::{SPEEDUP_ROUNDS, Speedup, layer_profile, lenet5_reference, speedups};
use crate::data::dataset::{Dataset, DatasetName};
use crate::error::{Error, Result};
use crate::fsio;
use crate::model::network::Network;
use crate::model::spec::ArchSpec;
use crate::progress::{Observer, forward};
use crate::relevance::{CriterionKind, Pass, Relevance, RelevanceEvent, TiePolicy, criterion};
use crate::report::{self, StepRow, VsLenet5, lenet5_params_for};
use crate::train::RunDir;
use crate::train::{Checkpoint, Event, Fingerprint, Splits, Teacher, TrainConfig, evaluate, evaluate_with_hits, train};

/// The piece count a schedule stops at: `until_k` when given; without it and without a step
/// limit, one piece per unit (the paper's end point); with only a step limit, none.
pub fn default_until_k(until_k: Option<usize>, steps: Option<usize>) -> Option<usize> {
    until_k.or(if steps.is_none() { Some(1) } else { None })
}

/// A neuron-pruning schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleConfig {
    /// Relevance criterion.
    pub criterion: CriterionKind,
    /// Tie policy of the arg-max criterion.
    pub ties: TiePolicy,
    /// Selection policy.
    pub policy: Policy,
    /// Stop once every unit has at most this many pieces.
    pub until_k: Option<usize>,
    /// Stop after this many steps.
    pub steps: Option<usize>,
    /// Control run: identical retraining, but nothing is pruned.
    pub control: bool,
    /// Unit layers scored and pruned, by the name of the layer producing their units (empty:
    /// [`ArchSpec::default_unit_layers`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
    /// Per-layer budgets of whole units, reached in equal increments over `steps` (the policy
    /// must be `units`; its own fraction is then unused). Only these layers are scored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<LayerBudget>,
    /// Stop once the network's FLOPs come down to this target (the policy must be `cost`; each
    /// step then removes at most the FLOPs still above the target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<FlopTarget>,
    /// What the cost policy ranks units' costs by: FLOPs, or time measured on the starting
    /// network (the policy must be `cost`).
    #[serde(default, skip_serializing_if = "CostModel::is_flops")]
    pub cost: CostModel,
    /// Retraining and stopping.
    #[serde(flatten)]
    pub retrain: Retrain,
}

impl ScheduleConfig {
    /// Checks the schedule before any work: the policy's number, at least 1 piece per unit to
    /// stop at, at least 1 step, and the retraining settings.
    pub fn validate(&self) -> Result<()> {
        self.policy.validate()?;
        if self.until_k == Some(0) {
            return Err(Error::invalid(
                "schedule",
                "until k: expected at least 1 piece per unit, found 0",
            ));
        }
        if self.steps == Some(0) {
            return Err(Error::invalid("schedule", "steps: expected at least 1, found 0"));
        }
        if !self.budgets.is_empty() {
            if !matches!(self.policy, Policy::Units { .. }) {
                return Err(Error::invalid(
                    "schedule",
                    format!(
                        "per-layer fractions are budgets of whole units: expected the units policy, found {}",
                        self.policy
                    ),
                ));
            }
            if self.steps.is_none() {
                return Err(Error::invalid(
                    "schedule",
                    "per-layer fractions are reached over a number of steps: expected steps, found none",
                ));
            }
        }
        if self.target.is_some() && !matches!(self.policy, Policy::Cost { .. }) {
            return Err(Error::invalid(
                "schedule",
                format!(
                    "a FLOP target is reached by removing units by their cost: expected the cost policy, found {}",
                    self.policy
                ),
            ));
        }
        if !self.cost.is_flops() {
            self.check_measured()?;
        }
        self.retrain.validate()
    }

    /// A measured cost ranks the units of the cost policy.
    fn check_measured(&self) -> Result<()> {
        if matches!(self.policy, Policy::Cost { .. }) {
            return Ok(());
        }
        Err(Error::invalid(
            "schedule",
            format!(
                "a measured cost ranks units by their time: expected the cost policy, found {}",
                self.policy
            ),
        ))
    }

    /// This schedule with its units ranked by time measured on `net`, the network it starts
    /// from, or recorded by the schedule it resumes in `out` ([`measured_cost`]); refused
    /// before anything is measured unless the policy is `cost`.
    pub fn with_measured_cost(self, net: &Network, out: &Path) -> Result<ScheduleConfig> {
        self.check_measured()?;
        Ok(ScheduleConfig {
            cost: measured_cost(net, out)?,
            ..self
        })
    }

    /// The paper's schedule: arg-max relevance (ties split), one piece removed per unit and
    /// step, until every unit has `until_k` pieces or after `steps` steps.
    pub fn paper(until_k: Option<usize>, steps: Option<usize>, retrain: Retrain) -> Self {
        ScheduleConfig {
            criterion: CriterionKind::Argmax,
            ties: TiePolicy::Split,
            policy: Policy::PerUnit { n: 1 },
            until_k,
            steps,
            control: false,
            layers: Vec::new(),
            budgets: Vec::new(),
            target: None,
            cost: CostModel::Flops,
            retrain,
        }
    }

    /// The unit layers a step scores in `spec`: the budgets' layers, the named layers, or the
    /// default ones; a layer named twice is an error.
    pub fn scored_layers(&self, spec: &ArchSpec) -> Result<Vec<usize>> {
        if self.budgets.is_empty() {
            unit_layers_once(&self.layers, spec)
        } else {
            unit_layers_once(&self.budgets.iter().map(|b| b.layer.clone()).collect::<Vec<_>>(), spec)
        }
    }

    /// Whether a step removes whole units (the units or cost policy, or per-layer budgets),
    /// which never lowers a unit's piece count.
    fn removes_units(&self) -> bool {
        !self.budgets.is_empty() || matches!(self.policy, Policy::Units { .. } | Policy::Cost { .. })
    }

    /// The largest piece count among the scored maxout layers of `spec` (`None` when none of
    /// the scored layers is a maxout layer).
    fn scored_k_max(&self, spec: &ArchSpec) -> Result<Option<usize>> {
        Ok(self
            .scored_layers(spec)?
            .into_iter()
            .filter_map(|l| spec.pieces(l).map(|p| p.k_max()))
            .max())
    }

    /// Checks the schedule against the network it starts from, before anything is written: the
    /// scored layers are unit layers of `spec`, each named once; whole units are ranked by a
    /// criterion whose scores rank them, and counted in steps (removing units never lowers k,
    /// so a piece count cannot stop it); pieces are removed from maxout layers, down to a
    /// piece count below the scored layers' largest.
    pub fn check_network(&self, spec: &ArchSpec) -> Result<()> {
        let k = self.scored_k_max(spec)?;
        let until_k = default_until_k(self.until_k, self.steps);
        let bad = |m: String| Err(Error::invalid("schedule", m));
        if self.control {
            return Ok(());
        }
        if self.removes_units() {
            if !self.criterion.ranks_units() {
                return bad(format!(
                    "whole units are removed by their summed scores, and {} scores sum to 1 in every unit, so \
                     they cannot rank units; use the contribution or another criterion",
                    self.criterion.name()
                ));
            }
            if let Some(t) = &self.target {
                let fewest = spec.flops_keeping_one_unit(&self.scored_layers(spec)?)?;
                if t.flops() < fewest {
                    return bad(format!(
                        "FLOP ratio {} (at most {} FLOPs per example) cannot be reached: removing every unit \
                         but one in each scored layer ({}) leaves {fewest}",
                        t.ratio,
                        t.flops(),
                        self.scored_names(spec)?
                    ));
                }
            } else if self.steps.is_none() {
                return bad(
                    "removing whole units never lowers a unit's piece count, so it is stopped by a number \
                     of steps: expected steps, found none"
                        .into(),
                );
            }
            if let Some(until_k) = self.until_k {
                return bad(format!(
                    "until k = {until_k}: removing whole units never lowers a unit's piece count, so it \
                     cannot stop the schedule; give only a number of steps"
                ));
            }
            return Ok(());
        }
        match (k, until_k) {
            (None, _) => bad(format!(
                "the policy {} removes pieces of maxout units, and the scored layers ({}) have units \
                 of one piece; remove whole units (the units policy) or score maxout layers",
                self.policy,
                self.scored_names(spec)?
            )),
            (Some(k), Some(until_k)) if k <= until_k => bad(format!(
                "until k = {until_k}: the scored layers ({}) have at most {k} pieces per unit already, \
                 so there is nothing to prune",
                self.scored_names(spec)?
            )),
            _ => Ok(()),
        }
    }

    /// The scored layers of `spec` by name, for messages.
    fn scored_names(&self, spec: &ArchSpec) -> Result<String> {
        let names: Vec<&str> = self
            .scored_layers(spec)?
            .into_iter()
            .map(|l| spec.unit_name(l))
            .collect();
        Ok(names.join(", "))
    }

    /// Units each budgeted layer of `spec` loses in step `step`: `(layer, units)`.
    fn budget_cuts(&self, spec: &ArchSpec, step: usize) -> Result<Vec<(usize, usize)>> {
        let steps = self.steps.unwrap_or(1);
        self.budgets
            .iter()
            .map(|b| {
                let layer = spec.unit_layers_named(std::slice::from_ref(&b.layer))?[0];
                let now = spec.unit_pieces(layer).expect("a unit layer").units();
                let removed = b.units.saturating_sub(now);
                Ok((layer, b.removed_after(step, steps).saturating_sub(removed)))
            })
            .collect()
    }
}

impl Pruner for ScheduleConfig {
    fn retrain(&self) -> &Retrain {
        &self.retrain
    }

    fn describe(&self) -> String {
        if self.control {
            "Control run: identical retraining, nothing pruned".into()
        } else {
            let mut s = format!("Neuron pruning, criterion `{}`, ", self.criterion.name());
            if self.budgets.is_empty() {
                s += &format!("policy `{}`", self.policy);
            } else {
                let b: Vec<String> = self
                    .budgets
                    .iter()
                    .map(|b| format!("{} {}", b.layer, b.fraction))
                    .collect();
                s += &format!("whole units, per-layer budgets `{}`", b.join(", "));
            }
            if !self.layers.is_empty() {
                s += &format!(", layers `{}`", self.layers.join(", "));
            }
            if let CostModel::Measured { profile } = &self.cost {
                s += &format!(", cost measured (batch {})", profile.batch);
            }
            if let Some(t) = &self.target {
                s += &format!(
                    ", until FLOP ratio {} against {} ({} FLOPs per example)",
                    t.ratio,
                    t.against
                        .as_ref()
                        .map_or("the start".into(), |p| format!("`{}`", p.display())),
                    t.flops()
                );
            }
            s
        }
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("config serializes")
    }

    fn check(&self, spec: &ArchSpec) -> Result<()> {
        self.check_network(spec)
    }

    fn target(&self) -> Option<&FlopTarget> {
        self.target.as_ref()
    }

    fn finished(&self, net: &Network, steps_done: usize) -> bool {
        let until_k = default_until_k(self.until_k, self.steps).filter(|_| !self.control && !self.removes_units());
        let k = self
            .scored_k_max(net.spec())
            .expect("the scored layers were checked against the starting network, and pruning keeps every unit layer");
        let reached = self
            .target
            .as_ref()
            .is_some_and(|t| net.spec().flops().is_ok_and(|f| f <= t.flops()));
        self.steps.is_some_and(|n| steps_done >= n)
            || until_k.is_some_and(|until_k| k.is_some_and(|k| k <= until_k))
            || (reached && !self.control)
    }

    fn prune(
        &self,
        step: usize,
        net: &Network,
        splits: &Splits,
        batch: usize,
        observer: &mut dyn Observer<RelevanceEvent>,
    ) -> Result<Option<Pruned>> {
        let layers = self.scored_layers(net.spec())?;
        let rel = criterion(self.criterion, self.ties, self.retrain.seed).score_layers(
            net,
            Pass {
                layers: &layers,
                data: &splits.train,
                batch,
                norm: &splits.norm,
            },
            observer,
        )?;
        let plan = if self.control {
            PrunePlan {
                format_version: PLAN_FORMAT_VERSION,
                spec_fingerprint: net.spec().fingerprint(),
                layers: Vec::new(),
            }
        } else if let Policy::Cost { fraction } = self.policy {
            // The step removes its share of the FLOPs, or only what stays above the target.
            let now = net.spec().flops()? as f64;
            let budget = self
                .target
                .as_ref()
                .map_or(fraction * now, |t| (fraction * now).min(now - t.flops() as f64));
            select_each_costed(&rel, net.spec(), |_| LayerCut::Flops(budget), &self.cost)?
        } else if self.budgets.is_empty() {
            select(&rel, net.spec(), self.policy)?
        } else {
            let cuts = self.budget_cuts(net.spec(), step)?;
            select_each(&rel, net.spec(), |l| {
                LayerCut::Units(cuts.iter().find(|c| c.0 == l).map_or(0, |c| c.1))
            })?
        };
        let removes = plan.layers.iter().any(|l| {
            let pieces = net
                .spec()
                .unit_pieces(l.layer)
                .expect("a validated plan names unit layers");
            l.keep.iter().map(Vec::len).sum::<usize>() < pieces.total()
        });
        if !self.control && !removes {
            return Ok(None);
        }
        Ok(Some(Pruned {
            net: apply(net, &plan)?,
            files: vec![
                (
                    "relevance.json".into(),
                    serde_json::to_string_pretty(&rel).expect("serializes"),
                ),
                ("plan.json".into(), plan.to_json()),
            ],
            plots: relevance_plots(&rel)?,
        }))
    }
}

/// The batch size a measured cost is profiled at.
pub const COST_PROFILE_BATCH: usize = 256;

/// The measured cost model of a schedule writing to `out` from `net`: the one `out`'s
/// `schedule.json` records, when it records one (a resumed schedule ranks as it started);
/// otherwise a new [`layer_profile`] of `net` at [`COST_PROFILE_BATCH`] over
/// [`SPEEDUP_ROUNDS`] rounds, once its buffers at that batch are checked
/// ([`check_batch`](crate::memory::check_batch)).
pub fn measured_cost(net: &Network, out: &Path) -> Result<CostModel> {
    let saved = out.join("schedule.json");
    if saved.exists() {
        let config: serde_json::Value = fsio::read_json(&saved)?;
        if let Some(cost) = config.get("cost") {
            let cost: CostModel =
                serde_json::from_value(cost.clone()).map_err(|e| Error::parse(saved.display().to_string(), e))?;
            if !cost.is_flops() {
                return Ok(cost);
            }
        }
    }
    crate::memory::check_batch(net.spec(), COST_PROFILE_BATCH, false)?;
    Ok(CostModel::Measured {
        profile: layer_profile(net, COST_PROFILE_BATCH, SPEEDUP_ROUNDS)?,
    })
}

/// The result of a schedule.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleReport {
    /// The run directory pruned (absolute; older reports may hold the path as given on the
    /// command line).
    pub source: PathBuf,
    /// What the schedule does.
    pub description: String,
    /// The configuration.
    pub config: serde_json::Value,
    /// Step 0 (the starting network) and every step run.
    pub rows: Vec<StepRow>,
    /// The last step within tolerance (0: none was).
    pub final_step: usize,
    /// The validation accuracy the tolerance counted from, when another run's
    /// (`tolerance_against`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance_from: Option<f64>,
    /// What ended the schedule (absent in reports written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<Ended>,
}

fn step_dir(out: &Path, step: usize) -> PathBuf {
    out.join(format!("step-{step:02}"))
}

/// A finished step's [`Fingerprint`], written just before its `step.json`.
const STEP_FINGERPRINT: &str = "fingerprint.json";

/// Checks that the finished step in `dir` still holds the network it finished with (steps
/// finished before the fingerprint was recorded hold none to check).
fn check_step(dir: &Path) -> Result<()> {
    let path = dir.join(STEP_FINGERPRINT);
    if !path.exists() {
        return Ok(());
    }
    fsio::read_json::<Fingerprint>(&path)?.check(
        dir,
        "the step finished; the schedule's later steps and report were made from the network it finished with",
    )
}

/// Pieces per unit of every maxout layer, as text and as a histogram.
fn pieces_of(spec: &ArchSpec) -> (Vec<String>, Vec<Vec<usize>>) {
    spec.maxouts()
        .into_iter()
        .map(|(_, pieces)| {
            let mut hist = vec![0; pieces.k_max() + 1];
            pieces.counts().into_iter().for_each(|c| hist[c] += 1);
            (pieces.to_string(), hist)
        })
        .unzip()
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    fsio::write_atomic(
        path,
        serde_json::to_string_pretty(value).expect("serializes").as_bytes(),
    )
}

/// A network's scores: whether it classified each validation example correctly (in split
/// order; `None` without a validation split) and its test accuracy.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// Per-example validation hits.
    pub val: Option<Vec<bool>>,
    /// Test accuracy.
    pub test: f64,
}

impl Scores {
    /// Validation accuracy (when carved) and test accuracy.
    pub fn accuracies(&self) -> (Option<f64>, f64) {
        (self.val.as_deref().map(hit_rate), self.test)
    }
}

/// The fraction of `hits` that are hits (0 when there are none).
fn hit_rate(hits: &[bool]) -> f64 {
    hits.iter().filter(|&&hit| hit).count() as f64 / hits.len().max(1) as f64
}

/// Evaluates a network on the validation (if any) and test splits.
fn scores(net: &Network, splits: &Splits, batch: usize) -> Result<Scores> {
    let val = splits
        .val
        .as_ref()
        .map(|v| evaluate_with_hits(net, v, splits.classes, batch, &splits.norm))
        .transpose()?;
    Ok(Scores {
        val: val.map(|(_, hits)| hits),
        test: evaluate(net, &splits.test, splits.classes, batch, &splits.norm)?.accuracy,
    })
}

/// A schedule's progress (see [`crate::progress`]): its steps' relevance passes and
/// retraining, and every finished row (resumed ones included).
#[derive(Debug, Clone)]
pub enum ScheduleEvent {
    /// A step's relevance pass.
    Relevance(RelevanceEvent),
    /// A step's retraining.
    Train(Event),
    /// A row of the schedule's table is final.
    Row(Box<StepRow>),
}

/// What a schedule needs from outside: the device its networks are loaded on, and the work
/// that takes time: retraining a step, measuring accuracy, timing a network. [`run_schedule`]
/// does it for real ([`Retraining`]); the schedule's rules are tested with a fake that trains
/// nothing.
pub trait StepWork {
    /// The device networks are loaded on.
    fn device(&self) -> &Device;
    /// Receives the schedule's progress.
    fn observer(&mut self) -> &mut dyn Observer<ScheduleEvent>;
    /// Trains the step's run directory to its configured epochs (resuming a started one).
    fn train(&mut self, run: &RunDir, splits: &Splits) -> Result<Checkpoint>;
    /// Validation hits (if carved) and test accuracy of `net`.
    fn scores(&mut self, net: &Network, splits: &Splits, batch: usize) -> Result<Scores>;
    /// Measured inference speedups of `net` at batch 1, 64 and 256 against the starting network
    /// `base` (none when `base` is `None`, at step 0) and against plain LeNet-5 (none for a network
    /// without its input).
    fn speedups(&mut self, base: Option<&Network>, net: &Network) -> (Vec<Speedup>, Vec<Speedup>);
}

/// The real [`StepWork`]: [`train`], evaluation, and [`speedups`] over alternating rounds.
pub struct Retraining<'a> {
    /// Where the networks are loaded and retrained.
    pub device: &'a Device,
    /// Receives the schedule's progress.
    pub observer: &'a mut dyn Observer<ScheduleEvent>,
}

impl StepWork for Retraining<'_> {
    fn device(&self) -> &Device {
        self.device
    }

    fn observer(&mut self) -> &mut dyn Observer<ScheduleEvent> {
        self.observer
    }

    fn train(&mut self, run: &RunDir, splits: &Splits) -> Result<Checkpoint> {
        train(
            run,
            splits,
            self.device,
            &mut forward(self.observer, ScheduleEvent::Train),
        )
    }

    fn scores(&mut self, net: &Network, splits: &Splits, batch: usize) -> Result<Scores> {
        scores(net, splits, batch)
    }

    fn speedups(&mut self, base: Option<&Network>, net: &Network) -> (Vec<Speedup>, Vec<Speedup>) {
        let start = base.map_or_else(Vec::new, |b| speedups(b, net, SPEEDUP_ROUNDS));
        let lenet = lenet5_reference(net).map_or_else(Vec::new, |l| speedups(&l, net, SPEEDUP_ROUNDS));
        (start, lenet)
    }
}

/// Refuses, before anything is written, an output that is a run directory or the source, a
/// validation split the starting network was not trained with, a validation dataset other than
/// the one `config` names, and a run to count the tolerance from that was trained on another
/// dataset or carve; checks the settings and that
/// the networks predict the dataset's classes. Returns the starting run's recipe.
fn check_start(source: &RunDir, out: &Path, config: &Retrain, data: &Dataset) -> Result<TrainConfig> {
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if out.join("spec.json").exists() || same(out, source.path()) {
        return Err(Error::invalid(
            "output directory",
            format!(
                "{}: holds a run directory (or is the starting run {}); expected a new or schedule directory",
                out.display(),
                source.path().display()
            ),
        ));
    }
    let base_train = source.config()?;
    if config.val > 0 && base_train.val != config.val {
        return Err(Error::invalid(
            "schedule",
            format!(
                "val = {}: the starting network in {} was trained with val = {}, so it has seen (some of) these \
                 validation examples and the stopping rule would compare against an inflated accuracy; train it \
                 with val = {} (the same fixed carve), or set val = 0 to disable the stopping rule",
                config.val,
                source.path().display(),
                base_train.val,
                config.val
            ),
        ));
    }
    let given = data.validation.as_ref().map(|v| &v.name);
    if given != config.val_dataset.as_ref() {
        let name = |n: Option<&DatasetName>| n.map_or_else(|| "none".to_string(), ToString::to_string);
        return Err(Error::invalid(
            "schedule",
            format!(
                "validation dataset: expected {} (the schedule's), found {} (the data's)",
                name(config.val_dataset.as_ref()),
                name(given)
            ),
        ));
    }
    if let Some(path) = &config.tolerance_against {
        let reference = RunDir::open(path)?.config()?;
        if reference.dataset != config.dataset {
            return Err(Error::invalid(
                "schedule",
                format!(
                    "tolerance against {}: it was trained on {}, the schedule retrains on {}; its validation \
                     accuracy is only comparable on the same dataset",
                    path.display(),
                    reference.dataset,
                    config.dataset
                ),
            ));
        }
        crate::train::check_classes(&RunDir::open(path)?.spec()?, data.classes, &path.display().to_string())?;
        let trained = reference.val;
        // A validation dataset of its own is unseen by both networks alike.
        if config.val_dataset.is_none() && (config.val == 0 || trained != config.val) {
            return Err(Error::invalid(
                "schedule",
                format!(
                    "tolerance against {}: it was trained with val = {trained}, the schedule uses val = {}; its \
                     validation accuracy must be measured on validation examples it never saw, the same as \
                     the schedule's",
                    path.display(),
                    config.val
                ),
            ));
        }
    }
    config.validate()?;
    crate::train::check_classes(&source.spec()?, data.classes, &data.name.to_string())?;
    Ok(base_train)
}

/// A schedule directory as a command's output, for [`fsio::check_output`]: `schedule.json` is
/// written into it first.
pub const SCHEDULE_OUTPUT: fsio::OutputKind = fsio::OutputKind::Dir {
    marker: "schedule.json",
    what: "a schedule directory",
};

/// Creates the schedule directory with its `schedule.json` (the configuration, the source
/// run's absolute path and its [`Fingerprint`]), or, resuming, checks that the saved
/// configuration is this one and that the schedule started from `source` as it is now: the
/// same path and content, so a source retrained or replaced since is refused (schedules written
/// before the path or the fingerprint was recorded are checked on what they record).
fn open_schedule(out: &Path, config_json: &serde_json::Value, source: &Path, resume: bool) -> Result<()> {
    let cfg_path = out.join("schedule.json");
    let source_dir = source;
    let source = source.display().to_string();
    if !cfg_path.exists() {
        let fingerprint = Fingerprint::of(source_dir)?;
        fsio::create_dir(out)?;
        let mut saved = config_json.clone();
        if let Some(map) = saved.as_object_mut() {
            map.insert("source".into(), source.into());
            map.insert(
                "source_fingerprint".into(),
                serde_json::to_value(fingerprint).expect("serializes"),
            );
        }
        return write_json(&cfg_path, &saved);
    }
    if !resume {
        return Err(Error::Occupied {
            path: out.to_path_buf(),
            holds: "a schedule (schedule.json)",
            resumable: true,
        });
    }
    let mut saved: serde_json::Value = fsio::read_json(&cfg_path)?;
    let started = saved.as_object_mut().and_then(|m| m.remove("source"));
    let recorded = saved.as_object_mut().and_then(|m| m.remove("source_fingerprint"));
    if let Some(started) = started
        .and_then(|s| s.as_str().map(str::to_string))
        .filter(|s| *s != source)
    {
        return Err(Error::invalid(
            "schedule",
            format!(
                "{} started from {started}, not from {source}: resuming it would continue another network's \
                 steps; use another output directory",
                out.display()
            ),
        ));
    }
    if &saved != config_json {
        return Err(Error::invalid(
            "schedule",
            format!("resuming with options that differ from {}", cfg_path.display()),
        ));
    }
    if let Some(recorded) = recorded {
        let recorded: Fingerprint =
            serde_json::from_value(recorded).map_err(|e| Error::parse(cfg_path.display().to_string(), e))?;
        recorded.check(
            source_dir,
            &format!(
                "the schedule in {} started from it; resuming would continue with steps pruned from the old \
                 network; use another output directory",
                out.display()
            ),
        )?;
    }
    Ok(())
}

/// The recipe of every step's retraining: the starting run's, with the schedule's epochs,
/// seed, validation split, learning rate and teacher.
fn retrain_config(config: &Retrain, base_train: TrainConfig, source: &RunDir) -> Result<TrainConfig> {
    let retrain = TrainConfig {
        dataset: config.dataset.clone(),
        epochs: config.retrain_epochs,
        base_lr: config.retrain_lr.unwrap_or(base_train.base_lr),
        seed: config.seed,
        val: config.val,
        teacher: match config.distill {
            Some(d) => Some(Teacher {
                fingerprint: Some(Fingerprint::of(source.path())?),
                ..Teacher::new(fsio::absolute(source.path())?.display().to_string(), d)
            }),
            None => None,
        },
        ..base_train
    };
    retrain.validate()?;
    Ok(retrain)
}

/// The validation hits of the run the tolerance counts from (`tolerance_against`; its
/// dataset, classes and carve were checked by [`check_start`]).
fn reference_hits(c: &Retrain, splits: &Splits, batch: usize, work: &mut dyn StepWork) -> Result<Option<Vec<bool>>> {
    let Some(path) = &c.tolerance_against else {
        return Ok(None);
    };
    let net = RunDir::open(path)?.network(work.device())?;
    Ok(work.scores(&net, splits, batch)?.val)
}

/// The starting network and what every row is measured against.
struct Start {
    net: Network,
    nonzeros: usize,
    flops: usize,
    accuracy: (Option<f64>, f64),
    tolerance: f64,
    rule: StopRule,
    /// The validation accuracy the tolerance counts from, when not the start's own.
    reference: Option<f64>,
    /// Validation hits of the network the tolerance counts from (the reference's or the start's).
    hits: Option<Vec<bool>>,
}

impl Start {
    /// Whether a step with validation accuracy `val` and paired change `change` is kept
    /// (always, without a validation split).
    fn accepts(&self, val: Option<f64>, change: Option<&PairedChange>) -> bool {
        match (self.reference.or(self.accuracy.0), val) {
            (Some(v0), Some(v)) => self.rule.keeps(self.tolerance, v0, v, change),
            _ => true,
        }
    }

    /// Whether a step scored `scores` is kept.
    fn accepts_scores(&self, scores: &Scores) -> bool {
        self.accepts(scores.accuracies().0, self.change(scores).as_ref())
    }

    /// The paired validation change from the network the tolerance counts from to one scored
    /// `scores`.
    fn change(&self, scores: &Scores) -> Option<PairedChange> {
        Some(PairedChange::of(self.hits.as_ref()?, scores.val.as_ref()?))
    }

    /// The report row of `net` after step `step`, untimed; `change` is the paired validation
    /// change after retraining.
    fn row(
        &self,
        step: usize,
        net: &Network,
        [before, after]: [(Option<f64>, f64); 2],
        change: Option<PairedChange>,
        seconds: f64,
    ) -> StepRow {
        let flops = net.spec().flops().unwrap_or(1).max(1) as f64;
        let (pieces, pieces_histogram) = pieces_of(net.spec());
        let nz = nonzeros(net);
        StepRow {
            step,
            pieces,
            pieces_histogram,
            params: net.num_params(),
            nonzeros: nz,
            removed_vs_start: 100.0 * (1.0 - nz as f64 / self.nonzeros as f64),
            removed_vs_lenet5: lenet5_params_for(net.spec()).map(|p| 100.0 * (1.0 - nz as f64 / p as f64)),
            flops: net.spec().flops().unwrap_or(0),
            flop_ratio: self.flops as f64 / flops,
            speedup: None,
            vs_lenet5: None,
            speedups: Vec::new(),
            val_before: before.0,
            test_before: before.1,
            val_after: after.0,
            test_after: after.1,
            val_change: change,
            seconds,
            accepted: self.accepts(after.0, change.as_ref()),
            recovery_epochs: 0,
        }
    }
}

/// Times `net` (the network of `row`) against `start` (none at step 0) and plain LeNet-5, and
/// records the speedups in `row`.
fn time_row(row: &mut StepRow, start: Option<&Network>, net: &Network, work: &mut dyn StepWork) {
    let (speedups, lenet) = work.speedups(start, net);
    let flops = net.spec().flops().unwrap_or(1).max(1) as f64;
    let lenet_flops = crate::model::presets::Preset::Lenet5.spec().flops().unwrap_or(0) as f64;
    row.speedup = speedups.iter().find(|s| s.batch == 256).copied();
    row.vs_lenet5 = (!lenet.is_empty()).then(|| VsLenet5 {
        flop_ratio: lenet_flops / flops,
        speedups: lenet,
    });
    row.speedups = speedups;
}

/// Runs (or resumes) a pruning schedule on the network in `source`, writing into `out`, with
/// the networks on `device`; progress, every finished row included, goes to `observer`.
pub fn run_schedule(
    source: &RunDir,
    out: &Path,
    pruner: &dyn Pruner,
    data: &Dataset,
    resume: bool,
    device: &Device,
    observer: &mut dyn Observer<ScheduleEvent>,
) -> Result<ScheduleReport> {
    run_schedule_with(source, out, pruner, data, resume, &mut Retraining { device, observer })
}

/// [`run_schedule`] with the retraining, evaluation and timing done by `work`.
pub fn run_schedule_with(
    source: &RunDir,
    out: &Path,
    pruner: &dyn Pruner,
    data: &Dataset,
    resume: bool,
    work: &mut dyn StepWork,
) -> Result<ScheduleReport> {
    let config = pruner.retrain();
    // Checked before anything is written, so a refused schedule leaves nothing that blocks a retry.
    let base_train = check_start(source, out, config, data)?;
    pruner.check(&source.spec()?)?;
    let retrain = retrain_config(config, base_train, source)?;
    crate::memory::check_training(&source.spec()?, retrain.batch_size, retrain.eval_batch_size)?;
    let splits = Splits::new(data, &retrain)?;
    let clock = Instant::now();
    let base = source.checkpoint(work.device())?;
    let config_json = pruner.config_json();
    open_schedule(out, &config_json, &fsio::absolute(source.path())?, resume)?;
    let batch = retrain.eval_batch_size;
    let mut net = base.net;
    let scores0 = work.scores(&net, &splits, batch)?;
    let reference = reference_hits(config, &splits, batch, work)?;
    let start = Start {
        nonzeros: nonzeros(&net),
        flops: net.spec().flops()?,
        accuracy: scores0.accuracies(),
        tolerance: config.tolerance,
        rule: config.stop_rule,
        reference: reference.as_deref().map(hit_rate),
        hits: reference.or(scores0.val),
        net: net.clone(),
    };
    // The step's time is taken before any timing run, so it is the time of the work alone.
    let mut rows = vec![start.row(0, &net, [start.accuracy; 2], None, clock.elapsed().as_secs_f64())];
    if config.bench_steps == BenchSteps::All {
        time_row(&mut rows[0], None, &net, work);
    }
    work.observer().event(&ScheduleEvent::Row(Box::new(rows[0].clone())));
    let mut final_step = 0;
    let mut step = 0;
    let mut ended_by = Ended::Limit;
    while !pruner.finished(&net, step) {
        step += 1;
        let dir = step_dir(out, step);
        let done = dir.join("step.json");
        let t = Instant::now();
        let r = if done.exists() {
            check_step(&dir)?;
            let ckpt = RunDir::open(&dir)?.checkpoint(work.device())?;
            net = ckpt.net;
            // The measurements are read back; the decision follows the current rule.
            let mut r: StepRow = fsio::read_json(&done)?;
            r.accepted = start.accepts(r.val_after, r.val_change.as_ref());
            r
        } else {
            let run = if dir.join("spec.json").exists() {
                RunDir::open(&dir)?
            } else {
                let mut observer = forward(work.observer(), ScheduleEvent::Relevance);
                let Some(pruned) = pruner.prune(step, &net, &splits, batch, &mut observer)? else {
                    ended_by = Ended::Exhausted;
                    break;
                };
                write_step(out, step, &pruned, &retrain)?
            };
            let before_path = dir.join("before.json");
            let before = if before_path.exists() {
                fsio::read_json::<(Option<f64>, f64)>(&before_path)?
            } else {
                // Measured on the freshly pruned network, before any retraining epoch.
                let b = work
                    .scores(&run.checkpoint(work.device())?.net, &splits, batch)?
                    .accuracies();
                write_json(&before_path, &b)?;
                b
            };
            let (ckpt, after, recovery_epochs) = retrain_step(&run, &splits, &retrain, &start, config, work)?;
            net = ckpt.net;
            let seconds = t.elapsed().as_secs_f64();
            let mut r = StepRow {
                recovery_epochs,
                ..start.row(step, &net, [before, after.accuracies()], start.change(&after), seconds)
            };
            if config.bench_steps == BenchSteps::All {
                time_row(&mut r, Some(&start.net), &net, work);
            }
            write_json(&dir.join(STEP_FINGERPRINT), &Fingerprint::of(&dir)?)?;
            write_json(&done, &r)?;
            r
        };
        work.observer().event(&ScheduleEvent::Row(Box::new(r.clone())));
        let accepted = r.accepted;
        rows.push(r);
        if !accepted {
            ended_by = Ended::Tolerance;
            break;
        }
        final_step = step;
    }
    if config.bench_steps == BenchSteps::Last && final_step > 0 && rows[final_step].speedups.is_empty() {
        let dir = step_dir(out, final_step);
        let result = RunDir::open(&dir)?.network(work.device())?;
        time_row(&mut rows[final_step], Some(&start.net), &result, work);
        write_json(&dir.join("step.json"), &rows[final_step])?;
    }
    let report = ScheduleReport {
        source: fsio::absolute(source.path())?,
        description: pruner.describe(),
        config: config_json,
        rows,
        final_step,
        tolerance_from: start.reference,
        ended_by: Some(ended_by),
    };
    write_report(out, &report, config, pruner.target())?;
    Ok(report)
}

/// Retrains a pruned step to its configured epochs (resuming a started one), then, while it is
/// outside tolerance and the recovery allowance is not spent, one more epoch at a time; the
/// epochs trained are recorded in the step's own `train.toml`, so an interrupted recovery
/// resumes where it stopped. Returns the checkpoint, its scores and the extra epochs.
fn retrain_step(
    run: &RunDir,
    splits: &Splits,
    recipe: &TrainConfig,
    start: &Start,
    config: &Retrain,
    work: &mut dyn StepWork,
) -> Result<(Checkpoint, Scores, usize)> {
    let mut ckpt = work.train(run, splits)?;
    let mut after = work.scores(&ckpt.net, splits, recipe.eval_batch_size)?;
    loop {
        let trained = run.config()?;
        let extra = trained.epochs.saturating_sub(recipe.epochs);
        if start.accepts_scores(&after) || extra >= config.recover_epochs {
            return Ok((ckpt, after, extra));
        }
        run.set_config(&TrainConfig {
            epochs: trained.epochs + 1,
            ..trained
        })?;
        ckpt = work.train(run, splits)?;
        after = work.scores(&ckpt.net, splits, recipe.eval_batch_size)?;
    }
}

/// Writes a freshly pruned step: its run directory (retraining recipe, held masks), the
/// pruner's files in it and its plots beside it.
fn write_step(out: &Path, step: usize, pruned: &Pruned, retrain: &TrainConfig) -> Result<RunDir> {
    let dir = step_dir(out, step);
    let run = RunDir::create(&dir, &pruned.net, retrain)?;
    for (name, content) in &pruned.files {
        fsio::write_atomic(&dir.join(name), content.as_bytes())?;
    }
    for (suffix, svg) in &pruned.plots {
        fsio::write_atomic(
            &out.join(format!("relevance-step-{step:02}{suffix}.svg")),
            svg.as_bytes(),
        )?;
    }
    Ok(run)
}

/// The run directory `path` names: a schedule directory's last accepted step (as
/// [`pruned_and_source`] chooses it), any other path itself.
pub fn accepted_run(path: &Path) -> Result<PathBuf> {
    if path.join("schedule.json").is_file() {
        last_accepted_step(path, &finished_report(path)?)
    } else {
        Ok(path.to_path_buf())
    }
}

/// The report of the schedule in `schedule`, which must have finished.
fn finished_report(schedule: &Path) -> Result<ScheduleReport> {
    let report_path = schedule.join("report.json");
    if !report_path.is_file() {
        return Err(Error::invalid(
            "schedule directory",
            format!(
                "{}: no report.json (the schedule has not finished; resume it, or name one of its step directories)",
                schedule.display()
            ),
        ));
    }
    fsio::read_json(&report_path)
}

/// The step directory of the last step `report` accepted.
fn last_accepted_step(schedule: &Path, report: &ScheduleReport) -> Result<PathBuf> {
    if report.final_step == 0 {
        return Err(Error::invalid(
            "schedule directory",
            format!(
                "{}: no step stayed within tolerance, so there is no pruned network; name a step directory",
                schedule.display()
            ),
        ));
    }
    Ok(step_dir(schedule, report.final_step))
}

/// What a pruned run is compared with: given a schedule directory, its last accepted step and
/// the run it started from; given one of its step directories, that step and the start; given
/// any other directory, `None`.
pub fn pruned_and_source(path: &Path) -> Result<Option<(PathBuf, PathBuf)>> {
    let (schedule, step) = if path.join("schedule.json").is_file() {
        (path, None)
    } else {
        match path.parent() {
            Some(p) if p.join("schedule.json").is_file() => (p, Some(path.to_path_buf())),
            _ => return Ok(None),
        }
    };
    let report = finished_report(schedule)?;
    let step = match step {
        Some(s) => s,
        None => last_accepted_step(schedule, &report)?,
    };
    if !report.source.exists() {
        return Err(Error::invalid(
            "schedule report",
            format!(
                "{}: the starting run {} is not there (a path relative to where `prune` ran?); name it to compare with",
                schedule.join("report.json").display(),
                report.source.display()
            ),
        ));
    }
    Ok(Some((step, report.source)))
}

/// One SVG histogram of scores per maxout layer: `(file-name suffix, SVG)`.
fn relevance_plots(rel: &Relevance) -> Result<Vec<(String, String)>> {
    rel.layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let suffix = if rel.layers.len() == 1 {
                String::new()
            } else {
                format!("-{i}")
            };
            Ok((suffix, report::relevance_histogram(rel, l)?))
        })
        .collect()
}

fn write_report(out: &Path, report: &ScheduleReport, c: &Retrain, target: Option<&FlopTarget>) -> Result<()> {
    write_json(&out.join("report.json"), report)?;
    let against = match (&c.tolerance_against, report.tolerance_from) {
        (Some(p), Some(v)) => format!(
            " below the validation accuracy of `{}` ({:.2}%)",
            p.display(),
            100.0 * v
        ),
        _ => String::new(),
    };
    let lr = c
        .retrain_lr
        .map(|lr| format!(" Retraining base learning rate {lr}."))
        .unwrap_or_default()
        + &match c.recover_epochs {
            0 => String::new(),
            n => format!(" A step outside tolerance is trained up to {n} more epochs before it ends the schedule."),
        };
    let rule = match c.stop_rule {
        StopRule::Point => "a step is kept while its validation accuracy is within it",
        StopRule::Paired => "a step is kept unless the 95% interval of its validation change lies wholly below it",
        StopRule::None => "not applied: every step is kept",
    };
    let mut md = format!(
        "# Pruning `{}`\n\n{}; {} retraining epochs per step, tolerance {} points{against} on {} ({rule}), dataset `{}`, seed {}.{lr} \
         The validation change is paired: the step's network and the one the tolerance counts from, scored on the same \
         examples, with a 95% Wald interval from the examples only one of them classifies correctly.\n\n",
        report.source.display(),
        report.description,
        c.retrain_epochs,
        c.tolerance,
        match &c.val_dataset {
            Some(name) => format!("every example of `{name}`"),
            None => format!("{} validation examples", c.val),
        },
        c.dataset,
        c.seed
    );
    md += &report::markdown_table(&report.rows);
    md += &format!("\nResult: step {} (the last within tolerance).\n", report.final_step);
    if let Some(ended) = report.ended_by {
        md += &format!("The schedule ended because {ended}.\n");
    }
    if let Some(t) = target {
        md += &target_line(t, &report.rows[report.final_step]);
    }
    fsio::write_atomic(&out.join("report.md"), md.as_bytes())?;
    let svg = report::accuracy_chart(&report.rows, (c.tolerance, report.tolerance_from), report.final_step)?;
    fsio::write_atomic(&out.join("accuracy-vs-params.svg"), svg.as_bytes())
}

/// The report's line on a FLOP target: the ratio reached by the result `row` (counted from
/// the target's reference) and, for a speedup target, the speedup measured at batch 256.
fn target_line(t: &FlopTarget, row: &StepRow) -> String {
    let reached = t.reference as f64 / row.flops.max(1) as f64;
    let mut line = format!(
        "FLOP target: ratio {} ({} FLOPs per example); the result has {} FLOPs, ratio {reached:.2}.",
        t.ratio,
        t.flops(),
        row.flops
    );
    if let Some(speedup) = t.speedup {
        line += &match (&t.against, row.speedup) {
            (None, Some(s)) => format!(
                " Target speedup {speedup}: measured {:.2}x at batch 256 against the start.",
                s.median
            ),
            (Some(_), Some(s)) => format!(
                " Target speedup {speedup}: measured {:.2}x at batch 256 against the start (not the reference run).",
                s.median
            ),
            (_, None) => format!(" Target speedup {speedup}: the result was not timed."),
        };
    }
    line + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_names_criterion_and_policy_as_users_write_them() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, schedule, _) = start(tmp.path(), 100);
        assert_eq!(
            schedule.describe(),
            "Neuron pruning, criterion `weight-norm`, policy `per-unit, 1 per unit`"
        );
    }

    #[test]
    fn without_limits_a_schedule_prunes_to_one_piece() {
        assert_eq!(default_until_k(None, None), Some(1));
        assert_eq!(default_until_k(None, Some(2)), None);
        assert_eq!(default_until_k(Some(3), Some(2)), Some(3));
    }

    /// Trains nothing and times nothing; validation accuracy is a function of the network.
    struct Fake {
        device: Device,
        silent: crate::progress::Silent,
        trained: usize,
        /// Networks timed.
        timed: usize,
        /// The epochs the last trained run was configured for.
        epochs: usize,
        val: fn(&Network, usize) -> f64,
    }

    impl Fake {
        fn new(val: fn(&Network, usize) -> f64) -> Fake {
            Fake {
                device: Device::flex(),
                silent: crate::progress::Silent,
                trained: 0,
                timed: 0,
                epochs: 0,
                val,
            }
        }
    }

    impl StepWork for Fake {
        fn device(&self) -> &Device {
            &self.device
        }

        fn observer(&mut self) -> &mut dyn Observer<ScheduleEvent> {
            &mut self.silent
        }

        fn train(&mut self, run: &RunDir, _: &Splits) -> Result<Checkpoint> {
            self.trained += 1;
            self.epochs = run.config()?.epochs;
            run.checkpoint(&burn::tensor::Device::flex())
        }

        /// 100 validation examples, the first `val` of them hits.
        fn scores(&mut self, net: &Network, _: &Splits, _: usize) -> Result<Scores> {
            let hits = (100.0 * (self.val)(net, self.epochs)).round() as usize;
            Ok(Scores {
                val: Some((0..100).map(|i| i < hits).collect()),
                test: 0.5,
            })
        }

        /// One ratio of 1 against each network; the starting network's timing (against plain
        /// LeNet-5 only) takes a second.
        fn speedups(&mut self, base: Option<&Network>, _: &Network) -> (Vec<Speedup>, Vec<Speedup>) {
            self.timed += 1;
            if base.is_none() {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            let one = vec![Speedup::from_ratios(256, vec![1.0])];
            (base.map_or_else(Vec::new, |_| one.clone()), one)
        }
    }

    /// Full accuracy down to k=2, a collapse at k=1 (126,955 parameters).
    fn collapses_at_k1(net: &Network, _epochs: usize) -> f64 {
        if net.num_params() > 200_000 { 0.9 } else { 0.5 }
    }

    /// An untrained `lenet5-maxout` run with a validation split of `val`, and the paper's
    /// schedule (weight-norm scores: no pass over data) with the same split.
    fn start(dir: &Path, val: usize) -> (RunDir, ScheduleConfig, Dataset) {
        let net = Network::init(
            &crate::model::presets::Preset::Lenet5Maxout.spec(),
            1,
            &burn::tensor::Device::flex(),
        )
        .unwrap();
        let config = TrainConfig {
            dataset: crate::data::dataset::DatasetName::Embedded,
            epochs: 0,
            val,
            ..TrainConfig::default()
        };
        let run = RunDir::create(&dir.join("start"), &net, &config).unwrap();
        let retrain = Retrain {
            retrain_epochs: 1,
            val: 100,
            dataset: crate::data::dataset::DatasetName::Embedded,
            ..Retrain::default()
        };
        let schedule = ScheduleConfig {
            criterion: CriterionKind::WeightNorm,
            ..ScheduleConfig::paper(None, None, retrain)
        };
        (run, schedule, Dataset::embedded().unwrap())
    }

    fn run(
        source: &RunDir,
        out: &Path,
        s: &ScheduleConfig,
        data: &Dataset,
        resume: bool,
        fake: &mut Fake,
    ) -> Result<ScheduleReport> {
        run_schedule_with(source, out, s, data, resume, fake)
    }

    #[test]
    fn a_rejected_step_ends_the_schedule_and_resuming_reads_finished_steps_back() {
        let tmp = tempfile::tempdir().unwrap();
        let (source, schedule, data) = start(tmp.path(), 100);
        let out = tmp.path().join("pruned");
        let mut fake = Fake::new(collapses_at_k1);
        let report = run(&source, &out, &schedule, &data, false, &mut fake).unwrap();
        let accepted: Vec<bool> = report.rows.iter().map(|r| r.accepted).collect();
        assert_eq!(accepted, [true, true, true, false]);
        assert_eq!((report.final_step, fake.trained), (2, 3));
        assert_eq!(report.rows[3].params, 126_955);
        // Again without --resume: refused. With it: every step read back, nothing retrained.
        let e = run(&source, &out, &schedule, &data, false, &mut fake)
            .unwrap_err()
            .to_string();
        assert!(e.contains("already holds a schedule"), "{e}");
        let mut again = Fake::new(collapses_at_k1);
        let resumed = run(&source, &out, &schedule, &data, true, &mut again).unwrap();
        assert_eq!((resumed.final_step, again.trained), (2, 0));
        assert_eq!(resumed.rows[1..], report.rows[1..]);
        // A resume that changes an option is refused.
        let mut looser = schedule.clone();
        looser.retrain.tolerance = 50.0;
        let e = run(&source, &out, &looser, &data, true, &mut again)
            .unwrap_err()
            .to_string();
        assert!(e.contains("options that differ"), "{e}");
        // So is a resume from another starting network with the same options (seen: a schedule
        // directory reused for another source continued the first source's steps).
        let other = RunDir::create(
            &tmp.path().join("other"),
            &source.network(&Device::flex()).unwrap(),
            &source.config().unwrap(),
        )
        .unwrap();
        let e = run(&other, &out, &schedule, &data, true, &mut again)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("started from") && e.contains("start, not from") && e.contains("other"),
            "{e}"
        );
        // A schedule.json written before the source was recorded resumes on its options alone.
        let path = out.join("schedule.json");
        let mut saved: serde_json::Value = fsio::read_json(&path).unwrap();
        saved.as_object_mut().unwrap().remove("source");
        write_json(&path, &saved).unwrap();
        let old = run(&source, &out, &schedule, &data, true, &mut again).unwrap();
        assert_eq!((old.final_step, again.trained), (2, 0));
    }

    #[test]
    fn the_tolerance_can_count_from_another_runs_validation_accuracy() {
        let tmp = tempfile::tempdir().unwrap();
        let (source, schedule, data) = start(tmp.path(), 100);
        // A small reference (validation accuracy 0.5 under the fake): the k=1 step (0.5) is within
        // 0.3 points of it, so the schedule goes one step further than against its own start.
        let small = Network::init(&crate::model::presets::Preset::Lenet5.spec(), 1, &Device::flex())
            .unwrap()
            .into_trainable();
        let small = crate::prune::neuron::apply(
            &small,
            &PrunePlan {
                format_version: PLAN_FORMAT_VERSION,
                spec_fingerprint: small.spec().fingerprint(),
                layers: vec![super::super::plan::LayerPlan {
                    layer: 5,
                    keep: (0..500).map(|u| if u < 100 { vec![0] } else { vec![] }).collect(),
                }],
            },
        )
        .unwrap();
        let reference = RunDir::create(&tmp.path().join("ref"), &small, &source.config().unwrap()).unwrap();
        let mut against = schedule.clone();
        against.retrain.tolerance_against = Some(reference.path().to_path_buf());
        let mut fake = Fake::new(collapses_at_k1);
        let report = run(&source, &tmp.path().join("a"), &against, &data, false, &mut fake).unwrap();
        assert_eq!((report.final_step, report.tolerance_from), (3, Some(0.5)));
        let md = std::fs::read_to_string(tmp.path().join("a/report.md")).unwrap();
        assert!(md.contains("tolerance 0.3 points below the validation accuracy of") && md.contains("(50.00%)"));
        // Its validation accuracy must come from the schedule's carve.
        let other = RunDir::create(
            &tmp.path().join("ref200"),
            &small,
            &TrainConfig {
                val: 200,
                ..source.config().unwrap()
            },
        )
        .unwrap();
        against.retrain.tolerance_against = Some(other.path().to_path_buf());
        let e = run(&source, &tmp.path().join("b"), &against, &data, false, &mut fake)
            .unwrap_err()
            .to_string();
        assert!(e.contains("trained with val = 200, the schedule uses val = 100"), "{e}");
        assert!(
            !tmp.path().join("b").exists(),
            "a refused schedule leaves nothing behind"
        );
    }

    /// Full accuracy down to k=2; at k=1 full accuracy only after 3 epochs of retraining.
    fn recovers_at_k1_after_3_epochs(net: &Network, epochs: usize) -> f64 {
        if net.num_params() > 200_000 || epochs >= 3 {
            0.9
        } else {
            0.5
        }
    }

    #[test]
    fn a_step_outside_tolerance_is_trained_on_until_it_recovers_or_the_allowance_is_spent() {
        let tmp = tempfile::tempdir().unwrap();
        let (source, mut schedule, data) = start(tmp.path(), 100);
        // One more epoch than the single retraining epoch is not enough: the k=1 step is kept out.
        schedule.retrain.recover_epochs = 1;
        let mut fake = Fake::new(recovers_at_k1_after_3_epochs);
        let short = run(&source, &tmp.path().join("short"), &schedule, &data, false, &mut fake).unwrap();
        assert_eq!((short.final_step, fake.trained), (2, 4));
        assert_eq!((short.rows[3].accepted, short.rows[3].recovery_epochs), (false, 1));
        // Two are: the step is kept after them, and the schedule ends at k=1 as it would anyway.
        schedule.retrain.recover_epochs = 5;
        let mut fake = Fake::new(recovers_at_k1_after_3_epochs);
        let out = tmp.path().join("long");
        let long = run(&source, &out, &schedule, &data, false, &mut fake).unwrap();
        assert_eq!((long.final_step, fake.trained), (3, 5));
        let recovered: Vec<usize> = long.rows.iter().map(|r| r.recovery_epochs).collect();
        assert_eq!(recovered, [0, 0, 0, 2]);
        assert_eq!(RunDir::open(&out.join("step-03")).unwrap().config().unwrap().epochs, 3);
        let md = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(
            md.contains("yes, after 2 more epochs") && md.contains("up to 5 more epochs"),
            "{md}"
        );
        // An interrupted recovery resumes from the epochs its step directory records.
        std::fs::remove_file(out.join("step-03/step.json")).unwrap();
        let mut again = Fake::new(recovers_at_k1_after_3_epochs);
        let resumed = run(&source, &out, &schedule, &data, true, &mut again).unwrap();
        assert_eq!(
            (resumed.final_step, again.trained, resumed.rows[3].recovery_epochs),
            (3, 1, 2)
        );
    }

    #[test]
    fn only_the_steps_asked_for_are_timed_and_no_step_time_includes_timing() {
        let tmp = tempfile::tempdir().unwrap();
        let (source, mut schedule, data) = start(tmp.path(), 100);
        // Steps 1 and 2 kept, step 3 (k=1) rejected: the result is step 2.
        for (bench, timed, rows) in [
            (BenchSteps::None, 0, &[][..]),
            (BenchSteps::Last, 1, &[2][..]),
            (BenchSteps::All, 4, &[0, 1, 2, 3][..]),
        ] {
            schedule.retrain.bench_steps = bench;
            let out = tmp.path().join(format!("{bench:?}"));
            let mut fake = Fake::new(collapses_at_k1);
            let report = run(&source, &out, &schedule, &data, false, &mut fake).unwrap();
            let with: Vec<usize> = report
                .rows
                .iter()
                .filter(|r| r.vs_lenet5.is_some())
                .map(|r| r.step)
                .collect();
            assert_eq!((fake.timed, &with[..]), (timed, rows), "{bench:?}");
            // Seen: step 0's time included its timing (here a second).
            assert!(report.rows[0].seconds < 1.0, "{bench:?}: {}", report.rows[0].seconds);
            if bench == BenchSteps::Last {
                let saved: StepRow = fsio::read_json(&out.join("step-02/step.json")).unwrap();
                assert_eq!(saved, report.rows[2]);
                // Resumed, the result is timed already.
                let mut again = Fake::new(collapses_at_k1);
                run(&source, &out, &schedule, &data, true, &mut again).unwrap();
                assert_eq!(again.timed, 0);
            }
        }
    }

    #[test]
    fn every_row_reports_its_paired_change_and_the_rules_decide_on_it() {
        let tmp = tempfile::tempdir().unwrap();
        let (source, mut schedule, data) = start(tmp.path(), 100);
        // k=1 falls from 90 to 50 of 100 hits: 40 lost, none gained.
        let mut fake = Fake::new(collapses_at_k1);
        let report = run(&source, &tmp.path().join("point"), &schedule, &data, false, &mut fake).unwrap();
        let changes: Vec<Option<(usize, usize)>> = report
            .rows
            .iter()
            .map(|r| r.val_change.map(|c| (c.lost, c.gained)))
            .collect();
        assert_eq!(changes, [None, Some((0, 0)), Some((0, 0)), Some((40, 0))]);
        // Even a 35-point tolerance: the interval (-49.6, -30.4) points does not lie below it,
        // so the paired rule keeps k=1 where the point rule (a 40-point drop) does not.
        schedule.retrain.tolerance = 35.0;
        let point = run(&source, &tmp.path().join("p35"), &schedule, &data, false, &mut fake).unwrap();
        schedule.retrain.stop_rule = StopRule::Paired;
        let paired = run(&source, &tmp.path().join("paired"), &schedule, &data, false, &mut fake).unwrap();
        assert_eq!((point.final_step, paired.final_step), (2, 3));
        // Without a rule every step is kept, with its change on record.
        schedule.retrain.tolerance = 0.0;
        schedule.retrain.stop_rule = StopRule::None;
        let all = run(&source, &tmp.path().join("none"), &schedule, &data, false, &mut fake).unwrap();
        assert_eq!(all.final_step, 3);
        assert!(all.rows.iter().all(|r| r.accepted));
        let md = std::fs::read_to_string(tmp.path().join("none/report.md")).unwrap();
        assert!(
            md.contains("| -40.00 (-49.60, -30.40) |") && md.contains("not applied"),
            "{md}"
        );
    }

    #[test]
    fn a_control_run_retrains_without_pruning() {
        let tmp = tempfile::tempdir().unwrap();
        let (source, schedule, data) = start(tmp.path(), 100);
        let control = ScheduleConfig {
            control: true,
            steps: Some(2),
            ..schedule
        };
        let mut fake = Fake::new(collapses_at_k1);
        let report = run(&source, &tmp.path().join("control"), &control, &data, false, &mut fake).unwrap();
        let params: Vec<usize> = report.rows.iter().map(|r| r.params).collect();
        assert_eq!(params, [427_330; 3]);
        assert_eq!((report.final_step, fake.trained), (2, 2));
    }

    #[test]
    fn a_validation_split_the_start_was_trained_on_is_refused_before_anything_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let (source, schedule, data) = start(tmp.path(), 0);
        let out = tmp.path().join("pruned");
        let mut fake = Fake::new(collapses_at_k1);
        let e = run(&source, &out, &schedule, &data, false, &mut fake)
            .unwrap_err()
            .to_string();
        assert!(e.contains("trained with val = 0"), "{e}");
        assert!(!out.exists() && fake.trained == 0);
        // Nor may the output be the starting run itself.
        let e = run(&source, source.path(), &schedule, &data, false, &mut fake)
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds a run directory"), "{e}");
    }

    #[test]
    fn a_flop_target_is_reached_within_one_step_and_an_unreachable_one_is_refused_first() {
        let tmp = tempfile::tempdir().unwrap();
        let (source, paper, data) = start(tmp.path(), 100);
        let spec = source.spec().unwrap();
        let flops = spec.flops().unwrap();
        let target = |speedup: f64| ScheduleConfig {
            policy: Policy::Cost { fraction: 0.05 },
            target: Some(FlopTarget::new(None, Some(speedup), flops, None).unwrap()),
            ..paper.clone()
        };
        // Only fc1's maxout units are scored: each costs 4 of its 500 outputs and 1 of fc2's 125
        // inputs; the schedule ends as soon as the FLOPs are at most the start's over 1.1.
        let unit = spec.unit_flops(spec.maxout_layers()[0]).unwrap()[0];
        let schedule = target(1.1);
        let goal = schedule.target.as_ref().unwrap().flops();
        let out = tmp.path().join("target");
        let mut fake = Fake::new(collapses_at_k1);
        let report = run(&source, &out, &schedule, &data, false, &mut fake).unwrap();
        let f: Vec<usize> = report.rows.iter().map(|r| r.flops).collect();
        assert!(f.len() > 2, "several steps of 5%: {f:?}");
        let (last, before) = (f[f.len() - 1], f[f.len() - 2]);
        assert!(before > goal && last <= goal, "{f:?} against {goal}");
        // The last step removes only what stayed above the target, and at most one unit more.
        assert!(
            goal as f64 - last as f64 <= unit,
            "{last} is more than a unit ({unit}) below {goal}"
        );
        for w in f.windows(2) {
            assert!((w[0] - w[1]) as f64 <= 0.05 * w[0] as f64 + unit, "{f:?}");
        }
        assert_eq!((report.final_step, report.ended_by), (f.len() - 1, Some(Ended::Limit)));
        let md = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(
            md.contains("ended because its limit") && md.contains("Target speedup 1.1: measured 1.00x"),
            "{md}"
        );
        // Removing every fc1 unit but one leaves about 0.82 of the FLOPs: a 1.5x target is
        // refused before anything is written.
        let out = tmp.path().join("unreachable");
        let e = run(&source, &out, &target(1.5), &data, false, &mut fake)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("FLOP ratio 1.5") && e.contains("cannot be reached") && e.contains("(fc1) leaves"),
            "{e}"
        );
        assert!(!out.exists());
    }
}
