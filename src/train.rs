//! Training: the recipe as data ([`TrainConfig`]), Caffe/PyTorch-style SGD, the epoch loop with
//! checkpoints in a [`RunDir`], and evaluation. Progress goes to an [`Observer`].

use std::time::Instant;

use burn::tensor::{DType, Device, Gradients, Int, Tensor, TensorData, activation};
use serde::{Deserialize, Serialize};

use crate::data::dataset::{Dataset, Split};
use crate::error::{Error, Result};
use crate::model::network::{Network, ParamMapper};
use crate::model::spec::{ArchSpec, InputShape};
use crate::rng::SplitMix64;
use crate::run::{Checkpoint, RunDir};

/// The training recipe. Defaults are the original code's Caffe solver (the paper's LeNet-5): SGD, momentum 0.9,
/// weight decay 5e-4, base lr 0.01 with the "inv" policy (gamma 1e-4, power 0.75), batch 64.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Dataset name (`mnist`, `fashion-mnist`, `embedded`, `idx:<dir>`).
    pub dataset: String,
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
            dataset: "fashion-mnist".into(),
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
        self.dataset.parse::<crate::data::dataset::DatasetName>()?;
        Ok(())
    }

    /// Parses a TOML config; `source` names it in errors. Missing fields take the defaults.
    pub fn from_toml(text: &str, source: &str) -> Result<TrainConfig> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let c: TrainConfig = toml::from_str(text).map_err(|e| Error::Parse {
            path: source.into(),
            message: e.to_string(),
        })?;
        c.validate()?;
        Ok(c)
    }

    /// The config as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a TrainConfig always serializes")
    }
}

/// SGD with momentum and L2 weight decay, PyTorch's update: `v = m v + (g + wd w)`,
/// `w = w - lr v`. State is one velocity per parameter, keyed by parameter name.
///
/// Parameters with a mask (weight pruning) are multiplied by it after every update, and so is
/// their velocity: pruned weights stay exactly zero through momentum and weight decay.
#[derive(Debug, Clone, Default)]
pub struct Sgd {
    /// Velocities, flattened, on the inner (non-autodiff) device.
    pub velocity: std::collections::BTreeMap<String, Tensor<1>>,
    /// 0/1 masks, flattened, keyed by parameter name.
    pub masks: Masks,
}

/// 0/1 masks of pruned weights, flattened, keyed by parameter name (`fc1.weight`).
pub type Masks = std::collections::BTreeMap<String, Tensor<1>>;

struct SgdStep<'a> {
    sgd: &'a mut Sgd,
    grads: &'a Gradients,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
}

impl ParamMapper for SgdStep<'_> {
    fn map<const D: usize>(&mut self, name: &str, t: Tensor<D>) -> Tensor<D> {
        let Some(g) = t.grad(self.grads) else {
            return t;
        };
        let w = t.inner();
        let on_host = w.device() == Device::flex() && w.dtype() == DType::F32;
        let update = Update {
            w,
            g,
            velocity: self.sgd.velocity.remove(name),
            mask: self.sgd.masks.get(name).cloned(),
        };
        let (w, v) = if on_host {
            self.update_in_place(update)
        } else {
            self.update_with_tensor_ops(update)
        };
        self.sgd.velocity.insert(name.to_string(), v);
        w.autodiff().require_grad()
    }
}

/// What one parameter's update reads: the weight, its gradient, its velocity (none before the
/// first step) and its mask (weight pruning), the last two flattened.
struct Update<const D: usize> {
    w: Tensor<D>,
    g: Tensor<D>,
    velocity: Option<Tensor<1>>,
    mask: Option<Tensor<1>>,
}

impl SgdStep<'_> {
    /// The update as six element-wise tensor ops (any backend): each allocates a
    /// parameter-sized result. Returns the new weight and velocity.
    fn update_with_tensor_ops<const D: usize>(&self, u: Update<D>) -> (Tensor<D>, Tensor<1>) {
        let Update { w, g, velocity, mask } = u;
        let dims = w.dims();
        let n: usize = dims.iter().product();
        let w = w.reshape([n]);
        let g = g.reshape([n]) + w.clone().mul_scalar(self.weight_decay);
        let v = match velocity {
            Some(v) => v.mul_scalar(self.momentum) + g,
            None => g,
        };
        let (w, v) = match mask {
            Some(mask) => ((w - v.clone().mul_scalar(self.lr)) * mask.clone(), v * mask),
            None => (w - v.clone().mul_scalar(self.lr), v),
        };
        (w.reshape(dims), v)
    }

    /// The same update in one pass over host memory (flex, f32): the weight and velocity buffers
    /// are updated in place where nothing else holds them, and the gradient is read once. The
    /// arithmetic is the tensor ops' (same operations, same order, f32), so the results are
    /// bit-identical; at batch 1 this removes most of a training step's memory traffic.
    fn update_in_place<const D: usize>(&self, u: Update<D>) -> (Tensor<D>, Tensor<1>) {
        let Update { w, g, velocity, mask } = u;
        let device = w.device();
        let n: usize = w.dims().iter().product();
        let (lr, momentum, decay) = (self.lr as f32, self.momentum as f32, self.weight_decay as f32);
        let mut w_data = w.into_data();
        let g_data = g.into_data();
        let mask_data = mask.map(Tensor::into_data);
        let first = velocity.is_none();
        let mut v_data = velocity.map_or_else(|| TensorData::new(vec![0.0f32; n], [n]), Tensor::into_data);
        let ws = w_data.as_mut_slice::<f32>().expect("f32 weights");
        let vs = v_data.as_mut_slice::<f32>().expect("f32 velocity");
        let gs = g_data.as_slice::<f32>().expect("f32 gradient");
        for ((w, v), &g) in ws.iter_mut().zip(vs.iter_mut()).zip(gs) {
            let g = g + *w * decay;
            *v = if first { g } else { *v * momentum + g };
            *w -= *v * lr;
        }
        if let Some(mask) = &mask_data {
            let ms = mask.as_slice::<f32>().expect("f32 mask");
            for ((w, v), &m) in ws.iter_mut().zip(vs.iter_mut()).zip(ms) {
                *w *= m;
                *v *= m;
            }
        }
        (Tensor::from_data(w_data, &device), Tensor::from_data(v_data, &device))
    }
}

impl Sgd {
    /// One update of every parameter of `net` (on an autodiff device) from `grads`.
    pub fn step(&mut self, net: Network, grads: &Gradients, lr: f64, config: &TrainConfig) -> Network {
        let mut step = SgdStep {
            sgd: self,
            grads,
            lr,
            momentum: config.momentum,
            weight_decay: config.weight_decay,
        };
        net.map_params(&mut step)
    }
}

/// Accuracy and loss of a network on a split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Fraction of examples classified correctly, in `[0, 1]`.
    pub accuracy: f64,
    /// Mean cross-entropy loss.
    pub loss: f64,
    /// Accuracy of each class (NaN-free: a class without examples counts as 0).
    pub per_class: Vec<f64>,
    /// Number of examples.
    pub examples: usize,
}

/// One batch as tensors: pixels scaled to `[0, 1]`, and labels. The grayscale images are
/// centred in the network's `input` (zero padding where it is larger, a centre crop where it is
/// smaller) and repeated over its channels, so a 28x28 dataset feeds a 3x32x32 network.
///
/// # Shapes
/// - returns `([batch, input.channels, input.height, input.width], [batch])`
pub fn batch(split: &Split, indices: &[usize], input: &InputShape, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let b = indices.len();
    let (c, h, w) = (input.channels, input.height, input.width);
    let scale = |p: &u8| f32::from(*p) / 255.0;
    let pixels = if (c, h, w) == (1, split.rows, split.cols) {
        indices.iter().flat_map(|&i| split.image(i).iter().map(scale)).collect()
    } else {
        // Where input row/column y lands in the image (None: padding).
        let source = |y: usize, size: usize, image: usize| (y + image / 2).checked_sub(size / 2).filter(|&s| s < image);
        let mut pixels = vec![0.0f32; b * c * h * w];
        for (n, &i) in indices.iter().enumerate() {
            let image = split.image(i);
            for y in 0..h {
                let Some(sy) = source(y, h, split.rows) else { continue };
                for x in 0..w {
                    let Some(sx) = source(x, w, split.cols) else { continue };
                    let v = scale(&image[sy * split.cols + sx]);
                    for ch in 0..c {
                        pixels[((n * c + ch) * h + y) * w + x] = v;
                    }
                }
            }
        }
        pixels
    };
    let labels: Vec<i64> = indices.iter().map(|&i| i64::from(split.labels[i])).collect();
    (
        Tensor::from_data(TensorData::new(pixels, [b, c, h, w]), device),
        Tensor::from_data(TensorData::new(labels, [b]), device),
    )
}

/// Mean cross-entropy of `logits` `[batch, classes]` against `labels` `[batch]`.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [b, _] = logits.dims();
    activation::log_softmax(logits, 1)
        .gather(1, labels.reshape([b, 1]))
        .mean()
        .neg()
}

/// The distillation loss of [`Teacher`]: `(1 - alpha) * CE + alpha * T^2 * KL(teacher || student)`
/// at temperature `T`, averaged over the batch. The teacher's logits are constants.
///
/// # Shapes
/// - `logits`, `teacher`: `[batch, classes]`; `labels`: `[batch]`
pub fn distillation_loss(
    logits: Tensor<2>,
    teacher: Tensor<2>,
    labels: Tensor<1, Int>,
    weights: Distillation,
) -> Tensor<1> {
    let t = weights.temperature;
    let p_teacher = activation::softmax(teacher.clone().div_scalar(t), 1);
    let log_teacher = activation::log_softmax(teacher.div_scalar(t), 1);
    let log_student = activation::log_softmax(logits.clone().div_scalar(t), 1);
    let kl = p_teacher.mul(log_teacher.sub(log_student)).sum_dim(1).mean();
    cross_entropy(logits, labels)
        .mul_scalar(1.0 - weights.alpha)
        .add(kl.mul_scalar(weights.alpha * t * t))
}

/// Loads the teacher a config names, checking that it reads the same inputs and predicts the
/// same classes as `student`.
fn load_teacher(teacher: &Teacher, student: &Network, device: &Device) -> Result<Network> {
    let run = RunDir::open(std::path::Path::new(&teacher.run))?;
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

/// Checks that a network of `spec` has an output for each of the `classes` labels of the
/// dataset `data` (a label at or above the outputs has no score to be compared with).
pub fn check_classes(spec: &ArchSpec, classes: usize, data: &str) -> Result<()> {
    let outputs = spec.classes()?;
    if outputs < classes {
        return Err(Error::invalid(
            "network",
            format!(
                "{}: the last layer has {outputs} outputs, but the dataset {data} has {classes} classes \
                 (labels 0..={}): expected at least {classes} outputs",
                spec.name,
                classes - 1
            ),
        ));
    }
    Ok(())
}

/// Evaluates `net` on `split` in evaluation mode (no dropout); `classes` is the dataset's
/// class count, checked against the network's outputs first ([`check_classes`]).
pub fn evaluate(net: &Network, split: &Split, classes: usize, batch_size: usize) -> Result<Evaluation> {
    check_classes(net.spec(), classes, "being evaluated")?;
    if split.is_empty() {
        return Err(Error::invalid(
            "dataset",
            "0 images to evaluate on; expected at least 1",
        ));
    }
    let device = net.device().clone().without_autodiff();
    let net = net.clone().to_device(&device);
    let mut correct = vec![0usize; classes];
    let mut total = vec![0usize; classes];
    let mut loss_sum = 0.0f64;
    let order: Vec<usize> = (0..split.len()).collect();
    for chunk in order.chunks(batch_size) {
        let (x, y) = batch(split, chunk, &net.spec().input, &device);
        let logits = net.forward(x);
        loss_sum += f64::from(cross_entropy(logits.clone(), y).into_scalar::<f32>()) * chunk.len() as f64;
        let pred = logits.argmax(1).into_data();
        for (p, &i) in pred.iter::<i64>().zip(chunk) {
            let label = split.labels[i] as usize;
            total[label] += 1;
            correct[label] += usize::from(p == label as i64);
        }
    }
    let n = split.len().max(1);
    Ok(Evaluation {
        accuracy: correct.iter().sum::<usize>() as f64 / n as f64,
        loss: loss_sum / n as f64,
        per_class: correct
            .iter()
            .zip(&total)
            .map(|(&c, &t)| if t == 0 { 0.0 } else { c as f64 / t as f64 })
            .collect(),
        examples: split.len(),
    })
}

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

/// Progress events, for progress bars or logs. The library never prints.
#[derive(Debug)]
pub enum Event<'a> {
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
    EpochEnd(&'a EpochMetrics),
}

/// Receives progress events.
pub trait Observer {
    /// Called for every event.
    fn event(&mut self, event: &Event<'_>);
}

/// An observer that ignores everything.
pub struct Silent;

impl Observer for Silent {
    fn event(&mut self, _: &Event<'_>) {}
}

/// The splits a run trains and evaluates on.
pub struct Splits {
    /// Examples SGD sees.
    pub train: Split,
    /// Validation examples (carved from train), if any.
    pub val: Option<Split>,
    /// The test split.
    pub test: Split,
    /// Number of classes.
    pub classes: usize,
}

impl Splits {
    /// Carves the validation split that `config.val` asks for.
    pub fn new(data: &Dataset, config: &TrainConfig) -> Result<Splits> {
        let (train, val) = if config.val > 0 {
            let (t, v) = data.carve_val(config.val)?;
            (t, Some(v))
        } else {
            (data.train.clone(), None)
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
        })
    }
}

/// Checks that `net` can be trained on `splits` (of the dataset named `dataset`): it has
/// parameters, and an output for every class. [`train`] checks it too; a caller that creates a
/// run directory checks it first, so that a refused run leaves nothing behind.
pub fn check_trainable(net: &Network, splits: &Splits, dataset: &str) -> Result<()> {
    check_classes(net.spec(), splits.classes, dataset)?;
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
/// leaves the last checkpoint in place.
pub fn train(dir: &RunDir, splits: &Splits, observer: &mut dyn Observer) -> Result<Checkpoint> {
    let config = dir.config()?;
    let mut ckpt = dir.checkpoint()?;
    check_trainable(&ckpt.net, splits, &config.dataset)?;
    let device = ckpt.net.device().clone().without_autodiff();
    let input = ckpt.net.spec().input;
    let n = splits.train.len();
    let steps = n.div_ceil(config.batch_size);
    let teacher = match &config.teacher {
        Some(t) => Some((load_teacher(t, &ckpt.net, &device)?, t.weights())),
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
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        let mut lr = config.lr_at(ckpt.iteration);
        let start = Instant::now();
        for (step, chunk) in order.chunks(config.batch_size).enumerate() {
            let (x, y) = batch(&splits.train, chunk, &input, &device);
            let soft = teacher.as_ref().map(|(t, weights)| (t.forward(x.clone()), *weights));
            let logits = net.forward_train(x, &mut drop_rng);
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
            net = ckpt.sgd.step(net, &grads, lr, &config);
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
                .map(|v| evaluate(&ckpt.net, v, splits.classes, config.eval_batch_size))
                .transpose()?,
            test: evaluate(&ckpt.net, &splits.test, splits.classes, config.eval_batch_size)?,
            train_seconds,
            train_img_per_s: n as f64 / train_seconds,
        };
        ckpt.history.push(metrics);
        dir.save_checkpoint(&ckpt)?;
        observer.event(&Event::EpochEnd(ckpt.history.last().expect("just pushed")));
    }
    Ok(ckpt)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// maxprune's convolution and pooling train `lenet5-maxout` as burn's do: 5 epochs on the
    /// embedded subset, seeds 1-3, mean test accuracy within 0.5 points (one seed alone differs
    /// by up to about 1.5 points: rounding differences grow over 5 epochs of SGD, and 500 test
    /// images resolve 0.2 points), every seed within 2.5; and a run is reproduced bit for bit
    /// by its seed.
    #[test]
    fn own_kernels_train_as_burns_do_and_reproduce_bit_for_bit() {
        use crate::model::network::Kernels;
        use crate::model::presets::Preset;
        let data = Dataset::embedded().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let run = |tag: &str, data: &Dataset, kernels: Kernels, seed: u64, epochs: usize| {
            let config = TrainConfig {
                dataset: "embedded".into(),
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
            let ckpt = train(&dir, &Splits::new(data, &config).unwrap(), &mut Silent).unwrap();
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
    fn batches_centre_images_in_larger_or_smaller_inputs() {
        let split = Split {
            rows: 2,
            cols: 2,
            pixels: vec![51, 102, 153, 204],
            labels: vec![3],
        };
        let d = Device::flex();
        let shape = |channels, size| InputShape {
            channels,
            height: size,
            width: size,
        };
        let values = |x: Tensor<4>| {
            x.into_data()
                .iter::<f32>()
                .map(|v| (v * 255.0).round() as u8)
                .collect::<Vec<_>>()
        };
        let (x, y) = batch(&split, &[0], &shape(1, 4), &d);
        assert_eq!(values(x), [0, 0, 0, 0, 0, 51, 102, 0, 0, 153, 204, 0, 0, 0, 0, 0]);
        assert_eq!(y.into_data().iter::<i64>().collect::<Vec<_>>(), [3]);
        assert_eq!(values(batch(&split, &[0], &shape(3, 1), &d).0), [204, 204, 204]);
        assert_eq!(values(batch(&split, &[0], &shape(1, 2), &d).0), [51, 102, 153, 204]);
    }

    #[test]
    fn in_place_sgd_is_bit_identical_to_the_tensor_ops() {
        let d = Device::flex();
        let x = Tensor::<1>::from_data(TensorData::new(vec![1.0f32], [1]), &d.clone().autodiff()).require_grad();
        let grads = x.sum().backward();
        let step = SgdStep {
            sgd: &mut Sgd::default(),
            grads: &grads,
            lr: 0.0137,
            momentum: 0.9,
            weight_decay: 5e-4,
        };
        let values = |n: usize, seed: u64| {
            let mut rng = SplitMix64::new(seed);
            (0..n).map(|_| rng.next_f32() * 2.0 - 1.0).collect::<Vec<_>>()
        };
        let w = || Tensor::<2>::from_data(TensorData::new(values(6, 1), [2, 3]), &d);
        // A transposed (strided) gradient, as matmul backward produces.
        let g = || Tensor::<2>::from_data(TensorData::new(values(6, 2), [3, 2]), &d).transpose();
        let v = Tensor::<1>::from_data(TensorData::new(values(6, 3), [6]), &d);
        let mask = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 0.0, 1.0, 1.0, 0.0, 1.0], [6]), &d);
        let bits = |t: Tensor<1>| t.into_data().iter::<f32>().map(f32::to_bits).collect::<Vec<_>>();
        for velocity in [None, Some(v)] {
            for mask in [None, Some(mask.clone())] {
                let update = || Update {
                    w: w(),
                    g: g(),
                    velocity: velocity.clone(),
                    mask: mask.clone(),
                };
                let (w1, v1) = step.update_with_tensor_ops(update());
                let (w2, v2) = step.update_in_place(update());
                assert_eq!(bits(w1.reshape([6])), bits(w2.reshape([6])));
                assert_eq!(bits(v1), bits(v2));
            }
        }
    }

    #[test]
    fn inv_policy_matches_caffe() {
        let c = TrainConfig::default();
        assert_eq!(c.lr_at(0), 0.01);
        // Caffe: base_lr * (1 + gamma * iter) ^ (-power) at iter 10000: 0.01 * 2^-0.75
        assert!((c.lr_at(10_000) - 0.01 * 2f64.powf(-0.75)).abs() < 1e-15);
    }

    #[test]
    fn distillation_loss_mixes_labels_and_teacher() {
        let d = Device::flex();
        let logits = || Tensor::<2>::from_data(TensorData::new(vec![2.0f32, -1.0, 0.5, 0.0, 1.5, -0.5], [2, 3]), &d);
        let other = Tensor::<2>::from_data(TensorData::new(vec![-1.0f32, 3.0, 0.0, 2.0, 0.0, 1.0], [2, 3]), &d);
        let labels = || Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &d);
        let value = |t: Tensor<1>| t.into_scalar::<f32>();
        let weights = |alpha| Distillation {
            alpha,
            temperature: 4.0,
        };
        let ce = value(cross_entropy(logits(), labels()));
        // alpha = 0: the labels' cross-entropy alone, whatever the teacher says.
        let l0 = value(distillation_loss(logits(), other.clone(), labels(), weights(0.0)));
        assert!((l0 - ce).abs() < 1e-6, "{l0} vs {ce}");
        // alpha = 1: zero when the student agrees with the teacher, positive when not.
        assert!(value(distillation_loss(logits(), logits(), labels(), weights(1.0))).abs() < 1e-6);
        let l1 = value(distillation_loss(logits(), other.clone(), labels(), weights(1.0)));
        assert!(l1 > 0.1, "{l1}");
        let half = value(distillation_loss(logits(), other, labels(), weights(0.5)));
        assert!((half - 0.5 * (ce + l1)).abs() < 1e-5, "{half}");
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
        };
        let e = load_teacher(&teacher, &student, &d).unwrap_err().to_string();
        assert!(e.contains("teacher") && e.contains("5"), "{e}");
        let ok = RunDir::create(&tmp.path().join("s"), &student, &TrainConfig::default()).unwrap();
        let same = Teacher {
            run: ok.path().display().to_string(),
            ..teacher
        };
        assert!(load_teacher(&same, &student, &d).is_ok());
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
        let e = TrainConfig::from_toml("epoch = 2", "train.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("train.toml") && e.contains("epoch"), "{e}");
    }
}
