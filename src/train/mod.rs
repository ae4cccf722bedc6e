//! Training: the recipe as data ([`TrainConfig`]), Caffe/PyTorch-style SGD, the epoch loop with
//! checkpoints in a [`RunDir`], and evaluation. Progress goes to a [`crate::progress::Observer`] of [`Event`]s.
//!
//! | file | holds |
//! |---|---|
//! | `config.rs` | [`TrainConfig`], [`Teacher`], [`Distillation`] |
//! | `sgd.rs` | [`Sgd`] and weight [`Masks`] |
//! | `loss.rs` | [`cross_entropy`], [`distillation_loss`] |
//! | `eval.rs` | [`evaluate`], [`evaluate_with_hits`], [`Evaluation`], [`check_classes`], [`predict`], [`Predictions`] |
//! | `events.rs` | [`EpochMetrics`], [`Event`] |
//! | `checkpoint.rs` | the run directory ([`RunDir`], [`Checkpoint`]) |
//! | `fit.rs` | the epoch loop ([`train`]) and the [`Splits`] it reads |
//! | `fingerprint.rs` | a run directory's content ([`Fingerprint`]), recorded by what builds on it |
//!
//! Imports run one way: fingerprint <- config <- sgd, loss <- eval <- events <- checkpoint <- fit.

pub mod checkpoint;
pub mod config;
pub mod eval;
pub mod events;
pub mod fingerprint;
pub mod fit;
pub mod loss;
pub mod sgd;

pub use crate::model::params::Masks;
pub use checkpoint::{Checkpoint, RunDir, Summary};
pub use config::{Distillation, Teacher, TrainConfig};
pub use eval::{Evaluation, Predictions, check_classes, check_dataset, evaluate, evaluate_with_hits, predict};
pub use events::{EpochMetrics, Event};
pub use fingerprint::Fingerprint;
pub use fit::{Splits, check_trainable, pin_teacher, train};
pub use loss::{cross_entropy, distillation_loss};
pub use sgd::Sgd;
