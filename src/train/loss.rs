//! Losses: cross-entropy and knowledge distillation.

use burn::tensor::{Int, Tensor, activation};

use super::config::Distillation;

/// Mean cross-entropy of `logits` `[batch, classes]` against `labels` `[batch]`.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [b, _] = logits.dims();
    activation::log_softmax(logits, 1)
        .gather(1, labels.reshape([b, 1]))
        .mean()
        .neg()
}

/// The distillation loss of [`Teacher`](super::config::Teacher): `(1 - alpha) * CE + alpha * T^2 * KL(teacher || student)`
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

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
}
