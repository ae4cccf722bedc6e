//! The seam between a kind of pruning and the schedule that runs it: a [`Pruner`] prunes one
//! step, [`run_schedule`](super::schedule::run_schedule) retrains, evaluates and stops.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::data::dataset::DatasetName;
use crate::error::{Error, Result};
use crate::model::network::{Network, ParamVisitor};
use crate::model::spec::ArchSpec;
use crate::progress::Observer;
use crate::relevance::RelevanceEvent;
use crate::train::Distillation;
use crate::train::Splits;

use super::stop::{BenchSteps, FlopTarget, StopRule};

/// Retraining and stopping settings shared by every pruning schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retrain {
    /// Retraining epochs per step (the recipe restarts each step, as in the original code).
    pub retrain_epochs: usize,
    /// Stop when validation accuracy falls more than this many percentage points below the
    /// starting network's (as `stop_rule` decides); the last step within tolerance is the
    /// result.
    pub tolerance: f64,
    /// How a fall below the tolerance is decided (default: the point rule).
    #[serde(default, skip_serializing_if = "StopRule::is_point")]
    pub stop_rule: StopRule,
    /// Which steps are timed (a reporting choice: not saved, so a resume may change it).
    #[serde(skip)]
    pub bench_steps: BenchSteps,
    /// Validation examples carved off train (0: none carved; without `val_dataset` that
    /// disables the stopping rule).
    pub val: usize,
    /// A validation set of its own instead of a carve: every example of this dataset (see
    /// [`Dataset::with_validation`](crate::data::dataset::Dataset::with_validation)); `val` is
    /// then 0 and retraining sees the whole training split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_dataset: Option<DatasetName>,
    /// Count the tolerance from this run's validation accuracy instead of the starting
    /// network's (an absolute path; the run must have been trained with the same `val`): prune
    /// until no more than `tolerance` points below a baseline, such as plain LeNet-5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance_against: Option<std::path::PathBuf>,
    /// Dataset.
    pub dataset: DatasetName,
    /// Seed of retraining (and of the random criterion).
    pub seed: u64,
    /// Retrain with knowledge distillation from the starting network (none by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<Distillation>,
    /// Base learning rate of each retraining (default: the starting run's recipe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrain_lr: Option<f64>,
    /// A step outside tolerance after its retraining is trained on, one epoch at a time, up to
    /// this many more epochs, and kept as soon as it is within tolerance (0: it ends the
    /// schedule at once, as in the paper).
    #[serde(default, skip_serializing_if = "crate::report::is_zero")]
    pub recover_epochs: usize,
}

impl Default for Retrain {
    /// 5 retraining epochs per step, 0.3 points tolerance under the point rule, 5,000
    /// validation examples carved off train, Fashion-MNIST, seed 1, the result timed; no validation
    /// dataset, reference run,
    /// distillation, learning-rate override or recovery epochs.
    fn default() -> Self {
        Retrain {
            retrain_epochs: 5,
            tolerance: 0.3,
            stop_rule: StopRule::Point,
            bench_steps: BenchSteps::Last,
            val: 5000,
            val_dataset: None,
            tolerance_against: None,
            dataset: DatasetName::FashionMnist,
            seed: 1,
            distill: None,
            retrain_lr: None,
            recover_epochs: 0,
        }
    }
}

impl Retrain {
    /// Checks every number for range and finiteness and that at most one validation set is
    /// named: a tolerance of at least 0 points, a positive retraining learning rate, and the
    /// distillation's weight and temperature ([`Distillation::validate`]).
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, expected: &str, found: f64| {
            Err(Error::invalid(
                "retraining",
                format!("{field}: expected {expected}, found {found}"),
            ))
        };
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return bad("tolerance", "a finite number of points >= 0", self.tolerance);
        }
        if let Some(name) = self.val_dataset.as_ref().filter(|_| self.val > 0) {
            return Err(Error::invalid(
                "retraining",
                format!(
                    "val = {} and the validation dataset {name}: expected one validation set, found two",
                    self.val
                ),
            ));
        }
        if let Some(lr) = self.retrain_lr.filter(|lr| !(lr.is_finite() && *lr > 0.0)) {
            return bad("retraining learning rate", "a positive number", lr);
        }
        match &self.distill {
            Some(d) => d.validate("retraining", "distillation "),
            None => Ok(()),
        }
    }
}

/// What one pruning step produced.
pub struct Pruned {
    /// The pruned network.
    pub net: Network,
    /// Files for the step directory: `(name, content)`.
    pub files: Vec<(String, String)>,
    /// Plots for the schedule directory: `(name suffix, SVG)`.
    pub plots: Vec<(String, String)>,
}

/// One kind of pruning step, run by [`run_schedule`](super::schedule::run_schedule).
pub trait Pruner {
    /// Retraining and stopping settings.
    fn retrain(&self) -> &Retrain;
    /// A sentence describing the schedule, for reports.
    fn describe(&self) -> String;
    /// The configuration as JSON (saved as `schedule.json` with the source run's path, compared on
    /// resume).
    fn config_json(&self) -> serde_json::Value;
    /// Checks the pruner against the architecture of the network it starts from, before the
    /// schedule writes anything (default: nothing to check).
    fn check(&self, _spec: &ArchSpec) -> Result<()> {
        Ok(())
    }
    /// The FLOP target that ends the schedule, reported against its result (default: none).
    fn target(&self) -> Option<&FlopTarget> {
        None
    }
    /// Whether the schedule is complete, before step `steps_done + 1`.
    fn finished(&self, net: &Network, steps_done: usize) -> bool;
    /// Step `step` (1-based): prunes `net` (with the weight masks it holds), scoring on
    /// `splits.train` if needed (a pass reported to `observer`); `None` when nothing more can
    /// be removed (the schedule then ends).
    fn prune(
        &self,
        step: usize,
        net: &Network,
        splits: &Splits,
        batch: usize,
        observer: &mut dyn Observer<RelevanceEvent>,
    ) -> Result<Option<Pruned>>;
}

/// Parameters that are not exactly zero (buffers excluded, as [`Network::num_params`]).
pub fn nonzeros(net: &Network) -> usize {
    struct Count(usize);
    impl ParamVisitor for Count {
        fn visit<const D: usize>(&mut self, _: &str, t: &Tensor<D>) {
            self.0 += t.clone().not_equal_elem(0.0).int().sum().into_scalar::<i64>() as usize;
        }
    }
    let mut c = Count(0);
    net.visit_trainable(&mut c);
    c.0
}
