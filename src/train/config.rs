//! The training recipe as data: [`TrainConfig`], and distillation from a teacher.

use serde::{Deserialize, Serialize};

use super::fingerprint::Fingerprint;
use crate::data::dataset::DatasetName;
use crate::data::transform::{Augment, Normalization};
use crate::error::{Error, Result};
use crate::model::spec::InputShape;

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
    /// Per-channel mean subtracted from pixels scaled to `[0, 1]`: one value, or one per input
    /// channel (none: 0). Training and every evaluation of the run use it ([`Normalization`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<Vec<f64>>,
    /// Per-channel std the centred pixels are divided by, each > 0: one value, or one per input
    /// channel (none: 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub std: Option<Vec<f64>>,
    /// Augmentation of training images (none by default), drawn from the run's seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub augment: Option<Augment>,
}

/// How much a student learns from a teacher's predictions (Hinton et al. 2015, "Distilling the
/// Knowledge in a Neural Network").
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Distillation {
    /// Weight of the teacher term in `[0, 1]`; the labels' cross-entropy gets `1 - alpha`.
    pub alpha: f64,
    /// Softmax temperature of both predictions in the teacher term, in
    /// [`Distillation::TEMPERATURES`].
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
    /// Softmax temperature, in [`Distillation::TEMPERATURES`].
    pub temperature: f64,
    /// The teacher's content when the run was created; training refuses a teacher that has
    /// changed since (none in configs written by hand or before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
}

/// A value out of range: the field, what it must be, and what it is.
type Problem = (String, String, String);

impl Distillation {
    /// The range of the temperature: the teacher term is scaled by `T^2` and both predictions'
    /// logits are divided by `T`, so a temperature far outside it overflows `f32` (Hinton et al.
    /// use 1 to 20).
    pub const TEMPERATURES: std::ops::RangeInclusive<f64> = 0.01..=100.0;

    /// The first value out of range, its field named `{prefix}alpha` or `{prefix}temperature`.
    fn problem(&self, prefix: &str) -> Option<Problem> {
        let (t, range) = (self.temperature, Self::TEMPERATURES);
        if !(0.0..=1.0).contains(&self.alpha) {
            Some((
                format!("{prefix}alpha"),
                "a weight in [0, 1]".into(),
                self.alpha.to_string(),
            ))
        } else if !range.contains(&t) {
            let expected = format!("a temperature in [{}, {}]", range.start(), range.end());
            // `{:?}`: 1e30 as written, not as 31 digits.
            Some((format!("{prefix}temperature"), expected, format!("{t:?}")))
        } else {
            None
        }
    }

    /// Checks the weight is in `[0, 1]` and the temperature in [`Self::TEMPERATURES`]; errors
    /// are `what`'s and name the fields as `{prefix}alpha` and `{prefix}temperature`.
    pub fn validate(&self, what: &'static str, prefix: &str) -> Result<()> {
        match self.problem(prefix) {
            Some((field, expected, found)) => Err(Error::invalid(
                what,
                format!("{field}: expected {expected}, found {found}"),
            )),
            None => Ok(()),
        }
    }
}

impl Teacher {
    /// The teacher in `run` with the given weights.
    pub fn new(run: String, weights: Distillation) -> Teacher {
        Teacher {
            run,
            alpha: weights.alpha,
            temperature: weights.temperature,
            fingerprint: None,
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
            mean: None,
            std: None,
            augment: None,
        }
    }
}

impl TrainConfig {
    /// The learning rate at (0-based) SGD iteration `iter`.
    pub fn lr_at(&self, iter: usize) -> f64 {
        self.base_lr * (1.0 + self.lr_gamma * iter as f64).powf(-self.lr_power)
    }

    /// The first value out of range.
    fn problem(&self) -> Option<Problem> {
        let p = |field: &str, expected: &str, found: String| Some((field.to_string(), expected.to_string(), found));
        let finite_at_least_0 = |v: f64| v.is_finite() && v >= 0.0;
        if self.batch_size == 0 {
            return p("batch_size", "at least 1", "0".into());
        }
        if self.eval_batch_size == 0 {
            return p("eval_batch_size", "at least 1", "0".into());
        }
        for (field, v) in [("lr_gamma", self.lr_gamma), ("lr_power", self.lr_power)] {
            if !finite_at_least_0(v) {
                return p(field, "a finite number >= 0", v.to_string());
            }
        }
        if !(self.base_lr.is_finite() && self.base_lr > 0.0) {
            return p("base_lr", "a finite number > 0", self.base_lr.to_string());
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return p("momentum", "a value in [0, 1)", self.momentum.to_string());
        }
        if !finite_at_least_0(self.weight_decay) {
            return p("weight_decay", "a finite number >= 0", self.weight_decay.to_string());
        }
        for (field, values) in [("mean", &self.mean), ("std", &self.std)] {
            let Some(values) = values else { continue };
            if values.is_empty() {
                return p(field, "one value, or one per input channel", "an empty list".into());
            }
            let positive = field == "std";
            if let Some(v) = values.iter().find(|&&v| !(v.is_finite() && (!positive || v > 0.0))) {
                let expected = if positive {
                    "finite numbers > 0"
                } else {
                    "finite numbers"
                };
                return p(field, expected, format!("{v:?}"));
            }
        }
        self.teacher.as_ref().and_then(|t| t.weights().problem("teacher."))
    }

    /// The first setting that does not fit a network reading `input`.
    fn input_problem(&self, input: &InputShape) -> Option<Problem> {
        let c = input.channels;
        for (field, values) in [("mean", &self.mean), ("std", &self.std)] {
            if let Some(n) = values.as_ref().map(Vec::len).filter(|&n| n != 1 && n != c) {
                let expected = match c {
                    1 => "1 value (the input has 1 channel)".to_string(),
                    c => format!("1 value or {c} (one per input channel)"),
                };
                return Some((field.into(), expected, format!("{n} values")));
            }
        }
        let crop = self.augment.map_or(0, |a| a.crop);
        let side = input.height.min(input.width);
        (crop >= side.max(1)).then(|| {
            let expected = format!("less than {side} (the input's smaller side)");
            ("augment.crop".into(), expected, crop.to_string())
        })
    }

    /// Checks the values against a network reading `input` (a mean or std per input channel, a
    /// crop smaller than the input); errors are `source`'s and name the field, what it must be
    /// and what it is.
    pub fn check_input(&self, input: &InputShape, source: &str) -> Result<()> {
        match self.problem().or_else(|| self.input_problem(input)) {
            Some((what, expected, found)) => Err(Error::Format {
                path: source.into(),
                what,
                expected,
                found,
            }),
            None => Ok(()),
        }
    }

    /// How pixels become inputs in this run: `mean` and `std` ([`Normalization::default`]
    /// without them).
    pub fn normalization(&self) -> Normalization {
        Normalization::new(self.mean.as_deref(), self.std.as_deref())
    }

    /// Checks the values; errors name the field, what it must be and what it is.
    pub fn validate(&self) -> Result<()> {
        match self.problem() {
            Some((field, expected, found)) => Err(Error::invalid(
                "config",
                format!("{field}: expected {expected}, found {found}"),
            )),
            None => Ok(()),
        }
    }

    /// Parses a TOML config and checks its values; `source` names it in errors. Missing fields
    /// take the defaults.
    pub fn from_toml(text: &str, source: &str) -> Result<TrainConfig> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let c: TrainConfig = toml::from_str(text).map_err(|e| Error::parse(source, e))?;
        match c.problem() {
            Some((what, expected, found)) => Err(Error::Format {
                path: source.into(),
                what,
                expected,
                found,
            }),
            None => Ok(c),
        }
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
                fingerprint: None,
            }),
            ..TrainConfig::default()
        };
        assert!(with(0.5, 4.0).validate().is_ok());
        let round = TrainConfig::from_toml(&with(0.5, 4.0).to_toml(), "t").unwrap();
        assert_eq!(round, with(0.5, 4.0));
        for (c, field) in [
            (with(1.5, 4.0), "teacher.alpha"),
            (with(0.5, 0.0), "teacher.temperature"),
            (
                with(0.5, 1e30),
                "teacher.temperature: expected a temperature in [0.01, 100], found 1e30",
            ),
        ] {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn normalisation_and_augmentation_are_checked_and_round_trip() {
        let rgb = InputShape {
            channels: 3,
            height: 32,
            width: 32,
        };
        let text = "mean = [0.5, 0.4, 0.3]\nstd = [0.25]\n[augment]\nflip = true\ncrop = 4\n";
        let c = TrainConfig::from_toml(text, "train.toml").unwrap();
        c.check_input(&rgb, "train.toml").unwrap();
        assert_eq!(c.augment, Some(Augment { flip: true, crop: 4 }));
        assert_eq!(TrainConfig::from_toml(&c.to_toml(), "t").unwrap(), c);
        assert_eq!(c.normalization().channel(2), (0.3, 0.25));
        // Without them the file and the inputs are as before.
        let plain = TrainConfig::default();
        assert!(!plain.to_toml().contains("mean") && plain.normalization().is_identity());
        let refused = |text: &str, input: &InputShape| {
            let c = TrainConfig::from_toml(text, "train.toml");
            let e = c.and_then(|c| c.check_input(input, "train.toml")).unwrap_err();
            crate::error::error_chain(&e)
        };
        let gray = InputShape { channels: 1, ..rgb };
        for (text, input, message) in [
            (
                "mean = [0.5, 0.5]",
                &rgb,
                "train.toml: mean: expected 1 value or 3 (one per input channel), found 2 values",
            ),
            (
                "std = [0.5, 0.5]",
                &gray,
                "train.toml: std: expected 1 value (the input has 1 channel), found 2 values",
            ),
            (
                "std = [0.5, 0.0, 1.0]",
                &rgb,
                "train.toml: std: expected finite numbers > 0, found 0.0",
            ),
            (
                "std = [-1.0]",
                &rgb,
                "train.toml: std: expected finite numbers > 0, found -1.0",
            ),
            (
                "mean = []",
                &rgb,
                "train.toml: mean: expected one value, or one per input channel, found an empty list",
            ),
            (
                "augment = { crop = 32 }",
                &rgb,
                "train.toml: augment.crop: expected less than 32 (the input's smaller side), found 32",
            ),
            (
                "augment = { rotate = 1 }",
                &rgb,
                "unknown field `rotate`, expected `flip` or `crop`",
            ),
        ] {
            let e = refused(text, input);
            assert!(e.contains(message) && e.contains("train.toml"), "{text}: {e}");
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
        assert_eq!(e, "train.toml: momentum: expected a value in [0, 1), found 1.5");
        let e = crate::error::error_chain(&TrainConfig::from_toml("epoch = 2", "train.toml").unwrap_err());
        assert!(e.contains("train.toml") && e.contains("epoch"), "{e}");
        // A dataset name is parsed with the file: a bad one is the file's error.
        let e = crate::error::error_chain(&TrainConfig::from_toml("dataset = \"cifar\"", "train.toml").unwrap_err());
        assert!(e.contains("train.toml") && e.contains("'cifar': expected mnist"), "{e}");
    }
}
