//! Evaluation: accuracy, loss and per-class accuracy of a network on a split.

use serde::{Deserialize, Serialize};

use super::loss::cross_entropy;
use crate::data::split::{Split, batch};
use crate::data::transform::Normalization;
use crate::error::{Error, Result};
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

/// Evaluates `net` on `split` in evaluation mode (no dropout), its pixels normalised by `norm`;
/// `classes` is the dataset's class count, checked against the network's outputs first
/// ([`check_classes`]).
pub fn evaluate(
    net: &Network,
    split: &Split,
    classes: usize,
    batch_size: usize,
    norm: &Normalization,
) -> Result<Evaluation> {
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
        let (x, y) = batch(split, chunk, &net.spec().input, norm, &device);
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
