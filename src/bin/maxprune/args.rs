//! Argument groups shared by several commands.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use maxprune::data::dataset::{Dataset, DatasetName};
use maxprune::model::presets::Preset;
use maxprune::model::spec::ArchSpec;
use maxprune::prune::pruner::Retrain;
use maxprune::prune::select::{Policy, parse_layer_names};
use maxprune::prune::stop::{BenchSteps, StopRule};
use maxprune::relevance::{CriterionKind, TiePolicy};
use maxprune::train::Distillation;

#[derive(Args)]
pub(crate) struct RetrainArgs {
    /// Retraining epochs per step.
    #[arg(long, default_value_t = 5)]
    pub(crate) retrain_epochs: usize,
    /// Stop when validation accuracy drops more than this many points below the start.
    #[arg(long, default_value_t = 0.3)]
    pub(crate) tolerance: f64,
    /// Count the tolerance from this run's validation accuracy instead of the start's (a run
    /// trained with the same --val, such as the baseline the pruned network must stay close to).
    #[arg(long, value_name = "RUN")]
    pub(crate) tolerance_against: Option<std::path::PathBuf>,
    /// Validation examples carved off train (must match the starting run's; 0: no stopping rule).
    #[arg(long, default_value_t = 5000)]
    pub(crate) val: usize,
    /// Validate on every example of this dataset (its train and test splits) instead of a carve,
    /// and retrain on the whole training split: for a network trained on all of it elsewhere.
    #[arg(long, value_name = "DATASET", conflicts_with = "val")]
    pub(crate) val_dataset: Option<DatasetName>,
    /// Seed of retraining (and of the random criterion).
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Continue an interrupted schedule in --out.
    #[arg(long)]
    pub(crate) resume: bool,
    /// Retrain with knowledge distillation from the starting network: the weight in [0, 1] of
    /// its softened predictions in the loss (the labels get the rest).
    #[arg(long, value_name = "ALPHA")]
    pub(crate) distill: Option<f64>,
    /// Softmax temperature of the distillation term.
    #[arg(long, default_value_t = 4.0, requires = "distill")]
    pub(crate) temperature: f64,
    /// Base learning rate of each retraining (default: the starting run's); its schedule
    /// restarts every step.
    #[arg(long)]
    pub(crate) retrain_lr: Option<f64>,
    /// A step that falls outside tolerance is trained on, one epoch at a time, up to this many
    /// more epochs, and kept as soon as it is back within tolerance (0: it ends the schedule).
    #[arg(long, default_value_t = 0, value_name = "EPOCHS")]
    pub(crate) recover_epochs: usize,
    /// How a step is judged against the tolerance: point (its validation accuracy is more than
    /// the tolerance below), paired (the drop exceeds the tolerance with 95% confidence: the
    /// paired interval lies wholly below it) or none (every step kept).
    #[arg(long, value_enum, default_value = "point")]
    pub(crate) stop_rule: StopRule,
    /// Which steps are timed against the start and plain LeNet-5 (3 batch sizes x 7 alternating
    /// rounds each): none, last (the result) or all.
    #[arg(long, value_enum, default_value = "last")]
    pub(crate) bench_steps: BenchSteps,
}

impl RetrainArgs {
    pub(crate) fn retrain(&self, dataset: DatasetName) -> Retrain {
        Retrain {
            retrain_epochs: self.retrain_epochs,
            tolerance: self.tolerance,
            val: if self.val_dataset.is_some() { 0 } else { self.val },
            val_dataset: self.val_dataset.clone(),
            dataset,
            seed: self.seed,
            distill: self.distill.map(|alpha| Distillation {
                alpha,
                temperature: self.temperature,
            }),
            retrain_lr: self.retrain_lr,
            recover_epochs: self.recover_epochs,
            stop_rule: self.stop_rule,
            bench_steps: self.bench_steps,
            // Recorded absolute, so a resume from another directory names the same run.
            tolerance_against: self
                .tolerance_against
                .clone()
                .map(|p| std::path::absolute(&p).unwrap_or(p)),
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum PolicyName {
    /// Drop the --per-step least relevant pieces of every unit.
    PerUnit,
    /// Drop pieces scored below --tau.
    Threshold,
    /// Drop the lowest-scored --fraction of each layer's pieces.
    Global,
    /// Drop whole units: the --fraction of each layer's units whose scores sum lowest.
    Units,
    /// Drop whole units across layers, lowest score per FLOP first, until --fraction of the
    /// network's FLOPs are gone: a unit's summed score over its layer's mean unit score,
    /// divided by the FLOPs it and its consumer's reading of it take.
    Cost,
}

#[derive(Args)]
pub(crate) struct PolicyArgs {
    /// Selection policy.
    #[arg(long, value_enum, default_value = "per-unit")]
    pub(crate) policy: PolicyName,
    /// Pieces removed per unit and step (per-unit).
    #[arg(long, default_value_t = 1)]
    pub(crate) per_step: usize,
    /// Score threshold (threshold).
    #[arg(long, default_value_t = 0.05)]
    pub(crate) tau: f64,
    /// Fraction of each layer's pieces (global) or units (units), or of the network's FLOPs
    /// (cost), removed per step.
    #[arg(long, default_value_t = 0.25)]
    pub(crate) fraction: f64,
}

impl PolicyArgs {
    pub(crate) fn policy(&self) -> Policy {
        match self.policy {
            PolicyName::PerUnit => Policy::PerUnit { n: self.per_step },
            PolicyName::Threshold => Policy::Threshold { tau: self.tau },
            PolicyName::Global => Policy::Global {
                fraction: self.fraction,
            },
            PolicyName::Units => Policy::Units {
                fraction: self.fraction,
            },
            PolicyName::Cost => Policy::Cost {
                fraction: self.fraction,
            },
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum SplitName {
    /// The whole training split.
    Train,
    /// The validation examples: the run's carve (`train --val N`) or --val-dataset.
    Val,
    /// The test split.
    Test,
}

#[derive(Args)]
pub(crate) struct CriterionArgs {
    /// Relevance criterion.
    #[arg(long, value_enum, default_value = "argmax")]
    pub(crate) criterion: CriterionKind,
    #[command(flatten)]
    pub(crate) ties: TiesArgs,
}

#[derive(Args)]
pub(crate) struct TiesArgs {
    /// Who gets the credit when pieces tie for the maximum (argmax).
    #[arg(long, value_enum, default_value = "split")]
    pub(crate) ties: TiePolicy,
}

#[derive(Args)]
pub(crate) struct DataArgs {
    /// mnist, fashion-mnist, embedded, idx:<dir>, folder:<dir>[@size] or cifar10:<dir>.
    #[arg(long)]
    pub(crate) dataset: Option<String>,
    /// Directory holding the dataset's IDX files (searched first).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
}

impl DataArgs {
    /// `--dataset`, parsed, or `recorded` (the run's) when none was given.
    pub(crate) fn name_or(&self, recorded: DatasetName) -> Result<DatasetName> {
        Ok(self.name()?.unwrap_or(recorded))
    }

    /// `--dataset`, parsed, if given.
    pub(crate) fn name(&self) -> Result<Option<DatasetName>> {
        Ok(self.dataset.as_deref().map(str::parse).transpose()?)
    }

    /// Loads `name`, looking in `--data-dir` first.
    pub(crate) fn load(&self, name: &DatasetName) -> Result<Dataset> {
        Ok(Dataset::load(name, self.data_dir.as_deref())?)
    }

    /// Loads `name` with every example of `validation`, when given, as its validation set.
    pub(crate) fn load_validated(&self, name: &DatasetName, validation: Option<&DatasetName>) -> Result<Dataset> {
        let data = self.load(name)?;
        Ok(match validation {
            Some(v) => data.with_validation(self.load(v)?)?,
            None => data,
        })
    }
}

/// The architecture: a preset or a spec file.
#[derive(Args)]
pub(crate) struct ArchArgs {
    /// Architecture preset.
    #[arg(long, conflicts_with = "spec")]
    pub(crate) preset: Option<Preset>,
    /// Architecture from a spec.json file (docs/spec.md).
    #[arg(long)]
    pub(crate) spec: Option<PathBuf>,
}

impl ArchArgs {
    /// The preset's spec, or the spec file's.
    pub(crate) fn spec(&self) -> Result<ArchSpec> {
        Ok(match (&self.preset, &self.spec) {
            (Some(p), _) => p.spec(),
            (None, Some(path)) => ArchSpec::from_json(&maxprune::fsio::read_text(path)?, &path.display().to_string())?,
            (None, None) => bail!("give --preset or --spec"),
        })
    }
}

/// Resizing an architecture (see `ArchSpec::scaled`).
#[derive(Args)]
pub(crate) struct ScaleArgs {
    /// Multiply conv filters, hidden dense widths and maxout units by this.
    #[arg(long)]
    pub(crate) width: Option<f64>,
    /// Square input size in pixels (channels are kept).
    #[arg(long)]
    pub(crate) input_size: Option<usize>,
    /// Outputs of the last layer.
    #[arg(long)]
    pub(crate) classes: Option<usize>,
}

impl ScaleArgs {
    pub(crate) fn is_none(&self) -> bool {
        self.width.is_none() && self.input_size.is_none() && self.classes.is_none()
    }

    pub(crate) fn apply(&self, spec: ArchSpec) -> Result<ArchSpec> {
        if self.is_none() {
            return Ok(spec);
        }
        let mut input = spec.input;
        if let Some(n) = self.input_size {
            (input.height, input.width) = (n, n);
        }
        let classes = match self.classes {
            Some(c) => c,
            None => spec.classes()?,
        };
        let mut scaled = spec.scaled(self.width.unwrap_or(1.0), input, classes)?;
        scaled.name = format!("{}-w{}-{}px", spec.name, self.width.unwrap_or(1.0), input.height);
        Ok(scaled)
    }
}

/// The unit layer names `--layers` gives (comma-separated, as every list of layers is parsed:
/// [`parse_layer_names`]), checked against `spec`; none when the flag is absent.
pub(crate) fn layer_names(flag: Option<&str>, spec: &ArchSpec) -> Result<Vec<String>> {
    match flag {
        Some(text) => parse_layer_names(text, spec).context("--layers"),
        None => Ok(Vec::new()),
    }
}
