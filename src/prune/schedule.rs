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
use super::select::{LayerBudget, LayerCut, Policy, select, select_each, unit_layers_once};
use crate::bench::{SPEEDUP_ROUNDS, Speedup, lenet5_reference, speedups};
use crate::data::dataset::Dataset;
use crate::error::{Error, Result};
use crate::fsio;
use crate::model::network::Network;
use crate::model::spec::ArchSpec;
use crate::progress::{Observer, forward};
use crate::relevance::{CriterionKind, Pass, Relevance, RelevanceEvent, TiePolicy, criterion};
use crate::report::{self, LENET5_PARAMS, StepRow, VsLenet5};
use crate::train::RunDir;
use crate::train::{Checkpoint, Event, Splits, Teacher, TrainConfig, evaluate, train};

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
        self.retrain.validate()
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

    /// Whether a step removes whole units (the units policy or per-layer budgets), which never
    /// lowers a unit's piece count.
    fn removes_units(&self) -> bool {
        !self.budgets.is_empty() || matches!(self.policy, Policy::Units { .. })
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
            if self.steps.is_none() {
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
            s
        }
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("config serializes")
    }

    fn check(&self, spec: &ArchSpec) -> Result<()> {
        self.check_network(spec)
    }

    fn finished(&self, net: &Network, steps_done: usize) -> bool {
        let until_k = default_until_k(self.until_k, self.steps).filter(|_| !self.control && !self.removes_units());
        let k = self
            .scored_k_max(net.spec())
            .expect("the scored layers were checked against the starting network, and pruning keeps every unit layer");
        self.steps.is_some_and(|n| steps_done >= n) || until_k.is_some_and(|until_k| k.is_some_and(|k| k <= until_k))
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
}

fn step_dir(out: &Path, step: usize) -> PathBuf {
    out.join(format!("step-{step:02}"))
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

/// Whether `accuracy` is at most `tolerance` percentage points below `start` (both fractions).
/// A drop of exactly the tolerance is within it: the margin absorbs the rounding of the
/// fractions (0.9056 - 0.9026 is 0.30000000000000027 points in f64).
fn within_tolerance(start: f64, accuracy: f64, tolerance: f64) -> bool {
    100.0 * (start - accuracy) <= tolerance + 1e-9
}

/// Evaluates a network on the validation (if any) and test splits.
fn accuracies(net: &Network, splits: &Splits, batch: usize) -> Result<(Option<f64>, f64)> {
    let val = splits
        .val
        .as_ref()
        .map(|v| evaluate(net, v, splits.classes, batch, &splits.norm))
        .transpose()?;
    Ok((
        val.map(|e| e.accuracy),
        evaluate(net, &splits.test, splits.classes, batch, &splits.norm)?.accuracy,
    ))
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
    /// Validation (if carved) and test accuracy of `net`.
    fn accuracies(&mut self, net: &Network, splits: &Splits, batch: usize) -> Result<(Option<f64>, f64)>;
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

    fn accuracies(&mut self, net: &Network, splits: &Splits, batch: usize) -> Result<(Option<f64>, f64)> {
        accuracies(net, splits, batch)
    }

    fn speedups(&mut self, base: Option<&Network>, net: &Network) -> (Vec<Speedup>, Vec<Speedup>) {
        let start = base.map_or_else(Vec::new, |b| speedups(b, net, SPEEDUP_ROUNDS));
        let lenet = lenet5_reference(net).map_or_else(Vec::new, |l| speedups(&l, net, SPEEDUP_ROUNDS));
        (start, lenet)
    }
}

/// Refuses, before anything is written, an output that is a run directory or the source, a
/// validation split the starting network was not trained with, and a run to count the
/// tolerance from that was trained on another dataset or carve; checks the settings and that
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
        if config.val == 0 || trained != config.val {
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

/// Creates the schedule directory with its `schedule.json` (the configuration and the source
/// run's absolute path), or, resuming, checks that the saved configuration is this one and that
/// the schedule started from `source` (schedules written before the path was recorded are
/// checked on their configuration alone).
fn open_schedule(out: &Path, config_json: &serde_json::Value, source: &Path, resume: bool) -> Result<()> {
    let cfg_path = out.join("schedule.json");
    let source = source.display().to_string();
    if !cfg_path.exists() {
        fsio::create_dir(out)?;
        let mut saved = config_json.clone();
        if let Some(map) = saved.as_object_mut() {
            map.insert("source".into(), source.into());
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
            Some(d) => Some(Teacher::new(fsio::absolute(source.path())?.display().to_string(), d)),
            None => None,
        },
        ..base_train
    };
    retrain.validate()?;
    Ok(retrain)
}

/// The validation accuracy of the run the tolerance counts from (`tolerance_against`; its
/// dataset, classes and carve were checked by [`check_start`]).
fn reference_accuracy(c: &Retrain, splits: &Splits, batch: usize, work: &mut dyn StepWork) -> Result<Option<f64>> {
    let Some(path) = &c.tolerance_against else {
        return Ok(None);
    };
    let net = RunDir::open(path)?.network(work.device())?;
    Ok(work.accuracies(&net, splits, batch)?.0)
}

/// The starting network and what every row is measured against.
struct Start {
    net: Network,
    nonzeros: usize,
    flops: usize,
    accuracy: (Option<f64>, f64),
    tolerance: f64,
    /// The validation accuracy the tolerance counts from, when not the start's own.
    reference: Option<f64>,
}

impl Start {
    /// Whether a step's validation accuracy keeps it (always, without a validation split).
    fn accepts(&self, val: Option<f64>) -> bool {
        match (self.reference.or(self.accuracy.0), val) {
            (Some(v0), Some(v)) => within_tolerance(v0, v, self.tolerance),
            _ => true,
        }
    }

    /// The report row of `net` after step `step`.
    fn row(
        &self,
        step: usize,
        net: &Network,
        accuracy: [(Option<f64>, f64); 2],
        (speedups, lenet): (Vec<Speedup>, Vec<Speedup>),
        seconds: f64,
    ) -> StepRow {
        let flops = net.spec().flops().unwrap_or(1).max(1) as f64;
        let lenet_flops = crate::model::presets::Preset::Lenet5.spec().flops().unwrap_or(0) as f64;
        let (pieces, pieces_histogram) = pieces_of(net.spec());
        let nz = nonzeros(net);
        let [before, after] = accuracy;
        StepRow {
            step,
            pieces,
            pieces_histogram,
            params: net.num_params(),
            nonzeros: nz,
            removed_vs_start: 100.0 * (1.0 - nz as f64 / self.nonzeros as f64),
            removed_vs_lenet5: 100.0 * (1.0 - nz as f64 / LENET5_PARAMS as f64),
            flops: net.spec().flops().unwrap_or(0),
            flop_ratio: self.flops as f64 / flops,
            speedup: speedups.iter().find(|s| s.batch == 256).copied(),
            vs_lenet5: (!lenet.is_empty()).then(|| VsLenet5 {
                flop_ratio: lenet_flops / flops,
                speedups: lenet,
            }),
            speedups,
            val_before: before.0,
            test_before: before.1,
            val_after: after.0,
            test_after: after.1,
            seconds,
            accepted: self.accepts(after.0),
            recovery_epochs: 0,
        }
    }
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
    let splits = Splits::new(data, &retrain)?;
    let clock = Instant::now();
    let base = source.checkpoint(work.device())?;
    let config_json = pruner.config_json();
    open_schedule(out, &config_json, &fsio::absolute(source.path())?, resume)?;
    let batch = retrain.eval_batch_size;
    let mut net = base.net;
    let start = Start {
        nonzeros: nonzeros(&net),
        flops: net.spec().flops()?,
        accuracy: work.accuracies(&net, &splits, batch)?,
        tolerance: config.tolerance,
        reference: reference_accuracy(config, &splits, batch, work)?,
        net: net.clone(),
    };
    let speed0 = work.speedups(None, &net);
    let mut rows = vec![start.row(0, &net, [start.accuracy; 2], speed0, clock.elapsed().as_secs_f64())];
    work.observer().event(&ScheduleEvent::Row(Box::new(rows[0].clone())));
    let mut final_step = 0;
    let mut step = 0;
    while !pruner.finished(&net, step) {
        step += 1;
        let dir = step_dir(out, step);
        let done = dir.join("step.json");
        let t = Instant::now();
        let r = if done.exists() {
            let ckpt = RunDir::open(&dir)?.checkpoint(work.device())?;
            net = ckpt.net;
            // The measurements are read back; the decision follows the current rule.
            let mut r: StepRow = fsio::read_json(&done)?;
            r.accepted = start.accepts(r.val_after);
            r
        } else {
            let run = if dir.join("spec.json").exists() {
                RunDir::open(&dir)?
            } else {
                let mut observer = forward(work.observer(), ScheduleEvent::Relevance);
                let Some(pruned) = pruner.prune(step, &net, &splits, batch, &mut observer)? else {
                    break;
                };
                write_step(out, step, &pruned, &retrain)?
            };
            let before_path = dir.join("before.json");
            let before = if before_path.exists() {
                fsio::read_json::<(Option<f64>, f64)>(&before_path)?
            } else {
                // Measured on the freshly pruned network, before any retraining epoch.
                let b = work.accuracies(&run.checkpoint(work.device())?.net, &splits, batch)?;
                write_json(&before_path, &b)?;
                b
            };
            let (ckpt, after, recovery_epochs) = retrain_step(&run, &splits, &retrain, &start, config, work)?;
            net = ckpt.net;
            let seconds = t.elapsed().as_secs_f64();
            let speed = work.speedups(Some(&start.net), &net);
            let r = StepRow {
                recovery_epochs,
                ..start.row(step, &net, [before, after], speed, seconds)
            };
            write_json(&done, &r)?;
            r
        };
        work.observer().event(&ScheduleEvent::Row(Box::new(r.clone())));
        let accepted = r.accepted;
        rows.push(r);
        if !accepted {
            break;
        }
        final_step = step;
    }
    let report = ScheduleReport {
        source: fsio::absolute(source.path())?,
        description: pruner.describe(),
        config: config_json,
        rows,
        final_step,
        tolerance_from: start.reference,
    };
    write_report(out, &report, config)?;
    Ok(report)
}

/// Retrains a pruned step to its configured epochs (resuming a started one), then, while it is
/// outside tolerance and the recovery allowance is not spent, one more epoch at a time; the
/// epochs trained are recorded in the step's own `train.toml`, so an interrupted recovery
/// resumes where it stopped. Returns the checkpoint, its accuracies and the extra epochs.
fn retrain_step(
    run: &RunDir,
    splits: &Splits,
    recipe: &TrainConfig,
    start: &Start,
    config: &Retrain,
    work: &mut dyn StepWork,
) -> Result<(Checkpoint, (Option<f64>, f64), usize)> {
    let mut ckpt = work.train(run, splits)?;
    let mut after = work.accuracies(&ckpt.net, splits, recipe.eval_batch_size)?;
    loop {
        let trained = run.config()?;
        let extra = trained.epochs.saturating_sub(recipe.epochs);
        if start.accepts(after.0) || extra >= config.recover_epochs {
            return Ok((ckpt, after, extra));
        }
        run.set_config(&TrainConfig {
            epochs: trained.epochs + 1,
            ..trained
        })?;
        ckpt = work.train(run, splits)?;
        after = work.accuracies(&ckpt.net, splits, recipe.eval_batch_size)?;
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
    let report_path = schedule.join("report.json");
    if !report_path.is_file() {
        return Err(Error::invalid(
            "schedule directory",
            format!(
                "{}: no report.json (the schedule has not finished; resume it, or name the run to compare with)",
                schedule.display()
            ),
        ));
    }
    let report: ScheduleReport = fsio::read_json(&report_path)?;
    let step = match step {
        Some(s) => s,
        None if report.final_step == 0 => {
            return Err(Error::invalid(
                "schedule directory",
                format!(
                    "{}: no step stayed within tolerance, so there is no pruned network to measure; name a step directory",
                    schedule.display()
                ),
            ));
        }
        None => schedule.join(format!("step-{:02}", report.final_step)),
    };
    if !report.source.exists() {
        return Err(Error::invalid(
            "schedule report",
            format!(
                "{}: the starting run {} is not there (a path relative to where `prune` ran?); name it to compare with",
                report_path.display(),
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

fn write_report(out: &Path, report: &ScheduleReport, c: &Retrain) -> Result<()> {
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
    let mut md = format!(
        "# Pruning `{}`\n\n{}; {} retraining epochs per step, tolerance {} points{against} on {} validation examples, dataset `{}`, seed {}.{lr}\n\n",
        report.source.display(),
        report.description,
        c.retrain_epochs,
        c.tolerance,
        c.val,
        c.dataset,
        c.seed
    );
    md += &report::markdown_table(&report.rows);
    md += &format!("\nResult: step {} (the last within tolerance).\n", report.final_step);
    fsio::write_atomic(&out.join("report.md"), md.as_bytes())?;
    let svg = report::accuracy_chart(&report.rows, (c.tolerance, report.tolerance_from), report.final_step)?;
    fsio::write_atomic(&out.join("accuracy-vs-params.svg"), svg.as_bytes())
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

    #[test]
    fn a_drop_of_exactly_the_tolerance_is_within_it() {
        assert!(within_tolerance(0.9056, 0.9026, 0.3));
        assert!(within_tolerance(0.9056, 0.9100, 0.3));
        assert!(!within_tolerance(0.9056, 0.9024, 0.3));
        assert!(!within_tolerance(0.9, 0.9, -0.1));
    }

    /// Trains nothing and times nothing; validation accuracy is a function of the network.
    struct Fake {
        device: Device,
        silent: crate::progress::Silent,
        trained: usize,
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

        fn accuracies(&mut self, net: &Network, _: &Splits, _: usize) -> Result<(Option<f64>, f64)> {
            Ok((Some((self.val)(net, self.epochs)), 0.5))
        }

        fn speedups(&mut self, _: Option<&Network>, _: &Network) -> (Vec<Speedup>, Vec<Speedup>) {
            (Vec::new(), Vec::new())
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
            tolerance: 0.3,
            val: 100,
            dataset: crate::data::dataset::DatasetName::Embedded,
            seed: 1,
            distill: None,
            tolerance_against: None,
            retrain_lr: None,
            recover_epochs: 0,
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
}
