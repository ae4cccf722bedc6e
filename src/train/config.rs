//! The training recipe as data: [`TrainConfig`], and distillation from a teacher.

use serde::{Deserialize, Serialize};

use crate::data::dataset::DatasetName;
use crate::error::{Error, Result};

/// The training recipe. Defaults are the original code's Caffe solver (the paper's LeNet-5): SGD, momentum 0.9,
/// weight decay 5e-4, base lr 0.01 with the "inv" policy (gamma 1e-4, power 0.75), batch 64.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Dataset (written as `mnist`, `fashion-mnist`, `embedded`, `idx:<dir>`, `folder:<dir>[@size]`,
    /// `cifar10:<dir>`).
    pub dataset: DatasetName,
    /// Epochs to train.
    pub epochs: usize,
    /// Examples per SGD step.
    pub batch_size: usize,
    /// Base learning rate.
    pub base_lr: f64,
    /// "inv" policy: `lr = base_lr * (1 + gamma * iter)^(-power)`.
    pub lr_gamma: f64,
    /// "inv" policy exponent.
    pub lr_power: f64,
    /// Momentum (no dampening, as Caffe and PyTorch).
    pub momentum: f64,
    /// L2 weight decay, applied to every parameter.
    pub weight_decay: f64,
    /// Seed of initialisation, shuffling and dropout.
    pub seed: u64,
    /// Examples carved off train as a validation split (0: none).
    pub val: usize,
    /// Batch size of evaluation passes.
    pub eval_batch_size: usize,
    /// Knowledge distillation from a teacher network (none by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teacher: Option<Teacher>,
}

/// How much a student learns from a teacher's predictions (Hinton et al. 2015, "Distilling the
/// Knowledge in a Neural Network").
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Distillation {
    /// Weight of the teacher term in `[0, 1]`; the labels' cross-entropy gets `1 - alpha`.
    pub alpha: f64,
    /// Softmax temperature of both predictions in the teacher term (> 0).
    pub temperature: f64,
}

/// Knowledge distillation during training: the loss is
/// `(1 - alpha) * CE(labels) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Teacher {
    /// Run directory whose (final) model is the teacher; it is evaluated without dropout.
    pub run: String,
    /// Weight of the teacher term in `[0, 1]`.
    pub alpha: f64,
    /// Softmax temperature (> 0).
    pub temperature: f64,
}

impl Teacher {
    /// The teacher in `run` with the given weights.
    pub fn new(run: String, weights: Distillation) -> Teacher {
        Teacher {
            run,
            alpha: weights.alpha,
            temperature: weights.temperature,
        }
    }

    /// Its weight and temperature.
    pub fn weights(&self) -> Distillation {
        Distillation {
            alpha: self.alpha,
            temperature: self.temperature,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            dataset: DatasetName::FashionMnist,
            epochs: 10,
            batch_size: 64,
            base_lr: 0.01,
            lr_gamma: 1e-4,
            lr_power: 0.75,
            momentum: 0.9,
            weight_decay: 5e-4,
            seed: 1,
            val: 0,
            eval_batch_size: 500,
            teacher: None,
        }
    }
}

impl TrainConfig {
    /// The learning rate at (0-based) SGD iteration `iter`.
    pub fn lr_at(&self, iter: usize) -> f64 {
        self.base_lr * (1.0 + self.lr_gamma * iter as f64).powf(-self.lr_power)
    }

    /// Checks the values; errors name the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, msg: &str| Err(Error::invalid("config", format!("{field}: {msg}")));
        if self.batch_size == 0 {
            return bad("batch_size", "expected at least 1, found 0");
        }
        if self.eval_batch_size == 0 {
            return bad("eval_batch_size", "expected at least 1, found 0");
        }
        for (field, v) in [("lr_gamma", self.lr_gamma), ("lr_power", self.lr_power)] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(field, &format!("expected a finite number >= 0, found {v}"));
            }
        }
        if !(self.base_lr.is_finite() && self.base_lr > 0.0) {
            return bad("base_lr", "expected a positive number");
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad("momentum", "expected a value in [0, 1)");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay", "expected a value >= 0");
        }
        if let Some(t) = &self.teacher {
            if !(0.0..=1.0).contains(&t.alpha) {
                return bad("teacher.alpha", "expected a value in [0, 1]");
            }
            if !(t.temperature.is_finite() && t.temperature > 0.0) {
                return bad("teacher.temperature", "expected a positive number");
            }
        }
        Ok(())
    }

    /// Parses a TOML config; `source` names it in errors. Missing fields take the defaults.
    pub fn from_toml(text: &str, source: &str) -> Result<TrainConfig> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let c: TrainConfig = toml::from_str(text).map_err(|e| Error::parse(source, e))?;
        c.validate()?;
        Ok(c)
    }

    /// The config as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a TrainConfig always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inv_policy_matches_caffe() {
        let c = TrainConfig::default();
        assert_eq!(c.lr_at(0), 0.01);
        // Caffe: base_lr * (1 + gamma * iter) ^ (-power) at iter 10000: 0.01 * 2^-0.75
        assert!((c.lr_at(10_000) - 0.01 * 2f64.powf(-0.75)).abs() < 1e-15);
    }

    #[test]
    fn distillation_settings_are_validated() {
        let with = |alpha, temperature| TrainConfig {
            teacher: Some(Teacher {
                run: "runs/a".into(),
                alpha,
                temperature,
            }),
            ..TrainConfig::default()
        };
        assert!(with(0.5, 4.0).validate().is_ok());
        let round = TrainConfig::from_toml(&with(0.5, 4.0).to_toml(), "t").unwrap();
        assert_eq!(round, with(0.5, 4.0));
        for (c, field) in [
            (with(1.5, 4.0), "teacher.alpha"),
            (with(0.5, 0.0), "teacher.temperature"),
        ] {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn config_toml_round_trip_and_errors() {
        let c = TrainConfig {
            epochs: 3,
            ..TrainConfig::default()
        };
        assert_eq!(TrainConfig::from_toml(&c.to_toml(), "t").unwrap(), c);
        assert_eq!(TrainConfig::from_toml("epochs = 2", "t").unwrap().batch_size, 64);
        let e = TrainConfig::from_toml("momentum = 1.5", "train.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("momentum"), "{e}");
        let e = crate::error::error_chain(&TrainConfig::from_toml("epoch = 2", "train.toml").unwrap_err());
        assert!(e.contains("train.toml") && e.contains("epoch"), "{e}");
        // A dataset name is parsed with the file: a bad one is the file's error.
        let e = crate::error::error_chain(&TrainConfig::from_toml("dataset = \"cifar\"", "train.toml").unwrap_err());
        assert!(e.contains("train.toml") && e.contains("'cifar': expected mnist"), "{e}");
    }
}
