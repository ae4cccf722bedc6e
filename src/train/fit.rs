//! The epoch loop: trains the network of a [`RunDir`], checkpointing every epoch.

use std::path::Path;
use std::time::Instant;

use burn::tensor::Device;

use super::checkpoint::{Checkpoint, RunDir};
use super::config::{Teacher, TrainConfig};
use super::eval::{check_classes, evaluate};
use super::events::{EpochMetrics, Event};
use super::fingerprint::Fingerprint;
use super::loss::{cross_entropy, distillation_loss};
use crate::data::dataset::Dataset;
use crate::data::split::{Split, batch};
use crate::data::transform::Normalization;
use crate::error::{Error, Result};
use crate::fsio;
use crate::memory::check_training;
use crate::model::network::Network;
use crate::progress::Observer;
use crate::rng::SplitMix64;

/// Loads the teacher a config names for the run in `student_dir`, checking that it is another
/// run (not the student's own directory or inside it), that it still holds what its recorded
/// fingerprint says, and that it reads the same inputs and predicts the same classes as
/// `student`.
fn load_teacher(teacher: &Teacher, student_dir: &Path, student: &Network, device: &Device) -> Result<Network> {
    let path = Path::new(&teacher.run);
    if fsio::resolve(path)?.starts_with(fsio::resolve(student_dir)?) {
        return Err(Error::invalid(
            "teacher",
            format!(
                "{}: expected another run, found the student's own output {} (it would learn from itself)",
                teacher.run,
                student_dir.display()
            ),
        ));
    }
    let run = RunDir::open(path)?;
    if let Some(fp) = &teacher.fingerprint {
        fp.check(
            path,
            &format!(
                "{} started learning from it; its next epochs would learn from another teacher",
                student_dir.display()
            ),
        )?;
    }
    let net = run.network(device)?;
    let (s, t) = (student.spec(), net.spec());
    if s.input != t.input || s.classes()? != t.classes()? {
        return Err(Error::invalid(
            "teacher",
            format!(
                "{}: the teacher's input {:?} / {} outputs differ from the student's {:?} / {}",
                teacher.run,
                t.input,
                t.classes()?,
                s.input,
                s.classes()?
            ),
        ));
    }
    Ok(net)
}

/// Checks the teacher `config` names, if any, for a new run of `student` in `out` (as
/// [`train`] will) and records its fingerprint in `config`, so that the run, resumed, learns
/// from the same teacher.
pub fn pin_teacher(config: &mut TrainConfig, out: &Path, student: &Network) -> Result<()> {
    if let Some(t) = &mut config.teacher {
        t.fingerprint = None;
        load_teacher(t, out, student, student.device())?;
        t.fingerprint = Some(Fingerprint::of(Path::new(&t.run))?);
    }
    Ok(())
}

/// The splits a run trains and evaluates on.
pub struct Splits {
    /// Examples SGD sees.
    pub train: Split,
    /// Validation examples (carved from train, or the dataset's own validation set), if any.
    pub val: Option<Split>,
    /// The test split.
    pub test: Split,
    /// Number of classes.
    pub classes: usize,
    /// How their pixels become inputs (the run's `mean` and `std`).
    pub norm: Normalization,
}

impl Splits {
    /// Carves the validation split that `config.val` asks for, or takes the dataset's own
    /// [`validation`](Dataset::validation) set (then nothing is carved: `config.val` must be 0); pixels are normalised as
    /// `config` says.
    pub fn new(data: &Dataset, config: &TrainConfig) -> Result<Splits> {
        let (train, val) = match (&data.validation, config.val) {
            (Some(v), 0) => (data.train.clone(), Some(v.examples.clone())),
            (Some(v), n) => {
                return Err(Error::invalid(
                    "validation",
                    format!(
                        "val = {n} and the validation dataset {}: expected one validation set, found two \
                         (set val = 0 to validate on {} alone)",
                        v.name, v.name
                    ),
                ));
            }
            (None, 0) => (data.train.clone(), None),
            (None, n) => {
                let (t, v) = data.carve_val(n)?;
                (t, Some(v))
            }
        };
        for (split, n) in [("training", train.len()), ("test", data.test.len())] {
            if n == 0 {
                return Err(Error::invalid(
                    "dataset",
                    format!("{}: 0 {split} images; expected at least 1", config.dataset),
                ));
            }
        }
        Ok(Splits {
            train,
            val,
            test: data.test.clone(),
            classes: data.classes,
            norm: config.normalization(),
        })
    }
}

/// Checks that `net` can be trained on `splits` with `config`: it has parameters, an output for
/// every class of `config.dataset`, its batches fit the limit of [`check_training`], and the
/// config's normalisation and augmentation fit its input ([`TrainConfig::check_input`], errors
/// naming `train.toml`). [`train`]
/// checks it too; a caller that creates a run directory checks it first, so that a refused run
/// leaves nothing behind.
pub fn check_trainable(net: &Network, splits: &Splits, config: &TrainConfig) -> Result<()> {
    check_classes(net.spec(), splits.classes, &config.dataset.to_string())?;
    check_training(net.spec(), config.batch_size, config.eval_batch_size)?;
    config.check_input(&net.spec().input, "train.toml")?;
    if net.num_params() == 0 {
        return Err(Error::invalid(
            "network",
            format!(
                "{}: no conv or dense layer, so nothing to train; expected at least one",
                net.spec().name
            ),
        ));
    }
    Ok(())
}

/// Trains the network checkpointed in `dir` until `config.epochs`, resuming after the last
/// finished epoch. Each epoch ends with an atomic checkpoint, so an interrupted run loses at
/// most the epoch in progress. A non-finite loss stops the run with [`Error::Diverged`] and
/// leaves the last checkpoint in place. The network is trained on `device`.
pub fn train(dir: &RunDir, splits: &Splits, device: &Device, observer: &mut dyn Observer<Event>) -> Result<Checkpoint> {
    let config = dir.config()?;
    let mut ckpt = dir.checkpoint(device)?;
    check_trainable(&ckpt.net, splits, &config)?;
    let device = ckpt.net.device().clone().without_autodiff();
    let input = ckpt.net.spec().input;
    let n = splits.train.len();
    let steps = n.div_ceil(config.batch_size);
    let teacher = match &config.teacher {
        Some(t) => Some((load_teacher(t, dir.path(), &ckpt.net, &device)?, t.weights())),
        None => None,
    };
    for epoch in ckpt.epoch + 1..=config.epochs {
        observer.event(&Event::EpochStart {
            epoch,
            epochs: config.epochs,
            steps,
        });
        let mut net = ckpt.net.clone().into_trainable();
        let mut order: Vec<usize> = (0..n).collect();
        SplitMix64::derive(config.seed, "shuffle", epoch as u64).shuffle(&mut order);
        let mut drop_rng = SplitMix64::derive(config.seed, "dropout", epoch as u64);
        let mut augment_rng = SplitMix64::derive(config.seed, "augment", epoch as u64);
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        let mut lr = config.lr_at(ckpt.iteration);
        let start = Instant::now();
        for (step, chunk) in order.chunks(config.batch_size).enumerate() {
            let (x, y) = match config.augment {
                Some(a) => {
                    let varied = a.apply(&splits.train, chunk, &mut augment_rng);
                    let all: Vec<usize> = (0..chunk.len()).collect();
                    batch(&varied, &all, &input, &splits.norm, &device)
                }
                None => batch(&splits.train, chunk, &input, &splits.norm, &device),
            };
            let soft = teacher.as_ref().map(|(t, weights)| (t.forward(x.clone()), *weights));
            let (logits, stats) = net.forward_train(x, &mut drop_rng);
            correct += logits
                .clone()
                .inner()
                .argmax(1)
                .reshape([chunk.len()])
                .equal(y.clone())
                .int()
                .sum()
                .into_scalar::<i64>() as usize;
            let loss = match soft {
                Some((teacher_logits, weights)) => distillation_loss(logits, teacher_logits, y, weights),
                None => cross_entropy(logits, y),
            };
            let loss_value = loss.clone().into_scalar::<f32>();
            if !loss_value.is_finite() {
                return Err(Error::Diverged {
                    epoch,
                    step,
                    loss: loss_value,
                });
            }
            let grads = loss.backward();
            lr = config.lr_at(ckpt.iteration);
            net = ckpt.sgd.step(net, &grads, lr, &config).with_running_stats(stats);
            ckpt.iteration += 1;
            loss_sum += f64::from(loss_value) * chunk.len() as f64;
            observer.event(&Event::Step { step, loss: loss_value });
        }
        let train_seconds = start.elapsed().as_secs_f64();
        ckpt.net = net.into_inference();
        ckpt.epoch = epoch;
        let metrics = EpochMetrics {
            epoch,
            iteration: ckpt.iteration,
            lr,
            train_loss: loss_sum / n as f64,
            train_accuracy: correct as f64 / n as f64,
            val: splits
                .val
                .as_ref()
                .map(|v| evaluate(&ckpt.net, v, splits.classes, config.eval_batch_size, &splits.norm))
                .transpose()?,
            test: evaluate(
                &ckpt.net,
                &splits.test,
                splits.classes,
                config.eval_batch_size,
                &splits.norm,
            )?,
            train_seconds,
            train_img_per_s: n as f64 / train_seconds,
        };
        ckpt.history.push(metrics);
        dir.save_checkpoint(&ckpt)?;
        observer.event(&Event::EpochEnd(Box::new(
            ckpt.history.last().expect("just pushed").clone(),
        )));
    }
    Ok(ckpt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_kernels_train_as_burns_do_and_reproduce_bit_for_bit() {
        use crate::model::network::Kernels;
        use crate::model::presets::Preset;
        let data = Dataset::embedded().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let run = |tag: &str, data: &Dataset, kernels: Kernels, seed: u64, epochs: usize| {
            let config = TrainConfig {
                dataset: crate::data::dataset::DatasetName::Embedded,
                epochs,
                val: 0,
                seed,
                ..TrainConfig::default()
            };
            crate::TEST_KERNELS.set(Some(kernels));
            let net = Network::init(&Preset::Lenet5Maxout.spec(), seed, &Device::flex()).unwrap();
            assert_eq!(net.kernels(), kernels);
            let name = format!("{tag}-{kernels:?}-{seed}");
            let dir = RunDir::create(&tmp.path().join(name), &net, &config).unwrap();
            let ckpt = train(
                &dir,
                &Splits::new(data, &config).unwrap(),
                &burn::tensor::Device::flex(),
                &mut crate::progress::Silent,
            )
            .unwrap();
            crate::TEST_KERNELS.set(None);
            ckpt
        };
        let accuracy = |c: &Checkpoint| 100.0 * c.history.last().unwrap().test.accuracy;
        let (mut own, mut burn) = (0.0, 0.0);
        for seed in 1..=3 {
            let (a, b) = (
                accuracy(&run("full", &data, Kernels::Own, seed, 5)),
                accuracy(&run("full", &data, Kernels::Burn, seed, 5)),
            );
            assert!(
                a > 60.0 && (a - b).abs() <= 2.5,
                "seed {seed}: own {a:.1}% vs burn's {b:.1}%"
            );
            (own, burn) = (own + a / 3.0, burn + b / 3.0);
        }
        assert!(
            (own - burn).abs() <= 0.5,
            "mean of 3 seeds: own {own:.2}% vs burn's {burn:.2}%"
        );
        let small = Dataset {
            train: data.train.subset(&(0..300).collect::<Vec<_>>()),
            ..data.clone()
        };
        let (a, b) = (
            run("a", &small, Kernels::Own, 1, 1),
            run("b", &small, Kernels::Own, 1, 1),
        );
        assert_eq!(a.net.to_safetensors(), b.net.to_safetensors());
    }

    #[test]
    fn a_teacher_must_predict_the_same_classes() {
        use crate::model::presets::Preset;
        let d = Device::flex();
        let tmp = tempfile::tempdir().unwrap();
        let spec = Preset::Lenet5Maxout.spec();
        let five = spec.scaled(1.0, spec.input, 5).unwrap();
        let student = Network::init(&spec, 1, &d).unwrap();
        let run = RunDir::create(
            &tmp.path().join("t"),
            &Network::init(&five, 1, &d).unwrap(),
            &TrainConfig::default(),
        )
        .unwrap();
        let teacher = Teacher {
            run: run.path().display().to_string(),
            alpha: 0.5,
            temperature: 4.0,
            fingerprint: None,
        };
        let e = load_teacher(&teacher, &tmp.path().join("x"), &student, &d)
            .unwrap_err()
            .to_string();
        assert!(e.contains("teacher") && e.contains("5"), "{e}");
        let ok = RunDir::create(&tmp.path().join("s"), &student, &TrainConfig::default()).unwrap();
        let same = Teacher {
            run: ok.path().display().to_string(),
            ..teacher
        };
        assert!(load_teacher(&same, &tmp.path().join("x"), &student, &d).is_ok());
    }
}
