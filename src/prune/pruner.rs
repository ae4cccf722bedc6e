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

/// Retraining and stopping settings shared by every pruning schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retrain {
    /// Retraining epochs per step (the recipe restarts each step, as in the original code).
    pub retrain_epochs: usize,
    /// Stop when validation accuracy falls more than this many percentage points below the
    /// starting network's; the last step within tolerance is the result.
    pub tolerance: f64,
    /// Validation examples carved off train (0 disables the stopping rule).
    pub val: usize,
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

impl Retrain {
    /// Checks every number for range and finiteness: a tolerance of at least 0 points, a
    /// positive retraining learning rate, and the distillation's weight and temperature
    /// ([`Distillation::validate`]).
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

/// Parameters that are not exactly zero.
pub fn nonzeros(net: &Network) -> usize {
    struct Count(usize);
    impl ParamVisitor for Count {
        fn visit<const D: usize>(&mut self, _: &str, t: &Tensor<D>) {
            self.0 += t.clone().not_equal_elem(0.0).int().sum().into_scalar::<i64>() as usize;
        }
    }
    let mut c = Count(0);
    net.visit_params(&mut c);
    c.0
}
