//! What training reports: per-epoch metrics and progress events.

use serde::{Deserialize, Serialize};

use super::eval::Evaluation;

/// One row of `metrics.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// SGD iterations done after this epoch.
    pub iteration: usize,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Mean training loss over the epoch (with dropout).
    pub train_loss: f64,
    /// Training accuracy over the epoch (with dropout).
    pub train_accuracy: f64,
    /// Validation evaluation, when a validation split is carved.
    pub val: Option<Evaluation>,
    /// Test evaluation.
    pub test: Evaluation,
    /// Wall-clock seconds of the epoch's training steps.
    pub train_seconds: f64,
    /// Training throughput, images per second.
    pub train_img_per_s: f64,
}

/// Training's progress events (see [`crate::progress`]).
#[derive(Debug, Clone)]
pub enum Event {
    /// An epoch begins.
    EpochStart {
        /// 1-based epoch.
        epoch: usize,
        /// Last epoch of the run.
        epochs: usize,
        /// SGD steps in the epoch.
        steps: usize,
    },
    /// One SGD step is done.
    Step {
        /// 0-based step within the epoch.
        step: usize,
        /// The step's loss.
        loss: f32,
    },
    /// An epoch ended and was checkpointed.
    EpochEnd(Box<EpochMetrics>),
}
