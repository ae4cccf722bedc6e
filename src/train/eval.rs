//! Evaluation: accuracy, loss and per-class accuracy of a network on a split.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::loss::cross_entropy;
use crate::data::dataset::Dataset;
use crate::data::split::{Split, batch, check_fits};
use crate::data::transform::Normalization;
use crate::error::{Error, Result};
use crate::model::finite::check_forward;
use crate::model::network::Network;
use crate::model::spec::ArchSpec;

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

/// Checks that a network of `spec` reads the dataset `data` as it is: its images at the
/// network's input size ([`check_fits`]) and an output for each of its classes
/// ([`check_classes`]).
pub fn check_dataset(spec: &ArchSpec, data: &Dataset) -> Result<()> {
    let name = data.name.to_string();
    check_fits(&data.train, &spec.input, &name)?;
    check_classes(spec, data.classes, &name)
}

/// Evaluates `net` on `split` in evaluation mode (no dropout), its pixels normalised by `norm`;
/// `classes` is the dataset's class count, checked against the network's outputs first ([`check_classes`]).
pub fn evaluate(
    net: &Network,
    split: &Split,
    classes: usize,
    batch_size: usize,
    norm: &Normalization,
) -> Result<Evaluation> {
    Ok(evaluate_with_hits(net, split, classes, batch_size, norm)?.0)
}

/// [`evaluate`], with whether each example of `split` was classified correctly (in split
/// order): what a paired comparison of two networks on the same examples counts.
pub fn evaluate_with_hits(
    net: &Network,
    split: &Split,
    classes: usize,
    batch_size: usize,
    norm: &Normalization,
) -> Result<(Evaluation, Vec<bool>)> {
    check_classes(net.spec(), classes, "being evaluated")?;
    let mut correct = vec![0usize; classes];
    let mut total = vec![0usize; classes];
    let mut loss_sum = 0.0f64;
    let mut hits = Vec::with_capacity(split.len());
    in_batches(net, split, batch_size, norm, |chunk, logits, y| {
        loss_sum += f64::from(cross_entropy(logits.clone(), y).into_scalar::<f32>()) * chunk.len() as f64;
        let pred = logits.argmax(1).into_data();
        for (p, &i) in pred.iter::<i64>().zip(chunk) {
            let label = split.labels[i] as usize;
            total[label] += 1;
            hits.push(p == label as i64);
            correct[label] += usize::from(p == label as i64);
        }
    })?;
    let n = split.len().max(1);
    let evaluation = Evaluation {
        accuracy: correct.iter().sum::<usize>() as f64 / n as f64,
        loss: loss_sum / n as f64,
        per_class: correct
            .iter()
            .zip(&total)
            .map(|(&c, &t)| if t == 0 { 0.0 } else { c as f64 / t as f64 })
            .collect(),
        examples: split.len(),
    };
    Ok((evaluation, hits))
}

/// Runs `net` in evaluation mode (no dropout) over `split` in order, in batches of
/// `batch_size`, calling `f` with each batch's example indices, class scores and labels.
///
/// # Shapes
/// - `f`'s scores: `[chunk.len(), outputs]`; its labels: `[chunk.len()]`
fn in_batches(
    net: &Network,
    split: &Split,
    batch_size: usize,
    norm: &Normalization,
    mut f: impl FnMut(&[usize], Tensor<2>, Tensor<1, burn::tensor::Int>),
) -> Result<()> {
    if split.is_empty() {
        return Err(Error::invalid(
            "dataset",
            "0 images to evaluate on; expected at least 1",
        ));
    }
    let device = net.device().clone().without_autodiff();
    let net = net.clone().to_device(&device);
    let order: Vec<usize> = (0..split.len()).collect();
    for (i, chunk) in order.chunks(batch_size).enumerate() {
        let (x, y) = batch(split, chunk, &net.spec().input, norm, &device);
        let logits = net.forward(x.clone());
        if i == 0 {
            check_forward(&net, x, logits.clone())?;
        }
        f(chunk, logits, y);
    }
    Ok(())
}

/// A network's answers for every example of a split, in the split's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// The true class of each example.
    pub labels: Vec<u8>,
    /// The predicted class of each example (the arg-max of its scores, as [`evaluate`] counts it).
    pub predicted: Vec<usize>,
    /// The class scores (logits, before softmax) of each example, one per network output.
    pub logits: Vec<Vec<f32>>,
}

impl Predictions {
    /// CSV with a header: `index,label,predicted`, then with `logits` one `logit_<c>` column
    /// per network output (each f32 as its shortest decimal that reads back the same).
    pub fn to_csv(&self, logits: bool) -> String {
        let outputs = self.logits.first().map_or(0, Vec::len);
        let mut out = String::from("index,label,predicted");
        if logits {
            (0..outputs).for_each(|c| out.push_str(&format!(",logit_{c}")));
        }
        out.push('\n');
        let rows = self.labels.iter().zip(&self.predicted).zip(&self.logits);
        for (i, ((label, predicted), scores)) in rows.enumerate() {
            out.push_str(&format!("{i},{label},{predicted}"));
            if logits {
                scores.iter().for_each(|v| out.push_str(&format!(",{v}")));
            }
            out.push('\n');
        }
        out
    }
}

/// Runs `net` on every example of `split` in evaluation mode (no dropout), in batches of
/// `batch_size`, keeping each example's scores and arg-max.
pub fn predict(net: &Network, split: &Split, batch_size: usize, norm: &Normalization) -> Result<Predictions> {
    let mut predictions = Predictions {
        labels: split.labels.clone(),
        predicted: Vec::with_capacity(split.len()),
        logits: Vec::with_capacity(split.len()),
    };
    in_batches(net, split, batch_size, norm, |_, logits, _| {
        let outputs = logits.dims()[1];
        let pred = logits.clone().argmax(1).into_data();
        predictions.predicted.extend(pred.iter::<i64>().map(|p| p as usize));
        let values: Vec<f32> = logits.into_data().iter::<f32>().collect();
        predictions
            .logits
            .extend(values.chunks_exact(outputs).map(<[f32]>::to_vec));
    })?;
    Ok(predictions)
}
